//! AVX2 dense products with f32 activations (the LM head): the AVX-512
//! kernels' structure on 8-lane vectors (F16C `vcvtph2ps`, FMA), with
//! groups of four rows × up to two tokens to fit 16 registers, and eight
//! rows from eight parts of the range (eight memory streams) for a single
//! token of a plain type, four rows from four parts for two tokens. The
//! int8 Q8_0 head (`q8x_matmul`) reads four row groups from four parts of
//! the range for one or two tokens.

// Register-blocked loops index their accumulator arrays with constant
// ranges on purpose: after full unrolling every index is a constant and the
// arrays live in registers (iterators here made LLVM keep them on the stack).
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::ops::Range;

use super::q8x::{self, Q8Acts, Q8Matrix};
use super::{DenseMatrix, DenseType, q6_k, q8_0};
use crate::out::OutRows;

/// Tokens per pass over a row group.
const TOKENS: usize = 2;
/// Rows per group.
const ROWS: usize = 4;
/// Rows multiplied together for one token of a plain type (F32, F16,
/// BF16), each from its own eighth of the thread's rows: eight memory
/// streams and eight FMA chains. On a Zen 2 (2 cores,
/// `examples/head_probe.rs f16`, 2B-4T head from DRAM, alternating runs):
/// row after row (one stream, four FMA chains, software prefetch) read
/// 13.9–14.1 GB/s on one core and 24.5–27.2 on two, below the
/// single-stream `membw` (16–17 and 27–32); eight neighbouring rows at a
/// time 17.2–18.2 and 27.0–28.7 in a later hour; eight rows from the eight
/// eighths 21.8–22.3 and 30.7–32.0 in that same hour. A core's L2
/// prefetchers keep more lines in flight for several streams than for one
/// (`examples/stream_read.rs`). Two tokens (two sequences decoded
/// together) take half as many rows, from quarters: the F16 head then read
/// 20.3–20.4 GB/s on one core and 33–38 on two, against 15.0–15.2 and
/// 27–28 through the row groups below.
const STREAM_ROWS: usize = 8;

/// # Safety
/// The CPU must support AVX2/FMA/F16C; `x` is `n_tokens × cols`, `out` is
/// `n_tokens × rows` and this thread owns `rows`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn matmul(
    w: &DenseMatrix<'_>,
    x: &[f32],
    n_tokens: usize,
    out: &OutRows<'_>,
    rows: Range<usize>,
) {
    if n_tokens <= TOKENS {
        // SAFETY: forwarded contract.
        unsafe {
            match (w.ty(), n_tokens) {
                (DenseType::F32, 1) => return few_tokens::<F32, 1>(w, x, out, rows),
                (DenseType::F16, 1) => return few_tokens::<F16, 1>(w, x, out, rows),
                (DenseType::BF16, 1) => return few_tokens::<Bf16, 1>(w, x, out, rows),
                (DenseType::F32, _) => return few_tokens::<F32, 2>(w, x, out, rows),
                (DenseType::F16, _) => return few_tokens::<F16, 2>(w, x, out, rows),
                (DenseType::BF16, _) => return few_tokens::<Bf16, 2>(w, x, out, rows),
                _ => {}
            }
        }
    }
    // Token blocks run over one chunk of rows at a time, so that a batch
    // of many tokens reads the head once (the chunk stays in L2) instead of
    // once per token block.
    for rows in super::row_chunks(rows, super::HEAD_ROW_CHUNK) {
        let mut t0 = 0;
        while t0 < n_tokens {
            let nt = TOKENS.min(n_tokens - t0);
            // SAFETY: forwarded contract; tokens t0..t0+nt exist.
            unsafe {
                if nt == 1 {
                    by_type::<1>(w, x, out, rows.clone(), t0);
                } else {
                    by_type::<2>(w, x, out, rows.clone(), t0);
                }
            }
            t0 += nt;
        }
    }
}

