//! The forward pass on a CUDA GPU, host side: the weights uploaded once
//! (ternary matrices repacked into [`bitnet_cuda::GpuTernary`]), the KV
//! cache on the device, and per layer the launch sequence of the CPU
//! forward pass (`forward.rs`) on `bitnet-cuda`'s kernels:
//!
//! 1. `rmsnorm_quant` (attention norm fused with int8 quantisation), QKV
//!    product (`ternary_gemv` up to 8 tokens, else the `mma.sync` GEMM);
//! 2. RoPE on Q and K, K/V stored at the tokens' positions;
//! 3. split-K attention and its combine;
//! 4. sub-norm + quantisation, output product, residual add;
//! 5. FFN norm + quantisation, gate/up product, gated activation, sub-norm
//!    + quantisation, down product, residual add;
//!
//! then the final norm of the last token, the head in its file format, and
//! greedy argmax. One sequence per [`GpuModel`]; embedding backbones (own
//! norms per projection) and GELU FFNs are refused. Untested without a
//! device: `tests/gpu.rs` compares its logits with the CPU's.

use bitnet_cuda::cudarc::driver::CudaSlice;
use bitnet_cuda::layers::{AttnShape, KvElem};
use bitnet_cuda::ops::{DeviceTernary, Product};
use bitnet_cuda::repack::{WORD_COLS, words_for};
use bitnet_cuda::{CudaError, Gpu, GpuTernary};
use bitnet_kernels::{DenseType, TernaryMatrix};

use crate::config::{FfnAct, RopeStyle};
use crate::{KvType, Model};

type Result<T> = std::result::Result<T, CudaError>;

struct Layer {
    attn_norm: CudaSlice<f32>,
    qkv: DeviceTernary,
    attn_sub_norm: Option<CudaSlice<f32>>,
    wo: DeviceTernary,
    ffn_norm: CudaSlice<f32>,
    gate_up: DeviceTernary,
    ffn_sub_norm: Option<CudaSlice<f32>>,
    down: DeviceTernary,
}

enum Kv {
    F32(Vec<(CudaSlice<f32>, CudaSlice<f32>)>),
    F16(Vec<(CudaSlice<u16>, CudaSlice<u16>)>),
}

/// A model's weights and one sequence's KV cache on a GPU.
pub struct GpuModel {
    gpu: Gpu,
    layers: Vec<Layer>,
    output_norm: CudaSlice<f32>,
    head: CudaSlice<u8>,
    head_kind: &'static str,
    inv_freq: CudaSlice<f32>,
    kv: Kv,
    max_ctx: usize,
    len: usize,
}

fn unsupported(what: &str) -> CudaError {
    CudaError::Unsupported(format!("the GPU forward pass does not support {what} yet"))
}

