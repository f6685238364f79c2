//! The Q6_K head as an integer product: Q6_K weights read in place times
//! activations quantised per 256-value block to int8 (llama.cpp's Q8_K
//! pairing, `ggml_vec_dot_q6_K_q8_K`).
//!
//! The f32 path of [`crate::Kernels::dense_matmul`] converts every 6-bit
//! weight to f32 and scales it before an FMA: compute-bound below what one
//! core reads (the head is 269 MB of 2B-4T's 686 MB per token). Here the weights stay integers: one
//! `vpmaddubsw` multiplies 32 six-bit codes `q ∈ [0, 63]` by 32 activation
//! bytes, one `vpmaddwd` applies the 16-value group scales, and the float
//! work is one FMA per 256 weights and row.
//!
//! **Arithmetic** (the scalar reference `matmul`, which every SIMD level
//! matches bit for bit): for row `r`, token `t` and block `b`,
//! `isum = Σ_g sc_g · Σ_{k ∈ g} (q_k − 32) · q_x,k` exactly in `i32` (at most
//! 256 · 32 · 127 · 128 < 2^31), then `acc = (d_w · d_x).mul_add(isum as
//! f32, acc)` over the blocks in order, from `acc = 0`. The SIMD kernels
//! compute `Σ q·q_x − 32·Σ_g sc_g·bsum_g` with the activations' 16-value
//! sums `bsum_g`, which is the same integer.
//!
//! **Activations** ([`Q8KActs`]): per 256-value block `d_x = amax / 127`,
//! `q_x = round_half_even(x · 127 / amax)` in `[-127, 127]` (0 for an
//! all-zero block), and the sums of each 16 codes. The result differs from
//! the f32 product only by that rounding: at most `Σ_k |w_k| · d_x / 2`
//! (tested against the f32 head in `tests/equivalence.rs`). On the demo
//! model with a Q6_K head, perplexity 8.7100 against 8.7093 through the f32
//! path (8.7063 with its BF16 head).
//!
//! # Measured
//!
//! The 2B-4T head (128256 × 2560, 269 MB), one token, GB/s of weights; AMD
//! EPYC Zen 5, 2 cores, quiet machine, best of 10 (`membw` 39 GB/s on one
//! core, 52 on two):
//!
//! | path                          | AVX2 1t | AVX2 2t | AVX-512 1t | AVX-512 2t |
//! |-------------------------------|--------:|--------:|-----------:|-----------:|
//! | integer (this module)         | 28.6    | 57.6    | 27.8       | 42.0       |
//! | f32 (`dense_matmul`)          | 10.8    | 19.6    | 18.8       | 36.6       |
//!
//! L3-resident (4096 rows), one core: 40 GB/s integer against 10.8 (AVX2
//! f32) and 20.7 (AVX-512 f32). Instructions per weight byte (valgrind,
//! AVX2): 0.75 integer, 1.28 f32 — the f32 path's are conversions and FMAs
//! with long latencies. Reading block `b` of eight rows in turn instead of
//! each row in memory order (eight short strided streams) made the integer
//! path run at 13 GB/s from DRAM: see `avx2_q6k::group`.

use half::f16;

use super::{DenseMatrix, DenseType, q6_k};
use crate::out::OutRows;

/// Values per activation block (one Q6_K super-block).
pub const BLOCK: usize = q6_k::BLOCK_ELEMS;
/// Values per group (one Q6_K scale).
pub const GROUP: usize = 16;

/// Activations quantised per 256-value block for the integer Q6_K head;
/// reusable across calls.
#[derive(Debug, Default)]
pub struct Q8KActs {
    n_tokens: usize,
    cols: usize,
    q: Vec<i8>,
    d: Vec<f32>,
    bsums: Vec<i16>,
}

impl Q8KActs {
    /// An empty buffer.
    pub fn new() -> Q8KActs {
        Q8KActs::default()
    }

