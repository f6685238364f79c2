//! AVX2 kernels of the lookup layout (see [`super::lut3`]): the per-token
//! kernels, for decoding, short products and the last tokens of a prompt.
//! Blocks of 32 prompt tokens go to the token-lane kernel of
//! [`avx2_lut3_prompt`] (from [`PAD_MIN_TOKENS`] tokens on, padded).
//!
//! * Tables ([`build_tables`]): per token the activations are split into
//!   low and high nibbles, and every column block gets 256 bytes of tables:
//!   per position `k`, the low- and high-nibble tables of groups `k`
//!   (lane 0) and `k + 4` (lane 1). About 1 µs per token for 2560 columns
//!   on a Zen 2, built by each thread for the tokens it multiplies, up to
//!   [`CHUNK_TOKENS`] at a time.
//! * Passes ([`row_blocks`]): per 32 bytes of a nibble plane (16 rows × two
//!   groups) and token, one `vpand` (and a `vpsrlw` for the high nibbles)
//!   for the indices, two `vpshufb`, two `vpsignb`, two `vpaddb`. The sign
//!   masks come from the block's 16 sign bytes by doubling (`vpaddb`), bit 7
//!   meeting one group's sign per step; an or-ed 1 keeps them non-zero
//!   (`vpsignb` zeroes where its mask is zero). Once per block the byte sums
//!   of each lane meet `(1, 16)` in a `vpmaddubsw` (`l + 16·h` per row,
//!   `i16`), widened to `i32` every [`FLUSH`] blocks. One token reads a
//!   thread's rows as two streams side by side (sharing the table loads);
//!   two and three tokens read one stream, and more tokens take passes of
//!   [`PASS_TOKENS`] over the rows (four tokens spill the accumulators).
//!
//! These lookups beat the `vpmaddubsw` panel GEMM of `avx2` at every token
//! count measured on a Zen 2 (2560 × 2560, one core: 3 tokens 186 against
//! 306 µs, 8 tokens 522 against 646, 128 tokens 8.09 against 8.80 ms), so
//! this layout never decodes panels: the GEMM's bound is the single
//! multiply port, the lookups' the four vector ports together.

// Register-blocked loops index their accumulator arrays with constant
// ranges on purpose: after full unrolling every index is a constant and the
// arrays live in registers.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::ops::Range;

use super::avx2::{finish_blocks, stream_pairs};
use super::avx2_lut3_prompt::{self, LANES};
use super::lut3::{BLOCK_BYTES, BLOCK_COLS, PATTERNS, SIGNS};
use super::{TernaryMatrix, prefetch};
use crate::act::QuantizedActs;
use crate::aligned::AlignedBytes;
use crate::out::OutRows;

/// Tokens whose tables are built at a time (bounds the table memory:
/// 24 × 74 KB for 6912 columns).
const CHUNK_TOKENS: usize = 24;
/// Column blocks between `i16` → `i32` flushes: per block a row's `i16`
/// lane gains the sum of 12 products `t·a` (|·| ≤ 1536), so 16 blocks stay
/// within ±24576.
const FLUSH: usize = 16;
/// Tokens per pass over the weights (four spill the accumulators).
const PASS_TOKENS: usize = 3;
/// How far ahead of the block it multiplies a pass asks for the weights.
/// Half of the other layouts' [`super::PREFETCH_BYTES`]: the 30 layers of
/// 2B-4T from DRAM on a Zen 2, best of 6 alternating runs, one core
/// 27.7 → 26.2 ms and two cores 14.2 → 14.0 ms (medians 28.1 → 26.6 and
/// 14.8 → 14.5); 2 KB ahead was within noise of 4 KB.
const PREFETCH_AHEAD: usize = 4096;
/// The shortest remainder (after whole blocks of [`LANES`] tokens) that the
/// token-lane kernel takes as a padded block: a block costs the same for 1
/// or 32 tokens, and on a Zen 5 (2560 × 2560, one core) it beat the passes
/// from 19 tokens on (16 tokens 696 µs against 799, 20: 866 against 799).
const PAD_MIN_TOKENS: usize = 20;
/// Table bytes per column block and token.
const TABLE_BYTES: usize = 256;

