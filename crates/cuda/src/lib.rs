//! CUDA kernels for ternary (BitNet b1.58) inference, beside the CPU kernels
//! of `bitnet-kernels`, depending on nothing above them.
//!
//! # Why cudarc, dynamically loaded
//!
//! One `bitnet` binary serves CPU-only and GPU machines. [`cudarc`] with its
//! `dynamic-loading` feature links no CUDA library: `libcuda.so.1` (the
//! driver) and `libnvrtc` (the run-time compiler) are opened with `dlopen`
//! on first use. Building needs no toolkit, and a CPU-only machine runs the
//! same binary; `--device cuda` there fails with one line naming what is
//! missing ([`CudaError::NoDriver`], [`CudaError::NoDevice`],
//! [`CudaError::NoNvrtc`], [`CudaError::TooOld`]), checked in that order
//! before cudarc is called (cudarc panics when a library it needs is absent).
//! The bindings are cudarc's CUDA 13.0 ones: their candidate names for NVRTC
//! include both `libnvrtc.so.13` and `libnvrtc.so.12`.
//!
//! # Why NVRTC at run time
//!
//! The kernels are CUDA C embedded in the crate ([`sources::MODULES`],
//! `src/kernels/*.cu`), compiled by NVRTC for the compute capability of the
//! device that opens them (`sm_80` and newer: `mma.sync` on int8), so there
//! is no `nvcc` in the build and no fat binary to choose architectures for.
//! The PTX is cached per module, source hash, NVRTC version and architecture
//! under `~/.cache/bitnet/cuda` ([`nvrtc::cache_dir`]); the driver caches its
//! own JIT of that PTX. NVRTC is found through `BITNET_NVRTC_PATH`, the
//! loader path, or Python's site-packages (the `nvidia-cuda-nvrtc-cu12`
//! wheel, which PyTorch also installs): see [`nvrtc`]. Everything is compiled
//! with `--fmad=false` and IEEE division: the f32 steps that must reproduce
//! the CPU reference (scale rules, the quantiser) round as Rust does.
//!
//! # Weight layout
//!
//! [`repack::GpuTernary`]: row-major, 2 bits per weight, 16 weights per word,
//! arranged so that one shift, one mask and one per-byte subtract turn a
//! word into four int8x4 operands for `__dp4a` or an `mma.sync` A fragment.
//! Repacked at load from [`bitnet_kernels::TernaryMatrix::unpack`], so it does
//! not depend on the CPU layout. Scales stay per row with the CPU's
//! [`bitnet_kernels::ScaleRule`].
//!
//! # Kernels ([`sources::MODULES`])
//!
//! * `ternary_gemv`: decode (≤ 8 tokens), a warp per row, weights decoded
//!   in registers, `__dp4a`.
//! * `ternary_gemm`: prefill and batched decode, `mma.sync.m16n8k32` s8 → s32
//!   on tensor cores, A fragments decoded straight from the packed words.
//! * `rmsnorm_quant`: RMSNorm fused with per-token absmax int8 quantisation
//!   (or quantisation alone); `rmsnorm` (also the per-head q/k norms);
//!   `add_inplace` (residuals).
//! * `rope`: NeoX and interleaved, partial rotary dimensions.
//! * `kv_store_{f32,f16}`, `attn_partial_{f32,f16}`, `attn_combine`: the KV
//!   cache in f32 or f16, grouped-query heads, causal and sliding-window
//!   masks, split-K flash-decoding (partial softmax sums per key range,
//!   merged by `attn_combine`).
//! * `gated_act`: SiLU- and squared-ReLU-gated FFN activations.
//! * `head_f16`, `head_q8_0`, `head_q6_k`: the output head in the file's
//!   format; `argmax`: greedy decoding (first maximum, as the CPU).
//!
//! Integer products are exact: the kernels' `i32` sums equal the CPU scalar
//! reference's, and [`ops`] applies the same scale rule with the same f32
//! operations, so the ternary products are bit-identical to the CPU's.
//!
//! # What is verified where
//!
//! * Any machine (`tests/compile.rs`, unit tests): every module compiles
//!   with NVRTC for `sm_80` and `sm_90` (CI installs NVRTC from PyPI; without
//!   it, outside CI, the test prints "skipped: NVRTC not found"); weight
//!   repacking round-trips and matches a host model of the kernels' integer
//!   sums; `ternary_gemm`'s fragment indexing, replayed on the host with the
//!   PTX m16n8k32 layouts, reproduces the CPU scalar reference bit for bit;
//!   the device parser; the one-line errors without a driver.
//! * A GPU machine only (`tests/device.rs`, skipped visibly elsewhere; run by
//!   `scripts/gpu-check`): GEMV and GEMM against the CPU scalar reference bit
//!   for bit on random shapes, the quantiser bit for bit.
//! * Written, not yet run on a device: the host side of a forward pass,
//!   `bitnet_model::gpu::GpuModel` (weights uploaded once, the per-layer
//!   launch sequence in [`layers`] and [`ops`], the KV cache on the device,
//!   one sequence), checked by `bitnet-model`'s `tests/gpu.rs` (fixture
//!   logits within 1e-3 of the reference, greedy text identical to the
//!   CPU's). Not done: the engine running on it (the backend choice at
//!   load, the batched path of `serve` and `generate_batch`), so
//!   [`open_for_model`] opens the device, compiles the kernels and then says
//!   plainly that the engine has no GPU forward pass.

pub mod device;
pub mod error;
pub mod layers;
pub mod nvrtc;
pub mod ops;
pub mod repack;
pub mod sources;
pub mod spec;

pub use cudarc;
pub use device::Gpu;
pub use error::{CudaError, Result};
pub use repack::GpuTernary;
pub use spec::DeviceSpec;

/// What `--device cuda:N` does when a model is loaded: every check a real
/// GPU backend needs (driver, device, compute capability, NVRTC, the kernels
/// compiling for this device), then an honest refusal, since this build has
/// no GPU forward pass. The error is one line.
pub fn open_for_model(ordinal: usize) -> Result<Gpu> {
    let gpu = Gpu::open(ordinal)?;
    Err(CudaError::Unsupported(format!(
        "{}: the CUDA kernels compile, but this build has no GPU forward pass in the engine yet (bitnet_model::gpu runs one sequence, unverified on a device, and is not wired into run/chat/bench/perplexity/serve); use --device cpu",
        gpu.describe()
    )))
}

/// The error `--device` reports for `spec` on this machine, or `None` when
/// it can run (the CPU). One line.
pub fn device_error(spec: DeviceSpec) -> Option<CudaError> {
    match spec {
        DeviceSpec::Cpu => None,
        DeviceSpec::Cuda(n) => open_for_model(n).err(),
    }
}
