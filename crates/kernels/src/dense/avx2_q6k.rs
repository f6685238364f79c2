//! AVX2 integer Q6_K head ([`super::q8k`]), bit-identical to its scalar
//! reference.
//!
//! Per row and block: the 256 codes `q ∈ [0, 63]` come out of the `ql`/`qh`
//! bits as eight vectors of 32 bytes (the shifts and masks of the f32
//! path's decoder, without the `− 32`); `vpmaddubsw` against the token's 32
//! activation bytes gives pairs within ±2·63·127; `vpmaddwd` against the two
//! group scales of those 32 values (broadcast per 128-bit lane by one
//! `vpshufb`) sums them into eight `i32` lanes. The `− 32` of every code is
//! applied once per block as `32·Σ_g sc_g·bsum_g` (one more `vpmaddwd`).
//! Eight rows' lane vectors are then reduced together (`vphaddd` tree) into
//! one vector of eight exact block sums, so the float part, `acc =
//! (d_w·d_x)·isum + acc`, is one vector FMA per block for eight rows, in
//! the reference's order.

// Register-blocked loops index their arrays with constant ranges on purpose:
// after full unrolling every index is a constant and the arrays live in
// registers.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::ops::Range;

use super::q8k::{BLOCK, GROUP, Q8KActs};
use super::{DenseMatrix, q6_k};
use crate::out::OutRows;

/// How far ahead of the block it decodes the kernel asks for each of its
/// [`ROWS`] rows (eight streams at once, so less far than the single
/// stream of [`super::HEAD_PREFETCH`]). The 2B-4T head from DRAM on one
/// core of a Sapphire Rapids VM went from 8.2 GB/s without to 9.5 (1 KB
/// ahead into L1), 11.1 (2 KB) and 10.0 (4 KB); into L2, 2 KB ahead decoded
/// 2B-4T (2 threads) at 27.7 tok/s against 25.9 for 8 KB.
const Q6K_PREFETCH: usize = 2048;
/// Rows reduced together.
const ROWS: usize = 8;
/// Tokens per pass over a row group.
const TOKENS: usize = 2;
/// Row groups read side by side for one token, each the next part of its
/// own memory stream. A Zen 2 core (`examples/head_probe.rs q6_k`, 2B-4T
/// head from DRAM) read 11.8–12.7 GB/s one group at a time, 16.9–17.8 with
/// two groups from the two halves of a thread's rows, 18.1–18.3 with four
/// from the quarters; two cores 23.3–23.9, 32.0–35.0 and 35.8–36.2. (Rows
/// `i` and `i + 4` of one group side by side were slower: 10.4 GB/s on one
/// core.) Independent rows give the core more work in flight as well as
/// more memory streams. On a Zen 5 (2 cores; both SIMD levels run this
/// kernel) the quarters read 22–29 GB/s on one core but 23–25 on two, four
/// streams a thread megabytes apart; four neighbouring groups, a stream's
/// next group `STREAMS` groups on (its last row's prefetches go there),
/// read 28–31 and 36–60 (single groups 24–28 and 36–46), alternating runs.
/// So AMD family 17h (Zen to Zen 2) reads the quarters
/// ([`super::far_streams`]) and other CPUs the neighbours, which no
/// AVX2-only CPU has measured yet.
const STREAMS: usize = 4;
/// Blocks of a row decoded before the rows' sums are reduced (4096
/// columns: a whole row of every model here).
const CHUNK_BLOCKS: usize = 16;

/// # Safety
/// The CPU must support AVX2/FMA/F16C; `w` is Q6_K with the columns of `x`;
/// `out` is `n_tokens × w.rows()` and this thread owns `rows`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn matmul<const FAR: bool>(
    w: &DenseMatrix<'_>,
    x: &Q8KActs,
    out: &OutRows<'_>,
    rows: Range<usize>,
) {
    let n = x.n_tokens();
    let mut rows = rows;
    if n == 1 {
        // One token: STREAMS groups side by side, from the quarters of the
        // range (`FAR`) or neighbouring, each the next part of its own
        // stream (see `STREAMS`); the groups and rows left over go below.
        let sets = rows.len() / (ROWS * STREAMS);
        let jump = if FAR {
            0
        } else {
            (STREAMS - 1) * ROWS * w.row(0).len()
        };
        for s in 0..sets {
            let r0s = std::array::from_fn(|k| {
                rows.start + ROWS * if FAR { k * sets + s } else { STREAMS * s + k }
            });
            // SAFETY: forwarded contract; every group lies in `rows`.
            unsafe { group::<1, STREAMS>(w, x, out, r0s, 0, jump) };
        }
        rows.start += ROWS * STREAMS * sets;
    }
    // As the f32 head: all token blocks over one chunk of rows at a time.
    for rows in super::row_chunks(rows, super::HEAD_ROW_CHUNK) {
        let mut t0 = 0;
        while t0 < n {
            let nt = TOKENS.min(n - t0);
            let mut r = rows.start;
            while r < rows.end {
                // SAFETY: forwarded contract; tokens t0..t0+nt and the rows
                // exist.
                unsafe {
                    match (nt, rows.end - r >= ROWS) {
                        (1, true) => group::<1, 1>(w, x, out, [r], t0, 0),
                        (_, true) => group::<2, 1>(w, x, out, [r], t0, 0),
                        (1, false) => single::<1>(w, x, out, r, t0),
                        (_, false) => single::<2>(w, x, out, r, t0),
                    }
                }
                r += if rows.end - r >= ROWS { ROWS } else { 1 };
            }
            t0 += nt;
        }
    }
}

