//! The reference's float arithmetic, reproduced operation by operation.
//!
//! Every BitLinear rounds its input to int8 with round-half-to-even, and a
//! trained BitNet produces activations that sit exactly on a .5 tie
//! surprisingly often. If our f32 value differs from the reference's by one
//! ulp there, the int8 differs by one and the logits move by 1e-2; over a
//! 256-token perplexity window this happens several times. So where it is
//! cheap we compute each float operation exactly the way the reference
//! (transformers on PyTorch's CPU kernels) does, which makes hidden states
//! bit-identical to it and perplexity exact. The recipes below were
//! established by capturing every intermediate of the reference forward and
//! matching it bit for bit:
//!
//! * **Activation scale**: `127 / amax` in PyTorch is `reciprocal(amax) * 127`,
//!   two roundings ([`activation_scale`], used by every quantiser level).
//! * **RMSNorm**: the sum of squares uses PyTorch's cascade sum over 8-float
//!   vectors (four interleaved accumulators, then lanes in order; PyTorch runs
//!   its AVX2 sum kernel even on AVX-512 machines), then a true division by N,
//!   `1 / sqrt(var + eps)`, and `w * (x * r)` ([`rmsnorm`]; every `ops`
//!   level).
//! * **Rotary tables**: `inv_freq` is the correctly rounded `1 / theta^(2i/d)`;
//!   cos and sin come from Intel MKL's vector math library (VML, "HA"
//!   accuracy), which is not correctly rounded (about 5 % of values are one
//!   ulp away). [`mkl_cos`] and [`mkl_sin`] reproduce its fast path.
//! * **Attention scores**: `q·k` is one fused multiply-add chain over the head
//!   dimensions (an MKL GEMM kernel) for sequences of 4 or more tokens, a
//!   plain multiply-then-add loop for 1 or 2 tokens, and a 16-lane kernel for
//!   exactly 3 ([`score`]); the result is then multiplied by the f32
//!   `head_dim^-0.5`.
//! * **Softmax**: SLEEF's `expf_u10` of `x - max`, summed sequentially for rows
//!   under 16 entries and otherwise in 16 lanes (position `j` in lane `j % 16`)
//!   reduced by a halving tree, then multiplied by `1 / sum` ([`softmax`]).
//! * **Attention output**: one fused multiply-add chain over the positions per
//!   output element for 3 or more tokens, multiply-then-add for 1 or 2.
//!
//! The "number of tokens" that selects a kernel is the length of the whole
//! sequence the reference would process at once (it recomputes without a
//! cache), which is the cache length after the current batch.
//!
//! The LM head is not reproduced (MKL's choice of GEMM kernel depends on the
//! batch shape); its ~1e-6 differences never feed back into a quantisation.

/// `s = 127 / max(amax, 1e-5)` computed as PyTorch does: `(1 / amax) * 127`.
#[inline]
pub fn activation_scale(amax: f32) -> f32 {
    (1.0f32 / amax.max(1e-5)) * 127.0
}

/// Levels of [`cascade_sum`].
pub(crate) const CASCADE_LEVELS: usize = 4;

/// The shape of [`cascade_sum`] over `n` values: whole 8-float vectors,
/// steps of the four interleaved accumulators, and the power of two of a
/// level's length.
pub(crate) fn cascade_shape(n: usize) -> (usize, usize, usize) {
    let vec_size = n / 8;
    let size_ilp = vec_size / 4;
    let ceil_log2 = if size_ilp <= 2 {
        1
    } else {
        (usize::BITS - (size_ilp - 1).leading_zeros()) as usize
    };
    (vec_size, size_ilp, (ceil_log2 / CASCADE_LEVELS).max(4))
}

