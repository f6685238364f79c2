//! Scalar references of the f32 row operations (see the parent module).
//! Portable Rust; the summing loops keep eight partial sums, which the
//! SIMD versions reproduce lane for lane.

use crate::exact::sleef_expf;

/// `out_i = w_i · (x_i / sqrt(mean(x²) + eps))`, computed as transformers'
/// `LlamaRMSNorm` does (`x · rsqrt(var + eps)`, then the weight).
pub fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    crate::exact::rmsnorm(x, w, eps, out)
}

/// Dot product with eight partial sums.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let mut i = 0;
    while i + 8 <= n {
        for j in 0..8 {
            acc[j] += a[i + j] * b[i + j];
        }
        i += 8;
    }
    let mut s = acc.iter().sum::<f32>();
    while i < n {
        s += a[i] * b[i];
        i += 1;
    }
    s
}

/// `y += a · x`.
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv += a * xv;
    }
}

/// In-place softmax: `e^(x_i - max)` by SLEEF's `expf_u10`
/// ([`crate::exact::sleef_expf`]), summed with eight partial sums (lane `j`
/// takes the elements `≡ j mod 8` of the whole blocks of eight, then the
/// lanes in order, then the tail), then multiplied by `1 / sum`.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut acc = [0f32; 8];
    let mut blocks = x.chunks_exact_mut(8);
    for b in &mut blocks {
        for (a, v) in acc.iter_mut().zip(b) {
            *v = sleef_expf(*v - max);
            *a += *v;
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for v in blocks.into_remainder() {
        *v = sleef_expf(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// `x_i = e^(x_i - m)` by SLEEF's `expf_u10` ([`crate::exact::sleef_expf`]).
pub fn exp_sub(x: &mut [f32], m: f32) {
    for v in x.iter_mut() {
        *v = sleef_expf(*v - m);
    }
}

/// `f16` values to f32.
pub fn f16_to_f32(src: &[half::f16], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = s.to_f32();
    }
}

/// f32 values to `f16` (round to nearest even).
pub fn f32_to_f16(src: &[f32], dst: &mut [half::f16]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = half::f16::from_f32(s);
    }
}

/// Dot product of f32 with f16 values, eight partial sums as [`dot`].
pub fn dot_f16(a: &[f32], b: &[half::f16]) -> f32 {
    let n = a.len().min(b.len());
    let mut acc = [0f32; 8];
    let mut i = 0;
    while i + 8 <= n {
        for j in 0..8 {
            acc[j] += a[i + j] * b[i + j].to_f32();
        }
        i += 8;
    }
    let mut s = acc.iter().sum::<f32>();
    while i < n {
        s += a[i] * b[i].to_f32();
        i += 1;
    }
    s
}

/// `y += a · x` with f16 `x`.
pub fn axpy_f16(a: f32, x: &[half::f16], y: &mut [f32]) {
    for (yv, xv) in y.iter_mut().zip(x) {
        *yv += a * xv.to_f32();
    }
}

/// Attention scores of the query heads `q` (`q.len() / d` of them, one
/// after another) against the f16 key rows `keys` (`n = keys.len() / d`):
/// `scores[h·n + j] = dot_f16(q_h, k_j) · scale`.
pub fn attn_scores_f16(q: &[f32], keys: &[half::f16], d: usize, scale: f32, scores: &mut [f32]) {
    let n = keys.len() / d;
    for (h, qh) in q.chunks_exact(d).enumerate() {
        for (j, k) in keys.chunks_exact(d).enumerate() {
            scores[h * n + j] = dot_f16(qh, k) * scale;
        }
    }
}

/// Attention outputs of the heads of `out` (`out.len() / d` of them):
/// `out_h = Σ_j p[h·n + j] · v_j` over the f16 value rows `values`
/// (`n = values.len() / d`), from zero and in row order, as a sequence of
/// [`axpy_f16`] calls.
pub fn attn_values_f16(p: &[f32], values: &[half::f16], d: usize, out: &mut [f32]) {
    let n = values.len() / d;
    for (h, oh) in out.chunks_exact_mut(d).enumerate() {
        oh.fill(0.0);
        for (j, v) in values.chunks_exact(d).enumerate() {
            axpy_f16(p[h * n + j], v, oh);
        }
    }
}

/// Squared ReLU of the gate times the up projection (BitNet b1.58 FFN).
pub fn relu2_mul(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        let r = g.max(0.0);
        *o = r * r * u;
    }
}

/// SiLU of the gate times the up projection (SwiGLU), as PyTorch's
/// vectorised `silu` computes it: `g / (1 + e^-g)` with SLEEF's `expf_u10`,
/// then `· u`.
pub fn silu_mul(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = g / (1.0 + sleef_expf(-g)) * u;
    }
}