/// # Safety
/// The contract of [`matmul`]; tokens `t0..t0+T` exist.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn by_type<const T: usize>(
    w: &DenseMatrix<'_>,
    x: &[f32],
    out: &OutRows<'_>,
    rows: Range<usize>,
    t0: usize,
) {
    let mut r = rows.start;
    while r < rows.end {
        let full = rows.end - r >= ROWS;
        // SAFETY: forwarded contract.
        unsafe {
            match (w.ty(), full) {
                (DenseType::F32, true) => plain::<F32, ROWS, T>(w, x, out, r, t0),
                (DenseType::F32, false) => plain::<F32, 1, T>(w, x, out, r, t0),
                (DenseType::F16, true) => plain::<F16, ROWS, T>(w, x, out, r, t0),
                (DenseType::F16, false) => plain::<F16, 1, T>(w, x, out, r, t0),
                (DenseType::BF16, true) => plain::<Bf16, ROWS, T>(w, x, out, r, t0),
                (DenseType::BF16, false) => plain::<Bf16, 1, T>(w, x, out, r, t0),
                (DenseType::Q8_0, true) => q8_0_group::<ROWS, T>(w, x, out, r, t0),
                (DenseType::Q8_0, false) => q8_0_group::<1, T>(w, x, out, r, t0),
                (DenseType::Q6K, true) => q6_k_group::<ROWS, T>(w, x, out, r, t0),
                (DenseType::Q6K, false) => q6_k_group::<1, T>(w, x, out, r, t0),
            }
        }
        r += if full { ROWS } else { 1 };
    }
}

/// A plain (unblocked) storage type: 8 values at a time as f32.
trait Plain {
    /// # Safety
    /// Values `k..k+8` of the row at `row` must be readable.
    unsafe fn load(row: *const u8, k: usize) -> __m256;
    /// Values `k..k+n` (`n < 8`), zero elsewhere.
    ///
    /// # Safety
    /// Values `k..k+n` of the row must be readable.
    unsafe fn load_partial(row: *const u8, k: usize, n: usize) -> __m256 {
        let mut buf = [0f32; 8];
        for (i, b) in buf.iter_mut().enumerate().take(n) {
            // SAFETY: the caller's contract; one value at a time.
            *b = unsafe { Self::one(row, k + i) };
        }
        // SAFETY: `buf` holds 8 values.
        unsafe { _mm256_loadu_ps(buf.as_ptr()) }
    }
    /// # Safety
    /// Value `k` of the row must be readable.
    unsafe fn one(row: *const u8, k: usize) -> f32;
}

struct F32;
struct F16;
struct Bf16;

impl Plain for F32 {
    #[inline(always)]
    unsafe fn load(row: *const u8, k: usize) -> __m256 {
        // SAFETY: the caller's contract.
        unsafe { _mm256_loadu_ps(row.cast::<f32>().add(k)) }
    }
    #[inline(always)]
    unsafe fn one(row: *const u8, k: usize) -> f32 {
        // SAFETY: the caller's contract.
        unsafe { row.cast::<f32>().add(k).read_unaligned() }
    }
}

impl Plain for F16 {
    #[inline(always)]
    unsafe fn load(row: *const u8, k: usize) -> __m256 {
        // SAFETY: the caller's contract.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(row.add(2 * k).cast())) }
    }
    #[inline(always)]
    unsafe fn one(row: *const u8, k: usize) -> f32 {
        // SAFETY: the caller's contract.
        half::f16::from_bits(unsafe { row.cast::<u16>().add(k).read_unaligned() }).to_f32()
    }
}

impl Plain for Bf16 {
    #[inline(always)]
    unsafe fn load(row: *const u8, k: usize) -> __m256 {
        // SAFETY: the caller's contract.
        unsafe {
            let h = _mm_loadu_si128(row.add(2 * k).cast());
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
        }
    }
    #[inline(always)]
    unsafe fn one(row: *const u8, k: usize) -> f32 {
        // SAFETY: the caller's contract.
        half::bf16::from_bits(unsafe { row.cast::<u16>().add(k).read_unaligned() }).to_f32()
    }
}

/// An f16 stored as two little-endian bytes, as f32.
///
/// # Safety
/// `p` must be readable for 2 bytes.
#[target_feature(enable = "avx2,f16c")]
#[inline]
pub(crate) unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the caller's contract.
    let bits = unsafe { p.cast::<u16>().read_unaligned() };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
}

