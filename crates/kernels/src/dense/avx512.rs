//! AVX-512 dense products with f32 activations (the LM head).
//!
//! Rows are converted to f32 16 values at a time (`vcvtph2ps` for F16, a
//! shift for BF16, sign-extension and `vcvtdq2ps` times the block scale for
//! Q8_0 and Q6_K) and multiplied into f32 accumulators with FMA. Each call
//! handles a group of rows × up to four tokens, so one pass over a row
//! serves every token of the group and the activations stay in L1. The
//! head is memory-bound for one token: these loops convert faster than
//! DRAM delivers.

// Register-blocked loops index their accumulator arrays with constant
// ranges on purpose: after full unrolling every index is a constant and the
// arrays live in registers (iterators here made LLVM keep them on the stack).
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::ops::Range;

use super::avx2::{f16_at, q6_k_half};
use super::q8x::{self, Q8Acts, Q8Matrix};
use super::{DenseMatrix, DenseType, q6_k, q8_0};
use crate::out::OutRows;

/// Tokens per pass over a row group.
const TOKENS: usize = 4;

/// # Safety
/// The CPU must support AVX-512 F/BW/VL and F16C/FMA; `x` is
/// `n_tokens × cols`, `out` is `n_tokens × rows` and this thread owns `rows`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
pub(crate) unsafe fn matmul(
    w: &DenseMatrix<'_>,
    x: &[f32],
    n_tokens: usize,
    out: &OutRows<'_>,
    rows: Range<usize>,
) {
    // Token blocks run over one chunk of rows at a time, so that a batch
    // of many tokens reads the head once (the chunk stays in L2) instead of
    // once per token block.
    for rows in super::row_chunks(rows, super::HEAD_ROW_CHUNK) {
        let mut t0 = 0;
        while t0 < n_tokens {
            let nt = TOKENS.min(n_tokens - t0);
            // SAFETY: forwarded contract; tokens t0..t0+nt exist.
            unsafe {
                match nt {
                    1 => by_type::<1>(w, x, out, rows.clone(), t0),
                    2 => by_type::<2>(w, x, out, rows.clone(), t0),
                    3 => by_type::<3>(w, x, out, rows.clone(), t0),
                    _ => by_type::<4>(w, x, out, rows.clone(), t0),
                }
            }
            t0 += nt;
        }
    }
}

/// # Safety
/// The contract of [`matmul`]; tokens `t0..t0+T` exist.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn by_type<const T: usize>(
    w: &DenseMatrix<'_>,
    x: &[f32],
    out: &OutRows<'_>,
    rows: Range<usize>,
    t0: usize,
) {
    // SAFETY: forwarded contract.
    unsafe {
        match w.ty() {
            DenseType::F32 => plain::<F32, T>(w, x, out, rows, t0),
            DenseType::F16 => plain::<F16, T>(w, x, out, rows, t0),
            DenseType::BF16 => plain::<Bf16, T>(w, x, out, rows, t0),
            DenseType::Q8_0 => q8_0_rows::<T>(w, x, out, rows, t0),
            DenseType::Q6K => q6_k_rows::<T>(w, x, out, rows, t0),
        }
    }
}

/// A plain (unblocked) storage type: 16 values at a time as f32.
trait Plain {
    /// Bytes per stored value.
    const BYTES: usize;
    /// # Safety
    /// Values `k..k+16` of the row at `row` must be readable.
    unsafe fn load(row: *const u8, k: usize) -> __m512;
    /// # Safety
    /// Values `k + i` for the set bits `i` of `mask` must be readable.
    unsafe fn load_masked(row: *const u8, k: usize, mask: __mmask16) -> __m512;
}

struct F32;
struct F16;
struct Bf16;

impl Plain for F32 {
    const BYTES: usize = 4;
    #[inline(always)]
    unsafe fn load(row: *const u8, k: usize) -> __m512 {
        // SAFETY: the caller's contract.
        unsafe { _mm512_loadu_ps(row.cast::<f32>().add(k)) }
    }
    #[inline(always)]
    unsafe fn load_masked(row: *const u8, k: usize, mask: __mmask16) -> __m512 {
        // SAFETY: the caller's contract (masked lanes are not read).
        unsafe { _mm512_maskz_loadu_ps(mask, row.cast::<f32>().add(k)) }
    }
}

