//! AVX2 kernels of the 2-bit layout (see [`super::two_bit`]).
//!
//! * [`gemv_any`] (1..=[`GEMV_MAX_TOKENS`] tokens, decoding): per 32 bytes
//!   (8 rows × 16 columns) one `vpsrlw` by 4 and four `vpand` give the four
//!   code planes, those of bits 2..4 multiplied by 4 (`v & 0x0C`, `v>>4 &
//!   0x0C`). Each plane meets its four broadcast activation bytes in one
//!   `vpmaddubsw` (codes ≤ 8 × activations ≥ −128: pairs within ±2048, no
//!   saturation) added into an `i16` accumulator: one for the plain planes,
//!   one for the ×4 planes, per 8-row half and token. Every [`FLUSH`]
//!   column blocks `vpmaddwd` against ones widens them into `i32`, and an
//!   arithmetic shift by 2 divides the ×4 sums back, exactly (they are sums
//!   of `4·code·q`).
//!   Both halves of a block share the activation broadcasts; the weights
//!   stream once, as two streams per thread. Two tokens use plain planes
//!   instead (three shifts, shared by the tokens) and one accumulator
//!   flushed half as often (see [`plain_planes`]).
//! * [`decode_panel`]: codes of a column chunk of one row block for the
//!   GEMM micro-kernel of `avx2` (shifts and masks into the panel format
//!   that the base-3 decoder writes).

// Register-blocked loops index their accumulator arrays with constant
// ranges on purpose: after full unrolling every index is a constant and the
// arrays live in registers.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::ops::Range;

use super::avx2::{broadcast4, finish_blocks, stream_pairs};
use super::two_bit::{BLOCK_COLS, CODES};
use super::{BLOCK_BYTES, PREFETCH_BYTES, TernaryMatrix, prefetch};
use crate::act::QuantizedActs;
use crate::out::OutRows;

/// Largest token count that takes the streaming GEMV path. 2560×2560, one
/// core (Zen 5, forced AVX2), µs: GEMV 42, 75, 119, 157 for 1–4 tokens,
/// GEMM 88, 113, 140 for 2–4.
pub(crate) const GEMV_MAX_TOKENS: usize = 2;
/// Column blocks between `i16` → `i32` flushes. Per block the ×4
/// accumulator gains two products of pairs within [−2·8·128, 2·8·127], so
/// after 8 blocks it lies in [−32768, 32512]: exact in `i16`.
const FLUSH: usize = 8;

/// Streaming product for 1..=[`GEMV_MAX_TOKENS`] tokens.
///
/// # Safety
/// The contract of `avx2::matmul`; `w` is in the 2-bit layout and
/// `x.n_tokens()` is 1..=[`GEMV_MAX_TOKENS`].
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn gemv_any(
    w: &TernaryMatrix,
    x: &QuantizedActs,
    out: &OutRows<'_>,
    blocks: Range<usize>,
) {
    // SAFETY: forwarded contract.
    unsafe {
        match x.n_tokens() {
            1 => gemv::<1>(w, x, out, blocks),
            _ => gemv::<2>(w, x, out, blocks),
        }
    }
}

/// Streaming product for `T` tokens: the row blocks are read as two
/// streams, the first and the second half of `blocks` side by side (row
/// blocks `start + i` and `start + half + i` together), and an odd last one
/// alone. A core's L2 prefetchers keep more lines in flight for two
/// streams than for one: the 30 layers of 2B-4T from DRAM on a Zen 2
/// (`examples/decode_probe.rs avx2`, alternating runs) went from 15.5–16.2
/// to 16.3–16.8 GB/s on one core and from 25.4–29.9 to 29.5–31.1 on two.
/// Two neighbouring row blocks as the streams were slower than one stream
/// (13 GB/s on one core: each one's software prefetch lands in the other's
/// bytes), and four quarters slower than two halves (15.1–15.3 and 28.2).
///
/// # Safety
/// As [`gemv_any`], with `x.n_tokens() == T`.
#[target_feature(enable = "avx2,fma")]
unsafe fn gemv<const T: usize>(
    w: &TernaryMatrix,
    x: &QuantizedActs,
    out: &OutRows<'_>,
    blocks: Range<usize>,
) {
    let (pairs, last) = stream_pairs(blocks);
    for rbs in pairs {
        // SAFETY: forwarded contract; both row blocks lie in `blocks`.
        unsafe { row_blocks::<T, 2>(w, x, out, rbs) };
    }
    if let Some(rb) = last {
        // SAFETY: as above.
        unsafe { row_blocks::<T, 1>(w, x, out, [rb]) };
    }
}

