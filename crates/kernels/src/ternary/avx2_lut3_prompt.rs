//! The AVX2 prompt kernel of the lookup layout ([`super::lut3`]): tokens in
//! the lanes, weights as table indices.
//!
//! The per-token kernels of [`super::avx2_lut3`] put rows in the lanes and
//! look up one token's activations with `vpshufb`: a byte per lane, so
//! int8 activations need two lookups (the nibbles) per group of three
//! weights, and per 96 multiply-accumulates about seven vector operations
//! remain. Here the roles turn round. For a block of [`LANES`] tokens the
//! activations are transposed ([`transpose`]: column `k` holds its 32
//! tokens' values as `i16`, 64 bytes), and each group of three columns
//! `(a0, a1, a2)` gets a table of its 27 sums `t0·a0 + t1·a1 + t2·a2` over
//! every ternary triple, per token lane ([`build_tables`]: 27 × 64 bytes).
//! One weight triple of one row is then one table entry: its index, decoded
//! from the 4-bit pattern and the sign bit ([`decode`]), selects 64 bytes
//! that two `vpaddw` with memory operands add to the row's 32 token sums.
//! That is 96 multiply-accumulates per two loads and two adds, with no
//! shuffle, sign or widening in the loop ([`rows`]): the loop is bound by
//! the load ports (two 256-bit loads per cycle on Zen 2 to Zen 5 and on
//! Intel client cores), not by the single multiply port of `vpmaddubsw` nor
//! by the shuffle ports that bound the lookups.
//!
//! The tables of a chunk of [`CHUNK_BLOCKS`] column blocks (16 groups,
//! 27 KB) stay in L1 while every row block of the thread's claim reads them;
//! the row sums of the whole claim therefore live in a per-thread buffer
//! between chunks, as `i16` (eight rows × two registers are the loop's
//! accumulators), widened into `i32` every [`FLUSH_CHUNKS`] chunks. Each
//! row block's bytes for the chunk are decoded into offsets (two `vpshufb`
//! and a blend per 32 triples), the weights of a row block [`AHEAD`] ahead
//! being prefetched (without it the decode waited on L2 misses). The first
//! of several token blocks keeps the offsets by chunk and row block (up to
//! [`KEEP_OFFSETS_MAX`] bytes a thread), and the later ones read them
//! instead of decoding again: the decode was a tenth of the kernel's time
//! for 128 tokens, and keeping it gained 2 % (pp128) to 3 % (pp512) on a
//! Zen 5 at the forced AVX2 level, the kept bytes coming from L2 and L3.
//! Finally [`finish`] applies the scale rule to eight rows × eight tokens
//! at once and transposes them into the token-major output.
//!
//! A block costs the same for 1 or 32 tokens, so short products stay on
//! the per-token kernels (`avx2_lut3::PAD_MIN_TOKENS`). Measured on a Zen 5
//! (EPYC, 2 cores, forced AVX2 level), 2560 × 2560 × 128 tokens, one core:
//! 5.46 ms with the per-token kernels, 3.31 ms here (153 → 253 GMAC/s); on
//! a Zen 4, 125 → 205 GMAC/s. Every sum is exact, so the outputs are the
//! scalar reference's bit for bit.

// Register-blocked loops index their arrays with constant ranges on
// purpose: after full unrolling every index is a constant.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::ops::Range;

use super::avx2_lut3::TABLES;
use super::lut3::{BLOCK_BYTES, GROUPS, PATTERNS, SIGNS};
use super::{TernaryMatrix, prefetch};
use crate::ScaleRule;
use crate::act::QuantizedActs;
use crate::aligned::AlignedBytes;
use crate::ops::transpose8;
use crate::out::OutRows;