impl Plain for F16 {
    const BYTES: usize = 2;
    #[inline(always)]
    unsafe fn load(row: *const u8, k: usize) -> __m512 {
        // SAFETY: the caller's contract.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(row.add(2 * k).cast())) }
    }
    #[inline(always)]
    unsafe fn load_masked(row: *const u8, k: usize, mask: __mmask16) -> __m512 {
        // SAFETY: the caller's contract (masked lanes are not read).
        unsafe { _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, row.add(2 * k).cast())) }
    }
}

impl Plain for Bf16 {
    const BYTES: usize = 2;
    #[inline(always)]
    unsafe fn load(row: *const u8, k: usize) -> __m512 {
        // SAFETY: the caller's contract.
        unsafe {
            let h = _mm256_loadu_si256(row.add(2 * k).cast());
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
        }
    }
    #[inline(always)]
    unsafe fn load_masked(row: *const u8, k: usize, mask: __mmask16) -> __m512 {
        // SAFETY: the caller's contract (masked lanes are not read).
        unsafe {
            let h = _mm256_maskz_loadu_epi16(mask, row.add(2 * k).cast());
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
        }
    }
}

/// Rows per group in the plain kernel.
const PLAIN_ROWS: usize = 4;

/// # Safety
/// The contract of [`matmul`]; tokens `t0..t0+T` exist.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn plain<P: Plain, const T: usize>(
    w: &DenseMatrix<'_>,
    x: &[f32],
    out: &OutRows<'_>,
    rows: Range<usize>,
    t0: usize,
) {
    let mut r = rows.start;
    while r < rows.end {
        // SAFETY: forwarded contract.
        unsafe {
            if T == 1 {
                // One token: row after row is one sequential stream.
                plain_row::<P>(w, x, out, r, t0);
                r += 1;
            } else if rows.end - r >= PLAIN_ROWS {
                plain_group::<P, PLAIN_ROWS, T>(w, x, out, r, t0);
                r += PLAIN_ROWS;
            } else {
                plain_group::<P, 1, T>(w, x, out, r, t0);
                r += 1;
            }
        }
    }
}

/// One row, one token, four partial sums (short FMA chains).
///
/// # Safety
/// The contract of [`matmul`]; row `r` and token `t` exist and are this
/// thread's.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn plain_row<P: Plain>(
    w: &DenseMatrix<'_>,
    x: &[f32],
    out: &OutRows<'_>,
    r: usize,
    t: usize,
) {
    let cols = w.cols();
    let row = w.row(r).as_ptr();
    let xs = &x[t * cols..(t + 1) * cols];
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut k = 0;
    while k + 64 <= cols {
        // The next rows follow this one: ask for the stream ahead, one
        // prefetch per cache line.
        for line in 0..(64 * P::BYTES).div_ceil(64) {
            crate::ternary::prefetch(
                row.wrapping_add(P::BYTES * k + 64 * line + super::HEAD_PREFETCH),
            );
        }
        for j in 0..4 {
            // SAFETY: values k..k+64 exist in the row and the token.
            unsafe {
                let wv = P::load(row, k + 16 * j);
                acc[j] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(xs.as_ptr().add(k + 16 * j)), acc[j]);
            }
        }
        k += 64;
    }
    while k < cols {
        let n = (cols - k).min(16);
        let mask: __mmask16 = if n == 16 { 0xFFFF } else { (1u16 << n) - 1 };
        // SAFETY: only the lanes below `cols` are read.
        unsafe {
            let wv = P::load_masked(row, k, mask);
            acc[0] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(mask, xs.as_ptr().add(k)), acc[0]);
        }
        k += 16;
    }
    let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    out.write(t, r, _mm512_reduce_add_ps(s));
}

/// # Safety
/// The contract of [`matmul`]; rows `r0..r0+R` and tokens `t0..t0+T` exist and are this thread's.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn plain_group<P: Plain, const R: usize, const T: usize>(
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
    let mut acc = [[_mm512_setzero_ps(); T]; R];
    let mut k = 0;
    while k + 16 <= cols {
        // SAFETY: values k..k+16 exist in every row and token.
        unsafe {
            let wv: [__m512; R] = std::array::from_fn(|i| P::load(rp[i], k));
            for t in 0..T {
                let xv = _mm512_loadu_ps(xp[t].add(k));
                for i in 0..R {
                    acc[i][t] = _mm512_fmadd_ps(wv[i], xv, acc[i][t]);
                }
            }
        }
        k += 16;
    }
    if k < cols {
        let mask: __mmask16 = (1u16 << (cols - k)) - 1;
        // SAFETY: only the lanes below `cols` are read.
        unsafe {
            let wv: [__m512; R] = std::array::from_fn(|i| P::load_masked(rp[i], k, mask));
            for t in 0..T {
                let xv = _mm512_maskz_loadu_ps(mask, xp[t].add(k));
                for i in 0..R {
                    acc[i][t] = _mm512_fmadd_ps(wv[i], xv, acc[i][t]);
                }
            }
        }
    }
    for (i, acc) in acc.iter().enumerate() {
        for (t, &a) in acc.iter().enumerate() {
            out.write(t0 + t, r0 + i, _mm512_reduce_add_ps(a));
        }
    }
}