/// Row blocks `rbs` for `T` tokens, read as `S` interleaved streams:
/// [`FLUSH`] column blocks (512 bytes) of each in turn, twice that for two
/// tokens.
///
/// # Safety
/// As [`gemv`]; the row blocks `rbs` exist and are this thread's.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn row_blocks<const T: usize, const S: usize>(
    w: &TernaryMatrix,
    x: &QuantizedActs,
    out: &OutRows<'_>,
    rbs: [usize; S],
) {
    let col_blocks = w.col_blocks();
    let mut acts = [std::ptr::null::<i8>(); T];
    for t in 0..T {
        acts[t] = x.row(t).as_ptr();
    }
    let ones = _mm256_set1_epi16(1);
    let bases: [*const u8; S] = std::array::from_fn(|s| w.row_block(rbs[s]).as_ptr());
    // [stream][half][token]; constant-index loops only, so that they live
    // in registers.
    let mut acc32 = [[[_mm256_setzero_si256(); T]; 2]; S];
    // Two tokens: plain planes (see `plain_planes`), flushed half as often.
    let plain_codes = T > 1;
    let flush = if plain_codes { 2 * FLUSH } else { FLUSH };
    let mut c0 = 0;
    while c0 < col_blocks {
        let c1 = (c0 + flush).min(col_blocks);
        for s in 0..S {
            let base = bases[s];
            let mut plain = [[_mm256_setzero_si256(); T]; 2];
            let mut times4 = [[_mm256_setzero_si256(); T]; 2];
            for cb in c0..c1 {
                prefetch(base.wrapping_add(cb * BLOCK_BYTES + PREFETCH_BYTES));
                let mut a = [[_mm256_setzero_si256(); CODES]; T];
                for t in 0..T {
                    for d in 0..CODES {
                        // SAFETY: column 16·cb + 4·d + 3 < padded columns ≤
                        // stride (the activations are zero-padded).
                        a[t][d] = unsafe { broadcast4(acts[t].add(BLOCK_COLS * cb + 4 * d)) };
                    }
                }
                for h in 0..2 {
                    // SAFETY: block `cb` lies inside the row block (both arms).
                    let planes = unsafe {
                        if plain_codes {
                            plain_planes(base, cb, h)
                        } else {
                            code_planes(base, cb, h)
                        }
                    };
                    for t in 0..T {
                        let p0 = _mm256_maddubs_epi16(planes[0], a[t][0]);
                        let p1 = _mm256_maddubs_epi16(planes[1], a[t][1]);
                        let p2 = _mm256_maddubs_epi16(planes[2], a[t][2]);
                        let p3 = _mm256_maddubs_epi16(planes[3], a[t][3]);
                        if plain_codes {
                            let sum = _mm256_add_epi16(
                                _mm256_add_epi16(p0, p1),
                                _mm256_add_epi16(p2, p3),
                            );
                            plain[h][t] = _mm256_add_epi16(plain[h][t], sum);
                        } else {
                            plain[h][t] = _mm256_add_epi16(plain[h][t], _mm256_add_epi16(p0, p2));
                            times4[h][t] = _mm256_add_epi16(times4[h][t], _mm256_add_epi16(p1, p3));
                        }
                    }
                }
            }
            for h in 0..2 {
                for t in 0..T {
                    let mut wide = _mm256_madd_epi16(plain[h][t], ones);
                    if !plain_codes {
                        // The ×4 sums are multiples of 4: the shift is exact.
                        wide = _mm256_add_epi32(
                            wide,
                            _mm256_srai_epi32::<2>(_mm256_madd_epi16(times4[h][t], ones)),
                        );
                    }
                    acc32[s][h][t] = _mm256_add_epi32(acc32[s][h][t], wide);
                }
            }
        }
        c0 = c1;
    }
    // SAFETY: forwarded contract; the row blocks are this thread's.
    unsafe { finish_blocks(w, x, out, rbs, 0, acc32, true) };
}