/// Tokens per block: the `i16` lanes of two `ymm` registers.
pub(super) const LANES: usize = 32;
/// Bytes of one table entry (or one transposed column): `LANES` × `i16`.
const ENTRY: usize = 2 * LANES;
/// Bytes of one group's table: the 27 ternary triples.
const GROUP_TABLE: usize = 27 * ENTRY;
/// Column blocks whose tables are built at a time: 16 groups, 27 KB, which
/// leaves L1 room for the offsets and the weights. One block (10 flushes
/// apart) ran 13 % slower on a Zen 4: the accumulators went to memory and
/// back twice as often. Three (41 KB) ran 4 % faster in Zen 5's 48 KB L1,
/// but would not fit the 32 KB of Zen 2 to Zen 4.
const CHUNK_BLOCKS: usize = 2;
/// Groups per chunk.
const CHUNK_GROUPS: usize = CHUNK_BLOCKS * GROUPS;
/// Chunks between `i16` → `i32` flushes: an entry is at most 3 × 128 in
/// magnitude, and 5 chunks add 80 of them (30720 ≤ 32767).
const FLUSH_CHUNKS: usize = 5;
/// Rows whose sums the inner loop holds (two `ymm` each, 16 registers).
const ROWS: usize = 8;
/// Row blocks ahead whose chunk bytes are prefetched.
const AHEAD: usize = 4;
/// The most bytes of decoded offsets a thread keeps for the token blocks
/// after the first (a byte per row and group of three columns: 2.9 MB for
/// a thread's half of 2B-4T's largest matrices).
const KEEP_OFFSETS_MAX: usize = 8 << 20;
/// Row blocks ahead whose kept offsets are prefetched.
const KEPT_AHEAD: usize = 16;

/// The table entry of a ternary triple: `9·(t0+1) + 3·(t1+1) + (t2+1)`.
const fn triple_index(t: [i8; 3]) -> u8 {
    (9 * (t[0] + 1) + 3 * (t[1] + 1) + (t[2] + 1)) as u8
}

/// Entry offsets / 8 (so that they fit a byte; the loads scale by 8) of
/// each pattern (`[0]`) and of its negation (`[1]`), for `vpshufb`.
const OFFSETS: [[u8; 16]; 2] = {
    let mut out = [[0u8; 16]; 2];
    let mut p = 0;
    while p < 16 {
        let t = PATTERNS[p];
        out[0][p] = (ENTRY / 8) as u8 * triple_index(t);
        out[1][p] = (ENTRY / 8) as u8 * triple_index([-t[0], -t[1], -t[2]]);
        p += 1;
    }
    out
};

/// The product for tokens `0..end` in blocks of [`LANES`] (the last one
/// possibly partial), row blocks `blocks`.
///
/// # Safety
/// The contract of `avx2::matmul`; `w` is in the lookup layout and
/// `end ≤ x.n_tokens()`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn matmul(
    w: &TernaryMatrix,
    x: &QuantizedActs,
    out: &OutRows<'_>,
    blocks: Range<usize>,
    end: usize,
) {
    // SAFETY: forwarded contract.
    unsafe { product(w, x, out, blocks, end, KEEP_OFFSETS_MAX) }
}

/// [`matmul`], keeping the decoded offsets for the later token blocks
/// when they take at most `keep_max` bytes.
///
/// # Safety
/// As [`matmul`].
#[target_feature(enable = "avx2,fma")]
unsafe fn product(
    w: &TernaryMatrix,
    x: &QuantizedActs,
    out: &OutRows<'_>,
    blocks: Range<usize>,
    end: usize,
    keep_max: usize,
) {
    let nrb = blocks.len();
    let at_bytes = x.stride() * ENTRY;
    let tab_bytes = CHUNK_GROUPS * GROUP_TABLE;
    let n_chunks = w.col_blocks().div_ceil(CHUNK_BLOCKS);
    let kept = nrb * n_chunks * CHUNK_GROUPS * 16;
    let keep = end > LANES && kept <= keep_max;
    let idx_bytes = if keep { kept } else { CHUNK_GROUPS * 16 };
    let acc16_bytes = nrb * 16 * ENTRY;
    let acc32_bytes = 2 * acc16_bytes;
    let need = at_bytes + tab_bytes + idx_bytes + acc16_bytes + acc32_bytes;
    TABLES.with(|buf| {
        let mut buf = buf.borrow_mut();
        if buf.len() < need {
            *buf = AlignedBytes::zeroed(need.next_power_of_two());
        }
        let at = buf.as_mut_slice().as_mut_ptr();
        // SAFETY: the buffer holds `need` bytes, 64-byte aligned, and every
        // part's size is a multiple of 64; the callees' contracts follow
        // from this function's and from the sizes above.
        unsafe {
            let tab = at.add(at_bytes);
            let idx = tab.add(tab_bytes);
            let acc16 = idx.add(idx_bytes);
            let acc32 = acc16.add(acc16_bytes);
            for t0 in (0..end).step_by(LANES) {
                let nt = (end - t0).min(LANES);
                transpose(x, t0, nt, at.cast());
                std::ptr::write_bytes(acc32, 0, acc32_bytes);
                let offsets = match (keep, t0) {
                    (false, _) => Offsets::Each,
                    (true, 0) => Offsets::Keep,
                    (true, _) => Offsets::Kept,
                };
                accumulate(
                    w,
                    at.cast(),
                    tab,
                    idx,
                    offsets,
                    acc16.cast(),
                    acc32.cast(),
                    blocks.clone(),
                );
                finish(w, x, out, blocks.clone(), t0, nt, acc32.cast());
            }
        }
    });
}

