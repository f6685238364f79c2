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
    /// together through the model, with f32 KV caches whatever the engine's
    /// `kv_type`).
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let seqs = texts
            .iter()
            .map(|t| self.embedding_tokens(t))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.model().embed(self.pool(), &seqs)?)
    }

    /// The L2-normalised embedding of each token sequence, in order, taken
    /// as given (no BOS or end-of-text token is added: these are the ids
    /// the model sees). Each must be non-empty, within the context and the
    /// vocabulary.
    pub fn embed_tokens(&self, seqs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        self.embedding_spec()?;
        let n_vocab = self.model().hparams().n_vocab;
        for ids in seqs {
            self.check_embedding_length(ids)?;
            if let Some(bad) = ids.iter().find(|&&id| id as usize >= n_vocab) {
                return Err(Error::InvalidArgument {
                    name: "input",
                    reason: format!("token id {bad} is out of range (vocabulary size {n_vocab})"),
                });
            }
        }
        Ok(self.model().embed(self.pool(), seqs)?)
    }

    fn embedding_spec(&self) -> Result<&bitnet_model::EmbeddingSpec> {
        self.model()
            .embedding()
            .ok_or_else(|| Error::InvalidArgument {
                name: "model",
                reason: format!(
                    "{} is a language model, not an embedding model (BitNet embedding models on \
                 Qwen3 or Gemma3 backbones)",
                    self.name()
                ),
            })
    }

    /// The tokens the model embeds for `text` (see the module doc).
    pub fn embedding_tokens(&self, text: &str) -> Result<Vec<u32>> {
        let spec = self.embedding_spec()?;
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
        self.check_embedding_length(&ids)?;
        Ok(ids)
    }

    /// A sequence to embed must be non-empty and fit in the context.
    fn check_embedding_length(&self, ids: &[u32]) -> Result<()> {
        if ids.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        if ids.len() > self.n_ctx() {
            return Err(Error::PromptTooLong {
                n_tokens: ids.len(),
                n_ctx: self.n_ctx(),
            });
        }
        Ok(())
    }
}

/// Speed of [`bitnet_model::Model::embed`] on texts of random tokens.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EmbedBench {
    /// Texts per call.
    pub texts: usize,
    /// Tokens per text.
    pub tokens_per_text: usize,
    /// Threads.
    pub threads: usize,
    /// Kernel level.
    pub kernel: String,

    /// Tokens per second of each run.
    pub runs: Vec<f64>,
    /// Mean tokens per second.
    pub mean: f64,
    /// Standard deviation of the runs.
    pub stddev: f64,
}

/// Embeds `texts` texts of `tokens` seeded random token ids, `reps` times
/// after one warm-up call, and reports tokens per second (prompt
/// processing, as llama-bench's `pp` for an embedding model).
pub fn bench_embedding(
    model: &bitnet_model::Model,
    pool: &bitnet_threads::ThreadPool,
    texts: usize,
    tokens: usize,
    reps: usize,
) -> Result<EmbedBench> {
    if texts == 0 || tokens == 0 || reps == 0 {
        return Err(Error::InvalidArgument {
            name: "embedding benchmark",
            reason: "texts, tokens and repetitions must be at least 1".into(),
        });
    }
    let vocab = model.hparams().n_vocab as u64;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) % vocab) as u32
    };
    let seqs: Vec<Vec<u32>> = (0..texts)
        .map(|_| (0..tokens).map(|_| next()).collect())
        .collect();
    model.embed(pool, &seqs)?;
    let mut runs = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = std::time::Instant::now();
        model.embed(pool, &seqs)?;
        runs.push((texts * tokens) as f64 / start.elapsed().as_secs_f64());
    }
    let mean = runs.iter().sum::<f64>() / reps as f64;
    let var = runs.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / reps as f64;
    Ok(EmbedBench {
        texts,
        tokens_per_text: tokens,
        threads: pool.n_threads(),
        kernel: model.kernels().isa().name().to_string(),

        runs,
        mean,
        stddev: var.sqrt(),
    })
}
