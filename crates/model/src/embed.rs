//! Text embeddings: pooling of the final-normed hidden states.
//!
//! An embedding model ([`crate::Arch::is_embedding`]) runs the same blocks
//! as a language model and stops before the head
//! ([`Model::forward_hidden`]). Each text's vector is its pooled hidden
//! state (the last token's for the BitNet embedding models, see
//! [`crate::EmbeddingSpec`]), L2-normalised, as sentence-transformers and
//! `llama-embedding --embd-normalize 2` give it.
//!
//! Texts are independent sequences, each with its own f32 KV cache sized to
//! it (attending with the vectorised row operations: an f16 cache moves a
//! random model's vectors by 2e-4 in cosine distance), and as many as fit in [`MAX_BATCH_TOKENS`] go through one forward
//! pass together, so a batch of short texts shares every weight read.

use bitnet_threads::ThreadPool;

use crate::Model;
use crate::config::Pooling;
use crate::error::{Error, Result};
use crate::forward::{BatchToken, Scratch};
use crate::kv_cache::KvType;

/// Tokens per forward pass when embedding a batch of texts (a text longer
/// than this still goes through alone).
pub const MAX_BATCH_TOKENS: usize = 2048;

impl Model {
    /// The L2-normalised embedding of each token sequence (already
    /// tokenised, with whatever special tokens the model expects).
    pub fn embed(&self, pool: &ThreadPool, seqs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let spec = self.embedding.as_ref().ok_or_else(|| Error::Embedding {
            reason: format!(
                "{} is a language model ({}), not an embedding model",
                self.description,
                self.hparams.arch.gguf_name()
            ),
        })?;
        if let Some(i) = seqs.iter().position(Vec::is_empty) {
            return Err(Error::Embedding {
                reason: format!("text {i} has no tokens"),
            });
        }
        let d = self.hparams.n_embd;
        let mut out = Vec::with_capacity(seqs.len());
        let mut scratch = Scratch::new();
        let mut start = 0;
        while start < seqs.len() {
            // The next group: at least one text, then as many as fit.
            let mut end = start + 1;
            let mut tokens = seqs[start].len();
            while end < seqs.len() && tokens + seqs[end].len() <= MAX_BATCH_TOKENS {
                tokens += seqs[end].len();
                end += 1;
            }
            let group = &seqs[start..end];
            let mut caches: Vec<_> = group
                .iter()
                .map(|s| self.new_cache(s.len(), KvType::F32).with_fast_attention())
                .collect();
            let mut batch = Vec::with_capacity(tokens);
            for (seq, ids) in group.iter().enumerate() {
                let last = ids.len() - 1;
                batch.extend(ids.iter().enumerate().map(|(i, &token)| BatchToken {
                    seq,
                    token,
                    logits: match spec.pooling {
                        Pooling::Last => i == last,
                        Pooling::Cls => i == 0,
                        Pooling::Mean => true,
                    },
                }));
            }
            let hidden = self.forward_hidden(pool, &batch, &mut caches, &mut scratch)?;
            let mut rows = hidden.chunks_exact(d);
            for ids in group {
                let n = if spec.pooling == Pooling::Mean {
                    ids.len()
                } else {
                    1
                };
                let mut v = vec![0f32; d];
                for row in rows.by_ref().take(n) {
                    v.iter_mut().zip(row).for_each(|(a, b)| *a += b);
                }
                if n > 1 {
                    v.iter_mut().for_each(|a| *a /= n as f32);
                }
                let norm = v
                    .iter()
                    .map(|a| f64::from(*a) * f64::from(*a))
                    .sum::<f64>()
                    .sqrt();
                if norm > 0.0 {
                    v.iter_mut()
                        .for_each(|a| *a = (f64::from(*a) / norm) as f32);
                }
                out.push(v);
            }
            start = end;
        }
        Ok(out)
    }
}
