//! Per-sequence key/value cache.
//!
//! Keys and values are stored `[layer][kv_head][position][head_dim]`, so the
//! attention of one head walks one contiguous run of memory. Three element
//! types:
//!
//! * **f32**, the reference's precision;
//! * **f16** (the default), half the memory; the kernels' `dot_f16` and
//!   `axpy_f16` convert in registers (F16C) as they go, summing exactly as
//!   the f32 `dot`/`axpy` do, so nothing is converted into a buffer;
//! * **q8**: int8 with one f32 scale per head row (`d = amax / 127`,
//!   `q = round(x / d)`), a quarter of f32 plus 4 bytes per 128 values. The
//!   query stays f32; scores are `d · Σ q_i · k_i`, and the value sum adds
//!   `p · d · v` per position, so no row is ever dequantised into a buffer
//!   (the kernels' `quantize_i8`, `dot_i8` and `axpy_i8`).
//!
//! A cache is allocated once at its full capacity: appending never
//! allocates.

use bitnet_kernels::exact;
use bitnet_kernels::ops::Ops;
use half::f16;

use crate::config::HParams;

/// Element type of a KV cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvType {
    /// f32: the reference's precision.
    F32,
    /// f16: half the memory; moves logits by ~1e-3 relative on these models.
    F16,
    /// int8 with one f32 scale per head row (per position, per KV head).
    Q8,
}

impl KvType {
    /// Parses `f32`, `f16` or `q8` (also `q8_0`, `int8`).
    pub fn from_name(s: &str) -> Option<KvType> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Some(KvType::F32),
            "f16" => Some(KvType::F16),
            "q8" | "q8_0" | "int8" | "i8" => Some(KvType::Q8),
            _ => None,
        }
    }

    /// The name [`KvType::from_name`] accepts.
    pub fn name(self) -> &'static str {
        match self {
            KvType::F32 => "f32",
            KvType::F16 => "f16",
            KvType::Q8 => "q8",
        }
    }

    /// Bytes per element (without the q8 row scales).
    pub fn size(self) -> usize {
        match self {
            KvType::F32 => 4,
            KvType::F16 => 2,
            KvType::Q8 => 1,
        }
    }

    /// Bytes of one stored head row of `head_dim` values.
    pub fn row_bytes(self, head_dim: usize) -> usize {
        head_dim * self.size() + if self == KvType::Q8 { 4 } else { 0 }
    }
}

#[derive(Clone, Debug)]
enum Store {
    F32(Vec<f32>),
    F16(Vec<f16>),
    Q8 { q: Vec<i8>, scale: Vec<f32> },
}

/// Keys and values of one sequence for every layer (see the module
/// documentation for the layout).
#[derive(Clone, Debug)]
pub struct KvCache {
    n_layer: usize,
    n_head_kv: usize,
    head_dim: usize,
    capacity: usize,
    len: usize,
    k: Store,
    v: Store,
    /// Whether an f32 cache attends in the reference's exact operation
    /// order (scalar chains) or with the vectorised row operations.
    exact: bool,
}

impl KvCache {
    /// A cache for `capacity` positions of a model with `hp`.
    pub fn new(hp: &HParams, capacity: usize, ty: KvType) -> KvCache {
        let rows = hp.n_layer * hp.n_head_kv * capacity;
        let n = rows * hp.head_dim;
        let store = || match ty {
            KvType::F32 => Store::F32(vec![0.0; n]),
            // Zeroed pages from the allocator (calloc), not written zeros:
            // a 2B model's cache is hundreds of MB that the first tokens
            // touch only a little of.
            KvType::F16 => Store::F16(bytemuck::zeroed_vec(n)),
            KvType::Q8 => Store::Q8 {
                q: vec![0; n],
                scale: vec![0.0; rows],
            },
        };
        KvCache {
            n_layer: hp.n_layer,
            n_head_kv: hp.n_head_kv,
            head_dim: hp.head_dim,
            capacity,
            len: 0,
            k: store(),
            v: store(),
            exact: true,
        }
    }

    /// An f32 cache that attends with the vectorised row operations instead
    /// of the reference's exact order (f32 precision, ~1e-7 relative from
    /// it): for embedding, where no rounding tie of a language model's
    /// reference is to be reproduced and long texts make the exact scalar
    /// chains the slowest part.
    pub(crate) fn with_fast_attention(mut self) -> KvCache {
        self.exact = false;
        self
    }

    /// Bytes a cache of `capacity` positions takes for `hp`.
    pub fn bytes_for(hp: &HParams, capacity: usize, ty: KvType) -> usize {
        2 * hp.n_layer * hp.n_head_kv * capacity * ty.row_bytes(hp.head_dim)
    }