/// Writes tokens `t0..t0 + nt` of `x` column-major as `i16` to `at`
/// (`at[k·LANES + j]` = token `t0 + j`, column `k`; zero for `j ≥ nt`), by
/// 16 × 16 byte transposes.
///
/// # Safety
/// AVX2; `at` is 32-byte aligned and holds `x.stride()` columns;
/// `t0 + nt ≤ x.n_tokens()`, `nt ≤ LANES`.
#[target_feature(enable = "avx2,fma")]
unsafe fn transpose(x: &QuantizedActs, t0: usize, nt: usize, at: *mut i16) {
    for half in 0..2 {
        // The stride is a multiple of 64, so rows are read 16 bytes at a
        // time to their end.
        for k in (0..x.stride()).step_by(16) {
            let mut r = [_mm_setzero_si128(); 16];
            for i in 0..16 {
                if 16 * half + i < nt {
                    // SAFETY: `k + 16 ≤ stride`, the row's length.
                    r[i] = unsafe {
                        _mm_loadu_si128(x.row(t0 + 16 * half + i).as_ptr().add(k).cast())
                    };
                }
            }
            // Interleave bytes, words, dwords, qwords: after the four
            // rounds vector `j` holds column `k + j` of the 16 tokens.
            let mut a = [_mm_setzero_si128(); 16];
            for p in 0..8 {
                a[p] = _mm_unpacklo_epi8(r[2 * p], r[2 * p + 1]);
                a[8 + p] = _mm_unpackhi_epi8(r[2 * p], r[2 * p + 1]);
            }
            let mut b = [_mm_setzero_si128(); 16];
            for h in 0..2 {
                for q in 0..4 {
                    let (u, v) = (a[8 * h + 2 * q], a[8 * h + 2 * q + 1]);
                    b[8 * h + q] = _mm_unpacklo_epi16(u, v);
                    b[8 * h + 4 + q] = _mm_unpackhi_epi16(u, v);
                }
            }
            let mut c = [_mm_setzero_si128(); 16];
            for h in 0..4 {
                for o in 0..2 {
                    let (u, v) = (b[4 * h + 2 * o], b[4 * h + 2 * o + 1]);
                    c[4 * h + o] = _mm_unpacklo_epi32(u, v);
                    c[4 * h + 2 + o] = _mm_unpackhi_epi32(u, v);
                }
            }
            for h in 0..8 {
                let (u, v) = (c[2 * h], c[2 * h + 1]);
                for (e, d) in [_mm_unpacklo_epi64(u, v), _mm_unpackhi_epi64(u, v)]
                    .into_iter()
                    .enumerate()
                {
                    // SAFETY: column `k + 2h + e < stride`; the offset is a
                    // multiple of 32 bytes.
                    unsafe {
                        _mm256_store_si256(
                            at.add((k + 2 * h + e) * LANES + 16 * half).cast(),
                            _mm256_cvtepi8_epi16(d),
                        )
                    };
                }
            }
        }
    }
}

