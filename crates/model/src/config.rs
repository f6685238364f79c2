//! Model hyper-parameters and the architectures we implement.
//!
//! All three supported architectures share one transformer skeleton (RMSNorm,
//! GQA attention with rotary positions, gated FFN, ternary projections); what
//! differs is declared here, in one place, and nothing about a model's size
//! is hard-coded anywhere.

/// The model families we run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// BitNet b1.58 2B-4T (`bitnet-b1.58`, `bitnet-25`; HF `model_type:
    /// bitnet`): squared-ReLU gated FFN, attention and FFN sub-norms.
    BitnetB158,
    /// 1bitLLM bitnet_b1_58-large / 3B (`bitnet`): SiLU gated FFN with
    /// sub-norms.
    Bitnet,
    /// Llama with ternary projections (Llama3-8B-1.58, Falcon3-1.58bit,
    /// Falcon-E): SwiGLU, no sub-norms, separate output head.
    Llama,
    /// BitNet embedding model on a Qwen3 backbone (bitnet-embedding-0.6b):
    /// an RMSNorm before every projection, Q/K head norms, SwiGLU.
    Qwen3,
    /// BitNet embedding model on a Gemma3 backbone (bitnet-embedding-270m):
    /// as [`Arch::Qwen3`], plus post-attention and post-FFN norms,
    /// embeddings scaled by `sqrt(hidden)`, GELU (tanh) gating.
    Gemma3,
}

impl Arch {
    /// Architecture from a GGUF `general.architecture` string.
    pub fn from_gguf(name: &str) -> Option<Arch> {
        match name {
            "bitnet-b1.58" | "bitnet-25" | "bitnet_b1_58" => Some(Arch::BitnetB158),
            "bitnet" => Some(Arch::Bitnet),
            "llama" | "falcon3" => Some(Arch::Llama),
            "qwen3" => Some(Arch::Qwen3),
            "gemma3" => Some(Arch::Gemma3),
            _ => None,
        }
    }

    /// The GGUF architecture string we write for this family.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Arch::BitnetB158 => "bitnet-b1.58",
            Arch::Bitnet => "bitnet",
            Arch::Llama => "llama",
            Arch::Qwen3 => "qwen3",
            Arch::Gemma3 => "gemma3",
        }
    }

    /// Whether the blocks normalise the attention output before the output
    /// projection and the gated FFN activation before the down projection
    /// (`attn_sub_norm` / `ffn_sub_norm`; in the embedding backbones, the
    /// input norms of `o_proj` and `down_proj`, which are the same thing).
    pub fn has_sub_norms(self) -> bool {
        !matches!(self, Arch::Llama)
    }

    /// Whether every projection has its own input RMSNorm (the embedding
    /// backbones), so that Q/K/V and gate/up cannot share one activation
    /// quantisation.
    pub fn has_projection_norms(self) -> bool {
        matches!(self, Arch::Qwen3 | Arch::Gemma3)
    }

    /// Whether Q and K are RMS-normalised per head before the rotation.
    pub fn has_head_norms(self) -> bool {
        self.has_projection_norms()
    }

    /// Whether the attention and FFN outputs are normalised before the
    /// residual add (Gemma3's `post_attention_layernorm` and
    /// `post_feedforward_layernorm`).
    pub fn has_post_norms(self) -> bool {
        self == Arch::Gemma3
    }

    /// The factor the token embeddings are multiplied by.
    pub fn embedding_scale(self, n_embd: usize) -> Option<f32> {
        (self == Arch::Gemma3).then(|| (n_embd as f32).sqrt())
    }

    /// Whether the architecture is an embedding model (no LM head).
    pub fn is_embedding(self) -> bool {
        self.has_projection_norms()
    }

    /// The FFN activation the architecture defines.
    pub fn default_ffn_act(self) -> FfnAct {
        match self {
            Arch::BitnetB158 => FfnAct::Relu2,
            Arch::Bitnet | Arch::Llama | Arch::Qwen3 => FfnAct::Silu,
            Arch::Gemma3 => FfnAct::GeluTanh,
        }
    }

    /// List of supported names, for error messages.
    pub const SUPPORTED: &'static str = "bitnet-b1.58, bitnet-25, bitnet, llama, and the BitNet \
         embedding backbones qwen3 and gemma3 (GGUF); model_type bitnet or llama with a bitnet \
         quantization_config, qwen3 or gemma3_text with per-projection norms (Hugging Face)";
}

/// How an embedding model turns the hidden states of a text into one vector
/// (sentence-transformers' pooling modes; GGUF `{arch}.pooling_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The last token's state (the BitNet embedding models).
    Last,
    /// The mean over the tokens.
    Mean,
    /// The first token's state.
    Cls,
}

/// What an embedding model adds to its hyper-parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct EmbeddingSpec {
    /// Pooling of the final-normed hidden states (then L2-normalised).
    pub pooling: Pooling,
    /// Whether an end-of-text token is appended to every text before
    /// pooling (Qwen3's `<|endoftext|>`, as its tokenizer and bitnet.cpp's
    /// converter do).
    pub append_eos: bool,
    /// Attention scores scale by `query_pre_attn_scalar^-0.5` instead of
    /// `head_dim^-0.5` (Gemma3).
    pub query_pre_attn_scalar: Option<f32>,
    /// Sliding-window attention (Gemma3): the window, and which layers use
    /// it (the others attend to every position).
    pub sliding_window: Option<(usize, Vec<bool>)>,
}

