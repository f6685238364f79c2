//! Host wrappers that launch single kernels: what the device tests compare
//! against the CPU references, and the building blocks of a forward pass.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use crate::device::Gpu;
use crate::error::{CudaError, Result};
use crate::repack::{GpuTernary, WORD_COLS};

/// Tokens per `ternary_gemv` pass (`GEMV_TOKENS` in ternary.cu).
pub const GEMV_TOKENS: usize = 8;
/// Rows and tokens per `ternary_gemm` block (ternary.cu).
const MMA_ROWS: usize = 64;
const MMA_TOKENS: usize = 32;

/// Which product kernel to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Product {
    /// `__dp4a` GEMV (decode).
    Gemv,
    /// `mma.sync` GEMM (prefill, batches).
    Gemm,
}

impl Product {
    /// The kernel the forward pass uses for `n_tokens`.
    pub fn for_tokens(n_tokens: usize) -> Product {
        if n_tokens <= GEMV_TOKENS {
            Product::Gemv
        } else {
            Product::Gemm
        }
    }
}

/// A ternary matrix in GPU memory.
#[derive(Debug)]
pub struct DeviceTernary {
    /// Output rows.
    pub rows: usize,
    /// Input columns.
    pub cols: usize,
    /// Words per row.
    pub words: usize,
    rule: i32,
    data: CudaSlice<u32>,
    scales: CudaSlice<f32>,
}

/// Per-token int8 activations in GPU memory (`words · 16` bytes a row).
#[derive(Debug)]
pub struct DeviceActs {
    /// Tokens.
    pub n_tokens: usize,
    /// Bytes per row.
    pub stride: usize,
    /// The int8 rows.
    pub q: CudaSlice<i8>,
    /// `s = 127 / amax` per token.
    pub scales: CudaSlice<f32>,
}

fn dim(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| CudaError::Invalid(format!("dimension {n} too large")))
}

fn int(n: usize) -> Result<i32> {
    i32::try_from(n).map_err(|_| CudaError::Invalid(format!("dimension {n} too large")))
}

impl Gpu {
    /// Uploads a repacked matrix.
    pub fn upload_ternary(&self, m: &GpuTernary) -> Result<DeviceTernary> {
        let rule = match m.rule {
            bitnet_kernels::ScaleRule::Multiply => 0,
            bitnet_kernels::ScaleRule::Divide => 1,
        };
        Ok(DeviceTernary {
            rows: m.rows,
            cols: m.cols,
            words: m.words,
            rule,
            data: self.stream().clone_htod(&m.data)?,
            scales: self.stream().clone_htod(&m.scales)?,
        })
    }

    /// Uploads already-quantised rows (`n_tokens` rows of `stride` bytes).
    pub fn upload_acts(&self, q: &[i8], scales: &[f32], stride: usize) -> Result<DeviceActs> {
        if !stride.is_multiple_of(WORD_COLS) || q.len() != scales.len() * stride {
            return Err(CudaError::Invalid(
                "activation rows must be whole words".into(),
            ));
        }
        Ok(DeviceActs {
            n_tokens: scales.len(),
            stride,
            q: self.stream().clone_htod(q)?,
            scales: self.stream().clone_htod(scales)?,
        })
    }

    /// Quantises `n_tokens` rows of `cols` f32 (optionally RMS-normed with
    /// `norm = (weight, eps)` first) into rows of `stride` bytes.
    pub fn quantize(
        &self,
        x: &CudaSlice<f32>,
        n_tokens: usize,
        cols: usize,
        stride: usize,
        norm: Option<(&CudaSlice<f32>, f32)>,
    ) -> Result<DeviceActs> {
        let s = self.stream();
        let mut q = s.alloc_zeros::<i8>(n_tokens * stride)?;
        let mut scales = s.alloc_zeros::<f32>(n_tokens)?;
        let f = self.function("norm", "rmsnorm_quant")?;
        let cfg = LaunchConfig {
            grid_dim: (dim(n_tokens)?, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let (cols_i, stride_i) = (int(cols)?, int(stride)?);
        let null = 0u64;
        let eps = norm.map_or(0.0, |n| n.1);
        let mut b = s.launch_builder(&f);
        b.arg(x);
        match norm {
            Some((w, _)) => b.arg(w),
            None => b.arg(&null),
        };
        b.arg(&mut q)
            .arg(&mut scales)
            .arg(&cols_i)
            .arg(&cols_i)
            .arg(&stride_i)
            .arg(&eps);
        // SAFETY: the argument list matches rmsnorm_quant's signature; x
        // holds n_tokens rows of cols floats (x_stride = cols), q n_tokens
        // rows of stride bytes, scales n_tokens floats; w, when given, cols
        // floats.
        unsafe { b.launch(cfg) }?;
        Ok(DeviceActs {
            n_tokens,
            stride,
            q,
            scales,
        })
    }

    /// `y[t][r] = rule(Σ_k w[r][k] · q[t][k])`, `n_tokens × rows` f32.
    pub fn ternary_matmul(
        &self,
        w: &DeviceTernary,
        x: &DeviceActs,
        product: Product,
    ) -> Result<CudaSlice<f32>> {
        if x.stride != w.words * WORD_COLS {
            return Err(CudaError::Invalid(format!(
                "activation rows of {} bytes for a matrix of {} words",
                x.stride, w.words
            )));
        }
        let s = self.stream();
        let mut y = s.alloc_zeros::<f32>(x.n_tokens * w.rows)?;
        let (cfg, name) = match product {
            Product::Gemv => (
                LaunchConfig {
                    grid_dim: (
                        dim(w.rows.div_ceil(8))?,
                        dim(x.n_tokens.div_ceil(GEMV_TOKENS))?,
                        1,
                    ),
                    block_dim: (256, 1, 1),
                    shared_mem_bytes: 0,
                },
                "ternary_gemv",
            ),
            Product::Gemm => (
                LaunchConfig {
                    grid_dim: (
                        dim(w.rows.div_ceil(MMA_ROWS))?,
                        dim(x.n_tokens.div_ceil(MMA_TOKENS))?,
                        1,
                    ),
                    block_dim: (128, 1, 1),
                    shared_mem_bytes: 0,
                },
                "ternary_gemm",
            ),
        };
        let f = self.function("ternary", name)?;
        let (rows, words, n, ys) = (int(w.rows)?, int(w.words)?, int(x.n_tokens)?, int(w.rows)?);
        let mut b = s.launch_builder(&f);
        b.arg(&w.data)
            .arg(&x.q)
            .arg(&x.scales)
            .arg(&w.scales)
            .arg(&mut y);
        b.arg(&rows).arg(&words).arg(&n).arg(&ys).arg(&w.rule);
        // SAFETY: the arguments match the kernel's signature; data holds
        // rows × words words, q n_tokens rows of words · 16 bytes (checked
        // above), y n_tokens × rows floats; the grid covers exactly the rows
        // and tokens the kernel bounds-checks.
        unsafe { b.launch(cfg) }?;
        Ok(y)
    }

    /// Copies a device buffer to the host (synchronising).
    pub fn download<T: cudarc::driver::DeviceRepr + Default + Clone>(
        &self,
        x: &CudaSlice<T>,
    ) -> Result<Vec<T>> {
        Ok(self.stream().clone_dtoh(x)?)
    }
}