/// Products whose tables (and nibble split) fit this many bytes build them
/// on the stack: a one-token product of up to about 10 000 columns (2B-4T's
/// widest needs 88 KB). The stack is what every thread has whether or not
/// it took part in earlier products, so decoding allocates nothing even
/// when a pool worker meets its first wide matrix late (it did: a per-thread
/// buffer grown on first use allocated in the middle of decoding).
const STACK_TABLE_BYTES: usize = 128 << 10;

#[repr(C, align(64))]
struct StackTables([MaybeUninit<u8>; STACK_TABLE_BYTES]);

thread_local! {
    /// Per-thread scratch: the lookup tables (and the nibble split they are
    /// built from) of products too large for [`STACK_TABLE_BYTES`], and the
    /// token-lane kernel's buffers ([`avx2_lut3_prompt`]).
    pub(super) static TABLES: RefCell<AlignedBytes> = RefCell::new(AlignedBytes::zeroed(0));
}

/// The product for any number of tokens ([`products`]), its tables on the
/// stack or in a per-thread buffer.
///
/// # Safety
/// The contract of `avx2::matmul`; `w` is in the lookup layout.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn matmul(
    w: &TernaryMatrix,
    x: &QuantizedActs,
    out: &OutRows<'_>,
    blocks: Range<usize>,
) {
    let n = x.n_tokens();
    // Whole blocks of `LANES` tokens, and a remainder long enough to be
    // worth a padded block, go to the token-lane kernel.
    let lanes_end = if n % LANES >= PAD_MIN_TOKENS {
        n
    } else {
        n - n % LANES
    };
    if lanes_end > 0 {
        // SAFETY: forwarded contract; `lanes_end ≤ n`.
        unsafe { avx2_lut3_prompt::matmul(w, x, out, blocks.clone(), lanes_end) };
        if lanes_end == n {
            return;
        }
    }
    // Tables for the tokens left to the passes only.
    let chunk = (n - lanes_end).min(CHUNK_TOKENS);
    let need = chunk * w.col_blocks() * TABLE_BYTES + 2 * x.stride();
    if need <= STACK_TABLE_BYTES {
        let mut tables = StackTables([const { MaybeUninit::uninit() }; STACK_TABLE_BYTES]);
        // SAFETY: forwarded contract; the buffer holds `need` bytes, 64-byte
        // aligned, and `products` writes the tables before it reads them.
        unsafe { products(w, x, out, blocks, tables.0.as_mut_ptr().cast(), lanes_end) };
        return;
    }
    TABLES.with(|buf| {
        let mut buf = buf.borrow_mut();
        if buf.len() < need {
            *buf = AlignedBytes::zeroed(need.next_power_of_two());
        }
        // SAFETY: as above.
        unsafe {
            products(
                w,
                x,
                out,
                blocks,
                buf.as_mut_slice().as_mut_ptr(),
                lanes_end,
            )
        };
    });
}

/// [`matmul`] of tokens `start..n` with its tables at `base`: tables for
/// up to [`CHUNK_TOKENS`] tokens at a time, then passes of up to
/// [`PASS_TOKENS`] tokens over the row blocks.
///
/// # Safety
/// As [`matmul`]; `start < n`; `base` is 64-byte aligned and holds
/// `min(n − start, CHUNK_TOKENS)` tables of the matrix's column blocks and
/// two activation rows.
#[target_feature(enable = "avx2,fma")]
unsafe fn products(
    w: &TernaryMatrix,
    x: &QuantizedActs,
    out: &OutRows<'_>,
    blocks: Range<usize>,
    base: *mut u8,
    start: usize,
) {
    let n = x.n_tokens();
    let table_bytes = w.col_blocks() * TABLE_BYTES;
    let chunk = (n - start).min(CHUNK_TOKENS);
    let mut c0 = start;
    while c0 < n {
        let c1 = (c0 + CHUNK_TOKENS).min(n);
        let mut tabs = [std::ptr::null::<u8>(); CHUNK_TOKENS];
        for t in c0..c1 {
            // SAFETY: the buffer holds `chunk` tables and the split; AVX2 is
            // available (this function's contract).
            unsafe {
                let tab = base.add((t - c0) * table_bytes);
                build_tables(x, t, w.col_blocks(), base.add(chunk * table_bytes), tab);
                tabs[t - c0] = tab;
            }
        }
        let mut t0 = c0;
        while t0 < c1 {
            let tt = (c1 - t0).min(PASS_TOKENS);
            let tb = &tabs[t0 - c0..];
            let b = blocks.clone();
            // SAFETY: forwarded contract; the tables cover every column
            // block of tokens t0..t0+tt.
            unsafe {
                match tt {
                    1 => gemv::<1>(w, [tb[0]], x, t0, out, b),
                    2 => gemv::<2>(w, [tb[0], tb[1]], x, t0, out, b),
                    _ => gemv::<3>(w, [tb[0], tb[1], tb[2]], x, t0, out, b),
                }
            }
            t0 += tt;
        }
        c0 = c1;
    }
}

