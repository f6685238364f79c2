//! Ternary weight matrices in the engine's own packed layout, and the
//! products of those matrices with int8 activations.
//!
//! Every source format (I2_S, TL1, TL2, TQ1_0, TQ2_0, Hugging Face packed,
//! bf16 masters) is decoded to a plain `{-1, 0, +1}` matrix by the format
//! layer and packed here, once, at load time, in the layout the kernel level
//! runs fastest ([`crate::Kernels::pack_ternary`]). The layouts are chosen
//! for the kernels, not for any file. The base-3 one
//! ([`TernaryLayout::Base3`]):
//!
//! * **1.6 bits per weight.** Five ternary digits share one byte, stored as
//!   the fixed-point fraction `ceil(n · 256 / 243)` of their base-3 value `n`
//!   (the trick llama.cpp's TQ1_0 uses). Digit `d` of byte `b` comes back as
//!   `(3 · ((b · 3^d) mod 256)) >> 8`: the plane `q = b · 3^d mod 256` is
//!   obtained by tripling bytes (two byte additions per digit), and the digit
//!   is `[q ≥ 86] + [q ≥ 171]`. (All 256 byte values occur as planes, so no
//!   table on the top bits of `q` can replace the two compares; checked
//!   exhaustively.) Decoding a 2B-parameter model per token is memory-bound,
//!   so the 20 % fewer bytes than a 2-bit layout are ~20 % more tokens per
//!   second.
//! * **Blocks of 16 rows × 20 columns in 64 bytes.** Byte `j` of a block
//!   belongs to row `j / 4`; its five digits are the columns `j % 4 + 4·d`,
//!   `d = 0..5`. Decoding digit `d` of all 64 bytes therefore yields, for 16
//!   rows, four consecutive columns each: exactly the operand shape of an
//!   AVX-512 VNNI `vpdpbusd` (16 lanes × 4 bytes) against four broadcast
//!   activation bytes, with the sum of each lane belonging to one row. AVX2
//!   reads the same block as two 8-row halves (`vpmaddubsw` + `vpmaddwd`).
//! * Blocks are stored row-block-major: the blocks of rows `16·i .. 16·i+16`
//!   are contiguous, so a thread that owns a range of rows streams one
//!   contiguous region of memory.
//! * Digits hold the code `t + 1` in `{0, 1, 2}` (unsigned, as `vpdpbusd`
//!   and `vpmaddubsw` want their first operand); `Σ code·q − Σ q = Σ t·q`,
//!   with `Σ q` computed by the quantiser. Padding rows and columns hold code
//!   1 (`t = 0`) and the activations are zero-padded, so padding never
//!   contributes.
//!
//! **The 2-bit layout** ([`TernaryLayout::TwoBit`], [`two_bit`]): the same
//! blocks of 16 rows and the same byte-to-row mapping, but four 2-bit codes
//! per byte (16 columns per block). Without VNNI, turning base-3 digits
//! into codes costs more vector operations than the 20 % of bytes it saves:
//! the AVX2 GEMV on the base-3 layout streams about a third of what a core
//! reads (6.2 GB/s on a Zen 2, 10.4 of 33 on a Zen 5), the 2-bit one is
//! decoded by a shift and four masks per 32 bytes (the reasoning in
//! [`two_bit`]). The AVX-VNNI level (AVX2 CPUs with the 256-bit
//! `vpdpbusd`: Alder Lake and later Intel client cores) packs the 2-bit
//! layout and multiplies with `vpdpbusd` (`avx_vnni`).
//!
//! **The lookup layout for AVX2 without VNNI** ([`TernaryLayout::Lut3`],
//! [`lut3`]): three weights as a 4-bit pattern index up to sign plus a sign
//! bit, 1.67 bits per weight, in blocks of 16 rows × 24 columns (80 bytes),
//! multiplied by `vpshufb` lookups in per-token tables of the activations'
//! nibbles (`avx2_lut3`). There the 2-bit GEMV is bound by the core's one
//! integer-multiply port (four `vpmaddubsw` per 128 weights); the lookups
//! spread over all four vector ports and take fewer cycles per weight than
//! the multiplies, for 17 % fewer bytes. Measured below.
//!
//! Every level reads every layout (a 2-bit or lookup matrix on the AVX-512
//! level runs the AVX2 kernels, except that prompts of a lookup matrix
//! decode its blocks into the base-3 GEMM's panels where the CPU has VBMI,
//! [`avx512_lut3`]), so the choice only ever costs speed, never
//! correctness. The AVX-512 level packs the lookup layout on Zen 4, whose
//! 512-bit operations run as two halves (`Kernels::ternary_layout`).
//!
//! Scales are per output row (one per tensor in every real format; per row
//! makes fused Q/K/V and gate/up matrices possible), applied by a
//! [`ScaleRule`] that reproduces the source format's arithmetic. Every SIMD
//! kernel produces the scalar reference's integer sums and applies the rule
//! with the same f32 operations, so outputs are bit-identical at every level
//! (property-tested in `tests/equivalence.rs`).
//!
//! # Kernels
//!
//! * **GEMV** (decoding: up to 8 tokens on AVX-512, 2 on AVX2): each block is
//!   decoded once and multiplied into every token; the weights stream from
//!   memory exactly once, in long contiguous runs per thread. For one or two
//!   tokens the AVX-512 kernel skips digit extraction altogether: since
//!   `3·q_d = 256·digit_d + q_{d+1}`, the digit planes themselves go into
//!   `vpdpbusd` and one shift at the end recovers `Σ digit·q` (see
//!   `avx512::gemv_linear`). That took one core from 19 to 33 GB/s. (The
//!   identity does not help `vpmaddubsw`, which saturates on plane bytes up
//!   to 255: hence the 2-bit layout on AVX2, see `avx2_two_bit`.)
//! * **GEMM** (prompt processing): a run of columns of one row block is
//!   decoded into a thread-local panel of codes (16 bytes per column, at most
//!   40 KB on AVX-512 / 32 KB on AVX2, so it stays in L1 together with the
//!   activations it meets), then a register-blocked micro-kernel reuses each
//!   decoded vector across a tile of tokens: 16 rows × 12 tokens on AVX-512
//!   (12 `zmm` accumulators, one code load and twelve broadcast activation
//!   dwords per twelve `vpdpbusd`), 16 rows × 6 tokens on AVX2 (`i16`
//!   accumulators flushed to `i32` every 32 steps). Longer rows are processed
//!   in column chunks with partial sums parked in the panel buffer. Threads
//!   claim row blocks dynamically. (Two row blocks per tile, which halves the
//!   activation loads, made LLVM keep the 24 accumulators on the stack and
//!   ran 2.7× slower.) The panel format is the same for the base-3 and
//!   2-bit layouts (step `s` = columns `4s..4s+4` of 16 rows), so one
//!   micro-kernel serves both.
//! * **Lookup layout** (AVX2 without VNNI, `avx2_lut3`): no panels. One
//!   token streams the weights as in a GEMV; a few tokens take passes of
//!   three over the rows, each pass reading the weights again (from L2 or
//!   L3 for a thread's claim). Prompts go in blocks of 32 tokens to the
//!   token-lane kernel (`avx2_lut3_prompt`, below), which beats both.
//!
//! # Lookup tables
//!
//! `benches/lut_gemv.rs` implements the T-MAC / TL1 family on AVX-512: 2-bit
//! pair indices, per-token 16-entry `vpshufb` tables of pair sums split into
//! low and high bytes, widened with `vpmaddubsw`; exact. One thread
//! (EPYC Zen 5, loaded machine, best of 30):
//!
//! | GEMV, 1 token            | base-3, digit decode | base-3, planes (kept) | LUT 2-bit          |
//! |--------------------------|----------------------|-----------------------|--------------------|
//! | 13824×2560, L3-resident  | 368 µs, 96 GMAC/s    | 218 µs, 163 GMAC/s    | 270 µs, 131 GMAC/s |
//! | 8 × 13824×2560, from DRAM| 3.11 ms, 91 GMAC/s   | 2.03 ms, 139 GMAC/s   | 4.51 ms, 63 GMAC/s |
//!
//! The table lookups cost fewer instructions per weight than decoding base-3
//! digits (1.4× the MAC rate when the weights sit in cache), but the
//! plane identity of `gemv_linear` removes the decoding and beats the
//! lookups even in cache, while reading 20 % fewer bytes. From DRAM the 25 %
//! more bytes of a 2-bit layout cost more than any decode saving. For prompt
//! processing both families decode once per panel, and `vpdpbusd` on decoded
//! codes is the faster inner loop. So the base-3 layout and the multiply-add
//! kernels are used for every shape on AVX-512.
//!
//! **Prompt processing on AVX2, measured again** (issue 13:
//! `benches/lut_gemm.rs`, Zen 2, one core at 3.34 GHz, 128 tokens). An
//! exact lookup GEMM (sign planes `w = P − N` as 4-bit column masks,
//! activations split into two nibbles so that every table entry fits a byte,
//! 8 rows × 6 tokens per tile, tables reused by every row group from L1;
//! method in the bench's doc) reaches 70–78 GMAC/s in its lookups alone and
//! 55–63 with its tables built, against 90–97 GMAC/s for the production
//! `vpmaddubsw` GEMM, panel decoding included. The same bench measures the
//! issue rates per cycle: `vpmaddubsw` 1, `vpmaddwd` 1, `vpshufb` 2,
//! `vpaddb` 3, `vpsignb` 2. The multiply kernel needs two instructions per
//! 32 MACs, one on the single multiply port: its bound is 32 MAC/cycle and
//! it runs at 28. A `vpshufb` yields one byte per lane, so lossless int8
//! activations need a lookup per nibble and per sign plane: per 32 MACs one
//! `vpshufb`, one `vpaddb` and a quarter of a `vpmaddubsw` and a `vpaddw`,
//! 2.5 instructions spread over the four vector ports. That bounds it at
//! about 51 MAC/cycle before its loads and tables (1.6× the multiply
//! kernel), and a hybrid issuing both kinds shares the same four ports.
//! Prefill at 2× bitnet.cpp on these two cores (≥ 135 tok/s of 2.09 GMAC)
//! needs 42 MAC/cycle per core sustained over the whole forward pass,
//! attention and norms included: beyond both methods here.
//!
//! **The lookup layout, kept on AVX2** (issue 13). What made the lookups
//! lose above was their bytes (2 bits and more per weight), their tables
//! (rebuilt per tile) and their sign handling (a lookup per sign plane).
//! [`lut3`] folds three weights into one 4-bit index up to sign, so one
//! `vpshufb` covers 48 weights (16 rows × three columns, per 128-bit lane),
//! applies the sign with one `vpsignb` from a sign bit per group, and stores
//! 1.67 bits per weight; the tables are built once per token and matrix
//! (about 1 µs for 2560 columns). Per 96 weights and token: two `vpshufb`,
//! two `vpsignb`, two `vpaddb`, the index and sign-mask extraction (about
//! three operations shared by the tokens of a pass) and a quarter of the
//! widening; about four vector operations per cycle issue on a Zen 2.
//! Measured there, one core (`examples/probe.rs`, 2560 × 2560, L3-resident,
//! same run, the previous 2-bit kernels → the lookup kernels): one token
//! 83.0 → 74.6 µs (79 → 88 GMAC/s), two 135.8 → 134.6, three 306 → 186
//! (the 2-bit GEMM → a pass of three), eight 646 → 522, 128 tokens
//! 8.80 → 8.09 ms (95 → 104 GMAC/s, 31 MAC/cycle). Still short of the
//! 42 MAC/cycle that 2× prefill needs.
//!
//! **Token-lane tables for prompts** (issue 13, `avx2_lut3_prompt`). Every
//! method above keeps rows in the lanes and pays per weight for getting
//! one token's int8 activations into them. With 32 tokens in the `i16`
//! lanes of two registers instead, a group of three columns gets a table
//! of its 27 sums `t0·a0 + t1·a1 + t2·a2` (exact in `i16`), and a row's
//! weight triple becomes one table entry: 96 multiply-accumulates per two
//! `vpaddw` with memory operands. Nothing in that loop is a multiply or a
//! shuffle; it is bound by the two loads per cycle, and the tables (built
//! per 16 groups, reused by every row of a thread's claim) and the index
//! decoding (two `vpshufb` per 32 triples) are shared across the tokens.
//! Same file, same layout: on a Zen 5 at the forced AVX2 level, one core,
//! 2560 × 2560 × 128 tokens, 5.46 → 3.30 ms (153 → 254 GMAC/s; 487 on two
//! cores); on a Zen 4, 125 → 205 GMAC/s.
//!
//! # Measured (this machine)
//!
//! AMD EPYC (Zen 5, 2 cores, AVX-512 with VNNI), rustc 1.95, best of
//! 20–500 runs with other jobs sharing the machine (in a quiet moment the
//! medians are within a few per cent; otherwise two-thread figures
//! especially suffer). Bandwidth ceiling (`stream_read`, a plain sum over
//! 512 MB): 33 GB/s on one core, 41–47 GB/s on two; the F16 and int8 head
//! products have streamed up to 63–66 GB/s on two cores. Sources: `cargo
//! bench -p bitnet-kernels --bench kernels` and
//! `examples/{probe,decode_probe}.rs`.
//!
//! GEMV, one token, GB/s of packed weights (base-3 layout on AVX-512; on
//! AVX2 the 2-bit layout, and in brackets the base-3 layout it ran before,
//! which also means 25 % fewer weights per byte):
//!
//! | shape              | AVX-512 1t | AVX-512 2t | AVX2 1t      | AVX2 2t      | scalar |
//! |--------------------|-----------:|-----------:|-------------:|-------------:|-------:|
//! | 640×2560 (K, V)    | 32.9       | 60.3       | 36.7 (10.2)  |              |        |
//! | 2560×2560 (Q, O)   | 33.3       | 65.3       | 36.6 (10.2)  | 72.3 (20.5)  | 0.30   |
//! | 3840×2560 (QKV)    |            | 64.5       |              |              |        |
//! | 13824×2560 (g/u)   | 32.3       | 63.7       | 37.5 (10.0)  | 61.5 (20.2)  |        |
//! | 2560×6912 (down)   | 32.9       | 64.5       | 37.6 (10.1)  | 72.1 (19.8)  |        |
//! | 30 layers, DRAM    | 25.9       | **39.3**   | 27.4 (8.9)   | 39.7 (16.0)  |        |
//!
//! In multiply-accumulates (one core, L3-resident, quiet machine, fastest
//! of 100): the AVX2 GEMV does 146–150 GMAC/s on the 2-bit layout against
//! 50–51 on the base-3 one, the AVX-512 GEMV 181. Instructions per weight
//! (valgrind, 2560×2560): AVX2 base-3 0.375 (1.87 per byte), AVX2 2-bit
//! 0.159 (0.63 per byte). The 30 layers are 417 MB in the base-3 layout,
//! 521 MB in the 2-bit one: per token 19.1 ms on one core and 13.2 ms on
//! two with AVX2 (47.0 and 26.2 ms before), 14.9 and 10.3 ms with AVX-512.
//! On this machine both are near the memory ceiling; on an AVX2-only Zen 2
//! (14 GB/s per core, issue 13) the base-3 AVX2 GEMV was compute-bound at
//! 6.2 GB/s, and the 2-bit one, with 2.4× fewer instructions per weight,
//! has the margin to reach memory speed there. Measured since on such a
//! Zen 2 (2 cores, 3.0 GHz, streaming read 13–16 GB/s on one core, 22–30 on
//! two; L3-resident `cargo bench ... ternary_gemv`): base-3 5.6–5.8 GB/s on
//! one core, 2-bit 17.9–18.7 on one and 35.0–36.0 on two; the 30 layers
//! from DRAM (`decode_probe`) 13.9 GB/s on one core and 23.7 on two, and
//! since each thread reads its rows as two streams (`avx2_two_bit::gemv`)
//! 16.3–17.1 and 29.5–31.1 (15.5–16.2 and 25.4–29.9 for one stream in the
//! same session; a plain read there gets 15–16 GB/s per core from one
//! stream, 20–25 from four: `examples/stream_read.rs`). For
//! the base-3 layout to win there on two threads, its GEMV would need 8.7 GB/s
//! per core of compute. Its digit decoding (about six byte additions or
//! compares per digit, on the three ports that also issue `vpmaddubsw`)
//! gives 5.7; a leaner decode (five per digit, the code signs folded into
//! a per-row constant) counts out near 10 cycles per 32 bytes, 9–10 GB/s:
//! a few per cent over break-even on two threads, still behind on one.
//! The lookup layout (1.67 bits, 434 MB for the 30 layers) replaced the
//! 2-bit one on that Zen 2 (3.3 GHz; builds alternating in one session,
//! `decode_probe avx2 THREADS`): one token 31.0–32.9 → 26.5 ms on one core,
//! 16.5–16.6 → 14.8–14.9 ms on two (29.5 GB/s of its bytes); the 128-token
//! prompt step 2.89 → 2.59 s on one core, 1.48 → 1.35 s on two.
//!
//! GEMV/GEMM switch. AVX-512, 2560×2560, two threads, µs per product: 21,
//! 31, 39, 49, 59, 80 for 1, 2, 3, 4, 6, 8 tokens (GEMV), 131, 185, 288 for
//! 12, 16, 32 (GEMM). One thread: the GEMM path takes 173 µs at 5 and 215
//! at 9 tokens (its panel decode costs about one GEMV), the GEMV 166 at 8,
//! so GEMV serves up to 8 tokens. On AVX2 with the 2-bit layout the GEMM
//! path wins from 3 (see `avx2_two_bit::GEMV_MAX_TOKENS`); the lookup layout
//! switches to token lanes at 20 tokens (`avx2_lut3::PAD_MIN_TOKENS`).
//!
//! GEMM, 128 tokens, GMAC/s:
//!
//! | shape        | AVX-512 1t | AVX-512 2t | AVX2 1t | AVX2 2t | scalar 1t |
//! |--------------|-----------:|-----------:|--------:|--------:|----------:|
//! | 2560×2560    | 410        | 752        | 215     | 429     | 1.45      |
//! | 3840×2560    |            | 788        |         |         |           |
//! | 13824×2560   | 372        | 737        |         | 405     |           |
//! | 2560×6912    | 376        | 725        | 192     | 414     |           |
//!
//! (AVX2 columns re-measured on a quiet machine with the 2-bit layout;
//! the base-3 layout gives the same GEMM speed, 213 GMAC/s on one core,
//! since the panel decode is a small share. The micro-kernel is at the
//! `vpmaddubsw` + `vpaddw` ceiling of 16 multiply-accumulates per
//! instruction; an exact lookup-table GEMM needs 16-bit table entries and,
//! counted, no fewer instructions per multiply-accumulate. It might still
//! win where `vpmaddubsw` has a single port (Zen 2), the lookups going to
//! the shuffle ports. It was built and measured (per-token `vpshufb` tables
//! of column-pair sums, bit-identical) and removed: on a Zen 2 (family 23,
//! 2 cores, 3.0 GHz) 2B-4T prefill (`bitnet bench`, 1 and 2 threads) ran
//! 0.81–0.89× the multiply kernel at pp128 and 0.61× at pp512, on a Zen 5
//! 0.77–0.80×.
//! A throughput loop on that Zen 2 issues one `vpmaddubsw` per cycle, three
//! byte adds or compares, two `vpshufb` and one `vpsrlw`: the lookups, their
//! 16-bit widening and the index shifts take more of those ports than the
//! multiplies they save.)
//!
//! The whole prompt step of 2B-4T's ternary layers (30 × QKV, O, gate/up,
//! down for 128 tokens: 267 G MAC, activation quantisation included,
//! `examples/decode_probe.rs avx512 2 3 128`): AVX-512 414 ms on two cores
//! (644 GMAC/s, ~309 tokens/s before attention and the rest), 756 ms on
//! one; AVX2 812–870 ms on two, 1530–1575 ms on one.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx2_lut3;
#[cfg(target_arch = "x86_64")]
mod avx2_lut3_prompt;
#[cfg(target_arch = "x86_64")]
mod avx2_two_bit;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
#[cfg(target_arch = "x86_64")]
mod avx512_lut3;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx_vnni;
pub mod lut3;
#[cfg(target_arch = "x86_64")]
mod pack_avx512;
pub(crate) mod scalar;
mod shared;
pub mod two_bit;

