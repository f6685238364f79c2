//! The lookup layout ([`super::TernaryLayout::Lut3`]), for AVX2 CPUs without
//! VNNI: 5 bits per three weights (1.67 bits per weight), multiplied by
//! table lookups instead of `vpmaddubsw`.
//!
//! # Encoding
//!
//! Three consecutive weights of a row (a *group*) are one of 27 triples.
//! Up to sign they are one of 14 *patterns* ([`PATTERNS`]: zero, then the 13
//! triples whose first non-zero weight is +1), so a group is a 4-bit pattern
//! index `p` and a sign bit `s`: `t = (−1)^s · PATTERNS[p]`.
//!
//! A block is 16 rows × 24 columns (eight groups, group `g` = columns
//! `3g..3g+3`) in 80 bytes:
//!
//! * bytes `0..32` and `32..64`: two nibble planes. Byte `32·h + 16·l + r`
//!   belongs to row `r`; its low nibble holds the pattern of group
//!   `4l + 2h`, its high nibble that of group `4l + 2h + 1`. So one 32-byte
//!   load gives, for 16 rows, two groups per half (`l` = the 128-bit lane):
//!   one `vpshufb` looks up two different groups' tables at once, one per
//!   lane.
//! * bytes `64..80`: byte `r` holds the signs of row `r`, group `g` at bit
//!   `7 − g`.
//!
//! Padding rows and columns are zero weights: pattern 0, sign 0, all-zero
//! bytes.
//!
//! # Products (see `avx2_lut3`)
//!
//! Per token, each activation byte is split as `a = 16·h + l` with `l` in
//! `[−8, 7]` and `h` in `[−8, 8]`, and each group gets two 16-entry tables,
//! `Σ PATTERNS[p]·l` and `Σ PATTERNS[p]·h` (both within ±24, so bytes). A
//! lookup of the nibble plane gives 32 table entries, `vpsignb` with the sign
//! bits applies `(−1)^s`, and four groups add up in bytes (±96); one
//! `vpmaddubsw` against `(1, 16)` pairs a row's low and high sums into
//! `Σ t·a` in `i16`. Exact: integer sums throughout, and the plane identity
//! needs no `Σ a` correction (the weights are `t`, not codes).
//!
//! Why: on a Zen 2 the 2-bit layout's `vpmaddubsw` GEMV is bound by the
//! core's single integer-multiply port (four per 128 weights). The lookups
//! run on the two shuffle ports and the byte adds on three, so the same
//! weights take fewer cycles (88 against 79 GMAC/s on one core from L3)
//! while the layout reads 17 % fewer bytes than 2 bits. The figures are in
//! the `ternary` module doc.

use super::{BLOCK_ROWS, code_bytes};

/// Columns per block.
pub const BLOCK_COLS: usize = 24;
/// Bytes per block.
pub const BLOCK_BYTES: usize = 80;
/// Three-column groups per block.
pub const GROUPS: usize = BLOCK_COLS / 3;
/// Offset of the sign bytes in a block.
pub(crate) const SIGNS: usize = 64;

/// The triple `(t₀, t₁, t₂)` with base-3 index `9·(t₀+1) + 3·(t₁+1) + (t₂+1)`.
const fn triple(i: usize) -> [i8; 3] {
    [
        (i / 9) as i8 - 1,
        ((i / 3) % 3) as i8 - 1,
        (i % 3) as i8 - 1,
    ]
}

/// The magnitude patterns: zero, then every triple whose first non-zero
/// element is +1 (in base-3 order); entries 14 and 15 are unused (zero).
pub const PATTERNS: [[i8; 3]; 16] = {
    let mut out = [[0i8; 3]; 16];
    let mut n = 1;
    let mut i = 0;
    while i < 27 {
        let t = triple(i);
        let first = if t[0] != 0 {
            t[0]
        } else if t[1] != 0 {
            t[1]
        } else {
            t[2]
        };
        if first == 1 {
            out[n] = t;
            n += 1;
        }
        i += 1;
    }
    out
};

