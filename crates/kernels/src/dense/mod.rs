//! Dense (non-ternary) weight matrices: the token embedding and the LM head.
//!
//! These stay in the format the model file stores them in (F32, F16, BF16,
//! Q8_0 or Q6_K) and are read in place from the memory map: the embedding
//! gathers single rows, the head multiplies every row by the final hidden
//! state. The block layouts are llama.cpp's (the `q8_0` and `q6_k` modules
//! describe them); the quantisers exist for `convert`.
//!
//! # Head products
//!
//! For a tied-embedding model the head is the largest matrix (2B-4T:
//! 128256 × 2560, 657 MB in F16), read once per generated token, so its
//! product must run at memory bandwidth.
//!
//! * [`crate::Kernels::dense_matmul`], f32 activations, any stored type: rows
//!   converted to f32 16 (AVX-512) or 8 (AVX2) values at a time — F16C
//!   `vcvtph2ps`, a shift for BF16, sign extension and `vcvtdq2ps` times the
//!   block scale for Q8_0 and Q6_K — and FMA'd into groups of 4 rows × up
//!   to 4 tokens, so one pass over a row group serves every token. Sums in a
//!   different order from the scalar reference (tested to a relative
//!   1e-5 of `Σ|w·x|`).
//! * [`crate::Kernels::q8_matmul`] on a [`q8x::Q8Matrix`]: the int8 × int8
//!   product (`vpdpbusd` on AVX-512 VNNI, `vpmaddubsw` with the sign trick
//!   on AVX2), bit-identical to its own scalar reference. The head is
//!   repacked once at load time (an exact copy of a Q8_0 head; other types
//!   are requantised to Q8_0, which is what llama.cpp's `--token-embedding-type
//!   q8_0` does: 2B-4T perplexity 17.120 vs 17.109 for F16) and the final
//!   hidden state is quantised per 32-value block ([`q8x::Q8Acts`]), as
//!   llama.cpp's own Q8_0 dot does.
//! * [`crate::Kernels::q6k_matmul`] ([`q8k`]): a Q6_K head read in place as
//!   integers (6-bit codes × int8 activations per 256 values, llama.cpp's
//!   Q6_K × Q8_K pairing), bit-identical to its own scalar reference; one
//!   AVX2 kernel serves both SIMD levels.
//!
//! **What the model should call:** for a Q8_0 head, always the int8 path
//! (its result differs from the f32 path only by the activation rounding
//! that bitnet.cpp applies too, and it is several times cheaper per byte);
//! for a Q6_K head the integer Q6_K path (the same kind of rounding, as
//! llama.cpp and bitnet.cpp do it; 3.5× the f32 path's speed per byte on
//! AVX2); for F16/BF16 heads, `dense_matmul` unless the user opts into a
//! requantised Q8_0 head (half the bytes of F16 per token). Measured
//! numbers are in [`q8x`], [`q8k`] and the benches.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2_q6k;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
pub mod q6_k;
pub mod q8_0;
pub mod q8k;
pub mod q8x;
pub(crate) mod scalar;

use crate::error::{Error, Result};
use half::{bf16, f16};

/// Rows of the head processed by all token blocks before moving on (see the
/// SIMD `matmul`s): 32 rows of a 2560-wide F16 head are 160 KiB, which stays
/// in L2 while every block of tokens passes over it.
pub(crate) const HEAD_ROW_CHUNK: usize = 32;

/// How far ahead of the bytes it multiplies the AVX-512 single-row head
/// product asks for its rows (rows follow one another in memory; see
/// [`crate::ternary::prefetch`], which brings lines into L2).
pub(crate) const HEAD_PREFETCH: usize = 8192;

/// Whether the AVX2 heads read a thread's rows for one token from its
/// quarters, megabytes apart, rather than from neighbouring row groups:
/// AMD family 17h (Zen to Zen 2), where the quarters were the best
/// arrangement measured; on a Zen 5 they read less on two cores than on
/// one (see `avx2_q6k::STREAMS` and `avx2::Q8X_STREAMS`).
pub(crate) fn far_streams() -> bool {
    crate::isa::amd_family() == Some(0x17)
}

/// `range` cut into consecutive pieces of at most `chunk` items.
pub(crate) fn row_chunks(
    range: std::ops::Range<usize>,
    chunk: usize,
) -> impl Iterator<Item = std::ops::Range<usize>> {
    let chunk = chunk.max(1);
    range
        .clone()
        .step_by(chunk)
        .map(move |s| s..(s + chunk).min(range.end))
}