use std::cell::RefCell;
use std::ops::Range;
use std::sync::Arc;

use crate::aligned::AlignedBytes;
use crate::error::{Error, Result};

pub use shared::{PackSlot, PackedParts, SharedPacking};

/// Rows per packed block.
pub const BLOCK_ROWS: usize = 16;
/// Columns per packed block.
pub const BLOCK_COLS: usize = 20;
/// Bytes per packed block.
pub const BLOCK_BYTES: usize = 64;
/// Ternary digits per byte.
pub const DIGITS: usize = 5;
/// The widest block of any layout, in columns.
const MAX_BLOCK_COLS: usize = lut3::BLOCK_COLS;

/// How far ahead of the block it multiplies a streaming GEMV asks for the
/// weights (a software prefetch per 64-byte block, into L2). The hardware
/// prefetchers alone left the GEMVs at 40-60 % of a core's streaming read
/// from DRAM on a Sapphire Rapids VM (the 30 layers of 2B-4T from DRAM,
/// one core: AVX-VNNI 9.1 GB/s, AVX2 8.1, AVX-512 6.2, against 15.3 for a
/// plain sum). Prefetching into L1 (`T0`) 512 to 8192 bytes ahead gave
/// 10.4-11.7 GB/s on every level: the L1 has few miss buffers, and a line
/// from DRAM holds one for its whole latency. Into L2 (`T1`) 8 KB ahead
/// the AVX2 GEMV reads 13.3 GB/s on one core and 25.3 on two (against
/// 11.2 and 20.7 with `T0` 2 KB ahead, same run); 4 KB and 16 KB ahead
/// were within noise of 8 KB, `NTA` was worse than none.
pub(crate) const PREFETCH_BYTES: usize = 8192;

