//! AVX2 (+FMA/F16C) row operations. The AVX-512 table uses these too: the
//! rows are short (128-value heads, 2560–6912-value hidden states), so
//! 8-lane vectors are not the bottleneck, and keeping eight lanes lets the
//! summing loops reproduce the scalar references' eight partial sums
//! exactly.
//!
//! Bit-identical to [`super::scalar`]: `dot`, `axpy`, `rmsnorm`,
//! `relu2_mul`, `dot_f16`, `axpy_f16`, `f16_to_f32`, `f32_to_f16` (the same
//! products and sums in the same order, no FMA contraction). `softmax` and
//! `silu_mul` use [`exp`], a vector exponential within 2 ulp of `f32::exp`
//! for the arguments they see.

use std::arch::x86_64::*;

use half::f16;

/// Eight lanes summed in lane order, as `[f32; 8]::iter().sum()`.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn sum_lanes(v: __m256) -> f32 {
    let mut l = [0f32; 8];
    // SAFETY: `l` holds 8 values.
    unsafe { _mm256_storeu_ps(l.as_mut_ptr(), v) };
    l.iter().sum()
}

/// # Safety
/// The CPU must support AVX2/FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n <= both lengths.
        let (x, y) = unsafe {
            (
                _mm256_loadu_ps(a.as_ptr().add(i)),
                _mm256_loadu_ps(b.as_ptr().add(i)),
            )
        };
        acc = _mm256_add_ps(acc, _mm256_mul_ps(x, y));
        i += 8;
    }
    let mut s = sum_lanes(acc);
    while i < n {
        s += a[i] * b[i];
        i += 1;
    }
    s
}

/// # Safety
/// The CPU must support AVX2/FMA/F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_f16(a: &[f32], b: &[f16]) -> f32 {
    let n = a.len().min(b.len());
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n <= both lengths; f16 is 2 bytes.
        let (x, y) = unsafe {
            (
                _mm256_loadu_ps(a.as_ptr().add(i)),
                _mm256_cvtph_ps(_mm_loadu_si128(b.as_ptr().add(i).cast())),
            )
        };
        acc = _mm256_add_ps(acc, _mm256_mul_ps(x, y));
        i += 8;
    }
    let mut s = sum_lanes(acc);
    while i < n {
        s += a[i] * b[i].to_f32();
        i += 1;
    }
    s
}

/// # Safety
/// The CPU must support AVX2/FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let av = _mm256_set1_ps(a);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n <= both lengths.
        unsafe {
            let p = y.as_mut_ptr().add(i);
            _mm256_storeu_ps(
                p,
                _mm256_add_ps(
                    _mm256_loadu_ps(p),
                    _mm256_mul_ps(av, _mm256_loadu_ps(x.as_ptr().add(i))),
                ),
            );
        }
        i += 8;
    }
    for j in i..n {
        y[j] += a * x[j];
    }
}

/// # Safety
/// The CPU must support AVX2/FMA/F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn axpy_f16(a: f32, x: &[f16], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let av = _mm256_set1_ps(a);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n <= both lengths.
        unsafe {
            let p = y.as_mut_ptr().add(i);
            let xv = _mm256_cvtph_ps(_mm_loadu_si128(x.as_ptr().add(i).cast()));
            _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), _mm256_mul_ps(av, xv)));
        }
        i += 8;
    }
    for j in i..n {
        y[j] += a * x[j].to_f32();
    }
}

/// # Safety
/// The CPU must support AVX2/FMA/F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n <= both lengths.
        unsafe {
            _mm256_storeu_ps(
                dst.as_mut_ptr().add(i),
                _mm256_cvtph_ps(_mm_loadu_si128(src.as_ptr().add(i).cast())),
            )
        };
        i += 8;
    }
    for j in i..n {
        dst[j] = src[j].to_f32();
    }
}

/// # Safety
/// The CPU must support AVX2/FMA/F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn f32_to_f16(src: &[f32], dst: &mut [f16]) {
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n <= both lengths.
        unsafe {
            let h =
                _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(src.as_ptr().add(i)));
            _mm_storeu_si128(dst.as_mut_ptr().add(i).cast(), h);
        }
        i += 8;
    }
    for j in i..n {
        dst[j] = f16::from_f32(src[j]);
    }
}