/// Builds the tables of groups `g0..g0 + groups` at `tab`: entry `e` of
/// group `g` (at `tab + g·GROUP_TABLE + e·ENTRY`) holds, per token lane,
/// `t0·a0 + t1·a1 + t2·a2` for the triple `e = 9(t0+1) + 3(t1+1) + (t2+1)`
/// and the group's columns `3(g0 + g) ..`.
///
/// # Safety
/// AVX2; `at` as [`transpose`] wrote it, covering the groups' columns;
/// `tab` is 32-byte aligned and holds `groups · GROUP_TABLE` bytes.
#[target_feature(enable = "avx2,fma")]
unsafe fn build_tables(at: *const i16, g0: usize, groups: usize, tab: *mut u8) {
    let z = _mm256_setzero_si256();
    for g in 0..groups {
        for half in 0..2 {
            // SAFETY: the columns and entries are in bounds (contract); all
            // offsets are multiples of 32 bytes.
            unsafe {
                let col = |j: usize| {
                    _mm256_load_si256(at.add((3 * (g0 + g) + j) * LANES + 16 * half).cast())
                };
                let (a0, a1, a2) = (col(0), col(1), col(2));
                let n1 = _mm256_sub_epi16(z, a1);
                // t1·a1 + t2·a2 for (t1, t2) in entry order.
                let low = [
                    _mm256_sub_epi16(n1, a2),
                    n1,
                    _mm256_add_epi16(n1, a2),
                    _mm256_sub_epi16(z, a2),
                    z,
                    a2,
                    _mm256_sub_epi16(a1, a2),
                    a1,
                    _mm256_add_epi16(a1, a2),
                ];
                let base = tab.add(g * GROUP_TABLE + 32 * half);
                for j in 0..9 {
                    let e = |t0: usize| base.add((9 * t0 + j) * ENTRY).cast();
                    _mm256_store_si256(e(0), _mm256_sub_epi16(low[j], a0));
                    _mm256_store_si256(e(1), low[j]);
                    _mm256_store_si256(e(2), _mm256_add_epi16(low[j], a0));
                }
            }
        }
    }
}

/// Decodes `nblocks` lookup blocks at `p` (16 rows each) into entry
/// offsets / 8 at `idx`, laid out `[group][row]`: 16 bytes per group.
///
/// # Safety
/// AVX2; `p` holds `nblocks · BLOCK_BYTES` bytes; `idx` is 16-byte aligned
/// and holds `nblocks · GROUPS · 16` bytes.
#[target_feature(enable = "avx2,fma")]
unsafe fn decode(p: *const u8, nblocks: usize, idx: *mut u8) {
    // SAFETY: `OFFSETS` rows are 16 bytes.
    let (pos, neg) = unsafe {
        (
            _mm256_broadcastsi128_si256(_mm_loadu_si128(OFFSETS[0].as_ptr().cast())),
            _mm256_broadcastsi128_si256(_mm_loadu_si128(OFFSETS[1].as_ptr().cast())),
        )
    };
    let nib = _mm256_set1_epi8(15);
    for b in 0..nblocks {
        // SAFETY: the block's 80 bytes and its 8 groups' offsets are in
        // bounds (contract).
        unsafe {
            let q = p.add(b * BLOCK_BYTES);
            let planes = [
                _mm256_loadu_si256(q.cast()),
                _mm256_loadu_si256(q.add(32).cast()),
            ];
            // Bit 7 of sign byte `r` is the sign of row `r`'s group `k`
            // after `k` doublings (lane 0), of group `k + 4` in lane 1.
            let s = _mm_loadu_si128(q.add(SIGNS).cast());
            let mut m =
                _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(s), _mm_slli_epi16::<4>(s));
            for k in 0..4 {
                let v = planes[k / 2];
                let v = if k % 2 == 1 {
                    _mm256_srli_epi16::<4>(v)
                } else {
                    v
                };
                let n = _mm256_and_si256(v, nib);
                let o =
                    _mm256_blendv_epi8(_mm256_shuffle_epi8(pos, n), _mm256_shuffle_epi8(neg, n), m);
                let g = GROUPS * b + k;
                _mm_store_si128(idx.add(16 * g).cast(), _mm256_castsi256_si128(o));
                _mm_store_si128(
                    idx.add(16 * (g + 4)).cast(),
                    _mm256_extracti128_si256::<1>(o),
                );
                m = _mm256_add_epi8(m, m);
            }
        }
    }
}

