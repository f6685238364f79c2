//! bitnet-tokenizer (placeholder)