/// Storage type of a dense matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DenseType {
    /// IEEE f32.
    F32,
    /// IEEE f16.
    F16,
    /// bfloat16.
    BF16,
    /// llama.cpp Q8_0: blocks of 32 int8 with one f16 scale.
    Q8_0,
    /// llama.cpp Q6_K: super-blocks of 256 6-bit values, 16 int8 sub-scales.
    Q6K,
}

impl DenseType {
    /// Values per block.
    pub fn block_elems(self) -> usize {
        match self {
            DenseType::F32 | DenseType::F16 | DenseType::BF16 => 1,
            DenseType::Q8_0 => q8_0::BLOCK_ELEMS,
            DenseType::Q6K => q6_k::BLOCK_ELEMS,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            DenseType::F32 => 4,
            DenseType::F16 | DenseType::BF16 => 2,
            DenseType::Q8_0 => q8_0::BLOCK_BYTES,
            DenseType::Q6K => q6_k::BLOCK_BYTES,
        }
    }

    /// Bytes of one row of `cols` values, or `None` when `cols` is not a
    /// whole number of blocks.
    pub fn row_bytes(self, cols: usize) -> Option<usize> {
        cols.is_multiple_of(self.block_elems())
            .then(|| cols / self.block_elems() * self.block_bytes())
    }

    /// Name as in GGUF.
    pub fn name(self) -> &'static str {
        match self {
            DenseType::F32 => "F32",
            DenseType::F16 => "F16",
            DenseType::BF16 => "BF16",
            DenseType::Q8_0 => "Q8_0",
            DenseType::Q6K => "Q6_K",
        }
    }
}

/// A borrowed dense matrix of `rows` × `cols` values stored row by row.
#[derive(Clone, Copy, Debug)]
pub struct DenseMatrix<'a> {
    ty: DenseType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    data: &'a [u8],
}

