//! bitnet-kernels (placeholder)