impl GpuModel {
    /// Uploads `model` to GPU `ordinal` with a KV cache of `max_ctx`
    /// positions (`KvType::Q8` is not supported on the GPU).
    pub fn new(model: &Model, ordinal: usize, max_ctx: usize, kv_type: KvType) -> Result<GpuModel> {
        let hp = model.hparams();
        if model.embedding().is_some() {
            return Err(unsupported("embedding models"));
        }
        if hp.ffn_act == FfnAct::GeluTanh {
            return Err(unsupported("GELU FFNs"));
        }
        if hp.rope_dim != hp.head_dim {
            return Err(unsupported("partial rotary dimensions"));
        }
        let gpu = Gpu::open(ordinal)?;
        let st = gpu.stream().clone();
        let up = |v: &[f32]| st.clone_htod(v).map_err(CudaError::from);
        let tern = |m: &TernaryMatrix| gpu.upload_ternary(&GpuTernary::from_matrix(m)?);
        let mut layers = Vec::new();
        for lw in &model.weights().layers {
            if lw.backbone.is_some() {
                return Err(unsupported("per-projection input norms"));
            }
            layers.push(Layer {
                attn_norm: up(&lw.attn_norm)?,
                qkv: tern(&lw.qkv)?,
                attn_sub_norm: lw.attn_sub_norm.as_deref().map(up).transpose()?,
                wo: tern(&lw.wo)?,
                ffn_norm: up(&lw.ffn_norm)?,
                gate_up: tern(&lw.gate_up)?,
                ffn_sub_norm: lw.ffn_sub_norm.as_deref().map(up).transpose()?,
                down: tern(&lw.down)?,
            });
        }
        let head = model.weights().head();
        let (head_kind, bytes): (&'static str, Vec<u8>) = match head.ty {
            DenseType::F16 => ("f16", head.bytes.to_vec()),
            DenseType::Q8_0 => ("q8_0", head.bytes.to_vec()),
            DenseType::Q6K => ("q6_k", head.bytes.to_vec()),
            // F32 and BF16 heads go to the GPU as F16 (half the bytes).
            DenseType::F32 | DenseType::BF16 => {
                let m = head.matrix();
                let mut row = vec![0f32; head.cols];
                let mut out = Vec::with_capacity(head.rows * head.cols * 2);
                for r in 0..head.rows {
                    m.dequantize_row(r, &mut row);
                    for v in &row {
                        out.extend_from_slice(&half::f16::from_f32(*v).to_le_bytes());
                    }
                }
                ("f16", out)
            }
        };
        let kv_len = hp.n_head_kv * max_ctx * hp.head_dim;
        let kv = match kv_type {
            KvType::F32 => Kv::F32(
                (0..hp.n_layer)
                    .map(|_| Ok((st.alloc_zeros(kv_len)?, st.alloc_zeros(kv_len)?)))
                    .collect::<Result<_>>()?,
            ),
            KvType::F16 => Kv::F16(
                (0..hp.n_layer)
                    .map(|_| Ok((st.alloc_zeros(kv_len)?, st.alloc_zeros(kv_len)?)))
                    .collect::<Result<_>>()?,
            ),
            KvType::Q8 => return Err(unsupported("the q8 KV cache (use f16 or f32)")),
        };
        Ok(GpuModel {
            output_norm: up(&model.weights().output_norm)?,
            head: st.clone_htod(&bytes)?,
            head_kind,
            inv_freq: up(&model.inv_freq)?,
            layers,
            kv,
            max_ctx,
            len: 0,
            gpu,
        })
    }

    /// The device, for messages.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the sequence is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets the sequence.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends `tokens` to the sequence and returns the logits of the last.
    pub fn forward(&mut self, model: &Model, tokens: &[u32]) -> Result<Vec<f32>> {
        let logits = self.forward_device(model, tokens)?;
        self.gpu.download(&logits)
    }

    /// Appends `tokens` and returns the greedy next token.
    pub fn forward_greedy(&mut self, model: &Model, tokens: &[u32]) -> Result<u32> {
        let logits = self.forward_device(model, tokens)?;
        let n_vocab = model.hparams().n_vocab;
        let best = self.gpu.argmax(&logits, 1, n_vocab)?;
        Ok(best.first().map_or(0, |&b| b.max(0) as u32))
    }

