//! AVX2 (+FMA/F16C) row operations. The AVX-512 table uses these too: the
//! rows are short (128-value heads, 2560–6912-value hidden states), so
//! 8-lane vectors are not the bottleneck, and keeping eight lanes lets the
//! summing loops reproduce the scalar references' eight partial sums
//! exactly.
//!
//! Every function is bit-identical to its [`super::scalar`] reference: the
//! same products and sums in the same order, FMA only where the reference
//! has `mul_add` (inside SLEEF's exponential, [`sleef_exp`]).

use std::arch::x86_64::*;

use half::f16;

use crate::ternary::prefetch;

/// Eight lanes summed in lane order, as `[f32; 8]::iter().sum()`.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn sum_lanes(v: __m256) -> f32 {
    let mut l = [0f32; 8];
    // SAFETY: `l` holds 8 values.
    unsafe { _mm256_storeu_ps(l.as_mut_ptr(), v) };
    l.iter().sum()
}

/// [`sum_lanes`] of eight vectors at once: lane `i` of the result is the
/// sum of `v[i]`'s lanes in lane order, from the same starting value as
/// `iter().sum()`. The 8 × 8 transpose ([`transpose8`], 24 shuffles) lets
/// eight vector additions do what would be 64 dependent scalar ones.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn sum_lanes8(v: [__m256; 8]) -> __m256 {
    // Rust's float sum folds from its own identity (−0.0 or 0.0 depending on
    // the version): start from the same value.
    let start = _mm256_set1_ps([0f32; 0].iter().sum::<f32>());
    transpose8(v)
        .into_iter()
        .fold(start, |s, column| _mm256_add_ps(s, column))
}

/// The 8 × 8 transpose of `m`: lane `i` of `out[j]` is lane `j` of `m[i]`.
#[target_feature(enable = "avx2,fma")]
pub(crate) fn transpose8(m: [__m256; 8]) -> [__m256; 8] {
    // t[2p], t[2p+1]: rows 2p and 2p+1 interleaved, columns (0, 1 | 4, 5)
    // and (2, 3 | 6, 7).
    let t: [__m256; 8] = std::array::from_fn(|i| {
        let (a, b) = (m[2 * (i / 2)], m[2 * (i / 2) + 1]);
        if i % 2 == 0 {
            _mm256_unpacklo_ps(a, b)
        } else {
            _mm256_unpackhi_ps(a, b)
        }
    });
    // u[4q + j]: column j (and j + 4 in the high lane) of rows 4q..4q+4.
    let u: [__m256; 8] = std::array::from_fn(|i| {
        let (q, j) = (i / 4, i % 4);
        let (a, b) = (t[4 * q + j / 2], t[4 * q + 2 + j / 2]);
        if j % 2 == 0 {
            _mm256_shuffle_ps::<0x44>(a, b)
        } else {
            _mm256_shuffle_ps::<0xEE>(a, b)
        }
    });
    std::array::from_fn(|j| {
        let (a, b) = (u[j % 4], u[4 + j % 4]);
        if j < 4 {
            _mm256_permute2f128_ps::<0x20>(a, b)
        } else {
            _mm256_permute2f128_ps::<0x31>(a, b)
        }
    })
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

/// Heads whose scores one pass over the keys computes.
const SCORE_HEADS: usize = 4;
/// Columns of the outputs one pass over a run of value rows accumulates,
/// and heads per pass: 4 × 2 accumulators.
const VALUE_COLS: usize = 16;
const VALUE_HEADS: usize = 4;
/// How far ahead of the key rows being scored they are prefetched.
const SCORE_PREFETCH: usize = 4096;
/// Value rows per run: the passes over the columns re-read the run from L1
/// (16 rows of 128 f16 are 4 KB). Short runs, each asking for the run after
/// next, read the cache fastest: 2B-4T at depth 2048 on a Zen 2, one core,
/// 9.0 ms per token for 16 rows, 9.9 for 8, 10.3–10.8 for 32, 12.0 for 64,
/// 13.4 for 128 (`examples/attn_probe.rs`).
const VALUE_ROWS: usize = 16;

/// [`super::scalar::attn_scores_f16`]: each key row is loaded and widened
/// once for up to four heads, and two keys go side by side, so eight dot
/// products (each in [`dot_f16`]'s order) overlap and share one transposed
/// lane sum ([`sum_lanes8`]). At long contexts the key rows come from
/// memory: prefetching them took 2B-4T's scores at depth 2048 on a Zen 2,
/// one core, from 10.2–11.5 to 7.6 ms per token; the pairing alone gained
/// less than that spread (11.9 before it, `examples/attn_probe.rs`).
///
/// # Safety
/// The CPU must support AVX2/FMA/F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn attn_scores_f16(
    q: &[f32],
    keys: &[f16],
    d: usize,
    scale: f32,
    scores: &mut [f32],
) {
    let (heads, n) = (q.len() / d, keys.len() / d);
    assert!(
        scores.len() >= heads * n,
        "attention scores buffer too short"
    );
    if !d.is_multiple_of(8) {
        for (h, qh) in q.chunks_exact(d).enumerate() {
            for (j, k) in keys.chunks_exact(d).enumerate() {
                // SAFETY: the CPU has AVX2 (caller).
                scores[h * n + j] = unsafe { dot_f16(qh, k) } * scale;
            }
        }
        return;
    }
    let mut h = 0;
    while h < heads {
        let g = SCORE_HEADS.min(heads - h);
        let (qh, sh) = (&q[h * d..(h + g) * d], &mut scores[h * n..(h + g) * n]);
        // SAFETY: the CPU has AVX2 (caller); `qh` holds `g` heads and `sh`
        // `g` rows of `n` scores; d is a multiple of 8.
        unsafe {
            match g {
                4 => scores_block::<4>(qh, keys, d, scale, sh),
                3 => scores_block::<3>(qh, keys, d, scale, sh),
                2 => scores_block::<2>(qh, keys, d, scale, sh),
                _ => scores_block::<1>(qh, keys, d, scale, sh),
            }
        }
        h += g;
    }
}

