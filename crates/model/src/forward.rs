//! The forward pass over a batch of tokens from one or more sequences.
//!
//! A batch is a list of (sequence, token) pairs; each sequence's tokens are
//! appended to its KV cache in order, so positions follow from the cache
//! length. All tokens go through every projection together (one pass over
//! the weights serves the whole batch, which is what makes prompt processing
//! and batched decoding fast); attention then runs per token and head against
//! its own sequence's cache.
//!
//! # Cost outside the kernels
//!
//! * Nothing is allocated per call once [`Scratch`] has grown to the largest
//!   batch and context seen (positions, the per-sequence bookkeeping, the
//!   list of tokens that want logits and the attention score rows all live
//!   there).
//! * Per-token work (RMSNorm, RoPE, residual adds, the FFN activation) runs
//!   on the calling thread for small batches — decoding one token, where a
//!   pool dispatch would cost more than a 2560-wide norm — and is spread over
//!   the pool by token for prompt-sized batches. Attention is spread over
//!   (token, head) pairs claimed dynamically, since a late position costs more
//!   than an early one.
//! * Per-token operations are computed exactly as in a one-token-at-a-time
//!   pass, so results do not depend on the batch size or the thread count.

use std::sync::Mutex;

use bitnet_kernels::{DenseType, Q8Acts, Q8KActs, QuantizedActs, TernaryMatrix};
use bitnet_threads::ThreadPool;

use crate::Model;
use crate::config::{FfnAct, RopeStyle};
use crate::error::{Error, Result};
use crate::kv_cache::KvCache;
use crate::shared::SharedRows;

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
    /// A projection's own normed input (embedding backbones).
    xp: Vec<f32>,
    /// A projection's output before it joins its group's rows.
    part: Vec<f32>,
    qkv: Vec<f32>,
    attn: Vec<f32>,
    proj: Vec<f32>,
    gate_up: Vec<f32>,
    ffn: Vec<f32>,
    cos: Vec<f32>,
    sin: Vec<f32>,
    positions: Vec<usize>,
    acts: QuantizedActs,
    head_acts: Q8Acts,
    head_acts_k: Q8KActs,
    head_in: Vec<f32>,
    logits: Vec<f32>,
    scores: Vec<Mutex<Vec<f32>>>,
    /// (sequence, last position assigned in this batch).
    next: Vec<(usize, usize)>,
    /// Batch indices of the tokens that want logits.
    wanted: Vec<usize>,
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

/// What [`Model::run`] returns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Output {
    Logits,
    Hidden,
}

/// `gelu(g) · u` with GELU's tanh approximation (`gelu_pytorch_tanh`).
fn gelu_tanh_mul(gate: &[f32], up: &[f32], out: &mut [f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        let inner = SQRT_2_OVER_PI * (g + 0.044_715 * g * g * g);
        *o = 0.5 * g * (1.0 + inner.tanh()) * u;
    }
}

/// Batches at least this large spread their per-token work over the pool;
/// smaller ones run it on the calling thread, where it costs less than waking
/// the workers.
const PAR_TOKENS: usize = 4;