/// Asks for the cache line at `p` to be brought into L2 (a hint: it never
/// faults, whatever the address, so `p` may lie past the matrix).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn prefetch(p: *const u8) {
    // SAFETY: a prefetch is a hint that never faults, whatever the
    // address (SSE, part of the x86-64 baseline).
    unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(p.cast()) };
}

/// Columns after padding to whole blocks.
pub fn padded_cols(cols: usize) -> usize {
    cols.div_ceil(BLOCK_COLS) * BLOCK_COLS
}

/// Columns after padding to whole blocks of every layout: the width that
/// quantised activations are zero-padded to.
pub fn padded_cols_any(cols: usize) -> usize {
    padded_cols(cols).max(cols.div_ceil(lut3::BLOCK_COLS) * lut3::BLOCK_COLS)
}

/// Rows after padding to whole blocks.
pub fn padded_rows(rows: usize) -> usize {
    rows.div_ceil(BLOCK_ROWS) * BLOCK_ROWS
}

/// How a [`TernaryMatrix`] stores its weights. Every layout stores blocks
/// of 16 rows, row-block-major. The base-3 and 2-bit ones use 64-byte
/// blocks with byte `j` belonging to row `j / 4` and holding the columns
/// `j % 4 + 4·d` (one "step" of four columns per digit `d`), so their
/// kernels see the same operand shape; the lookup layout has its own (see
/// [`lut3`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TernaryLayout {
    /// Five base-3 digits per byte, 1.6 bits per weight (20 columns per
    /// block): the fewest bytes; for AVX-512 VNNI and the scalar reference.
    Base3,
    /// Four 2-bit codes per byte, 2 bits per weight (16 columns per block):
    /// 25 % more bytes, but one shift and four masks decode 32 bytes (see
    /// [`two_bit`]); for AVX-VNNI's `vpdpbusd`.
    TwoBit,
    /// Three weights per 4-bit pattern index and a sign bit, 1.67 bits per
    /// weight (24 columns per 80-byte block): for the lookup-table GEMV of
    /// AVX2 without VNNI (see [`lut3`]).
    Lut3,
}