/// Byte indices for `vpshufb` that broadcast, from eight `i16` scales
/// repeated in both 128-bit lanes, scale `2k` to the low lane and `2k + 1`
/// to the high lane.
const fn scale_shuffle(k: usize) -> [i8; 32] {
    let mut m = [0i8; 32];
    let mut i = 0;
    while i < 32 {
        let element = 2 * k + i / 16;
        m[i] = (2 * element + i % 2) as i8;
        i += 1;
    }
    m
}

const SHUFFLES: [[i8; 32]; 4] = [
    scale_shuffle(0),
    scale_shuffle(1),
    scale_shuffle(2),
    scale_shuffle(3),
];

/// The codes `q ∈ [0, 63]` of half `h` of a Q6_K block: values
/// `128h + 32j .. 128h + 32j + 32` in vector `j`.
///
/// # Safety
/// `blk` must be readable for a whole block.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn codes(blk: *const u8, h: usize) -> [__m256i; 4] {
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
    [
        _mm256_or_si256(
            _mm256_and_si256(ql0, m4),
            _mm256_and_si256(_mm256_slli_epi16::<4>(qh), m30),
        ),
        _mm256_or_si256(
            _mm256_and_si256(ql1, m4),
            _mm256_and_si256(_mm256_slli_epi16::<2>(qh), m30),
        ),
        _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4),
            _mm256_and_si256(qh, m30),
        ),
        _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4),
            _mm256_and_si256(_mm256_srli_epi16::<2>(qh), m30),
        ),
    ]
}

/// Eight `i32` lanes per token whose sum is the block's exact `isum`.
///
/// # Safety
/// `blk` is a whole Q6_K block; `qx[t]` points at the block's 256
/// activation codes and `bs[t]` at its 16 group sums, for every token.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn block_lanes<const T: usize>(
    blk: *const u8,
    qx: [*const i8; T],
    bs: [*const i16; T],
) -> [__m256i; T] {
    // SAFETY: the caller's contract (scales at 192..208).
    let sc = unsafe { _mm256_cvtepi8_epi16(_mm_loadu_si128(blk.add(192).cast())) };
    let mut acc = [_mm256_setzero_si256(); T];
    let mut offset = [_mm256_setzero_si256(); T];
    for t in 0..T {
        // SAFETY: 16 group sums (caller).
        let b = unsafe { _mm256_loadu_si256(bs[t].cast()) };
        offset[t] = _mm256_slli_epi32::<5>(_mm256_madd_epi16(sc, b));
    }
    for h in 0..2 {
        let halves = if h == 0 {
            _mm256_permute2x128_si256::<0x00>(sc, sc)
        } else {
            _mm256_permute2x128_si256::<0x11>(sc, sc)
        };
        // SAFETY: the caller's contract.
        let v = unsafe { codes(blk, h) };
        for k in 0..4 {
            // SAFETY: a 32-byte constant.
            let shuffle = unsafe { _mm256_loadu_si256(SHUFFLES[k].as_ptr().cast()) };
            let s = _mm256_shuffle_epi8(halves, shuffle);
            for t in 0..T {
                // SAFETY: values 128h + 32k .. +32 of the block (caller).
                let a = unsafe { _mm256_loadu_si256(qx[t].add(128 * h + 32 * k).cast()) };
                let p = _mm256_maddubs_epi16(v[k], a);
                acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(p, s));
            }
        }
    }
    for t in 0..T {
        acc[t] = _mm256_sub_epi32(acc[t], offset[t]);
    }
    acc
}