/// One token block's sums over all column chunks, for row blocks `blocks`,
/// into `acc32` (`i32`, `[row][token]`, rows numbered from the claim's
/// first; zeroed by the caller). `acc16` parks the `i16` sums between
/// chunks.
///
/// # Safety
/// AVX2; `at` as [`transpose`] wrote it; `tab`, `idx`, `acc16`, `acc32` 32-byte
/// aligned and holding `CHUNK_GROUPS · GROUP_TABLE`, `CHUNK_GROUPS · 16`
/// (with [`Offsets::Each`]; else that per chunk and row block),
/// `16 · blocks.len()` and `32 · blocks.len()` [`ENTRY`]s of bytes;
/// `blocks` are row blocks of `w`; with [`Offsets::Kept`], a pass with
/// [`Offsets::Keep`] over the same `w`, `blocks` and `idx` came before.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn accumulate(
    w: &TernaryMatrix,
    at: *const i16,
    tab: *mut u8,
    idx: *mut u8,
    offsets: Offsets,
    acc16: *mut __m256i,
    acc32: *mut __m256i,
    blocks: Range<usize>,
) {
    let col_blocks = w.col_blocks();
    let stride = col_blocks * BLOCK_BYTES;
    let n_chunks = col_blocks.div_ceil(CHUNK_BLOCKS);
    for ci in 0..n_chunks {
        let cb0 = ci * CHUNK_BLOCKS;
        let nb = (col_blocks - cb0).min(CHUNK_BLOCKS);
        let groups = nb * GROUPS;
        // SAFETY: the chunk's columns are within the stride (padded to
        // whole blocks); the table buffer holds a chunk.
        unsafe { build_tables(at, cb0 * GROUPS, groups, tab) };
        let fresh = ci % FLUSH_CHUNKS == 0;
        let flush = ci % FLUSH_CHUNKS == FLUSH_CHUNKS - 1 || ci + 1 == n_chunks;
        for (i, rb) in blocks.clone().enumerate() {
            let p = w.row_block(rb)[cb0 * BLOCK_BYTES..].as_ptr();
            let idx = match offsets {
                Offsets::Each => idx,
                _ => idx.wrapping_add((ci * blocks.len() + i) * CHUNK_GROUPS * 16),
            };
            if let Offsets::Kept = offsets {
                let ahead = idx.wrapping_add(KEPT_AHEAD * CHUNK_GROUPS * 16);
                for line in 0..CHUNK_GROUPS * 16 / 64 {
                    prefetch(ahead.wrapping_add(64 * line));
                }
            } else {
                let ahead = p.wrapping_add(AHEAD * stride);
                for line in 0..3 {
                    prefetch(ahead.wrapping_add(64 * line));
                }
                prefetch(ahead.wrapping_add(nb * BLOCK_BYTES - 1));
            }
            // SAFETY: the row block holds the chunk's `nb` blocks; its
            // offsets' place is in bounds (contract) and, kept, holds what
            // `decode` wrote there, selecting entries of the chunk's tables;
            // the row sums of block `i` are in bounds of both accumulators.
            unsafe {
                if !matches!(offsets, Offsets::Kept) {
                    decode(p, nb, idx);
                }
                for half in 0..2 {
                    let a16 = acc16.add((i * 16 + ROWS * half) * 2);
                    let a32 = acc32.add((i * 16 + ROWS * half) * 4);
                    rows(tab, idx.add(ROWS * half), groups, a16, a32, fresh, flush);
                }
            }
        }
    }
}

