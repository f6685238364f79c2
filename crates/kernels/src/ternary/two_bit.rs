//! The 2-bit layout ([`super::TernaryLayout::TwoBit`]), for AVX2 CPUs
//! with AVX-VNNI (it served AVX2 without VNNI too, until the lookup layout
//! of [`super::lut3`] replaced it there).
//!
//! A block is 16 rows × 16 columns in 64 bytes. Byte `j` belongs to row
//! `j / 4`; its bits `2d..2d+2` hold the code `t + 1` of column `j % 4 + 4·d`,
//! `d = 0..4`. So, as in the base-3 layout, digit `d` of the 64 bytes is four
//! consecutive columns of 16 rows, and the same micro-kernels multiply it.
//! Padding rows and columns hold code 1 (`t = 0`).
//!
//! # Why a second layout
//!
//! Decoding is memory-bound only if the arithmetic per byte keeps up with
//! DRAM. AVX2 has no `vpdpbusd`: a product is `vpmaddubsw` (unsigned codes ×
//! signed activation bytes into saturating `i16` pairs) plus a `vpaddw`, and
//! the base-3 digits must first become codes. Per 32 bytes of the 1.6-bit
//! layout (160 weights) that is five digit planes, each two byte additions
//! (tripling), two compares and two subtractions (the code), the multiply
//! and the add: 40 vector operations, 0.25 per weight. The plane identity
//! that makes AVX-512 fast (`3·q_d = 256·digit_d + q_{d+1}`, planes straight
//! into the multiply) does not carry over: `vpmaddubsw` saturates when a
//! plane byte up to 255 meets an activation up to ±128 twice in a pair, and
//! every exact split of the plane or of the activations doubles the
//! multiplies. No byte-wise AVX2 operation turns a plane into its digit in
//! fewer than the three operations used (the thresholds 86 and 171 are not
//! nibble boundaries, so `vpshufb` cannot), and the lookup tables tried
//! then (column pairs, 16-bit entries) cost more per weight than the
//! multiply; the sign-folded triples of [`super::lut3`] later did better.
//! Measured on a Zen 2 (issue 13), that loop
//! streams 6.2 GB/s of packed weights per core, 40 % of what the core can
//! read.
//!
//! Here one `vpsrlw` and four `vpand` per 32 bytes give four planes of codes
//! (the planes of bits 2..4 come out multiplied by 4, which the widening
//! step divides back exactly with a shift), so a product
//! costs 13 vector operations per 128 weights, 0.10 per weight: 2.5× fewer
//! operations per weight for 1.25× more bytes. See `avx2_two_bit` for the
//! kernels and the `ternary` module doc for measurements.

use super::{BLOCK_BYTES, BLOCK_ROWS, code_word};

/// Columns per block.
pub const BLOCK_COLS: usize = 16;
/// Codes per byte (four-column steps per block).
pub const CODES: usize = 4;

/// The byte of a padding row: code 1 (`t = 0`) in every position.
const PAD: u8 = 0b0101_0101;

/// Code `d` of a packed byte: `t + 1` of column `j % 4 + 4·d`.
#[inline(always)]
pub fn decode_code(byte: u8, d: usize) -> u8 {
    (byte >> (2 * d)) & 3
}

/// Packs up to 16 rows (`n_rows` × `cols` values, row-major) into the bytes
/// of one row block; returns `false` if a value is not in {-1, 0, 1}.
///
/// Per row and block, the four columns of step `d` as one little-endian word
/// hold their codes bytewise; shifted by `2·d` and or-ed, they are the row's
/// four bytes (codes are at most 2, so no bit crosses a byte).
pub(crate) fn pack_row_block(values: &[i8], n_rows: usize, cols: usize, out: &mut [u8]) -> bool {
    let col_blocks = cols.div_ceil(BLOCK_COLS);
    let mut bad = 0u32;
    for r in 0..BLOCK_ROWS {
        if r >= n_rows {
            for cb in 0..col_blocks {
                out[cb * BLOCK_BYTES + 4 * r..][..4].fill(PAD);
            }
            continue;
        }
        let row = &values[r * cols..(r + 1) * cols];
        for cb in 0..col_blocks {
            let mut v = [0i8; BLOCK_COLS];
            let c0 = cb * BLOCK_COLS;
            let n = BLOCK_COLS.min(cols - c0);
            v[..n].copy_from_slice(&row[c0..c0 + n]);
            let mut word = 0u32;
            for d in 0..CODES {
                let (c, b) = code_word([v[4 * d], v[4 * d + 1], v[4 * d + 2], v[4 * d + 3]]);
                bad |= b;
                word |= c << (2 * d);
            }
            out[cb * BLOCK_BYTES + 4 * r..][..4].copy_from_slice(&word.to_le_bytes());
        }
    }
    bad == 0
}

#[cfg(test)]
mod tests {
    use super::super::{ScaleRule, TernaryLayout, TernaryMatrix};
    use super::*;

    #[test]
    fn pack_places_every_code_where_the_layout_says() {
        for (rows, cols) in [(1, 1), (16, 16), (17, 21), (33, 100), (5, 63), (2, 2560)] {
            let values: Vec<i8> = (0..rows * cols)
                .map(|i| ((i * 7919 + i / 5) % 3) as i8 - 1)
                .collect();
            let m = super::super::pack_unit(TernaryLayout::TwoBit, rows, cols, &values);
            assert_eq!(m.col_blocks(), cols.div_ceil(16));
            assert_eq!(
                m.data().len(),
                TernaryLayout::TwoBit.packed_bytes(rows, cols)
            );
            for rb in 0..m.row_blocks() {
                for cb in 0..m.col_blocks() {
                    for j in 0..BLOCK_BYTES {
                        let r = rb * BLOCK_ROWS + j / 4;
                        let mut want = 0u8;
                        for d in 0..CODES {
                            let c = cb * BLOCK_COLS + j % 4 + 4 * d;
                            let code = if r < rows && c < cols {
                                (values[r * cols + c] + 1) as u8
                            } else {
                                1
                            };
                            want |= code << (2 * d);
                        }
                        let at = (rb * m.col_blocks() + cb) * BLOCK_BYTES + j;
                        assert_eq!(m.data()[at], want, "{rows}x{cols} rb {rb} cb {cb} j {j}");
                    }
                }
            }
            assert_eq!(m.unpack(), values);
            let stacked = TernaryMatrix::stack(&[&m, &m]).unwrap();
            assert_eq!(stacked.layout(), TernaryLayout::TwoBit);
            assert_eq!(stacked.unpack(), [values.clone(), values].concat());
        }
    }

    #[test]
    fn rejects_non_ternary_values() {
        // Both AVX2 layouts; index 57 lies in a full block of either.
        for layout in [TernaryLayout::TwoBit, TernaryLayout::Lut3] {
            for bad in [2i8, -2, 3, 127, -128] {
                let mut v = vec![0i8; 2 * 40];
                v[57] = bad;
                let err =
                    TernaryMatrix::pack_as(layout, 2, 40, &v, vec![1.0; 2], ScaleRule::Divide)
                        .unwrap_err();
                assert!(
                    err.to_string().contains("index 57"),
                    "{layout:?} {bad}: {err}"
                );
            }
        }
    }
}
