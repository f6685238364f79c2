//! Ternary × int8 kernels for AVX2 CPUs with AVX-VNNI (the VEX-encoded
//! `vpdpbusd` on 256-bit vectors, without AVX-512): Intel client cores from
//! Alder Lake on (and their Gracemont/Crestmont E-cores), Sapphire Rapids,
//! Zen 5.
//!
//! The level keeps the AVX2 level's 2-bit layout and panel format and swaps
//! the multiply: `vpdpbusd` multiplies unsigned codes by signed activation
//! bytes and adds the four products of each lane into an `i32` accumulator
//! in one instruction, where AVX2 needs `vpmaddubsw` into `i16` pairs, a
//! `vpaddw`, and a `vpmaddwd` widening every few steps. No `i16` stage also
//! means no flush schedule and no saturation bound.
//!
//! * [`gemv`] (1..=[`GEMV_MAX_TOKENS`] tokens, 2-bit layout): per 32 bytes
//!   (8 rows × 16 columns) one `vpsrlw` and four `vpand` give the four code
//!   planes, those of bits 2..4 multiplied by 4 (as in `avx2_two_bit`); each
//!   goes into one `vpdpbusd` against its four broadcast activation bytes.
//!   The ×4 planes have their own accumulators, divided back by an exact
//!   arithmetic shift at the end (their sums are multiples of 4).
//! * [`gemm`] (more tokens, either layout): the AVX2 panel decoders write a
//!   run of columns of one row block as plain codes into L1, and a 16-row ×
//!   [`TILE_TOKENS`]-token micro-kernel runs over it: two code loads, six
//!   broadcasts and twelve `vpdpbusd` per step (4 columns), against twelve
//!   `vpmaddubsw` and twelve `vpaddw` (plus the widening) on AVX2.
//!
//! Base-3 matrices decode to the same panels for the GEMM; their GEMV runs
//! the AVX2 one (the plane identity of `avx512::gemv_linear` needs as many
//! `vpdpbusd` per byte as this one has per 2-bit byte, at half the width,
//! so the 2-bit layout is this level's choice, as it is AVX2's).

// Register-blocked loops index their accumulator arrays with constant
// ranges on purpose: after full unrolling every index is a constant and the
// arrays live in registers.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::ops::Range;

use super::avx2::{self, Chunk, broadcast4, finish};
use super::two_bit::{BLOCK_COLS, CODES};
use super::{BLOCK_BYTES, BLOCK_ROWS, PREFETCH_BYTES, TernaryLayout, TernaryMatrix, prefetch};
use crate::act::QuantizedActs;
use crate::out::OutRows;

/// Largest token count that takes the streaming GEMV path (2-bit layout).
/// 2560×2560, two threads (Xeon, Sapphire Rapids), µs: GEMV 25, 45, 98,
/// 129 for 1–4 tokens, GEMM 111, 119, 113 for 3–5.
pub(crate) const GEMV_MAX_TOKENS: usize = 3;
/// Tokens per GEMM register tile: 12 accumulators, two code vectors and a
/// broadcast fill 15 of the 16 `ymm` registers.
pub(crate) const TILE_TOKENS: usize = 6;
/// Size of a decoded panel chunk: with the activations it touches it must
/// stay in L1 (48 KB on Golden Cove and Zen 5, 32 KB on Gracemont).
const CHUNK_BYTES: usize = 32 << 10;

/// The kernel entry: outputs of row blocks `blocks` for every token of `x`.
///
/// # Safety
/// The CPU must support AVX2, FMA and AVX-VNNI; `out` must be
/// `x.n_tokens() × w.rows()` and no other thread may write rows of `blocks`.
#[target_feature(enable = "avx2,fma,avxvnni")]
pub(crate) unsafe fn matmul(
    w: &TernaryMatrix,
    x: &QuantizedActs,
    out: &OutRows<'_>,
    blocks: Range<usize>,
) {
    let n = x.n_tokens();
    // SAFETY: forwarded contract (AVX-VNNI here implies the AVX2 level).
    unsafe {
        match (w.layout(), n) {
            (_, 0) => {}
            (TernaryLayout::TwoBit, 1) => gemv::<1, 4>(w, x, out, blocks),
            (TernaryLayout::TwoBit, 2) => gemv::<2, 2>(w, x, out, blocks),
            (TernaryLayout::TwoBit, 3) => gemv::<3, 2>(w, x, out, blocks),
            (TernaryLayout::Base3, n) if n <= avx2::GEMV_MAX_TOKENS_BASE3 => {
                avx2::matmul(w, x, out, blocks)
            }
            (TernaryLayout::Lut3, _) => avx2::matmul(w, x, out, blocks),
            _ => gemm(w, x, out, blocks),
        }
    }
}

