//! BitNet b1.58 models: configuration, loading, KV cache and forward pass.
//!
//! # Design
//!
//! * **One skeleton, declared differences.** The three families we run
//!   (BitNet b1.58 2B-4T, 1bitLLM's bitnet, ternary Llama/Falcon3) are the same
//!   pre-norm transformer with GQA and rotary positions; [`config::Arch`] says
//!   what differs (sub-norms, FFN activation, RoPE pairing, tied head), and
//!   [`forward`] runs all of them. Sizes come from the file, never from code.
//! * **Formats end at the loader.** GGUF (bitnet.cpp's I2_S/TL1/TL2,
//!   llama.cpp's TQ1_0/TQ2_0) and Hugging Face checkpoints (packed uint8 or
//!   float masters) are decoded to `{-1, 0, 1}` matrices with per-row scales
//!   and packed once into the kernels' layout; Q/K/V and gate/up are fused so
//!   that one activation quantisation feeds each group. Embedding and head stay
//!   in their stored format, read in place from the memory map.
//! * **Numerics are the reference's.** Every projection quantises its input
//!   per token to int8 (absmax, round half to even), takes an exact integer
//!   ternary dot product and applies the scale as the source format defines;
//!   everything else is f32.
//! * **Batches, not sequences.** [`Model::forward`] takes tokens from any
//!   number of sequences, each with its own [`KvCache`], so the same code
//!   serves prompt processing, decoding, perplexity and a batching server.
//! * **Embedding backbones** (BitNet embedding models on Qwen3 and Gemma3)
//!   normalise the input of every projection with its own RMSNorm, so their
//!   projections are not fused; [`Model::embed`] pools and normalises.
//! * The model owns no threads and does no I/O after loading: callers pass a
//!   [`bitnet_threads::ThreadPool`].

#![deny(missing_docs)]

pub mod config;
pub mod convert;
pub mod embed;
mod error;
pub mod forward;
pub mod gpu;
pub mod kv_cache;
mod load;
pub mod random;
mod shared;
pub mod storage;
pub mod weights;

use std::path::Path;
use std::sync::Arc;

use bitnet_gguf::GgufFile;
pub use bitnet_gguf::ternary::TlTiling;
use bitnet_kernels::Kernels;

pub use config::{Arch, EmbeddingSpec, FfnAct, HParams, Pooling, RopeStyle};
pub use error::{Error, Result};
pub use forward::{BatchToken, Scratch, Tap};
pub use kv_cache::{KvCache, KvType};
pub use load::hf::HfCheckpoint;
pub use weights::{BackboneWeights, DenseWeight, LayerWeights, Weights};

/// Hyper-parameters of a GGUF file, without loading its weights.
pub fn gguf_hparams(file: &GgufFile) -> Result<HParams> {
    load::gguf::hparams(file)
}

/// Hyper-parameters from a Hugging Face `config.json`, without loading
/// weights (`label` names the file in errors).
pub fn hf_hparams(config_json: &[u8], label: &str) -> Result<HParams> {
    let (hp, _, _) = load::hf::parse_config(config_json, label)?;
    hp.validate(label, config::Keys::Hf)?;
    Ok(hp)
}

/// Options for loading.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// The kernels the model will run with.
    pub kernels: &'static Kernels,
    /// TL1/TL2 tile sizes per (rows, cols), overriding bitnet.cpp's presets
    /// (from the `kernel_config.ini` a file was converted with).
    pub tl_tiling: Vec<(usize, usize, TlTiling)>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            // BITNET_KERNEL if it names a level this CPU has, else the best.
            kernels: Kernels::from_env().unwrap_or_else(|_| Kernels::best()),
            tl_tiling: Vec::new(),
        }
    }
}

/// A loaded model.
pub struct Model {
    hparams: HParams,
    weights: Weights,
    kernels: &'static Kernels,
    inv_freq: Vec<f32>,
    description: String,
    embedding: Option<EmbeddingSpec>,
}

impl Model {
    /// Loads a GGUF file or a Hugging Face model directory.
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Model> {
        if path.is_dir() {
            Model::from_hf(HfCheckpoint::open_dir(path)?, opts)
        } else {
            Model::from_gguf(Arc::new(GgufFile::open(path)?), opts)
        }
    }

    /// Builds a model from an opened GGUF file.
    pub fn from_gguf(file: Arc<GgufFile>, opts: &LoadOptions) -> Result<Model> {
        let hparams = load::gguf::hparams(&file)?;
        let description = format!(
            "{} ({})",
            file.path()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            file.architecture().unwrap_or("?")
        );
        let embedding = load::gguf::embedding_spec(&file, &hparams)?;
        let src = load::gguf::GgufSource::new(file, opts.tl_tiling.clone());
        let weights = load::build(&src, &hparams, opts.kernels.ternary_layout())?;
        // Q/K rows were put back in rotate-half order while loading.
        let mut hparams = hparams;
        hparams.rope_style = RopeStyle::Neox;
        Ok(Model::assemble(
            hparams,
            weights,
            opts,
            description,
            embedding,
        ))
    }

    /// Builds a model from a Hugging Face checkpoint.
    pub fn from_hf(ckpt: HfCheckpoint, opts: &LoadOptions) -> Result<Model> {
        let description = ckpt.label.clone();
        let (src, hparams) = load::hf::HfSource::new(ckpt)?;
        let weights = load::build(&src, &hparams, opts.kernels.ternary_layout())?;
        let embedding = src.embedding().cloned();
        Ok(Model::assemble(
            hparams,
            weights,
            opts,
            description,
            embedding,
        ))
    }

    fn assemble(
        hparams: HParams,
        weights: Weights,
        opts: &LoadOptions,
        description: String,
        embedding: Option<EmbeddingSpec>,
    ) -> Model {
        let mut inv_freq =
            bitnet_kernels::exact::rope_inv_freq(hparams.rope_dim, hparams.rope_theta);
        if let Some(f) = &weights.rope_freq_factors {
            for (v, f) in inv_freq.iter_mut().zip(f) {
                *v /= f;
            }
        }
        Model {
            hparams,
            weights,
            kernels: opts.kernels,
            inv_freq,
            description,
            embedding,
        }
    }

    /// What the model adds as an embedding model (pooling, end-of-text
    /// token), or `None` for a language model.
    pub fn embedding(&self) -> Option<&EmbeddingSpec> {
        self.embedding.as_ref()
    }

    /// The hyper-parameters.
    pub fn hparams(&self) -> &HParams {
        &self.hparams
    }

    /// The weights.
    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    /// The kernels in use.
    pub fn kernels(&self) -> &'static Kernels {
        self.kernels
    }

    /// Where the model came from.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// A fresh KV cache for `capacity` positions.
    pub fn new_cache(&self, capacity: usize, ty: KvType) -> KvCache {
        KvCache::new(&self.hparams, capacity, ty)
    }

    /// Number of parameters (ternary and dense).
    pub fn n_params(&self) -> u64 {
        let hp = &self.hparams;
        let per_layer = (hp.q_dim() + 2 * hp.kv_dim()) * hp.n_embd
            + hp.n_embd * hp.q_dim()
            + 3 * hp.n_ff * hp.n_embd;
        let head = if hp.tied_embeddings {
            0
        } else {
            hp.n_vocab * hp.n_embd
        };
        (hp.n_layer * per_layer + hp.n_vocab * hp.n_embd + head) as u64
    }
}