/// PyTorch's cascade sum of `n` values given by `load` (SumKernel's
/// `vectorized_inner_sum` with 8-float vectors): vectors are accumulated by
/// four interleaved accumulators in levels of 16 (so that only similar
/// magnitudes meet), the four are added, leftover scalars are summed, then the
/// 8 lanes are added in order.
// Indexed loops mirror PyTorch's kernel line by line, which is what makes the
// order checkable.
#[allow(clippy::needless_range_loop)]
pub fn cascade_sum(n: usize, load: impl Fn(usize) -> f32) -> f32 {
    const W: usize = 8;
    const LEVELS: usize = CASCADE_LEVELS;
    let (vec_size, size_ilp, level_power) = cascade_shape(n);
    let level_step = 1usize << level_power;
    let level_mask = level_step - 1;
    let mut acc = [[[0f32; W]; 4]; LEVELS];
    let add_vec = |acc: &mut [f32; W], v: usize| {
        for (l, a) in acc.iter_mut().enumerate() {
            *a += load(v * W + l);
        }
    };
    let mut i = 0;
    while i + level_step <= size_ilp {
        for _ in 0..level_step {
            for k in 0..4 {
                add_vec(&mut acc[0][k], i * 4 + k);
            }
            i += 1;
        }
        for j in 1..LEVELS {
            for k in 0..4 {
                for l in 0..W {
                    acc[j][k][l] += acc[j - 1][k][l];
                    acc[j - 1][k][l] = 0.0;
                }
            }
            if i & (level_mask << (j * level_power)) != 0 {
                break;
            }
        }
    }
    while i < size_ilp {
        for k in 0..4 {
            add_vec(&mut acc[0][k], i * 4 + k);
        }
        i += 1;
    }
    for j in 1..LEVELS {
        for k in 0..4 {
            for l in 0..W {
                acc[0][k][l] += acc[j][k][l];
            }
        }
    }
    let mut partial = acc[0];
    for v in size_ilp * 4..vec_size {
        add_vec(&mut partial[0], v);
    }
    for k in 1..4 {
        for l in 0..W {
            partial[0][l] += partial[k][l];
        }
    }
    let mut r = 0.0f32;
    for k in vec_size * W..n {
        r += load(k);
    }
    for l in 0..W {
        r += partial[0][l];
    }
    r
}

/// RMSNorm exactly as the reference computes it:
/// `out_i = w_i * (x_i * (1 / sqrt(sum(x²) / n + eps)))`.
pub fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let n = x.len();
    let var = cascade_sum(n, |i| x[i] * x[i]) / n as f32;
    let r = 1.0f32 / (var + eps).sqrt();
    for ((o, &xv), &wv) in out.iter_mut().zip(x).zip(w) {
        *o = wv * (xv * r);
    }
}

/// `inv_freq[i] = 1 / theta^(2i / dim)` (each step rounded to f32 once).
pub fn rope_inv_freq(dim: usize, theta: f32) -> Vec<f32> {
    (0..dim / 2)
        .map(|i| {
            let e = (2 * i) as f32 / dim as f32;
            let p = f64::from(theta).powf(f64::from(e)) as f32;
            1.0f32 / p
        })
        .collect()
}

const TWO_POW_23_X1_5: f32 = 12_582_912.0;

fn mkl_poly(r: f64) -> f64 {
    let c1 = f64::from_bits(0x3ec5_dbdf_0e4c_7dee);
    let c2 = f64::from_bits(0xbf29_f6ff_eea7_3463);
    let c3 = f64::from_bits(0x3f81_10ed_3804_ca96);
    let c4 = f64::from_bits(0xbfc5_5554_bc83_6587);
    let r2 = r * r;
    let mut p = r2 * c1;
    p += c2;
    p *= r2;
    p += c3;
    p *= r2;
    p += c4;
    p *= r2;
    p * r + r
}

fn mkl_reduce(a: f32, n: f32) -> f64 {
    let p1 = f64::from_bits(0x4009_21fb_5444_0000);
    let p2 = f64::from_bits(0x3d96_8c23_4c4c_6629);
    let r = f64::from(a) - f64::from(n) * p1;
    r - f64::from(n) * p2
}

/// Intel MKL VML's single-precision cosine (HA accuracy, |x| ≤ 1e4 path).
pub fn mkl_cos(x: f32) -> f32 {
    let a = x.abs();
    let y = (a + f32::from_bits(0x3fc9_0fdb)) * f32::from_bits(0x3ea2_f983) + TWO_POW_23_X1_5;
    let n = (y - TWO_POW_23_X1_5) + -0.5;
    let v = mkl_poly(mkl_reduce(a, n)) as f32;
    f32::from_bits(v.to_bits() ^ (y.to_bits() << 31))
}

/// Intel MKL VML's single-precision sine (HA accuracy, |x| ≤ 1e4 path).
pub fn mkl_sin(x: f32) -> f32 {
    let a = x.abs();
    let y = a * f32::from_bits(0x3ea2_f983) + TWO_POW_23_X1_5;
    let n = y - TWO_POW_23_X1_5;
    let v = mkl_poly(mkl_reduce(a, n)) as f32;
    f32::from_bits(v.to_bits() ^ (y.to_bits() << 31) ^ (x.to_bits() & 0x8000_0000))
}