impl EmbeddingSpec {
    /// The attention window of layer `l`, if it is a sliding-window layer.
    pub fn window(&self, l: usize) -> Option<usize> {
        self.sliding_window
            .as_ref()
            .and_then(|(w, layers)| layers.get(l).copied().unwrap_or(false).then_some(*w))
    }
}

/// Gated-FFN activation applied to the gate projection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FfnAct {
    /// `relu(x)²`.
    Relu2,
    /// `x · sigmoid(x)`.
    Silu,
    /// GELU, tanh approximation (`gelu_pytorch_tanh`).
    GeluTanh,
}

/// How rotary embeddings pair the elements of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Element `i` with `i + d/2` (transformers' rotate-half; GGUF NEOX).
    Neox,
    /// Elements `2i` and `2i+1` (llama.cpp "norm", used by GGUF llama files
    /// whose Q/K rows were permuted at conversion).
    Interleaved,
}

/// Hyper-parameters of one model.
#[derive(Clone, Debug, PartialEq)]
pub struct HParams {
    /// Architecture family.
    pub arch: Arch,
    /// Hidden size.
    pub n_embd: usize,
    /// Number of transformer blocks.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (GQA).
    pub n_head_kv: usize,
    /// Dimension of one head.
    pub head_dim: usize,
    /// FFN inner size.
    pub n_ff: usize,
    /// Vocabulary size (rows of the embedding).
    pub n_vocab: usize,
    /// Context length the model was trained for.
    pub n_ctx_train: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// RoPE base.
    pub rope_theta: f32,
    /// Rotated dimensions per head (= head_dim for every supported model).
    pub rope_dim: usize,
    /// RoPE pairing.
    pub rope_style: RopeStyle,
    /// FFN activation.
    pub ffn_act: FfnAct,
    /// Whether the head reuses the token embedding.
    pub tied_embeddings: bool,
}

impl HParams {
    /// Width of all query heads together.
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// Width of all key (or value) heads together.
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    /// Checks the relations between the sizes; `file` names the source and
    /// `keys` how its fields are spelled, so that errors name the real key.
    pub(crate) fn validate(&self, file: &str, keys: Keys<'_>) -> crate::Result<()> {
        let bad = |field: &str, reason: String| crate::Error::Config {
            file: file.to_string(),
            field: keys.spell(field),
            reason,
        };
        for (field, v) in [
            ("hidden size", self.n_embd),
            ("layer count", self.n_layer),
            ("head count", self.n_head),
            ("kv head count", self.n_head_kv),
            ("head dim", self.head_dim),
            ("ffn size", self.n_ff),
            ("vocab size", self.n_vocab),
        ] {
            if v == 0 {
                return Err(bad(field, "must be positive".into()));
            }
            if v > 1 << 24 {
                return Err(bad(field, format!("{v} is implausibly large")));
            }
        }
        if !self.n_head.is_multiple_of(self.n_head_kv) {
            return Err(bad(
                "kv head count",
                format!(
                    "{} query heads are not a multiple of {} kv heads",
                    self.n_head, self.n_head_kv
                ),
            ));
        }
        if self.head_dim > 512 {
            return Err(bad(
                "head dim",
                format!("{} is larger than the supported 512", self.head_dim),
            ));
        }
        if !self.head_dim.is_multiple_of(2) || self.rope_dim != self.head_dim {
            return Err(bad(
                "rope dimension",
                format!(
                    "rope dim {} must equal the (even) head dim {}",
                    self.rope_dim, self.head_dim
                ),
            ));
        }
        if !(self.rms_eps.is_finite() && self.rms_eps > 0.0) {
            return Err(bad(
                "rms eps",
                format!("{} is not a positive number", self.rms_eps),
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(bad(
                "rope theta",
                format!("{} is not a positive number", self.rope_theta),
            ));
        }
        Ok(())
    }
}

/// How a source spells the hyper-parameter fields, for error messages.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Keys<'a> {
    /// `config.json` keys (`num_key_value_heads`).
    Hf,
    /// GGUF metadata keys under the architecture's prefix
    /// (`bitnet-b1.58.attention.head_count_kv`).
    Gguf(&'a str),
    /// Built in code (random models): the descriptive names.
    Internal,
}

impl Keys<'_> {
    /// The key for a field named as [`HParams::validate`] names it.
    fn spell(self, field: &str) -> String {
        let (hf, gguf) = match field {
            "hidden size" => ("hidden_size", "embedding_length"),
            "layer count" => ("num_hidden_layers", "block_count"),
            "head count" => ("num_attention_heads", "attention.head_count"),
            "kv head count" => ("num_key_value_heads", "attention.head_count_kv"),
            "head dim" => ("head_dim", "attention.key_length"),
            "ffn size" => ("intermediate_size", "feed_forward_length"),
            "vocab size" => ("vocab_size", "vocab_size"),
            "rope dimension" => ("head_dim", "rope.dimension_count"),
            "rms eps" => ("rms_norm_eps", "attention.layer_norm_rms_epsilon"),
            "rope theta" => ("rope_theta", "rope.freq_base"),
            _ => return field.to_string(),
        };
        match self {
            Keys::Hf => format!("{hf} ({field})"),
            Keys::Gguf(arch) => format!("{arch}.{gguf} ({field})"),
            Keys::Internal => field.to_string(),
        }
    }
}
