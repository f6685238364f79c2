//! Elementwise and row operations on f32 vectors: RMSNorm, rotary position
//! embedding, softmax, the FFN activations, and the dot/axpy/f16 helpers of
//! attention over the KV cache.
//!
//! The free functions ([`dot`], [`rmsnorm`], …) run the SIMD version of the
//! level chosen once per process (`BITNET_KERNEL`, else the best the CPU
//! has), so model code calls them without thinking about CPU features; an
//! [`Ops`] table gives a specific level (tests, benchmarks). The [`scalar`]
//! module holds the references. Every SIMD version is bit-identical to its
//! reference: a flipped rounding tie in the next activation quantisation
//! moves logits by ~0.04, which the model's reference tests (rightly)
//! reject. That is why [`softmax`] and [`silu_mul`] keep libm's `expf`;
//! [`softmax_fast`] and [`silu_mul_fast`] use a vector exponential within
//! 2 ulp of it (see `avx2::exp`), ~5× faster, for callers that accept
//! that. Rotary embedding stays scalar: it touches only the Q and K heads.

#[cfg(target_arch = "x86_64")]
mod avx2;
pub mod scalar;

use std::sync::OnceLock;

use half::f16;

use crate::isa::Isa;

pub use scalar::{rope_cos_sin, rope_interleaved, rope_inv_freq, rope_neox};

/// The row operations of one ISA level.
#[derive(Debug)]
pub struct Ops {
    isa: Isa,
    dot: unsafe fn(&[f32], &[f32]) -> f32,
    dot_f16: unsafe fn(&[f32], &[f16]) -> f32,
    axpy: unsafe fn(f32, &[f32], &mut [f32]),
    axpy_f16: unsafe fn(f32, &[f16], &mut [f32]),
    f16_to_f32: unsafe fn(&[f16], &mut [f32]),
    f32_to_f16: unsafe fn(&[f32], &mut [f16]),
    rmsnorm: unsafe fn(&[f32], &[f32], f32, &mut [f32]),
    softmax_fast: unsafe fn(&mut [f32]),
    relu2_mul: unsafe fn(&[f32], &[f32], &mut [f32]),
    silu_mul_fast: unsafe fn(&[f32], &[f32], &mut [f32]),
}

static SCALAR: Ops = Ops {
    isa: Isa::Scalar,
    dot: scalar::dot,
    dot_f16: scalar::dot_f16,
    axpy: scalar::axpy,
    axpy_f16: scalar::axpy_f16,
    f16_to_f32: scalar::f16_to_f32,
    f32_to_f16: scalar::f32_to_f16,
    rmsnorm: scalar::rmsnorm,
    softmax_fast: scalar::softmax,
    relu2_mul: scalar::relu2_mul,
    silu_mul_fast: scalar::silu_mul,
};

#[cfg(target_arch = "x86_64")]
static AVX2: Ops = Ops {
    isa: Isa::Avx2,
    dot: avx2::dot,
    dot_f16: avx2::dot_f16,
    axpy: avx2::axpy,
    axpy_f16: avx2::axpy_f16,
    f16_to_f32: avx2::f16_to_f32,
    f32_to_f16: avx2::f32_to_f16,
    rmsnorm: avx2::rmsnorm,
    softmax_fast: avx2::softmax,
    relu2_mul: avx2::relu2_mul,
    silu_mul_fast: avx2::silu_mul,
};