    /// Bytes this cache holds.
    pub fn size_bytes(&self) -> usize {
        2 * self.n_layer * self.n_head_kv * self.capacity * self.ty().row_bytes(self.head_dim)
    }

    /// Positions filled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is filled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions available in total.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Element type.
    pub fn ty(&self) -> KvType {
        match self.k {
            Store::F32(_) => KvType::F32,
            Store::F16(_) => KvType::F16,
            Store::Q8 { .. } => KvType::Q8,
        }
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Forgets positions from `len` on.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    pub(crate) fn set_len(&mut self, len: usize) {
        self.len = len.min(self.capacity);
    }

    /// Index of the row of (`layer`, `head`, `pos`).
    fn row_index(&self, layer: usize, head: usize, pos: usize) -> usize {
        (layer * self.n_head_kv + head) * self.capacity + pos
    }

    /// Stores the keys and values of every KV head of one token at `pos`
    /// (`k` and `v` are `n_head_kv · head_dim` values).
    pub(crate) fn store_token(
        &mut self,
        ops: &Ops,
        layer: usize,
        pos: usize,
        k: &[f32],
        v: &[f32],
    ) {
        debug_assert!(layer < self.n_layer && pos < self.capacity);
        let d = self.head_dim;
        for h in 0..self.n_head_kv {
            let row = self.row_index(layer, h, pos);
            for (store, src) in [
                (&mut self.k, &k[h * d..][..d]),
                (&mut self.v, &v[h * d..][..d]),
            ] {
                let o = row * d;
                match store {
                    Store::F32(s) => s[o..o + d].copy_from_slice(src),
                    Store::F16(s) => ops.f32_to_f16(src, &mut s[o..o + d]),
                    Store::Q8 { q, scale } => scale[row] = ops.quantize_i8(src, &mut q[o..o + d]),
                }
            }
        }
    }

    /// [`KvCache::attend`] for several query heads that share kv head
    /// `head` (`q` and `out` hold `q.len() / head_dim` heads one after
    /// another; `scores` needs `(pos + 1)` elements per head). The f16
    /// cache reads each key and value row once for all of them
    /// ([`Ops::attn_scores_f16`], [`Ops::attn_values_f16`]), with the
    /// single-head path's arithmetic: the outputs are the same bits.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attend_heads(
        &self,
        ops: &Ops,
        layer: usize,
        head: usize,
        start: usize,
        pos: usize,
        seq_len: usize,
        q: &[f32],
        scale: f32,
        scores: &mut [f32],
        out: &mut [f32],
    ) {
        let d = self.head_dim;
        let Store::F16(k) = &self.k else {
            for (qh, oh) in q.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
                self.attend(ops, layer, head, start, pos, seq_len, qh, scale, scores, oh);
            }
            return;
        };
        let Store::F16(v) = &self.v else {
            unreachable!("the K and V stores share one type");
        };
        let start = start.min(pos);
        let base = self.row_index(layer, head, start) * d;
        let n = pos + 1 - start;
        let heads = q.len() / d;
        let scores = &mut scores[..heads * n];
        let (keys, values) = (&k[base..base + n * d], &v[base..base + n * d]);
        ops.attn_scores_f16(q, keys, d, scale, scores);
        for row in scores.chunks_exact_mut(n) {
            ops.softmax_fast(row);
        }
        ops.attn_values_f16(scores, values, d, out);
    }

    /// Attention of one query head over positions `0..=pos` of kv head
    /// `head`: `out = softmax(q·Kᵀ · scale) · V` over the positions
    /// `start..=pos` (`start > 0` for a sliding-window layer). `scores`
    /// needs `pos + 1` elements. `seq_len` is the length of the whole
    /// sequence once the current batch is in.
    ///
    /// The f32 cache is the reference-precision mode: its arithmetic follows
    /// the reference's operation by operation (bitnet_kernels::exact: the
    /// accumulation order of `q·k` and `P·V` and the softmax sum depend on
    /// the sequence length the reference would process at once, i.e.
    /// `seq_len`), so hidden states come out bit-identical. The f16 and q8
    /// caches round anyway and take the fastest vectorised path.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attend(
        &self,
        ops: &Ops,
        layer: usize,
        head: usize,
        start: usize,
        pos: usize,
        seq_len: usize,
        q: &[f32],
        scale: f32,
        scores: &mut [f32],
        out: &mut [f32],
    ) {
        let d = self.head_dim;
        let start = start.min(pos);
        let first = self.row_index(layer, head, start);
        let base = first * d;
        let n = pos + 1 - start;
        let scores = &mut scores[..n];
        if let (true, Store::F32(k), Store::F32(v)) = (self.exact, &self.k, &self.v) {
            let kind = exact::score_kind(seq_len, pos);
            for (j, s) in scores.iter_mut().enumerate() {
                *s = exact::score(q, &k[base + j * d..][..d], kind) * scale;
            }
            exact::softmax(ops, scores, seq_len);
            out.fill(0.0);
            let fma = exact::output_kind(seq_len) == exact::Accumulate::Fma;
            for (j, &p) in scores.iter().enumerate() {
                let row = &v[base + j * d..][..d];
                if fma {
                    exact::axpy_fma(p, row, out);
                } else {
                    ops.axpy(p, row, out);
                }
            }
            return;
        }
        match &self.k {
            Store::F32(k) => {
                for (j, s) in scores.iter_mut().enumerate() {
                    *s = ops.dot(q, &k[base + j * d..][..d]) * scale;
                }
            }
            Store::F16(k) => {
                for (s, row) in scores.iter_mut().zip(k[base..].chunks_exact(d)) {
                    *s = ops.dot_f16(q, row) * scale;
                }
            }
            Store::Q8 { q: kq, scale: ks } => {
                for (j, s) in scores.iter_mut().enumerate() {
                    *s = ops.dot_i8(q, &kq[base + j * d..][..d]) * (ks[first + j] * scale);
                }
            }
        }
        ops.softmax_fast(scores);
        out.fill(0.0);
        match &self.v {
            Store::F32(v) => {
                for (j, &p) in scores.iter().enumerate() {
                    ops.axpy(p, &v[base + j * d..][..d], out);
                }
            }
            Store::F16(v) => {
                for (&p, row) in scores.iter().zip(v[base..].chunks_exact(d)) {
                    ops.axpy_f16(p, row, out);
                }
            }
            Store::Q8 { q: vq, scale: vs } => {
                for (j, &p) in scores.iter().enumerate() {
                    ops.axpy_i8(p * vs[first + j], &vq[base + j * d..][..d], out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_rows_round_trip_within_half_a_step() {
        let x: Vec<f32> = (0..128)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let mut q = vec![0i8; 128];
        let d = bitnet_kernels::Kernels::best()
            .ops()
            .quantize_i8(&x, &mut q);
        for (a, &b) in x.iter().zip(&q) {
            assert!((a - d * f32::from(b)).abs() <= d * 0.5 + 1e-6);
        }
        assert_eq!(
            bitnet_kernels::Kernels::best()
                .ops()
                .quantize_i8(&[0.0; 4], &mut q[..4]),
            0.0
        );
        assert_eq!(&q[..4], &[0; 4]);
    }

    /// The grouped path gives every head the bits of the single-head one,
    /// for a full and a sliding window, on each cache type.
    #[test]
    fn grouped_heads_match_one_head_at_a_time() {
        let hp = crate::HParams::bitnet_b158_2b4t();
        let d = hp.head_dim;
        let ops = bitnet_kernels::Kernels::best().ops();
        let kvd = hp.n_head_kv * d;
        let val = |i: usize| ((i * 7919 % 2003) as f32 - 1000.0) / 300.0;
        for ty in [KvType::F16, KvType::Q8, KvType::F32] {
            let mut cache = KvCache::new(&hp, 24, ty);
            for pos in 0..20 {
                let k: Vec<f32> = (0..kvd).map(|i| val(i + 31 * pos)).collect();
                let v: Vec<f32> = (0..kvd).map(|i| val(i * 3 + 17 * pos)).collect();
                cache.store_token(ops, 2, pos, &k, &v);
            }
            let heads = 4;
            let q: Vec<f32> = (0..heads * d).map(|i| val(i * 5) / 10.0).collect();
            for (start, pos) in [(0, 19), (6, 19), (0, 0), (3, 11)] {
                let mut scores = vec![0f32; heads * 24];
                let mut grouped = vec![f32::NAN; heads * d];
                cache.attend_heads(
                    ops,
                    2,
                    3,
                    start,
                    pos,
                    20,
                    &q,
                    0.3,
                    &mut scores,
                    &mut grouped,
                );
                for h in 0..heads {
                    let mut one = vec![f32::NAN; d];
                    let qh = &q[h * d..][..d];
                    cache.attend(ops, 2, 3, start, pos, 20, qh, 0.3, &mut scores, &mut one);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&grouped[h * d..][..d]),
                        bits(&one),
                        "{ty:?} head {h} {start}..={pos}"
                    );
                }
            }
        }
    }

    #[test]
    fn sizes_count_the_scales() {
        let hp = crate::HParams::bitnet_b158_2b4t();
        assert_eq!(
            KvCache::bytes_for(&hp, 10, KvType::F16),
            2 * 30 * 5 * 10 * 256
        );
        assert_eq!(
            KvCache::bytes_for(&hp, 10, KvType::Q8),
            2 * 30 * 5 * 10 * 132
        );
        assert_eq!(KvType::from_name("q8_0"), Some(KvType::Q8));
    }
}
