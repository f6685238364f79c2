//! Turning stored weights into `{-1, 0, 1}` matrices with scales.

use bitnet_kernels::ScaleRule;

/// Unpacks the Hugging Face packed layout: `packed` is `[rows/4, cols]` bytes;
/// bits `2i..2i+1` of `packed[r][k]` hold the code (`t + 1`) of row
/// `i · rows/4 + r`. Returns the row-major values, or the flat index (in the
/// unpacked matrix) of a code 3, which no ternary value maps to.
pub(crate) fn unpack_hf(packed: &[u8], packed_rows: usize, cols: usize) -> Result<Vec<i8>, usize> {
    let rows = packed_rows * 4;
    let mut out = vec![0i8; rows * cols];
    for r in 0..packed_rows {
        let src = &packed[r * cols..(r + 1) * cols];
        for i in 0..4 {
            let dst = &mut out[(i * packed_rows + r) * cols..][..cols];
            for (k, (d, &b)) in dst.iter_mut().zip(src).enumerate() {
                let code = (b >> (2 * i)) & 3;
                if code == 3 {
                    return Err((i * packed_rows + r) * cols + k);
                }
                *d = code as i8 - 1;
            }
        }
    }
    Ok(out)
}

/// Ternarises float weights.
///
/// Weights that are already exactly `{-m, 0, m}` (a float export of a ternary
/// model) keep that scale (`W = m · t`). Anything else is quantised the way
/// BitNet training does (transformers' online `AutoBitLinear`):
/// `s = 1 / max(mean|W|, 1e-5)`, `t = clamp(round_half_even(W · s), -1, 1)`,
/// `W_eff = t / s`.
pub(crate) fn ternarize(values: &[f32]) -> (Vec<i8>, f32, ScaleRule) {
    let m = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if m > 0.0 && values.iter().all(|&v| v == 0.0 || v.abs() == m) {
        let t = values
            .iter()
            .map(|&v| {
                if v == 0.0 {
                    0
                } else if v > 0.0 {
                    1
                } else {
                    -1
                }
            })
            .collect();
        return (t, m, ScaleRule::Multiply);
    }
    let sum: f64 = values.iter().map(|v| f64::from(v.abs())).sum();
    let mean = ((sum / values.len().max(1) as f64) as f32).max(1e-5);
    let s = 1.0f32 / mean;
    let t = values
        .iter()
        .map(|&v| (v * s).round_ties_even().clamp(-1.0, 1.0) as i8)
        .collect();
    (t, s, ScaleRule::Divide)
}

/// How a file stored a multiplier scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoredAs {
    /// An f32 (I2_S, TL1, TL2 tails).
    F32,
    /// An f16 (TQ1_0 / TQ2_0 block `d`).
    F16,
}

/// The bf16 `weight_scale` a file's multiplier `s` was made from, if any.
///
/// Converters write `s = 1 / weight_scale` of a Hugging Face `bitlinear`
/// checkpoint, whose `weight_scale` is a bf16 number, rounded to the file's
/// precision. Distinct bf16 numbers have distinct reciprocals at f32 and f16
/// precision, so when some bf16 `w` satisfies `round(1 / w) == s` it is the
/// original, and computing `acc / (w · s_x)` reproduces the checkpoint's
/// arithmetic bit for bit (and undoes the f16 rounding of TQ files) where
/// `acc / s_x · s` would differ by an ulp now and then.
pub(crate) fn bf16_divisor(s: f32, stored: StoredAs) -> Option<f32> {
    if !(s.is_finite() && s > 0.0) {
        return None;
    }
    let guess = half::bf16::from_f64(1.0 / f64::from(s)).to_bits();
    (guess.saturating_sub(2)..=guess.saturating_add(2))
        .map(|b| half::bf16::from_bits(b).to_f32())
        .find(|&w| {
            let r = 1.0f32 / w;
            w.is_finite()
                && w > 0.0
                && match stored {
                    StoredAs::F32 => r == s,
                    StoredAs::F16 => half::f16::from_f32(r).to_f32() == s,
                }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacks_the_documented_example() {
        // REFERENCE.md: 0b10_01_00_10 -> rows r: +1, R+r: -1, 2R+r: 0, 3R+r: +1.
        let v = unpack_hf(&[0b10_01_00_10], 1, 1).unwrap();
        assert_eq!(v, [1, -1, 0, 1]);
        assert_eq!(unpack_hf(&[0b11], 1, 1), Err(0));
    }

    #[test]
    fn exact_ternary_floats_keep_their_scale() {
        let (t, s, rule) = ternarize(&[0.5, -0.5, 0.0, 0.5]);
        assert_eq!((t, s, rule), (vec![1, -1, 0, 1], 0.5, ScaleRule::Multiply));
    }

    #[test]
    fn bf16_divisors_are_recovered_exactly() {
        for bits in (0x3f00u16..0x4200).step_by(7) {
            let w = half::bf16::from_bits(bits).to_f32();
            let s = 1.0f32 / w;
            assert_eq!(bf16_divisor(s, StoredAs::F32), Some(w), "{w}");
            let d = half::f16::from_f32(s).to_f32();
            assert_eq!(bf16_divisor(d, StoredAs::F16), Some(w), "{w} via f16");
        }
        // Not the reciprocal of any bf16 number.
        let s = 1.0f32 / 1.234_567;
        assert_eq!(bf16_divisor(s, StoredAs::F32), None);
    }

    #[test]
    fn other_floats_use_absmean() {
        let (t, s, rule) = ternarize(&[1.0, -2.0, 0.1, 0.9]);
        assert_eq!(rule, ScaleRule::Divide);
        assert_eq!(s, 1.0 / 1.0);
        assert_eq!(t, vec![1, -1, 0, 1]);
    }
}