/// Where [`accumulate`] finds the decoded offsets of a row block and chunk.
#[derive(Clone, Copy)]
enum Offsets {
    /// Decoded from the weights into the one place at `idx`.
    Each,
    /// Decoded into a place of their own, by chunk and row block, for the
    /// token blocks after this one.
    Keep,
    /// Read from where the first token block kept them.
    Kept,
}

/// Adds `groups` groups of [`ROWS`] rows: per group the rows' offsets are
/// the 8 bytes at `idx + 16·g`. The sums start from zero (`fresh`) or from
/// `a16`, and end in `a16` or, when `flush`, widened and added into `a32`.
///
/// # Safety
/// AVX2; `groups ≥ 1`; `tab` holds `groups` tables and every offset at
/// `idx` selects one of its group's 27 entries; `a16` (2 per row) and `a32`
/// (4 per row) are 32-byte aligned and hold [`ROWS`] rows.
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
unsafe fn rows(
    tab: *const u8,
    idx: *const u8,
    groups: usize,
    a16: *mut __m256i,
    a32: *mut __m256i,
    fresh: bool,
    flush: bool,
) {
    let mut acc = [[_mm256_setzero_si256(); 2]; ROWS];
    if !fresh {
        for r in 0..ROWS {
            for j in 0..2 {
                // SAFETY: in bounds (contract).
                acc[r][j] = unsafe { _mm256_load_si256(a16.add(2 * r + j)) };
            }
        }
    }
    // The loop in assembly: per group one 8-byte load of the offsets, and
    // per row a byte extract and two `vpaddw` from the table. (Compiled
    // from intrinsics it ran no faster; written out, the count of
    // operations per group cannot drift with the compiler.)
    // SAFETY: per group the 8 offsets at `idx` select entries inside the
    // group's table at `t` (contract); the loop reads only, runs `groups`
    // times and keeps the stack untouched.
    unsafe {
        std::arch::asm!(
            "2:",
            "mov {w}, qword ptr [{idx}]",
            "movzx {e0:e}, {w:l}",
            "vpaddw {a0}, {a0}, ymmword ptr [{t} + {e0}*8]",
            "vpaddw {a1}, {a1}, ymmword ptr [{t} + {e0}*8 + 32]",
            "movzx {e1:e}, {w:h}",
            "vpaddw {a2}, {a2}, ymmword ptr [{t} + {e1}*8]",
            "vpaddw {a3}, {a3}, ymmword ptr [{t} + {e1}*8 + 32]",
            "shr {w}, 16",
            "movzx {e0:e}, {w:l}",
            "vpaddw {a4}, {a4}, ymmword ptr [{t} + {e0}*8]",
            "vpaddw {a5}, {a5}, ymmword ptr [{t} + {e0}*8 + 32]",
            "movzx {e1:e}, {w:h}",
            "vpaddw {a6}, {a6}, ymmword ptr [{t} + {e1}*8]",
            "vpaddw {a7}, {a7}, ymmword ptr [{t} + {e1}*8 + 32]",
            "shr {w}, 16",
            "movzx {e0:e}, {w:l}",
            "vpaddw {a8}, {a8}, ymmword ptr [{t} + {e0}*8]",
            "vpaddw {a9}, {a9}, ymmword ptr [{t} + {e0}*8 + 32]",
            "movzx {e1:e}, {w:h}",
            "vpaddw {a10}, {a10}, ymmword ptr [{t} + {e1}*8]",
            "vpaddw {a11}, {a11}, ymmword ptr [{t} + {e1}*8 + 32]",
            "shr {w}, 16",
            "movzx {e0:e}, {w:l}",
            "vpaddw {a12}, {a12}, ymmword ptr [{t} + {e0}*8]",
            "vpaddw {a13}, {a13}, ymmword ptr [{t} + {e0}*8 + 32]",
            "movzx {e1:e}, {w:h}",
            "vpaddw {a14}, {a14}, ymmword ptr [{t} + {e1}*8]",
            "vpaddw {a15}, {a15}, ymmword ptr [{t} + {e1}*8 + 32]",
            "add {t}, {group_table}",
            "add {idx}, 16",
            "dec {n}",
            "jnz 2b",
            group_table = const GROUP_TABLE,
            w = out(reg_abcd) _,
            e0 = out(reg) _,
            e1 = out(reg_abcd) _,
            t = inout(reg) tab => _,
            idx = inout(reg) idx => _,
            n = inout(reg) groups => _,
            a0 = inout(ymm_reg) acc[0][0],
            a1 = inout(ymm_reg) acc[0][1],
            a2 = inout(ymm_reg) acc[1][0],
            a3 = inout(ymm_reg) acc[1][1],
            a4 = inout(ymm_reg) acc[2][0],
            a5 = inout(ymm_reg) acc[2][1],
            a6 = inout(ymm_reg) acc[3][0],
            a7 = inout(ymm_reg) acc[3][1],
            a8 = inout(ymm_reg) acc[4][0],
            a9 = inout(ymm_reg) acc[4][1],
            a10 = inout(ymm_reg) acc[5][0],
            a11 = inout(ymm_reg) acc[5][1],
            a12 = inout(ymm_reg) acc[6][0],
            a13 = inout(ymm_reg) acc[6][1],
            a14 = inout(ymm_reg) acc[7][0],
            a15 = inout(ymm_reg) acc[7][1],
            options(nostack, readonly),
        );
    }
    for r in 0..ROWS {
        for j in 0..2 {
            let v = acc[r][j];
            // SAFETY: in bounds (contract).
            unsafe {
                if flush {
                    let lo = _mm256_cvtepi16_epi32(_mm256_castsi256_si128(v));
                    let hi = _mm256_cvtepi16_epi32(_mm256_extracti128_si256::<1>(v));
                    let d = a32.add(4 * r + 2 * j);
                    _mm256_store_si256(d, _mm256_add_epi32(_mm256_load_si256(d), lo));
                    _mm256_store_si256(d.add(1), _mm256_add_epi32(_mm256_load_si256(d.add(1)), hi));
                } else {
                    _mm256_store_si256(a16.add(2 * r + j), v);
                }
            }
        }
    }
}

