//! Per-token int8 activation quantisation (BitNet b1.58's BitLinear input).
//!
//! For one token (one row `x` of length K):
//! `amax = max(max_k |x_k|, 1e-5)`, `s = 127 / amax` (f32, computed as
//! PyTorch does: `(1 / amax) * 127`, see [`crate::exact`]),
//! `q_k = clamp(round_half_even(x_k * s), -128, 127)`.
//! This is exactly transformers' `activation_quant` and bitnet.cpp's
//! `quantize_row_i8_s`, so the integer products downstream are the
//! reference's.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;

use crate::aligned::AlignedBytes;
use crate::ternary::padded_cols_any;

/// The smallest `amax` (avoids dividing by zero on an all-zero row).
pub const AMAX_FLOOR: f32 = 1e-5;

/// Quantised activations of a batch of tokens, reusable across calls.
///
/// Rows are zero-padded to [`QuantizedActs::stride`] bytes so kernels can
/// read whole blocks past the last real column.
#[derive(Debug)]
pub struct QuantizedActs {
    n_tokens: usize,
    cols: usize,
    stride: usize,
    q: AlignedBytes,
    scales: Vec<f32>,
    sums: Vec<i32>,
}

impl Default for QuantizedActs {
    fn default() -> Self {
        Self::new()
    }
}

impl QuantizedActs {
    /// An empty buffer.
    pub fn new() -> QuantizedActs {
        QuantizedActs {
            n_tokens: 0,
            cols: 0,
            stride: 0,
            q: AlignedBytes::zeroed(0),
            scales: Vec::new(),
            sums: Vec::new(),
        }
    }

    /// Shapes the buffer for `n_tokens` rows of `cols` values, zeroing the
    /// padding; reuses the allocation when it is large enough.
    pub(crate) fn reshape(&mut self, n_tokens: usize, cols: usize) {
        let stride = Self::stride_for(cols);
        let need = n_tokens * stride;
        if self.q.len() < need {
            self.q = AlignedBytes::zeroed(need.next_power_of_two().max(64));
        } else if stride != self.stride || cols != self.cols {
            self.q.as_mut_slice()[..need].fill(0);
        }
        self.n_tokens = n_tokens;
        self.cols = cols;
        self.stride = stride;
        self.scales.resize(n_tokens, 0.0);
        self.sums.resize(n_tokens, 0);
    }

    /// Row length in bytes for `cols` real columns: the ternary kernels'
    /// padded width, rounded up to 64 bytes.
    pub fn stride_for(cols: usize) -> usize {
        padded_cols_any(cols).div_ceil(64) * 64
    }

    /// Number of tokens (rows).
    pub fn n_tokens(&self) -> usize {
        self.n_tokens
    }

    /// Number of real columns per token.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes between the starts of consecutive rows.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The padded row of token `t` (`stride` values, zero past `cols`).
    pub fn row(&self, t: usize) -> &[i8] {
        &self.q.as_i8()[t * self.stride..(t + 1) * self.stride]
    }

    /// All rows, `n_tokens * stride` values.
    pub fn data(&self) -> &[i8] {
        &self.q.as_i8()[..self.n_tokens * self.stride]
    }

    /// `s = 127 / amax` of every token.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// `Σ_k q_k` of every token.
    pub fn sums(&self) -> &[i32] {
        &self.sums
    }

    /// Mutable views for the quantiser: (rows, scales, sums).
    pub(crate) fn parts_mut(&mut self) -> (&mut [i8], &mut [f32], &mut [i32]) {
        let n = self.n_tokens * self.stride;
        (
            &mut self.q.as_i8_mut()[..n],
            &mut self.scales,
            &mut self.sums,
        )
    }
}

/// Scalar reference: quantises one row into `q` (`x.len()` values) and returns
/// `(s, Σ q)`.
pub fn quantize_row(x: &[f32], q: &mut [i8]) -> (f32, i32) {
    let amax = x
        .iter()
        .fold(0.0f32, |m, &v| m.max(v.abs()))
        .max(AMAX_FLOOR);
    let s = crate::exact::activation_scale(amax);
    let mut sum = 0i32;
    for (qk, &xk) in q.iter_mut().zip(x) {
        let v = (xk * s).round_ties_even().clamp(-128.0, 127.0) as i8;
        *qk = v;
        sum += i32::from(v);
    }
    (s, sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_formula() {
        let x = [0.5f32, -1.0, 0.25, 0.0, 1.0 / 254.0 * 3.0];
        let mut q = [0i8; 5];
        let (s, sum) = quantize_row(&x, &mut q);
        assert_eq!(s, 127.0);
        // 63.5 rounds to 64 (even), 0.25*127 = 31.75 -> 32, 1.5 -> 2 (even).
        assert_eq!(q, [64, -127, 32, 0, 2]);
        assert_eq!(sum, 64 - 127 + 32 + 2);
    }

    #[test]
    fn zero_row_uses_the_floor() {
        let x = [0.0f32; 8];
        let mut q = [1i8; 8];
        let (s, sum) = quantize_row(&x, &mut q);
        assert_eq!(s, (1.0f32 / 1e-5) * 127.0);
        assert_eq!(q, [0; 8]);
        assert_eq!(sum, 0);
    }
}
