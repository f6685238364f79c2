//! CPU compute kernels for ternary LLM inference.
//!
//! This crate knows nothing about files or models: it multiplies packed
//! ternary matrices by int8 activations, dense (F32/F16/BF16/Q8_0/Q6_K)
//! matrices by f32 or int8 activations, and applies the small f32
//! operations around them.
//!
//! # Design
//!
//! * **Scalar reference first.** Every operation has a plain Rust version that
//!   is obviously correct; SIMD versions must give bit-identical results
//!   (integer sums and, where the arithmetic allows, floats too), which
//!   property tests check for every level the CPU supports
//!   (`tests/equivalence.rs`, one suite instantiated per level). Float
//!   products that sum in a different order (the f32 dense head) are held
//!   to a tight relative bound instead.
//! * **Runtime dispatch, chosen once.** [`Kernels`] is a table of function
//!   pointers per [`Isa`] level. A table for a SIMD level exists only when the
//!   CPU has the features, so holding one is the proof that its functions may
//!   run; model code never tests CPU features. The `BITNET_KERNEL`
//!   environment variable (`scalar`, `avx2`, `avxvnni`, `avx512`) forces a
//!   level so that tests and benchmarks can exercise every path. No
//!   build-time code generation, no per-model shapes, no
//!   `target-cpu=native`: one binary uses what the CPU has. The AVX2 level
//!   uses no AVX-512 or AVX-VNNI instruction; the AVX-VNNI level adds the
//!   256-bit `vpdpbusd` of Alder Lake and later Intel client cores; the
//!   AVX-512 level needs F/BW/VL/VNNI (Cascade Lake, Ice Lake, Zen 4 and
//!   later).
//! * **Packed ternary layouts** ([`ternary`]), produced at load time from
//!   any source format: 1.6 bits per weight (five base-3 digits per byte),
//!   shaped for `vpdpbusd`, for the AVX-512 level; 256-bit vectors cannot
//!   decode base-3 digits as fast as memory delivers them, so
//!   [`Kernels::pack_ternary`] gives the AVX2 and AVX-VNNI levels a 2-bit
//!   layout with the same block shape ([`ternary::two_bit`]). Every level
//!   reads both. A streaming GEMV
//!   for decoding and a panel-decoding, register-blocked GEMM for prompt
//!   processing. A lookup-table (T-MAC/TL) variant was measured and lost
//!   where it matters (see the module doc).
//! * **The LM head** ([`dense`]): the f32-activation path reads any stored
//!   type in place; [`Q8Matrix`] repacks a head (exactly for Q8_0) for an
//!   int8 × int8 VNNI product that is several times cheaper per byte, which
//!   decides the decode speed of tied-embedding models.
//! * **Row operations** ([`ops`]): RMSNorm, attention dots and axpys (f32 and
//!   f16 KV caches), activations, dispatched the same way and bit-identical
//!   to their references.
//! * **Threads come from outside.** The products take a
//!   [`bitnet_threads::ThreadPool`]: decoding splits rows statically into
//!   contiguous shares (each thread streams its own memory), prompt
//!   processing claims row blocks dynamically. Nothing here spawns threads or
//!   allocates per call on the hot path (GEMM panels are thread-local and
//!   reused).

#![deny(missing_docs)]

pub mod act;
mod aligned;
pub mod dense;
mod dispatch;
mod error;
pub mod exact;
pub mod isa;
pub mod ops;
mod out;
pub mod ternary;

pub use act::QuantizedActs;
pub use aligned::AlignedBytes;
pub use dense::q8k::Q8KActs;
pub use dense::q8x::{Q8Acts, Q8Matrix};
pub use dense::{DenseMatrix, DenseType};
pub use dispatch::{KERNEL_ENV, Kernels};
pub use error::{Error, Result};
pub use isa::Isa;
pub use ternary::{PackSlot, PackedParts, ScaleRule, SharedPacking, TernaryLayout, TernaryMatrix};