/// Rotary cos/sin at `pos` (half-dimension tables).
pub fn rope_cos_sin(pos: usize, inv_freq: &[f32], cos: &mut [f32], sin: &mut [f32]) {
    for ((c, s), &f) in cos.iter_mut().zip(sin.iter_mut()).zip(inv_freq) {
        let angle = pos as f32 * f;
        if angle.abs() <= 1.0e4 {
            *c = mkl_cos(angle);
            *s = mkl_sin(angle);
        } else {
            // Beyond the fast path's range (positions past ~10k at the
            // highest frequency): correctly rounded values.
            *c = f64::from(angle).cos() as f32;
            *s = f64::from(angle).sin() as f32;
        }
    }
}

/// SLEEF's `expf_u10` (the vectorised exp PyTorch's softmax uses). The
/// vector twins behind [`crate::ops::Ops::exp_sub`] repeat it lane by lane.
pub fn sleef_expf(d: f32) -> f32 {
    if d.is_nan() {
        return d;
    }
    if d < -104.0 {
        return 0.0;
    }
    if d > 100.0 {
        return f32::INFINITY;
    }
    let q = (d * std::f32::consts::LOG2_E).round_ties_even() as i32;
    let qf = q as f32;
    let mut s = qf.mul_add(-0.693_145_75, d);
    s = qf.mul_add(-1.428_606_8e-6, s);
    let mut u = 0.000_198_527_62_f32;
    u = u.mul_add(s, 0.001_393_043_6);
    u = u.mul_add(s, 0.008_333_361);
    u = u.mul_add(s, 0.041_666_485);
    u = u.mul_add(s, 0.166_666_67);
    u = u.mul_add(s, 0.5);
    u = 1.0 + (s * s).mul_add(u, s);
    let pow2i = |q: i32| f32::from_bits(((q + 0x7f) as u32) << 23);
    let h = q >> 1;
    (u * pow2i(h)) * pow2i(q - h)
}

/// Sum of 16 lanes by the halving tree (lane l adds lane l+8, then +4, +2, +1).
fn tree16(mut v: [f32; 16]) -> f32 {
    let mut s = 8;
    while s >= 1 {
        let mut next = [0f32; 16];
        for l in 0..16 {
            next[l] = v[l] + v[l ^ s];
        }
        v = next;
        s >>= 1;
    }
    v[0]
}

/// In-place softmax of a causal attention row as the reference computes it.
/// `row_len` is the reference's full row length (the sequence length); the
/// masked entries past `x.len()` contribute exact zeros.
/// The exponentials come from `ops` (bit-identical at every level).
pub fn softmax(ops: &crate::ops::Ops, x: &mut [f32], row_len: usize) {
    let max = x
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    // `sleef_expf(v - max)` for every entry, vectorised (bit for bit).
    ops.exp_sub(x, max);
    let sum = if row_len < 16 {
        let mut s = x[0];
        for &v in &x[1..] {
            s += v;
        }
        s
    } else {
        let mut acc = [0f32; 16];
        for (j, &v) in x.iter().enumerate() {
            acc[j % 16] += v;
        }
        tree16(acc)
    };
    let r = 1.0f32 / sum;
    for v in x.iter_mut() {
        *v *= r;
    }
}

/// How the attention products accumulate, chosen by the sequence length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accumulate {
    /// `acc = acc + a * b` (two roundings per term).
    MulAdd,
    /// `acc = fma(a, b, acc)`.
    Fma,
    /// The 16-lane kernel MKL uses for 3×3 score matrices.
    Lanes16 {
        /// Alternate 16-value chunks between two accumulators (even query
        /// rows) instead of one.
        two_acc: bool,
    },
}

/// The kernel for `q·k` of query row `row` in a sequence of `len` tokens.
pub fn score_kind(len: usize, row: usize) -> Accumulate {
    match len {
        0..=2 => Accumulate::MulAdd,
        3 => Accumulate::Lanes16 {
            two_acc: row.is_multiple_of(2),
        },
        _ => Accumulate::Fma,
    }
}

/// The kernel for `P·V` in a sequence of `len` tokens.
pub fn output_kind(len: usize) -> Accumulate {
    if len <= 2 {
        Accumulate::MulAdd
    } else {
        Accumulate::Fma
    }
}

