//! TL1 (bitnet.cpp type 38), LAYOUT.md §2.
//!
//! Columns are paired; pair `j` of row `m` has index `I = 3·t[m][2j] + t[m][2j+1] + 4` (0..=8).
//! Two indices per byte (`I[m][j0] << 4 | I[m][j0+1]`), bytes ordered by the nested loops
//! row tile `mt` (BM rows) → column tile `kt` (BK columns) → row sub-tile `ms` (bm rows) →
//! column sub-tile `ks` (by = 256/bm columns) → 16-row group `g` → pair of pairs `q` → row `r`.
//! The `M·K/4` index bytes are followed by the 32-byte tail with the f32 scale.

use super::{
    Ctx, PAIRS, TernaryScale, TernaryTensor, TlTiling, check_values, pair_index, read_f32,
};
use crate::error::Result;

const FORMAT: &str = "TL1";

/// Validated loop bounds.
struct Plan {
    bm: usize,
    bk: usize,
    bm_sub: usize,
    by: usize,
}

fn plan(ctx: &Ctx<'_>, tl: TlTiling) -> Result<Plan> {
    let bad = |reason: &str| Err(ctx.bad_tiling(FORMAT, tl, reason.to_string()));
    if tl.bm == 0 || tl.bk == 0 || tl.bm_sub == 0 {
        return bad("tile sizes must be positive");
    }
    if !tl.bm_sub.is_multiple_of(16) || 256 % tl.bm_sub != 0 || !(256 / tl.bm_sub).is_multiple_of(4)
    {
        return bad("bm (bmm) must be 16, 32 or 64");
    }
    let by = 256 / tl.bm_sub;
    if !ctx.rows.is_multiple_of(tl.bm) {
        return bad("M is not a multiple of BM");
    }
    if !ctx.cols.is_multiple_of(tl.bk) {
        return bad("K is not a multiple of BK");
    }
    if !tl.bm.is_multiple_of(tl.bm_sub) {
        return bad("BM is not a multiple of bm");
    }
    if !tl.bk.is_multiple_of(by) {
        return bad("BK is not a multiple of by = 256/bm");
    }
    Ok(Plan {
        bm: tl.bm,
        bk: tl.bk,
        bm_sub: tl.bm_sub,
        by,
    })
}

/// Visit every index byte in file order with its row `m` and first pair index `j0`.
fn for_each_byte(
    ctx: &Ctx<'_>,
    p: &Plan,
    mut f: impl FnMut(usize, usize, usize) -> Result<()>,
) -> Result<()> {
    let mut pos = 0;
    for mt in 0..ctx.rows / p.bm {
        for kt in 0..ctx.cols / p.bk {
            for ms in 0..p.bm / p.bm_sub {
                for ks in 0..p.bk / p.by {
                    for g in 0..p.bm_sub / 16 {
                        for q in 0..p.by / 4 {
                            let j0 = kt * p.bk / 2 + ks * p.by / 2 + 2 * q;
                            let m0 = mt * p.bm + ms * p.bm_sub + g * 16;
                            for r in 0..16 {
                                f(pos, m0 + r, j0)?;
                                pos += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn decode(ctx: Ctx<'_>, data: &[u8], tl: TlTiling) -> Result<TernaryTensor> {
    let p = plan(&ctx, tl)?;
    let n = ctx.n(FORMAT)?;
    ctx.require_len(FORMAT, data, n / 4 + 32)?;
    let k = ctx.cols;
    let mut values = vec![0i8; n];
    for_each_byte(&ctx, &p, |pos, m, j0| {
        let byte = data[pos];
        for (h, idx) in [byte >> 4, byte & 15].into_iter().enumerate() {
            let e = m * k + 2 * (j0 + h);
            let pair = PAIRS
                .get(idx as usize)
                .ok_or_else(|| ctx.bad_code(FORMAT, e, idx))?;
            values[e..e + 2].copy_from_slice(pair);
        }
        Ok(())
    })?;
    Ok(TernaryTensor {
        rows: ctx.rows,
        cols: ctx.cols,
        values,
        scale: TernaryScale::PerTensor(read_f32(data, n / 4)),
    })
}

/// Encode an M×K ternary matrix (row-major) as TL1 with the given tiling; the tail holds `scale`
/// followed by 28 zero bytes.
pub fn encode_tl1(
    values: &[i8],
    rows: usize,
    cols: usize,
    scale: f32,
    tiling: TlTiling,
) -> Result<Vec<u8>> {
    let ctx = check_values(FORMAT, values, rows, cols)?;
    let p = plan(&ctx, tiling)?;
    let n = rows * cols;
    let mut out = vec![0u8; n / 4 + 32];
    let idx =
        |m: usize, j: usize| pair_index(values[m * cols + 2 * j], values[m * cols + 2 * j + 1]);
    for_each_byte(&ctx, &p, |pos, m, j0| {
        out[pos] = idx(m, j0) << 4 | idx(m, j0 + 1);
        Ok(())
    })?;
    out[n / 4..n / 4 + 4].copy_from_slice(&scale.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::ternary::decode;
    use crate::types::TensorType;

    const T: TlTiling = TlTiling {
        bm: 32,
        bk: 16,
        bm_sub: 32,
    };

    #[test]
    fn first_bytes_follow_the_documented_order() {
        // 64 x 32 matrix, BM 32, BK 16, bm 32 -> by 8: byte r (r < 16) holds row r, pairs 0 and 1;
        // bytes 16..32 hold rows 0..16 pairs 2 and 3; bytes 32..48 rows 16..32 pairs 0 and 1.
        let (m, k) = (64, 32);
        let mut v = vec![0i8; m * k];
        v[3 * k..3 * k + 4].copy_from_slice(&[1, -1, -1, 0]); // row 3: pair0 = 6, pair1 = 1
        v[17 * k + 2] = 1; // row 17: pair1 = (1,0) -> 7
        let b = encode_tl1(&v, m, k, 2.0, T).unwrap();
        assert_eq!(b.len(), m * k / 4 + 32);
        assert_eq!(b[3], 0x61);
        assert_eq!(b[0], 0x44);
        assert_eq!(b[32 + 1], 0x47);
        let t = decode("w", TensorType::TL1, &b, m, k, Some(T)).unwrap();
        assert_eq!(t.values, v);
        assert_eq!(t.scale, TernaryScale::PerTensor(2.0));
    }

    #[test]
    fn nibble_above_8_is_rejected() {
        let mut b = encode_tl1(&[0i8; 64 * 32], 64, 32, 1.0, T).unwrap();
        b[32 + 1] = 0x49; // row 17, pair 1 -> columns 2..4
        let e = decode("w", TensorType::TL1, &b, 64, 32, Some(T)).unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidTernaryCode {
                    row: 17,
                    col: 2,
                    code: 9,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn bad_tiling_is_rejected() {
        let b = vec![0u8; 64 * 32 / 4 + 32];
        let bad = TlTiling { bm: 48, ..T };
        let e = decode("w", TensorType::TL1, &b, 64, 32, Some(bad)).unwrap_err();
        assert!(
            matches!(e, Error::InvalidTiling { ref reason, .. } if reason == "M is not a multiple of BM")
        );
        let bad = TlTiling { bm_sub: 128, ..T };
        assert!(decode("w", TensorType::TL1, &b, 64, 32, Some(bad)).is_err());
    }
}
