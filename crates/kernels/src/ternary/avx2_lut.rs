//! The lookup-table GEMM for AVX2 CPUs whose vector multiplier is a single
//! pipe (AMD Zen 1 and Zen 2): prompt processing with `vpshufb` table
//! lookups instead of `vpmaddubsw` multiplies. The `avx2lut` level; every
//! other product (the decoding GEMV, the heads, the row operations) is the
//! AVX2 level's.
//!
//! # Why
//!
//! The AVX2 GEMM micro-kernel spends one `vpmaddubsw` and one `vpaddw` per
//! 32 multiply-accumulates. Where two vector ports multiply (Intel since
//! Skylake, Zen 3) that is port-bound on all three or four vector ports
//! alike; on Zen 2 only one port multiplies, so the kernel waits on it while
//! the two shuffle ports and the other adders idle. Here a ternary pair
//! `(t₀, t₁)` of a row indexes a per-token table of the nine values
//! `t₀·a₀ + t₁·a₁`, so the product of 16 rows with two columns is one
//! `vpshufb` (shuffle ports) and one `vpaddw`: the same count of operations,
//! none of them a multiply. `llvm-mca` (LLVM 14) for one step of the 16-row
//! × 12-token tile, 384 multiply-accumulates, cycles per step: Zen 2 12.0
//! (multiply) against 9.0 (lookup; its model dispatches four instructions
//! per cycle, the core up to six, which would make it 6); Zen 3, Ice Lake
//! server and Sapphire Rapids 6 for both; Skylake and Alder Lake 6 against
//! 12 (one shuffle port), which is why this is a level of its own.
//!
//! # Exact tables of 16-bit values
//!
//! A pair sum needs nine bits, so a table entry is an `i16`, and a 16-byte
//! `vpshufb` table holds eight of them: `a₀, −a₀, a₁, −a₁, a₀+a₁, −(a₀+a₁),
//! a₀−a₁, a₁−a₀`, the eight non-zero pairs. The ninth, `(0, 0)`, needs no
//! entry: its index bytes are `0x80, 0x81`, and `vpshufb` writes zero for an
//! index byte with its top bit set. Every other pair indexes entry `k` with
//! the bytes `2k, 2k+1`, so one lookup yields the whole `i16` in each lane.
//! Both 128-bit lanes of a table register hold consecutive tokens, and the
//! index vector holds the same eight rows in both lanes: one `vpshufb`
//! gives 8 rows × 2 tokens.
//!
//! Sums stay in `i16` for at most [`MAX_CHUNK_PAIRS`] pairs
//! (120 · 2 · 128 < 2^15) and are then widened into the `i32` sums of the
//! AVX2 GEMM's chunk protocol (`avx2::tile_start` / `tile_end`), which
//! also applies the scales: the outputs are the AVX2 level's, bit for bit.
//!
//! # Loop order
//!
//! The tables (16 bytes per pair per token: 2.6 MB for 128 tokens of 2560
//! columns) are built once per quantised activation, in parallel, and
//! shared by every product that reads it (fused Q/K/V, gate/up). A thread
//! takes up to [`GROUP_BLOCKS`] row blocks of its claim at a time; for
//! each column chunk it decodes their panels of pair indices (the AVX2
//! code panel, turned into indices), then for each tile of
//! [`TILE_TOKENS`] tokens runs the micro-kernel over every block of the
//! group, so the tile's tables (24 KB) are read from L2 once and from L1
//! by the other blocks.

// Register-blocked loops index their accumulator arrays with constant
// ranges on purpose: after full unrolling every index is a constant and the
// arrays live in registers.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::ops::Range;

use bitnet_threads::ThreadPool;

use super::avx2::{self, Chunk};
use super::{TernaryMatrix, with_panel};
use crate::act::QuantizedActs;
use crate::aligned::AlignedBytes;
use crate::out::OutRows;