/// Builds token `t`'s tables for `col_blocks` column blocks at `tab`, using
/// `split` (two activation rows) as scratch.
///
/// # Safety
/// AVX2; `split` holds `2 · x.stride()` bytes, `tab` holds
/// `col_blocks · TABLE_BYTES`; `col_blocks · 24 ≤ x.stride()`.
#[target_feature(enable = "avx2,fma")]
unsafe fn build_tables(
    x: &QuantizedActs,
    t: usize,
    col_blocks: usize,
    split: *mut u8,
    tab: *mut u8,
) {
    let stride = x.stride();
    let q = x.row(t).as_ptr();
    let (lo, hi) = (split, split.wrapping_add(stride));
    let nib = _mm256_set1_epi8(15);
    let eight = _mm256_set1_epi8(8);
    let one = _mm256_set1_epi8(1);
    // a = 16·h + l, l in [−8, 7]: l = ((a + 8) mod 16) − 8, and h is a's
    // arithmetic shift by 4 plus bit 3 of a (the rounding of l).
    for i in (0..stride).step_by(32) {
        // SAFETY: the stride is a multiple of 64; both rows are in bounds.
        unsafe {
            let a = _mm256_loadu_si256(q.add(i).cast());
            let l = _mm256_sub_epi8(_mm256_and_si256(_mm256_add_epi8(a, eight), nib), eight);
            let shr4 = _mm256_and_si256(_mm256_srli_epi16::<4>(a), nib);
            let sar4 = _mm256_sub_epi8(_mm256_xor_si256(shr4, eight), eight);
            let bit3 = _mm256_and_si256(_mm256_srli_epi16::<3>(a), one);
            _mm256_storeu_si256(lo.add(i).cast(), l);
            _mm256_storeu_si256(hi.add(i).cast(), _mm256_add_epi8(sar4, bit3));
        }
    }
    // Digit j of every pattern, in both lanes (`vpsignb` masks).
    let digit = |j: usize| -> __m256i {
        let mut d = [0i8; 32];
        for p in 0..32 {
            d[p] = PATTERNS[p % 16][j];
        }
        // SAFETY: 32 bytes.
        unsafe { _mm256_loadu_si256(d.as_ptr().cast()) }
    };
    let digits = [digit(0), digit(1), digit(2)];
    for cb in 0..col_blocks {
        let c = cb * BLOCK_COLS;
        // Lane 0: columns c..c+16 (groups 0..4); lane 1: c+8..c+24 (groups
        // 4..8 at lane offsets 4..16).
        // SAFETY: c + 24 ≤ stride.
        let (vl, vh) = unsafe {
            (
                _mm256_loadu2_m128i(lo.add(c + 8).cast(), lo.add(c).cast()),
                _mm256_loadu2_m128i(hi.add(c + 8).cast(), hi.add(c).cast()),
            )
        };
        for k in 0..4 {
            let mut tl = _mm256_setzero_si256();
            let mut th = _mm256_setzero_si256();
            for j in 0..3 {
                let idx = _mm256_setr_m128i(
                    _mm_set1_epi8((3 * k + j) as i8),
                    _mm_set1_epi8((4 + 3 * k + j) as i8),
                );
                tl = _mm256_add_epi8(
                    tl,
                    _mm256_sign_epi8(_mm256_shuffle_epi8(vl, idx), digits[j]),
                );
                th = _mm256_add_epi8(
                    th,
                    _mm256_sign_epi8(_mm256_shuffle_epi8(vh, idx), digits[j]),
                );
            }
            // SAFETY: inside the tables of block `cb`.
            unsafe {
                let at = tab.add(cb * TABLE_BYTES + 64 * k);
                _mm256_store_si256(at.cast(), tl);
                _mm256_store_si256(at.add(32).cast(), th);
            }
        }
    }
}

