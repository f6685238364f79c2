//! The lookup layout ([`super::lut3`]) decoded for the AVX-512 GEMM.
//!
//! On cores that run 512-bit operations as two 256-bit halves (Zen 4), the
//! lookup GEMV of `avx2_lut3` decodes a token faster than the base-3
//! `vpdpbusd` GEMV (the 30 layers of 2B-4T from DRAM on one Zen 4 core:
//! 22.6 against 28.2 ms), but a prompt's passes of lookups are much slower
//! than the `vpdpbusd` micro-kernel (123 against 212 GMAC/s). So prompts on
//! such a core decode a lookup-layout panel into the micro-kernel's operand
//! shape, and the GEMM of `avx512` runs unchanged on it.
//!
//! [`decode_panel`] writes, per 24-column block, six *steps*: step `s` is one
//! vector whose 32-bit lane `r` holds the codes `t + 1` of row `r`, columns
//! `4s..4s+4`, the columns' natural order, so the activations need no
//! reordering. With AVX-512 VBMI:
//!
//! * once per block, the nibble planes are split into a low- and a
//!   high-nibble vector, and each byte gets its group's sign as bit 4 (a
//!   `vptestmb` of the row's sign byte against the group's bit, then a
//!   masked add of 16);
//! * per step, `vpermi2b` gathers from those two vectors the signed pattern
//!   index of each (row, column)'s group, an or adds `32·j` (`j` = the
//!   column's digit within its group), and a second `vpermi2b` looks the
//!   result up in a 96-entry table of codes: `PATTERNS[p][j] + 1`, or
//!   `1 − PATTERNS[p][j]` for a negative group.
//!
//! Four operations per step and five per block (a first version tested each
//! step's signs and negated its codes, six per step): on one Zen 4 core,
//! 2560 × 2560, 8 tokens took 318 µs against 334 with the first version and
//! 316 for the base-3 GEMV, 16 tokens 545 µs against 561 and 558 for the
//! base-3 panels; at 128 tokens all three are within noise (about 3.8 ms).

use std::arch::x86_64::*;
use std::ops::Range;

use super::TernaryMatrix;
use super::lut3::{BLOCK_BYTES, BLOCK_COLS, GROUPS, PATTERNS, SIGNS, nibble_at};

/// Steps (four columns of 16 rows, one vector) per block.
pub(crate) const STEPS: usize = BLOCK_COLS / 4;

/// What [`step_table`] puts at each lane byte.
#[derive(Clone, Copy)]
enum Entry {
    /// The `vpermi2b` index of the nibble of the column's group `g = c / 3`,
    /// row `r`: its byte in the low-nibble vector, or (indices from 64) in
    /// the high-nibble one ([`nibble_at`]).
    Gather,
    /// `32·j`, `j = c mod 3`: which digit of the pattern the column is.
    Digit,
}

const GATHER: [[u8; 64]; STEPS] = step_table(Entry::Gather);
const DIGIT: [[u8; 64]; STEPS] = step_table(Entry::Digit);

/// The sign bit (`7 − g`) of the group `g` whose nibble is the low
/// (`high = false`) or high one of plane byte `b` ([`nibble_at`]: the same
/// group for every row of a 16-byte lane).
const fn sign_bits(high: bool) -> [u8; 64] {
    let mut t = [0u8; 64];
    let mut g = 0;
    while g < GROUPS {
        let (lane, shift) = nibble_at(0, g);
        if (shift == 4) == high {
            let mut r = 0;
            while r < 16 {
                t[lane + r] = 1 << (7 - g);
                r += 1;
            }
        }
        g += 1;
    }
    t
}

const SIGN_LOW: [u8; 64] = sign_bits(false);
const SIGN_HIGH: [u8; 64] = sign_bits(true);

/// The codes at `p + 16·s + 32·j` (pattern, sign, digit): `PATTERNS[p][j] +
/// 1` for `s = 0`, `1 − PATTERNS[p][j]` for `s = 1`; split in the two
/// `vpermi2b` tables (entries 96.. are never read).
const CODES: [[u8; 64]; 2] = {
    let mut t = [[1u8; 64]; 2];
    let mut i = 0;
    while i < 96 {
        let (p, neg, j) = (i % 16, (i / 16) % 2 == 1, i / 32);
        let v = PATTERNS[p][j];
        t[i / 64][i % 64] = if neg { 1 - v } else { 1 + v } as u8;
        i += 1;
    }
    t
};

