//! CPU compute kernels for ternary LLM inference.
//!
//! This crate knows nothing about files or models: it multiplies packed
//! ternary matrices by int8 activations, dense (F16/BF16/Q8_0/Q6_K) matrices
//! by f32 activations, and applies the small f32 operations around them.
//!
//! # Design
//!
//! * **Scalar reference first.** Every operation has a plain Rust version that
//!   is obviously correct; SIMD versions must give bit-identical integer
//!   results, which property tests check for every level the CPU supports.
//! * **Runtime dispatch, chosen once.** [`Kernels`] is a table of function
//!   pointers per [`Isa`] level. A table for a SIMD level exists only when the
//!   CPU has the features, so holding one is the proof that its functions may
//!   run; model code never tests CPU features. The `BITNET_KERNEL`
//!   environment variable (`scalar`, `avx2`, `avx512`) forces a level so that
//!   tests and benchmarks can exercise every path.
//! * **One packed ternary layout** ([`ternary`]), produced at load time from
//!   any source format, 1.6 bits per weight and shaped for `vpdpbusd`.
//! * **Threads come from outside.** The products take a
//!   [`bitnet_threads::ThreadPool`] and split output rows across it; nothing
//!   here spawns threads or allocates per call on the hot path.

#![deny(missing_docs)]

pub mod act;
mod aligned;
pub mod dense;
mod dispatch;
mod error;
pub mod isa;
pub mod ops;
mod out;
pub mod ternary;

pub use act::QuantizedActs;
pub use aligned::AlignedBytes;
pub use dense::{DenseMatrix, DenseType};
pub use dispatch::{KERNEL_ENV, Kernels};
pub use error::{Error, Result};
pub use isa::Isa;
pub use ternary::{ScaleRule, TernaryMatrix};
