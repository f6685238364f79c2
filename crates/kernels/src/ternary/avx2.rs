//! AVX2 ternary × int8 kernels (no AVX-512, no AVX-VNNI: `vpmaddubsw` +
//! `vpmaddwd`), for both layouts: the base-3 decoding is here, the 2-bit
//! layout's streaming product and panel decoding in `avx2_two_bit`; the
//! GEMM micro-kernel serves both.
//!
//! A packed 64-byte block is read as two `ymm` halves of 8 rows each. The
//! bytes are flipped into the signed domain once (`q ^ 0x80`, which tripling
//! preserves because `3 · 128 ≡ 128 mod 256`), so the digit thresholds
//! become two signed `vpcmpgtb`, and `code = 0 − m₁ − m₂`. `vpmaddubsw`
//! multiplies the codes (unsigned) by broadcast activation bytes (signed)
//! into `i16` pairs (|pair| ≤ 512), which are summed in `i16` for a bounded
//! number of steps and widened with `vpmaddwd` against ones.
//!
//! * [`gemv`] (1..=[`GEMV_MAX_TOKENS_BASE3`] tokens): each half-block decoded once
//!   for all tokens; the two halves of a row block are separate passes (the
//!   second re-reads the row block from L1).
//! * [`gemm`]: one row block decoded into a thread-local panel of codes,
//!   then an 16-row × [`TILE_TOKENS`]-token micro-kernel with `i16`
//!   accumulators in registers, flushed to `i32` every 32 steps.

// Register-blocked loops index their accumulator arrays with constant
// ranges on purpose: after full unrolling every index is a constant and the
// arrays live in registers (iterators here made LLVM keep them on the stack).
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::ops::Range;

use super::{BLOCK_BYTES, BLOCK_ROWS, DIGITS, ScaleRule, TernaryLayout, TernaryMatrix, with_panel};
use super::{avx2_lut3, avx2_two_bit};
use crate::act::QuantizedActs;
use crate::out::OutRows;

/// Largest token count that takes the streaming GEMV path (base-3 layout).
pub(crate) const GEMV_MAX_TOKENS_BASE3: usize = 2;
/// The same for the 2-bit layout, whose cheaper decoding keeps the GEMV
/// ahead of the panel-decoding GEMM for more tokens.
pub(crate) const GEMV_MAX_TOKENS: usize = avx2_two_bit::GEMV_MAX_TOKENS;
/// Tokens per GEMM register tile.
pub(crate) const TILE_TOKENS: usize = 6;
/// Column blocks between `i16` → `i32` flushes in the GEMV (5 products of
/// at most 512 per block: 8 blocks stay below 2^15).
const GEMV_FLUSH: usize = 8;
/// Steps between flushes in the GEMM micro-kernel (32 · 512 < 2^15).
const GEMM_FLUSH: usize = 32;
/// Size of a decoded panel chunk: with the activations it touches it must
/// stay in L1.
const CHUNK_BYTES: usize = 32 << 10;

/// The kernel entry: outputs of row blocks `blocks` for every token of `x`.
///
/// # Safety
/// The CPU must support AVX2; `out` must be `x.n_tokens() × w.rows()` and no
/// other thread may write rows of `blocks`.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn matmul(
    w: &TernaryMatrix,
    x: &QuantizedActs,
    out: &OutRows<'_>,
    blocks: Range<usize>,
) {
    let n = x.n_tokens();
    // SAFETY: forwarded contract.
    unsafe {
        match (w.layout(), n) {
            (_, 0) => {}
            (TernaryLayout::TwoBit, _) if n <= avx2_two_bit::GEMV_MAX_TOKENS => {
                avx2_two_bit::gemv_any(w, x, out, blocks)
            }
            (TernaryLayout::Lut3, _) => avx2_lut3::matmul(w, x, out, blocks),
            (TernaryLayout::Base3, 1) => gemv::<1>(w, x, out, blocks),
            (TernaryLayout::Base3, 2) if GEMV_MAX_TOKENS_BASE3 >= 2 => gemv::<2>(w, x, out, blocks),
            _ => gemm(w, x, out, blocks),
        }
    }
}

/// The codes `t + 1` of a biased digit plane (see the module doc).
#[target_feature(enable = "avx2")]
#[inline]
fn codes(q: __m256i) -> __m256i {
    // q ≥ 86 ⇔ q ^ 0x80 > -43 (signed); q ≥ 171 ⇔ q ^ 0x80 > 42.
    let m1 = _mm256_cmpgt_epi8(q, _mm256_set1_epi8(-43));
    let m2 = _mm256_cmpgt_epi8(q, _mm256_set1_epi8(42));
    _mm256_sub_epi8(_mm256_sub_epi8(_mm256_setzero_si256(), m1), m2)
}

