//! The LM head as int8 × int8: Q8_0 weights repacked for `vpdpbusd`, and
//! activations quantised per 32-value block.
//!
//! Reading Q8_0 in place (the f32 path of [`crate::Kernels::dense_matmul`])
//! costs a sign-extension, a conversion and a multiply per weight, which is
//! slower than DRAM delivers it on one core. Repacked, 16 rows are
//! interleaved so that one 64-byte vector holds four consecutive weights of
//! each of 16 rows: a single `vpdpbusd` against four broadcast activation
//! bytes advances 16 row sums by four columns, and the float work (one
//! conversion and one FMA per 16 rows) happens once per 32-column block.
//!
//! **Layout.** Row groups of [`ROWS`] rows (padding rows are zero); per group
//! and block `b`, eight 64-byte steps `s` where byte `4r + j` is weight
//! `(16g + r, 32b + 4s + j)` stored as `q + 128` (unsigned, for `vpdpbusd`;
//! the product picks up `128 · Σ q_x`, subtracted per block), then the 16
//! f16 row scales of the block in a separate array. 34 bytes per 32 weights,
//! as Q8_0 itself.
//!
//! **Arithmetic** (the scalar reference, which every SIMD level matches bit
//! for bit): per block, the exact integer `Σ q_w · q_x`, then
//! `acc = (d_w · d_x).mul_add(sum as f32, acc)` over blocks in order.
//! Activations: `d_x = amax / 127`, `q_x = round_half_even(x · 127 / amax)`
//! (0 for an all-zero block), in `[-127, 127]` so that the AVX2 sign trick
//! is exact.
//!
//! # Measured
//!
//! The 2B-4T head, 128256 × 2560, one token, GB/s of weights (best of 10,
//! AMD EPYC Zen 5, 2 cores; `stream_read` ceiling 33 GB/s on one core,
//! 41–47 on two; two-core figures vary most with other load):
//!
//! | head                         | AVX-512 1t | AVX-512 2t | AVX2 1t | AVX2 2t |
//! |------------------------------|-----------:|-----------:|--------:|--------:|
//! | Q8_0 here (int8, 349 MB)     | 35.4       | 40–66      | 22.9    | 45.2    |
//! | Q8_0 f32 path (in place)     | 12.0       | 19.1       |         | 13.0    |
//! | F16 f32 path (657 MB)        | 31.6       | 44–63      | 30.4    | 43.0    |
//! | Q6_K f32 path (269 MB)       | 17.3       | 33.9       | 7.7     | 18.0    |
//!
//! So per token on two cores: Q8_0 here 5–9 ms, F16 10–15 ms, Q6_K 8 ms,
//! Q8_0 through the f32 path 18 ms (compute-bound: convert, scale and FMA
//! per weight).
//!
//! On an AVX2-only Zen 2 (2 cores, streaming read 15–17 GB/s on one core,
//! 31–34 on two) the AVX2 product read 10.4 / 20.1–20.5 GB/s (one / two
//! cores) one 16-row group at a time, and 22.7–23.0 / 40.5–43.3 since it
//! reads four groups from four parts of a thread's rows side by side for
//! one token (`avx2::Q8X_STREAMS`): 8.0–8.6 ms per token on two cores. For
//! two tokens (two sequences decoded together) the same order took it from
//! 9.4 / 18.2–18.5 to 15.6–16.2 / 30.2–31.0 GB/s.

use half::f16;

use super::{DenseMatrix, DenseType, dequantize, q8_0};
use crate::aligned::AlignedBytes;
use crate::error::{Error, Result};
use crate::out::OutRows;

/// Rows interleaved per group.
pub const ROWS: usize = 16;
/// Columns per block (as Q8_0).
pub const BLOCK: usize = q8_0::BLOCK_ELEMS;
/// Bytes of codes per group and block.
pub(crate) const GROUP_BLOCK_BYTES: usize = ROWS * BLOCK;

/// A Q8_0 matrix repacked for the int8 product (see the module doc).
#[derive(Clone, Debug)]
pub struct Q8Matrix {
    rows: usize,
    cols: usize,
    groups: usize,
    blocks: usize,
    codes: AlignedBytes,
    scales: Vec<f16>,
}

