//! Elementwise and row operations on f32 vectors: RMSNorm, rotary position
//! embedding, softmax, the FFN activations, and the dot/axpy/f16/int8
//! helpers of attention over the KV cache.
//!
//! An [`Ops`] table holds one level's versions; the model takes the table
//! of its matrix kernels ([`crate::Kernels::ops`]), so one choice of level
//! covers everything a forward pass runs and code never tests CPU features.
//! The [`scalar`] module holds the references. Every SIMD version is
//! bit-identical to its
//! reference: a flipped rounding tie in the next activation quantisation
//! moves logits by ~0.04, which the model's reference tests (rightly)
//! reject. The exponential everywhere ([`Ops::softmax_fast`], [`Ops::silu_mul`],
//! [`Ops::exp_sub`], hence [`crate::exact::softmax`]) is SLEEF's `expf_u10`, the
//! one PyTorch's vectorised CPU kernels use ([`crate::exact::sleef_expf`]);
//! its vector twins repeat its operations lane by lane. Both rotary layouts
//! are vectorised (unfused products, as the references). The AVX-512 level
//! runs the AVX2 row operations.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) use avx2::transpose8;
pub mod scalar;

use half::f16;

use crate::isa::Isa;

pub use scalar::{rope_cos_sin, rope_inv_freq};

/// The row operations of one ISA level.
#[derive(Debug)]
pub struct Ops {
    isa: Isa,
    dot: unsafe fn(&[f32], &[f32]) -> f32,
    dot_f16: unsafe fn(&[f32], &[f16]) -> f32,
    axpy: unsafe fn(f32, &[f32], &mut [f32]),
    axpy_f16: unsafe fn(f32, &[f16], &mut [f32]),
    attn_scores_f16: unsafe fn(&[f32], &[f16], usize, f32, &mut [f32]),
    attn_values_f16: unsafe fn(&[f32], &[f16], usize, &mut [f32]),
    f16_to_f32: unsafe fn(&[f16], &mut [f32]),
    f32_to_f16: unsafe fn(&[f32], &mut [f16]),
    quantize_i8: unsafe fn(&[f32], &mut [i8]) -> f32,
    dot_i8: unsafe fn(&[f32], &[i8]) -> f32,
    axpy_i8: unsafe fn(f32, &[i8], &mut [f32]),
    rmsnorm: unsafe fn(&[f32], &[f32], f32, &mut [f32]),
    rope_neox: unsafe fn(&mut [f32], &[f32], &[f32]),
    rope_interleaved: unsafe fn(&mut [f32], &[f32], &[f32]),
    exp_sub: unsafe fn(&mut [f32], f32),
    softmax_fast: unsafe fn(&mut [f32]),
    relu2_mul: unsafe fn(&[f32], &[f32], &mut [f32]),
    silu_mul: unsafe fn(&[f32], &[f32], &mut [f32]),
}

static SCALAR: Ops = Ops {
    isa: Isa::Scalar,
    dot: scalar::dot,
    dot_f16: scalar::dot_f16,
    axpy: scalar::axpy,
    axpy_f16: scalar::axpy_f16,
    attn_scores_f16: scalar::attn_scores_f16,
    attn_values_f16: scalar::attn_values_f16,
    f16_to_f32: scalar::f16_to_f32,
    f32_to_f16: scalar::f32_to_f16,
    quantize_i8: scalar::quantize_i8,
    dot_i8: scalar::dot_i8,
    axpy_i8: scalar::axpy_i8,
    rmsnorm: scalar::rmsnorm,
    rope_neox: scalar::rope_neox,
    rope_interleaved: scalar::rope_interleaved,
    exp_sub: scalar::exp_sub,
    softmax_fast: scalar::softmax,
    relu2_mul: scalar::relu2_mul,
    silu_mul: scalar::silu_mul,
};