/// Bytes of one pair's table: eight `i16` entries.
const TABLE_BYTES: usize = 16;
/// Tokens per micro-kernel tile: six token pairs, twelve `i16`
/// accumulators (two 8-row halves each).
const TILE_TOKENS: usize = 12;
/// Row blocks that share one pass over a chunk's tables.
const GROUP_BLOCKS: usize = 8;
/// Column pairs per chunk: at most 2 · 128 per pair and lane, so 120 pairs
/// stay below 2^15 in `i16` (activations may reach −128).
const MAX_CHUNK_PAIRS: usize = 120;

/// Token slots per pair in the tables: the token count rounded up to even
/// (a padding token's table is zero).
fn table_tokens(n_tokens: usize) -> usize {
    n_tokens.next_multiple_of(2)
}

/// A raw pointer the table builders share; each writes other tokens.
#[derive(Clone, Copy)]
struct TablesPtr(*mut u8);
// SAFETY: the threads that receive it write disjoint token slots (see
// `build_tables`), and the buffer outlives the pool job.
unsafe impl Send for TablesPtr {}
// SAFETY: as above.
unsafe impl Sync for TablesPtr {}

/// Builds the pair tables of every token of `x` into `buf` (grown if
/// needed), the tokens split across `pool`: pair `p`, token `t` at byte
/// `(p · table_tokens(n) + t) · 16`.
///
/// # Safety
/// The CPU must support AVX2.
pub(crate) unsafe fn build_all(pool: &ThreadPool, x: &QuantizedActs, buf: &mut AlignedBytes) {
    let n = x.n_tokens();
    let pairs = x.stride() / 2;
    let tp = table_tokens(n);
    let len = pairs * tp * TABLE_BYTES;
    if buf.len() < len {
        *buf = AlignedBytes::zeroed(len.next_power_of_two());
    }
    let dst = TablesPtr(buf.as_mut_slice().as_mut_ptr());
    if tp > n {
        for p in 0..pairs {
            // SAFETY: slot (p, n) lies inside the `len` bytes.
            unsafe {
                dst.0
                    .add((p * tp + n) * TABLE_BYTES)
                    .write_bytes(0, TABLE_BYTES)
            };
        }
    }
    let chunk = n.div_ceil(4 * pool.n_threads()).max(1);
    pool.for_each_chunk(n, chunk, |_, tokens| {
        // SAFETY: the CPU has AVX2 (caller); each chunk of tokens is
        // claimed by one thread, so the slots written are disjoint.
        unsafe { build_tables(x, dst, tokens) }
    });
}

/// The tables of `tokens` (see [`build_all`]), four pairs at a time from
/// eight activation bytes.
///
/// # Safety
/// AVX2; `dst` holds the tables of `x`'s shape; no other thread writes
/// these tokens' slots.
#[target_feature(enable = "avx2,fma")]
unsafe fn build_tables(x: &QuantizedActs, dst: TablesPtr, tokens: Range<usize>) {
    let tp = table_tokens(x.n_tokens());
    // The stride is a multiple of 64 bytes, so of 8 columns.
    let groups = x.stride() / 8;
    let zero = _mm_setzero_si128();
    for t in tokens {
        let row = x.row(t).as_ptr();
        for g in 0..groups {
            // SAFETY: 8 bytes of the padded row.
            let v = _mm_cvtepi8_epi16(unsafe { _mm_loadl_epi64(row.add(8 * g).cast()) });
            let neg = _mm_sub_epi16(zero, v);
            // [a₀, −a₀, a₁, −a₁] of pairs 0, 1 and 2, 3.
            let u_lo = _mm_unpacklo_epi16(v, neg);
            let u_hi = _mm_unpackhi_epi16(v, neg);
            let swapped =
                _mm_shufflehi_epi16::<0b10_11_00_01>(_mm_shufflelo_epi16::<0b10_11_00_01>(v));
            let sum = _mm_add_epi16(v, swapped);
            // [a₀−a₁, a₁−a₀] per pair.
            let diff = _mm_sub_epi16(v, swapped);
            let sum_pm = _mm_blend_epi16::<0b1010_1010>(sum, _mm_sub_epi16(zero, sum));
            // [a₀+a₁, −(a₀+a₁), a₀−a₁, a₁−a₀] of pairs 0, 1 and 2, 3.
            let w_lo = _mm_unpacklo_epi32(sum_pm, diff);
            let w_hi = _mm_unpackhi_epi32(sum_pm, diff);
            let tables = [
                _mm_unpacklo_epi64(u_lo, w_lo),
                _mm_unpackhi_epi64(u_lo, w_lo),
                _mm_unpacklo_epi64(u_hi, w_hi),
                _mm_unpackhi_epi64(u_hi, w_hi),
            ];
            for (i, table) in tables.into_iter().enumerate() {
                let p = 4 * g + i;
                // SAFETY: slot (p, t) is inside the tables and this
                // thread's (caller); 16-byte aligned (the buffer is
                // 64-aligned, the slots 16 bytes).
                unsafe { _mm_store_si128(dst.0.add((p * tp + t) * TABLE_BYTES).cast(), table) };
            }
        }
    }
}