/// Streaming product for `T` tokens over the 2-bit layout, `A` accumulators
/// per token and 8-row half (plane `d` goes to `d % A`; even slots hold
/// plain sums, odd ones ×4 sums). Four per token when alone keep four
/// independent `vpdpbusd` chains per half in flight.
///
/// Exactness: a lane gains at most `4 · 2 · 128` per ×4 plane and column
/// block, so the `i32` sums are exact for rows of up to 2^20 columns
/// (the engine's widest is 27,648).
///
/// # Safety
/// The contract of [`matmul`]; `w` is in the 2-bit layout and
/// `x.n_tokens() == T`.
#[target_feature(enable = "avx2,fma,avxvnni")]
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
        // [token][half][slot]; constant-index loops only.
        let mut acc = [[[_mm256_setzero_si256(); A]; 2]; T];
        for cb in 0..col_blocks {
            prefetch(base.wrapping_add(cb * BLOCK_BYTES + PREFETCH_BYTES));
            for h in 0..2 {
                // SAFETY: block `cb` lies inside the row block.
                let planes = unsafe { super::avx2_two_bit::code_planes(base, cb, h) };
                for t in 0..T {
                    for d in 0..CODES {
                        // SAFETY: column 16·cb + 4·d + 3 < padded columns ≤
                        // stride (the activations are zero-padded).
                        let a = unsafe { broadcast4(acts[t].add(BLOCK_COLS * cb + 4 * d)) };
                        let j = d % A;
                        acc[t][h][j] = _mm256_dpbusd_avx_epi32(acc[t][h][j], planes[d], a);
                    }
                }
            }
        }
        for h in 0..2 {
            let r0 = rb * BLOCK_ROWS + 8 * h;
            if r0 >= w.rows() {
                continue;
            }
            for t in 0..T {
                let (mut plain, mut times4) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                for j in 0..A {
                    if j % 2 == 0 {
                        plain = _mm256_add_epi32(plain, acc[t][h][j]);
                    } else {
                        times4 = _mm256_add_epi32(times4, acc[t][h][j]);
                    }
                }
                // The ×4 sums are multiples of 4: the shift is exact.
                let sum = _mm256_add_epi32(plain, _mm256_srai_epi32::<2>(times4));
                // SAFETY: rows r0..r0+8 belong to this row block (ours);
                // `finish` touches only the real ones.
                unsafe {
                    finish(
                        sum,
                        x.sums()[t],
                        x.scales()[t],
                        w.rule(),
                        w.scales().as_ptr().add(r0),
                        w.rows() - r0,
                        out.ptr(t, r0),
                    );
                }
            }
        }
    }
}

/// One row block (two 8-row halves) × `TT` tokens over a decoded chunk.
///
/// # Safety
/// `codes` holds `ch.steps` steps of one row block; tokens `t0..t0+TT`
/// exist; the rows are the caller's; `ch.partial` holds `n_tokens` slots.
#[target_feature(enable = "avx2,fma,avxvnni")]
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
    let mut acc = unsafe { avx2::tile_start::<TT>(ch, t0) };
    for s in 0..ch.steps {
        // SAFETY: step `s` of the panel: 64 aligned bytes.
        let w0 = unsafe { _mm256_load_si256(codes.add(s * 64).cast()) };
        // SAFETY: as above.
        let w1 = unsafe { _mm256_load_si256(codes.add(s * 64 + 32).cast()) };
        for t in 0..TT {
            // SAFETY: column 4(s0 + s) + 3 < stride of token t0 + t.
            let a = unsafe { broadcast4(acts.add(t * stride + 4 * s)) };
            acc[0][t] = _mm256_dpbusd_avx_epi32(acc[0][t], w0, a);
            acc[1][t] = _mm256_dpbusd_avx_epi32(acc[1][t], w1, a);
        }
    }
    // SAFETY: forwarded contract.
    unsafe { avx2::tile_end(w, x, out, ch, rb, t0, &acc) };
}

/// The micro-kernel for `nt` ≤ [`TILE_TOKENS`] tokens (`avx2::TileFn`).
///
/// # Safety
/// As `avx2::TileFn`; the CPU supports AVX-VNNI.
#[target_feature(enable = "avx2,fma,avxvnni")]
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

/// Panel-decoding product for many tokens (either layout): the AVX2
/// driver with this level's micro-kernel.
///
/// # Safety
/// The contract of [`matmul`].
#[target_feature(enable = "avx2,fma,avxvnni")]
unsafe fn gemm(w: &TernaryMatrix, x: &QuantizedActs, out: &OutRows<'_>, blocks: Range<usize>) {
    // SAFETY: forwarded contract; `tile_any` runs on this CPU (AVX-VNNI).
    unsafe { avx2::gemm_with(w, x, out, blocks, CHUNK_BYTES, TILE_TOKENS, tile_any) }
}
