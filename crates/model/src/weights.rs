//! The loaded weights of a model, in the form the kernels run.

use bitnet_kernels::{DenseMatrix, DenseType, Q8Matrix, TernaryMatrix};

use crate::storage::ByteView;

/// A dense matrix (embedding or head) kept in its stored format, read in
/// place from the file's bytes.
#[derive(Clone, Debug)]
pub struct DenseWeight {
    /// Storage type.
    pub ty: DenseType,
    /// Rows (vocabulary entries).
    pub rows: usize,
    /// Columns (hidden size).
    pub cols: usize,
    /// The stored bytes.
    pub bytes: ByteView,
}

impl DenseWeight {
    /// The kernel view of the matrix.
    pub fn matrix(&self) -> DenseMatrix<'_> {
        DenseMatrix::new(self.ty, self.rows, self.cols, &self.bytes)
            .expect("size checked when the weight was loaded")
    }
}

/// The weights of one transformer block.
#[derive(Clone, Debug)]
pub struct LayerWeights {
    /// RMSNorm before attention.
    pub attn_norm: Vec<f32>,
    /// Q, K and V stacked (rows `q_dim + 2 · kv_dim`): one activation
    /// quantisation feeds all three.
    pub qkv: TernaryMatrix,
    /// RMSNorm of the attention output before the output projection.
    pub attn_sub_norm: Option<Vec<f32>>,
    /// Attention output projection.
    pub wo: TernaryMatrix,
    /// RMSNorm before the FFN.
    pub ffn_norm: Vec<f32>,
    /// Gate and up stacked (rows `2 · n_ff`).
    pub gate_up: TernaryMatrix,
    /// RMSNorm of the gated FFN activation before the down projection.
    pub ffn_sub_norm: Option<Vec<f32>>,
    /// FFN down projection.
    pub down: TernaryMatrix,
    /// Embedding backbones: per-projection input norms, Q/K head norms and
    /// Gemma3's post-norms (see [`BackboneWeights`]).
    pub backbone: Option<Box<BackboneWeights>>,
}

/// What a BitNet embedding backbone (Qwen3, Gemma3) adds to a block.
///
/// Every projection normalises its own input (RMSNorm with its own weight)
/// before quantising it, so Q, K and V (and gate and up) cannot share one
/// activation quantisation: [`LayerWeights::qkv`] then holds Q alone and
/// [`LayerWeights::gate_up`] the gate alone, and K, V and up are here. The
/// input norms of the output and down projections are
/// [`LayerWeights::attn_sub_norm`] and [`LayerWeights::ffn_sub_norm`].
#[derive(Clone, Debug)]
pub struct BackboneWeights {
    /// Input norms of Q, K, V (each `n_embd`).
    pub qkv_norms: [Vec<f32>; 3],
    /// Key projection.
    pub k: TernaryMatrix,
    /// Value projection.
    pub v: TernaryMatrix,
    /// Input norms of gate and up (each `n_embd`).
    pub gate_up_norms: [Vec<f32>; 2],
    /// Up projection.
    pub up: TernaryMatrix,
    /// RMSNorm of every query and key head (`head_dim` each), before RoPE.
    pub q_norm: Vec<f32>,
    /// See `q_norm`.
    pub k_norm: Vec<f32>,
    /// Norms of the attention and FFN outputs before the residual adds
    /// (Gemma3).
    pub post_norms: Option<[Vec<f32>; 2]>,
}

/// All weights of a model.
#[derive(Clone, Debug)]
pub struct Weights {
    /// Token embedding (`n_vocab × n_embd`).
    pub token_embd: DenseWeight,
    /// Final RMSNorm.
    pub output_norm: Vec<f32>,
    /// Separate LM head, or `None` when tied to the embedding.
    pub output: Option<DenseWeight>,
    /// A Q8_0 head repacked for the int8 head kernel (`Kernels::q8_matmul`,
    /// int8 activations per 32 values, as llama.cpp does for Q8_0): twice as
    /// fast as converting the head to f32 on the fly. `None` for other
    /// head types: a Q6_K head is read in place by the integer product
    /// (`Kernels::q6k_matmul`), F16/BF16/F32 heads by the f32 path.
    pub head_q8: Option<Q8Matrix>,
    /// Per-dimension RoPE frequency divisors (llama3 scaling), if any.
    pub rope_freq_factors: Option<Vec<f32>>,
    /// The blocks.
    pub layers: Vec<LayerWeights>,
}

/// The int8 form of a Q8_0 head (see [`Weights::head_q8`]); `None` for other
/// types.
pub(crate) fn head_q8(head: &DenseWeight) -> crate::Result<Option<Q8Matrix>> {
    if head.ty != DenseType::Q8_0 {
        return Ok(None);
    }
    Q8Matrix::from_dense(&head.matrix())
        .map(Some)
        .map_err(|source| crate::Error::Kernel {
            tensor: "LM head".into(),
            source,
        })
}

impl Weights {
    /// The LM head.
    pub fn head(&self) -> &DenseWeight {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }

    /// Bytes held by repacked ternary weights and norms (excluding the dense
    /// matrices, which stay in the file's pages).
    pub fn owned_bytes(&self) -> usize {
        let vec = |v: &Vec<f32>| v.len() * 4;
        let opt = |v: &Option<Vec<f32>>| v.as_ref().map_or(0, vec);
        self.layers
            .iter()
            .map(|l| {
                vec(&l.attn_norm)
                    + vec(&l.ffn_norm)
                    + opt(&l.attn_sub_norm)
                    + opt(&l.ffn_sub_norm)
                    + l.qkv.size_bytes()
                    + l.wo.size_bytes()
                    + l.gate_up.size_bytes()
                    + l.down.size_bytes()
                    + l.backbone.as_ref().map_or(0, |b| {
                        b.qkv_norms
                            .iter()
                            .chain(&b.gate_up_norms)
                            .map(vec)
                            .sum::<usize>()
                            + vec(&b.q_norm)
                            + vec(&b.k_norm)
                            + b.post_norms.as_ref().map_or(0, |p| vec(&p[0]) + vec(&p[1]))
                            + b.k.size_bytes()
                            + b.v.size_bytes()
                            + b.up.size_bytes()
                    })
            })
            .sum::<usize>()
            + vec(&self.output_norm)
            + self.head_q8.as_ref().map_or(0, Q8Matrix::size_bytes)
    }

    /// The model's size as llama-bench's `model_size` means it: the weights
    /// once each, ternary matrices as repacked, the embedding and a separate
    /// head in their stored format. (The int8 copy of a Q8_0 head is a
    /// run-time duplicate and not counted; [`Weights::owned_bytes`] does.)
    pub fn size_bytes(&self) -> usize {
        self.owned_bytes() - self.head_q8.as_ref().map_or(0, Q8Matrix::size_bytes)
            + self.token_embd.bytes.len()
            + self.output.as_ref().map_or(0, |o| o.bytes.len())
    }
}