/// Quantises a row to int8 with one scale: `d = amax / 127`,
/// `q_i = round(x_i / d)` computed as `x_i · (1 / d)` and rounded half away
/// from zero (`f32::round`), saturating, NaN to 0. Returns `d` (0 for a zero
/// row, whose codes are all 0). `amax` covers all of `x`; `min(len)` codes
/// are written.
pub fn quantize_i8(x: &[f32], q: &mut [i8]) -> f32 {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d > 0.0 { 1.0 / d } else { 0.0 };
    for (o, &v) in q.iter_mut().zip(x) {
        *o = (v * id).round() as i8;
    }
    d
}

/// Dot product of f32 with int8 values, eight partial sums as [`dot`].
pub fn dot_i8(a: &[f32], b: &[i8]) -> f32 {
    let n = a.len().min(b.len());
    let mut acc = [0f32; 8];
    let mut i = 0;
    while i + 8 <= n {
        for j in 0..8 {
            acc[j] += a[i + j] * f32::from(b[i + j]);
        }
        i += 8;
    }
    let mut s = acc.iter().sum::<f32>();
    while i < n {
        s += a[i] * f32::from(b[i]);
        i += 1;
    }
    s
}

/// `y += a · x` with int8 `x`.
pub fn axpy_i8(a: f32, x: &[i8], y: &mut [f32]) {
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv += a * f32::from(xv);
    }
}

/// Rotary embedding angles: `inv_freq[i] = 1 / theta^(2i / dim)`, computed
/// in f32 as transformers does.
pub fn rope_inv_freq(dim: usize, theta: f32) -> Vec<f32> {
    (0..dim / 2)
        .map(|i| 1.0 / theta.powf((2 * i) as f32 / dim as f32))
        .collect()
}

/// Fills `cos` and `sin` (`inv_freq.len()` values each) for position `pos`.
pub fn rope_cos_sin(pos: usize, inv_freq: &[f32], cos: &mut [f32], sin: &mut [f32]) {
    for ((c, s), &f) in cos.iter_mut().zip(sin.iter_mut()).zip(inv_freq) {
        let angle = pos as f32 * f;
        // Evaluate in f64 and round once: as close to correctly rounded as
        // f32 sin/cos get.
        *c = (angle as f64).cos() as f32;
        *s = (angle as f64).sin() as f32;
    }
}

/// NeoX / rotate-half rotary embedding of one head: element `i` pairs with
/// `i + d/2`.
pub fn rope_neox(head: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = head.len() / 2;
    let (lo, hi) = head.split_at_mut(half);
    for i in 0..half {
        let (a, b) = (lo[i], hi[i]);
        lo[i] = a * cos[i] + -b * sin[i];
        hi[i] = b * cos[i] + a * sin[i];
    }
}

/// Original (GPT-J / llama.cpp "norm") rotary embedding of one head:
/// elements `2i` and `2i+1` form a pair.
pub fn rope_interleaved(head: &mut [f32], cos: &[f32], sin: &[f32]) {
    for i in 0..head.len() / 2 {
        let (a, b) = (head[2 * i], head[2 * i + 1]);
        head[2 * i] = a * cos[i] - b * sin[i];
        head[2 * i + 1] = b * cos[i] + a * sin[i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rmsnorm_of_constant_row_is_the_weight() {
        let x = [2.0f32; 16];
        let w: Vec<f32> = (0..16).map(|i| i as f32).collect();
        let mut out = [0f32; 16];
        rmsnorm(&x, &w, 0.0, &mut out);
        for (o, wv) in out.iter().zip(&w) {
            assert!((o - wv).abs() < 1e-6);
        }
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let mut x = [1.0f32, 2.0, 3.0, -1e9];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[2] > x[1] && x[1] > x[0] && x[3] == 0.0);
    }

    #[test]
    fn rope_at_position_zero_is_identity_and_rotates_pairs() {
        let inv = rope_inv_freq(4, 10000.0);
        let (mut c, mut s) = ([0f32; 2], [0f32; 2]);
        rope_cos_sin(0, &inv, &mut c, &mut s);
        let mut h = [1.0f32, 2.0, 3.0, 4.0];
        rope_neox(&mut h, &c, &s);
        assert_eq!(h, [1.0, 2.0, 3.0, 4.0]);
        rope_cos_sin(1, &inv, &mut c, &mut s);
        let mut h = [1.0f32, 0.0, 0.0, 0.0];
        rope_neox(&mut h, &c, &s);
        assert!((h[0] - 1f32.cos()).abs() < 1e-6 && (h[2] - 1f32.sin()).abs() < 1e-6);
        let mut h = [1.0f32, 0.0, 0.0, 0.0];
        rope_interleaved(&mut h, &c, &s);
        assert!((h[0] - 1f32.cos()).abs() < 1e-6 && (h[1] - 1f32.sin()).abs() < 1e-6);
    }
}