#[target_feature(enable = "avx2")]
#[inline]
fn triple(q: __m256i) -> __m256i {
    _mm256_add_epi8(_mm256_add_epi8(q, q), q)
}

/// Loads 32 packed bytes and moves them to the signed domain.
///
/// # Safety
/// `p` must be readable for 32 bytes and 32-byte aligned.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn load_biased(p: *const u8) -> __m256i {
    // SAFETY: the caller's contract.
    let v = unsafe { _mm256_load_si256(p.cast()) };
    _mm256_xor_si256(v, _mm256_set1_epi8(0x80u8 as i8))
}

/// # Safety
/// `p` must be readable for 4 bytes.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn broadcast4(p: *const i8) -> __m256i {
    // SAFETY: the caller's contract.
    _mm256_set1_epi32(unsafe { p.cast::<i32>().read_unaligned() })
}

#[target_feature(enable = "avx2")]
#[inline]
fn widen(acc16: __m256i) -> __m256i {
    _mm256_madd_epi16(acc16, _mm256_set1_epi16(1))
}

/// Turns 8 row sums `Σ code·q` into outputs and stores the valid rows.
///
/// # Safety
/// `scales` and `dst` must be valid for `n_valid.min(8)` elements.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn finish(
    acc: __m256i,
    act_sum: i32,
    s_x: f32,
    rule: ScaleRule,
    scales: *const f32,
    n_valid: usize,
    dst: *mut f32,
) {
    let f = _mm256_cvtepi32_ps(_mm256_sub_epi32(acc, _mm256_set1_epi32(act_sum)));
    let sx = _mm256_set1_ps(s_x);
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n_valid.min(8) as i32), lanes);
    // SAFETY: masked load of the valid rows only.
    let sc = unsafe { _mm256_maskload_ps(scales, mask) };
    let y = match rule {
        ScaleRule::Multiply => _mm256_mul_ps(_mm256_div_ps(f, sx), sc),
        ScaleRule::Divide => _mm256_div_ps(f, _mm256_mul_ps(sc, sx)),
    };
    // SAFETY: masked store of the valid rows only.
    unsafe { _mm256_maskstore_ps(dst, mask, y) };
}

/// A thread's row blocks as two streams read side by side: the pairs
/// `(start + i, start + half + i)`, then an odd last block alone.
pub(super) fn stream_pairs(
    blocks: Range<usize>,
) -> (impl Iterator<Item = [usize; 2]>, Option<usize>) {
    let half = blocks.len() / 2;
    let last = (blocks.len() % 2 == 1).then(|| blocks.end - 1);
    let start = blocks.start;
    ((0..half).map(move |i| [start + i, start + half + i]), last)
}

/// Finishes the sums of row blocks `rbs` (`acc32[s][h][t]`: stream `s`,
/// rows `8h..8h+8`, token `t0 + t`) into their real rows: `Σ code·q` with
/// codes `t + 1` (`codes`: the token's `Σ q` is subtracted), else `Σ t·q`.
///
/// # Safety
/// The rows of `rbs` are the caller's; tokens `t0..t0 + T` exist; `out`
/// is `x.n_tokens() × w.rows()`.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn finish_blocks<const T: usize, const S: usize>(
    w: &TernaryMatrix,
    x: &QuantizedActs,
    out: &OutRows<'_>,
    rbs: [usize; S],
    t0: usize,
    acc32: [[[__m256i; T]; 2]; S],
    codes: bool,
) {
    for s in 0..S {
        for h in 0..2 {
            let r0 = rbs[s] * BLOCK_ROWS + 8 * h;
            if r0 >= w.rows() {
                continue;
            }
            for t in 0..T {
                let act_sum = if codes { x.sums()[t0 + t] } else { 0 };
                // SAFETY: rows r0..r0+8 belong to this row block (the
                // caller's); `finish` touches only the real ones.
                unsafe {
                    finish(
                        acc32[s][h][t],
                        act_sum,
                        x.scales()[t0 + t],
                        w.rule(),
                        w.scales().as_ptr().add(r0),
                        w.rows() - r0,
                        out.ptr(t0 + t, r0),
                    );
                }
            }
        }
    }
}