/// The code of each triple, `p | s << 4` (pattern index and sign bit),
/// indexed by `9·(t₀+1) + 3·(t₁+1) + (t₂+1)`; padded to 32 entries so that
/// any 5-bit index is in bounds.
const ENCODE: [u8; 32] = {
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 27 {
        let t = triple(i);
        let mut p = 0;
        while p < 14 {
            let m = PATTERNS[p];
            if m[0] == t[0] && m[1] == t[1] && m[2] == t[2] {
                out[i] = p as u8;
            }
            if m[0] == -t[0] && m[1] == -t[1] && m[2] == -t[2] && p > 0 {
                out[i] = p as u8 | 1 << 4;
            }
            p += 1;
        }
        i += 1;
    }
    out
};

/// Byte offset and bit shift of the nibble of group `g`, row `r`, within a
/// block.
#[inline(always)]
pub(crate) const fn nibble_at(r: usize, g: usize) -> (usize, u32) {
    let (lane, pos) = (g / 4, g % 4);
    (32 * (pos / 2) + 16 * lane + r, 4 * (pos % 2) as u32)
}

/// Packs up to 16 rows (`n_rows` × `cols` values, row-major) into the bytes
/// of one row block (zeroed by the caller); returns `false` if a value is
/// not in {-1, 0, 1}.
pub(crate) fn pack_row_block(values: &[i8], n_rows: usize, cols: usize, out: &mut [u8]) -> bool {
    let full = cols / BLOCK_COLS;
    let mut bad = 0u64;
    for r in 0..n_rows.min(BLOCK_ROWS) {
        let row = &values[r * cols..(r + 1) * cols];
        let mut blocks = out.chunks_exact_mut(BLOCK_BYTES);
        for (v, block) in row.chunks_exact(BLOCK_COLS).zip(&mut blocks) {
            let v: &[i8; BLOCK_COLS] = v.try_into().expect("chunks of BLOCK_COLS");
            bad |= pack_block_row(v, r, block);
        }
        if full * BLOCK_COLS < cols {
            // The last, partial block: padding columns are zero weights.
            let mut v = [0i8; BLOCK_COLS];
            v[..cols - full * BLOCK_COLS].copy_from_slice(&row[full * BLOCK_COLS..]);
            if let Some(block) = blocks.next() {
                bad |= pack_block_row(&v, r, block);
            }
        }
    }
    bad == 0
}

/// Writes row `r` of one block; returns non-zero
/// if a value is not in {-1, 0, 1}.
///
/// The 24 values as three little-endian words hold their codes `t + 1`
/// bytewise ([`code_bytes`]); the 192-bit number
/// `9·C + 3·(C >> 8) + (C >> 16)` then holds, in byte `k`, the base-3 index
/// of the triple starting at column `k` (at most 26, so no byte carries
/// into the next), and the groups are its bytes 0, 3, …, 21.
#[inline(always)]
fn pack_block_row(v: &[i8; BLOCK_COLS], r: usize, block: &mut [u8]) -> u64 {
    let mut bad = 0;
    let c: [u64; 3] = std::array::from_fn(|i| {
        let mut b = [0u8; 8];
        for (o, &x) in b.iter_mut().zip(&v[8 * i..8 * i + 8]) {
            *o = x as u8;
        }
        let (c, invalid) = code_bytes(u64::from_le_bytes(b));
        bad |= invalid;
        c
    });
    let next = |i: usize| c.get(i + 1).copied().unwrap_or(0);
    let sums: [u64; 3] = std::array::from_fn(|i| {
        let s1 = c[i] >> 8 | next(i) << 56;
        let s2 = c[i] >> 16 | next(i) << 48;
        c[i].wrapping_mul(9)
            .wrapping_add(s1.wrapping_mul(3))
            .wrapping_add(s2)
    });
    let mut p = [0u8; GROUPS];
    let mut signs = 0u8;
    for (g, pg) in p.iter_mut().enumerate() {
        let k = 3 * g;
        let e = ENCODE[(sums[k / 8] >> (8 * (k % 8))) as usize & 31];
        *pg = e & 15;
        signs |= (e >> 4) << (7 - g);
    }
    // Two groups per byte where `nibble_at` places them.
    for g in (0..GROUPS).step_by(2) {
        block[nibble_at(r, g).0] = p[g] | p[g + 1] << 4;
    }
    block[SIGNS + r] = signs;
    bad
}