/// # Safety
/// The CPU must support AVX2/FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let n = x.len();
    // The reference's summation order (crate::exact): the sum is a small
    // share of the norm's time, the scaling below is vectorised.
    let s = crate::exact::cascade_sum(n, |i| x[i] * x[i]);
    let r = 1.0f32 / (s / n as f32 + eps).sqrt();
    let m = n.min(w.len()).min(out.len());
    let rv = _mm256_set1_ps(r);
    let mut i = 0;
    while i + 8 <= m {
        // SAFETY: i + 8 <= m <= every length.
        unsafe {
            let y = _mm256_mul_ps(
                _mm256_loadu_ps(w.as_ptr().add(i)),
                _mm256_mul_ps(_mm256_loadu_ps(x.as_ptr().add(i)), rv),
            );
            _mm256_storeu_ps(out.as_mut_ptr().add(i), y);
        }
        i += 8;
    }
    for j in i..m {
        out[j] = w[j] * (x[j] * r);
    }
}

/// # Safety
/// The CPU must support AVX2/FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn relu2_mul(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let n = gate.len().min(up.len()).min(out.len());
    let zero = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n <= every length.
        unsafe {
            // max(g, 0) returns 0 for a NaN g, as f32::max does.
            let r = _mm256_max_ps(_mm256_loadu_ps(gate.as_ptr().add(i)), zero);
            let y = _mm256_mul_ps(_mm256_mul_ps(r, r), _mm256_loadu_ps(up.as_ptr().add(i)));
            _mm256_storeu_ps(out.as_mut_ptr().add(i), y);
        }
        i += 8;
    }
    for j in i..n {
        let r = gate[j].max(0.0);
        out[j] = r * r * up[j];
    }
}

/// `e^x` for 8 lanes: `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, `e^r` by its
/// degree-7 Taylor polynomial (truncation error < 6e-9 relative), `2^n`
/// built in the exponent field. Arguments below −87.3 give 0 (the scalar
/// result there is subnormal or 0); above 88.3 they saturate near 2^127.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) fn exp(x: __m256) -> __m256 {
    let tiny = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(-87.3));
    let x = _mm256_min_ps(
        _mm256_max_ps(x, _mm256_set1_ps(-87.3)),
        _mm256_set1_ps(88.3),
    );
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    // ln 2 split so that n · LN2_HI is exact.
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_145_75), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428_606_8e-6), r);
    let mut p = _mm256_set1_ps(1.0 / 5040.0);
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    )));
    _mm256_andnot_ps(tiny, _mm256_mul_ps(p, scale))
}

/// # Safety
/// The CPU must support AVX2/FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn softmax(x: &mut [f32]) {
    let n = x.len();
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mv = _mm256_set1_ps(max);
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n.
        unsafe {
            let p = x.as_mut_ptr().add(i);
            let e = exp(_mm256_sub_ps(_mm256_loadu_ps(p), mv));
            _mm256_storeu_ps(p, e);
            acc = _mm256_add_ps(acc, e);
        }
        i += 8;
    }
    let mut sum = sum_lanes(acc);
    for v in &mut x[i..] {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = _mm256_set1_ps(1.0 / sum);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n.
        unsafe {
            let p = x.as_mut_ptr().add(i);
            _mm256_storeu_ps(p, _mm256_mul_ps(_mm256_loadu_ps(p), inv));
        }
        i += 8;
    }
    let inv = 1.0 / sum;
    for v in &mut x[i..] {
        *v *= inv;
    }
}

/// # Safety
/// The CPU must support AVX2/FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn silu_mul(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let n = gate.len().min(up.len()).min(out.len());
    let one = _mm256_set1_ps(1.0);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n <= every length.
        unsafe {
            let g = _mm256_loadu_ps(gate.as_ptr().add(i));
            let e = exp(_mm256_sub_ps(_mm256_setzero_ps(), g));
            let y = _mm256_mul_ps(
                _mm256_div_ps(g, _mm256_add_ps(one, e)),
                _mm256_loadu_ps(up.as_ptr().add(i)),
            );
            _mm256_storeu_ps(out.as_mut_ptr().add(i), y);
        }
        i += 8;
    }
    for j in i..n {
        let g = gate[j];
        out[j] = g / (1.0 + (-g).exp()) * up[j];
    }
}