/// The kernel entry: the lookup-table GEMM when `x` carries tables
/// (`Kernels::ternary_matmul` builds them only past the GEMV's token
/// count), else the AVX2 level's kernels.
///
/// # Safety
/// The contract of `avx2::matmul`.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn matmul(
    w: &TernaryMatrix,
    x: &QuantizedActs,
    out: &OutRows<'_>,
    blocks: Range<usize>,
) {
    // SAFETY: forwarded contract.
    unsafe {
        match x.pair_tables() {
            Some(tables) => gemm(w, x, out, blocks, tables),
            None => avx2::matmul(w, x, out, blocks),
        }
    }
}

/// Decodes column blocks `cbs` of row block `rb` into pair indices: pair
/// `p` (from the chunk start) at `idx[p·64..]`, the 8 rows of the first
/// half as `i16` index pairs in both 128-bit lanes, then the second half.
/// `codes` is scratch for the AVX2 code panel of the same columns.
///
/// # Safety
/// Both buffers 32-byte aligned; `codes` holds `steps · 64` bytes and
/// `idx` twice that, `steps = steps_per_block · cbs.len()`.
#[target_feature(enable = "avx2,fma")]
unsafe fn decode_indices(
    w: &TernaryMatrix,
    rb: usize,
    cbs: Range<usize>,
    codes: *mut u8,
    idx: *mut u8,
) {
    let steps = w.layout().steps_per_block() * cbs.len();
    // SAFETY: forwarded contract.
    unsafe { avx2::decode_panel_any(w, rb, cbs, codes) };
    // 3·u₀ + u₁ of the codes u = t + 1 of each column pair.
    let weights = _mm256_set1_epi16(0x0103);
    // Pair code → entry byte 2k (0x80: the zero pair).
    let map = _mm256_broadcastsi128_si256(_mm_setr_epi8(
        10, 2, 14, 6, -128, 4, 12, 0, 8, -128, -128, -128, -128, -128, -128, -128,
    ));
    let low_byte = _mm256_set1_epi16(0x00FF);
    let next_byte = _mm256_set1_epi16(0x0100);
    // Per 128-bit lane: the pair-0 lanes of four rows, then the pair-1 ones.
    let gather = _mm256_broadcastsi128_si256(_mm_setr_epi8(
        0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,
    ));
    for s in 0..steps {
        for h in 0..2 {
            // SAFETY: step `s`, half `h` of the code panel.
            let c = unsafe { _mm256_load_si256(codes.add(s * 64 + 32 * h).cast()) };
            let code = _mm256_maddubs_epi16(c, weights);
            let entry = _mm256_and_si256(_mm256_shuffle_epi8(map, code), low_byte);
            let index = _mm256_add_epi16(
                _mm256_add_epi16(entry, _mm256_slli_epi16::<8>(entry)),
                next_byte,
            );
            let by_pair = _mm256_shuffle_epi8(index, gather);
            let first = _mm256_permute4x64_epi64::<0x88>(by_pair);
            let second = _mm256_permute4x64_epi64::<0xDD>(by_pair);
            // SAFETY: pairs 2s and 2s + 1 of the index panel; aligned.
            unsafe {
                _mm256_store_si256(idx.add(2 * s * 64 + 32 * h).cast(), first);
                _mm256_store_si256(idx.add((2 * s + 1) * 64 + 32 * h).cast(), second);
            }
        }
    }
}

