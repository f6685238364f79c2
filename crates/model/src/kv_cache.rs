//! Per-sequence key/value cache.

use half::f16;

use crate::config::HParams;

/// Element type of a KV cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvType {
    /// f32: the reference's precision.
    F32,
    /// f16: half the memory; moves logits by ~1e-3 relative on these models.
    F16,
}

impl KvType {
    /// Parses `f32` / `f16`.
    pub fn from_name(s: &str) -> Option<KvType> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Some(KvType::F32),
            "f16" => Some(KvType::F16),
            _ => None,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            KvType::F32 => 4,
            KvType::F16 => 2,
        }
    }
}

#[derive(Clone, Debug)]
enum Store {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

/// Keys and values of one sequence for every layer, laid out
/// `[layer][kv_head][position][head_dim]` so that one head's keys are
/// contiguous for the attention loop.
#[derive(Clone, Debug)]
pub struct KvCache {
    n_layer: usize,
    n_head_kv: usize,
    head_dim: usize,
    capacity: usize,
    len: usize,
    k: Store,
    v: Store,
}

impl KvCache {
    /// A cache for `capacity` positions of a model with `hp`.
    pub fn new(hp: &HParams, capacity: usize, ty: KvType) -> KvCache {
        let n = hp.n_layer * hp.n_head_kv * capacity * hp.head_dim;
        let store = || match ty {
            KvType::F32 => Store::F32(vec![0.0; n]),
            KvType::F16 => Store::F16(vec![f16::ZERO; n]),
        };
        KvCache {
            n_layer: hp.n_layer,
            n_head_kv: hp.n_head_kv,
            head_dim: hp.head_dim,
            capacity,
            len: 0,
            k: store(),
            v: store(),
        }
    }

    /// Bytes a cache of `capacity` positions takes for `hp`.
    pub fn bytes_for(hp: &HParams, capacity: usize, ty: KvType) -> usize {
        2 * hp.n_layer * hp.n_head_kv * capacity * hp.head_dim * ty.size()
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

    fn offset(&self, layer: usize, head: usize, pos: usize) -> usize {
        ((layer * self.n_head_kv + head) * self.capacity + pos) * self.head_dim
    }

    /// Stores the key and value of `head` at `pos`.
    pub(crate) fn store(&mut self, layer: usize, head: usize, pos: usize, k: &[f32], v: &[f32]) {
        debug_assert!(layer < self.n_layer && head < self.n_head_kv && pos < self.capacity);
        let o = self.offset(layer, head, pos);
        let d = self.head_dim;
        for (store, src) in [(&mut self.k, k), (&mut self.v, v)] {
            match store {
                Store::F32(s) => s[o..o + d].copy_from_slice(src),
                Store::F16(s) => {
                    for (dst, &x) in s[o..o + d].iter_mut().zip(src) {
                        *dst = f16::from_f32(x);
                    }
                }
            }
        }
    }

    /// Attention of one query head over positions `0..=pos` of kv head
    /// `head`: `out = softmax(q·Kᵀ · scale) · V`. `scores` needs `pos + 1`
    /// elements.
    pub(crate) fn attend(
        &self,
        layer: usize,
        head: usize,
        pos: usize,
        q: &[f32],
        scale: f32,
        scores: &mut [f32],
        out: &mut [f32],
    ) {
        let d = self.head_dim;
        let base = self.offset(layer, head, 0);
        let n = pos + 1;
        let scores = &mut scores[..n];
        match &self.k {
            Store::F32(k) => {
                for (j, s) in scores.iter_mut().enumerate() {
                    *s = bitnet_kernels::ops::dot(q, &k[base + j * d..][..d]) * scale;
                }
            }
            Store::F16(k) => {
                let mut row = [0f32; 512];
                for (j, s) in scores.iter_mut().enumerate() {
                    let src = &k[base + j * d..][..d];
                    for (r, &x) in row.iter_mut().zip(src) {
                        *r = x.to_f32();
                    }
                    *s = bitnet_kernels::ops::dot(q, &row[..d]) * scale;
                }
            }
        }
        bitnet_kernels::ops::softmax(scores);
        out.fill(0.0);
        match &self.v {
            Store::F32(v) => {
                for (j, &p) in scores.iter().enumerate() {
                    bitnet_kernels::ops::axpy(p, &v[base + j * d..][..d], out);
                }
            }
            Store::F16(v) => {
                for (j, &p) in scores.iter().enumerate() {
                    for (o, &x) in out.iter_mut().zip(&v[base + j * d..][..d]) {
                        *o += p * x.to_f32();
                    }
                }
            }
        }
    }
}