/// Decodes a packed block: `out[r · 24 + c]` = the weight of row `r`,
/// column `c`.
pub(crate) fn decode_block(block: &[u8], out: &mut [i8]) {
    for (r, row) in out
        .chunks_exact_mut(BLOCK_COLS)
        .take(BLOCK_ROWS)
        .enumerate()
    {
        let signs = block[SIGNS + r];
        for (g, t) in row.chunks_exact_mut(3).enumerate() {
            let (at, shift) = nibble_at(r, g);
            let m = PATTERNS[usize::from((block[at] >> shift) & 15)];
            let neg = (signs >> (7 - g)) & 1 == 1;
            for (t, m) in t.iter_mut().zip(m) {
                *t = if neg { -m } else { m };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{TernaryLayout, TernaryMatrix};
    use super::*;

    #[test]
    fn every_triple_has_one_pattern_and_sign() {
        let mut seen = std::collections::HashSet::new();
        for (i, &e) in ENCODE[..27].iter().enumerate() {
            let (p, s) = (e & 15, e >> 4);
            let t = triple(i);
            assert!(p < 14 && s <= 1, "triple {i}: code {e:#x}");
            let m = PATTERNS[usize::from(p)];
            let back = if s == 1 { m.map(|x| -x) } else { m };
            assert_eq!(back, t, "triple {i}");
            assert!(seen.insert((p, s)), "code ({p}, {s}) used twice");
        }
        assert_eq!(PATTERNS[14], [0, 0, 0]);
        assert_eq!(PATTERNS[15], [0, 0, 0]);
    }

    #[test]
    fn pack_places_every_group_where_the_layout_says() {
        for (rows, cols) in [(1, 1), (16, 24), (17, 25), (33, 100), (5, 63), (2, 2560)] {
            let values: Vec<i8> = (0..rows * cols)
                .map(|i| ((i * 7919 + i / 5) % 3) as i8 - 1)
                .collect();
            let m = super::super::pack_unit(TernaryLayout::Lut3, rows, cols, &values);
            assert_eq!(m.col_blocks(), cols.div_ceil(BLOCK_COLS));
            assert_eq!(m.data().len(), TernaryLayout::Lut3.packed_bytes(rows, cols));
            // Storage-order definition, independent of `value`.
            let at = |r: usize, c: usize| {
                if r < rows && c < cols {
                    values[r * cols + c]
                } else {
                    0
                }
            };
            for rb in 0..m.row_blocks() {
                for cb in 0..m.col_blocks() {
                    let block =
                        &m.data()[(rb * m.col_blocks() + cb) * BLOCK_BYTES..][..BLOCK_BYTES];
                    for r in 0..BLOCK_ROWS {
                        for g in 0..GROUPS {
                            let (row, c0) = (rb * BLOCK_ROWS + r, cb * BLOCK_COLS + 3 * g);
                            let t = [at(row, c0), at(row, c0 + 1), at(row, c0 + 2)];
                            let plane = (g % 4) / 2;
                            let byte = block[32 * plane + 16 * (g / 4) + r];
                            let p = if g % 2 == 0 { byte & 15 } else { byte >> 4 };
                            let s = (block[64 + r] >> (7 - g)) & 1;
                            let m = PATTERNS[usize::from(p)];
                            let got = if s == 1 { m.map(|x| -x) } else { m };
                            assert_eq!(got, t, "{rows}x{cols} rb {rb} cb {cb} r {r} g {g}");
                        }
                    }
                }
            }
            assert_eq!(m.unpack(), values);
            let stacked = TernaryMatrix::stack(&[&m, &m]).unwrap();
            assert_eq!(stacked.layout(), TernaryLayout::Lut3);
            assert_eq!(stacked.unpack(), [values.clone(), values].concat());
        }
    }
}
