//! AVX-512 VNNI ternary × int8 kernels.
//!
//! A packed 64-byte block is one `zmm`. The digit planes of its bytes come
//! from tripling (`q ← 3q mod 256`, two byte additions per digit).
//!
//! * [`gemv_linear`] (1 to 3 tokens, the decode step) mostly never extracts
//!   a digit: `3·q_d = 256·digit_d + q_{d+1}`, so
//!   `Σ digit_d·a = (3·Σ q_d·a − Σ q_{d+1}·a) / 256`, and a plane goes
//!   straight into `vpdpbusd` (unsigned bytes × broadcast activation bytes)
//!   twice. Two `vpdpbusd` per digit instead of one plus four other
//!   operations: with four of the five digits done this way (one token),
//!   the `vpdpbusd` unit and the others are both busy, and one core streams
//!   ~33 GB/s of packed weights, 1.7× the all-decoding loop below.
//! * [`gemv`] (4..=[`GEMV_MAX_TOKENS`] tokens) decodes the codes `t + 1` of
//!   digit `d` ([`codes`]: two unsigned byte compares against 86 and 171, a
//!   blend and a zero-mask), which are in the operand shape of `vpdpbusd`:
//!   lane `r` multiplies the four codes of row `r` by four activation bytes
//!   broadcast to every lane. Each block is decoded once for all tokens, with
//!   several accumulators per token. `Σ code·q − Σ q = Σ t·q`.
//! * [`gemm`] (more tokens) decodes a run of columns of one row block into a
//!   thread-local panel of codes (16 bytes per column, at most
//!   `CHUNK_BYTES`, so it stays in L1), then runs a register-blocked
//!   micro-kernel of 16 rows × [`TILE_TOKENS`] tokens over it: 12
//!   accumulators, one code load and twelve 4-byte activation broadcasts per
//!   twelve `vpdpbusd`. Partial sums of long rows wait in the panel buffer
//!   between column chunks. A lookup-layout matrix (Zen 4's) gets the same
//!   panels from [`super::avx512_lut3::decode_panel`]; up to three tokens it
//!   runs the lookup GEMV of `avx2_lut3`.

// Register-blocked loops index their accumulator arrays with constant
// ranges on purpose: after full unrolling every index is a constant and the
// arrays live in registers (iterators here made LLVM keep them on the stack).
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::ops::Range;

use super::{
    BLOCK_BYTES, BLOCK_ROWS, DIGITS, PREFETCH_BYTES, ScaleRule, TernaryLayout, TernaryMatrix,
    padded_cols, prefetch, with_panel,
};
use crate::act::QuantizedActs;
use crate::out::OutRows;

/// Largest token count that takes the streaming GEMV path.
pub(crate) const GEMV_MAX_TOKENS: usize = 8;
/// Largest token count whose lookup-layout product takes the lookup GEMV of
/// `avx2_lut3`; more tokens decode panels for [`gemm`]
/// ([`super::avx512_lut3`]).
const LUT3_GEMV_MAX_TOKENS: usize = 3;
/// Widest rows for [`gemv_linear`]: `256 · Σ code·q` must fit in an `i32`
/// (`|Σ code·q| ≤ 2 · 128 · cols`).
const LINEAR_MAX_COLS: usize = 32_000;
/// Digits of each block that [`gemv_linear`] multiplies as planes (for one
/// or two tokens); the rest it decodes to codes, balancing `vpdpbusd`
/// against the other units. One token, 2560×2560, one core: 5 planes
/// 29.8 GB/s, 4 planes 32.8, 3 planes 29.1, 2 planes 26.1.
const LINEAR_DIGITS: usize = 4;
/// The same for three tokens: 1 plane 78 µs, 2 planes 100, 3 planes 84,
/// all decoded ([`gemv`]) 84.
const LINEAR_DIGITS_3: usize = 1;
/// Row blocks decoded together for the GEMM micro-kernel.
pub(crate) const PANEL_ROW_BLOCKS: usize = 1;
/// Tokens per GEMM register tile.
pub(crate) const TILE_TOKENS: usize = 12;
/// Size of a decoded panel chunk: with the activations it touches it must
/// stay in L1 (48 KB on Zen 4/5, 48 KB on Ice Lake and later).
const CHUNK_BYTES: usize = 40 << 10;