impl Q8Matrix {
    /// Repacks a dense matrix. Q8_0 is copied exactly; other types are
    /// quantised to Q8_0 first (as llama.cpp's requantisation, lossy). Uses
    /// every CPU (scoped threads: this is load time, not the hot path); the
    /// 2B-4T head takes ~0.4 s from Q8_0, ~2 s of CPU time from F16.
    pub fn from_dense(m: &DenseMatrix<'_>) -> Result<Q8Matrix> {
        let (rows, cols) = (m.rows(), m.cols());
        if !cols.is_multiple_of(BLOCK) {
            return Err(Error::Shape {
                what: "Q8 head columns",
                expected: format!("a multiple of {BLOCK}"),
                found: cols.to_string(),
            });
        }
        let groups = rows.div_ceil(ROWS);
        let blocks = cols / BLOCK;
        let mut codes = AlignedBytes::zeroed(groups * blocks * GROUP_BLOCK_BYTES);
        let mut scales = vec![f16::ZERO; groups * blocks * ROWS];
        let threads = bitnet_threads::available_cpus().min(groups).max(1);
        let per = groups.div_ceil(threads);
        std::thread::scope(|s| {
            let code_parts = codes
                .as_mut_slice()
                .chunks_mut(per * blocks * GROUP_BLOCK_BYTES);
            let scale_parts = scales.chunks_mut(per * blocks * ROWS);
            for (i, (c, sc)) in code_parts.zip(scale_parts).enumerate() {
                s.spawn(move || pack_groups(m, i * per, c, sc));
            }
        });
        Ok(Q8Matrix {
            rows,
            cols,
            groups,
            blocks,
            codes,
            scales,
        })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Number of 16-row groups.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// Number of 32-column blocks.
    pub fn blocks(&self) -> usize {
        self.blocks
    }

    /// Memory held.
    pub fn size_bytes(&self) -> usize {
        self.codes.len() + self.scales.len() * 2
    }

    /// Codes of group `g`, block `b`: eight 64-byte steps.
    pub(crate) fn codes(&self, g: usize, b: usize) -> &[u8] {
        &self.codes.as_slice()[(g * self.blocks + b) * GROUP_BLOCK_BYTES..][..GROUP_BLOCK_BYTES]
    }

    /// The 16 row scales of group `g`, block `b`.
    pub(crate) fn scales(&self, g: usize, b: usize) -> &[f16] {
        &self.scales[(g * self.blocks + b) * ROWS..][..ROWS]
    }
}

/// Packs the groups starting at `g0` into `codes` and `scales` (whole
/// groups).
fn pack_groups(m: &DenseMatrix<'_>, g0: usize, codes: &mut [u8], scales: &mut [f16]) {
    let blocks = m.cols() / BLOCK;
    // Padding rows: q = 0 stored as 128, scale 0.
    codes.fill(0x80);
    let mut f = vec![
        0f32;
        if m.ty() == DenseType::Q8_0 {
            0
        } else {
            m.cols()
        }
    ];
    let mut requant = Vec::new();
    let n_groups = codes.len() / (blocks * GROUP_BLOCK_BYTES);
    for r in g0 * ROWS..((g0 + n_groups) * ROWS).min(m.rows()) {
        let row: &[u8] = if m.ty() == DenseType::Q8_0 {
            m.row(r)
        } else {
            dequantize(m.ty(), m.row(r), &mut f);
            requant.clear();
            for b in f.chunks_exact(BLOCK) {
                requant.extend_from_slice(&q8_0::quantize_block(b));
            }
            &requant
        };
        let (g, i) = (r / ROWS - g0, r % ROWS);
        for b in 0..blocks {
            let blk = &row[b * q8_0::BLOCK_BYTES..][..q8_0::BLOCK_BYTES];
            scales[(g * blocks + b) * ROWS + i] = f16::from_le_bytes([blk[0], blk[1]]);
            let base = (g * blocks + b) * GROUP_BLOCK_BYTES + 4 * i;
            // Four consecutive weights at a time (`q ^ 0x80` is `q + 128`).
            for (step, q4) in blk[2..].chunks_exact(4).enumerate() {
                let w = u32::from_le_bytes([q4[0], q4[1], q4[2], q4[3]]) ^ 0x8080_8080;
                codes[base + step * 64..][..4].copy_from_slice(&w.to_le_bytes());
            }
        }
    }
}

/// Activations quantised per 32-value block for [`Q8Matrix`] products;
/// reusable across calls.
#[derive(Debug, Default)]
pub struct Q8Acts {
    n_tokens: usize,
    cols: usize,
    q: Vec<i8>,
    d: Vec<f32>,
    sums: Vec<i32>,
}

impl Q8Acts {
    /// An empty buffer.
    pub fn new() -> Q8Acts {
        Q8Acts::default()
    }