/// Streaming product for `T` tokens.
///
/// # Safety
/// The contract of [`matmul`].
#[target_feature(enable = "avx2,fma")]
unsafe fn gemv<const T: usize>(
    w: &TernaryMatrix,
    x: &QuantizedActs,
    out: &OutRows<'_>,
    blocks: Range<usize>,
) {
    let col_blocks = w.col_blocks();
    let mut acts = [std::ptr::null::<i8>(); T];
    for t in 0..T {
        acts[t] = x.row(t).as_ptr();
    }
    for rb in blocks {
        let base = w.row_block(rb).as_ptr();
        for half in 0..2 {
            // Constant-index loops only, so that the accumulators live in
            // registers.
            let mut acc16 = [_mm256_setzero_si256(); T];
            let mut acc32 = [_mm256_setzero_si256(); T];
            for cb in 0..col_blocks {
                // SAFETY: half `half` of block `cb`: 32 aligned bytes inside
                // the row block.
                let mut q = unsafe { load_biased(base.add(cb * BLOCK_BYTES + 32 * half)) };
                for d in 0..DIGITS {
                    let c = codes(q);
                    for t in 0..T {
                        // SAFETY: column 4·(5cb + d) + 3 < stride.
                        let a = unsafe { broadcast4(acts[t].add(4 * (DIGITS * cb + d))) };
                        acc16[t] = _mm256_add_epi16(acc16[t], _mm256_maddubs_epi16(c, a));
                    }
                    if d + 1 < DIGITS {
                        q = triple(q);
                    }
                }
                if (cb + 1) % GEMV_FLUSH == 0 || cb + 1 == col_blocks {
                    for t in 0..T {
                        acc32[t] = _mm256_add_epi32(acc32[t], widen(acc16[t]));
                        acc16[t] = _mm256_setzero_si256();
                    }
                }
            }
            let r0 = rb * BLOCK_ROWS + 8 * half;
            if r0 >= w.rows() {
                continue;
            }
            let n_valid = w.rows() - r0;
            for t in 0..T {
                // SAFETY: rows r0..r0+8 belong to this row block (ours);
                // `finish` touches only the real ones.
                unsafe {
                    finish(
                        acc32[t],
                        x.sums()[t],
                        x.scales()[t],
                        w.rule(),
                        w.scales().as_ptr().add(r0),
                        n_valid,
                        out.ptr(t, r0),
                    );
                }
            }
        }
    }
}

/// Decodes column blocks `cbs` of row block `rb` (base-3 layout) into `buf`:
/// step `s` (counted from the chunk start) at `buf[s·64..]` (rows 0..8 in
/// the first 32 bytes, 8..16 in the second), as plain codes.
///
/// # Safety
/// `buf` must be 32-byte aligned and hold `5 · cbs.len() · 64` bytes.
#[target_feature(enable = "avx2,fma")]
unsafe fn decode_panel(w: &TernaryMatrix, rb: usize, cbs: Range<usize>, buf: *mut u8) {
    let base = w.row_block(rb).as_ptr();
    for (c, cb) in cbs.enumerate() {
        for half in 0..2 {
            // SAFETY: as in `gemv`.
            let mut q = unsafe { load_biased(base.add(cb * BLOCK_BYTES + 32 * half)) };
            for d in 0..DIGITS {
                let s = DIGITS * c + d;
                // SAFETY: inside the buffer by the caller's contract; aligned.
                unsafe { _mm256_store_si256(buf.add(s * 64 + 32 * half).cast(), codes(q)) };
                q = triple(q);
            }
        }
    }
}

/// Decodes column blocks `cbs` of row block `rb` of either layout into the
/// panel format (step `s` at `buf[s·64..]`, plain codes).
///
/// # Safety
/// `buf` must be 32-byte aligned and hold `steps_per_block · cbs.len() · 64`
/// bytes.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn decode_panel_any(
    w: &TernaryMatrix,
    rb: usize,
    cbs: Range<usize>,
    buf: *mut u8,
) {
    // SAFETY: forwarded contract.
    unsafe {
        match w.layout() {
            TernaryLayout::Base3 => decode_panel(w, rb, cbs, buf),
            TernaryLayout::TwoBit => avx2_two_bit::decode_panel(w, rb, cbs, buf),
            TernaryLayout::Lut3 => unreachable!("lookup-layout products never decode panels"),
        }
    }
}

/// Where a tile's accumulators come from and go to when the columns are
/// processed in chunks.
#[derive(Clone, Copy)]
pub(super) struct Chunk {
    /// First step (4-column group) of the chunk.
    pub(super) s0: usize,
    /// Steps in the chunk.
    pub(super) steps: usize,
    /// Start from zero (first chunk) or from `partial`.
    pub(super) first: bool,
    /// Finish into `out` (last chunk) or save into `partial`.
    pub(super) last: bool,
    /// Partial sums: 64 bytes (two `ymm`) per token.
    pub(super) partial: *mut u8,
}