/// The kernel entry: outputs of row blocks `blocks` for every token of `x`.
/// Matrices in the 2-bit layout (packed for AVX2) go to the AVX2 kernels.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI; `out` must be
/// `x.n_tokens() × w.rows()` and no other thread may write rows of `blocks`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn matmul(
    w: &TernaryMatrix,
    x: &QuantizedActs,
    out: &OutRows<'_>,
    blocks: Range<usize>,
) {
    let n = x.n_tokens();
    if w.layout() == TernaryLayout::Lut3 && n > lut3_gemv_max_tokens() {
        // SAFETY: forwarded contract; past the GEMV token counts the CPU has
        // VBMI (`lut3_gemv_max_tokens`).
        return unsafe { gemm(w, x, out, blocks) };
    }
    if w.layout() != TernaryLayout::Base3 {
        // SAFETY: AVX-512 (this table) implies AVX2; forwarded contract.
        return unsafe { super::avx2::matmul(w, x, out, blocks) };
    }
    if n <= GEMV_MAX_TOKENS {
        // SAFETY: forwarded contract.
        unsafe {
            let linear = padded_cols(w.cols()) <= LINEAR_MAX_COLS;
            match n {
                0 => {}
                1 if linear => gemv_linear::<1, LINEAR_DIGITS>(w, x, out, blocks),
                2 if linear => gemv_linear::<2, LINEAR_DIGITS>(w, x, out, blocks),
                3 if linear => gemv_linear::<3, LINEAR_DIGITS_3>(w, x, out, blocks),
                1 => gemv::<1, 5>(w, x, out, blocks),
                2 => gemv::<2, 5>(w, x, out, blocks),
                3 => gemv::<3, 3>(w, x, out, blocks),
                4 => gemv::<4, 2>(w, x, out, blocks),
                5 => gemv::<5, 1>(w, x, out, blocks),
                6 => gemv::<6, 1>(w, x, out, blocks),
                7 => gemv::<7, 1>(w, x, out, blocks),
                _ => gemv::<8, 1>(w, x, out, blocks),
            }
        }
    } else {
        // SAFETY: forwarded contract.
        unsafe { gemm(w, x, out, blocks) }
    }
}

/// Token counts up to this take the lookup GEMV for a lookup-layout matrix:
/// [`LUT3_GEMV_MAX_TOKENS`] where the CPU has VBMI (which the panel decoder
/// needs), every count where it has not.
pub(crate) fn lut3_gemv_max_tokens() -> usize {
    if is_x86_feature_detected!("avx512vbmi") {
        LUT3_GEMV_MAX_TOKENS
    } else {
        usize::MAX
    }
}

/// The codes `t + 1` of digit plane `q` (see the module doc).
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn codes(q: __m512i) -> __m512i {
    let k1 = _mm512_cmpge_epu8_mask(q, _mm512_set1_epi8(86));
    let k2 = _mm512_cmpge_epu8_mask(q, _mm512_set1_epi8(171u8 as i8));
    let one_or_two = _mm512_mask_blend_epi8(k2, _mm512_set1_epi8(1), _mm512_set1_epi8(2));
    _mm512_maskz_mov_epi8(k1, one_or_two)
}

/// `q ← 3q mod 256` bytewise: the next digit plane.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn triple(q: __m512i) -> __m512i {
    _mm512_add_epi8(_mm512_add_epi8(q, q), q)
}

/// Four activation bytes (columns `4s..4s+4`) broadcast to every lane.
///
/// # Safety
/// `p` must be readable for 4 bytes.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn broadcast4(p: *const i8) -> __m512i {
    // SAFETY: the caller guarantees 4 readable bytes.
    _mm512_set1_epi32(unsafe { p.cast::<i32>().read_unaligned() })
}

/// Turns 16 row sums `Σ code·q` into outputs and stores the valid rows.
///
/// # Safety
/// `scales` and `dst` must be valid for `n_valid.min(16)` elements.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[inline]
unsafe fn finish(
    acc: __m512i,
    act_sum: i32,
    s_x: f32,
    rule: ScaleRule,
    scales: *const f32,
    n_valid: usize,
    dst: *mut f32,
) {
    let mask: __mmask16 = if n_valid >= 16 {
        0xFFFF
    } else {
        (1u16 << n_valid) - 1
    };
    let f = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc, _mm512_set1_epi32(act_sum)));
    // SAFETY: masked load of the valid rows only.
    let sc = unsafe { _mm512_maskz_loadu_ps(mask, scales) };
    let sx = _mm512_set1_ps(s_x);
    let y = match rule {
        ScaleRule::Multiply => _mm512_mul_ps(_mm512_div_ps(f, sx), sc),
        ScaleRule::Divide => _mm512_div_ps(f, _mm512_mul_ps(sc, sx)),
    };
    // SAFETY: masked store of the valid rows only.
    unsafe { _mm512_mask_storeu_ps(dst, mask, y) };
}

