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
    /// Llama with ternary projections (Llama3-8B-1.58, Falcon3-1.58bit):
    /// SwiGLU, no sub-norms, separate output head.
    Llama,
}

impl Arch {
    /// Architecture from a GGUF `general.architecture` string.
    pub fn from_gguf(name: &str) -> Option<Arch> {
        match name {
            "bitnet-b1.58" | "bitnet-25" | "bitnet_b1_58" => Some(Arch::BitnetB158),
            "bitnet" => Some(Arch::Bitnet),
            "llama" | "falcon3" => Some(Arch::Llama),
            _ => None,
        }
    }

    /// The GGUF architecture string we write for this family.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Arch::BitnetB158 => "bitnet-b1.58",
            Arch::Bitnet => "bitnet",
            Arch::Llama => "llama",
        }
    }

    /// Whether the blocks have `attn_sub_norm` and `ffn_sub_norm`.
    pub fn has_sub_norms(self) -> bool {
        matches!(self, Arch::BitnetB158 | Arch::Bitnet)
    }

    /// The FFN activation the architecture defines.
    pub fn default_ffn_act(self) -> FfnAct {
        match self {
            Arch::BitnetB158 => FfnAct::Relu2,
            Arch::Bitnet | Arch::Llama => FfnAct::Silu,
        }
    }

    /// List of supported names, for error messages.
    pub const SUPPORTED: &'static str = "bitnet-b1.58, bitnet-25, bitnet, llama (GGUF); \
         model_type bitnet or llama with a bitnet quantization_config (Hugging Face)";
}

/// Gated-FFN activation applied to the gate projection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FfnAct {
    /// `relu(x)²`.
    Relu2,
    /// `x · sigmoid(x)`.
    Silu,
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