/// `G` heads of [`attn_scores_f16`].
///
/// # Safety
/// AVX2/FMA/F16C; `q` holds `G · d` values, `scores` `G · n`; `d` is a
/// multiple of 8.
#[allow(clippy::needless_range_loop)] // constant ranges: unrolled, in registers
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn scores_block<const G: usize>(
    q: &[f32],
    keys: &[f16],
    d: usize,
    scale: f32,
    scores: &mut [f32],
) {
    let n = keys.len() / d;
    debug_assert!(q.len() == G * d && scores.len() == G * n && d.is_multiple_of(8));
    let mut j = 0;
    while j < n {
        // Keys j and j + 1; an odd last key goes with itself, its second
        // results unused.
        let pair = (j + 1 < n) as usize;
        let (k0, k1) = (keys[j * d..].as_ptr(), keys[(j + pair) * d..].as_ptr());
        // The key rows stream from memory at long contexts: ask for those
        // SCORE_PREFETCH bytes ahead, a line per 32 f16.
        for line in (0..2 * d).step_by(32) {
            prefetch(k0.wrapping_add(line + SCORE_PREFETCH / 2).cast());
        }
        let mut acc = [[_mm256_setzero_ps(); G]; 2];
        let mut i = 0;
        while i < d {
            // SAFETY: i + 8 <= d: inside both key rows and every head of q.
            unsafe {
                let kv0 = _mm256_cvtph_ps(_mm_loadu_si128(k0.add(i).cast()));
                let kv1 = _mm256_cvtph_ps(_mm_loadu_si128(k1.add(i).cast()));
                for g in 0..G {
                    let x = _mm256_loadu_ps(q.as_ptr().add(g * d + i));
                    acc[0][g] = _mm256_add_ps(acc[0][g], _mm256_mul_ps(x, kv0));
                    acc[1][g] = _mm256_add_ps(acc[1][g], _mm256_mul_ps(x, kv1));
                }
            }
            i += 8;
        }
        // Lane 2g + k: the dot product of head g with key j + k.
        let sums = sum_lanes8(std::array::from_fn(|i| {
            if i / 2 < G {
                acc[i % 2][i / 2]
            } else {
                _mm256_setzero_ps()
            }
        }));
        let mut l = [0f32; 8];
        // SAFETY: `l` holds 8 values.
        unsafe { _mm256_storeu_ps(l.as_mut_ptr(), _mm256_mul_ps(sums, _mm256_set1_ps(scale))) };
        for g in 0..G {
            scores[g * n + j] = l[2 * g];
            if pair == 1 {
                scores[g * n + j + 1] = l[2 * g + 1];
            }
        }
        j += 2;
    }
}

