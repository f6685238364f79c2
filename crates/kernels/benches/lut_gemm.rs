//! The lookup-table experiment for prompt processing on AVX2 (issue 13): a
//! T-MAC-style ternary GEMM with `vpshufb` tables, against the production
//! AVX2 GEMM (`vpmaddubsw` on decoded 2-bit codes), one thread, many tokens.
//!
//! **Method (exact).** A weight row is split into sign planes, `w = P − N`
//! with `P, N ∈ {0, 1}`; per quad of four columns, row `r` keeps the 4-bit
//! masks of `P` and `N` in two neighbouring bytes of a 16-byte vector (eight
//! rows per vector, broadcast to both 128-bit lanes). An activation byte is
//! split as `a = 16·h + l − 128` with `l = a mod 16` and `h = ⌊a / 16⌋ + 8`,
//! both in `[0, 15]`; per token and quad, the 16 subset sums of the four `l`
//! fill the low lane of a 32-byte table and those of the four `h` the high
//! lane (entries in `[0, 60]`). One `vpshufb` of the mask vector in that
//! table gives, for eight rows, `Σ_P l, Σ_N l` (low lane) and `Σ_P h, Σ_N h`
//! (high lane); four quads add up in bytes (≤ 240), then one `vpmaddubsw`
//! against `(1, −1)` / `(16, −16)` turns them into `Σ w·l` and `16·Σ w·h`
//! per row in `i16`, widened to `i32` every 32 quads. Finally
//! `Σ w·a = Σ w·l + 16·Σ w·h − 128·Σ w`. Per eight rows × four columns ×
//! token: one `vpshufb` and one `vpaddb` (shuffle and add ports), plus a
//! quarter of a `vpmaddubsw` and of a `vpaddw`, against the production
//! kernel's `vpmaddubsw` + `vpaddw` per 8 × 4 × token, bound to the single
//! integer multiply port of a Zen 2.
//!
//! The mask panel is built once, outside the timing (the production kernel
//! decodes its panels inside it), and the tables inside: this is the LUT
//! method's best case. The tile is 8 rows × 6 tokens over 96 quads (the six
//! tokens' tables, 18 KB, stay in L1 for every row group).
//!
//! Run: `cargo bench -p bitnet-kernels --bench lut_gemm`; the figures and the
//! conclusion are in the `ternary` module doc.

#![allow(clippy::needless_range_loop)]

use std::arch::{asm, x86_64::*};
use std::hint::black_box;
use std::time::Instant;

use bitnet_kernels::{AlignedBytes, Isa, Kernels, QuantizedActs, ScaleRule};
use bitnet_threads::ThreadPool;

/// Tokens per tile.
const TT: usize = 6;
/// Quads per L1 chunk of tables.
const CHUNK: usize = 96;

/// Sign-plane masks: per 8-row group and quad, 16 bytes (`P`, `N` of row
/// `r` at bytes `2r`, `2r + 1`); plus `Σ w` per row.
struct MaskPanel {
    rows: usize,
    quads: usize,
    data: AlignedBytes,
    row_sums: Vec<i32>,
}

fn pack(values: &[i8], rows: usize, cols: usize) -> MaskPanel {
    let groups = rows.div_ceil(8);
    let quads = cols.div_ceil(4);
    let mut data = AlignedBytes::zeroed(groups * quads * 16);
    let bytes = data.as_mut_slice();
    let at = |r: usize, c: usize| {
        if r < rows && c < cols {
            values[r * cols + c]
        } else {
            0
        }
    };
    for g in 0..groups {
        for q in 0..quads {
            for i in 0..8 {
                let (mut p, mut n) = (0u8, 0u8);
                for j in 0..4 {
                    match at(8 * g + i, 4 * q + j) {
                        1 => p |= 1 << j,
                        -1 => n |= 1 << j,
                        _ => {}
                    }
                }
                bytes[(g * quads + q) * 16 + 2 * i] = p;
                bytes[(g * quads + q) * 16 + 2 * i + 1] = n;
            }
        }
    }
    let row_sums = (0..rows)
        .map(|r| {
            values[r * cols..(r + 1) * cols]
                .iter()
                .map(|&v| i32::from(v))
                .sum()
        })
        .collect();
    MaskPanel {
        rows,
        quads,
        data,
        row_sums,
    }
}

