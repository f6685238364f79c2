//! Errors of the CUDA backend. Each `Display` is one line that names what is
//! missing or what failed, so that `--device cuda` on a machine without a
//! GPU, a driver or NVRTC can print it as it is.

use std::path::PathBuf;

/// What went wrong opening or using a CUDA device.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// The `--device` / `device=` text is not `cpu`, `cuda` or `cuda:N`.
    #[error("unknown device {0:?}: expected 'cpu', 'cuda' or 'cuda:N'")]
    BadDevice(String),
    /// No NVIDIA driver library could be opened.
    #[error(
        "no CUDA driver: libcuda.so.1 not found (install the NVIDIA driver, or run with --device cpu)"
    )]
    NoDriver,
    /// The driver is there but reports no (or too few) GPUs.
    #[error("no CUDA device {ordinal}: the driver reports {count} GPU(s)")]
    NoDevice {
        /// The ordinal asked for.
        ordinal: usize,
        /// How many the driver sees.
        count: usize,
    },
    /// NVRTC (the run-time CUDA compiler) could not be found.
    #[error(
        "NVRTC not found (searched {searched}; `pip install nvidia-cuda-nvrtc-cu12` or set BITNET_NVRTC_PATH to libnvrtc.so.12)"
    )]
    NoNvrtc {
        /// Where it was looked for, for the message.
        searched: String,
    },
    /// A kernel source failed to compile (a bug in this crate).
    #[error("NVRTC failed to compile {module} for {arch}: {log}")]
    Compile {
        /// The kernel module.
        module: &'static str,
        /// The target, `sm_XY`.
        arch: String,
        /// NVRTC's log, first lines.
        log: String,
    },
    /// The GPU is older than the kernels need (`mma.sync` on int8: sm_80).
    #[error("CUDA device {ordinal} is sm_{major}{minor}; bitnet's kernels need sm_80 or newer")]
    TooOld {
        /// The device.
        ordinal: usize,
        /// Compute capability, major.
        major: i32,
        /// Compute capability, minor.
        minor: i32,
    },
    /// A call into the driver failed.
    #[error("CUDA driver error: {0}")]
    Driver(String),
    /// The kernel cache could not be read or written.
    #[error("kernel cache {path}: {source}")]
    Cache {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A shape or argument the backend cannot take.
    #[error("{0}")]
    Invalid(String),
    /// What this build cannot do on a GPU yet.
    #[error("{0}")]
    Unsupported(String),
}

impl From<cudarc::driver::DriverError> for CudaError {
    fn from(e: cudarc::driver::DriverError) -> Self {
        CudaError::Driver(e.to_string())
    }
}

/// Results of this crate.
pub type Result<T, E = CudaError> = std::result::Result<T, E>;