/// Writes tokens `t0..t0 + nt` of row blocks `blocks` from their sums
/// `acc32` ([`accumulate`]'s layout), eight rows × eight tokens at a time:
/// the scale rule with the scalar reference's f32 operations, a transpose,
/// a store per token (masked for a matrix's last rows).
///
/// # Safety
/// AVX2; `acc32` holds the sums of `blocks`; the output's rows cover
/// `blocks` and its tokens `t0..t0 + nt` (the contract of `avx2::matmul`).
#[target_feature(enable = "avx2,fma")]
unsafe fn finish(
    w: &TernaryMatrix,
    x: &QuantizedActs,
    out: &OutRows<'_>,
    blocks: Range<usize>,
    t0: usize,
    nt: usize,
    acc32: *const i32,
) {
    let mut sx = [1f32; LANES];
    sx[..nt].copy_from_slice(&x.scales()[t0..t0 + nt]);
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (i, rb) in blocks.enumerate() {
        for half in 0..2 {
            let row0 = rb * 16 + ROWS * half;
            if row0 >= w.rows() {
                break;
            }
            let valid = (w.rows() - row0).min(ROWS);
            let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(valid as i32), lanes);
            let sc: [__m256; ROWS] = std::array::from_fn(|r| {
                _mm256_set1_ps(if r < valid { w.scales()[row0 + r] } else { 0.0 })
            });
            for t in (0..nt).step_by(8) {
                // SAFETY: `t + 8 ≤ LANES`.
                let s = unsafe { _mm256_loadu_ps(sx.as_ptr().add(t)) };
                let y: [__m256; ROWS] = std::array::from_fn(|r| {
                    // SAFETY: row `16i + 8·half + r` of the claim, tokens
                    // `t..t + 8`: in bounds, 32-byte aligned.
                    let a = unsafe {
                        _mm256_load_si256(acc32.add((i * 16 + ROWS * half + r) * LANES + t).cast())
                    };
                    let f = _mm256_cvtepi32_ps(a);
                    match w.rule() {
                        ScaleRule::Multiply => _mm256_mul_ps(_mm256_div_ps(f, s), sc[r]),
                        ScaleRule::Divide => _mm256_div_ps(f, _mm256_mul_ps(sc[r], s)),
                    }
                });
                let v = transpose8(y);
                for j in 0..8.min(nt - t) {
                    let dst = out.ptr(t0 + t + j, row0);
                    // SAFETY: token `t0 + t + j` and rows `row0 .. row0 +
                    // valid` are the caller's output. (A masked store costs
                    // several µops on many cores: only the last rows take it.)
                    unsafe {
                        if valid == ROWS {
                            _mm256_storeu_ps(dst, v[j]);
                        } else {
                            _mm256_maskstore_ps(dst, mask, v[j]);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avx2() -> bool {
        let ok = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        if !ok {
            eprintln!("skipping: this CPU lacks AVX2");
        }
        ok
    }

    /// The decoded offset of every row and group selects the entry of the
    /// row's weight triple (packed by `lut3`): all 27 triples, each in
    /// several rows and groups.
    #[test]
    fn decode_selects_each_rows_triple() {
        if !avx2() {
            return;
        }
        let (rows, cols) = (16, 2 * super::super::lut3::BLOCK_COLS);
        // Row r, group g holds triple (5r + g) mod 27, digits t0 t1 t2.
        let values: Vec<i8> = (0..rows * cols)
            .map(|i| {
                let (r, c) = (i / cols, i % cols);
                let e = (5 * r + c / 3) % 27;
                [e / 9, e / 3 % 3, e % 3][c % 3] as i8 - 1
            })
            .collect();
        let w = super::super::pack_unit(super::super::TernaryLayout::Lut3, rows, cols, &values);
        let mut idx = AlignedBytes::zeroed(2 * GROUPS * 16);
        // SAFETY: AVX2 is present; the row block holds two blocks and the
        // buffer their offsets, 64-byte aligned.
        unsafe { decode(w.row_block(0).as_ptr(), 2, idx.as_mut_slice().as_mut_ptr()) };
        let idx = idx.as_mut_slice();
        for g in 0..2 * GROUPS {
            for r in 0..rows {
                let t = [0, 1, 2].map(|j| values[r * cols + 3 * g + j]);
                assert_eq!(
                    usize::from(idx[16 * g + r]) * 8,
                    ENTRY * usize::from(triple_index(t)),
                    "row {r} group {g}: {t:?}"
                );
            }
        }
    }

    /// Offsets kept by the first token block give the products of decoding
    /// them afresh for every block, bit for bit, and the scalar kernel's:
    /// three token blocks (the last partial), three row blocks (the last
    /// partial), padded columns.
    #[test]
    fn kept_offsets_give_the_decoded_products() {
        if !avx2() {
            return;
        }
        let (rows, cols, n) = (40, 100, 70);
        let mut s = 7u64;
        let mut next = move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s >> 40
        };
        let values: Vec<i8> = (0..rows * cols).map(|_| (next() % 3) as i8 - 1).collect();
        let w = super::super::pack_unit(super::super::TernaryLayout::Lut3, rows, cols, &values);
        let x: Vec<f32> = (0..n * cols)
            .map(|_| next() as f32 / (1u64 << 24) as f32 - 0.5)
            .collect();
        let k = crate::Kernels::for_isa(crate::Isa::Scalar).expect("the scalar level exists");
        let mut acts = QuantizedActs::new();
        k.quantize(&x, n, cols, &mut acts);
        let run = |keep_max: usize| {
            let mut out = vec![f32::NAN; n * rows];
            let o = OutRows::new(&mut out, n, rows);
            // SAFETY: AVX2 is present; `w` is in the lookup layout, the
            // output holds every row and token, `n` tokens exist.
            unsafe { product(&w, &acts, &o, 0..w.row_blocks(), n, keep_max) };
            out
        };
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let mut want = vec![0f32; n * rows];
        k.ternary_matmul(&bitnet_threads::ThreadPool::new(1), &w, &acts, &mut want);
        assert_eq!(bits(&run(0)), bits(&want), "decoded per block");
        assert_eq!(bits(&run(usize::MAX)), bits(&want), "kept");
    }
}