impl<'a> DenseMatrix<'a> {
    /// Wraps `data`, checking that its size matches the shape.
    pub fn new(ty: DenseType, rows: usize, cols: usize, data: &'a [u8]) -> Result<DenseMatrix<'a>> {
        let row_bytes = ty.row_bytes(cols).ok_or_else(|| Error::Shape {
            what: "dense matrix columns",
            expected: format!("a multiple of {} for {}", ty.block_elems(), ty.name()),
            found: cols.to_string(),
        })?;
        if data.len() != rows * row_bytes {
            return Err(Error::Shape {
                what: "dense matrix bytes",
                expected: format!("{rows} x {cols} {} = {} bytes", ty.name(), rows * row_bytes),
                found: data.len().to_string(),
            });
        }
        Ok(DenseMatrix {
            ty,
            rows,
            cols,
            row_bytes,
            data,
        })
    }

    /// Storage type.
    pub fn ty(&self) -> DenseType {
        self.ty
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The bytes of row `r`.
    pub fn row(&self, r: usize) -> &'a [u8] {
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    /// All bytes.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Writes row `r` as f32 into `out` (`cols` values).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        dequantize(self.ty, self.row(r), &mut out[..self.cols]);
    }
}

/// Converts a run of stored values (whole blocks) to f32.
pub fn dequantize(ty: DenseType, bytes: &[u8], out: &mut [f32]) {
    match ty {
        DenseType::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        DenseType::F16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        DenseType::BF16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        DenseType::Q8_0 => {
            for (o, b) in out
                .chunks_exact_mut(q8_0::BLOCK_ELEMS)
                .zip(bytes.chunks_exact(q8_0::BLOCK_BYTES))
            {
                q8_0::dequantize_block(b, o);
            }
        }
        DenseType::Q6K => {
            for (o, b) in out
                .chunks_exact_mut(q6_k::BLOCK_ELEMS)
                .zip(bytes.chunks_exact(q6_k::BLOCK_BYTES))
            {
                q6_k::dequantize_block(b, o);
            }
        }
    }
}

/// Encodes f32 values (whole blocks) in `ty`.
pub fn quantize(ty: DenseType, values: &[f32]) -> Result<Vec<u8>> {
    let bytes = ty.row_bytes(values.len()).ok_or_else(|| Error::Shape {
        what: "values to quantise",
        expected: format!("a multiple of {} for {}", ty.block_elems(), ty.name()),
        found: values.len().to_string(),
    })?;
    let mut out = Vec::with_capacity(bytes);
    match ty {
        DenseType::F32 => values.iter().for_each(|v| out.extend(v.to_le_bytes())),
        DenseType::F16 => values
            .iter()
            .for_each(|v| out.extend(f16::from_f32(*v).to_le_bytes())),
        DenseType::BF16 => values
            .iter()
            .for_each(|v| out.extend(bf16::from_f32(*v).to_le_bytes())),
        DenseType::Q8_0 => values
            .chunks_exact(q8_0::BLOCK_ELEMS)
            .for_each(|b| out.extend(q8_0::quantize_block(b))),
        DenseType::Q6K => values
            .chunks_exact(q6_k::BLOCK_ELEMS)
            .for_each(|b| out.extend(q6_k::quantize_block(b))),
    }
    Ok(out)
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::out::OutRows;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// The bits of the `n × rows` output (NaN where nothing was written)
    /// that `f` writes for the two halves of `0..len` in turn, as two
    /// threads own a range.
    ///
    /// # Safety
    /// `f`'s contract, for `m`, `x` and every half of `0..len`, with an
    /// output of `n` tokens × `rows`.
    unsafe fn by_halves<M, A>(
        f: unsafe fn(&M, &A, &OutRows<'_>, std::ops::Range<usize>),
        m: &M,
        x: &A,
        n: usize,
        rows: usize,
        len: usize,
    ) -> Vec<u32> {
        let mut out = vec![f32::NAN; n * rows];
        let o = OutRows::new(&mut out, n, rows);
        for part in [0..len / 2, len / 2..len] {
            // SAFETY: the caller's contract.
            unsafe { f(m, x, &o, part) };
        }
        out.iter().map(|v| v.to_bits()).collect()
    }

    /// Both ways the AVX2 heads arrange one or two tokens' rows (from the
    /// quarters of a thread's range, or neighbouring, see [`far_streams`])
    /// give their scalar references bit for bit, whichever this CPU uses:
    /// ranges as two threads own them, with sets of groups and groups and
    /// rows left over.
    #[test]
    fn both_head_arrangements_match_the_references() {
        if crate::isa::Avx2::detect().is_none() {
            eprintln!("skipping: this CPU lacks AVX2");
            return;
        }
        type Q6 = unsafe fn(&DenseMatrix<'_>, &q8k::Q8KActs, &OutRows<'_>, std::ops::Range<usize>);
        type Q8 = unsafe fn(&q8x::Q8Matrix, &q8x::Q8Acts, &OutRows<'_>, std::ops::Range<usize>);
        let q6k: [(&str, Q6); 2] = [
            ("quarters", avx2_q6k::matmul::<true>),
            ("neighbours", avx2_q6k::matmul::<false>),
        ];
        let q8: [(&str, Q8); 2] = [
            ("quarters", avx2::q8x_matmul::<true>),
            ("one stream", avx2::q8x_matmul::<false>),
        ];
        for (rows, cols) in [(300, 512), (77, 256)] {
            let q6 = quantize(DenseType::Q6K, &values(rows * cols, 1)).unwrap();
            let m = DenseMatrix::new(DenseType::Q6K, rows, cols, &q6).unwrap();
            let q8_bytes = quantize(DenseType::Q8_0, &values(rows * cols, 2)).unwrap();
            let m8 = q8x::Q8Matrix::from_dense(
                &DenseMatrix::new(DenseType::Q8_0, rows, cols, &q8_bytes).unwrap(),
            )
            .unwrap();
            for n in [1, 2] {
                let x = values(n * cols, 3);
                let mut a6 = q8k::Q8KActs::new();
                a6.quantize(&x, n, cols);
                let mut a8 = q8x::Q8Acts::new();
                a8.quantize(&x, n, cols);
                // SAFETY: AVX2/FMA/F16C are present (checked above; every
                // AVX2 CPU has F16C and FMA); the matrices and activations
                // match, the output holds every row of every token, and the
                // halves are ranges of rows (Q6_K) or row groups (Q8_0).
                // The calls below rest on the same facts.
                let want = unsafe { by_halves(q8k::matmul, &m, &a6, n, rows, rows) };
                for (name, f) in q6k {
                    // SAFETY: as above.
                    let got = unsafe { by_halves(f, &m, &a6, n, rows, rows) };
                    assert_eq!(got, want, "Q6_K {name} {rows}x{cols} n{n}");
                }
                let groups = m8.groups();
                // SAFETY: as above.
                let want = unsafe { by_halves(q8x::matmul, &m8, &a8, n, rows, groups) };
                for (name, f) in q8 {
                    // SAFETY: as above.
                    let got = unsafe { by_halves(f, &m8, &a8, n, rows, groups) };
                    assert_eq!(got, want, "Q8_0 {name} {rows}x{cols} n{n}");
                }
            }
        }
    }
}