impl TernaryLayout {
    /// Columns per 64-byte block.
    pub fn block_cols(self) -> usize {
        match self {
            TernaryLayout::Base3 => BLOCK_COLS,
            TernaryLayout::TwoBit => two_bit::BLOCK_COLS,
            TernaryLayout::Lut3 => lut3::BLOCK_COLS,
        }
    }

    /// Bytes per block (16 rows × [`TernaryLayout::block_cols`]).
    pub fn block_bytes(self) -> usize {
        match self {
            TernaryLayout::Base3 | TernaryLayout::TwoBit => BLOCK_BYTES,
            TernaryLayout::Lut3 => lut3::BLOCK_BYTES,
        }
    }

    /// Four-column steps (digits per byte) per block.
    pub fn steps_per_block(self) -> usize {
        self.block_cols() / 4
    }

    /// Bytes of the packed weights of a `rows` × `cols` matrix.
    pub fn packed_bytes(self, rows: usize, cols: usize) -> usize {
        padded_rows(rows) / BLOCK_ROWS * cols.div_ceil(self.block_cols()) * self.block_bytes()
    }
}

/// How a row's scale turns the integer product into the output, matching the
/// source format's own arithmetic bit for bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleRule {
    /// `y = (acc / s_x) · scale` (bitnet.cpp I2_S/TL, llama.cpp TQ, HF
    /// `autobitlinear`).
    Multiply,
    /// `y = acc / (scale · s_x)` (HF `bitlinear`: `weight_scale` is the
    /// reciprocal of the absmean).
    Divide,
}