/// Q8_0: four rows per group, each 32-value block converted to two vectors
/// and scaled once for all tokens.
///
/// # Safety
/// As for `plain`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn q8_0_rows<const T: usize>(
    w: &DenseMatrix<'_>,
    x: &[f32],
    out: &OutRows<'_>,
    rows: Range<usize>,
    t0: usize,
) {
    let mut r = rows.start;
    while r < rows.end {
        // SAFETY: forwarded contract.
        unsafe {
            if T == 1 && rows.end - r >= 8 {
                q8_0_group::<8, T>(w, x, out, r, t0);
                r += 8;
            } else if rows.end - r >= 4 {
                q8_0_group::<4, T>(w, x, out, r, t0);
                r += 4;
            } else {
                q8_0_group::<1, T>(w, x, out, r, t0);
                r += 1;
            }
        }
    }
}

/// # Safety
/// As for `plain_group`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
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
    let mut acc = [[_mm512_setzero_ps(); T]; R];
    for b in 0..cols / q8_0::BLOCK_ELEMS {
        // SAFETY: block `b` (34 bytes) exists in every row; values
        // 32b..32b+32 exist in every token.
        unsafe {
            let mut wv = [[_mm512_setzero_ps(); 2]; R];
            for i in 0..R {
                let blk = rp[i].add(b * q8_0::BLOCK_BYTES);
                let d = _mm512_set1_ps(f16_at(blk));
                let lo =
                    _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(blk.add(2).cast())));
                let hi =
                    _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(blk.add(18).cast())));
                wv[i] = [_mm512_mul_ps(lo, d), _mm512_mul_ps(hi, d)];
            }
            for t in 0..T {
                let x0 = _mm512_loadu_ps(xp[t].add(32 * b));
                let x1 = _mm512_loadu_ps(xp[t].add(32 * b + 16));
                for i in 0..R {
                    acc[i][t] = _mm512_fmadd_ps(wv[i][0], x0, acc[i][t]);
                    acc[i][t] = _mm512_fmadd_ps(wv[i][1], x1, acc[i][t]);
                }
            }
        }
    }
    for (i, acc) in acc.iter().enumerate() {
        for (t, &a) in acc.iter().enumerate() {
            out.write(t0 + t, r0 + i, _mm512_reduce_add_ps(a));
        }
    }
}

/// Q6_K: one row at a time, four partial sums per token (one per 16-value
/// group modulo 4) to keep the FMA chains short.
///
/// # Safety
/// As for `plain`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn q6_k_rows<const T: usize>(
    w: &DenseMatrix<'_>,
    x: &[f32],
    out: &OutRows<'_>,
    rows: Range<usize>,
    t0: usize,
) {
    let cols = w.cols();
    let xp: [*const f32; T] =
        std::array::from_fn(|t| x[(t0 + t) * cols..(t0 + t + 1) * cols].as_ptr());
    for r in rows {
        let row = w.row(r).as_ptr();
        let mut acc = [[_mm512_setzero_ps(); 4]; T];
        for b in 0..cols / q6_k::BLOCK_ELEMS {
            // SAFETY: block `b` exists in the row; values 256b..256b+256
            // exist in every token.
            unsafe {
                let blk = row.add(b * q6_k::BLOCK_BYTES);
                // The 16 group scales d·sc_g at once, then one broadcast
                // load per group.
                let d = _mm512_set1_ps(f16_at(blk.add(208)));
                let sc16 =
                    _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(blk.add(192).cast())));
                let mut scales = [0f32; 16];
                _mm512_storeu_ps(scales.as_mut_ptr(), _mm512_mul_ps(sc16, d));
                for h in 0..2 {
                    let v = q6_k_half(blk, h);
                    for (j, &vj) in v.iter().enumerate() {
                        for part in 0..2 {
                            let g = 8 * h + 2 * j + part;
                            let sc = _mm512_set1_ps(scales[g]);
                            let bytes = if part == 0 {
                                _mm256_castsi256_si128(vj)
                            } else {
                                _mm256_extracti128_si256::<1>(vj)
                            };
                            let wv =
                                _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes)), sc);
                            for t in 0..T {
                                let xv = _mm512_loadu_ps(xp[t].add(256 * b + 16 * g));
                                acc[t][g % 4] = _mm512_fmadd_ps(wv, xv, acc[t][g % 4]);
                            }
                        }
                    }
                }
            }
        }
        for (t, a) in acc.iter().enumerate() {
            let s = _mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3]));
            out.write(t0 + t, r, _mm512_reduce_add_ps(s));
        }
    }
}