/// One row block × `TT` tokens (`TP` = ⌈TT/2⌉ token pairs) over a chunk of
/// pair indices.
///
/// # Safety
/// `idx` holds the chunk's indices of row block `rb`; `tables` are `x`'s;
/// tokens `t0..t0+TT` exist and `t0` is even; the rows are the caller's;
/// `ch.partial` holds a slot per token.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const TT: usize, const TP: usize>(
    w: &TernaryMatrix,
    x: &QuantizedActs,
    out: &OutRows<'_>,
    idx: *const u8,
    tables: *const u8,
    ch: Chunk,
    rb: usize,
    t0: usize,
) {
    let tp = table_tokens(x.n_tokens());
    // SAFETY: the chunk's first pair is 2·s0; token t0 (caller).
    let first_table = unsafe { tables.add((2 * ch.s0 * tp + t0) * TABLE_BYTES) };
    let mut acc = [[_mm256_setzero_si256(); TP]; 2];
    for p in 0..2 * ch.steps {
        // SAFETY: pair `p` of the index panel: 64 aligned bytes.
        let i0 = unsafe { _mm256_load_si256(idx.add(p * 64).cast()) };
        // SAFETY: as above.
        let i1 = unsafe { _mm256_load_si256(idx.add(p * 64 + 32).cast()) };
        // SAFETY: the tables of pair 2·s0 + p, tokens t0.. (32-aligned:
        // t0 and the token slots per pair are even).
        let row = unsafe { first_table.add(p * tp * TABLE_BYTES) };
        for j in 0..TP {
            // SAFETY: tokens t0+2j and t0+2j+1 (a padding slot when TT is
            // odd and this is the last pair: it exists, zero).
            let table = unsafe { _mm256_load_si256(row.add(32 * j).cast()) };
            acc[0][j] = _mm256_add_epi16(acc[0][j], _mm256_shuffle_epi8(table, i0));
            acc[1][j] = _mm256_add_epi16(acc[1][j], _mm256_shuffle_epi8(table, i1));
        }
    }
    // SAFETY: forwarded contract.
    let mut sums = unsafe { avx2::tile_start::<TT>(ch, t0) };
    for h in 0..2 {
        for t in 0..TT {
            let half = if t % 2 == 0 {
                _mm256_castsi256_si128(acc[h][t / 2])
            } else {
                _mm256_extracti128_si256::<1>(acc[h][t / 2])
            };
            sums[h][t] = _mm256_add_epi32(sums[h][t], _mm256_cvtepi16_epi32(half));
            if ch.first {
                // The AVX2 finish subtracts Σ q from Σ code·q; these are
                // already Σ t·q.
                sums[h][t] = _mm256_add_epi32(sums[h][t], _mm256_set1_epi32(x.sums()[t0 + t]));
            }
        }
    }
    // SAFETY: forwarded contract.
    unsafe { avx2::tile_end(w, x, out, ch, rb, t0, &sums) };
}