/// Decodes half `h` of a Q6_K block into four vectors of 32 signed values
/// `q − 32` in natural order (values `32j..32j+32` of the half in vector j).
///
/// # Safety
/// `blk` must be readable for a whole block.
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn q6_k_half(blk: *const u8, h: usize) -> [__m256i; 4] {
    // SAFETY: the caller's contract; offsets from the Q6_K layout.
    let (ql0, ql1, qh) = unsafe {
        (
            _mm256_loadu_si256(blk.add(64 * h).cast()),
            _mm256_loadu_si256(blk.add(64 * h + 32).cast()),
            _mm256_loadu_si256(blk.add(128 + 32 * h).cast()),
        )
    };
    let m4 = _mm256_set1_epi8(0x0F);
    let m30 = _mm256_set1_epi8(0x30);
    let off = _mm256_set1_epi8(32);
    let v0 = _mm256_or_si256(
        _mm256_and_si256(ql0, m4),
        _mm256_and_si256(_mm256_slli_epi16::<4>(qh), m30),
    );
    let v1 = _mm256_or_si256(
        _mm256_and_si256(ql1, m4),
        _mm256_and_si256(_mm256_slli_epi16::<2>(qh), m30),
    );
    let v2 = _mm256_or_si256(
        _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4),
        _mm256_and_si256(qh, m30),
    );
    let v3 = _mm256_or_si256(
        _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4),
        _mm256_and_si256(_mm256_srli_epi16::<2>(qh), m30),
    );
    [
        _mm256_sub_epi8(v0, off),
        _mm256_sub_epi8(v1, off),
        _mm256_sub_epi8(v2, off),
        _mm256_sub_epi8(v3, off),
    ]
}

/// Horizontal sum of 8 lanes.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// One or two tokens (`T`) of a plain type over `rows`: [`STREAM_ROWS`] /
/// `T` rows at a time (eight accumulators), row `g` of each of that many
/// parts of the range, then the rows left over.
///
/// # Safety
/// The contract of [`matmul`] with `T` tokens.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn few_tokens<P: Plain, const T: usize>(
    w: &DenseMatrix<'_>,
    x: &[f32],
    out: &OutRows<'_>,
    rows: Range<usize>,
) {
    // SAFETY: forwarded contract (both arms).
    unsafe {
        if T == 1 {
            strided::<P, STREAM_ROWS, T>(w, x, out, rows);
        } else {
            strided::<P, { STREAM_ROWS / 2 }, T>(w, x, out, rows);
        }
    }
}

/// [`few_tokens`] with `R` rows at a time.
///
/// # Safety
/// As [`few_tokens`].
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn strided<P: Plain, const R: usize, const T: usize>(
    w: &DenseMatrix<'_>,
    x: &[f32],
    out: &OutRows<'_>,
    rows: Range<usize>,
) {
    let part = rows.len() / R;
    for g in 0..part {
        let idx = std::array::from_fn(|k| rows.start + k * part + g);
        // SAFETY: forwarded contract; every row lies in `rows`.
        unsafe { strided_rows::<P, R, T>(w, x, out, idx) };
    }
    for r in rows.start + R * part..rows.end {
        // SAFETY: as above.
        unsafe { plain::<P, 1, T>(w, x, out, r, 0) };
    }
}

/// Rows `idx` (anywhere in the matrix), tokens `0..T`, one FMA chain per
/// row and token.
///
/// # Safety
/// The contract of [`matmul`]; the rows exist and are this thread's.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn strided_rows<P: Plain, const R: usize, const T: usize>(
    w: &DenseMatrix<'_>,
    x: &[f32],
    out: &OutRows<'_>,
    idx: [usize; R],
) {
    let cols = w.cols();
    let rp: [*const u8; R] = std::array::from_fn(|i| w.row(idx[i]).as_ptr());
    let mut acc = [[_mm256_setzero_ps(); T]; R];
    let mut k = 0;
    while k + 8 <= cols {
        // SAFETY: values k..k+8 exist in every row and token.
        let xv: [__m256; T] =
            std::array::from_fn(|t| unsafe { _mm256_loadu_ps(x.as_ptr().add(t * cols + k)) });
        for i in 0..R {
            // SAFETY: as above.
            let wv = unsafe { P::load(rp[i], k) };
            for t in 0..T {
                acc[i][t] = _mm256_fmadd_ps(wv, xv[t], acc[i][t]);
            }
        }
        k += 8;
    }
    for i in 0..R {
        for t in 0..T {
            let mut s = hsum(acc[i][t]);
            for c in k..cols {
                // SAFETY: value c exists in the row.
                s += unsafe { P::one(rp[i], c) } * x[t * cols + c];
            }
            out.write(t, idx[i], s);
        }
    }
}