/// [`super::scalar::attn_values_f16`]: the outputs of up to four heads, 16
/// columns at a time, stay in registers over a run of [`VALUE_ROWS`] value
/// rows (each row's columns widened once for all heads), then are parked in
/// `out` while the next columns are done; the next run picks them up. Every
/// output element is still `((0 + p₀v₀) + p₁v₁) + …` in row order, as
/// [`axpy_f16`]'s. (One pass over all the rows per column block read each
/// 256-byte row in 64-byte pieces eight times over from L2 or memory.)
///
/// # Safety
/// The CPU must support AVX2/FMA/F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn attn_values_f16(p: &[f32], values: &[f16], d: usize, out: &mut [f32]) {
    let (heads, n) = (out.len() / d, values.len() / d);
    assert!(p.len() >= heads * n, "attention weights too short");
    if !d.is_multiple_of(VALUE_COLS) {
        for (h, oh) in out.chunks_exact_mut(d).enumerate() {
            oh.fill(0.0);
            for (j, v) in values.chunks_exact(d).enumerate() {
                // SAFETY: the CPU has AVX2 (caller).
                unsafe { axpy_f16(p[h * n + j], v, oh) };
            }
        }
        return;
    }
    let mut h = 0;
    while h < heads {
        let g = VALUE_HEADS.min(heads - h);
        let (ph, oh) = (&p[h * n..(h + g) * n], &mut out[h * d..(h + g) * d]);
        // SAFETY: the CPU has AVX2 (caller); `ph` holds `g` rows of `n`
        // weights, `oh` `g` heads; d is a multiple of 16.
        unsafe {
            match g {
                4 => values_block::<4>(ph, values, d, oh),
                3 => values_block::<3>(ph, values, d, oh),
                2 => values_block::<2>(ph, values, d, oh),
                _ => values_block::<1>(ph, values, d, oh),
            }
        }
        h += g;
    }
}