/// The four code planes of half `h` (rows `8h..8h+8`) of column block `cb`
/// of the row block at `base`: codes of bits 0..2 and 4..6 as they are,
/// those of bits 2..4 and 6..8 times 4 (see the module doc).
///
/// # Safety
/// The 64-byte block `cb` at `base` must be readable and 32-byte aligned.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn code_planes(base: *const u8, cb: usize, h: usize) -> [__m256i; 4] {
    let low = _mm256_set1_epi8(0x03);
    let high = _mm256_set1_epi8(0x0C);
    // SAFETY: the caller's contract; 32 bytes at an aligned offset.
    let v = unsafe { _mm256_load_si256(base.add(cb * BLOCK_BYTES + 32 * h).cast()) };
    let v4 = _mm256_srli_epi16::<4>(v);
    [
        _mm256_and_si256(v, low),
        _mm256_and_si256(v, high),
        _mm256_and_si256(v4, low),
        _mm256_and_si256(v4, high),
    ]
}

/// The four code planes of half `h` of column block `cb` as plain codes
/// (three shifts and four masks), for two tokens: with codes ≤ 2 a block
/// adds four pairs within [−2·2·128, 2·2·127] per accumulator, so one `i16`
/// accumulator per half and token holds 2·[`FLUSH`] blocks exactly, where
/// the ×4 planes of [`code_planes`] need two flushed every [`FLUSH`]. The
/// two extra shifts are shared by both tokens and the `vpmaddwd` of the
/// flushes, on the multiply port, drop from four to one per 16 blocks:
/// 2560×2560 × 2 tokens from L3 on a Zen 2 core went from 157–159 µs to
/// 135–138 µs. (For one token the shifts cost more than the flushes save:
/// 82.5 → 89–90 µs.)
///
/// # Safety
/// As [`code_planes`].
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn plain_planes(base: *const u8, cb: usize, h: usize) -> [__m256i; 4] {
    let low = _mm256_set1_epi8(0x03);
    // SAFETY: the caller's contract; 32 bytes at an aligned offset.
    let v = unsafe { _mm256_load_si256(base.add(cb * BLOCK_BYTES + 32 * h).cast()) };
    [
        _mm256_and_si256(v, low),
        _mm256_and_si256(_mm256_srli_epi16::<2>(v), low),
        _mm256_and_si256(_mm256_srli_epi16::<4>(v), low),
        _mm256_and_si256(_mm256_srli_epi16::<6>(v), low),
    ]
}

/// Decodes column blocks `cbs` of row block `rb` into `buf`: step `s`
/// (counted from the chunk start) at `buf[s·64..]` (rows 0..8 in the first
/// 32 bytes, 8..16 in the second), as plain codes.
///
/// # Safety
/// `w` is in the 2-bit layout; `buf` must be 32-byte aligned and hold
/// `4 · cbs.len() · 64` bytes.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn decode_panel(w: &TernaryMatrix, rb: usize, cbs: Range<usize>, buf: *mut u8) {
    let base = w.row_block(rb).as_ptr();
    let low = _mm256_set1_epi8(0x03);
    for (c, cb) in cbs.enumerate() {
        for h in 0..2 {
            // SAFETY: as in `gemv`.
            let v = unsafe { _mm256_load_si256(base.add(cb * BLOCK_BYTES + 32 * h).cast()) };
            let planes = [
                v,
                _mm256_srli_epi16::<2>(v),
                _mm256_srli_epi16::<4>(v),
                _mm256_srli_epi16::<6>(v),
            ];
            for (d, p) in planes.into_iter().enumerate() {
                let at = (CODES * c + d) * 64 + 32 * h;
                // SAFETY: inside the buffer by the caller's contract; aligned.
                unsafe { _mm256_store_si256(buf.add(at).cast(), _mm256_and_si256(p, low)) };
            }
        }
    }
}
