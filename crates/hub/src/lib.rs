//! bitnet-hub (placeholder)
