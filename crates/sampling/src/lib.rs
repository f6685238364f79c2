//! bitnet-sampling (placeholder)