/// # Safety
/// The contract of [`matmul`]; rows `r0..r0+R` and tokens `t0..t0+T` exist and are this thread's.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn plain<P: Plain, const R: usize, const T: usize>(
    w: &DenseMatrix<'_>,
    x: &[f32],
    out: &OutRows<'_>,
    r0: usize,
    t0: usize,
) {
    let cols = w.cols();
    let rp: [*const u8; R] = std::array::from_fn(|i| w.row(r0 + i).as_ptr());
    let xs: [&[f32]; T] = std::array::from_fn(|t| &x[(t0 + t) * cols..(t0 + t + 1) * cols]);
    let mut acc = [[_mm256_setzero_ps(); T]; R];
    let mut k = 0;
    while k + 8 <= cols {
        // SAFETY: values k..k+8 exist in every row and token.
        unsafe {
            let wv: [__m256; R] = std::array::from_fn(|i| P::load(rp[i], k));
            for t in 0..T {
                let xv = _mm256_loadu_ps(xs[t].as_ptr().add(k));
                for i in 0..R {
                    acc[i][t] = _mm256_fmadd_ps(wv[i], xv, acc[i][t]);
                }
            }
        }
        k += 8;
    }
    if k < cols {
        let n = cols - k;
        // SAFETY: values k..cols exist in every row.
        let wv: [__m256; R] = std::array::from_fn(|i| unsafe { P::load_partial(rp[i], k, n) });
        for t in 0..T {
            let mut buf = [0f32; 8];
            buf[..n].copy_from_slice(&xs[t][k..]);
            // SAFETY: `buf` holds 8 values.
            let xv = unsafe { _mm256_loadu_ps(buf.as_ptr()) };
            for i in 0..R {
                acc[i][t] = _mm256_fmadd_ps(wv[i], xv, acc[i][t]);
            }
        }
    }
    for (i, acc) in acc.iter().enumerate() {
        for (t, &a) in acc.iter().enumerate() {
            out.write(t0 + t, r0 + i, hsum(a));
        }
    }
}

/// # Safety
/// As for `plain`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_0_group<const R: usize, const T: usize>(
    w: &DenseMatrix<'_>,
    x: &[f32],
    out: &OutRows<'_>,
    r0: usize,
    t0: usize,
) {
    let cols = w.cols();
    let rp: [*const u8; R] = std::array::from_fn(|i| w.row(r0 + i).as_ptr());
    let xp: [*const f32; T] =
        std::array::from_fn(|t| x[(t0 + t) * cols..(t0 + t + 1) * cols].as_ptr());
    let mut acc = [[_mm256_setzero_ps(); T]; R];
    for b in 0..cols / q8_0::BLOCK_ELEMS {
        for part in 0..4 {
            // SAFETY: block `b` (34 bytes) exists in every row; values
            // 32b..32b+32 exist in every token.
            unsafe {
                let wv: [__m256; R] = std::array::from_fn(|i| {
                    let blk = rp[i].add(b * q8_0::BLOCK_BYTES);
                    let d = _mm256_set1_ps(f16_at(blk));
                    let q = _mm_loadl_epi64(blk.add(2 + 8 * part).cast());
                    _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d)
                });
                for t in 0..T {
                    let xv = _mm256_loadu_ps(xp[t].add(32 * b + 8 * part));
                    for i in 0..R {
                        acc[i][t] = _mm256_fmadd_ps(wv[i], xv, acc[i][t]);
                    }
                }
            }
        }
    }
    for (i, acc) in acc.iter().enumerate() {
        for (t, &a) in acc.iter().enumerate() {
            out.write(t0 + t, r0 + i, hsum(a));
        }
    }
}