/// Whether the CPU has FMA instructions (checked once). `f32::mul_add` is
/// exact everywhere, but without the instruction it is a library call.
fn has_fma() -> bool {
    use std::sync::atomic::{AtomicU8, Ordering};
    static STATE: AtomicU8 = AtomicU8::new(0);
    match STATE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            #[cfg(target_arch = "x86_64")]
            let yes = std::arch::is_x86_feature_detected!("fma");
            #[cfg(not(target_arch = "x86_64"))]
            let yes = false;
            STATE.store(if yes { 1 } else { 2 }, Ordering::Relaxed);
            yes
        }
    }
}

fn dot_fma_portable(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .fold(0.0f32, |acc, (x, y)| x.mul_add(*y, acc))
}

/// # Safety
/// The CPU must support FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn dot_fma_hw(a: &[f32], b: &[f32]) -> f32 {
    dot_fma_portable(a, b)
}

/// `Σ a_i b_i` as one fused multiply-add chain from 0, in index order.
pub fn dot_fma(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_fma() {
        // SAFETY: FMA support was detected at run time.
        return unsafe { dot_fma_hw(a, b) };
    }
    dot_fma_portable(a, b)
}

fn axpy_fma_portable(a: f32, x: &[f32], y: &mut [f32]) {
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv = a.mul_add(xv, *yv);
    }
}

/// # Safety
/// The CPU must support FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn axpy_fma_hw(a: f32, x: &[f32], y: &mut [f32]) {
    axpy_fma_portable(a, x, y)
}

/// `y_i = fma(a, x_i, y_i)`: one step of a fused multiply-add chain per
/// element (the reference's `P·V` accumulation).
pub fn axpy_fma(a: f32, x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_fma() {
        // SAFETY: FMA support was detected at run time.
        return unsafe { axpy_fma_hw(a, x, y) };
    }
    axpy_fma_portable(a, x, y)
}

