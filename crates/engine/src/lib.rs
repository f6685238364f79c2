//! bitnet-engine (placeholder)
