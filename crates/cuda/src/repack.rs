//! The GPU ternary weight layout, repacked at load from the `{-1, 0, 1}`
//! values of a [`TernaryMatrix`].
//!
//! Row-major, 16 weights per `u32` word, `words = padded_cols / 16` words per
//! row with `padded_cols` a multiple of 32 (one `mma.sync` k-step). Column
//! `16·w + 4·g + i` of a row is the 2-bit code `t + 1` at bits `8·i + 2·g`
//! of word `w`: the four columns of group `g` come out as four bytes with one
//! shift and one mask (`(word >> 2g) & 0x03030303`), and a per-byte subtract
//! of 1 gives the signed int8 weights that `__dp4a` and `mma.sync` multiply.
//! Padding holds code 1 (weight 0); activations are zero-padded to the same
//! width, so padding never contributes. 2 bits per weight: 25 % more bytes
//! than the CPU's base-3 layout, but a decode of two integer operations per
//! four weights, which keeps a GPU at memory speed.

use bitnet_kernels::{ScaleRule, TernaryMatrix};

use crate::error::{CudaError, Result};

/// Columns per word.
pub const WORD_COLS: usize = 16;
/// Column padding: one `mma.sync` k-step of 32.
pub const COL_ALIGN: usize = 32;

/// A ternary matrix in the GPU layout, on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuTernary {
    /// Output rows.
    pub rows: usize,
    /// Input columns (before padding).
    pub cols: usize,
    /// Words per row.
    pub words: usize,
    /// `rows × words` packed words.
    pub data: Vec<u32>,
    /// One scale per row.
    pub scales: Vec<f32>,
    /// How a scale applies.
    pub rule: ScaleRule,
}

/// Words per row for `cols` columns.
pub fn words_for(cols: usize) -> usize {
    cols.div_ceil(COL_ALIGN) * COL_ALIGN / WORD_COLS
}

/// Where column `c` sits: (word, bit shift).
#[inline]
fn place(c: usize) -> (usize, u32) {
    let (w, within) = (c / WORD_COLS, c % WORD_COLS);
    let (g, i) = (within / 4, within % 4);
    (w, (8 * i + 2 * g) as u32)
}

impl GpuTernary {
    /// Packs row-major `{-1, 0, 1}` values.
    pub fn from_values(
        rows: usize,
        cols: usize,
        values: &[i8],
        scales: Vec<f32>,
        rule: ScaleRule,
    ) -> Result<GpuTernary> {
        if values.len() != rows * cols || scales.len() != rows {
            return Err(CudaError::Invalid(format!(
                "ternary {rows}x{cols}: {} values and {} scales",
                values.len(),
                scales.len()
            )));
        }
        let words = words_for(cols);
        // Every code 1 (weight 0): 0b01 in every 2-bit field.
        let mut data = vec![0x5555_5555u32; rows * words];
        for (r, row) in values.chunks_exact(cols.max(1)).enumerate().take(rows) {
            for (c, &v) in row.iter().enumerate() {
                if !(-1..=1).contains(&v) {
                    return Err(CudaError::Invalid(format!(
                        "ternary value {v} at ({r}, {c})"
                    )));
                }
                let (w, shift) = place(c);
                let word = &mut data[r * words + w];
                *word = (*word & !(3 << shift)) | (((v + 1) as u32) << shift);
            }
        }
        Ok(GpuTernary {
            rows,
            cols,
            words,
            data,
            scales,
            rule,
        })
    }

    /// Repacks a CPU matrix (either CPU layout) from its unpacked values.
    pub fn from_matrix(m: &TernaryMatrix) -> Result<GpuTernary> {
        GpuTernary::from_values(
            m.rows(),
            m.cols(),
            &m.unpack(),
            m.scales().to_vec(),
            m.rule(),
        )
    }

    /// The `{-1, 0, 1}` values back, row-major (the round-trip tests).
    pub fn unpack(&self) -> Vec<i8> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for r in 0..self.rows {
            for c in 0..self.cols {
                let (w, shift) = place(c);
                out.push(((self.data[r * self.words + w] >> shift) & 3) as i8 - 1);
            }
        }
        out
    }

    /// Whether every padding field holds code 1 (weight 0).
    pub fn padding_is_zero(&self) -> bool {
        (0..self.rows).all(|r| {
            (self.cols..self.words * WORD_COLS).all(|c| {
                let (w, shift) = place(c);
                (self.data[r * self.words + w] >> shift) & 3 == 1
            })
        })
    }

    /// Host model of the kernels' integer sums: `Σ_k t[r][k] · q[k]` for one
    /// token row `q` of `words · 16` int8 values, decoding words the way
    /// `decode4` does.
    pub fn int_dot(&self, r: usize, q: &[i8]) -> i32 {
        let mut acc = 0i32;
        for (w, &word) in self.data[r * self.words..][..self.words].iter().enumerate() {
            for g in 0..4 {
                let bytes = ((word >> (2 * g)) & 0x0303_0303).to_le_bytes();
                for (i, b) in bytes.iter().enumerate() {
                    let t = i32::from(*b) - 1;
                    acc += t * i32::from(q[w * WORD_COLS + 4 * g + i]);
                }
            }
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_layout_is_as_documented() {
        // Column 5 = group 1, byte 1: bits 8 + 2 = 10.
        let mut v = vec![0i8; 32];
        v[5] = 1;
        let m = GpuTernary::from_values(1, 32, &v, vec![1.0], ScaleRule::Multiply);
        let m = m.ok().filter(|m| m.words == 2);
        let m = m.map(|m| m.data[0]);
        assert_eq!(m, Some(0x5555_5555 & !(3 << 10) | (2 << 10)));
    }

    #[test]
    fn rejects_non_ternary_values() {
        let r = GpuTernary::from_values(1, 2, &[0, 2], vec![1.0], ScaleRule::Multiply);
        assert!(r.is_err());
    }
}