/// Int8 head product ([`super::q8x`]): outputs of row groups `groups` for
/// every token, bit-identical to the scalar reference.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI and F16C; `out` is
/// `n_tokens × rows` and this thread owns the rows of `groups`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn q8x_matmul(w: &Q8Matrix, x: &Q8Acts, out: &OutRows<'_>, groups: Range<usize>) {
    let n = x.n_tokens();
    // As in `matmul`: all token blocks over a few row groups at a time.
    for groups in super::row_chunks(groups, super::HEAD_ROW_CHUNK / q8x::ROWS) {
        let mut t0 = 0;
        while t0 < n {
            let nt = TOKENS.min(n - t0);
            // SAFETY: forwarded contract; tokens t0..t0+nt exist.
            unsafe {
                match nt {
                    1 => q8x_tokens::<1>(w, x, out, groups.clone(), t0),
                    2 => q8x_tokens::<2>(w, x, out, groups.clone(), t0),
                    3 => q8x_tokens::<3>(w, x, out, groups.clone(), t0),
                    _ => q8x_tokens::<4>(w, x, out, groups.clone(), t0),
                }
            }
            t0 += nt;
        }
    }
}

/// # Safety
/// The contract of [`q8x_matmul`]; tokens `t0..t0+T` exist.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q8x_tokens<const T: usize>(
    w: &Q8Matrix,
    x: &Q8Acts,
    out: &OutRows<'_>,
    groups: Range<usize>,
    t0: usize,
) {
    let mut q = [std::ptr::null::<i8>(); T];
    let mut dx: [&[f32]; T] = [&[]; T];
    let mut sx: [&[i32]; T] = [&[]; T];
    for t in 0..T {
        q[t] = x.row(t0 + t).as_ptr();
        dx[t] = x.scales(t0 + t);
        sx[t] = x.sums(t0 + t);
    }
    let blocks = w.blocks();
    for g in groups {
        // Constant-index loops only, so that the accumulators live in
        // registers.
        let mut acc = [_mm512_setzero_ps(); T];
        let codes = w.codes(g, 0).as_ptr();
        let scales = w.scales(g, 0).as_ptr();
        for b in 0..blocks {
            let mut isum = [[_mm512_setzero_si512(); 2]; T];
            for s in 0..8 {
                // SAFETY: step `s` of block `b` of the group: 64 aligned
                // bytes (the group's blocks are contiguous).
                let wv = unsafe {
                    _mm512_load_si512(codes.add(q8x::GROUP_BLOCK_BYTES * b + 64 * s).cast())
                };
                for t in 0..T {
                    // SAFETY: columns 32b + 4s .. +4 exist in the token row.
                    let a = _mm512_set1_epi32(unsafe {
                        q[t].add(q8x::BLOCK * b + 4 * s)
                            .cast::<i32>()
                            .read_unaligned()
                    });
                    isum[t][s % 2] = _mm512_dpbusd_epi32(isum[t][s % 2], wv, a);
                }
            }
            // SAFETY: the 16 f16 scales of block `b` (contiguous per group).
            let dw =
                _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(scales.add(q8x::ROWS * b).cast()) });
            for t in 0..T {
                let i = _mm512_sub_epi32(
                    _mm512_add_epi32(isum[t][0], isum[t][1]),
                    _mm512_set1_epi32(128 * sx[t][b]),
                );
                let s = _mm512_mul_ps(dw, _mm512_set1_ps(dx[t][b]));
                acc[t] = _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(i), acc[t]);
            }
        }
        let r0 = g * q8x::ROWS;
        let valid = (w.rows() - r0).min(q8x::ROWS);
        let mask: __mmask16 = if valid == 16 {
            0xFFFF
        } else {
            (1u16 << valid) - 1
        };
        for t in 0..T {
            // SAFETY: rows r0..r0+valid of token t0+t are ours.
            unsafe { _mm512_mask_storeu_ps(out.ptr(t0 + t, r0), mask, acc[t]) };
        }
    }
}