impl ScaleRule {
    /// Applies the rule to one integer dot product.
    #[inline(always)]
    pub fn apply(self, acc: i32, act_scale: f32, weight_scale: f32) -> f32 {
        match self {
            ScaleRule::Multiply => acc as f32 / act_scale * weight_scale,
            ScaleRule::Divide => acc as f32 / (weight_scale * act_scale),
        }
    }
}

/// A packed ternary matrix (`rows` outputs × `cols` inputs).
#[derive(Clone, Debug)]
pub struct TernaryMatrix {
    layout: TernaryLayout,
    rows: usize,
    cols: usize,
    row_blocks: usize,
    col_blocks: usize,
    data: Storage,
    scales: Vec<f32>,
    rule: ScaleRule,
}

/// Where a matrix's packed bytes live.
#[derive(Clone, Debug)]
enum Storage {
    /// A buffer of its own.
    Own(AlignedBytes),
    /// A range of a buffer shared with other matrices ([`SharedPacking`]).
    Shared(Arc<AlignedBytes>, Range<usize>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Own(b) => b.as_slice(),
            Storage::Shared(b, range) => &b.as_slice()[range.clone()],
        }
    }
}

impl TernaryMatrix {
    /// Packs a row-major matrix of `{-1, 0, 1}` values with one scale per
    /// row in the [`TernaryLayout::Base3`] layout, which every kernel level
    /// reads ([`crate::Kernels::pack_ternary`] picks the layout a level runs
    /// fastest).
    pub fn pack(
        rows: usize,
        cols: usize,
        values: &[i8],
        scales: Vec<f32>,
        rule: ScaleRule,
    ) -> Result<TernaryMatrix> {
        TernaryMatrix::pack_as(TernaryLayout::Base3, rows, cols, values, scales, rule)
    }

    /// Packs a row-major matrix of `{-1, 0, 1}` values with one scale per
    /// row in `layout`.
    pub fn pack_as(
        layout: TernaryLayout,
        rows: usize,
        cols: usize,
        values: &[i8],
        scales: Vec<f32>,
        rule: ScaleRule,
    ) -> Result<TernaryMatrix> {
        check_shape(rows, cols, values, &scales)?;
        let mut data = AlignedBytes::zeroed(layout.packed_bytes(rows, cols));
        pack_values(layout, rows, cols, values, data.as_mut_slice())?;
        Ok(TernaryMatrix::with_storage(
            layout,
            rows,
            cols,
            Storage::Own(data),
            scales,
            rule,
        ))
    }

    fn with_storage(
        layout: TernaryLayout,
        rows: usize,
        cols: usize,
        data: Storage,
        scales: Vec<f32>,
        rule: ScaleRule,
    ) -> TernaryMatrix {
        TernaryMatrix {
            layout,
            rows,
            cols,
            row_blocks: padded_rows(rows) / BLOCK_ROWS,
            col_blocks: cols.div_ceil(layout.block_cols()),
            data,
            scales,
            rule,
        }
    }