/// `G` heads of [`attn_values_f16`].
///
/// # Safety
/// AVX2/FMA/F16C; `p` holds `G · n` weights, `out` `G · d` values; `d` is a
/// multiple of 16.
#[allow(clippy::needless_range_loop)] // constant ranges: unrolled, in registers
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn values_block<const G: usize>(p: &[f32], values: &[f16], d: usize, out: &mut [f32]) {
    let n = values.len() / d;
    debug_assert!(p.len() == G * n && out.len() == G * d && d.is_multiple_of(VALUE_COLS));
    out.fill(0.0);
    let base = out.as_mut_ptr();
    let mut j0 = 0;
    while j0 < n {
        let rows = j0..n.min(j0 + VALUE_ROWS);
        let mut c = 0;
        while c < d {
            // Columns c.. of head g of `out` (c + 16 <= d: the loads and
            // stores through it stay inside `out`).
            let o = |g: usize| base.wrapping_add(g * d + c);
            // SAFETY: as just said.
            let mut acc: [[__m256; 2]; G] = std::array::from_fn(|g| unsafe {
                [_mm256_loadu_ps(o(g)), _mm256_loadu_ps(o(g).add(8))]
            });
            for j in rows.clone() {
                // The first passes over a run ask for the run after next,
                // line `pass` of each row (32 f16 per line) until the whole
                // rows are asked for: the rows stream from memory at long
                // contexts.
                let line = c / VALUE_COLS * 32;
                if line < d {
                    prefetch(
                        values
                            .as_ptr()
                            .wrapping_add((j + 2 * VALUE_ROWS) * d + line)
                            .cast(),
                    );
                }
                // SAFETY: row j < n, columns c..c + 16 <= d.
                let x: [__m256; 2] = std::array::from_fn(|u| unsafe {
                    _mm256_cvtph_ps(_mm_loadu_si128(
                        values.as_ptr().add(j * d + c + 8 * u).cast(),
                    ))
                });
                for g in 0..G {
                    // SAFETY: g · n + j < G · n = p.len().
                    let a = _mm256_set1_ps(unsafe { *p.get_unchecked(g * n + j) });
                    for u in 0..2 {
                        acc[g][u] = _mm256_add_ps(acc[g][u], _mm256_mul_ps(a, x[u]));
                    }
                }
            }
            for g in 0..G {
                for u in 0..2 {
                    // SAFETY: as for the loads above.
                    unsafe { _mm256_storeu_ps(o(g).add(8 * u), acc[g][u]) };
                }
            }
            c += VALUE_COLS;
        }
        j0 = rows.end;
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

/// `Σ x²` in the order of [`crate::exact::cascade_sum`] (PyTorch's cascade
/// sum): its eight-float vectors are `__m256`s here, with the same products
/// and additions lane by lane, so the result is bit-identical. (The scalar
/// form, compiled without AVX and with bounds checks, cost 2 % of a decode
/// step on two Zen 2 cores, all of it on the calling thread while the other
/// waited.)
///
/// # Safety
/// The CPU must support AVX2.
#[allow(clippy::needless_range_loop)] // PyTorch's loops, line by line
#[target_feature(enable = "avx2,fma")]
unsafe fn cascade_sum_squares(x: &[f32]) -> f32 {
    const LEVELS: usize = crate::exact::CASCADE_LEVELS;
    let (vec_size, size_ilp, level_power) = crate::exact::cascade_shape(x.len());
    let level_step = 1usize << level_power;
    let level_mask = level_step - 1;
    // Vector `v` squared (v < vec_size).
    let sq = |v: usize| {
        // SAFETY: 8·v + 8 <= 8·vec_size <= n.
        let a = unsafe { _mm256_loadu_ps(x.as_ptr().add(8 * v)) };
        _mm256_mul_ps(a, a)
    };
    let mut acc = [[_mm256_setzero_ps(); 4]; LEVELS];
    let mut i = 0;
    while i + level_step <= size_ilp {
        for _ in 0..level_step {
            for k in 0..4 {
                acc[0][k] = _mm256_add_ps(acc[0][k], sq(i * 4 + k));
            }
            i += 1;
        }
        for j in 1..LEVELS {
            for k in 0..4 {
                acc[j][k] = _mm256_add_ps(acc[j][k], acc[j - 1][k]);
                acc[j - 1][k] = _mm256_setzero_ps();
            }
            if i & (level_mask << (j * level_power)) != 0 {
                break;
            }
        }
    }
    while i < size_ilp {
        for k in 0..4 {
            acc[0][k] = _mm256_add_ps(acc[0][k], sq(i * 4 + k));
        }
        i += 1;
    }
    for j in 1..LEVELS {
        for k in 0..4 {
            acc[0][k] = _mm256_add_ps(acc[0][k], acc[j][k]);
        }
    }
    let mut partial = acc[0];
    for v in size_ilp * 4..vec_size {
        partial[0] = _mm256_add_ps(partial[0], sq(v));
    }
    for k in 1..4 {
        partial[0] = _mm256_add_ps(partial[0], partial[k]);
    }
    let mut r = 0.0f32;
    for &v in &x[vec_size * 8..] {
        r += v * v;
    }
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds 8 values.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), partial[0]) };
    for l in lanes {
        r += l;
    }
    r
}

/// # Safety
/// The CPU must support AVX2/FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let n = x.len();
    // SAFETY: AVX2 is available (this function's contract).
    let s = unsafe { cascade_sum_squares(x) };
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