/// A GEMM micro-kernel over a decoded panel chunk: one row block `rb` ×
/// tokens `t0..t0 + nt` (`nt` at most its tile width).
///
/// # Safety
/// The panel (the `*const u8`) holds `ch.steps` steps of row block `rb`;
/// the tokens exist; the rows are the caller's; `ch.partial` holds a slot
/// per token.
pub(super) type TileFn =
    unsafe fn(&TernaryMatrix, &QuantizedActs, &OutRows<'_>, *const u8, Chunk, usize, usize, usize);

/// One row block (two 8-row halves) × `TT` tokens over a decoded chunk.
///
/// # Safety
/// `codes` holds `ch.steps` steps of one row block; tokens `t0..t0+TT`
/// exist; the rows are the caller's; `ch.partial` holds `n_tokens` slots.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const TT: usize>(
    w: &TernaryMatrix,
    x: &QuantizedActs,
    out: &OutRows<'_>,
    codes: *const u8,
    ch: Chunk,
    rb: usize,
    t0: usize,
) {
    let stride = x.stride();
    // SAFETY: token rows t0..t0+TT exist (caller); the chunk's columns are
    // inside the padded row.
    let acts = unsafe { x.data().as_ptr().add(t0 * stride + 4 * ch.s0) };
    // Constant-index loops only, so that the accumulators live in registers.
    // SAFETY: forwarded contract.
    let mut acc32 = unsafe { tile_start::<TT>(ch, t0) };
    let mut s = 0;
    while s < ch.steps {
        let end = (s + GEMM_FLUSH).min(ch.steps);
        let mut acc16 = [[_mm256_setzero_si256(); TT]; 2];
        for s in s..end {
            // SAFETY: step `s` of the panel: 64 aligned bytes.
            let w0 = unsafe { _mm256_load_si256(codes.add(s * 64).cast()) };
            // SAFETY: as above.
            let w1 = unsafe { _mm256_load_si256(codes.add(s * 64 + 32).cast()) };
            for t in 0..TT {
                // SAFETY: column 4(s0 + s) + 3 < stride of token t0 + t.
                let a = unsafe { broadcast4(acts.add(t * stride + 4 * s)) };
                acc16[0][t] = _mm256_add_epi16(acc16[0][t], _mm256_maddubs_epi16(w0, a));
                acc16[1][t] = _mm256_add_epi16(acc16[1][t], _mm256_maddubs_epi16(w1, a));
            }
        }
        for h in 0..2 {
            for t in 0..TT {
                acc32[h][t] = _mm256_add_epi32(acc32[h][t], widen(acc16[h][t]));
            }
        }
        s = end;
    }
    // SAFETY: forwarded contract.
    unsafe { tile_end(w, x, out, ch, rb, t0, &acc32) };
}

/// Byte offset of the partial sums of half `h`, token `t` in a chunk's
/// `partial` buffer.
fn partial_slot(h: usize, t: usize) -> usize {
    t * 64 + 32 * h
}

/// A tile's starting `i32` sums (two 8-row halves × `TT` tokens from
/// `t0`): zero for a row's first chunk, else the parked partial sums.
///
/// # Safety
/// `ch.partial` holds a slot per token and tokens `t0..t0+TT` exist.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn tile_start<const TT: usize>(ch: Chunk, t0: usize) -> [[__m256i; TT]; 2] {
    let mut acc = [[_mm256_setzero_si256(); TT]; 2];
    if !ch.first {
        for h in 0..2 {
            for t in 0..TT {
                // SAFETY: `partial` holds a slot per token (caller); aligned.
                acc[h][t] =
                    unsafe { _mm256_load_si256(ch.partial.add(partial_slot(h, t0 + t)).cast()) };
            }
        }
    }
    acc
}

