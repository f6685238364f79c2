//! TL2 (bitnet.cpp type 39), LAYOUT.md §3.
//!
//! The first `K3 = (K / BK)·BK` columns are coded in triples (`v = 9·t0 + 3·t1 + t2`, stored as a
//! 4-bit magnitude plus a sign bit), the remaining `K2 = K − K3` columns (a multiple of 32) in
//! pairs as in TL1 but with TL2's own 32-row block order. Sections, in order:
//! * A, magnitudes, `M·K3/6` bytes: loops `mt, kt, ms, ks (BK/6), b (32)`; byte `b` belongs to
//!   row `ms·32 + P8[b/8]·8 + b%8` with `P8 = [0, 2, 1, 3]`, and holds triples `j0, j0+1`;
//! * S, signs, `M·K3/24` bytes of little-endian u16 words, 16 per (mt, kt, ms, 8-triple group);
//!   bit `15 − (2u + h)` of word `c` is the sign of triple `u` of the group in row `c + 16h`;
//! * T, pairs, `M·K2/4` bytes: loops `mt, kt2 (K2/32), ms, ks (8), b (32)`, same row permutation;
//! * zero padding to the fixed over-allocation `B`, then to a multiple of 32, then the 32-byte
//!   tail with the f32 scale.

use super::{
    Ctx, PAIRS, TernaryScale, TernaryTensor, TlTiling, check_values, pair_index, read_f32,
};
use crate::error::Result;
use crate::types::{pad32, tl2_body_bytes};

const FORMAT: &str = "TL2";
/// 8-row group order inside a 32-row block.
const P8: [usize; 4] = [0, 2, 1, 3];

/// Balanced-ternary digits `(t0, t1, t2)` of `v = 9·t0 + 3·t1 + t2`, indexed by `v + 13`.
const TRIPLES: [[i8; 3]; 27] = {
    let mut out = [[0i8; 3]; 27];
    let mut i = 0;
    while i < 27 {
        let v = i as i32 - 13;
        let t2 = (v + 13) % 3 - 1;
        let r = (v - t2) / 3;
        let t1 = (r + 13) % 3 - 1;
        let t0 = (r - t1) / 3;
        out[i] = [t0 as i8, t1 as i8, t2 as i8];
        i += 1;
    }
    out
};

/// Validated layout of one tensor.
struct Plan {
    bm: usize,
    bk: usize,
    k3: usize,
    k2: usize,
    /// Start of the sign section.
    signs: usize,
    /// Start of the pair section.
    pairs: usize,
    /// Byte offset of the scale (pad32(B)).
    scale_at: usize,
}

fn plan(ctx: &Ctx<'_>, tl: TlTiling) -> Result<Plan> {
    let bad = |reason: String| Err(ctx.bad_tiling(FORMAT, tl, reason));
    if tl.bm_sub != 32 {
        return bad("TL2 requires bm (bmm) = 32".into());
    }
    if tl.bm == 0 || !tl.bm.is_multiple_of(32) {
        return bad("BM must be a positive multiple of 32".into());
    }
    if tl.bk == 0 || !tl.bk.is_multiple_of(24) {
        return bad("BK must be a positive multiple of 24".into());
    }
    let (m, k) = (ctx.rows, ctx.cols);
    if m % tl.bm != 0 {
        return bad("M is not a multiple of BM".into());
    }
    let k3 = k / tl.bk * tl.bk;
    let k2 = k - k3;
    if !k2.is_multiple_of(32) {
        return bad(format!("K mod BK = {k2} is not a multiple of 32"));
    }
    let n = ctx.n(FORMAT)?;
    let overflow = || ctx.shape_error(FORMAT, "byte size overflows".into());
    let signs = m.checked_mul(k3).ok_or_else(overflow)? / 6;
    let pairs = signs + m * k3 / 24;
    let used = pairs + n.checked_sub(m * k3).ok_or_else(overflow)? / 4;
    let body = tl2_body_bytes(m as u64, k as u64)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(overflow)?;
    if used > body {
        return Err(ctx.shape_error(
            FORMAT,
            format!("the data needs {used} bytes but bitnet.cpp's size formula allows only {body} (K too small)"),
        ));
    }
    let scale_at = pad32(body as u64)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(overflow)?;
    Ok(Plan {
        bm: tl.bm,
        bk: tl.bk,
        k3,
        k2,
        signs,
        pairs,
        scale_at,
    })
}

/// Row of byte `b` of 32-row block `block_row0`.
fn permuted_row(block_row0: usize, b: usize) -> usize {
    block_row0 + P8[b / 8] * 8 + b % 8
}