/// A dot product accumulated the given way.
pub fn score(a: &[f32], b: &[f32], kind: Accumulate) -> f32 {
    match kind {
        Accumulate::MulAdd => a.iter().zip(b).fold(0.0f32, |acc, (x, y)| acc + x * y),
        Accumulate::Fma => dot_fma(a, b),
        Accumulate::Lanes16 { two_acc } => {
            let mut v0 = [0f32; 16];
            let mut v1 = [0f32; 16];
            for (c, (ca, cb)) in a.chunks_exact(16).zip(b.chunks_exact(16)).enumerate() {
                let v = if two_acc && c % 2 == 1 {
                    &mut v1
                } else {
                    &mut v0
                };
                for l in 0..16 {
                    v[l] = ca[l].mul_add(cb[l], v[l]);
                }
            }
            if two_acc {
                for l in 0..16 {
                    v0[l] += v1[l];
                }
            }
            tree16(v0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_scale_rounds_twice() {
        // 127/x and (1/x)*127 differ for this x; the reference uses the latter.
        let x = f32::from_bits(0x4000_0020);
        assert_ne!(127.0 / x, activation_scale(x));
        assert_eq!(activation_scale(x), (1.0 / x) * 127.0);
        assert_eq!(activation_scale(0.0), (1.0f32 / 1e-5) * 127.0);
    }

    #[test]
    fn cascade_sum_is_exact_on_integers_and_orders_like_torch() {
        let v: Vec<f32> = (0..768).map(|i| i as f32).collect();
        assert_eq!(cascade_sum(v.len(), |i| v[i]), (767.0 * 768.0 / 2.0) as f32);
        assert_eq!(cascade_sum(5, |i| v[i]), 10.0);
        // Order matters: 1e8 + 1 + ... loses the ones sequentially but the
        // cascade groups the small values first.
        let mut w = vec![1.0f32; 256];
        w[0] = 1e8;
        let seq: f32 = w.iter().sum();
        assert_eq!(seq, 1e8);
        assert_eq!(cascade_sum(w.len(), |i| w[i]), 1e8 + 256.0 - 8.0);
    }

    #[test]
    fn mkl_trig_matches_values_captured_from_the_reference() {
        // (angle, cos, sin) bits from torch 2.15's `cos()`/`sin()` (MKL VML),
        // each differing from the correctly rounded value in cos or sin.
        let cases: [(u32, u32, u32); 8] = [
            (0x3f80_0000, 0x3f0a_5141, 0x3f57_6aa4),
            (0x3e03_c6a0, 0x3f7d_e218, 0x3e03_6998),
            (0x3b52_7720, 0x3f7f_ffaa, 0x3b52_7708),
            (0x3f15_9ee3, 0x3f55_81d8, 0x3f0d_3f31),
            (0x3e2e_e4ad, 0x3f7c_4675, 0x3e2e_0b52),
            (0x3f95_9ee3, 0x3ec8_4551, 0x3f6b_9a71),
            (0x4029_19cd, 0xbf60_bc51, 0x3ef5_316c),
            (0x3ecb_1a9a, 0x3f6c_1edd, 0x3ec5_d1a4),
        ];
        for (x, c, s) in cases {
            let x = f32::from_bits(x);
            assert_eq!(mkl_cos(x).to_bits(), c, "cos({x})");
            assert_eq!(mkl_sin(x).to_bits(), s, "sin({x})");
            assert_eq!(mkl_sin(-x).to_bits(), s ^ 0x8000_0000, "sin(-{x})");
        }
        // Within an ulp of the true values everywhere.
        for i in 0..10_000 {
            let x = i as f32 * 0.37;
            let (c, s) = (mkl_cos(x), mkl_sin(x));
            assert!(
                (f64::from(c) - f64::from(x).cos()).abs() <= f64::from(f32::EPSILON),
                "{x}"
            );
            assert!(
                (f64::from(s) - f64::from(x).sin()).abs() <= f64::from(f32::EPSILON),
                "{x}"
            );
        }
    }

    #[test]
    fn rope_inv_freq_matches_the_reference_table() {
        // torch: 1 / (500000 ** (arange(0, 64, 2) / 64)), first four.
        let inv = rope_inv_freq(64, 500_000.0);
        let bits: Vec<u32> = inv[..4].iter().map(|v| v.to_bits()).collect();
        assert_eq!(bits, [0x3f80_0000, 0x3f29_e1c6, 0x3ee1_77bc, 0x3e95_9ee3]);
    }

    #[test]
    fn sleef_exp_is_accurate() {
        for i in -1000..1000 {
            let x = i as f32 * 0.01;
            let e = f64::from(x).exp();
            assert!((f64::from(sleef_expf(x)) - e).abs() <= e * 1.2e-7, "{x}");
        }
        assert_eq!(sleef_expf(0.0), 1.0);
        assert_eq!(sleef_expf(-200.0), 0.0);
    }

    #[test]
    fn softmax_rows_sum_to_one_and_respect_the_row_length_rule() {
        let ops = crate::Kernels::best().ops();
        let mut a = [0.5f32, 1.5, -2.0, 0.25];
        softmax(ops, &mut a, 4);
        assert!((a.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let x: Vec<f32> = (0..20).map(|i| (i as f32 * 0.37).sin()).collect();
        let (mut short, mut long) = (x.clone(), x.clone());
        softmax(ops, &mut short, 15.max(x.len()));
        softmax(ops, &mut long, 40);
        assert_eq!(short, long, "rows of 16+ entries always use the lane sum");
    }

    #[test]
    fn fma_chains_match_the_portable_definition() {
        let a: Vec<f32> = (0..100).map(|i| (i as f32 * 0.7).sin() * 3.0).collect();
        let b: Vec<f32> = (0..100).map(|i| (i as f32 * 0.2).cos()).collect();
        assert_eq!(
            dot_fma(&a, &b).to_bits(),
            dot_fma_portable(&a, &b).to_bits()
        );
        let (mut y1, mut y2) = (b.clone(), b.clone());
        axpy_fma(0.3, &a, &mut y1);
        axpy_fma_portable(0.3, &a, &mut y2);
        assert_eq!(y1, y2);
    }

    #[test]
    fn score_kinds() {
        let a: Vec<f32> = (0..64).map(|i| (i as f32 * 0.1).cos()).collect();
        let b: Vec<f32> = (0..64).map(|i| (i as f32 * 0.3).sin()).collect();
        let exact: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        for kind in [
            Accumulate::MulAdd,
            Accumulate::Fma,
            Accumulate::Lanes16 { two_acc: true },
            Accumulate::Lanes16 { two_acc: false },
        ] {
            assert!(
                (f64::from(score(&a, &b, kind)) - exact).abs() < 1e-5,
                "{kind:?}"
            );
        }
        assert_eq!(score_kind(2, 0), Accumulate::MulAdd);
        assert_eq!(score_kind(3, 1), Accumulate::Lanes16 { two_acc: false });
        assert_eq!(score_kind(300, 7), Accumulate::Fma);
    }
}