/// The micro-kernel for `nt` ≤ [`TILE_TOKENS`] tokens.
///
/// # Safety
/// As [`tile`].
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_any(
    w: &TernaryMatrix,
    x: &QuantizedActs,
    out: &OutRows<'_>,
    idx: *const u8,
    tables: *const u8,
    ch: Chunk,
    rb: usize,
    t0: usize,
    nt: usize,
) {
    // SAFETY: forwarded contract.
    unsafe {
        match nt {
            1 => tile::<1, 1>(w, x, out, idx, tables, ch, rb, t0),
            2 => tile::<2, 1>(w, x, out, idx, tables, ch, rb, t0),
            3 => tile::<3, 2>(w, x, out, idx, tables, ch, rb, t0),
            4 => tile::<4, 2>(w, x, out, idx, tables, ch, rb, t0),
            5 => tile::<5, 3>(w, x, out, idx, tables, ch, rb, t0),
            6 => tile::<6, 3>(w, x, out, idx, tables, ch, rb, t0),
            7 => tile::<7, 4>(w, x, out, idx, tables, ch, rb, t0),
            8 => tile::<8, 4>(w, x, out, idx, tables, ch, rb, t0),
            9 => tile::<9, 5>(w, x, out, idx, tables, ch, rb, t0),
            10 => tile::<10, 5>(w, x, out, idx, tables, ch, rb, t0),
            11 => tile::<11, 6>(w, x, out, idx, tables, ch, rb, t0),
            _ => tile::<12, 6>(w, x, out, idx, tables, ch, rb, t0),
        }
    }
}

/// The lookup-table product of row blocks `blocks` (either layout).
///
/// # Safety
/// The contract of [`matmul`]; `tables` were built by [`build_all`] from
/// `x`.
#[target_feature(enable = "avx2,fma")]
unsafe fn gemm(
    w: &TernaryMatrix,
    x: &QuantizedActs,
    out: &OutRows<'_>,
    blocks: Range<usize>,
    tables: &AlignedBytes,
) {
    if blocks.is_empty() {
        return;
    }
    let n = x.n_tokens();
    let col_blocks = w.col_blocks();
    let steps_per_block = w.layout().steps_per_block();
    let max_cb = (MAX_CHUNK_PAIRS / (2 * steps_per_block)).max(1);
    let n_chunks = col_blocks.div_ceil(max_cb);
    let chunk_cb = col_blocks.div_ceil(n_chunks);
    let codes_bytes = steps_per_block * chunk_cb * 64;
    let idx_bytes = 2 * codes_bytes;
    let partial_bytes = if n_chunks > 1 { n * 64 } else { 0 };
    let group = GROUP_BLOCKS.min(blocks.len());
    let tables = tables.as_slice().as_ptr();
    with_panel(codes_bytes + group * (idx_bytes + partial_bytes), |buf| {
        // SAFETY: inside the buffer (codes, then `group` index chunks,
        // then the partial sums); every part is a multiple of 64 bytes, so
        // each stays aligned.
        let idx = unsafe { buf.add(codes_bytes) };
        // SAFETY: as above.
        let partial = unsafe { idx.add(group * idx_bytes) };
        let mut rb0 = blocks.start;
        while rb0 < blocks.end {
            let rbs = rb0..(rb0 + group).min(blocks.end);
            for c in 0..n_chunks {
                let cbs = (c * chunk_cb).min(col_blocks)..((c + 1) * chunk_cb).min(col_blocks);
                for (g, rb) in rbs.clone().enumerate() {
                    // SAFETY: the buffer holds a code chunk and `group`
                    // index chunks; aligned.
                    unsafe { decode_indices(w, rb, cbs.clone(), buf, idx.add(g * idx_bytes)) };
                }
                let chunk = Chunk {
                    s0: steps_per_block * cbs.start,
                    steps: steps_per_block * cbs.len(),
                    first: c == 0,
                    last: c + 1 == n_chunks,
                    partial,
                };
                let mut t0 = 0;
                while t0 < n {
                    let nt = TILE_TOKENS.min(n - t0);
                    for (g, rb) in rbs.clone().enumerate() {
                        let ch = Chunk {
                            // SAFETY: block g's partial slots lie inside
                            // the buffer (a slot per token).
                            partial: unsafe { partial.add(g * partial_bytes) },
                            ..chunk
                        };
                        // SAFETY: the panel holds this chunk of row block
                        // `rb`; tokens t0..t0+nt exist, t0 is a multiple of
                        // 12; the rows of `rb` are this thread's.
                        unsafe {
                            tile_any(w, x, out, idx.add(g * idx_bytes), tables, ch, rb, t0, nt)
                        };
                    }
                    t0 += nt;
                }
            }
            rb0 = rbs.end;
        }
    });
}
