//! The lookup-table experiment: a T-MAC / TL1-style ternary GEMV on AVX-512
//! (`vpshufb`), against the production 1.6-bit base-3 kernel.
//!
//! Layout (2 bits per weight): per group of 64 rows and quad of 4 columns, 64
//! bytes; byte `r` holds the 4-bit indices `3·(t₀+1) + (t₁+1)` of the column
//! pairs (0, 1) and (2, 3) of row `r`. Per token and pair, a 16-entry table of
//! the nine sums `t₀·a₀ + t₁·a₁` ∈ [−256, 254], split into low and high bytes
//! (two `vpshufb` tables, broadcast to the four 128-bit lanes). Per quad: two
//! nibble extractions, four `vpshufb`, four unpacks, four `vpmaddubsw`
//! against ones to widen and add the two pairs' bytes, four `i16` adds; the
//! `i16` sums are widened every 32 quads. Exact (checked against the
//! production kernel before timing).
//!
//! Run: `cargo bench -p bitnet-kernels --bench lut_gemv`. It prints one line
//! per case; the numbers and the decision are in the `ternary` module doc.

#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::hint::black_box;
use std::time::Instant;

use bitnet_kernels::{AlignedBytes, Isa, Kernels, QuantizedActs, ScaleRule, TernaryMatrix};
use bitnet_threads::ThreadPool;

struct LutMatrix {
    rows: usize,
    quads: usize,
    data: AlignedBytes,
}

fn pack(values: &[i8], rows: usize, cols: usize) -> LutMatrix {
    let groups = rows.div_ceil(64);
    let quads = cols.div_ceil(4);
    let mut data = AlignedBytes::zeroed(groups * quads * 64);
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
            for i in 0..64 {
                let r = g * 64 + i;
                let idx = |c: usize| (3 * (at(r, c) + 1) + (at(r, c + 1) + 1)) as u8;
                bytes[(g * quads + q) * 64 + i] = idx(4 * q) | idx(4 * q + 2) << 4;
            }
        }
    }
    LutMatrix { rows, quads, data }
}

/// Per pair `p`: low-byte table at `[32p..32p+16]`, high-byte at `[32p+16..]`.
fn tables(q: &[i8], pairs: usize, out: &mut Vec<u8>) {
    out.clear();
    out.resize(pairs * 32, 0);
    for p in 0..pairs {
        let a0 = i32::from(*q.get(2 * p).unwrap_or(&0));
        let a1 = i32::from(*q.get(2 * p + 1).unwrap_or(&0));
        for t0 in -1..=1 {
            for t1 in -1..=1 {
                let idx = (3 * (t0 + 1) + (t1 + 1)) as usize;
                let e = (t0 * a0 + t1 * a1) as i16;
                out[32 * p + idx] = e as u8;
                out[32 * p + 16 + idx] = (e >> 8) as u8;
            }
        }
    }
}

/// `y[r] = Σ t·q` for all rows (one token).
///
/// # Safety
/// AVX-512 BW must be available; `tabs` from [`tables`] for this width.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn gemv(m: &LutMatrix, tabs: &[u8], y: &mut [i32]) {
    let ones = _mm512_set1_epi8(1);
    let nib = _mm512_set1_epi8(0x0F);
    let groups = m.rows.div_ceil(64);
    for g in 0..groups {
        let base = m.data.as_slice()[g * m.quads * 64..].as_ptr();
        let mut wide = [_mm512_setzero_si512(); 8];
        let mut q0 = 0;
        while q0 < m.quads {
            let q1 = (q0 + 32).min(m.quads);
            let mut lo = [_mm512_setzero_si512(); 2];
            let mut hi = [_mm512_setzero_si512(); 2];
            for q in q0..q1 {
                // SAFETY: quad `q` of group `g` and tables of pairs 2q, 2q+1
                // are in bounds.
                unsafe {
                    let w = _mm512_load_si512(base.add(q * 64).cast());
                    let i0 = _mm512_and_si512(w, nib);
                    let i1 = _mm512_and_si512(_mm512_srli_epi16::<4>(w), nib);
                    let t = tabs.as_ptr().add(64 * q);
                    let tl0 = _mm512_broadcast_i32x4(_mm_loadu_si128(t.cast()));
                    let th0 = _mm512_broadcast_i32x4(_mm_loadu_si128(t.add(16).cast()));
                    let tl1 = _mm512_broadcast_i32x4(_mm_loadu_si128(t.add(32).cast()));
                    let th1 = _mm512_broadcast_i32x4(_mm_loadu_si128(t.add(48).cast()));
                    let (l0, h0) = (_mm512_shuffle_epi8(tl0, i0), _mm512_shuffle_epi8(th0, i0));
                    let (l1, h1) = (_mm512_shuffle_epi8(tl1, i1), _mm512_shuffle_epi8(th1, i1));
                    lo[0] = _mm512_add_epi16(
                        lo[0],
                        _mm512_maddubs_epi16(_mm512_unpacklo_epi8(l0, l1), ones),
                    );
                    lo[1] = _mm512_add_epi16(
                        lo[1],
                        _mm512_maddubs_epi16(_mm512_unpackhi_epi8(l0, l1), ones),
                    );
                    hi[0] = _mm512_add_epi16(
                        hi[0],
                        _mm512_maddubs_epi16(ones, _mm512_unpacklo_epi8(h0, h1)),
                    );
                    hi[1] = _mm512_add_epi16(
                        hi[1],
                        _mm512_maddubs_epi16(ones, _mm512_unpackhi_epi8(h0, h1)),
                    );
                }
            }
            for j in 0..2 {
                let v = _mm512_add_epi16(_mm512_slli_epi16::<8>(hi[j]), lo[j]);
                // Wrapping: 256·hi + lo is exact modulo 2^16 and |sum| < 2^15
                // over 32 quads (|entry| ≤ 256, two per quad... bounded by
                // 32 · 2 · 256 = 16384).
                wide[4 * j] = _mm512_add_epi32(
                    wide[4 * j],
                    _mm512_cvtepi16_epi32(_mm512_castsi512_si256(v)),
                );
                wide[4 * j + 1] = _mm512_add_epi32(
                    wide[4 * j + 1],
                    _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64::<1>(v)),
                );
            }
            q0 = q1;
        }
        // Undo the unpack order: unpacklo of 128-bit lane L holds rows
        // 16L..16L+8, unpackhi rows 16L+8..16L+16.
        let mut lanes = [[0i32; 16]; 4];
        for j in 0..2 {
            for h in 0..2 {
                // SAFETY: 16 i32 per array.
                unsafe {
                    _mm512_storeu_si512(lanes[2 * j + h].as_mut_ptr().cast(), wide[4 * j + h])
                };
            }
        }
        for j in 0..2 {
            for k in 0..32 {
                // i16 element k of `v` (for unpack j) is lane L = k / 8, row
                // 16L + 8j + k % 8.
                let row = g * 64 + 16 * (k / 8) + 8 * j + k % 8;
                if row < m.rows {
                    y[row] = lanes[2 * j + k / 16][k % 16];
                }
            }
        }
    }
}

