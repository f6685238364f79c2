//! bitnet-gguf (placeholder)