/// Horizontal sum of eight `i32` lanes.
#[target_feature(enable = "avx2")]
#[inline]
fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// `G` groups of eight rows, `r0s[g]..r0s[g]+8`, tokens `t0..t0+T`. Each
/// row's blocks are read in memory order (a column chunk of one row, then
/// the next row; with several groups, block `j` of row `i` of each group in
/// turn), their lane vectors parked in a small buffer, and then reduced
/// across the rows block by block: reading block `b` of eight rows in turn
/// (eight short strided streams) ran at 13 GB/s from DRAM on one core of a
/// Sapphire Rapids VM, this at the f32 path's memory speed.
///
/// # Safety
/// The contract of [`matmul`]; the rows and tokens exist and are this
/// thread's.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn group<const T: usize, const G: usize>(
    w: &DenseMatrix<'_>,
    x: &Q8KActs,
    out: &OutRows<'_>,
    r0s: [usize; G],
    t0: usize,
    jump: usize,
) {
    let rows: [[*const u8; ROWS]; G] =
        std::array::from_fn(|g| std::array::from_fn(|i| w.row(r0s[g] + i).as_ptr()));
    // Each row asks for the bytes `Q6K_PREFETCH` on; where those lie past
    // the group's last row, they are asked for in the stream's next group,
    // `jump` bytes further on.
    let row_bytes = w.row(0).len();
    let n_blocks = w.cols() / BLOCK;
    let mut acc = [[_mm256_setzero_ps(); T]; G];
    let mut lanes = [[[[_mm256_setzero_si256(); T]; ROWS]; CHUNK_BLOCKS]; G];
    let mut d = [[[0u16; ROWS]; CHUNK_BLOCKS]; G];
    let mut b0 = 0;
    while b0 < n_blocks {
        let nb = CHUNK_BLOCKS.min(n_blocks - b0);
        let mut one = |g: usize, i: usize, j: usize, ahead: usize| {
            let b = b0 + j;
            let qx: [*const i8; T] = std::array::from_fn(|t| x.row(t0 + t)[BLOCK * b..].as_ptr());
            let bs: [*const i16; T] =
                std::array::from_fn(|t| x.bsums(t0 + t)[BLOCK / GROUP * b..].as_ptr());
            // SAFETY: block `b` of row r0 + i exists; `qx`/`bs` cover
            // the block for every token.
            unsafe {
                let blk = rows[g][i].add(b * q6_k::BLOCK_BYTES);
                for k in 0..4 {
                    crate::ternary::prefetch(blk.wrapping_add(ahead + 64 * k));
                }
                lanes[g][j][i] = block_lanes::<T>(blk, qx, bs);
                d[g][j][i] = blk.add(q6_k::D).cast::<u16>().read_unaligned();
            }
        };
        for i in 0..ROWS {
            for j in 0..nb {
                let at = i * row_bytes + (b0 + j) * q6_k::BLOCK_BYTES + Q6K_PREFETCH;
                let ahead = Q6K_PREFETCH + if at >= ROWS * row_bytes { jump } else { 0 };
                for g in 0..G {
                    one(g, i, j, ahead);
                }
            }
        }
        for g in 0..G {
            for j in 0..nb {
                // SAFETY: eight f16 values.
                let dw = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(d[g][j].as_ptr().cast()) });
                for t in 0..T {
                    let l = |i: usize| lanes[g][j][i][t];
                    let q0 = _mm256_hadd_epi32(
                        _mm256_hadd_epi32(l(0), l(1)),
                        _mm256_hadd_epi32(l(2), l(3)),
                    );
                    let q1 = _mm256_hadd_epi32(
                        _mm256_hadd_epi32(l(4), l(5)),
                        _mm256_hadd_epi32(l(6), l(7)),
                    );
                    let isum = _mm256_add_epi32(
                        _mm256_permute2x128_si256::<0x20>(q0, q1),
                        _mm256_permute2x128_si256::<0x31>(q0, q1),
                    );
                    let scale = _mm256_mul_ps(dw, _mm256_set1_ps(x.scales(t0 + t)[b0 + j]));
                    acc[g][t] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(isum), acc[g][t]);
                }
            }
        }
        b0 += nb;
    }
    for g in 0..G {
        for t in 0..T {
            // SAFETY: rows r0..r0+8 of token t0 + t are this thread's.
            unsafe { _mm256_storeu_ps(out.ptr(t0 + t, r0s[g]), acc[g][t]) };
        }
    }
}

/// One row `r`, tokens `t0..t0+T` (the rows after the last group of 8).
///
/// # Safety
/// The contract of [`matmul`]; the row and tokens exist.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn single<const T: usize>(
    w: &DenseMatrix<'_>,
    x: &Q8KActs,
    out: &OutRows<'_>,
    r: usize,
    t0: usize,
) {
    let row = w.row(r);
    let mut acc = [0f32; T];
    for (b, block) in row.chunks_exact(q6_k::BLOCK_BYTES).enumerate() {
        let qx: [*const i8; T] = std::array::from_fn(|t| x.row(t0 + t)[BLOCK * b..].as_ptr());
        let bs: [*const i16; T] =
            std::array::from_fn(|t| x.bsums(t0 + t)[BLOCK / GROUP * b..].as_ptr());
        // SAFETY: a whole block; `qx`/`bs` cover it for every token.
        let lanes = unsafe { block_lanes::<T>(block.as_ptr(), qx, bs) };
        let dw = super::q8k::block_d(block);
        for t in 0..T {
            acc[t] = (dw * x.scales(t0 + t)[b]).mul_add(hsum_i32(lanes[t]) as f32, acc[t]);
        }
    }
    for t in 0..T {
        out.write(t0 + t, r, acc[t]);
    }
}