/// Per token and quad, 32 bytes: subset sums of `l` (low lane), of `h`
/// (high lane); the [`TT`] tokens of a tile side by side per quad.
fn tables(x: &QuantizedActs, n: usize, quads: usize, out: &mut AlignedBytes) {
    let bytes = out.as_mut_slice();
    for t in 0..n {
        let row = x.row(t);
        for q in 0..quads {
            let a = |j: usize| i32::from(*row.get(4 * q + j).unwrap_or(&0));
            let at = (((t / TT) * quads + q) * TT + t % TT) * 32;
            for m in 0..16 {
                let (mut l, mut h) = (0, 0);
                for j in 0..4 {
                    if m >> j & 1 == 1 {
                        l += a(j) & 15;
                        h += (a(j) >> 4) + 8;
                    }
                }
                bytes[at + m] = l as u8;
                bytes[at + 16 + m] = h as u8;
            }
        }
    }
}

/// `y[t][r] = Σ w·a` for every token and row.
///
/// # Safety
/// AVX2 must be available; `tabs` from [`tables`] for `n` tokens; `y` holds
/// `n × rows`.
#[target_feature(enable = "avx2")]
unsafe fn gemm(m: &MaskPanel, tabs: &AlignedBytes, n: usize, y: &mut [i32]) {
    let sgn = _mm256_setr_epi8(
        1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, //
        16, -16, 16, -16, 16, -16, 16, -16, 16, -16, 16, -16, 16, -16, 16, -16,
    );
    let groups = m.rows.div_ceil(8);
    y.fill(0);
    let mut t0 = 0;
    while t0 < n {
        let nt = TT.min(n - t0);
        let tp: [*const u8; TT] =
            std::array::from_fn(|t| tabs.as_slice()[(t0 * m.quads + t) * 32..].as_ptr());
        let mut c0 = 0;
        while c0 < m.quads {
            let c1 = (c0 + CHUNK).min(m.quads);
            for g in 0..groups {
                let masks = m.data.as_slice()[g * m.quads * 16..].as_ptr();
                let mut acc32 = [_mm256_setzero_si256(); TT];
                let mut q0 = c0;
                while q0 < c1 {
                    let q1 = (q0 + 32).min(c1);
                    let mut acc16 = [_mm256_setzero_si256(); TT];
                    // Quad counts here are multiples of 4 (columns of 16).
                    let mut q = q0;
                    while q < q1 {
                        let mut acc8 = [_mm256_setzero_si256(); TT];
                        for j in 0..4 {
                            // SAFETY: quad `q + j` of group `g`; tables of
                            // tokens t0..t0+TT (padded by the caller).
                            unsafe {
                                let idx = _mm256_broadcastsi128_si256(_mm_load_si128(
                                    masks.add((q + j) * 16).cast(),
                                ));
                                for t in 0..TT {
                                    let tab =
                                        _mm256_load_si256(tp[t].add((q + j) * 32 * TT).cast());
                                    acc8[t] =
                                        _mm256_add_epi8(acc8[t], _mm256_shuffle_epi8(tab, idx));
                                }
                            }
                        }
                        for t in 0..TT {
                            acc16[t] =
                                _mm256_add_epi16(acc16[t], _mm256_maddubs_epi16(acc8[t], sgn));
                        }
                        q += 4;
                    }
                    for t in 0..TT {
                        let lo = _mm256_cvtepi16_epi32(_mm256_castsi256_si128(acc16[t]));
                        let hi = _mm256_cvtepi16_epi32(_mm256_extracti128_si256::<1>(acc16[t]));
                        acc32[t] = _mm256_add_epi32(acc32[t], _mm256_add_epi32(lo, hi));
                    }
                    q0 = q1;
                }
                for t in 0..nt {
                    let mut v = [0i32; 8];
                    // SAFETY: eight i32.
                    unsafe { _mm256_storeu_si256(v.as_mut_ptr().cast(), acc32[t]) };
                    for i in 0..8 {
                        let r = 8 * g + i;
                        if r < m.rows {
                            y[(t0 + t) * m.rows + r] += v[i];
                        }
                    }
                }
            }
            c0 = c1;
        }
        t0 += nt;
    }
    for t in 0..n {
        for r in 0..m.rows {
            y[t * m.rows + r] -= 128 * m.row_sums[r];
        }
    }
}

/// Twelve independent `OP ymmN, ymmN, ymm12` (no dependency chain beyond
/// one instruction per register per iteration).
macro_rules! twelve {
    ($op:literal) => {
        concat!(
            $op,
            " ymm0, ymm0, ymm12\n",
            $op,
            " ymm1, ymm1, ymm12\n",
            $op,
            " ymm2, ymm2, ymm12\n",
            $op,
            " ymm3, ymm3, ymm12\n",
            $op,
            " ymm4, ymm4, ymm12\n",
            $op,
            " ymm5, ymm5, ymm12\n",
            $op,
            " ymm6, ymm6, ymm12\n",
            $op,
            " ymm7, ymm7, ymm12\n",
            $op,
            " ymm8, ymm8, ymm12\n",
            $op,
            " ymm9, ymm9, ymm12\n",
            $op,
            " ymm10, ymm10, ymm12\n",
            $op,
            " ymm11, ymm11, ymm12\n",
        )
    };
}

