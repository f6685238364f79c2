//! Models of real shapes with random weights, for benchmarks that need no
//! download.
//!
//! Speed and memory depend on a model's *shape*, not on what its weights
//! say, so `bitnet bench --shape 2b4t` builds BitNet b1.58 2B-4T's exact
//! tensors (same sizes, same fused layout, same head format) filled with
//! seeded random values and measures that. The presets are the published
//! configurations of the models people run with bitnet.cpp:
//!
//! | preset  | model | arch | d | layers | heads (kv) | FFN | vocab | head |
//! |---------|-------|------|---|--------|------------|-----|-------|------|
//! | `2b4t`  | microsoft/bitnet-b1.58-2B-4T | bitnet-b1.58 | 2560 | 30 | 20 (5) | 6912 | 128256 | tied |
//! | `large` | 1bitLLM/bitnet_b1_58-large | bitnet | 1536 | 24 | 16 (16) | 4096 | 32002 | tied |
//! | `3b`    | 1bitLLM/bitnet_b1_58-3B | bitnet | 3200 | 26 | 32 (32) | 8640 | 32002 | tied |
//! | `8b`    | HF1BitLLM/Llama3-8B-1.58-100B-tokens | llama | 4096 | 32 | 32 (8) | 14336 | 128256 | separate |
//! | `100b`  | bitnet.cpp's dummy "100B" | bitnet | 8192 | 72 | 64 (64) | 45568 | 32002 | tied |
//!
//! The 100B shape is the one bitnet.cpp's `utils/generate-dummy-bitnet-model.py`
//! (`model_config["100B"]`) writes for its "100B BitNet on one CPU" figure:
//! hidden 8192, FFN 45568, 72 layers, 64 heads with as many KV heads, on the
//! 1bitLLM `bitnet` architecture with that model's 32002-token embedding
//! (tied). That is 99.96 B ternary weights: 20.0 GB in our 1.6-bit layout,
//! plus a 0.5 GB F16 embedding and 2.4 MB of f16 KV cache per position.
//!
//! # How the weights are made
//!
//! * Every tensor draws from its own SplitMix64 stream seeded by
//!   `(seed, layer, tensor)` (the embedding by row), so the model is the same
//!   for a seed whatever the thread count or scheduling.
//! * Ternary values are uniform over `{-1, 0, +1}` (a third zeros, like
//!   trained BitNet weights), with a per-part scale `1/sqrt(2K/3)` that keeps
//!   activations near unit size through the layers (so attention and the
//!   FFN see realistic, finite numbers). Norm weights are `1 ± 0.1`.
//! * The embedding/head is generated and encoded one row at a time straight
//!   into its stored format (F16, or Q8_0 via
//!   [`bitnet_kernels::dense::quantize`]): a full f32 copy of a 128256-row
//!   head would be 1.3 GB. Q6_K blocks are drawn directly (random 6-bit
//!   values and sub-scales), because its quantiser's scale search would
//!   dominate the build.
//! * Matrices are built in parallel with rayon (off the hot path).
//!
//! [`MemoryEstimate`] predicts what a shape will take *before* building it,
//! so a caller can refuse a model that cannot fit instead of being killed by
//! the out-of-memory killer halfway through.

use std::sync::Arc;

use bitnet_kernels::dense::{self, DenseType};
use bitnet_kernels::ternary::TernaryLayout;
use bitnet_kernels::{Kernels, ScaleRule, TernaryMatrix};
use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

use crate::config::{Arch, EmbeddingSpec, FfnAct, HParams, Pooling, RopeStyle};
use crate::error::{Error, Result};
use crate::kv_cache::{KvCache, KvType};
use crate::storage::{ByteView, Owner};
use crate::weights::{BackboneWeights, DenseWeight, LayerWeights, Weights};
use crate::{LoadOptions, Model};

/// The built-in model shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// BitNet b1.58 2B-4T.
    B2b4t,
    /// 1bitLLM bitnet_b1_58-large (0.7B).
    Large,
    /// 1bitLLM bitnet_b1_58-3B.
    B3,
    /// Llama3-8B-1.58-100B-tokens.
    B8,
    /// bitnet.cpp's dummy 100B BitNet.
    B100,
}