    /// The storage layout.
    pub fn layout(&self) -> TernaryLayout {
        self.layout
    }

    /// Number of rows (outputs).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (inputs).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Number of 16-row blocks.
    pub fn row_blocks(&self) -> usize {
        self.row_blocks
    }

    /// Number of column blocks (of [`TernaryLayout::block_cols`]) per row
    /// block.
    pub fn col_blocks(&self) -> usize {
        self.col_blocks
    }

    /// Per-row scales.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// The scale rule.
    pub fn rule(&self) -> ScaleRule {
        self.rule
    }

    /// Replaces the row scales and their rule (the packed values stay), for
    /// a loader that learns how a file's scales are best applied only after
    /// packing every matrix.
    pub fn set_scales(&mut self, scales: Vec<f32>, rule: ScaleRule) -> Result<()> {
        if scales.len() != self.rows {
            return Err(Error::Shape {
                what: "ternary row scales",
                expected: self.rows.to_string(),
                found: scales.len().to_string(),
            });
        }
        self.scales = scales;
        self.rule = rule;
        Ok(())
    }

    /// The packed bytes.
    pub fn data(&self) -> &[u8] {
        self.data.bytes()
    }

    /// The packed bytes of row block `rb` (all its column blocks).
    pub fn row_block(&self, rb: usize) -> &[u8] {
        let len = self.col_blocks * self.layout.block_bytes();
        &self.data.bytes()[rb * len..(rb + 1) * len]
    }

    /// Memory held by the packed weights and scales.
    pub fn size_bytes(&self) -> usize {
        self.data.bytes().len() + self.scales.len() * 4
    }

    /// The matrix as row-major `{-1, 0, 1}` values (for tests and tools).
    pub fn unpack(&self) -> Vec<i8> {
        let mut out = vec![0i8; self.rows * self.cols];
        let (block_cols, block_bytes) = (self.layout.block_cols(), self.layout.block_bytes());
        let mut values = [0i8; BLOCK_ROWS * MAX_BLOCK_COLS];
        for rb in 0..self.row_blocks {
            for (cb, block) in self.row_block(rb).chunks_exact(block_bytes).enumerate() {
                self.decode_block(block, &mut values);
                let (r0, c0) = (rb * BLOCK_ROWS, cb * block_cols);
                let n = block_cols.min(self.cols - c0);
                for i in 0..BLOCK_ROWS.min(self.rows - r0) {
                    out[(r0 + i) * self.cols + c0..][..n]
                        .copy_from_slice(&values[i * block_cols..][..n]);
                }
            }
        }
        out
    }

    /// Decodes one packed block of this matrix's layout:
    /// `out[i · block_cols + j]` = the weight `t` of row `i`, column `j`.
    pub(crate) fn decode_block(&self, block: &[u8], out: &mut [i8]) {
        let cols = self.layout.block_cols();
        // The byte-per-row layouts: byte `j` holds columns `j % 4 + 4·d` of
        // row `j / 4` as digit (step) `d`.
        let mut by_bytes = |code: fn(u8, usize) -> u8| {
            for (j, &byte) in block.iter().enumerate() {
                for d in 0..self.layout.steps_per_block() {
                    out[j / 4 * cols + j % 4 + 4 * d] = code(byte, d) as i8 - 1;
                }
            }
        };
        match self.layout {
            TernaryLayout::Base3 => by_bytes(decode_digit),
            TernaryLayout::TwoBit => by_bytes(two_bit::decode_code),
            TernaryLayout::Lut3 => lut3::decode_block(block, out),
        }
    }

    /// Stacks matrices with the same columns and rule into one (rows in
    /// order), in the first one's layout: fused Q/K/V or gate/up products
    /// that share one quantised input.
    pub fn stack(parts: &[&TernaryMatrix]) -> Result<TernaryMatrix> {
        let first = parts.first().ok_or(Error::Shape {
            what: "stacked matrices",
            expected: "at least one".into(),
            found: "none".into(),
        })?;
        if let Some(bad) = parts
            .iter()
            .find(|p| p.cols != first.cols || p.rule != first.rule)
        {
            return Err(Error::Shape {
                what: "stacked matrix columns/rule",
                expected: format!("{} columns, {:?}", first.cols, first.rule),
                found: format!("{} columns, {:?}", bad.cols, bad.rule),
            });
        }
        let rows: usize = parts.iter().map(|p| p.rows).sum();
        let mut values = Vec::with_capacity(rows * first.cols);
        let mut scales = Vec::with_capacity(rows);
        for p in parts {
            values.extend(p.unpack());
            scales.extend_from_slice(&p.scales);
        }
        TernaryMatrix::pack_as(first.layout, rows, first.cols, &values, scales, first.rule)
    }
}

/// Checks the shapes of a matrix to pack: `rows × cols` values, one scale
/// per row.
fn check_shape(rows: usize, cols: usize, values: &[i8], scales: &[f32]) -> Result<()> {
    if rows == 0 || cols == 0 || values.len() != rows * cols {
        return Err(Error::Shape {
            what: "ternary values",
            expected: format!("{rows} x {cols} = {} values", rows * cols),
            found: values.len().to_string(),
        });
    }
    if scales.len() != rows {
        return Err(Error::Shape {
            what: "ternary row scales",
            expected: rows.to_string(),
            found: scales.len().to_string(),
        });
    }
    Ok(())
}