impl Ops {
    /// The operations of `isa`, if this CPU supports it. (The AVX-512 level
    /// runs the AVX2 versions: see `avx2`.)
    pub fn for_isa(isa: Isa) -> Option<&'static Ops> {
        if !isa.is_available() {
            return None;
        }
        match isa {
            Isa::Scalar => Some(&SCALAR),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx512 => Some(&AVX2),
            #[cfg(not(target_arch = "x86_64"))]
            _ => None,
        }
    }

    /// The operations the free functions use: those of the level
    /// `BITNET_KERNEL` selects, else of the best level (chosen once).
    pub fn active() -> &'static Ops {
        static ACTIVE: OnceLock<&'static Ops> = OnceLock::new();
        ACTIVE.get_or_init(|| {
            let isa = crate::Kernels::from_env().map_or(Isa::Scalar, |k| k.isa());
            Ops::for_isa(isa).unwrap_or(&SCALAR)
        })
    }

    /// The level whose code runs (AVX-512 reports `Avx2`).
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// See [`dot`].
    pub fn dot(&self, a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: a table exists only for a level the CPU supports
        // (`for_isa`); the functions bound-check their slices. The same
        // holds for every method below.
        unsafe { (self.dot)(a, b) }
    }
    /// See [`dot_f16`].
    pub fn dot_f16(&self, a: &[f32], b: &[f16]) -> f32 {
        // SAFETY: see `dot`.
        unsafe { (self.dot_f16)(a, b) }
    }
    /// See [`axpy`].
    pub fn axpy(&self, a: f32, x: &[f32], y: &mut [f32]) {
        // SAFETY: see `dot`.
        unsafe { (self.axpy)(a, x, y) }
    }
    /// See [`axpy_f16`].
    pub fn axpy_f16(&self, a: f32, x: &[f16], y: &mut [f32]) {
        // SAFETY: see `dot`.
        unsafe { (self.axpy_f16)(a, x, y) }
    }
    /// See [`f16_to_f32`].
    pub fn f16_to_f32(&self, src: &[f16], dst: &mut [f32]) {
        // SAFETY: see `dot`.
        unsafe { (self.f16_to_f32)(src, dst) }
    }
    /// See [`f32_to_f16`].
    pub fn f32_to_f16(&self, src: &[f32], dst: &mut [f16]) {
        // SAFETY: see `dot`.
        unsafe { (self.f32_to_f16)(src, dst) }
    }
    /// See [`rmsnorm`].
    pub fn rmsnorm(&self, x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
        // SAFETY: see `dot`.
        unsafe { (self.rmsnorm)(x, w, eps, out) }
    }
    /// See [`softmax`] (the same at every level).
    pub fn softmax(&self, x: &mut [f32]) {
        scalar::softmax(x)
    }
    /// See [`softmax_fast`].
    pub fn softmax_fast(&self, x: &mut [f32]) {
        // SAFETY: see `dot`.
        unsafe { (self.softmax_fast)(x) }
    }
    /// See [`relu2_mul`].
    pub fn relu2_mul(&self, gate: &[f32], up: &[f32], out: &mut [f32]) {
        // SAFETY: see `dot`.
        unsafe { (self.relu2_mul)(gate, up, out) }
    }
    /// See [`silu_mul`] (the same at every level).
    pub fn silu_mul(&self, gate: &[f32], up: &[f32], out: &mut [f32]) {
        scalar::silu_mul(gate, up, out)
    }
    /// See [`silu_mul_fast`].
    pub fn silu_mul_fast(&self, gate: &[f32], up: &[f32], out: &mut [f32]) {
        // SAFETY: see `dot`.
        unsafe { (self.silu_mul_fast)(gate, up, out) }
    }
}

/// `out_i = w_i · (x_i / sqrt(mean(x²) + eps))`, computed as transformers'
/// `LlamaRMSNorm` does (`x · rsqrt(var + eps)`, then the weight).
pub fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    Ops::active().rmsnorm(x, w, eps, out)
}

/// Dot product with eight partial sums (lane `j` sums the elements
/// `≡ j mod 8`, then the lanes in order, then the tail).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    Ops::active().dot(a, b)
}

/// Dot product of f32 with f16 values (attention over an f16 KV cache),
/// summed as [`dot`].
pub fn dot_f16(a: &[f32], b: &[f16]) -> f32 {
    Ops::active().dot_f16(a, b)
}

/// `y += a · x`.
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    Ops::active().axpy(a, x, y)
}

/// `y += a · x` with f16 `x`.
pub fn axpy_f16(a: f32, x: &[f16], y: &mut [f32]) {
    Ops::active().axpy_f16(a, x, y)
}

/// f16 to f32 (exact).
pub fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    Ops::active().f16_to_f32(src, dst)
}

/// f32 to f16, rounding to nearest even.
pub fn f32_to_f16(src: &[f32], dst: &mut [f16]) {
    Ops::active().f32_to_f16(src, dst)
}

/// In-place softmax (libm `expf`, sequential sum: bit-identical everywhere).
pub fn softmax(x: &mut [f32]) {
    scalar::softmax(x)
}

/// In-place softmax with a vector exponential (within 2 ulp of `expf`) and
/// eight-lane sums: not bit-identical to [`softmax`].
pub fn softmax_fast(x: &mut [f32]) {
    Ops::active().softmax_fast(x)
}

/// Squared ReLU of the gate times the up projection (BitNet b1.58 FFN).
pub fn relu2_mul(gate: &[f32], up: &[f32], out: &mut [f32]) {
    Ops::active().relu2_mul(gate, up, out)
}

/// SiLU of the gate times the up projection (SwiGLU), with libm `expf`.
pub fn silu_mul(gate: &[f32], up: &[f32], out: &mut [f32]) {
    scalar::silu_mul(gate, up, out)
}

/// [`silu_mul`] with a vector exponential (within 2 ulp of `expf`).
pub fn silu_mul_fast(gate: &[f32], up: &[f32], out: &mut [f32]) {
    Ops::active().silu_mul_fast(gate, up, out)
}