impl Shape {
    /// Every preset.
    pub const ALL: [Shape; 5] = [
        Shape::B2b4t,
        Shape::Large,
        Shape::B3,
        Shape::B8,
        Shape::B100,
    ];

    /// Parses a preset name (`2b4t`, `large`, `3b`, `8b`, `100b`).
    pub fn from_name(s: &str) -> Option<Shape> {
        match s.trim().to_ascii_lowercase().as_str() {
            "2b4t" | "2b-4t" | "2b" | "bitnet-2b4t" => Some(Shape::B2b4t),
            "large" | "0.7b" | "700m" => Some(Shape::Large),
            "3b" => Some(Shape::B3),
            "8b" | "llama3-8b" => Some(Shape::B8),
            "100b" => Some(Shape::B100),
            _ => None,
        }
    }

    /// The preset's name.
    pub fn name(self) -> &'static str {
        match self {
            Shape::B2b4t => "2b4t",
            Shape::Large => "large",
            Shape::B3 => "3b",
            Shape::B8 => "8b",
            Shape::B100 => "100b",
        }
    }

    /// The model whose shape this is.
    pub fn source(self) -> &'static str {
        match self {
            Shape::B2b4t => "microsoft/bitnet-b1.58-2B-4T",
            Shape::Large => "1bitLLM/bitnet_b1_58-large",
            Shape::B3 => "1bitLLM/bitnet_b1_58-3B",
            Shape::B8 => "HF1BitLLM/Llama3-8B-1.58-100B-tokens",
            Shape::B100 => "bitnet.cpp generate-dummy-bitnet-model.py 100B",
        }
    }

    /// The names accepted by [`Shape::from_name`], for messages.
    pub const NAMES: &'static str = "2b4t, large, 3b, 8b, 100b";

    /// The preset's hyper-parameters.
    pub fn hparams(self) -> HParams {
        match self {
            Shape::B2b4t => HParams::bitnet_b158_2b4t(),
            Shape::Large => HParams::bitnet_large(),
            Shape::B3 => HParams::bitnet_3b(),
            Shape::B8 => HParams::llama3_8b_158(),
            Shape::B100 => HParams::bitnet_100b(),
        }
    }
}

impl HParams {
    /// bitnet-embedding-0.6b (Qwen3-0.6B backbone, bitnet.cpp's guide): d
    /// 1024, 28 layers, 16 heads / 8 KV heads of 128, FFN 3072 (SiLU), vocab
    /// 151936, RoPE θ 1e6, 32k context.
    pub fn bitnet_embedding_0_6b() -> HParams {
        HParams {
            arch: Arch::Qwen3,
            n_embd: 1024,
            n_layer: 28,
            n_head: 16,
            n_head_kv: 8,
            head_dim: 128,
            n_ff: 3072,
            n_vocab: 151936,
            n_ctx_train: 32768,
            rms_eps: 1e-6,
            rope_theta: 1_000_000.0,
            rope_dim: 128,
            rope_style: RopeStyle::Neox,
            ffn_act: FfnAct::Silu,
            tied_embeddings: true,
        }
    }

    /// bitnet-embedding-270m (Gemma3 backbone, bitnet.cpp's guide): d 640,
    /// 18 layers, 4 heads / 1 KV head of 256, FFN 2048 (GELU), vocab 262144,
    /// RoPE θ 10000, 32k context.
    pub fn bitnet_embedding_270m() -> HParams {
        HParams {
            arch: Arch::Gemma3,
            n_embd: 640,
            n_layer: 18,
            n_head: 4,
            n_head_kv: 1,
            head_dim: 256,
            n_ff: 2048,
            n_vocab: 262144,
            n_ctx_train: 32768,
            rms_eps: 1e-6,
            rope_theta: 10000.0,
            rope_dim: 256,
            rope_style: RopeStyle::Neox,
            ffn_act: FfnAct::GeluTanh,
            tied_embeddings: true,
        }
    }

    /// BitNet b1.58 2B-4T: d 2560, 30 layers, 20 heads / 5 KV heads, FFN 6912
    /// (squared ReLU, sub-norms), vocab 128256, tied head, RoPE θ 500000.
    pub fn bitnet_b158_2b4t() -> HParams {
        HParams {
            arch: Arch::BitnetB158,
            n_embd: 2560,
            n_layer: 30,
            n_head: 20,
            n_head_kv: 5,
            head_dim: 128,
            n_ff: 6912,
            n_vocab: 128256,
            n_ctx_train: 4096,
            rms_eps: 1e-5,
            rope_theta: 500000.0,
            rope_dim: 128,
            rope_style: RopeStyle::Neox,
            ffn_act: FfnAct::Relu2,
            tied_embeddings: true,
        }
    }