/// SLEEF's `expf_u10` on eight lanes: lane for lane the operations of
/// [`crate::exact::sleef_expf`] (the product `d · log2 e` rounded half to
/// even, the two-step FMA reduction, the FMA polynomial,
/// `1 + fma(s·s, u, s)`, the two-factor power of two, then the special
/// cases), so every lane is bit-identical to it.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) fn sleef_exp(d: __m256) -> __m256 {
    let qr = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        d,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    // In range |qr| ≤ 151, so the conversion is exact; out-of-range lanes
    // (NaN, |d| > 100) are replaced below whatever they compute.
    let q = _mm256_cvttps_epi32(qr);
    let qf = _mm256_cvtepi32_ps(q);
    let s = _mm256_fmadd_ps(qf, _mm256_set1_ps(-0.693_145_75), d);
    let s = _mm256_fmadd_ps(qf, _mm256_set1_ps(-1.428_606_8e-6), s);
    let mut u = _mm256_set1_ps(0.000_198_527_62);
    for c in [
        0.001_393_043_6,
        0.008_333_361,
        0.041_666_485,
        0.166_666_67,
        0.5,
    ] {
        u = _mm256_fmadd_ps(u, s, _mm256_set1_ps(c));
    }
    let u = _mm256_add_ps(
        _mm256_set1_ps(1.0),
        _mm256_fmadd_ps(_mm256_mul_ps(s, s), u, s),
    );
    let pow2i = |q: __m256i| {
        _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
            q,
            _mm256_set1_epi32(0x7f),
        )))
    };
    let h = _mm256_srai_epi32::<1>(q);
    let r = _mm256_mul_ps(_mm256_mul_ps(u, pow2i(h)), pow2i(_mm256_sub_epi32(q, h)));
    let r = _mm256_blendv_ps(
        r,
        _mm256_setzero_ps(),
        _mm256_cmp_ps::<_CMP_LT_OQ>(d, _mm256_set1_ps(-104.0)),
    );
    let r = _mm256_blendv_ps(
        r,
        _mm256_set1_ps(f32::INFINITY),
        _mm256_cmp_ps::<_CMP_GT_OQ>(d, _mm256_set1_ps(100.0)),
    );
    _mm256_blendv_ps(r, d, _mm256_cmp_ps::<_CMP_UNORD_Q>(d, d))
}

/// # Safety
/// The CPU must support AVX2/FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn exp_sub(x: &mut [f32], m: f32) {
    let n = x.len();
    let mv = _mm256_set1_ps(m);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n.
        unsafe {
            let p = x.as_mut_ptr().add(i);
            _mm256_storeu_ps(p, sleef_exp(_mm256_sub_ps(_mm256_loadu_ps(p), mv)));
        }
        i += 8;
    }
    for v in &mut x[i..] {
        *v -= m;
    }
    exp_tail(&mut x[i..]);
}

/// SLEEF's exponential of fewer than 8 values, through one padded vector.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn exp_tail(x: &mut [f32]) {
    if x.is_empty() {
        return;
    }
    let mut l = [0f32; 8];
    l[..x.len()].copy_from_slice(x);
    // SAFETY: `l` holds 8 values.
    unsafe { _mm256_storeu_ps(l.as_mut_ptr(), sleef_exp(_mm256_loadu_ps(l.as_ptr()))) };
    x.copy_from_slice(&l[..x.len()]);
}

/// # Safety
/// The CPU must support AVX2/FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn softmax(x: &mut [f32]) {
    let n = x.len();
    // The maximum is exact in any order; `max_ps(v, m)` returns `m` for a
    // NaN `v`, as `f32::max` ignores NaN. (Which zero a zero maximum has
    // cannot change `v - max`'s exponential.)
    let mut mv = _mm256_set1_ps(f32::NEG_INFINITY);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n.
        mv = _mm256_max_ps(unsafe { _mm256_loadu_ps(x.as_ptr().add(i)) }, mv);
        i += 8;
    }
    let mut l = [0f32; 8];
    // SAFETY: `l` holds 8 values.
    unsafe { _mm256_storeu_ps(l.as_mut_ptr(), mv) };
    let max = l
        .iter()
        .chain(&x[i..])
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mv = _mm256_set1_ps(max);
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n.
        unsafe {
            let p = x.as_mut_ptr().add(i);
            let e = sleef_exp(_mm256_sub_ps(_mm256_loadu_ps(p), mv));
            _mm256_storeu_ps(p, e);
            acc = _mm256_add_ps(acc, e);
        }
        i += 8;
    }
    let mut sum = sum_lanes(acc);
    for v in &mut x[i..] {
        *v -= max;
    }
    exp_tail(&mut x[i..]);
    for &v in &x[i..] {
        sum += v;
    }
    let inv = 1.0 / sum;
    let iv = _mm256_set1_ps(inv);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n.
        unsafe {
            let p = x.as_mut_ptr().add(i);
            _mm256_storeu_ps(p, _mm256_mul_ps(_mm256_loadu_ps(p), iv));
        }
        i += 8;
    }
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
    // `-g` flips the sign bit (also of zeros and NaNs), as scalar negation.
    let sign = _mm256_set1_ps(-0.0);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n <= every length.
        unsafe {
            let g = _mm256_loadu_ps(gate.as_ptr().add(i));
            let e = sleef_exp(_mm256_xor_ps(g, sign));
            let y = _mm256_mul_ps(
                _mm256_div_ps(g, _mm256_add_ps(one, e)),
                _mm256_loadu_ps(up.as_ptr().add(i)),
            );
            _mm256_storeu_ps(out.as_mut_ptr().add(i), y);
        }
        i += 8;
    }
    let tail = &mut out[i..n];
    for (e, &g) in tail.iter_mut().zip(&gate[i..]) {
        *e = -g;
    }
    exp_tail(tail);
    for ((o, &g), &u) in tail.iter_mut().zip(&gate[i..]).zip(&up[i..]) {
        *o = g / (1.0 + *o) * u;
    }
}