/// Calls `f(t)` for every token `t < n`, across the pool for large batches.
fn per_token(pool: &ThreadPool, n: usize, f: impl Fn(usize) + Sync) {
    if n >= PAR_TOKENS && pool.n_threads() > 1 {
        let chunk = n.div_ceil(pool.n_threads() * 4).max(1);
        pool.for_each_chunk(n, chunk, |_, range| range.for_each(&f));
    } else {
        (0..n).for_each(f);
    }
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
        self.run(pool, batch, caches, scratch, trace, Output::Logits)
    }

    /// Runs `batch` like [`Model::forward`] but stops before the head: returns
    /// the final-normed hidden states (`n × n_embd`, in batch order) of the
    /// tokens with `logits` set. This is what an embedding model pools.
    pub fn forward_hidden<'s>(
        &self,
        pool: &ThreadPool,
        batch: &[BatchToken],
        caches: &mut [KvCache],
        scratch: &'s mut Scratch,
    ) -> Result<&'s [f32]> {
        self.run(pool, batch, caches, scratch, &mut |_, _| {}, Output::Hidden)
    }

    fn run<'s>(
        &self,
        pool: &ThreadPool,
        batch: &[BatchToken],
        caches: &mut [KvCache],
        scratch: &'s mut Scratch,
        trace: &mut dyn FnMut(Tap, &[f32]),
        output: Output,
    ) -> Result<&'s [f32]> {
        if output == Output::Logits && self.embedding.is_some() {
            return Err(Error::NoLmHead {
                model: self.description.clone(),
            });
        }
        let hp = &self.hparams;
        let w = &self.weights;
        let k = self.kernels;
        // The row operations of the same level as the matrix kernels.
        let ops = k.ops();
        let n = batch.len();
        let d = hp.n_embd;
        let (qd, kvd, hd) = (hp.q_dim(), hp.kv_dim(), hp.head_dim);

        // Validate, and assign positions.
        let positions = &mut scratch.positions;
        positions.clear();
        let next = &mut scratch.next;
        next.clear();
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
        // Embeddings.
        let x = resize(&mut scratch.x, n * d);
        {
            let positions = &*positions;
            let (cos, sin) = (SharedRows::new(cos, half), SharedRows::new(sin, half));
            let xs = SharedRows::new(x, d);
            let embd = w.token_embd.matrix();
            let embd_scale = hp.arch.embedding_scale(d);
            per_token(pool, n, |t| {
                // SAFETY: token t is visited once; rows t are its own.
                let (c, s, xr) = unsafe { (cos.row(t), sin.row(t), xs.row(t)) };
                bitnet_kernels::exact::rope_cos_sin(positions[t], &self.inv_freq, c, s);
                embd.dequantize_row(batch[t].token as usize, xr);
                if let Some(scale) = embd_scale {
                    xr.iter_mut().for_each(|v| *v *= scale);
                }
            });
        }
        trace(Tap::Embedding, x);

        let n_threads = pool.n_threads();
        if scratch.scores.len() < n_threads {
            scratch
                .scores
                .resize_with(n_threads, || Mutex::new(Vec::new()));
        }
        let xn = resize(&mut scratch.xn, n * qd.max(d));
        let xp = resize(&mut scratch.xp, n * d);
        let part = resize(&mut scratch.part, n * qd.max(hp.n_ff));
        let qkv = resize(&mut scratch.qkv, n * (qd + 2 * kvd));
        let attn = resize(&mut scratch.attn, n * qd);
        let proj = resize(&mut scratch.proj, n * d);
        let gate_up = resize(&mut scratch.gate_up, n * 2 * hp.n_ff);
        let ffn = resize(&mut scratch.ffn, n * hp.n_ff);
        let acts = &mut scratch.acts;
        let matmul = |m: &TernaryMatrix,
                      input: &[f32],
                      cols: usize,
                      acts: &mut QuantizedActs,
                      out: &mut [f32]| {
            k.quantize(&input[..n * cols], n, cols, acts);
            k.ternary_matmul(pool, m, acts, &mut out[..n * m.rows()]);
        };
        let group = hp.n_head / hp.n_head_kv;
        // `head_dim ** -0.5` rounded once, as the reference's scalar (Gemma3:
        // `query_pre_attn_scalar ** -0.5`).
        let scalar = self
            .embedding
            .as_ref()
            .and_then(|e| e.query_pre_attn_scalar)
            .map_or(hd as f64, f64::from);
        let att_scale = scalar.powf(-0.5) as f32;
        // A projection with its own input norm (embedding backbones): its
        // normed input, product, and the product's place among `stride`-wide
        // rows at column `offset`.
        let own_norm_matmul = |m: &TernaryMatrix,
                               norm: &[f32],
                               input: &[f32],
                               xp: &mut [f32],
                               acts: &mut QuantizedActs,
                               part: &mut [f32],
                               out: &mut [f32],
                               stride: usize,
                               offset: usize| {
            let cols = m.cols();
            {
                let out = SharedRows::new(&mut xp[..n * cols], cols);
                per_token(pool, n, |t| {
                    // SAFETY: token t is visited once; row t is its own.
                    let o = unsafe { out.row(t) };
                    ops.rmsnorm(&input[t * cols..][..cols], norm, hp.rms_eps, o);
                });
            }
            let rows = m.rows();
            k.quantize(&xp[..n * cols], n, cols, acts);
            k.ternary_matmul(pool, m, acts, &mut part[..n * rows]);
            for t in 0..n {
                out[t * stride + offset..][..rows].copy_from_slice(&part[t * rows..][..rows]);
            }
        };

        let scores = &scratch.scores;
        // Up to a whole query group's scores per thread (see the attention).
        let need = caches.iter().map(KvCache::capacity).max().unwrap_or(0)
            * (hp.n_head / hp.n_head_kv.max(1)).max(1);
        for buf in scores {
            let mut buf = buf.lock().unwrap_or_else(|e| e.into_inner());
            if buf.len() < need {
                buf.resize(need, 0.0);
            }
        }
        let eps = hp.rms_eps;
        let stride = qd + 2 * kvd;
        let f = hp.n_ff;

        for (l, lw) in w.layers.iter().enumerate() {
            // Attention.
            {
                let (x, out) = (&*x, SharedRows::new(&mut xn[..n * d], d));
                per_token(pool, n, |t| {
                    // SAFETY: token t is visited once; row t is its own.
                    let o = unsafe { out.row(t) };
                    ops.rmsnorm(&x[t * d..][..d], &lw.attn_norm, eps, o);
                });
            }
            match &lw.backbone {
                None => matmul(&lw.qkv, xn, d, acts, qkv),
                Some(b) => {
                    for (m, norm, offset) in [
                        (&lw.qkv, &b.qkv_norms[0], 0),
                        (&b.k, &b.qkv_norms[1], qd),
                        (&b.v, &b.qkv_norms[2], qd + kvd),
                    ] {
                        own_norm_matmul(m, norm, xn, xp, acts, part, qkv, stride, offset);
                    }
                }
            }
            {
                let rows = SharedRows::new(&mut qkv[..n * stride], stride);
                let (cos, sin) = (&*cos, &*sin);
                let head_norms = lw.backbone.as_ref().map(|b| (&b.q_norm, &b.k_norm));
                per_token(pool, n, |t| {
                    // SAFETY: token t is visited once; row t is its own.
                    let row = unsafe { rows.row(t) };
                    if let Some((q_norm, k_norm)) = head_norms {
                        let mut tmp = [0f32; 512];
                        for (i, head) in row[..qd + kvd].chunks_exact_mut(hd).enumerate() {
                            tmp[..hd].copy_from_slice(head);
                            let w = if i < hp.n_head { q_norm } else { k_norm };
                            ops.rmsnorm(&tmp[..hd], w, eps, head);
                        }
                    }
                    let (c, s) = (&cos[t * half..][..half], &sin[t * half..][..half]);
                    for head in row[..qd + kvd].chunks_exact_mut(hd) {
                        match hp.rope_style {
                            RopeStyle::Neox => ops.rope_neox(head, c, s),
                            RopeStyle::Interleaved => ops.rope_interleaved(head, c, s),
                        }
                    }
                });
            }
            for (t, bt) in batch.iter().enumerate() {
                let row = &qkv[t * stride..(t + 1) * stride];
                caches[bt.seq].store_token(
                    ops,
                    l,
                    positions[t],
                    &row[qd..qd + kvd],
                    &row[qd + kvd..],
                );
            }
            {
                // Sliding-window layers (Gemma3) see the last `w` positions.
                let window = self.embedding.as_ref().and_then(|e| e.window(l));
                let caches = &*caches;
                let qkv = &*qkv;
                let positions = &*positions;
                let next = &scratch.next;
                // An item is `heads` query heads of one kv head's group,
                // which read its keys and values once: the whole group,
                // halved only while that leaves a thread without an item
                // (reading the rows once matters more than the balance: 2B-4T
                // decoding at depth 2048 on two threads ran 15 % faster
                // with five items of four heads than with ten of two).
                let mut heads = group;
                while heads.is_multiple_of(2) && n * hp.n_head / heads < pool.n_threads() {
                    heads /= 2;
                }
                let per_token = hp.n_head / heads;
                let out = SharedRows::new(&mut attn[..n * qd], heads * hd);
                pool.for_each_chunk(n * per_token, 1, |thread, items| {
                    let mut buf = scores[thread].lock().unwrap_or_else(|e| e.into_inner());
                    for item in items {
                        let (t, h) = (item / per_token, item % per_token * heads);
                        let pos = positions[t];
                        let q = &qkv[t * stride + h * hd..][..heads * hd];
                        let seq = batch[t].seq;
                        let cache = &caches[seq];
                        // The sequence's length once this batch is in: the
                        // reference's row length (see KvCache::attend).
                        let seq_len = next
                            .iter()
                            .find(|(s, _)| *s == seq)
                            .map_or(pos + 1, |(_, last)| last + 1);
                        // SAFETY: item (t, h) is claimed by exactly one thread,
                        // and row `item` of `attn` (heads t * n_head + h ..
                        // + heads) belongs to it.
                        let o = unsafe { out.row(item) };
                        let start = window.map_or(0, |w| (pos + 1).saturating_sub(w));
                        cache.attend_heads(
                            ops,
                            l,
                            h / group,
                            start,
                            pos,
                            seq_len,
                            q,
                            att_scale,
                            &mut buf,
                            o,
                        );
                    }
                });
            }
            let attn_in: &[f32] = match &lw.attn_sub_norm {
                Some(norm) => {
                    let (attn, out) = (&*attn, SharedRows::new(&mut xn[..n * qd], qd));
                    per_token(pool, n, |t| {
                        // SAFETY: token t is visited once; row t is its own.
                        let o = unsafe { out.row(t) };
                        ops.rmsnorm(&attn[t * qd..][..qd], norm, eps, o);
                    });
                    xn
                }
                None => attn,
            };
            matmul(&lw.wo, attn_in, qd, acts, proj);

            let post_norms = lw.backbone.as_ref().and_then(|b| b.post_norms.as_ref());
            // Residual (Gemma3: of the normed output), then the FFN's norm.
            {
                let proj = &*proj;
                let (xs, out) = (
                    SharedRows::new(&mut x[..n * d], d),
                    SharedRows::new(&mut xn[..n * d], d),
                );
                per_token(pool, n, |t| {
                    // SAFETY: token t is visited once; rows t are its own.
                    let (xr, o) = unsafe { (xs.row(t), out.row(t)) };
                    let p = &proj[t * d..][..d];
                    match post_norms {
                        Some(post) => {
                            ops.rmsnorm(p, &post[0], eps, o);
                            xr.iter_mut().zip(&*o).for_each(|(xv, pv)| *xv += pv);
                        }
                        None => xr.iter_mut().zip(p).for_each(|(xv, pv)| *xv += pv),
                    }
                    ops.rmsnorm(xr, &lw.ffn_norm, eps, o);
                });
            }
            match &lw.backbone {
                None => matmul(&lw.gate_up, xn, d, acts, gate_up),
                Some(b) => {
                    for (m, norm, offset) in [
                        (&lw.gate_up, &b.gate_up_norms[0], 0),
                        (&b.up, &b.gate_up_norms[1], f),
                    ] {
                        own_norm_matmul(m, norm, xn, xp, acts, part, gate_up, 2 * f, offset);
                    }
                }
            }
            {
                let gu = SharedRows::new(&mut gate_up[..n * 2 * f], 2 * f);
                let out = SharedRows::new(&mut ffn[..n * f], f);
                let sub_norm = lw.ffn_sub_norm.as_deref();
                per_token(pool, n, |t| {
                    // SAFETY: token t is visited once; rows t are its own.
                    let (gu, o) = unsafe { (gu.row(t), out.row(t)) };
                    let (g, u) = gu.split_at_mut(f);
                    match hp.ffn_act {
                        FfnAct::Relu2 => ops.relu2_mul(g, u, o),
                        FfnAct::Silu => ops.silu_mul(g, u, o),
                        FfnAct::GeluTanh => gelu_tanh_mul(g, u, o),
                    }
                    if let Some(norm) = sub_norm {
                        // The gate half is free now: keep the activation there
                        // and write its norm back.
                        g.copy_from_slice(o);
                        ops.rmsnorm(g, norm, eps, o);
                    }
                });
            }
            matmul(&lw.down, ffn, f, acts, proj);
            {
                let proj = &*proj;
                let (xs, tmp) = (
                    SharedRows::new(&mut x[..n * d], d),
                    SharedRows::new(&mut xn[..n * d], d),
                );
                per_token(pool, n, |t| {
                    // SAFETY: token t is visited once; rows t are its own.
                    let (xr, tmp) = unsafe { (xs.row(t), tmp.row(t)) };
                    let p = &proj[t * d..][..d];
                    match post_norms {
                        Some(post) => {
                            ops.rmsnorm(p, &post[1], eps, tmp);
                            xr.iter_mut().zip(&*tmp).for_each(|(xv, pv)| *xv += pv);
                        }
                        None => xr.iter_mut().zip(p).for_each(|(xv, pv)| *xv += pv),
                    }
                });
            }
            trace(Tap::Layer(l), x);
        }
        for &(seq, last) in &scratch.next {
            caches[seq].set_len(last + 1);
        }

        // Head, for the tokens that want logits.
        let wanted = &mut scratch.wanted;
        wanted.clear();
        wanted.extend((0..n).filter(|&t| batch[t].logits));
        let m = wanted.len();
        let head_in = resize(&mut scratch.head_in, m * d);
        {
            let (x, wanted, out) = (&*x, &*wanted, SharedRows::new(head_in, d));
            per_token(pool, m, |i| {
                // SAFETY: index i is visited once; row i is its own.
                let o = unsafe { out.row(i) };
                ops.rmsnorm(&x[wanted[i] * d..][..d], &w.output_norm, eps, o);
            });
        }
        trace(Tap::FinalNorm, head_in);
        if output == Output::Hidden {
            return Ok(&scratch.head_in[..m * d]);
        }
        let logits = resize(&mut scratch.logits, m * hp.n_vocab);
        if m > 0 {
            match &w.head_q8 {
                Some(q8) => {
                    scratch.head_acts.quantize(head_in, m, d);
                    k.q8_matmul(pool, q8, &scratch.head_acts, logits);
                }
                // Q6_K: the integer product, activations per 256 values
                // (as llama.cpp's Q6_K × Q8_K).
                None if w.head().ty == DenseType::Q6K => {
                    scratch.head_acts_k.quantize(head_in, m, d);
                    k.q6k_matmul(pool, &w.head().matrix(), &scratch.head_acts_k, logits);
                }
                None => k.dense_matmul(pool, &w.head().matrix(), head_in, m, logits),
            }
        }
        Ok(&scratch.logits[..m * hp.n_vocab])
    }
}