/// Visit every magnitude byte in file order with its row and first triple index.
fn for_each_magnitude(
    ctx: &Ctx<'_>,
    p: &Plan,
    mut f: impl FnMut(usize, usize, usize) -> Result<()>,
) -> Result<()> {
    let mut pos = 0;
    for mt in 0..ctx.rows / p.bm {
        for kt in 0..p.k3 / p.bk {
            for ms in 0..p.bm / 32 {
                for ks in 0..p.bk / 6 {
                    let j0 = kt * p.bk / 3 + 2 * ks;
                    for b in 0..32 {
                        f(pos, permuted_row(mt * p.bm + ms * 32, b), j0)?;
                        pos += 1;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Visit every sign word with its index and the first triple / rows it covers: the callback gets
/// `(word index, row of bit pair h = 0, first triple)`; bit `15 − (2u + h)` covers triple
/// `first + u` of row `row + 16h`.
fn for_each_sign_word(
    ctx: &Ctx<'_>,
    p: &Plan,
    mut f: impl FnMut(usize, usize, usize) -> Result<()>,
) -> Result<()> {
    let mut w = 0;
    for mt in 0..ctx.rows / p.bm {
        for kt in 0..p.k3 / p.bk {
            for ms in 0..p.bm / 32 {
                for q in 0..p.bk / 24 {
                    let j = kt * p.bk / 3 + 8 * q;
                    for c in 0..16 {
                        f(w, mt * p.bm + ms * 32 + c, j)?;
                        w += 1;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Visit every pair byte (relative position) with its row and first pair index within the K2 part.
fn for_each_pair_byte(
    ctx: &Ctx<'_>,
    p: &Plan,
    mut f: impl FnMut(usize, usize, usize) -> Result<()>,
) -> Result<()> {
    let mut pos = 0;
    for mt in 0..ctx.rows / p.bm {
        for kt in 0..p.k2 / 32 {
            for ms in 0..p.bm / 32 {
                for ks in 0..8 {
                    let p0 = kt * 16 + 2 * ks;
                    for b in 0..32 {
                        f(pos, permuted_row(mt * p.bm + ms * 32, b), p0)?;
                        pos += 1;
                    }
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn decode(ctx: Ctx<'_>, data: &[u8], tl: TlTiling) -> Result<TernaryTensor> {
    let p = plan(&ctx, tl)?;
    ctx.require_len(FORMAT, data, p.scale_at + 32)?;
    let (m_rows, k) = (ctx.rows, ctx.cols);
    let nt = p.k3 / 3;
    // Magnitudes first (they are needed when the signs are applied).
    let mut mags = vec![0u8; m_rows * nt];
    for_each_magnitude(&ctx, &p, |pos, m, j0| {
        let byte = data[pos];
        for (h, mag) in [byte >> 4, byte & 15].into_iter().enumerate() {
            if mag > 13 {
                return Err(ctx.bad_code(FORMAT, m * k + 3 * (j0 + h), mag));
            }
            mags[m * nt + j0 + h] = mag;
        }
        Ok(())
    })?;
    let mut values = vec![0i8; m_rows * k];
    for_each_sign_word(&ctx, &p, |w, row0, j| {
        let at = p.signs + 2 * w;
        let word = u16::from_le_bytes([data[at], data[at + 1]]);
        for u in 0..8 {
            for h in 0..2 {
                let m = row0 + 16 * h;
                let negative = (word >> (15 - (2 * u + h))) & 1 == 1;
                let mag = i32::from(mags[m * nt + j + u]);
                let e = m * k + 3 * (j + u);
                if negative && mag == 0 {
                    // The converter never sets the sign of a zero triple; treat it as corruption
                    // (most likely a wrong tiling) rather than silently accepting it. Reported as
                    // the 5-bit code sign << 4 | magnitude = 16.
                    return Err(ctx.bad_code(FORMAT, e, 0x10));
                }
                let v = if negative { -mag } else { mag };
                values[e..e + 3].copy_from_slice(&TRIPLES[(v + 13) as usize]);
            }
        }
        Ok(())
    })?;
    for_each_pair_byte(&ctx, &p, |pos, m, p0| {
        let byte = data[p.pairs + pos];
        for (h, idx) in [byte >> 4, byte & 15].into_iter().enumerate() {
            let e = m * k + p.k3 + 2 * (p0 + h);
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
        scale: TernaryScale::PerTensor(read_f32(data, p.scale_at)),
    })
}

/// Encode an M×K ternary matrix (row-major) as TL2 with the given tiling (bm must be 32); the
/// result is `pad32(B) + 32` bytes with zero padding and the scale in the tail.
pub fn encode_tl2(
    values: &[i8],
    rows: usize,
    cols: usize,
    scale: f32,
    tiling: TlTiling,
) -> Result<Vec<u8>> {
    let ctx = check_values(FORMAT, values, rows, cols)?;
    let p = plan(&ctx, tiling)?;
    let k = cols;
    let mut out = vec![0u8; p.scale_at + 32];
    let triple = |m: usize, j: usize| {
        let t = &values[m * k + 3 * j..m * k + 3 * j + 3];
        9 * t[0] + 3 * t[1] + t[2]
    };
    for_each_magnitude(&ctx, &p, |pos, m, j0| {
        out[pos] = triple(m, j0).unsigned_abs() << 4 | triple(m, j0 + 1).unsigned_abs();
        Ok(())
    })?;
    for_each_sign_word(&ctx, &p, |w, row0, j| {
        let mut word = 0u16;
        for u in 0..8 {
            for h in 0..2 {
                if triple(row0 + 16 * h, j + u) < 0 {
                    word |= 1 << (15 - (2 * u + h));
                }
            }
        }
        let at = p.signs + 2 * w;
        out[at..at + 2].copy_from_slice(&word.to_le_bytes());
        Ok(())
    })?;
    let pair = |m: usize, q: usize| {
        let e = m * k + p.k3 + 2 * q;
        pair_index(values[e], values[e + 1])
    };
    for_each_pair_byte(&ctx, &p, |pos, m, p0| {
        out[p.pairs + pos] = pair(m, p0) << 4 | pair(m, p0 + 1);
        Ok(())
    })?;
    out[p.scale_at..p.scale_at + 4].copy_from_slice(&scale.to_le_bytes());
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
        bk: 96,
        bm_sub: 32,
    };

    #[test]
    fn triple_table_is_balanced_ternary() {
        for (i, t) in TRIPLES.iter().enumerate() {
            assert_eq!(9 * t[0] + 3 * t[1] + t[2], i as i8 - 13);
            assert!(t.iter().all(|x| (-1..=1).contains(x)));
        }
    }

    #[test]
    fn section_positions_for_a_small_matrix() {
        // M = 32, K = 320, BK = 96: K3 = 288 (3 column tiles), K2 = 32 (one pair tile).
        let (m, k) = (32, 320);
        let mut v = vec![0i8; m * k];
        // Row 8 (byte 16 of each 32-byte block, since P8 puts rows 8..16 at bytes 16..24),
        // triple 0 = (-1, 1, 1) -> v = -5.
        v[8 * k..8 * k + 3].copy_from_slice(&[-1, 1, 1]);
        // Row 20, pair 0 of the K2 part = columns 288, 289 = (1, 1) -> 8.
        v[20 * k + 288] = 1;
        v[20 * k + 289] = 1;
        let b = encode_tl2(&v, m, k, 0.75, T).unwrap();
        let body = tl2_body_bytes(32, 320).unwrap() as usize;
        assert_eq!(b.len(), pad32(body as u64).unwrap() as usize + 32);
        assert_eq!(b[16], 0x50); // magnitude 5 for triple 0, 0 for triple 1
        // Signs start at M*K3/6 = 1536; word 8 covers rows 8 and 24, bit 15 = triple 0 of row 8.
        let signs = 32 * 288 / 6;
        assert_eq!(u16::from_le_bytes([b[signs + 16], b[signs + 17]]), 0x8000);
        // Pairs start at M*K3*5/24 = 1920; row 20 is byte 12 (rows 16..24 sit at bytes 8..16).
        let pairs = 32 * 288 * 5 / 24;
        assert_eq!(b[pairs + 12], 0x84);
        assert_eq!(b[pairs + 13], 0x44);
        let t = decode("w", TensorType::TL2, &b, m, k, Some(T)).unwrap();
        assert_eq!(t.values, v);
        assert_eq!(t.scale, TernaryScale::PerTensor(0.75));
    }

    #[test]
    fn invalid_codes_are_rejected() {
        let (m, k) = (32, 320);
        let b0 = encode_tl2(&vec![0i8; m * k], m, k, 1.0, T).unwrap();
        let mut b = b0.clone();
        b[16] = 0xE0; // magnitude 14, row 8, triple 0
        let e = decode("w", TensorType::TL2, &b, m, k, Some(T)).unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidTernaryCode {
                    row: 8,
                    col: 0,
                    code: 14,
                    ..
                }
            ),
            "{e:?}"
        );
        let mut b = b0.clone();
        b[32 * 288 / 6 + 1] = 0x80; // sign of row 0 triple 0, whose magnitude is 0
        let e = decode("w", TensorType::TL2, &b, m, k, Some(T)).unwrap_err();
        assert!(
            matches!(e, Error::InvalidTernaryCode { row: 0, col: 0, .. }),
            "{e:?}"
        );
        let e = decode(
            "w",
            TensorType::TL2,
            &b0,
            m,
            k,
            Some(TlTiling { bm_sub: 64, ..T }),
        )
        .unwrap_err();
        assert!(matches!(e, Error::InvalidTiling { .. }));
        let e = decode(
            "w",
            TensorType::TL2,
            &b0,
            m,
            k,
            Some(TlTiling { bk: 64, ..T }),
        )
        .unwrap_err();
        assert!(matches!(e, Error::InvalidTiling { .. }));
    }
}