/// # Safety
/// As for `plain`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6_k_group<const R: usize, const T: usize>(
    w: &DenseMatrix<'_>,
    x: &[f32],
    out: &OutRows<'_>,
    r0: usize,
    t0: usize,
) {
    let cols = w.cols();
    let xp: [*const f32; T] =
        std::array::from_fn(|t| x[(t0 + t) * cols..(t0 + t + 1) * cols].as_ptr());
    for i in 0..R {
        let row = w.row(r0 + i).as_ptr();
        let mut acc = [[_mm256_setzero_ps(); 2]; T];
        for b in 0..cols / q6_k::BLOCK_ELEMS {
            // SAFETY: block `b` exists in the row; values 256b..256b+256
            // exist in every token.
            unsafe {
                let blk = row.add(b * q6_k::BLOCK_BYTES);
                // The 16 group scales d·sc_g at once, then one broadcast
                // load per group.
                let d = _mm256_set1_ps(f16_at(blk.add(208)));
                let mut scales = [0f32; 16];
                for half in 0..2 {
                    let sc8 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(
                        blk.add(192 + 8 * half).cast(),
                    )));
                    _mm256_storeu_ps(scales.as_mut_ptr().add(8 * half), _mm256_mul_ps(sc8, d));
                }
                for h in 0..2 {
                    let v = q6_k_half(blk, h);
                    for (j, &vj) in v.iter().enumerate() {
                        for part in 0..2 {
                            let g = 8 * h + 2 * j + part;
                            let sc = _mm256_set1_ps(scales[g]);
                            let bytes = if part == 0 {
                                _mm256_castsi256_si128(vj)
                            } else {
                                _mm256_extracti128_si256::<1>(vj)
                            };
                            let lo =
                                _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes)), sc);
                            let hi = _mm256_mul_ps(
                                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128::<8>(
                                    bytes,
                                ))),
                                sc,
                            );
                            for t in 0..T {
                                let base = xp[t].add(256 * b + 16 * g);
                                acc[t][0] = _mm256_fmadd_ps(lo, _mm256_loadu_ps(base), acc[t][0]);
                                acc[t][1] =
                                    _mm256_fmadd_ps(hi, _mm256_loadu_ps(base.add(8)), acc[t][1]);
                            }
                        }
                    }
                }
            }
        }
        for (t, a) in acc.iter().enumerate() {
            out.write(t0 + t, r0 + i, hsum(_mm256_add_ps(a[0], a[1])));
        }
    }
}

/// Int8 head product ([`super::q8x`]) with `vpmaddubsw`: `|q_w|` (unsigned)
/// times `q_x` carrying the sign of `q_w` (`vpsignb`; exact because
/// `|q_x| ≤ 127`), pairs of at most 2 · 128 · 127 < 2^15. Bit-identical to
/// the scalar reference.
///
/// # Safety
/// The CPU must support AVX2/FMA/F16C; `out` is `n_tokens × rows` and this
/// thread owns the rows of `groups`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q8x_matmul<const FAR: bool>(
    w: &Q8Matrix,
    x: &Q8Acts,
    out: &OutRows<'_>,
    groups: Range<usize>,
) {
    let n = x.n_tokens();
    let mut groups = groups;
    if n <= TOKENS && FAR {
        // One or two tokens (decoding): Q8X_STREAMS groups from the quarters
        // of the range side by side; the groups left over go below.
        let quarter = groups.len() / Q8X_STREAMS;
        for i in 0..quarter {
            let gs = std::array::from_fn(|k| groups.start + k * quarter + i);
            // SAFETY: forwarded contract; every group lies in `groups`.
            unsafe {
                if n == 1 {
                    q8x_streams::<1, Q8X_STREAMS>(w, x, out, gs);
                } else {
                    q8x_streams::<2, Q8X_STREAMS>(w, x, out, gs);
                }
            }
        }
        groups.start += Q8X_STREAMS * quarter;
    } else if n <= TOKENS {
        // One group after another, both halves in one pass: one stream.
        for g in groups.clone() {
            // SAFETY: forwarded contract; the group is in `groups`.
            unsafe {
                if n == 1 {
                    q8x_streams::<1, 1>(w, x, out, [g]);
                } else {
                    q8x_streams::<2, 1>(w, x, out, [g]);
                }
            }
        }
        groups.start = groups.end;
    }
    // As in `matmul`: all token blocks over a few row groups at a time.
    for groups in super::row_chunks(groups, super::HEAD_ROW_CHUNK / q8x::ROWS) {
        let mut t0 = 0;
        while t0 < n {
            let nt = TOKENS.min(n - t0);
            // SAFETY: forwarded contract; tokens t0..t0+nt exist.
            unsafe {
                if nt == 1 {
                    q8x_tokens::<1>(w, x, out, groups.clone(), t0);
                } else {
                    q8x_tokens::<2>(w, x, out, groups.clone(), t0);
                }
            }
            t0 += nt;
        }
    }
}