/// The sign mask of a block's first position: lane 0 has the signs of
/// groups 0..4 at bits 7..4, lane 1 those of groups 4..8 (shifted up by 4);
/// or-ed with 1 so that no byte is zero for three doublings.
///
/// Two ways to the same bits 7..4: one token broadcasts the sign bytes and
/// shifts lane 1's dwords (`vpsllvd`; the low nibbles then come from the
/// byte below, never tested), which took the one-token GEMV from 74.8 to
/// 73.9 µs (2560 × 2560) and 204 to 195 µs (6912 columns) on a Zen 2;
/// passes of several tokens shift a 128-bit copy and insert it, which kept
/// the 128-token product at 8.09 ms where the broadcast took 8.25.
///
/// # Safety
/// `p` (the block) must be readable for 80 bytes.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn sign_mask<const T: usize>(p: *const u8) -> __m256i {
    let both = if T == 1 {
        // SAFETY: the caller's contract.
        let s = unsafe { _mm256_broadcastsi128_si256(_mm_loadu_si128(p.add(SIGNS).cast())) };
        _mm256_sllv_epi32(s, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4))
    } else {
        // SAFETY: the caller's contract.
        let s = unsafe { _mm_loadu_si128(p.add(SIGNS).cast()) };
        _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(s), _mm_slli_epi16::<4>(s))
    };
    _mm256_or_si256(both, _mm256_set1_epi8(1))
}

/// `m + m` bytewise, as one `vpaddb`: written as an addition LLVM turns
/// chains of doublings into word shifts and masks, which take the shift
/// port that the lookups need.
#[target_feature(enable = "avx2")]
#[inline]
fn double(m: __m256i) -> __m256i {
    let mut m = m;
    // SAFETY: a register-only AVX2 addition (the CPU has AVX2: this
    // function's target feature).
    unsafe {
        std::arch::asm!("vpaddb {0}, {0}, {0}", inout(ymm_reg) m, options(pure, nomem, nostack));
    }
    m
}

/// Pattern indices of position `k` (groups `k`, `k + 4`) from the nibble
/// planes.
#[target_feature(enable = "avx2")]
#[inline]
fn indices(planes: [__m256i; 2], k: usize) -> __m256i {
    let v = planes[k / 2];
    let v = if k % 2 == 1 {
        _mm256_srli_epi16::<4>(v)
    } else {
        v
    };
    _mm256_and_si256(v, _mm256_set1_epi8(15))
}

/// # Safety
/// As [`matmul`]; `tabs` are the tables of tokens `t0..t0 + T`.
#[target_feature(enable = "avx2,fma")]
// Out of line: inlined into `products`, the one-token loop ran 2 % slower.
#[inline(never)]
unsafe fn gemv<const T: usize>(
    w: &TernaryMatrix,
    tabs: [*const u8; T],
    x: &QuantizedActs,
    t0: usize,
    out: &OutRows<'_>,
    blocks: Range<usize>,
) {
    if T > 1 {
        for rb in blocks {
            // SAFETY: forwarded contract; the row block lies in `blocks`.
            unsafe { row_blocks::<T, 1>(w, tabs, x, t0, out, [rb]) };
        }
        return;
    }
    let (pairs, last) = stream_pairs(blocks);
    for rbs in pairs {
        // SAFETY: forwarded contract; both row blocks lie in `blocks`.
        unsafe { row_blocks::<T, 2>(w, tabs, x, t0, out, rbs) };
    }
    if let Some(rb) = last {
        // SAFETY: as above.
        unsafe { row_blocks::<T, 1>(w, tabs, x, t0, out, [rb]) };
    }
}