/// # Safety
/// The CPU must support AVX2/FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn rope_neox(head: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = head.len() / 2;
    let (lo, hi) = head.split_at_mut(half);
    let m = half.min(cos.len()).min(sin.len());
    let sign = _mm256_set1_ps(-0.0);
    let mut i = 0;
    while i + 8 <= m {
        // SAFETY: i + 8 <= m <= every length (`hi` has at least `half`).
        unsafe {
            let pa = lo.as_mut_ptr().add(i);
            let pb = hi.as_mut_ptr().add(i);
            let (a, b) = (_mm256_loadu_ps(pa), _mm256_loadu_ps(pb));
            let c = _mm256_loadu_ps(cos.as_ptr().add(i));
            let s = _mm256_loadu_ps(sin.as_ptr().add(i));
            // a·c + (−b)·s and b·c + a·s, unfused, as the reference.
            let na = _mm256_add_ps(
                _mm256_mul_ps(a, c),
                _mm256_mul_ps(_mm256_xor_ps(b, sign), s),
            );
            let nb = _mm256_add_ps(_mm256_mul_ps(b, c), _mm256_mul_ps(a, s));
            _mm256_storeu_ps(pa, na);
            _mm256_storeu_ps(pb, nb);
        }
        i += 8;
    }
    for j in i..half {
        let (a, b) = (lo[j], hi[j]);
        lo[j] = a * cos[j] + -b * sin[j];
        hi[j] = b * cos[j] + a * sin[j];
    }
}

/// # Safety
/// The CPU must support AVX2/FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn rope_interleaved(head: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = head.len() / 2;
    let m = half.min(cos.len()).min(sin.len());
    let mut i = 0;
    while i + 4 <= m {
        // SAFETY: i + 4 <= m, so pairs i..i+4 (8 values of `head`) and four
        // angles are in bounds.
        unsafe {
            let p = head.as_mut_ptr().add(2 * i);
            // x = [a0 b0 a1 b1 …], swapped = [b0 a0 b1 a1 …].
            let x = _mm256_loadu_ps(p);
            let swapped = _mm256_permute_ps::<0b1011_0001>(x);
            let c4 = _mm_loadu_ps(cos.as_ptr().add(i));
            let s4 = _mm_loadu_ps(sin.as_ptr().add(i));
            let c = _mm256_set_m128(_mm_unpackhi_ps(c4, c4), _mm_unpacklo_ps(c4, c4));
            let s = _mm256_set_m128(_mm_unpackhi_ps(s4, s4), _mm_unpacklo_ps(s4, s4));
            // Even lanes a·c − b·s, odd lanes b·c + a·s, unfused.
            let y = _mm256_addsub_ps(_mm256_mul_ps(x, c), _mm256_mul_ps(swapped, s));
            _mm256_storeu_ps(p, y);
        }
        i += 4;
    }
    for j in i..half {
        let (a, b) = (head[2 * j], head[2 * j + 1]);
        head[2 * j] = a * cos[j] - b * sin[j];
        head[2 * j + 1] = b * cos[j] + a * sin[j];
    }
}