    /// Quantises `n_tokens` rows of `cols` values (`cols` a multiple of 32).
    pub fn quantize(&mut self, x: &[f32], n_tokens: usize, cols: usize) {
        assert!(
            cols.is_multiple_of(BLOCK),
            "Q8 activations: columns must be a multiple of {BLOCK}"
        );
        assert_eq!(x.len(), n_tokens * cols, "activation shape");
        let blocks = cols / BLOCK;
        self.n_tokens = n_tokens;
        self.cols = cols;
        self.q.resize(n_tokens * cols, 0);
        self.d.resize(n_tokens * blocks, 0.0);
        self.sums.resize(n_tokens * blocks, 0);
        for (i, (xb, qb)) in x
            .chunks_exact(BLOCK)
            .zip(self.q.chunks_exact_mut(BLOCK))
            .enumerate()
        {
            let amax = xb.iter().fold(0.0f32, |m, &v| m.max(v.abs()));
            let id = if amax > 0.0 { 127.0 / amax } else { 0.0 };
            let mut sum = 0;
            for (q, &v) in qb.iter_mut().zip(xb) {
                *q = (v * id).round_ties_even().clamp(-127.0, 127.0) as i8;
                sum += i32::from(*q);
            }
            self.d[i] = amax / 127.0;
            self.sums[i] = sum;
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

    /// The block scales of token `t`.
    pub fn scales(&self, t: usize) -> &[f32] {
        let b = self.cols / BLOCK;
        &self.d[t * b..(t + 1) * b]
    }

    /// The block sums `Σ q` of token `t`.
    pub fn sums(&self, t: usize) -> &[i32] {
        let b = self.cols / BLOCK;
        &self.sums[t * b..(t + 1) * b]
    }
}

/// Scalar reference: outputs of row groups `groups` for every token.
pub(crate) fn matmul(w: &Q8Matrix, x: &Q8Acts, out: &OutRows<'_>, groups: std::ops::Range<usize>) {
    for t in 0..x.n_tokens() {
        let (q, d) = (x.row(t), x.scales(t));
        for g in groups.clone() {
            let mut acc = [0f32; ROWS];
            for b in 0..w.blocks() {
                let codes = w.codes(g, b);
                let scales = w.scales(g, b);
                for (i, a) in acc.iter_mut().enumerate() {
                    let mut sum = 0i32;
                    for k in 0..BLOCK {
                        let wq = (codes[(k / 4) * 64 + 4 * i + k % 4] ^ 0x80) as i8;
                        sum += i32::from(wq) * i32::from(q[b * BLOCK + k]);
                    }
                    *a = (scales[i].to_f32() * d[b]).mul_add(sum as f32, *a);
                }
            }
            for (i, &a) in acc.iter().enumerate() {
                let r = g * ROWS + i;
                if r < w.rows() {
                    out.write(t, r, a);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every weight and scale of a Q8_0 matrix lands where the module doc
    /// says (rows not a multiple of 16, so padding is covered too).
    #[test]
    fn repack_follows_the_documented_layout() {
        let (rows, cols) = (37, 96);
        let mut bytes = Vec::new();
        for r in 0..rows {
            for b in 0..cols / BLOCK {
                let x: Vec<f32> = (0..BLOCK)
                    .map(|k| ((r * 31 + b * 7 + k * 13) % 41) as f32 - 20.0)
                    .collect();
                bytes.extend_from_slice(&q8_0::quantize_block(&x));
            }
        }
        let m = DenseMatrix::new(DenseType::Q8_0, rows, cols, &bytes).unwrap();
        let q = Q8Matrix::from_dense(&m).unwrap();
        assert_eq!((q.groups(), q.blocks()), (3, 3));
        for g in 0..q.groups() {
            for b in 0..q.blocks() {
                let (codes, scales) = (q.codes(g, b), q.scales(g, b));
                for i in 0..ROWS {
                    let r = g * ROWS + i;
                    let (want_d, want_q): (f16, Vec<u8>) = if r < rows {
                        let blk = &m.row(r)[b * q8_0::BLOCK_BYTES..][..q8_0::BLOCK_BYTES];
                        (f16::from_le_bytes([blk[0], blk[1]]), blk[2..].to_vec())
                    } else {
                        (f16::ZERO, vec![0; BLOCK])
                    };
                    assert_eq!(scales[i], want_d, "scale r{r} b{b}");
                    for (k, &wq) in want_q.iter().enumerate() {
                        let got = codes[(k / 4) * 64 + 4 * i + k % 4];
                        assert_eq!(got, wq.wrapping_add(128), "r{r} c{}", b * BLOCK + k);
                    }
                }
            }
        }
    }
}
