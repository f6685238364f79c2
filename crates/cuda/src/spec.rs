//! The `--device` argument: `cpu`, `cuda` (= `cuda:0`) or `cuda:N`.

use std::fmt;
use std::str::FromStr;

use crate::error::CudaError;

/// Where a model runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DeviceSpec {
    /// The CPU kernels (the default).
    #[default]
    Cpu,
    /// An NVIDIA GPU by ordinal.
    Cuda(usize),
}

impl DeviceSpec {
    /// Whether this is a GPU.
    pub fn is_cuda(self) -> bool {
        matches!(self, DeviceSpec::Cuda(_))
    }
}

impl FromStr for DeviceSpec {
    type Err = CudaError;

    fn from_str(s: &str) -> Result<Self, CudaError> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            _ => match t.strip_prefix("cuda:") {
                Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => n
                    .parse()
                    .map(DeviceSpec::Cuda)
                    .map_err(|_| CudaError::BadDevice(s.to_string())),
                _ => Err(CudaError::BadDevice(s.to_string())),
            },
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!("cpu".parse::<DeviceSpec>().ok(), Some(DeviceSpec::Cpu));
        assert_eq!("cuda".parse::<DeviceSpec>().ok(), Some(DeviceSpec::Cuda(0)));
        assert_eq!(
            "CUDA:3".parse::<DeviceSpec>().ok(),
            Some(DeviceSpec::Cuda(3))
        );
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
    }

    #[test]
    fn rejects_the_rest_with_one_line() {
        for bad in [
            "tpu",
            "cuda:",
            "cuda:-1",
            "cuda:x",
            "cuda:1:2",
            "",
            "cuda:99999999999999999999",
        ] {
            let e = bad.parse::<DeviceSpec>().err().map(|e| e.to_string());
            let e = e.unwrap_or_default();
            assert!(e.starts_with("unknown device"), "{bad}: {e}");
            assert!(!e.contains('\n'));
        }
    }
}
