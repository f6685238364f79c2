//! bitnet-threads (placeholder)
