//! bitnet-server (placeholder)