/// Groups of the int8 head read side by side for one or two tokens, one
/// from each quarter of the thread's groups, a 32-column block (512 bytes)
/// of each in turn, both 8-row halves of a group in one pass, where
/// [`super::far_streams`] says so. The 2B-4T head from DRAM on a Zen 2
/// (`examples/head_probe.rs q8x`, alternating runs), one core / two cores,
/// GB/s, one token: one group at a time in two passes over its halves (the
/// path below) 10.4 / 20.1–20.5; one group in one pass 14.7–14.8 /
/// 27.0–30.1; two groups from the two halves 17.3–17.5 / 32.0–33.3; four
/// from the quarters 22.7–23.0 / 40.5–43.3; eight from the eighths
/// 16.8–17.1 / 32.5–32.7. Two tokens: 9.4 / 18.5 on the path below,
/// 10.4–10.8 / 20.0–20.3 with two groups, 15.8 / 31.3 with four. As for the
/// other heads, independent streams keep more lines in flight
/// (`examples/stream_read.rs`). On a Zen 5 (forced AVX2 level) the quarters
/// read 31–34 / 22–24, less on two cores than on one (two tokens: 25 /
/// 13.4); one group at a time in one pass, asking for its stream
/// [`Q8X_PREFETCH`] bytes ahead, 36.5–37.7 / 47–51 (two tokens 29–30 /
/// 45–48; one token without the prefetch 31–33 / 45–46, four neighbouring
/// groups 25 / 35, groups 64 apart 13.6 / 30.4). CPUs other than AMD
/// family 17h read one stream so; no AVX2-only one has measured it yet.
const Q8X_STREAMS: usize = 4;
/// How far ahead a lone stream of [`q8x_streams`] asks for its codes (2 and
/// 8 KB read 32 / 48 and 34 / 44–48 GB/s on the Zen 5 above).
const Q8X_PREFETCH: usize = 4096;

/// 32 stored int8 codes (8 rows × one 4-column step; stored with their top
/// bit flipped) as signed codes and their magnitudes, for [`q8_dot4`].
///
/// # Safety
/// `p` must be readable for 32 bytes and 32-byte aligned.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn q8_codes(p: *const u8) -> (__m256i, __m256i) {
    // SAFETY: the caller's contract.
    let wq = _mm256_xor_si256(
        unsafe { _mm256_load_si256(p.cast()) },
        _mm256_set1_epi8(0x80u8 as i8),
    );
    (wq, _mm256_abs_epi8(wq))
}

/// Per row (`i32` lane) the dot product of its four codes with the four
/// activation bytes at `a`: `|w| · sign(a, w)` in `vpmaddubsw`, pairs summed
/// by `vpmaddwd`.
///
/// # Safety
/// `a` must be readable for 4 bytes.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn q8_dot4(wq: __m256i, aw: __m256i, a: *const i8) -> __m256i {
    // SAFETY: the caller's contract.
    let a = _mm256_set1_epi32(unsafe { a.cast::<i32>().read_unaligned() });
    let p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(a, wq));
    _mm256_madd_epi16(p, _mm256_set1_epi16(1))
}

