//! Text embeddings with an embedding model (the BitNet embedding models on
//! Qwen3 and Gemma3 backbones): tokenise each text as the model's own
//! tokenizer does for embedding, and let the model pool and normalise
//! ([`bitnet_model::Model::embed`]).
//!
//! Tokens per text: BOS when the tokenizer adds one (Gemma3's `<bos>`), the
//! text (special-token strings in it are matched as such, as Hugging Face
//! tokenizers and llama.cpp do), then the end-of-text token when the model
//! pools on it ([`bitnet_model::EmbeddingSpec::append_eos`]: Qwen3's
//! `<|endoftext|>`, which its Hugging Face tokenizer appends and bitnet.cpp's
//! converter makes llama.cpp append).

use bitnet_model::Arch;

use crate::engine::Engine;
use crate::error::{Error, Result};

impl Engine {
    /// The L2-normalised embedding of each text, in order (texts are batched
    /// together through the model).
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let seqs = texts
            .iter()
            .map(|t| self.embedding_tokens(t))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.model().embed(self.pool(), &seqs)?)
    }

    /// The tokens the model embeds for `text` (see the module doc).
    pub fn embedding_tokens(&self, text: &str) -> Result<Vec<u32>> {
        let spec = self
            .model()
            .embedding()
            .ok_or_else(|| Error::InvalidArgument {
                name: "model",
                reason: format!(
                    "{} is a language model, not an embedding model (BitNet embedding models on \
                 Qwen3 or Gemma3 backbones)",
                    self.name()
                ),
            })?;
        let mut ids = self.tokenize(text)?;
        if spec.append_eos {
            let tok = self.tokenizer();
            let eos = match self.model().hparams().arch {
                Arch::Qwen3 => tok.token_to_id("<|endoftext|>").or(tok.eos_id()),
                _ => tok.eos_id(),
            }
            .ok_or_else(|| Error::InvalidArgument {
                name: "model",
                reason: "the model pools on an end-of-text token its tokenizer does not have"
                    .into(),
            })?;
            ids.push(eos);
        }
        if ids.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        if ids.len() > self.n_ctx() {
            return Err(Error::PromptTooLong {
                n_tokens: ids.len(),
                n_ctx: self.n_ctx(),
            });
        }
        Ok(ids)
    }
}