/// Row blocks `rbs` for `T` tokens, read as `S` streams block by block
/// (the streams share each block's table loads), widened every [`FLUSH`]
/// column blocks.
///
/// # Safety
/// As [`gemv`]; the row blocks `rbs` exist and are this thread's.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn row_blocks<const T: usize, const S: usize>(
    w: &TernaryMatrix,
    tabs: [*const u8; T],
    x: &QuantizedActs,
    t0: usize,
    out: &OutRows<'_>,
    rbs: [usize; S],
) {
    let col_blocks = w.col_blocks();
    let pairs = _mm256_set1_epi16(0x1001);
    let bases: [*const u8; S] = std::array::from_fn(|s| w.row_block(rbs[s]).as_ptr());
    // [stream][rows 0..8 / 8..16][token]
    let mut acc32 = [[[_mm256_setzero_si256(); T]; 2]; S];
    let mut c0 = 0;
    while c0 < col_blocks {
        let c1 = (c0 + FLUSH).min(col_blocks);
        let mut acc16 = [[[_mm256_setzero_si256(); 2]; T]; S];
        for cb in c0..c1 {
            let mut planes = [[_mm256_setzero_si256(); 2]; S];
            let mut m = [_mm256_setzero_si256(); S];
            for s in 0..S {
                let p = bases[s].wrapping_add(cb * BLOCK_BYTES);
                prefetch(p.wrapping_add(PREFETCH_AHEAD));
                prefetch(p.wrapping_add(PREFETCH_AHEAD + 64));
                // SAFETY: block `cb` lies inside the row block.
                unsafe {
                    planes[s] = [
                        _mm256_loadu_si256(p.cast()),
                        _mm256_loadu_si256(p.add(32).cast()),
                    ];
                    m[s] = sign_mask::<T>(p);
                }
            }
            let mut lo = [[_mm256_setzero_si256(); T]; S];
            let mut hi = [[_mm256_setzero_si256(); T]; S];
            for k in 0..4 {
                for t in 0..T {
                    // SAFETY: the tables of block `cb` (caller).
                    let (tl, th) = unsafe {
                        let at = tabs[t].add(cb * TABLE_BYTES + 64 * k);
                        (
                            _mm256_load_si256(at.cast()),
                            _mm256_load_si256(at.add(32).cast()),
                        )
                    };
                    for s in 0..S {
                        let idx = indices(planes[s], k);
                        let l = _mm256_sign_epi8(_mm256_shuffle_epi8(tl, idx), m[s]);
                        let h = _mm256_sign_epi8(_mm256_shuffle_epi8(th, idx), m[s]);
                        lo[s][t] = _mm256_add_epi8(lo[s][t], l);
                        hi[s][t] = _mm256_add_epi8(hi[s][t], h);
                    }
                }
                for s in 0..S {
                    m[s] = double(m[s]);
                }
            }
            for s in 0..S {
                for t in 0..T {
                    // Rows 0..8 (both lanes' groups), then rows 8..16.
                    let r0 = _mm256_maddubs_epi16(pairs, _mm256_unpacklo_epi8(lo[s][t], hi[s][t]));
                    let r1 = _mm256_maddubs_epi16(pairs, _mm256_unpackhi_epi8(lo[s][t], hi[s][t]));
                    acc16[s][t][0] = _mm256_add_epi16(acc16[s][t][0], r0);
                    acc16[s][t][1] = _mm256_add_epi16(acc16[s][t][1], r1);
                }
            }
        }
        for s in 0..S {
            for t in 0..T {
                for h in 0..2 {
                    let v = acc16[s][t][h];
                    let a = _mm256_cvtepi16_epi32(_mm256_castsi256_si128(v));
                    let b = _mm256_cvtepi16_epi32(_mm256_extracti128_si256::<1>(v));
                    acc32[s][h][t] = _mm256_add_epi32(acc32[s][h][t], _mm256_add_epi32(a, b));
                }
            }
        }
        c0 = c1;
    }
    // SAFETY: forwarded contract; the row blocks are this thread's.
    unsafe { finish_blocks(w, x, out, rbs, t0, acc32, false) };
}