/// Per step `s`, the entry for row `r` and column `c = 4s + i` at lane
/// byte `4r + i`.
const fn step_table(e: Entry) -> [[u8; 64]; STEPS] {
    let mut t = [[0u8; 64]; STEPS];
    let mut s = 0;
    while s < STEPS {
        let mut b = 0;
        while b < 64 {
            let (r, c) = (b / 4, 4 * s + b % 4);
            t[s][b] = match e {
                Entry::Gather => {
                    let (byte, shift) = nibble_at(r, c / 3);
                    (byte + 16 * shift as usize) as u8
                }
                Entry::Digit => (32 * (c % 3)) as u8,
            };
            b += 1;
        }
        s += 1;
    }
    t
}

/// Loads one of the constant tables above.
#[target_feature(enable = "avx512f")]
#[inline]
fn constant(t: &[u8; 64]) -> __m512i {
    // SAFETY: `t` is 64 readable bytes.
    unsafe { _mm512_loadu_si512(t.as_ptr().cast()) }
}

/// Decodes column blocks `cbs` of row blocks `rb0..rb0 + nrb` into `buf`:
/// step `STEPS·c + s` of row block `i` (column block `cbs.start + c`) at
/// `buf + (step · nrb + i) · 64`, the panel of the `avx512` GEMM.
///
/// # Safety
/// AVX-512 F/BW/VBMI; `w` is in the lookup layout, the row and column
/// blocks exist; `buf` is 64-byte aligned and holds
/// `STEPS · cbs.len() · nrb · 64` bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
pub(crate) unsafe fn decode_panel(
    w: &TernaryMatrix,
    rb0: usize,
    nrb: usize,
    cbs: Range<usize>,
    buf: *mut u8,
) {
    let nib = _mm512_set1_epi8(15);
    let sixteen = _mm512_set1_epi8(16);
    let codes = [constant(&CODES[0]), constant(&CODES[1])];
    let (sign_low, sign_high) = (constant(&SIGN_LOW), constant(&SIGN_HIGH));
    for i in 0..nrb {
        let base = w.row_block(rb0 + i).as_ptr();
        for (c, cb) in cbs.clone().enumerate() {
            // SAFETY: block `cb` of the row block is 80 readable bytes.
            let (planes, signs) = unsafe {
                let p = base.add(cb * BLOCK_BYTES);
                (
                    _mm512_loadu_si512(p.cast()),
                    // Row r's sign byte at byte r of every lane, as the
                    // planes hold row r.
                    _mm512_broadcast_i32x4(_mm_loadu_si128(p.add(SIGNS).cast())),
                )
            };
            let lo = _mm512_and_si512(planes, nib);
            let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(planes), nib);
            let lo = _mm512_mask_add_epi8(lo, _mm512_test_epi8_mask(signs, sign_low), lo, sixteen);
            let hi = _mm512_mask_add_epi8(hi, _mm512_test_epi8_mask(signs, sign_high), hi, sixteen);
            for s in 0..STEPS {
                let p = _mm512_permutex2var_epi8(lo, constant(&GATHER[s]), hi);
                let idx = _mm512_or_si512(p, constant(&DIGIT[s]));
                let code = _mm512_permutex2var_epi8(codes[0], idx, codes[1]);
                let step = STEPS * c + s;
                // SAFETY: inside the panel (caller), 64-byte aligned.
                unsafe { _mm512_store_si512(buf.add((step * nrb + i) * 64).cast(), code) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ternary::TernaryLayout;

    /// Every code of the panel is the weight at its row and column plus one
    /// (padding columns and rows hold weight 0), for a random matrix with
    /// partial row and column blocks.
    #[test]
    fn panel_holds_codes_in_column_order() {
        if !(is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vbmi")) {
            eprintln!("skipping: this CPU lacks AVX-512 VBMI");
            return;
        }
        let (rows, cols) = (37, 100);
        let mut s = 7u64;
        let values: Vec<i8> = (0..rows * cols)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                ((s >> 33) % 3) as i8 - 1
            })
            .collect();
        let w = crate::ternary::pack_unit(TernaryLayout::Lut3, rows, cols, &values);
        let col_blocks = w.col_blocks();
        let nrb = w.row_blocks();
        let mut buf = crate::aligned::AlignedBytes::zeroed(STEPS * col_blocks * nrb * 64);
        // SAFETY: the CPU has the features (checked above); the buffer holds
        // the whole panel and is 64-byte aligned.
        unsafe { decode_panel(&w, 0, nrb, 0..col_blocks, buf.as_mut_slice().as_mut_ptr()) };
        let panel = buf.as_mut_slice();
        for i in 0..nrb {
            for step in 0..STEPS * col_blocks {
                for b in 0..64 {
                    let (r, c) = (16 * i + b / 4, 4 * step + b % 4);
                    let t = if r < rows && c < cols {
                        values[r * cols + c]
                    } else {
                        0
                    };
                    assert_eq!(
                        panel[(step * nrb + i) * 64 + b] as i8,
                        t + 1,
                        "row {r} col {c}"
                    );
                }
            }
        }
    }
}