/// Billions of instructions per second of one `twelve!` body.
macro_rules! rate {
    ($body:expr) => {{
        let n = 20_000_000u64;
        let t = Instant::now();
        for _ in 0..n {
            // SAFETY: register-only AVX2 instructions on clobbered
            // registers (the caller checked AVX2).
            unsafe {
                asm!($body, out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
                     out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
                     out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
                     options(nostack, nomem))
            }
        }
        12.0 * n as f64 / t.elapsed().as_nanos() as f64
    }};
}

/// Issue rates of the instructions the two methods are made of, relative
/// to `vpand` (four per cycle on every x86 core with AVX2 here).
fn port_rates() {
    let and = rate!(twelve!("vpand"));
    let rel = |r: f64| 4.0 * r / and;
    println!(
        "per cycle (vpand = 4, {:.2} GHz): vpmaddubsw {:.2}, vpmaddwd {:.2}, vpshufb {:.2}, vpaddb {:.2}, vpsignb {:.2}",
        and / 4.0,
        rel(rate!(twelve!("vpmaddubsw"))),
        rel(rate!(twelve!("vpmaddwd"))),
        rel(rate!(twelve!("vpshufb"))),
        rel(rate!(twelve!("vpaddb"))),
        rel(rate!(twelve!("vpsignb"))),
    );
}

fn main() {
    let k = match Kernels::for_isa(Isa::Avx2) {
        Some(k) => k,
        None => {
            println!("lut_gemm: needs AVX2 (skipped)");
            return;
        }
    };
    port_rates();
    let pool = ThreadPool::new(1);
    let n = 128;
    for &(rows, cols) in &[(2560usize, 2560usize), (6912, 2560), (2560, 6912)] {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        let values: Vec<i8> = (0..rows * cols).map(|_| (next() % 3) as i8 - 1).collect();
        let x: Vec<f32> = (0..n * cols)
            .map(|_| (next() % 2001) as f32 / 1000.0 - 1.0)
            .collect();
        let mut qa = QuantizedActs::new();
        k.quantize(&x, n, cols, &mut qa);
        let w = k
            .pack_ternary(rows, cols, &values, vec![1.0; rows], ScaleRule::Multiply)
            .unwrap();
        let panel = pack(&values, rows, cols);
        // Tables for whole tiles (the last one padded with zero tables).
        let mut tabs = AlignedBytes::zeroed(n.next_multiple_of(TT) * panel.quads * 32);
        let mut want = vec![0f32; n * rows];
        k.ternary_matmul(&pool, &w, &qa, &mut want);
        tables(&qa, n, panel.quads, &mut tabs);
        let mut y = vec![0i32; n * rows];
        // SAFETY: AVX2 checked above; tables for n tokens; y is n × rows.
        unsafe { gemm(&panel, &tabs, n, &mut y) };
        for t in 0..n {
            for r in 0..rows {
                let got = ScaleRule::Multiply.apply(y[t * rows + r], qa.scales()[t], 1.0);
                assert_eq!(
                    got.to_bits(),
                    want[t * rows + r].to_bits(),
                    "token {t} row {r}"
                );
            }
        }
        let time = |f: &mut dyn FnMut()| {
            let mut best = f64::MAX;
            for _ in 0..10 {
                let t = Instant::now();
                f();
                best = best.min(t.elapsed().as_secs_f64());
            }
            best
        };
        let t_base = time(&mut || k.ternary_matmul(&pool, black_box(&w), &qa, &mut want));
        let t_lut = time(&mut || {
            tables(&qa, n, panel.quads, &mut tabs);
            // SAFETY: as above.
            unsafe { gemm(black_box(&panel), &tabs, n, &mut y) };
        });
        let mut tab_only = f64::MAX;
        for _ in 0..10 {
            let t = Instant::now();
            tables(&qa, n, panel.quads, &mut tabs);
            tab_only = tab_only.min(t.elapsed().as_secs_f64());
        }
        let macs = (rows * cols * n) as f64;
        println!(
            "{rows}x{cols} x {n} tokens (1 thread): production {:.2} ms = {:.1} GMAC/s | LUT {:.2} ms = {:.1} GMAC/s, of which tables {:.2} ms (lookups alone {:.1} GMAC/s)",
            t_base * 1e3,
            macs / t_base / 1e9,
            t_lut * 1e3,
            macs / t_lut / 1e9,
            tab_only * 1e3,
            macs / (t_lut - tab_only) / 1e9,
        );
    }
}