    /// 1bitLLM bitnet_b1_58-large: d 1536, 24 layers, 16 heads (MHA), FFN 4096
    /// (SiLU, sub-norms), vocab 32002, tied head, RoPE θ 10000.
    pub fn bitnet_large() -> HParams {
        HParams {
            arch: Arch::Bitnet,
            n_embd: 1536,
            n_layer: 24,
            n_head: 16,
            n_head_kv: 16,
            head_dim: 96,
            n_ff: 4096,
            n_vocab: 32002,
            n_ctx_train: 2048,
            rms_eps: 1e-5,
            rope_theta: 10000.0,
            rope_dim: 96,
            rope_style: RopeStyle::Neox,
            ffn_act: FfnAct::Silu,
            tied_embeddings: true,
        }
    }

    /// 1bitLLM bitnet_b1_58-3B: d 3200, 26 layers, 32 heads of 100 (MHA), FFN
    /// 8640, vocab 32002, tied head.
    pub fn bitnet_3b() -> HParams {
        HParams {
            n_embd: 3200,
            n_layer: 26,
            n_head: 32,
            n_head_kv: 32,
            head_dim: 100,
            rope_dim: 100,
            n_ff: 8640,
            ..HParams::bitnet_large()
        }
    }

    /// Llama3-8B-1.58-100B-tokens: d 4096, 32 layers, 32 heads / 8 KV heads,
    /// FFN 14336 (SwiGLU, no sub-norms), vocab 128256, separate F16 head,
    /// RoPE θ 500000.
    pub fn llama3_8b_158() -> HParams {
        HParams {
            arch: Arch::Llama,
            n_embd: 4096,
            n_layer: 32,
            n_head: 32,
            n_head_kv: 8,
            head_dim: 128,
            n_ff: 14336,
            n_vocab: 128256,
            n_ctx_train: 8192,
            rms_eps: 1e-5,
            rope_theta: 500000.0,
            rope_dim: 128,
            rope_style: RopeStyle::Interleaved,
            ffn_act: FfnAct::Silu,
            tied_embeddings: false,
        }
    }

    /// bitnet.cpp's dummy 100B model (see the module documentation): d 8192,
    /// 72 layers, 64 heads (MHA), FFN 45568, vocab 32002, tied head.
    pub fn bitnet_100b() -> HParams {
        HParams {
            n_embd: 8192,
            n_layer: 72,
            n_head: 64,
            n_head_kv: 64,
            head_dim: 128,
            rope_dim: 128,
            n_ff: 45568,
            ..HParams::bitnet_large()
        }
    }

    /// The ternary matrices of one block as the model stores them (fused):
    /// `(rows, cols)` of QKV, output, gate/up and down.
    pub fn layer_matrices(&self) -> [(usize, usize); 4] {
        let d = self.n_embd;
        [
            (self.q_dim() + 2 * self.kv_dim(), d),
            (d, self.q_dim()),
            (2 * self.n_ff, d),
            (d, self.n_ff),
        ]
    }
}

/// Bytes of a ternary matrix packed in `layout` (weights and per-row
/// scales).
pub fn ternary_bytes(rows: usize, cols: usize, layout: TernaryLayout) -> usize {
    layout.packed_bytes(rows, cols) + rows * 4
}

/// What a model of some shape needs in memory, by part.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MemoryEstimate {
    /// Packed ternary matrices.
    pub ternary: usize,
    /// Token embedding and head in their stored format.
    pub dense: usize,
    /// Norm weights.
    pub norms: usize,
    /// The KV cache.
    pub kv_cache: usize,
    /// Forward-pass buffers for the batch size.
    pub scratch: usize,
    /// Peak temporary memory while building (unpacked values of the matrices
    /// in flight).
    pub build: usize,
}