fn main() {
    let k = match Kernels::for_isa(Isa::Avx512) {
        Some(k) => k,
        None => {
            println!("lut_gemv: needs AVX-512 (skipped)");
            return;
        }
    };
    let pool = ThreadPool::new(1);
    for &(rows, cols, copies) in &[
        (2560usize, 2560usize, 1usize),
        (13824, 2560, 1),
        (13824, 2560, 8),
    ] {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        let values: Vec<i8> = (0..rows * cols).map(|_| (next() % 3) as i8 - 1).collect();
        let x: Vec<f32> = (0..cols)
            .map(|_| (next() % 2001) as f32 / 1000.0 - 1.0)
            .collect();
        let mut qa = QuantizedActs::new();
        k.quantize(&x, 1, cols, &mut qa);
        let base: Vec<TernaryMatrix> = (0..copies)
            .map(|_| {
                TernaryMatrix::pack(rows, cols, &values, vec![1.0; rows], ScaleRule::Multiply)
                    .unwrap()
            })
            .collect();
        let lut: Vec<LutMatrix> = (0..copies).map(|_| pack(&values, rows, cols)).collect();
        // Correctness: the LUT sums scaled like the production kernel.
        let mut want = vec![0f32; rows];
        k.ternary_matmul(&pool, &base[0], &qa, &mut want);
        let mut tabs = Vec::new();
        tables(&qa.row(0)[..cols], cols.div_ceil(2), &mut tabs);
        tabs.resize(tabs.len() + 64, 0);
        let mut y = vec![0i32; rows];
        // SAFETY: AVX-512 checked above (the table exists).
        unsafe { gemv(&lut[0], &tabs, &mut y) };
        for r in 0..rows {
            let got = ScaleRule::Multiply.apply(y[r], qa.scales()[0], 1.0);
            assert_eq!(got.to_bits(), want[r].to_bits(), "row {r}");
        }
        let time = |f: &mut dyn FnMut()| {
            let mut best = f64::MAX;
            for _ in 0..30 {
                let t = Instant::now();
                f();
                best = best.min(t.elapsed().as_secs_f64());
            }
            best
        };
        let t_base = time(&mut || {
            for m in &base {
                k.ternary_matmul(&pool, black_box(m), &qa, &mut want);
            }
        });
        let t_lut = time(&mut || {
            tables(&qa.row(0)[..cols], cols.div_ceil(2), &mut tabs);
            tabs.resize(tabs.len() + 64, 0);
            for m in &lut {
                // SAFETY: as above.
                unsafe { gemv(black_box(m), &tabs, &mut y) };
            }
        });
        let macs = (rows * cols * copies) as f64;
        let (b_bytes, l_bytes) = (base[0].size_bytes() * copies, lut[0].data.len() * copies);
        println!(
            "{rows}x{cols} x{copies} (1 thread): base-3 1.6-bit {:.1} us = {:.1} GB/s {:.0} GMAC/s | LUT 2-bit {:.1} us = {:.1} GB/s {:.0} GMAC/s",
            t_base * 1e6,
            b_bytes as f64 / t_base / 1e9,
            macs / t_base / 1e9,
            t_lut * 1e6,
            l_bytes as f64 / t_lut / 1e9,
            macs / t_lut / 1e9,
        );
    }
}