/// Ends a tile: parks its sums for the next chunk, or (last chunk) turns
/// them into the outputs of row block `rb`'s real rows.
///
/// # Safety
/// As [`tile_start`]; the rows of `rb` are the caller's.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn tile_end<const TT: usize>(
    w: &TernaryMatrix,
    x: &QuantizedActs,
    out: &OutRows<'_>,
    ch: Chunk,
    rb: usize,
    t0: usize,
    acc: &[[__m256i; TT]; 2],
) {
    for h in 0..2 {
        let r0 = rb * BLOCK_ROWS + 8 * h;
        for t in 0..TT {
            let tt = t0 + t;
            if !ch.last {
                // SAFETY: `partial` holds a slot per token (caller); aligned.
                unsafe {
                    _mm256_store_si256(ch.partial.add(partial_slot(h, tt)).cast(), acc[h][t])
                };
            } else if r0 < w.rows() {
                // SAFETY: rows r0..r0+8 belong to row block `rb` (the
                // caller's); `finish` touches only the real ones.
                unsafe {
                    finish(
                        acc[h][t],
                        x.sums()[tt],
                        x.scales()[tt],
                        w.rule(),
                        w.scales().as_ptr().add(r0),
                        w.rows() - r0,
                        out.ptr(tt, r0),
                    );
                }
            }
        }
    }
}

/// The AVX2 micro-kernel for `nt` ≤ [`TILE_TOKENS`] tokens ([`TileFn`]).
///
/// # Safety
/// As [`TileFn`]; the CPU supports AVX2.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_any(
    w: &TernaryMatrix,
    x: &QuantizedActs,
    out: &OutRows<'_>,
    p: *const u8,
    ch: Chunk,
    rb: usize,
    t0: usize,
    nt: usize,
) {
    // SAFETY: forwarded contract.
    unsafe {
        match nt {
            1 => tile::<1>(w, x, out, p, ch, rb, t0),
            2 => tile::<2>(w, x, out, p, ch, rb, t0),
            3 => tile::<3>(w, x, out, p, ch, rb, t0),
            4 => tile::<4>(w, x, out, p, ch, rb, t0),
            5 => tile::<5>(w, x, out, p, ch, rb, t0),
            _ => tile::<6>(w, x, out, p, ch, rb, t0),
        }
    }
}

/// Panel-decoding product for many tokens (either layout).
///
/// # Safety
/// The contract of [`matmul`].
#[target_feature(enable = "avx2,fma")]
unsafe fn gemm(w: &TernaryMatrix, x: &QuantizedActs, out: &OutRows<'_>, blocks: Range<usize>) {
    // SAFETY: forwarded contract; `tile_any` runs on this CPU (AVX2).
    unsafe { gemm_with(w, x, out, blocks, CHUNK_BYTES, TILE_TOKENS, tile_any) }
}

/// The GEMM driver shared with the AVX-VNNI level: decodes column chunks of
/// `chunk_bytes` of each row block into a panel (either layout) and runs
/// `tile` over it for every `tile_tokens` tokens, parking partial sums of
/// long rows between chunks.
///
/// # Safety
/// The contract of [`matmul`]; `tile` may run on this CPU and handles
/// `tile_tokens` tokens.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn gemm_with(
    w: &TernaryMatrix,
    x: &QuantizedActs,
    out: &OutRows<'_>,
    blocks: Range<usize>,
    chunk_bytes: usize,
    tile_tokens: usize,
    tile: TileFn,
) {
    let col_blocks = w.col_blocks();
    let n = x.n_tokens();
    let steps = w.layout().steps_per_block();
    // Column chunks whose decoded panel stays within L1.
    let max_cb = (chunk_bytes / (steps * 64)).max(1);
    let n_chunks = col_blocks.div_ceil(max_cb);
    let chunk_cb = col_blocks.div_ceil(n_chunks);
    let panel_bytes = steps * chunk_cb * 64;
    let partial_bytes = if n_chunks > 1 { n * 64 } else { 0 };
    with_panel(panel_bytes + partial_bytes, |buf| {
        // SAFETY: the buffer holds both parts; `panel_bytes` is a multiple
        // of 64, so the second part stays aligned.
        let partial = unsafe { buf.add(panel_bytes) };
        for rb in blocks {
            for c in 0..n_chunks {
                let cbs = (c * chunk_cb).min(col_blocks)..((c + 1) * chunk_cb).min(col_blocks);
                let ch = Chunk {
                    s0: steps * cbs.start,
                    steps: steps * cbs.len(),
                    first: c == 0,
                    last: c + 1 == n_chunks,
                    partial,
                };
                // SAFETY: `buf` holds a full panel chunk and is aligned.
                unsafe { decode_panel_any(w, rb, cbs, buf) };
                let mut t0 = 0;
                while t0 < n {
                    let nt = tile_tokens.min(n - t0);
                    // SAFETY: the panel holds this chunk of row block `rb`;
                    // tokens t0..t0+nt exist; the rows of `rb` are this
                    // thread's; `partial` holds a slot per token.
                    unsafe { tile(w, x, out, buf.cast_const(), ch, rb, t0, nt) };
                    t0 += nt;
                }
            }
        }
    });
}