    fn forward_device(&mut self, model: &Model, tokens: &[u32]) -> Result<CudaSlice<f32>> {
        let hp = model.hparams();
        let n = tokens.len();
        if n == 0 || self.len + n > self.max_ctx {
            return Err(CudaError::Invalid(format!(
                "{n} tokens after {} in a context of {}",
                self.len, self.max_ctx
            )));
        }
        let (d, qd, kvd, hd, f) = (hp.n_embd, hp.q_dim(), hp.kv_dim(), hp.head_dim, hp.n_ff);
        let eps = hp.rms_eps;
        let st = self.gpu.stream().clone();
        // Embeddings on the host (a row per token), then one upload.
        let embd = model.weights().token_embd.matrix();
        let scale = hp.arch.embedding_scale(d);
        let mut x_host = vec![0f32; n * d];
        for (t, &tok) in tokens.iter().enumerate() {
            if tok as usize >= hp.n_vocab {
                return Err(CudaError::Invalid(format!("token {tok} out of range")));
            }
            let row = &mut x_host[t * d..][..d];
            embd.dequantize_row(tok as usize, row);
            if let Some(s) = scale {
                row.iter_mut().for_each(|v| *v *= s);
            }
        }
        let pos_host: Vec<i32> = (self.len..self.len + n).map(|p| p as i32).collect();
        let mut x = st.clone_htod(&x_host)?;
        let pos = st.clone_htod(&pos_host)?;
        let stride = qd + 2 * kvd;
        let mut attn = st.alloc_zeros::<f32>(n * qd)?;
        let mut normed = st.alloc_zeros::<f32>(d)?;
        let mut ffn = st.alloc_zeros::<f32>(n * f)?;
        let product = Product::for_tokens(n);
        let shape = AttnShape {
            n_heads: hp.n_head,
            n_kv_heads: hp.n_head_kv,
            head_dim: hd,
            max_ctx: self.max_ctx,
            scale: (hd as f64).powf(-0.5) as f32,
            window: 0,
        };
        let style = match hp.rope_style {
            RopeStyle::Neox => 0,
            RopeStyle::Interleaved => 1,
        };
        let max_pos = self.len + n - 1;
        let g = &self.gpu;
        for (l, lw) in self.layers.iter().enumerate() {
            let acts = g.quantize(
                &x,
                n,
                d,
                words_for(d) * WORD_COLS,
                Some((&lw.attn_norm, eps)),
            )?;
            let mut qkv = g.ternary_matmul(&lw.qkv, &acts, product)?;
            g.rope(
                &mut qkv,
                0,
                stride,
                &pos,
                &self.inv_freq,
                n,
                hp.n_head,
                hd,
                style,
            )?;
            g.rope(
                &mut qkv,
                qd,
                stride,
                &pos,
                &self.inv_freq,
                n,
                hp.n_head_kv,
                hd,
                style,
            )?;
            let offs = (qd, qd + kvd, stride);
            match &mut self.kv {
                Kv::F32(c) => attend(
                    g, &qkv, offs, &mut c[l], &pos, n, max_pos, &shape, &mut attn,
                )?,
                Kv::F16(c) => attend(
                    g, &qkv, offs, &mut c[l], &pos, n, max_pos, &shape, &mut attn,
                )?,
            }
            let stride_qd = words_for(qd) * WORD_COLS;
            let acts = g.quantize(
                &attn,
                n,
                qd,
                stride_qd,
                lw.attn_sub_norm.as_ref().map(|w| (w, eps)),
            )?;
            let proj = g.ternary_matmul(&lw.wo, &acts, product)?;
            g.add(&mut x, &proj, n * d)?;
            let acts = g.quantize(
                &x,
                n,
                d,
                words_for(d) * WORD_COLS,
                Some((&lw.ffn_norm, eps)),
            )?;
            let gu = g.ternary_matmul(&lw.gate_up, &acts, product)?;
            let kind = if hp.ffn_act == FfnAct::Silu { 0 } else { 1 };
            g.gated_act(&gu, &mut ffn, n, f, kind)?;
            let stride_f = words_for(f) * WORD_COLS;
            let acts = g.quantize(
                &ffn,
                n,
                f,
                stride_f,
                lw.ffn_sub_norm.as_ref().map(|w| (w, eps)),
            )?;
            let proj = g.ternary_matmul(&lw.down, &acts, product)?;
            g.add(&mut x, &proj, n * d)?;
        }
        // The last token: final norm, head.
        g.rmsnorm(
            (&x, (n - 1) * d, d),
            &self.output_norm,
            (&mut normed, 0, d),
            1,
            d,
            eps,
        )?;
        let mut logits = st.alloc_zeros::<f32>(hp.n_vocab)?;
        g.head(
            self.head_kind,
            &self.head,
            &normed,
            &mut logits,
            hp.n_vocab,
            d,
            1,
        )?;
        self.len += n;
        Ok(logits)
    }
}

#[allow(clippy::too_many_arguments)]
fn attend<T: KvElem>(
    g: &Gpu,
    qkv: &CudaSlice<f32>,
    offs: (usize, usize, usize),
    cache: &mut (CudaSlice<T>, CudaSlice<T>),
    pos: &CudaSlice<i32>,
    n: usize,
    max_pos: usize,
    shape: &AttnShape,
    out: &mut CudaSlice<f32>,
) -> Result<()> {
    g.kv_store(qkv, offs, cache, pos, n, shape)?;
    g.attention(qkv, offs.2, cache, pos, n, max_pos, shape, out)
}
