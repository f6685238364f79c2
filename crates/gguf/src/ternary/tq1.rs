//! TQ1_0 (ggml type 34), SPEC §2.4.
//!
//! Blocks of 256 elements in 54 bytes: `qs[48]`, `qh[4]`, f16 `d`. Trits `x = t + 1` are packed
//! base 3, first trit most significant, and each byte stores `ceil(n · 256 / 243)`, a fixed-point
//! fraction from which digit `k` is recovered as `((b · 3^k) mod 256 · 3) >> 8`.
//! * `qs[0..32]`: byte `m` holds elements `m + 32j`, j = 0..5 (elements 0..160);
//! * `qs[32..48]`: byte `32 + m` holds elements `160 + m + 16j`, j = 0..5 (elements 160..240);
//! * `qh[0..4]`: byte `m` holds elements `240 + m + 4j`, j = 0..4, as a 5-digit number whose last
//!   digit is 0 (elements 240..256).
//!
//! Every byte value decodes to valid trits, so there are no invalid codes to reject.

use half::f16;

use super::{Ctx, TQ_BLOCK, TernaryScale, TernaryTensor, check_values};
use crate::error::Result;

const FORMAT: &str = "TQ1_0";
const BLOCK_BYTES: usize = 54;
const POW3: [u16; 5] = [1, 3, 9, 27, 81];

/// The `(byte index, element base, element stride, digits)` groups of a block.
fn groups() -> impl Iterator<Item = (usize, usize, usize, usize)> {
    let g1 = (0..32).map(|m| (m, m, 32, 5));
    let g2 = (0..16).map(|m| (32 + m, 160 + m, 16, 5));
    let g3 = (0..4).map(|m| (48 + m, 240 + m, 4, 4));
    g1.chain(g2).chain(g3)
}

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
    for (blk, out) in data
        .chunks_exact(BLOCK_BYTES)
        .zip(values.chunks_exact_mut(TQ_BLOCK))
    {
        for (byte_idx, base, stride, digits) in groups() {
            let b = u16::from(blk[byte_idx]);
            for (k, &p) in POW3.iter().enumerate().take(digits) {
                let y = (b * p) & 0xFF;
                out[base + stride * k] = ((y * 3) >> 8) as i8 - 1;
            }
        }
        scales.push(f16::from_le_bytes([blk[52], blk[53]]).to_f32());
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

/// Encode an M×K ternary matrix (row-major) as TQ1_0 with `d = f16(scale)` in every block.
/// K must be a multiple of 256. Bytes are exactly what llama.cpp's reference quantizer writes.
pub fn encode_tq1_0(values: &[i8], rows: usize, cols: usize, scale: f32) -> Result<Vec<u8>> {
    let ctx = check_values(FORMAT, values, rows, cols)?;
    let (_, len) = layout(&ctx)?;
    let d = f16::from_f32(scale).to_le_bytes();
    let mut out = vec![0u8; len];
    for (blk, vals) in out
        .chunks_exact_mut(BLOCK_BYTES)
        .zip(values.chunks_exact(TQ_BLOCK))
    {
        for (byte_idx, base, stride, digits) in groups() {
            let mut q: u16 =
                (0..digits).fold(0, |q, k| q * 3 + (vals[base + stride * k] + 1) as u16);
            if digits == 4 {
                q *= 3; // the qh bytes keep their 4 trits in the 4 most significant digits
            }
            // ceil(q * 256 / 243), q <= 242
            blk[byte_idx] = (q * 256).div_ceil(243) as u8;
        }
        blk[52..54].copy_from_slice(&d);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ternary::decode;
    use crate::types::TensorType;

    #[test]
    fn known_bytes() {
        // All zeros: every trit is 1, q = 121 (11111 base 3) -> ceil(121*256/243) = 128;
        // qh: q = 1111 base 3 = 40, *3 = 120 -> ceil(120*256/243) = 127.
        let b = encode_tq1_0(&[0i8; 256], 1, 256, 1.0).unwrap();
        assert!(b[..48].iter().all(|&x| x == 128));
        assert!(b[48..52].iter().all(|&x| x == 127));
        assert_eq!(&b[52..54], &f16::from_f32(1.0).to_le_bytes());
        // All +1: q = 242 -> 255; qh: 80*3 = 240 -> ceil(240*256/243) = 253.
        let b = encode_tq1_0(&[1i8; 256], 1, 256, 1.0).unwrap();
        assert!(b[..48].iter().all(|&x| x == 255));
        assert!(b[48..52].iter().all(|&x| x == 253));
        // All -1: 0.
        let b = encode_tq1_0(&[-1i8; 256], 1, 256, 1.0).unwrap();
        assert!(b[..52].iter().all(|&x| x == 0));
    }

    #[test]
    fn every_byte_value_decodes_and_canonical_bytes_round_trip() {
        // All 256 byte values in qs[0] decode to trits; the 243 canonical ones re-encode to
        // themselves.
        let mut canonical = 0;
        for byte in 0..=255u8 {
            let mut blk = encode_tq1_0(&[0i8; 256], 1, 256, 1.0).unwrap();
            blk[0] = byte;
            let t = decode("w", TensorType::TQ1_0, &blk, 1, 256, None).unwrap();
            let again = encode_tq1_0(&t.values, 1, 256, 1.0).unwrap();
            if again[0] == byte {
                canonical += 1;
            }
        }
        assert_eq!(canonical, 243);
    }
}