/// # Safety
/// The CPU must support AVX2/FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn quantize_i8(x: &[f32], q: &mut [i8]) -> f32 {
    let n = x.len();
    let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    // The maximum is exact in any order; `max_ps(v, m)` ignores a NaN `v`
    // as `f32::max` does.
    let mut mv = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n.
        let v = unsafe { _mm256_loadu_ps(x.as_ptr().add(i)) };
        mv = _mm256_max_ps(_mm256_and_ps(v, abs), mv);
        i += 8;
    }
    let mut l = [0f32; 8];
    // SAFETY: `l` holds 8 values.
    unsafe { _mm256_storeu_ps(l.as_mut_ptr(), mv) };
    let amax = l
        .iter()
        .fold(0.0f32, |m, &v| m.max(v))
        .max(x[i..].iter().fold(0.0f32, |m, v| m.max(v.abs())));
    let d = amax / 127.0;
    let id = if d > 0.0 { 1.0 / d } else { 0.0 };
    let m = n.min(q.len());
    let idv = _mm256_set1_ps(id);
    let half = _mm256_set1_ps(0.5);
    let sign = _mm256_set1_ps(-0.0);
    let one = _mm256_set1_ps(1.0);
    let top = _mm256_set1_ps(127.0);
    let mut i = 0;
    while i + 8 <= m {
        // SAFETY: i + 8 <= m <= both lengths; 8 codes are 8 bytes.
        unsafe {
            let v = _mm256_mul_ps(_mm256_loadu_ps(x.as_ptr().add(i)), idv);
            // Half away from zero (`f32::round`): truncate, then step away
            // from zero when the (exact) fraction is at least one half.
            let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(v);
            let away = _mm256_cmp_ps::<_CMP_GE_OQ>(_mm256_and_ps(_mm256_sub_ps(v, t), abs), half);
            let step = _mm256_and_ps(away, _mm256_or_ps(one, _mm256_and_ps(v, sign)));
            let r = _mm256_add_ps(t, step);
            // `as i8`: NaN to 0, saturate (the packs saturate below −128;
            // values ≥ 2^31 would convert to i32::MIN, so clamp them first).
            let r = _mm256_min_ps(_mm256_and_ps(r, _mm256_cmp_ps::<_CMP_ORD_Q>(r, r)), top);
            let w = _mm256_cvtps_epi32(r);
            let w16 = _mm_packs_epi32(_mm256_castsi256_si128(w), _mm256_extracti128_si256::<1>(w));
            _mm_storel_epi64(q.as_mut_ptr().add(i).cast(), _mm_packs_epi16(w16, w16));
        }
        i += 8;
    }
    for j in i..m {
        q[j] = (x[j] * id).round() as i8;
    }
    d
}

/// # Safety
/// The CPU must support AVX2/FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dot_i8(a: &[f32], b: &[i8]) -> f32 {
    let n = a.len().min(b.len());
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n <= both lengths; 8 codes are 8 bytes.
        let (x, y) = unsafe {
            (
                _mm256_loadu_ps(a.as_ptr().add(i)),
                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(
                    b.as_ptr().add(i).cast(),
                ))),
            )
        };
        acc = _mm256_add_ps(acc, _mm256_mul_ps(x, y));
        i += 8;
    }
    let mut s = sum_lanes(acc);
    while i < n {
        s += a[i] * f32::from(b[i]);
        i += 1;
    }
    s
}

/// # Safety
/// The CPU must support AVX2/FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn axpy_i8(a: f32, x: &[i8], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let av = _mm256_set1_ps(a);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n <= both lengths; 8 codes are 8 bytes.
        unsafe {
            let p = y.as_mut_ptr().add(i);
            let xv = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(
                x.as_ptr().add(i).cast(),
            )));
            _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), _mm256_mul_ps(av, xv)));
        }
        i += 8;
    }
    for j in i..n {
        y[j] += a * f32::from(x[j]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose8_transposes() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            eprintln!("skipping: this CPU lacks AVX2");
            return;
        }
        let m: [[f32; 8]; 8] =
            std::array::from_fn(|i| std::array::from_fn(|j| (10 * i + j) as f32));
        // SAFETY: AVX2 is present (checked above); the loads and stores
        // cover 8 floats each.
        let got: [[f32; 8]; 8] = unsafe {
            let v = transpose8(std::array::from_fn(|i| _mm256_loadu_ps(m[i].as_ptr())));
            std::array::from_fn(|j| {
                let mut row = [0f32; 8];
                _mm256_storeu_ps(row.as_mut_ptr(), v[j]);
                row
            })
        };
        for i in 0..8 {
            for j in 0..8 {
                assert_eq!(got[j][i], m[i][j], "out[{j}] lane {i}");
            }
        }
    }
}
