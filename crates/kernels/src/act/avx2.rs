//! AVX2 per-token activation quantisation, bit-identical to
//! [`super::quantize_row`] (see the AVX-512 twin for why); the tail shorter
//! than a vector runs the scalar formula.

use std::arch::x86_64::*;

use super::AMAX_FLOOR;

/// # Safety
/// The CPU must support AVX2; `q.len() >= x.len()`.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn quantize_row(x: &[f32], q: &mut [i8]) -> (f32, i32) {
    assert!(q.len() >= x.len());
    let n = x.len();
    let p = x.as_ptr();
    let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFF_FFFF));
    let mut m = _mm256_setzero_ps();
    let mut k = 0;
    while k + 8 <= n {
        // SAFETY: values k..k+8 exist.
        let v = unsafe { _mm256_loadu_ps(p.add(k)) };
        // max(|x|, m): a NaN |x| yields m, as f32::max ignores NaN.
        m = _mm256_max_ps(_mm256_and_ps(v, abs_mask), m);
        k += 8;
    }
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds 8 values.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), m) };
    let mut amax = lanes.iter().fold(0.0f32, |a, &b| a.max(b));
    for &v in &x[k..] {
        amax = amax.max(v.abs());
    }
    let amax = amax.max(AMAX_FLOOR);
    let s = crate::exact::activation_scale(amax);
    let sv = _mm256_set1_ps(s);
    let (lo, hi) = (_mm256_set1_ps(-128.0), _mm256_set1_ps(127.0));
    let mut sum = _mm256_setzero_si256();
    let out = q.as_mut_ptr();
    let convert = |v: __m256| -> __m256i {
        let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
        let c = _mm256_min_ps(_mm256_max_ps(r, lo), hi);
        let ordered = _mm256_cmp_ps::<_CMP_ORD_Q>(v, v);
        _mm256_cvtps_epi32(_mm256_and_ps(c, ordered))
    };
    let mut k = 0;
    while k + 32 <= n {
        // SAFETY: values k..k+32 exist; 32 bytes of `q` from k are ours.
        unsafe {
            let i: [__m256i; 4] = std::array::from_fn(|j| {
                convert(_mm256_mul_ps(_mm256_loadu_ps(p.add(k + 8 * j)), sv))
            });
            sum = _mm256_add_epi32(
                sum,
                _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3])),
            );
            let w01 = _mm256_packs_epi32(i[0], i[1]);
            let w23 = _mm256_packs_epi32(i[2], i[3]);
            let b = _mm256_packs_epi16(w01, w23);
            let b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256(out.add(k).cast(), b);
        }
        k += 32;
    }
    let mut lanes = [0i32; 8];
    // SAFETY: `lanes` holds 8 values.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), sum) };
    let mut total: i32 = lanes.iter().sum();
    for (qk, &xk) in q[k..n].iter_mut().zip(&x[k..]) {
        let v = (xk * s).round_ties_even().clamp(-128.0, 127.0) as i8;
        *qk = v;
        total += i32::from(v);
    }
    (s, total)
}