impl MemoryEstimate {
    /// Estimates a model of `hp` with its ternary matrices in `layout` (the
    /// kernels' [`Kernels::ternary_layout`]), its head in `head`, a KV cache
    /// of `ctx` positions of `kv`, batches of up to `n_batch` tokens, built
    /// by `build_threads` threads at once.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        hp: &HParams,
        layout: TernaryLayout,
        head: DenseType,
        ctx: usize,
        kv: KvType,
        n_batch: usize,
        build_threads: usize,
    ) -> MemoryEstimate {
        let mats = hp.layer_matrices();
        let ternary = hp.n_layer
            * mats
                .iter()
                .map(|&(r, c)| ternary_bytes(r, c, layout))
                .sum::<usize>();
        let row = |ty: DenseType| ty.row_bytes(hp.n_embd).unwrap_or(hp.n_embd * 4);
        let embd_ty = if hp.tied_embeddings {
            head
        } else {
            DenseType::F16
        };
        let dense = hp.n_vocab * row(embd_ty)
            + if hp.tied_embeddings {
                0
            } else {
                hp.n_vocab * row(head)
            };
        let norms = 4
            * (hp.n_embd * (1 + 2 * hp.n_layer)
                + if hp.arch.has_sub_norms() {
                    hp.n_layer * (hp.q_dim() + hp.n_ff)
                } else {
                    0
                });
        let kv_cache = KvCache::bytes_for(hp, ctx, kv);
        let widest = hp.q_dim() + 2 * hp.kv_dim() + hp.n_embd;
        let scratch = 4 * n_batch * (3 * hp.n_embd + hp.q_dim() + widest + 3 * hp.n_ff)
            + 4 * hp.n_vocab
            + n_batch * (hp.n_ff + 64);
        let largest = mats.iter().map(|&(r, c)| r * c).max().unwrap_or(0);
        let build = build_threads.max(1) * largest;
        MemoryEstimate {
            ternary,
            dense,
            norms,
            kv_cache,
            scratch,
            build,
        }
    }

    /// The model's own size (weights).
    pub fn weights(&self) -> usize {
        self.ternary + self.dense + self.norms
    }

    /// Steady-state total (weights, KV cache, buffers).
    pub fn steady(&self) -> usize {
        self.weights() + self.kv_cache + self.scratch
    }

    /// The peak: steady state plus the build's temporaries.
    pub fn peak(&self) -> usize {
        self.steady() + self.build
    }
}

/// How to build a random model.
#[derive(Clone, Debug)]
pub struct RandomOptions {
    /// Seed of every random stream.
    pub seed: u64,
    /// Storage format of the embedding/head (F16, Q8_0, Q6_K, BF16 or F32).
    /// An untied model's embedding is F16, as in the Llama3-8B-1.58 file.
    pub head_type: DenseType,
    /// The kernels the model will run with.
    pub kernels: &'static Kernels,
    /// Matrices built at once (each holds its unpacked values meanwhile, see
    /// [`MemoryEstimate::build`]); 0 = one per CPU.
    pub parallel_matrices: usize,
}

impl Default for RandomOptions {
    fn default() -> Self {
        RandomOptions {
            seed: 42,
            head_type: DenseType::F16,
            kernels: LoadOptions::default().kernels,
            parallel_matrices: 0,
        }
    }
}