/// Packs `rows × cols` values (shape checked) in `layout` into `out`
/// (`layout.packed_bytes(rows, cols)` zeroed bytes).
fn pack_values(
    layout: TernaryLayout,
    rows: usize,
    cols: usize,
    values: &[i8],
    out: &mut [u8],
) -> Result<()> {
    let col_blocks = cols.div_ceil(layout.block_cols());
    let block_row_bytes = col_blocks * layout.block_bytes();
    let mut valid = true;
    for (rb, out) in out.chunks_exact_mut(block_row_bytes).enumerate() {
        let r0 = rb * BLOCK_ROWS;
        let n = (rows - r0).min(BLOCK_ROWS);
        let part = &values[r0 * cols..(r0 + n) * cols];
        valid &= match layout {
            TernaryLayout::Base3 => pack_row_block(part, n, cols, out),
            TernaryLayout::TwoBit => two_bit::pack_row_block(part, n, cols, out),
            TernaryLayout::Lut3 => lut3::pack_row_block(part, n, cols, out),
        };
    }
    if !valid {
        let i = values
            .iter()
            .position(|v| !(-1..=1).contains(v))
            .unwrap_or_default();
        return Err(Error::NotTernary {
            index: i,
            value: values[i],
        });
    }
    Ok(())
}

thread_local! {
    /// Per-thread buffer for decoded weight panels (GEMM). Pool workers live
    /// as long as the pool, so this is allocated once per thread and size.
    static PANEL: RefCell<AlignedBytes> = RefCell::new(AlignedBytes::zeroed(0));
}

/// Calls `f` with a 64-byte-aligned scratch buffer of at least `bytes`
/// bytes owned by the current thread.
#[allow(dead_code)]
pub(crate) fn with_panel<R>(bytes: usize, f: impl FnOnce(*mut u8) -> R) -> R {
    PANEL.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < bytes {
            *p = AlignedBytes::zeroed(bytes.next_power_of_two());
        }
        f(p.as_mut_slice().as_mut_ptr())
    })
}

/// Packed byte of every base-3 value `n` (0..243): `ceil(n · 256 / 243)`.
const BYTE_OF: [u8; 243] = {
    let mut t = [0u8; 243];
    let mut n = 0;
    while n < 243 {
        t[n] = (n as u32 * 256).div_ceil(243) as u8;
        n += 1;
    }
    t
};

/// Packs up to 16 rows (`n_rows` × `cols` values, row-major) into the bytes
/// of one row block; returns `false` if a value is not in {-1, 0, 1}.
///
/// Row by row, each 20-column block yields the row's 4 bytes at once: the
/// block's values taken as five little-endian u32 words `D_d` (columns
/// `4d..4d+4`) hold the codes `t + 1` bytewise, and because every code is at
/// most 2, `81·D0 + 27·D1 + 9·D2 + 3·D3 + D4` in u32 arithmetic is the four
/// base-3 values bytewise (each at most 242, so no carry crosses a byte).
fn pack_row_block(values: &[i8], n_rows: usize, cols: usize, out: &mut [u8]) -> bool {
    let col_blocks = padded_cols(cols) / BLOCK_COLS;
    let full = cols / BLOCK_COLS;
    let mut bad = 0u32;
    for r in 0..BLOCK_ROWS {
        if r >= n_rows {
            // Padding rows hold t = 0 (code 1) everywhere.
            let pad = encode_byte([1; DIGITS]);
            for cb in 0..col_blocks {
                out[cb * BLOCK_BYTES + 4 * r..][..4].fill(pad);
            }
            continue;
        }
        let row = &values[r * cols..(r + 1) * cols];
        let done = pack_row_fast(row, out, r, full, &mut bad);
        for (cb, v) in row.chunks_exact(BLOCK_COLS).enumerate().skip(done) {
            let v: &[i8; BLOCK_COLS] = v.try_into().expect("chunks of BLOCK_COLS");
            let o: &mut [u8; 4] = (&mut out[cb * BLOCK_BYTES + 4 * r..][..4])
                .try_into()
                .expect("4 bytes");
            bad |= pack4(v, o);
        }
        if full < col_blocks {
            // The last, partial block: padding columns hold t = 0.
            let mut v = [0i8; BLOCK_COLS];
            v[..cols - full * BLOCK_COLS].copy_from_slice(&row[full * BLOCK_COLS..]);
            let o: &mut [u8; 4] = (&mut out[full * BLOCK_BYTES + 4 * r..][..4])
                .try_into()
                .expect("4 bytes");
            bad |= pack4(&v, o);
        }
    }
    bad == 0
}

/// Packs the leading blocks of a row with SIMD where the CPU allows; returns
/// how many of the `n_blocks` full blocks it packed.
fn pack_row_fast(row: &[i8], out: &mut [u8], r: usize, n_blocks: usize, bad: &mut u32) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static VBMI: OnceLock<bool> = OnceLock::new();
        let ok = *VBMI.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vbmi")
        });
        if ok && crate::isa::Isa::from_env_allows_avx512() {
            // SAFETY: the features were detected at run time; `row` holds
            // `n_blocks` full blocks and `out` is the row block's bytes.
            let (done, b) = unsafe { pack_avx512::pack_row(row, out, r, n_blocks) };
            if b != 0 {
                *bad |= 1;
            }
            return done;
        }
    }
    let _ = (row, out, r, n_blocks, bad);
    0
}

/// Four ternary values as one little-endian word turned into their codes
/// `t + 1` bytewise; the second word has non-zero bits where a byte was not
/// in {-1, 0, 1}.
#[inline(always)]
pub(crate) fn code_word(v: [i8; 4]) -> (u32, u32) {
    code_bytes_u32(u32::from_le_bytes(v.map(|b| b as u8)))
}