/// Tokens `0..T` over groups `gs`, both 8-row halves of each in one pass.
///
/// # Safety
/// The contract of [`q8x_matmul`] with `T` tokens; every group of `gs`
/// exists and is this thread's.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8x_streams<const T: usize, const S: usize>(
    w: &Q8Matrix,
    x: &Q8Acts,
    out: &OutRows<'_>,
    gs: [usize; S],
) {
    let q: [*const i8; T] = std::array::from_fn(|t| x.row(t).as_ptr());
    // [stream][half][token]; constant-index loops only, so that they live
    // in registers.
    let mut acc = [[[_mm256_setzero_ps(); T]; 2]; S];
    for b in 0..w.blocks() {
        for s in 0..S {
            let codes = w.codes(gs[s], b).as_ptr();
            if S == 1 {
                // One stream: the groups follow one another in memory.
                for line in 0..q8x::GROUP_BLOCK_BYTES / 64 {
                    crate::ternary::prefetch(codes.wrapping_add(Q8X_PREFETCH + 64 * line));
                }
            }
            let mut isum = [[_mm256_setzero_si256(); T]; 2];
            for step in 0..8 {
                for h in 0..2 {
                    // SAFETY: half `h` of step `step`: 32 aligned bytes.
                    let (wq, aw) = unsafe { q8_codes(codes.add(64 * step + 32 * h)) };
                    for t in 0..T {
                        // SAFETY: columns 32b + 4·step .. +4 exist in the
                        // token row.
                        let p = unsafe { q8_dot4(wq, aw, q[t].add(q8x::BLOCK * b + 4 * step)) };
                        isum[h][t] = _mm256_add_epi32(isum[h][t], p);
                    }
                }
            }
            let scales = w.scales(gs[s], b).as_ptr();
            for h in 0..2 {
                // SAFETY: 8 f16 scales of half `h` of the block.
                let dw = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(scales.add(8 * h).cast()) });
                for t in 0..T {
                    let sc = _mm256_mul_ps(dw, _mm256_set1_ps(x.scales(t)[b]));
                    acc[s][h][t] =
                        _mm256_fmadd_ps(sc, _mm256_cvtepi32_ps(isum[h][t]), acc[s][h][t]);
                }
            }
        }
    }
    for s in 0..S {
        for h in 0..2 {
            let r0 = gs[s] * q8x::ROWS + 8 * h;
            if r0 >= w.rows() {
                continue;
            }
            let valid = (w.rows() - r0).min(8) as i32;
            let mask = _mm256_cmpgt_epi32(
                _mm256_set1_epi32(valid),
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            );
            for t in 0..T {
                // SAFETY: rows r0..r0+valid of token t are ours.
                unsafe { _mm256_maskstore_ps(out.ptr(t, r0), mask, acc[s][h][t]) };
            }
        }
    }
}

/// # Safety
/// The contract of [`q8x_matmul`]; tokens `t0..t0+T` exist.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8x_tokens<const T: usize>(
    w: &Q8Matrix,
    x: &Q8Acts,
    out: &OutRows<'_>,
    groups: Range<usize>,
    t0: usize,
) {
    let mut q = [std::ptr::null::<i8>(); T];
    for t in 0..T {
        q[t] = x.row(t0 + t).as_ptr();
    }
    for g in groups {
        for half in 0..2 {
            let r0 = g * q8x::ROWS + 8 * half;
            if r0 >= w.rows() {
                continue;
            }
            // Constant-index loops only, so that the accumulators live in
            // registers.
            let mut acc = [_mm256_setzero_ps(); T];
            for b in 0..w.blocks() {
                let codes = w.codes(g, b).as_ptr();
                let mut isum = [_mm256_setzero_si256(); T];
                for s in 0..8 {
                    // SAFETY: half `half` of step `s`: 32 aligned bytes.
                    let (wq, aw) = unsafe { q8_codes(codes.add(64 * s + 32 * half)) };
                    for t in 0..T {
                        // SAFETY: columns 32b + 4s .. +4 exist in the token row.
                        let p = unsafe { q8_dot4(wq, aw, q[t].add(q8x::BLOCK * b + 4 * s)) };
                        isum[t] = _mm256_add_epi32(isum[t], p);
                    }
                }
                // SAFETY: 8 f16 scales of this half of the block.
                let dw = _mm256_cvtph_ps(unsafe {
                    _mm_loadu_si128(w.scales(g, b).as_ptr().add(8 * half).cast())
                });
                for t in 0..T {
                    let s = _mm256_mul_ps(dw, _mm256_set1_ps(x.scales(t0 + t)[b]));
                    acc[t] = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(isum[t]), acc[t]);
                }
            }
            let valid = (w.rows() - r0).min(8) as i32;
            let mask = _mm256_cmpgt_epi32(
                _mm256_set1_epi32(valid),
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            );
            for t in 0..T {
                // SAFETY: rows r0..r0+valid of token t0+t are ours.
                unsafe { _mm256_maskstore_ps(out.ptr(t0 + t, r0), mask, acc[t]) };
            }
        }
    }
}
