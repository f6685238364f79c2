//! AVX-512 (with VBMI) packing of one row into the packed layout: sixteen
//! 20-column blocks per step. The five u32 words of each block are gathered
//! (`vpgatherdd`), turned into codes with a bytewise add, combined into the
//! base-3 values with 16-bit multiplies (no carry crosses a byte, see
//! `pack_row_block`), mapped to packed bytes with two 128-entry byte
//! permutations (`vpermi2b`), and stored to their blocks. The words are
//! picked out of five plain loads with dword permutations rather than
//! gathered, and stored one by one rather than scattered: both gather and
//! scatter measured slower than the scalar code on AMD Zen 4. Loading a
//! 2B-parameter model packs 2·10⁹ weights, so this is most of load time.

use std::arch::x86_64::*;

use super::{BLOCK_BYTES, BLOCK_COLS, BYTE_OF};

/// Packs the first `n_blocks - n_blocks % 16` blocks of `row` into row `r`
/// of the row block `out`; returns how many blocks it did and a non-zero
/// value if a value was not in {-1, 0, 1}.
///
/// # Safety
/// The CPU must support AVX-512 F, BW and VBMI. `row` holds at least
/// `n_blocks * 20` values and `out` at least `n_blocks * 64` bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
pub(super) unsafe fn pack_row(
    row: &[i8],
    out: &mut [u8],
    r: usize,
    n_blocks: usize,
) -> (usize, u64) {
    assert!(row.len() >= n_blocks * BLOCK_COLS && out.len() >= n_blocks * BLOCK_BYTES && r < 16);
    let mut table = [0u8; 256];
    table[..243].copy_from_slice(&BYTE_OF);
    // SAFETY: `table` holds 256 bytes; four unaligned 64-byte loads.
    let (t0, t1, t2, t3) = unsafe {
        (
            _mm512_loadu_si512(table.as_ptr().cast()),
            _mm512_loadu_si512(table.as_ptr().add(64).cast()),
            _mm512_loadu_si512(table.as_ptr().add(128).cast()),
            _mm512_loadu_si512(table.as_ptr().add(192).cast()),
        )
    };
    let one = _mm512_set1_epi8(1);
    let two = _mm512_set1_epi8(2);
    let weights = [81i16, 27, 9, 3, 1];
    // Word d of block b is dword 5b + d of the group's 80: from registers
    // 0-1 (dwords 0..32), 2-3 (32..64) or 4 (64..80).
    let mut idx = [[0i32; 16]; 5];
    let mut from_mid = [0u16; 5];
    let mut from_last = [0u16; 5];
    for (d, idx) in idx.iter_mut().enumerate() {
        for (b, slot) in idx.iter_mut().enumerate() {
            let w = 5 * b + d;
            *slot = (w % 32) as i32;
            if (32..64).contains(&w) {
                from_mid[d] |= 1 << b;
            } else if w >= 64 {
                from_last[d] |= 1 << b;
            }
        }
    }
    let mut bad = 0u64;
    let groups = n_blocks / 16;
    let mut lanes = [0u32; 16];
    for g in 0..groups {
        // SAFETY: block group g covers values [320 g, 320 g + 320) of `row`
        // (checked by the assert above): five 64-byte loads.
        let z: [__m512i; 5] = std::array::from_fn(|k| unsafe {
            _mm512_loadu_si512(row.as_ptr().add(g * 16 * BLOCK_COLS + 64 * k).cast())
        });
        let mut n = _mm512_setzero_si512();
        for (d, &w) in weights.iter().enumerate() {
            // SAFETY: `idx[d]` holds 16 dwords.
            let i = unsafe { _mm512_loadu_si512(idx[d].as_ptr().cast()) };
            let mut words = _mm512_permutex2var_epi32(z[0], i, z[1]);
            words = _mm512_mask_blend_epi32(
                from_mid[d],
                words,
                _mm512_permutex2var_epi32(z[2], i, z[3]),
            );
            words = _mm512_mask_blend_epi32(from_last[d], words, _mm512_permutexvar_epi32(i, z[4]));
            let codes = _mm512_add_epi8(words, one);
            bad |= _mm512_cmpgt_epu8_mask(codes, two);
            n = _mm512_add_epi16(n, _mm512_mullo_epi16(codes, _mm512_set1_epi16(w)));
        }
        let lo = _mm512_permutex2var_epi8(t0, n, t1);
        let hi = _mm512_permutex2var_epi8(t2, n, t3);
        let bytes = _mm512_mask_blend_epi8(_mm512_movepi8_mask(n), lo, hi);
        // SAFETY: `lanes` holds 16 dwords.
        unsafe { _mm512_storeu_si512(lanes.as_mut_ptr().cast(), bytes) };
        for (b, lane) in lanes.iter().enumerate() {
            let at = (g * 16 + b) * BLOCK_BYTES + 4 * r;
            out[at..at + 4].copy_from_slice(&lane.to_le_bytes());
        }
    }
    (groups * 16, bad)
}