/// Defines `$name(x)`: the bytes of `x` (ternary values) as codes `t + 1`,
/// and non-zero bits where a byte was not in {-1, 0, 1}; one definition for
/// the four-byte words of the base-3 and 2-bit packers and the eight-byte
/// words of the lookup packer.
macro_rules! code_bytes_fn {
    ($name:ident, $t:ty) => {
        #[inline(always)]
        pub(crate) fn $name(x: $t) -> ($t, $t) {
            const ONES: $t = <$t>::MAX / 255;
            const HIGH: $t = ONES * 0x80;
            // Bytewise x + 1 without carries between bytes: -1, 0, 1 -> 0, 1, 2.
            let c = ((x & !HIGH) + ONES) ^ ((x ^ ONES) & HIGH);
            // Anything but 0, 1, 2 in a byte marks the block invalid.
            (c, (c & (ONES * 0xfc)) | (c & (c >> 1) & ONES))
        }
    };
}
code_bytes_fn!(code_bytes_u32, u32);
code_bytes_fn!(code_bytes, u64);

/// One row's 4 bytes of a 20-column block (see [`pack_row_block`]); returns
/// non-zero bits if a value is not in {-1, 0, 1}.
#[inline(always)]
fn pack4(v: &[i8; BLOCK_COLS], o: &mut [u8; 4]) -> u32 {
    let mut bad = 0u32;
    let mut word = |d: usize| {
        let (c, b) = code_word([v[4 * d], v[4 * d + 1], v[4 * d + 2], v[4 * d + 3]]);
        bad |= b;
        c
    };
    let n = word(0)
        .wrapping_mul(81)
        .wrapping_add(word(1).wrapping_mul(27))
        .wrapping_add(word(2).wrapping_mul(9))
        .wrapping_add(word(3).wrapping_mul(3))
        .wrapping_add(word(4));
    for (o, &nb) in o.iter_mut().zip(&n.to_le_bytes()) {
        *o = BYTE_OF[nb as usize % 243];
    }
    bad
}

/// Encodes five codes (`t + 1`, first = most significant base-3 digit).
#[inline]
pub fn encode_byte(codes: [u8; DIGITS]) -> u8 {
    let n = codes.iter().fold(0u32, |n, &c| n * 3 + u32::from(c));
    (n * 256).div_ceil(243) as u8
}

/// Decodes digit `d` (0 = most significant) of a packed byte: a code in
/// `{0, 1, 2}`.
#[inline(always)]
pub fn decode_digit(byte: u8, d: usize) -> u8 {
    const POW3: [u32; DIGITS] = [1, 3, 9, 27, 81];
    let q = (u32::from(byte) * POW3[d]) & 0xFF;
    ((q * 3) >> 8) as u8
}

/// `values` packed in `layout` with unit scales (for the layouts' tests).
#[cfg(test)]
pub(crate) fn pack_unit(
    layout: TernaryLayout,
    rows: usize,
    cols: usize,
    values: &[i8],
) -> TernaryMatrix {
    TernaryMatrix::pack_as(
        layout,
        rows,
        cols,
        values,
        vec![1.0; rows],
        ScaleRule::Multiply,
    )
    .expect("a valid test matrix")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_digit_combination_round_trips() {
        for n in 0..243u32 {
            let mut codes = [0u8; DIGITS];
            let mut m = n;
            for d in (0..DIGITS).rev() {
                codes[d] = (m % 3) as u8;
                m /= 3;
            }
            let b = encode_byte(codes);
            for (d, &c) in codes.iter().enumerate() {
                assert_eq!(decode_digit(b, d), c, "n={n} d={d}");
            }
        }
    }

    #[test]
    fn pack_unpack_round_trip_with_padding() {
        let (rows, cols) = (19, 47);
        let values: Vec<i8> = (0..rows * cols)
            .map(|i| ((i * 7 + i / 3) % 3) as i8 - 1)
            .collect();
        let m =
            TernaryMatrix::pack(rows, cols, &values, vec![1.0; rows], ScaleRule::Multiply).unwrap();
        assert_eq!(m.row_blocks(), 2);
        assert_eq!(m.col_blocks(), 3);
        assert_eq!(m.unpack(), values);
    }

    #[test]
    fn pack_places_every_digit_where_the_layout_says() {
        // Storage-order definition of the layout, independent of the packer.
        // Wide rows go through the 16-block SIMD packer where the CPU has it.
        for (rows, cols) in [
            (1, 1),
            (16, 20),
            (17, 21),
            (33, 100),
            (5, 63),
            (3, 700),
            (17, 960),
            (2, 2560),
        ] {
            let values: Vec<i8> = (0..rows * cols)
                .map(|i| ((i * 7919 + i / 5) % 3) as i8 - 1)
                .collect();
            let m = TernaryMatrix::pack(rows, cols, &values, vec![1.0; rows], ScaleRule::Divide)
                .unwrap();
            for rb in 0..m.row_blocks() {
                for cb in 0..m.col_blocks() {
                    for j in 0..BLOCK_BYTES {
                        let r = rb * BLOCK_ROWS + j / 4;
                        let mut codes = [1u8; DIGITS];
                        for (d, code) in codes.iter_mut().enumerate() {
                            let c = cb * BLOCK_COLS + j % 4 + 4 * d;
                            if r < rows && c < cols {
                                *code = (values[r * cols + c] + 1) as u8;
                            }
                        }
                        let at = (rb * m.col_blocks() + cb) * BLOCK_BYTES + j;
                        assert_eq!(
                            m.data()[at],
                            encode_byte(codes),
                            "{rows}x{cols} rb {rb} cb {cb} byte {j}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn rejects_non_ternary_values() {
        let err = TernaryMatrix::pack(1, 2, &[0, 2], vec![1.0], ScaleRule::Divide).unwrap_err();
        assert!(err.to_string().contains("index 1"), "{err}");
        for bad in [2i8, -2, 3, 127, -128] {
            let mut v = vec![0i8; 2 * 640];
            v[700] = bad;
            let err = TernaryMatrix::pack(2, 640, &v, vec![1.0; 2], ScaleRule::Divide).unwrap_err();
            assert!(err.to_string().contains("index 700"), "{bad}: {err}");
        }
    }
}