/// SplitMix64: tiny, fast, and good enough for benchmark weights.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, a: u64, b: u64) -> Rng {
        let mut r = Rng(seed
            ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ b.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next();
        r
    }

    #[inline]
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[-1, 1)`.
    #[inline]
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 * (2.0 / (1u64 << 24) as f32) - 1.0
    }
}

/// Fills `out` with values uniform over `{-1, 0, 1}`.
fn fill_ternary(rng: &mut Rng, out: &mut [i8]) {
    let mut chunks = out.chunks_exact_mut(8);
    for c in &mut chunks {
        let bits = rng.next().to_le_bytes();
        for (v, b) in c.iter_mut().zip(bits) {
            // (b · 3) >> 8 maps 0..=255 onto 0, 1, 2 in near-equal thirds.
            *v = ((u16::from(b) * 3) >> 8) as i8 - 1;
        }
    }
    for v in chunks.into_remainder() {
        *v = ((u16::from(rng.next() as u8) * 3) >> 8) as i8 - 1;
    }
}

const TAG_EMBD: u64 = 1 << 32;
const TAG_HEAD: u64 = 2 << 32;
const TAG_NORM: u64 = 3 << 32;

/// One fused ternary matrix: parts of `rows` rows sharing the input.
fn random_ternary(
    kernels: &Kernels,
    seed: u64,
    layer: usize,
    which: u64,
    parts: &[usize],
    cols: usize,
) -> Result<TernaryMatrix> {
    let rows: usize = parts.iter().sum();
    let mut values = vec![0i8; rows * cols];
    // Rows in chunks, each with its own stream, so that big matrices fill in
    // parallel too.
    const CHUNK_ROWS: usize = 256;
    values
        .par_chunks_mut(CHUNK_ROWS * cols)
        .enumerate()
        .for_each(|(i, chunk)| {
            fill_ternary(
                &mut Rng::new(seed, layer as u64 * 8 + which, i as u64),
                chunk,
            )
        });
    let scale = 1.0 / (2.0 * cols as f32 / 3.0).sqrt();
    let mut scales = Vec::with_capacity(rows);
    for (p, &n) in parts.iter().enumerate() {
        // Slightly different scale per part, as trained models have.
        scales.extend(std::iter::repeat_n(scale * (1.0 + 0.05 * p as f32), n));
    }
    kernels
        .pack_ternary(rows, cols, &values, scales, ScaleRule::Multiply)
        .map_err(|source| Error::Kernel {
            tensor: format!("random blk.{layer} #{which}"),
            source,
        })
}

fn random_norm(seed: u64, tag: u64, len: usize) -> Vec<f32> {
    let mut rng = Rng::new(seed, TAG_NORM, tag);
    (0..len).map(|_| 1.0 + 0.1 * rng.unit()).collect()
}

/// A `rows × cols` dense matrix in `ty`, generated and encoded row by row.
fn random_dense(
    seed: u64,
    tag: u64,
    ty: DenseType,
    rows: usize,
    cols: usize,
) -> Result<DenseWeight> {
    let row_bytes = ty.row_bytes(cols).ok_or_else(|| Error::Config {
        file: "(random model)".into(),
        field: "head type".into(),
        reason: format!(
            "{} needs the hidden size to be a multiple of {}",
            ty.name(),
            ty.block_elems()
        ),
    })?;
    let mut bytes = vec![0u8; rows * row_bytes];
    // Values of the size trained embeddings have (|x| ≲ 0.05).
    const AMP: f32 = 0.05;
    const CHUNK_ROWS: usize = 64;
    bytes
        .par_chunks_mut(CHUNK_ROWS * row_bytes)
        .enumerate()
        .try_for_each(|(i, chunk)| -> Result<()> {
            let mut row = vec![0f32; cols];
            let mut half_row = vec![f16::ZERO; cols];
            for (j, out) in chunk.chunks_exact_mut(row_bytes).enumerate() {
                let mut rng = Rng::new(seed, tag, (i * CHUNK_ROWS + j) as u64);
                if ty == DenseType::Q6K {
                    random_q6_k_row(&mut rng, out);
                    continue;
                }
                row.iter_mut().for_each(|v| *v = AMP * rng.unit());
                match ty {
                    DenseType::F16 => {
                        half_row.convert_from_f32_slice(&row);
                        for (o, h) in out.chunks_exact_mut(2).zip(&half_row) {
                            o.copy_from_slice(&h.to_le_bytes());
                        }
                    }
                    _ => {
                        let enc = dense::quantize(ty, &row).map_err(|source| Error::Kernel {
                            tensor: "random head".into(),
                            source,
                        })?;
                        out.copy_from_slice(&enc);
                    }
                }
            }
            Ok(())
        })?;
    let owner: Owner = Arc::new(bytes);
    Ok(DenseWeight {
        ty,
        rows,
        cols,
        bytes: ByteView::whole(owner),
    })
}

/// One row of random Q6_K blocks, written directly: uniform 6-bit values,
/// sub-block scales in 8..=31 and a super-block scale that puts values in
/// ±0.05, like the other head types. (llama.cpp's Q6_K quantiser searches
/// scales for every 16 values and would take ~30 s of CPU for a
/// 128256 × 2560 head; the bytes it produces are no different in kind.)
fn random_q6_k_row(rng: &mut Rng, out: &mut [u8]) {
    use bitnet_kernels::dense::q6_k::BLOCK_BYTES;
    let d = f16::from_f32(0.05 / (31.0 * 32.0)).to_le_bytes();
    for block in out.chunks_exact_mut(BLOCK_BYTES) {
        for c in block[..192].chunks_exact_mut(8) {
            c.copy_from_slice(&rng.next().to_le_bytes());
        }
        for scales in block[192..208].chunks_exact_mut(8) {
            for (sc, r) in scales.iter_mut().zip(rng.next().to_le_bytes()) {
                *sc = 8 + r % 24;
            }
        }
        block[208..210].copy_from_slice(&d);
    }
}

impl Model {
    /// Builds a model of shape `hp` with seeded random weights (see the
    /// module documentation). Check [`MemoryEstimate`] first for big shapes.
    pub fn random(hp: &HParams, opts: &RandomOptions) -> Result<Model> {
        hp.validate("(random model)", crate::config::Keys::Internal)?;
        let seed = opts.seed;
        let d = hp.n_embd;
        let (qd, kvd, ff) = (hp.q_dim(), hp.kv_dim(), hp.n_ff);
        let sub = hp.arch.has_sub_norms();
        // The head first (it is the biggest single allocation), then every
        // matrix of every layer as one parallel job list.
        let token_embd = random_dense(
            seed,
            TAG_EMBD,
            if hp.tied_embeddings {
                opts.head_type
            } else {
                DenseType::F16
            },
            hp.n_vocab,
            d,
        )?;
        let output = if hp.tied_embeddings {
            None
        } else {
            Some(random_dense(seed, TAG_HEAD, opts.head_type, hp.n_vocab, d)?)
        };
        // Same-sized matrices side by side, so that a group of parallel jobs
        // finishes together.
        // Embedding backbones normalise each projection's input on its own,
        // so their Q/K/V and gate/up are separate matrices.
        let split = hp.arch.has_projection_norms();
        let per_layer: u64 = if split { 7 } else { 4 };
        let jobs: Vec<(usize, u64)> = (0..per_layer)
            .flat_map(|m| (0..hp.n_layer).map(move |l| (l, m)))
            .collect();
        let build = |&(l, m): &(usize, u64)| match (split, m) {
            (false, 0) => random_ternary(opts.kernels, seed, l, 0, &[qd, kvd, kvd], d),
            (false, 1) | (true, 3) => random_ternary(opts.kernels, seed, l, m, &[d], qd),
            (false, 2) => random_ternary(opts.kernels, seed, l, 2, &[ff, ff], d),
            (false, _) | (true, 6) => random_ternary(opts.kernels, seed, l, m, &[d], ff),
            (true, 0) => random_ternary(opts.kernels, seed, l, 0, &[qd], d),
            (true, 1 | 2) => random_ternary(opts.kernels, seed, l, m, &[kvd], d),
            (true, _) => random_ternary(opts.kernels, seed, l, m, &[ff], d),
        };
        let parallel = match opts.parallel_matrices {
            0 => rayon::current_num_threads(),
            n => n,
        };
        let mut slots: Vec<Option<TernaryMatrix>> = (0..jobs.len()).map(|_| None).collect();
        for group in jobs.chunks(parallel) {
            let built = group
                .par_iter()
                .with_max_len(1)
                .map(build)
                .collect::<Result<Vec<_>>>()?;
            for (&(l, m), mat) in group.iter().zip(built) {
                slots[l * per_layer as usize + m as usize] = Some(mat);
            }
        }
        let mut mats = slots
            .into_iter()
            .map(|m| m.expect("every matrix was built"));
        let mut layers = Vec::with_capacity(hp.n_layer);
        for l in 0..hp.n_layer {
            let mut next = || mats.next().expect("every matrix was built");
            let tag = |i: usize| (l * 4 + i) as u64;
            let btag = |i: usize| (1u64 << 40) | (l * 16 + i) as u64;
            let (qkv, wo, gate_up, down, backbone) = if split {
                let (q, k, v, o, g, u, dn) =
                    (next(), next(), next(), next(), next(), next(), next());
                let backbone = BackboneWeights {
                    qkv_norms: [4, 5, 6].map(|i| random_norm(seed, btag(i), d)),
                    k,
                    v,
                    gate_up_norms: [7, 8].map(|i| random_norm(seed, btag(i), d)),
                    up: u,
                    q_norm: random_norm(seed, btag(9), hp.head_dim),
                    k_norm: random_norm(seed, btag(10), hp.head_dim),
                    post_norms: hp
                        .arch
                        .has_post_norms()
                        .then(|| [11, 12].map(|i| random_norm(seed, btag(i), d))),
                };
                (q, o, g, dn, Some(Box::new(backbone)))
            } else {
                (next(), next(), next(), next(), None)
            };
            layers.push(LayerWeights {
                attn_norm: random_norm(seed, tag(0), d),
                qkv,
                attn_sub_norm: sub.then(|| random_norm(seed, tag(1), qd)),
                wo,
                ffn_norm: random_norm(seed, tag(2), d),
                gate_up,
                ffn_sub_norm: sub.then(|| random_norm(seed, tag(3), ff)),
                down,
                backbone,
            });
        }
        let head_q8 = crate::weights::head_q8(output.as_ref().unwrap_or(&token_embd))?;
        let weights = Weights {
            token_embd,
            output_norm: random_norm(seed, u64::MAX, d),
            output,
            head_q8,
            rope_freq_factors: None,
            layers,
        };
        let load = LoadOptions {
            kernels: opts.kernels,
            ..LoadOptions::default()
        };
        let description = format!(
            "random {} ({}, seed {seed}, head {})",
            hp.arch.gguf_name(),
            shape_label(hp),
            opts.head_type.name()
        );
        Ok(Model::assemble(
            hp.clone(),
            weights,
            &load,
            description,
            hp.arch.is_embedding().then(|| EmbeddingSpec {
                pooling: Pooling::Last,
                append_eos: hp.arch == Arch::Qwen3,
                query_pre_attn_scalar: None,
                sliding_window: None,
            }),
        ))
    }
}

fn shape_label(hp: &HParams) -> String {
    Shape::ALL
        .into_iter()
        .find(|s| s.hparams() == *hp)
        .map(|s| format!("shape {}", s.name()))
        .unwrap_or_else(|| format!("d {} × {} layers", hp.n_embd, hp.n_layer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BatchToken, Scratch};
    use bitnet_threads::ThreadPool;

    #[test]
    fn random_embedding_backbones_embed_unit_vectors_batch_independently() {
        for base in [
            HParams::bitnet_embedding_0_6b(),
            HParams::bitnet_embedding_270m(),
        ] {
            let hp = HParams {
                n_embd: 64,
                n_layer: 2,
                n_ff: 96,
                n_vocab: 50,
                ..base
            };
            let model = Model::random(&hp, &RandomOptions::default()).unwrap();
            assert!(model.weights().layers[1].backbone.is_some());
            let pool = ThreadPool::new(2);
            let seqs = vec![vec![1, 2, 3, 4, 5], vec![7], vec![9, 8, 7]];
            let all = model.embed(&pool, &seqs).unwrap();
            for (s, v) in seqs.iter().zip(&all) {
                let norm: f32 = v.iter().map(|x| x * x).sum();
                assert!((norm - 1.0).abs() < 1e-5 && v.iter().all(|x| x.is_finite()));
                assert_eq!(&model.embed(&pool, std::slice::from_ref(s)).unwrap()[0], v);
            }
            assert_ne!(all[0], all[2]);
        }
    }

    fn tiny() -> HParams {
        HParams {
            n_embd: 64,
            n_layer: 2,
            n_head: 4,
            n_head_kv: 2,
            head_dim: 16,
            rope_dim: 16,
            n_ff: 96,
            n_vocab: 300,
            ..HParams::bitnet_b158_2b4t()
        }
    }

    #[test]
    fn presets_have_the_published_sizes() {
        let hp = Shape::B2b4t.hparams();
        assert_eq!(
            (
                hp.n_embd,
                hp.n_layer,
                hp.n_head,
                hp.n_head_kv,
                hp.n_ff,
                hp.n_vocab
            ),
            (2560, 30, 20, 5, 6912, 128256)
        );
        hp.validate("2b4t", crate::config::Keys::Internal).unwrap();
        for s in Shape::ALL {
            s.hparams()
                .validate(s.name(), crate::config::Keys::Internal)
                .unwrap();
            assert_eq!(Shape::from_name(s.name()), Some(s));
        }
        // 2.08e9 ternary weights (SPEC §5.2) at 1.6 bits.
        let m = HParams::bitnet_b158_2b4t().layer_matrices();
        let n: usize = 30 * m.iter().map(|(r, c)| r * c).sum::<usize>();
        assert_eq!(n, 2_084_044_800);
        let e = MemoryEstimate::new(
            &hp,
            TernaryLayout::Base3,
            DenseType::F16,
            4096,
            KvType::F16,
            512,
            2,
        );
        assert!((e.ternary as f64 - n as f64 * 0.2).abs() < 0.01 * n as f64 * 0.2);
        // The 2-bit layout of the AVX2 levels: 2 bits per weight.
        let e2 = MemoryEstimate::new(
            &hp,
            TernaryLayout::TwoBit,
            DenseType::F16,
            4096,
            KvType::F16,
            512,
            2,
        );
        assert!((e2.ternary as f64 - n as f64 * 0.25).abs() < 0.01 * n as f64 * 0.25);
        // The lookup layout of AVX2 without VNNI: 5 bits per 3 weights.
        let e3 = MemoryEstimate::new(
            &hp,
            TernaryLayout::Lut3,
            DenseType::F16,
            4096,
            KvType::F16,
            512,
            2,
        );
        let lut3 = n as f64 * 5.0 / 24.0;
        assert!((e3.ternary as f64 - lut3).abs() < 0.01 * lut3);
        assert_eq!(e.dense, 128256 * 2560 * 2);
        assert_eq!(e.kv_cache, 30 * 2 * 640 * 2 * 4096);
        // The 100B shape: 99.96e9 weights, ~20 GB packed.
        let b = HParams::bitnet_100b();
        let n: usize = b.n_layer * b.layer_matrices().iter().map(|(r, c)| r * c).sum::<usize>();
        assert_eq!(n, 99_958_652_928);
    }

    #[test]
    fn random_models_are_deterministic_and_finite() {
        let hp = tiny();
        for head in [DenseType::F16, DenseType::Q8_0] {
            let opts = RandomOptions {
                head_type: head,
                ..RandomOptions::default()
            };
            let a = Model::random(&hp, &opts).unwrap();
            let b = Model::random(&hp, &opts).unwrap();
            assert_eq!(
                a.weights().layers[1].gate_up.data(),
                b.weights().layers[1].gate_up.data()
            );
            let vals = a.weights().layers[0].qkv.unpack();
            let zeros = vals.iter().filter(|&&v| v == 0).count() as f64 / vals.len() as f64;
            assert!((zeros - 1.0 / 3.0).abs() < 0.05, "{zeros}");
            let pool = ThreadPool::new(2);
            let mut cache = a.new_cache(16, KvType::F32);
            let mut scratch = Scratch::new();
            let batch: Vec<BatchToken> = (0..5)
                .map(|i| BatchToken {
                    seq: 0,
                    token: i * 37,
                    logits: i == 4,
                })
                .collect();
            let logits = a
                .forward(
                    &pool,
                    &batch,
                    std::slice::from_mut(&mut cache),
                    &mut scratch,
                )
                .unwrap();
            assert_eq!(logits.len(), hp.n_vocab);
            assert!(logits.iter().all(|v| v.is_finite()));
            assert!(logits.iter().any(|&v| v != 0.0));
        }
        let other = Model::random(
            &hp,
            &RandomOptions {
                seed: 7,
                ..RandomOptions::default()
            },
        )
        .unwrap();
        let a = Model::random(&hp, &RandomOptions::default()).unwrap();
        assert_ne!(
            a.weights().layers[0].qkv.data(),
            other.weights().layers[0].qkv.data()
        );
    }

    #[test]
    fn q6_k_head_needs_whole_blocks() {
        let hp = tiny();
        let opts = RandomOptions {
            head_type: DenseType::Q6K,
            ..RandomOptions::default()
        };
        assert!(Model::random(&hp, &opts).is_err());
        let hp = HParams {
            n_embd: 256,
            n_head: 4,
            n_head_kv: 4,
            head_dim: 64,
            rope_dim: 64,
            ..tiny()
        };
        let m = Model::random(&hp, &opts).unwrap();
        assert_eq!(m.weights().head().ty, DenseType::Q6K);
    }
}
