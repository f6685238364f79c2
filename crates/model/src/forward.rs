//! The forward pass over a batch of tokens from one or more sequences.
//!
//! A batch is a list of (sequence, token) pairs; each sequence's tokens are
//! appended to its KV cache in order, so positions follow from the cache
//! length. All tokens go through every projection together (one pass over
//! the weights serves the whole batch, which is what makes prompt processing
//! and batched decoding fast); attention then runs per token and head against
//! its own sequence's cache.

use std::sync::Mutex;

use bitnet_kernels::{QuantizedActs, TernaryMatrix, ops};
use bitnet_threads::ThreadPool;

use crate::Model;
use crate::config::{FfnAct, RopeStyle};
use crate::error::{Error, Result};
use crate::kv_cache::KvCache;

/// One token of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchToken {
    /// Index of the sequence (into the caches slice).
    pub seq: usize,
    /// Token id.
    pub token: u32,
    /// Whether to compute logits at this token.
    pub logits: bool,
}

/// Intermediate values exposed to a tracer (for tests and debugging).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tap {
    /// The embeddings, `n_tokens × n_embd`.
    Embedding,
    /// The residual stream after block `i`, `n_tokens × n_embd`.
    Layer(usize),
    /// The final-normed hidden states of the tokens that want logits.
    FinalNorm,
}

/// Reusable buffers of the forward pass. Grow as needed, never shrink.
#[derive(Default)]
pub struct Scratch {
    x: Vec<f32>,
    xn: Vec<f32>,
    qkv: Vec<f32>,
    attn: Vec<f32>,
    proj: Vec<f32>,
    gate_up: Vec<f32>,
    ffn: Vec<f32>,
    cos: Vec<f32>,
    sin: Vec<f32>,
    positions: Vec<usize>,
    acts: QuantizedActs,
    head_in: Vec<f32>,
    logits: Vec<f32>,
    scores: Vec<Mutex<Vec<f32>>>,
}

impl Scratch {
    /// Empty buffers.
    pub fn new() -> Scratch {
        Scratch::default()
    }
}