#[cfg(target_arch = "x86_64")]
static AVX2: Ops = Ops {
    isa: Isa::Avx2,
    dot: avx2::dot,
    dot_f16: avx2::dot_f16,
    axpy: avx2::axpy,
    axpy_f16: avx2::axpy_f16,
    attn_scores_f16: avx2::attn_scores_f16,
    attn_values_f16: avx2::attn_values_f16,
    f16_to_f32: avx2::f16_to_f32,
    f32_to_f16: avx2::f32_to_f16,
    quantize_i8: avx2::quantize_i8,
    dot_i8: avx2::dot_i8,
    axpy_i8: avx2::axpy_i8,
    rmsnorm: avx2::rmsnorm,
    rope_neox: avx2::rope_neox,
    rope_interleaved: avx2::rope_interleaved,
    exp_sub: avx2::exp_sub,
    softmax_fast: avx2::softmax,
    relu2_mul: avx2::relu2_mul,
    silu_mul: avx2::silu_mul,
};

impl Ops {
    /// The operations of `isa`, if this CPU supports it. (The AVX-VNNI and
    /// AVX-512 levels run the AVX2 versions: see `avx2`.)
    pub fn for_isa(isa: Isa) -> Option<&'static Ops> {
        if !isa.is_available() {
            return None;
        }
        match isa {
            Isa::Scalar => Some(&SCALAR),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::AvxVnni | Isa::Avx512 => Some(&AVX2),
            #[cfg(not(target_arch = "x86_64"))]
            _ => None,
        }
    }

    /// The level whose code runs (AVX-VNNI and AVX-512 report `Avx2`).
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Dot product with eight partial sums (lane `j` sums the elements
    /// `≡ j mod 8`, then the lanes in order, then the tail).
    pub fn dot(&self, a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: a table exists only for a level the CPU supports
        // (`for_isa`); the functions bound-check their slices. The same
        // holds for every method below.
        unsafe { (self.dot)(a, b) }
    }
    /// Dot product of f32 with f16 values (attention over an f16 KV cache),
    /// summed as [`Ops::dot`].
    pub fn dot_f16(&self, a: &[f32], b: &[f16]) -> f32 {
        // SAFETY: see `dot`.
        unsafe { (self.dot_f16)(a, b) }
    }
    /// `y += a · x`.
    pub fn axpy(&self, a: f32, x: &[f32], y: &mut [f32]) {
        // SAFETY: see `dot`.
        unsafe { (self.axpy)(a, x, y) }
    }
    /// `y += a · x` with f16 `x`.
    pub fn axpy_f16(&self, a: f32, x: &[f16], y: &mut [f32]) {
        // SAFETY: see `dot`.
        unsafe { (self.axpy_f16)(a, x, y) }
    }
    /// Attention scores of several query heads (`q`, `q.len() / d` heads
    /// one after another) against the f16 key rows `keys`:
    /// `scores[h·n + j] = dot_f16(q_h, k_j) · scale` for `n = keys.len() /
    /// d` rows, bit for bit as [`Ops::dot_f16`] per pair. The heads of a
    /// grouped-query attention group share each key row's load.
    ///
    /// # Panics
    /// If `d` is 0 or `scores` holds fewer than `heads · n` values.
    pub fn attn_scores_f16(
        &self,
        q: &[f32],
        keys: &[f16],
        d: usize,
        scale: f32,
        scores: &mut [f32],
    ) {
        assert!(d > 0, "head dimension 0");
        // SAFETY: see `dot`.
        unsafe { (self.attn_scores_f16)(q, keys, d, scale, scores) }
    }
    /// Attention outputs of several heads: `out_h = Σ_j p[h·n + j] · v_j`
    /// over the f16 value rows (`n = values.len() / d`), from zero, bit for
    /// bit as one [`Ops::axpy_f16`] per row in order.
    ///
    /// # Panics
    /// If `d` is 0 or `p` holds fewer than `heads · n` weights.
    pub fn attn_values_f16(&self, p: &[f32], values: &[f16], d: usize, out: &mut [f32]) {
        assert!(d > 0, "head dimension 0");
        // SAFETY: see `dot`.
        unsafe { (self.attn_values_f16)(p, values, d, out) }
    }
    /// f16 to f32 (exact).
    pub fn f16_to_f32(&self, src: &[f16], dst: &mut [f32]) {
        // SAFETY: see `dot`.
        unsafe { (self.f16_to_f32)(src, dst) }
    }
    /// f32 to f16, rounding to nearest even.
    pub fn f32_to_f16(&self, src: &[f32], dst: &mut [f16]) {
        // SAFETY: see `dot`.
        unsafe { (self.f32_to_f16)(src, dst) }
    }
    /// Quantises a row to int8 (the q8 KV cache): `d = amax / 127`,
    /// `q_i = round(x_i · (1 / d))` half away from zero; returns `d`.
    pub fn quantize_i8(&self, x: &[f32], q: &mut [i8]) -> f32 {
        // SAFETY: see `dot`.
        unsafe { (self.quantize_i8)(x, q) }
    }
    /// Dot product of f32 with int8 values, summed as [`Ops::dot`].
    pub fn dot_i8(&self, a: &[f32], b: &[i8]) -> f32 {
        // SAFETY: see `dot`.
        unsafe { (self.dot_i8)(a, b) }
    }
    /// `y += a · x` with int8 `x`.
    pub fn axpy_i8(&self, a: f32, x: &[i8], y: &mut [f32]) {
        // SAFETY: see `dot`.
        unsafe { (self.axpy_i8)(a, x, y) }
    }
    /// `out_i = w_i · (x_i / sqrt(mean(x²) + eps))`, computed as transformers'
    /// `LlamaRMSNorm` does (`x · rsqrt(var + eps)`, then the weight).
    pub fn rmsnorm(&self, x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
        // SAFETY: see `dot`.
        unsafe { (self.rmsnorm)(x, w, eps, out) }
    }
    /// NeoX / rotate-half rotary embedding of one head (element `i` pairs with
    /// `i + d/2`): the layout every loaded model runs (GGUF llama Q/K rows are
    /// un-permuted into it at load).
    pub fn rope_neox(&self, head: &mut [f32], cos: &[f32], sin: &[f32]) {
        // SAFETY: see `dot`.
        unsafe { (self.rope_neox)(head, cos, sin) }
    }
    /// Original (GPT-J / llama.cpp "norm") rotary embedding of one head:
    /// elements `2i` and `2i+1` form a pair (synthetic models built with that
    /// style only).
    pub fn rope_interleaved(&self, head: &mut [f32], cos: &[f32], sin: &[f32]) {
        // SAFETY: see `dot`.
        unsafe { (self.rope_interleaved)(head, cos, sin) }
    }
    /// `x_i = e^(x_i - m)` with SLEEF's `expf_u10` ([`crate::exact::sleef_expf`],
    /// bit for bit).
    pub fn exp_sub(&self, x: &mut [f32], m: f32) {
        // SAFETY: see `dot`.
        unsafe { (self.exp_sub)(x, m) }
    }
    /// In-place softmax with SLEEF's `expf_u10` and eight-lane sums (see
    /// [`scalar::softmax`]): fast, the same at every level, but not the
    /// reference's summation order ([`crate::exact::softmax`]).
    pub fn softmax_fast(&self, x: &mut [f32]) {
        // SAFETY: see `dot`.
        unsafe { (self.softmax_fast)(x) }
    }
    /// Squared ReLU of the gate times the up projection (BitNet b1.58 FFN).
    pub fn relu2_mul(&self, gate: &[f32], up: &[f32], out: &mut [f32]) {
        // SAFETY: see `dot`.
        unsafe { (self.relu2_mul)(gate, up, out) }
    }
    /// SiLU of the gate times the up projection (SwiGLU):
    /// `g / (1 + e^-g) · u` with SLEEF's `expf_u10`, as PyTorch's vectorised
    /// `silu` then the product.
    pub fn silu_mul(&self, gate: &[f32], up: &[f32], out: &mut [f32]) {
        // SAFETY: see `dot`.
        unsafe { (self.silu_mul)(gate, up, out) }
    }
}
