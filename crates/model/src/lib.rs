//! bitnet-model (placeholder)