fn resize(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

impl Model {
    /// Runs `batch` through the model, appending to `caches`, and returns the
    /// logits (`n × n_vocab`, in batch order) of the tokens that asked for
    /// them.
    pub fn forward<'s>(
        &self,
        pool: &ThreadPool,
        batch: &[BatchToken],
        caches: &mut [KvCache],
        scratch: &'s mut Scratch,
    ) -> Result<&'s [f32]> {
        self.forward_traced(pool, batch, caches, scratch, &mut |_, _| {})
    }

    /// [`Model::forward`], calling `trace` with intermediate values.
    pub fn forward_traced<'s>(
        &self,
        pool: &ThreadPool,
        batch: &[BatchToken],
        caches: &mut [KvCache],
        scratch: &'s mut Scratch,
        trace: &mut dyn FnMut(Tap, &[f32]),
    ) -> Result<&'s [f32]> {
        let hp = &self.hparams;
        let w = &self.weights;
        let k = self.kernels;
        let n = batch.len();
        let d = hp.n_embd;
        let (qd, kvd, hd) = (hp.q_dim(), hp.kv_dim(), hp.head_dim);

        // Validate, and assign positions.
        let positions = &mut scratch.positions;
        positions.clear();
        let mut next: Vec<(usize, usize)> = Vec::new();
        for bt in batch {
            if bt.token as usize >= hp.n_vocab {
                return Err(Error::TokenOutOfRange {
                    id: bt.token,
                    vocab: hp.n_vocab,
                });
            }
            let cache = caches.get(bt.seq).ok_or(Error::NoSuchSequence {
                seq: bt.seq,
                n_caches: caches.len(),
            })?;
            let pos = match next.iter_mut().find(|(s, _)| *s == bt.seq) {
                Some((_, p)) => {
                    *p += 1;
                    *p
                }
                None => {
                    next.push((bt.seq, cache.len()));
                    cache.len()
                }
            };
            if pos >= cache.capacity() {
                return Err(Error::ContextFull {
                    seq: bt.seq,
                    position: pos,
                    capacity: cache.capacity(),
                });
            }
            positions.push(pos);
        }
        if n == 0 {
            return Ok(&scratch.logits[..0]);
        }

        // Rotary tables for every token of the batch.
        let half = hd / 2;
        let cos = resize(&mut scratch.cos, n * half);
        let sin = resize(&mut scratch.sin, n * half);
        for (t, &pos) in positions.iter().enumerate() {
            ops::rope_cos_sin(pos, &self.inv_freq, &mut cos[t * half..][..half], &mut sin[t * half..][..half]);
        }

        // Embeddings.
        let x = resize(&mut scratch.x, n * d);
        let embd = w.token_embd.matrix();
        for (t, bt) in batch.iter().enumerate() {
            embd.dequantize_row(bt.token as usize, &mut x[t * d..(t + 1) * d]);
        }
        trace(Tap::Embedding, x);

        let n_threads = pool.n_threads();
        if scratch.scores.len() < n_threads {
            scratch.scores.resize_with(n_threads, || Mutex::new(Vec::new()));
        }
        let xn = resize(&mut scratch.xn, n * qd.max(d));
        let qkv = resize(&mut scratch.qkv, n * (qd + 2 * kvd));
        let attn = resize(&mut scratch.attn, n * qd);
        let proj = resize(&mut scratch.proj, n * d);
        let gate_up = resize(&mut scratch.gate_up, n * 2 * hp.n_ff);
        let ffn = resize(&mut scratch.ffn, n * hp.n_ff);
        let acts = &mut scratch.acts;
        let matmul = |m: &TernaryMatrix, input: &[f32], cols: usize, acts: &mut QuantizedActs, out: &mut [f32]| {
            k.quantize(&input[..n * cols], n, cols, acts);
            k.ternary_matmul(pool, m, acts, &mut out[..n * m.rows()]);
        };
        let group = hp.n_head / hp.n_head_kv;
        let att_scale = 1.0 / (hd as f32).sqrt();

        for (l, lw) in w.layers.iter().enumerate() {
            // Attention.
            for t in 0..n {
                ops::rmsnorm(&x[t * d..][..d], &lw.attn_norm, hp.rms_eps, &mut xn[t * d..][..d]);
            }
            matmul(&lw.qkv, xn, d, acts, qkv);
            let stride = qd + 2 * kvd;
            for (t, bt) in batch.iter().enumerate() {
                let row = &mut qkv[t * stride..(t + 1) * stride];
                let (c, s) = (&cos[t * half..][..half], &sin[t * half..][..half]);
                for head in row[..qd + kvd].chunks_exact_mut(hd) {
                    match hp.rope_style {
                        RopeStyle::Neox => ops::rope_neox(head, c, s),
                        RopeStyle::Interleaved => ops::rope_interleaved(head, c, s),
                    }
                }
                let cache = &mut caches[bt.seq];
                for h in 0..hp.n_head_kv {
                    let kh = &row[qd + h * hd..][..hd];
                    let vh = &row[qd + kvd + h * hd..][..hd];
                    cache.store(l, h, positions[t], kh, vh);
                }
            }
            {
                let caches = &*caches;
                let qkv = &*qkv;
                let positions = &*positions;
                let scores = &scratch.scores;
                let out = crate::shared::SharedRows::new(attn, hd);
                pool.for_each_chunk(n * hp.n_head, 1, |thread, items| {
                    let mut buf = scores[thread].lock().unwrap_or_else(|e| e.into_inner());
                    for item in items {
                        let (t, h) = (item / hp.n_head, item % hp.n_head);
                        let pos = positions[t];
                        if buf.len() <= pos {
                            buf.resize(pos + 1, 0.0);
                        }
                        let q = &qkv[t * stride + h * hd..][..hd];
                        let cache = &caches[batch[t].seq];
                        // SAFETY: item (t, h) is claimed by exactly one thread,
                        // and row `item` of `attn` (t * n_head + h) belongs to it.
                        let o = unsafe { out.row(item) };
                        cache.attend(l, h / group, pos, q, att_scale, &mut buf, o);
                    }
                });
            }
            let attn_in: &[f32] = match &lw.attn_sub_norm {
                Some(norm) => {
                    for t in 0..n {
                        ops::rmsnorm(&attn[t * qd..][..qd], norm, hp.rms_eps, &mut xn[t * qd..][..qd]);
                    }
                    xn
                }
                None => attn,
            };
            matmul(&lw.wo, attn_in, qd, acts, proj);
            for (xv, pv) in x.iter_mut().zip(proj.iter()) {
                *xv += pv;
            }

            // FFN.
            for t in 0..n {
                ops::rmsnorm(&x[t * d..][..d], &lw.ffn_norm, hp.rms_eps, &mut xn[t * d..][..d]);
            }
            matmul(&lw.gate_up, xn, d, acts, gate_up);
            let f = hp.n_ff;
            for t in 0..n {
                let (g, u) = gate_up[t * 2 * f..(t + 1) * 2 * f].split_at(f);
                let o = &mut ffn[t * f..(t + 1) * f];
                match hp.ffn_act {
                    FfnAct::Relu2 => ops::relu2_mul(g, u, o),
                    FfnAct::Silu => ops::silu_mul(g, u, o),
                }
            }
            if let Some(norm) = &lw.ffn_sub_norm {
                for t in 0..n {
                    let row = &mut ffn[t * f..(t + 1) * f];
                    let tmp = &mut gate_up[t * f..(t + 1) * f];
                    tmp.copy_from_slice(row);
                    ops::rmsnorm(tmp, norm, hp.rms_eps, row);
                }
            }
            matmul(&lw.down, ffn, f, acts, proj);
            for (xv, pv) in x.iter_mut().zip(proj.iter()) {
                *xv += pv;
            }
            trace(Tap::Layer(l), x);
        }
        for (seq, last) in next {
            caches[seq].set_len(last + 1);
        }

        // Head, for the tokens that want logits.
        let wanted: Vec<usize> = (0..n).filter(|&t| batch[t].logits).collect();
        let m = wanted.len();
        let head_in = resize(&mut scratch.head_in, m * d);
        for (i, &t) in wanted.iter().enumerate() {
            ops::rmsnorm(&x[t * d..][..d], &w.output_norm, hp.rms_eps, &mut head_in[i * d..][..d]);
        }
        trace(Tap::FinalNorm, head_in);
        let head = w.head().matrix();
        let logits = resize(&mut scratch.logits, m * hp.n_vocab);
        if m > 0 {
            k.dense_matmul(pool, &head, head_in, m, logits);
        }
        Ok(&scratch.logits[..m * hp.n_vocab])
    }
}
