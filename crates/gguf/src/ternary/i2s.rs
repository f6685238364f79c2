//! I2_S (bitnet.cpp type 36), x86 / file layout (LAYOUT.md §1).
//!
//! 2-bit codes `t + 1`; the M×K matrix is one flat row-major array cut into 128-element blocks of
//! 32 bytes. Byte `32i + p` holds elements `128i + p` (bits 7..6), `+32` (5..4), `+64` (3..2) and
//! `+96` (1..0). The `M·K/4` code bytes are followed by a 32-byte tail whose first 4 bytes are the
//! f32 scale. bitnet.cpp's `llama-quantize` does not clear the other 28 tail bytes (in the
//! small-bitnet and demo fixtures they hold leftover buffer contents), so the decoder ignores
//! them and the encoder writes zeros, as bitnet.cpp's Python converter does.

use super::{Ctx, TernaryScale, TernaryTensor, check_values, read_f32};
use crate::error::Result;

const FORMAT: &str = "I2_S";
/// Elements per block.
pub(crate) const BLOCK: usize = 128;

fn expected_len(ctx: &Ctx<'_>) -> Result<(usize, usize)> {
    ctx.require_cols_multiple(FORMAT, BLOCK)?;
    let n = ctx.n(FORMAT)?;
    Ok((n, n / 4 + 32))
}

pub(crate) fn decode(ctx: Ctx<'_>, data: &[u8]) -> Result<TernaryTensor> {
    let (n, len) = expected_len(&ctx)?;
    ctx.require_len(FORMAT, data, len)?;
    let mut values = vec![0i8; n];
    for (blk, (codes, out)) in data[..n / 4]
        .chunks_exact(32)
        .zip(values.chunks_exact_mut(BLOCK))
        .enumerate()
    {
        for (p, &byte) in codes.iter().enumerate() {
            // A 2-bit field is 3 exactly when both of its bits are set.
            if byte & (byte >> 1) & 0x55 != 0 {
                let g = (0..4).find(|g| (byte >> (6 - 2 * g)) & 3 == 3).unwrap_or(0);
                return Err(ctx.bad_code(FORMAT, blk * BLOCK + 32 * g + p, 3));
            }
            for g in 0..4 {
                out[32 * g + p] = ((byte >> (6 - 2 * g)) & 3) as i8 - 1;
            }
        }
    }
    Ok(TernaryTensor {
        rows: ctx.rows,
        cols: ctx.cols,
        values,
        scale: TernaryScale::PerTensor(read_f32(data, n / 4)),
    })
}

/// Encode an M×K ternary matrix (row-major) as I2_S: codes, then the 32-byte tail holding `scale`
/// followed by 28 zero bytes. K must be a multiple of 128.
pub fn encode_i2s(values: &[i8], rows: usize, cols: usize, scale: f32) -> Result<Vec<u8>> {
    let ctx = check_values(FORMAT, values, rows, cols)?;
    let (n, len) = expected_len(&ctx)?;
    let mut out = vec![0u8; len];
    for (codes, vals) in out[..n / 4]
        .chunks_exact_mut(32)
        .zip(values.chunks_exact(BLOCK))
    {
        for (p, byte) in codes.iter_mut().enumerate() {
            *byte = (0..4).fold(0u8, |acc, g| {
                acc | (((vals[32 * g + p] + 1) as u8) << (6 - 2 * g))
            });
        }
    }
    out[n / 4..n / 4 + 4].copy_from_slice(&scale.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::ternary::decode;
    use crate::types::TensorType;

    #[test]
    fn byte_layout_is_msb_first_stride_32() {
        // Element 0 = +1 (code 2), element 32 = -1 (code 0), 64 = 0 (1), 96 = +1 (2);
        // all other elements -1 (code 0).
        let mut v = vec![-1i8; 128];
        v[0] = 1;
        v[64] = 0;
        v[96] = 1;
        let b = encode_i2s(&v, 1, 128, 1.5).unwrap();
        assert_eq!(b.len(), 64);
        assert_eq!(b[0], 0b10_00_01_10);
        assert!(b[1..32].iter().all(|&x| x == 0));
        assert_eq!(&b[32..36], &1.5f32.to_le_bytes());
        assert!(b[36..].iter().all(|&x| x == 0));
        let t = decode("w", TensorType::I2_S, &b, 1, 128, None).unwrap();
        assert_eq!(t.values, v);
        assert_eq!(t.scale, TernaryScale::PerTensor(1.5));
    }

    #[test]
    fn code_3_is_rejected_with_position() {
        let mut b = encode_i2s(&[0i8; 256], 2, 128, 1.0).unwrap();
        b[32 + 5] = 0b01_01_11_01; // block 1 (row 1), p = 5, group 2 -> element 128 + 64 + 5
        let e = decode("blk.0.attn_q.weight", TensorType::I2_S, &b, 2, 128, None).unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidTernaryCode {
                    row: 1,
                    col: 69,
                    code: 3,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "I2_S tensor 'blk.0.attn_q.weight': invalid code 3 for the element at row 1, column 69"
        );
    }

    #[test]
    fn shape_and_length_errors() {
        let e = decode("w", TensorType::I2_S, &[0; 48], 1, 64, None).unwrap_err();
        assert!(matches!(e, Error::TernaryShape { cols: 64, .. }), "{e:?}");
        let e = decode("w", TensorType::I2_S, &[0; 63], 1, 128, None).unwrap_err();
        assert!(matches!(
            e,
            Error::TensorSizeMismatch {
                expected: 64,
                actual: 63,
                ..
            }
        ));
        let e = encode_i2s(&[2, 0], 1, 2, 1.0).unwrap_err();
        assert!(matches!(
            e,
            Error::NotTernaryValue {
                index: 0,
                value: 2,
                ..
            }
        ));
        let e = encode_i2s(&[0; 3], 1, 128, 1.0).unwrap_err();
        assert!(matches!(
            e,
            Error::EncodeValueCount {
                expected: 128,
                actual: 3,
                ..
            }
        ));
    }
}
