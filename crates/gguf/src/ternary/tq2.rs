//! TQ2_0 (ggml type 35), SPEC §2.5.
//!
//! Blocks of 256 elements in 66 bytes: `qs[64]` then an f16 `d`. Code `t + 1` in 2 bits; bits
//! `2n+1..2n` of `qs[32c + m]` hold element `128c + 32n + m` (low bits first, the reverse of I2_S).

use half::f16;

use super::{Ctx, TQ_BLOCK, TernaryScale, TernaryTensor, check_values};
use crate::error::Result;

const FORMAT: &str = "TQ2_0";
const BLOCK_BYTES: usize = 66;

fn layout(ctx: &Ctx<'_>) -> Result<(usize, usize)> {
    ctx.require_cols_multiple(FORMAT, TQ_BLOCK)?;
    let n = ctx.n(FORMAT)?;
    Ok((n, n / TQ_BLOCK * BLOCK_BYTES))
}

pub(crate) fn decode(ctx: Ctx<'_>, data: &[u8]) -> Result<TernaryTensor> {
    let (n, len) = layout(&ctx)?;
    ctx.require_len(FORMAT, data, len)?;
    let mut values = vec![0i8; n];
    let mut scales = Vec::with_capacity(n / TQ_BLOCK);
    for (b, (blk, out)) in data
        .chunks_exact(BLOCK_BYTES)
        .zip(values.chunks_exact_mut(TQ_BLOCK))
        .enumerate()
    {
        for c in 0..2 {
            for m in 0..32 {
                let byte = blk[32 * c + m];
                for n in 0..4 {
                    let code = (byte >> (2 * n)) & 3;
                    let e = 128 * c + 32 * n + m;
                    if code == 3 {
                        return Err(ctx.bad_code(FORMAT, b * TQ_BLOCK + e, code));
                    }
                    out[e] = code as i8 - 1;
                }
            }
        }
        scales.push(f16::from_le_bytes([blk[64], blk[65]]).to_f32());
    }
    Ok(TernaryTensor {
        rows: ctx.rows,
        cols: ctx.cols,
        values,
        scale: TernaryScale::PerBlock {
            block: TQ_BLOCK,
            scales,
        },
    })
}

/// Encode an M×K ternary matrix (row-major) as TQ2_0 with `d = f16(scale)` in every block.
/// K must be a multiple of 256.
pub fn encode_tq2_0(values: &[i8], rows: usize, cols: usize, scale: f32) -> Result<Vec<u8>> {
    let ctx = check_values(FORMAT, values, rows, cols)?;
    let (_, len) = layout(&ctx)?;
    let d = f16::from_f32(scale).to_le_bytes();
    let mut out = vec![0u8; len];
    for (blk, vals) in out
        .chunks_exact_mut(BLOCK_BYTES)
        .zip(values.chunks_exact(TQ_BLOCK))
    {
        for c in 0..2 {
            for m in 0..32 {
                blk[32 * c + m] = (0..4).fold(0u8, |acc, n| {
                    acc | (((vals[128 * c + 32 * n + m] + 1) as u8) << (2 * n))
                });
            }
        }
        blk[64..66].copy_from_slice(&d);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::ternary::decode;
    use crate::types::TensorType;

    #[test]
    fn byte_layout_low_bits_first() {
        let mut v = vec![0i8; 256];
        v[0] = 1; // qs[0] bits 1..0 = 2
        v[32] = -1; // qs[0] bits 3..2 = 0
        v[128 + 96 + 7] = 1; // qs[39] bits 7..6 = 2
        let b = encode_tq2_0(&v, 1, 256, 0.5).unwrap();
        assert_eq!(b.len(), 66);
        assert_eq!(b[0], 0b01_01_00_10);
        assert_eq!(b[39], 0b10_01_01_01);
        assert_eq!(b[1], 0x55);
        assert_eq!(&b[64..66], &f16::from_f32(0.5).to_le_bytes());
        let t = decode("w", TensorType::TQ2_0, &b, 1, 256, None).unwrap();
        assert_eq!(t.values, v);
        assert_eq!(
            t.scale,
            TernaryScale::PerBlock {
                block: 256,
                scales: vec![0.5]
            }
        );
    }

    #[test]
    fn code_3_is_rejected_with_position() {
        let mut b = encode_tq2_0(&[0i8; 512], 1, 512, 1.0).unwrap();
        b[66 + 33] = 0b11_01_01_01; // block 1, c = 1, m = 1, n = 3 -> element 256 + 128 + 96 + 1
        let e = decode("w", TensorType::TQ2_0, &b, 1, 512, None).unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidTernaryCode {
                    row: 0,
                    col: 481,
                    code: 3,
                    ..
                }
            ),
            "{e:?}"
        );
    }
}
