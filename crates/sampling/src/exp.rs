//! A vectorisable `e^x` for the sampler's weights.

/// `e^x` for `x <= 0` (`-inf` included; NaN not expected), within about
/// 2e-7 relative: Cody–Waite reduction by `ln 2` and Cephes' degree-5
/// polynomial for `expf`. Only basic IEEE operations, so every platform and
/// every vector width give the same bits.
#[inline(always)]
pub(crate) fn exp_neg(x: f32) -> f32 {
    let xc = if x > -87.0 { x } else { -87.0 };
    // `n = round(x / ln 2)`, read off the bits of `x / ln 2 + MAGIC`.
    let shifted = xc * std::f32::consts::LOG2_E + MAGIC;
    let n = shifted - MAGIC;
    let r = (xc - n * 0.693_359_4) - n * -2.121_944_4e-4;
    let p = ((((1.987_569_2e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 0.166_666_65)
        * r
        + 0.5;
    let e = (p * (r * r) + r) + 1.0;
    // 2^n: n + 127 in the exponent field (n >= -126 since x >= -87).
    let n_int = shifted.to_bits().wrapping_sub(MAGIC.to_bits());
    let scale = f32::from_bits(n_int.wrapping_add(127) << 23);
    if x > -87.0 { e * scale } else { 0.0 }
}

/// 1.5 · 2^23: a float in `[-2^22, 2^22]` plus this is rounded to an
/// integer, which the low bits of the sum then hold (offset by 2^22).
pub(crate) const MAGIC: f32 = 12_582_912.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_neg_is_close_to_exp() {
        let mut worst = 0.0f64;
        let mut x = 0.0f32;
        while x > -87.0 {
            let want = f64::from(x).exp();
            let got = f64::from(exp_neg(x));
            worst = worst.max(((got - want) / want).abs());
            x -= 0.001_37;
        }
        assert!(worst < 3e-7, "relative error {worst}");
        assert_eq!(exp_neg(0.0), 1.0);
        assert_eq!(exp_neg(-90.0), 0.0);
        assert_eq!(exp_neg(f32::NEG_INFINITY), 0.0);
    }
}