/// Streaming product for `T` tokens: each block is decoded once. `A`
/// accumulators per token (digit `d` goes to `d % A`) keep at least eight
/// independent `vpdpbusd` chains in flight.
///
/// # Safety
/// The contract of [`matmul`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemv<const T: usize, const A: usize>(
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
        // Constant-index loops only, so that the accumulators live in
        // registers.
        let mut acc = [[_mm512_setzero_si512(); A]; T];
        for cb in 0..col_blocks {
            prefetch(base.wrapping_add(cb * BLOCK_BYTES + PREFETCH_BYTES));
            // SAFETY: block `cb` of this row block is 64 aligned bytes inside
            // `row_block(rb)` (AlignedBytes, 64-byte blocks).
            let mut q = unsafe { _mm512_load_si512(base.add(cb * BLOCK_BYTES).cast()) };
            for d in 0..DIGITS {
                let c = codes(q);
                for t in 0..T {
                    // SAFETY: column 4·(5cb + d) + 3 < padded cols ≤ stride.
                    let a = unsafe { broadcast4(acts[t].add(4 * (DIGITS * cb + d))) };
                    acc[t][d % A] = _mm512_dpbusd_epi32(acc[t][d % A], c, a);
                }
                if d + 1 < DIGITS {
                    q = triple(q);
                }
            }
        }
        let r0 = rb * BLOCK_ROWS;
        let n_valid = w.rows() - r0;
        for t in 0..T {
            let mut sum = acc[t][0];
            for j in 1..A {
                sum = _mm512_add_epi32(sum, acc[t][j]);
            }
            // SAFETY: rows r0.. of this row block are ours; `finish` touches
            // only the `n_valid` real ones.
            unsafe {
                finish(
                    sum,
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

/// Streaming product for `T` ≤ 3 tokens that multiplies the first `L` digit
/// planes without decoding them (the others go through [`codes`]): since
/// `3·q_d = 256·digit_d + q_{d+1}` for the digit planes `q_d` (the
/// tripling), `Σ digit_d·a = (3·Σ q_d·a − Σ q_{d+1}·a) / 256`. So each plane
/// goes straight into `vpdpbusd` (bytes as unsigned operands, twice: against
/// the activations of its own digit and of the previous one) and the
/// compares, blend and zero-mask of [`codes`] disappear: per block 10
/// `vpdpbusd` per token and 10 byte additions, instead of 5 `vpdpbusd` per
/// token and 28 other operations. Wrapping `i32` arithmetic is exact here:
/// only the final `3A − B` must fit, which [`LINEAR_MAX_COLS`] ensures.
/// `A` accumulators of each kind per token (digit `d` uses `d % A`): with
/// fewer, the `vpdpbusd` latency chains, not the arithmetic, set the pace.
///
/// # Safety
/// The contract of [`matmul`]; `padded_cols(w.cols()) ≤ LINEAR_MAX_COLS`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemv_linear<const T: usize, const L: usize>(
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
        // Per digit: `a` Σ q_d·act_d and `b` Σ q_{d+1}·act_d for the first
        // `L` digits, `c` Σ code_d·act_d for the others. Constant-index
        // loops only, so that they live in registers (unused ones vanish).
        let mut a = [[_mm512_setzero_si512(); DIGITS]; T];
        let mut b = [[_mm512_setzero_si512(); DIGITS]; T];
        let mut c = [[_mm512_setzero_si512(); DIGITS]; T];
        for cb in 0..col_blocks {
            prefetch(base.wrapping_add(cb * BLOCK_BYTES + PREFETCH_BYTES));
            // SAFETY: as in `gemv`.
            let mut q = unsafe { _mm512_load_si512(base.add(cb * BLOCK_BYTES).cast()) };
            for d in 0..DIGITS {
                let next = triple(q);
                let code = if d < L { q } else { codes(q) };
                for t in 0..T {
                    // SAFETY: column 4·(5cb + d) + 3 < padded cols ≤ stride.
                    let av = unsafe { broadcast4(acts[t].add(4 * (DIGITS * cb + d))) };
                    if d < L {
                        a[t][d] = _mm512_dpbusd_epi32(a[t][d], q, av);
                        b[t][d] = _mm512_dpbusd_epi32(b[t][d], next, av);
                    } else {
                        c[t][d] = _mm512_dpbusd_epi32(c[t][d], code, av);
                    }
                }
                q = next;
            }
        }
        let r0 = rb * BLOCK_ROWS;
        let n_valid = w.rows() - r0;
        for t in 0..T {
            let (mut sa, mut sb, mut sc) = (
                _mm512_setzero_si512(),
                _mm512_setzero_si512(),
                _mm512_setzero_si512(),
            );
            for d in 0..DIGITS {
                if d < L {
                    sa = _mm512_add_epi32(sa, a[t][d]);
                    sb = _mm512_add_epi32(sb, b[t][d]);
                } else {
                    sc = _mm512_add_epi32(sc, c[t][d]);
                }
            }
            let three_a = _mm512_add_epi32(_mm512_add_epi32(sa, sa), sa);
            let linear = _mm512_srai_epi32::<8>(_mm512_sub_epi32(three_a, sb));
            let sum = _mm512_add_epi32(linear, sc);
            // SAFETY: as in `gemv`.
            unsafe {
                finish(
                    sum,
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

/// Decodes column blocks `cbs` of row blocks `rb0..rb0+nrb` into `buf`:
/// step `s` (columns `4s..4s+4`, counted from the chunk start) of row block
/// `i` at `buf[(s·nrb + i)·64..]`.
///
/// # Safety
/// `buf` must be 64-byte aligned and hold `nrb · 5 · cbs.len() · 64` bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn decode_panel(w: &TernaryMatrix, rb0: usize, nrb: usize, cbs: Range<usize>, buf: *mut u8) {
    for i in 0..nrb {
        let base = w.row_block(rb0 + i).as_ptr();
        for (c, cb) in cbs.clone().enumerate() {
            // SAFETY: as in `gemv`.
            let mut q = unsafe { _mm512_load_si512(base.add(cb * BLOCK_BYTES).cast()) };
            for d in 0..DIGITS {
                let s = DIGITS * c + d;
                // SAFETY: within the buffer by the caller's contract; aligned.
                unsafe { _mm512_store_si512(buf.add((s * nrb + i) * 64).cast(), codes(q)) };
                q = triple(q);
            }
        }
    }
}

/// Where a tile's accumulators come from and go to when the columns are
/// processed in chunks.
#[derive(Clone, Copy)]
struct Chunk {
    /// First step (4-column group) of the chunk.
    s0: usize,
    /// Steps in the chunk.
    steps: usize,
    /// Start from zero (first chunk) or from `partial`.
    first: bool,
    /// Finish into `out` (last chunk) or save into `partial`.
    last: bool,
    /// Partial sums: one 64-byte vector per (row block of the panel, token).
    partial: *mut u8,
}

/// `R` row blocks × `TT` tokens over a decoded panel chunk.
///
/// # Safety
/// `codes` is a panel of `R` row blocks and `ch.steps` steps; every token
/// `t0..t0+TT` exists; the rows are the caller's; `ch.partial` holds
/// `R · n_tokens` vectors.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile<const R: usize, const TT: usize>(
    w: &TernaryMatrix,
    x: &QuantizedActs,
    out: &OutRows<'_>,
    codes: *const u8,
    ch: Chunk,
    rb0: usize,
    t0: usize,
) {
    let stride = x.stride();
    let n = x.n_tokens();
    let slot = |i: usize, t: usize| (i * n + t0 + t) * 64;
    // SAFETY: token rows t0..t0+TT exist (caller); the chunk's columns are
    // inside the padded row.
    let acts = unsafe { x.data().as_ptr().add(t0 * stride + 4 * ch.s0) };
    // Constant-index loops only, so that the accumulators live in registers.
    let mut acc = [[_mm512_setzero_si512(); TT]; R];
    if !ch.first {
        for i in 0..R {
            for t in 0..TT {
                // SAFETY: `partial` holds R · n aligned vectors (caller).
                acc[i][t] = unsafe { _mm512_load_si512(ch.partial.add(slot(i, t)).cast()) };
            }
        }
    }
    for s in 0..ch.steps {
        let mut wv = [_mm512_setzero_si512(); R];
        for i in 0..R {
            // SAFETY: step `s` of the panel holds R aligned vectors.
            wv[i] = unsafe { _mm512_load_si512(codes.add((s * R + i) * 64).cast()) };
        }
        for t in 0..TT {
            // SAFETY: column 4(s0 + s) + 3 < stride of token t0 + t.
            let a = unsafe { broadcast4(acts.add(t * stride + 4 * s)) };
            for i in 0..R {
                acc[i][t] = _mm512_dpbusd_epi32(acc[i][t], wv[i], a);
            }
        }
    }
    for i in 0..R {
        let r0 = (rb0 + i) * BLOCK_ROWS;
        let n_valid = w.rows() - r0;
        for t in 0..TT {
            let tt = t0 + t;
            if ch.last {
                // SAFETY: as in `gemv`.
                unsafe {
                    finish(
                        acc[i][t],
                        x.sums()[tt],
                        x.scales()[tt],
                        w.rule(),
                        w.scales().as_ptr().add(r0),
                        n_valid,
                        out.ptr(tt, r0),
                    );
                }
            } else {
                // SAFETY: as above.
                unsafe { _mm512_store_si512(ch.partial.add(slot(i, t)).cast(), acc[i][t]) };
            }
        }
    }
}

macro_rules! tile_for {
    ($r:literal, $nt:expr, $args:tt) => {
        match $nt {
            1 => tile::<$r, 1> $args,
            2 => tile::<$r, 2> $args,
            3 => tile::<$r, 3> $args,
            4 => tile::<$r, 4> $args,
            5 => tile::<$r, 5> $args,
            6 => tile::<$r, 6> $args,
            7 => tile::<$r, 7> $args,
            8 => tile::<$r, 8> $args,
            9 => tile::<$r, 9> $args,
            10 => tile::<$r, 10> $args,
            11 => tile::<$r, 11> $args,
            _ => tile::<$r, 12> $args,
        }
    };
}

/// Panel-decoding product for many tokens, of a base-3 matrix or (on a CPU
/// with VBMI) a lookup-layout one.
///
/// # Safety
/// The contract of [`matmul`]; `w` is in the base-3 layout, or in the lookup
/// layout and the CPU has AVX-512 VBMI.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemm(w: &TernaryMatrix, x: &QuantizedActs, out: &OutRows<'_>, blocks: Range<usize>) {
    let col_blocks = w.col_blocks();
    let n = x.n_tokens();
    let steps = w.layout().steps_per_block();
    // Column chunks whose decoded panel stays within L1.
    let max_cb = (CHUNK_BYTES / (PANEL_ROW_BLOCKS * steps * 64)).max(1);
    let n_chunks = col_blocks.div_ceil(max_cb);
    let chunk_cb = col_blocks.div_ceil(n_chunks);
    let panel_bytes = PANEL_ROW_BLOCKS * steps * chunk_cb * 64;
    let partial_bytes = if n_chunks > 1 {
        PANEL_ROW_BLOCKS * n * 64
    } else {
        0
    };
    with_panel(panel_bytes + partial_bytes, |buf| {
        // SAFETY: the buffer holds both parts; `panel_bytes` is a multiple
        // of 64, so the second part stays aligned.
        let partial = unsafe { buf.add(panel_bytes) };
        let mut rb = blocks.start;
        while rb < blocks.end {
            let nrb = PANEL_ROW_BLOCKS.min(blocks.end - rb);
            for c in 0..n_chunks {
                let cbs = (c * chunk_cb).min(col_blocks)..((c + 1) * chunk_cb).min(col_blocks);
                let ch = Chunk {
                    s0: steps * cbs.start,
                    steps: steps * cbs.len(),
                    first: c == 0,
                    last: c + 1 == n_chunks,
                    partial,
                };
                // SAFETY: `buf` holds a full panel chunk and is aligned; a
                // lookup-layout matrix comes here only on a CPU with VBMI
                // (`matmul`).
                unsafe {
                    if w.layout() == TernaryLayout::Lut3 {
                        super::avx512_lut3::decode_panel(w, rb, nrb, cbs, buf)
                    } else {
                        decode_panel(w, rb, nrb, cbs, buf)
                    }
                };
                let mut t0 = 0;
                while t0 < n {
                    let nt = TILE_TOKENS.min(n - t0);
                    // SAFETY: the panel holds `nrb` decoded row blocks of this
                    // chunk; tokens t0..t0+nt exist; rows of `rb..rb+nrb` are
                    // this thread's; `partial` holds nrb · n vectors.
                    unsafe {
                        if nrb == 2 {
                            tile_for!(2, nt, (w, x, out, buf.cast_const(), ch, rb, t0))
                        } else {
                            tile_for!(1, nt, (w, x, out, buf.cast_const(), ch, rb, t0))
                        }
                    }
                    t0 += nt;
                }
            }
            rb += nrb;
        }
    });
}