    /// Quantises `n_tokens` rows of `cols` values (`cols` a multiple of 256).
    pub fn quantize(&mut self, x: &[f32], n_tokens: usize, cols: usize) {
        assert!(
            cols.is_multiple_of(BLOCK),
            "Q8_K activations: columns must be a multiple of {BLOCK}"
        );
        assert_eq!(x.len(), n_tokens * cols, "activation shape");
        self.n_tokens = n_tokens;
        self.cols = cols;
        self.q.resize(n_tokens * cols, 0);
        self.d.resize(n_tokens * cols / BLOCK, 0.0);
        self.bsums.resize(n_tokens * cols / GROUP, 0);
        for (i, (xb, qb)) in x
            .chunks_exact(BLOCK)
            .zip(self.q.chunks_exact_mut(BLOCK))
            .enumerate()
        {
            let amax = xb.iter().fold(0.0f32, |m, &v| m.max(v.abs()));
            let id = if amax > 0.0 { 127.0 / amax } else { 0.0 };
            for (q, &v) in qb.iter_mut().zip(xb) {
                *q = (v * id).round_ties_even().clamp(-127.0, 127.0) as i8;
            }
            self.d[i] = amax / 127.0;
            for (g, s) in qb.chunks_exact(GROUP).enumerate() {
                self.bsums[i * BLOCK / GROUP + g] = s.iter().map(|&v| i16::from(v)).sum();
            }
        }
    }

    /// Number of tokens.
    pub fn n_tokens(&self) -> usize {
        self.n_tokens
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The quantised values of token `t`.
    pub fn row(&self, t: usize) -> &[i8] {
        &self.q[t * self.cols..(t + 1) * self.cols]
    }

    /// The block scales `d_x` of token `t`.
    pub fn scales(&self, t: usize) -> &[f32] {
        let b = self.cols / BLOCK;
        &self.d[t * b..(t + 1) * b]
    }

    /// The 16-value sums of token `t`.
    pub fn bsums(&self, t: usize) -> &[i16] {
        let g = self.cols / GROUP;
        &self.bsums[t * g..(t + 1) * g]
    }
}

/// The exact integer dot product of one Q6_K block with 256 activation
/// codes: `Σ_g sc_g · Σ_{k ∈ g} (q_k − 32) · q_x,k`.
pub fn block_dot(block: &[u8], qx: &[i8]) -> i32 {
    let levels = q6_k::levels(block);
    let scales = q6_k::scales(block);
    let mut isum = 0i32;
    for (g, &sc) in scales.iter().enumerate() {
        let s: i32 = (GROUP * g..GROUP * (g + 1))
            .map(|k| (i32::from(levels[k]) - 32) * i32::from(qx[k]))
            .sum();
        isum += i32::from(sc) * s;
    }
    isum
}

/// The block scale `d_w` of a Q6_K block.
pub(crate) fn block_d(block: &[u8]) -> f32 {
    f16::from_le_bytes([block[q6_k::D], block[q6_k::D + 1]]).to_f32()
}

/// Scalar reference: outputs of `rows` for every token (see the module doc).
pub(crate) fn matmul(
    w: &DenseMatrix<'_>,
    x: &Q8KActs,
    out: &OutRows<'_>,
    rows: std::ops::Range<usize>,
) {
    debug_assert_eq!(w.ty(), DenseType::Q6K);
    for t in 0..x.n_tokens() {
        let (q, d) = (x.row(t), x.scales(t));
        for r in rows.clone() {
            let mut acc = 0f32;
            for (b, block) in w.row(r).chunks_exact(q6_k::BLOCK_BYTES).enumerate() {
                let isum = block_dot(block, &q[BLOCK * b..BLOCK * (b + 1)]);
                acc = (block_d(block) * d[b]).mul_add(isum as f32, acc);
            }
            out.write(t, r, acc);
        }
    }
}
