//! AVX-512 per-token activation quantisation, bit-identical to
//! [`super::quantize_row`]: the maximum is exact in any order, `x · s` is
//! the same f32 product, `vrndscaleps` rounds half to even like
//! `round_ties_even`, and NaN lanes (only from NaN or infinite inputs) are
//! zeroed as the scalar `as i8` cast does.

use std::arch::x86_64::*;

use super::AMAX_FLOOR;

/// # Safety
/// The CPU must support AVX-512 F/BW/VL; `q.len() >= x.len()`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(crate) unsafe fn quantize_row(x: &[f32], q: &mut [i8]) -> (f32, i32) {
    assert!(q.len() >= x.len());
    let n = x.len();
    let p = x.as_ptr();
    let mut m = _mm512_setzero_ps();
    let mut k = 0;
    while k < n {
        let mask: __mmask16 = if n - k >= 16 {
            0xFFFF
        } else {
            (1u16 << (n - k)) - 1
        };
        // SAFETY: masked load of values k..min(k+16, n).
        let v = unsafe { _mm512_maskz_loadu_ps(mask, p.add(k)) };
        // max(|x|, m): a NaN |x| yields m, as f32::max ignores NaN.
        m = _mm512_max_ps(_mm512_abs_ps(v), m);
        k += 16;
    }
    let amax = _mm512_reduce_max_ps(m).max(AMAX_FLOOR);
    let s = crate::exact::activation_scale(amax);
    let sv = _mm512_set1_ps(s);
    let (lo, hi) = (_mm512_set1_ps(-128.0), _mm512_set1_ps(127.0));
    let mut sum = _mm512_setzero_si512();
    let out = q.as_mut_ptr();
    let mut k = 0;
    while k < n {
        let mask: __mmask16 = if n - k >= 16 {
            0xFFFF
        } else {
            (1u16 << (n - k)) - 1
        };
        // SAFETY: masked load of values k..min(k+16, n).
        let v = _mm512_mul_ps(unsafe { _mm512_maskz_loadu_ps(mask, p.add(k)) }, sv);
        let r = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
        let c = _mm512_min_ps(_mm512_max_ps(r, lo), hi);
        let ordered = _mm512_cmp_ps_mask::<_CMP_ORD_Q>(v, v);
        let i = _mm512_maskz_cvtps_epi32(ordered, c);
        sum = _mm512_add_epi32(sum, i);
        // SAFETY: masked store of bytes k..min(k+16, n) of `q`.
        unsafe { _mm512_mask_cvtepi32_storeu_epi8(out.add(k).cast(), mask, i) };
        k += 16;
    }
    (s, _mm512_reduce_add_epi32(sum))
}
