//! llama.cpp Q6_K: super-blocks of 256 values in 210 bytes.
//!
//! Layout: `ql: [u8; 128]` (low 4 bits), `qh: [u8; 64]` (high 2 bits),
//! `scales: [i8; 16]` (one per 16 values), `d: f16`. A value is
//! `d · scale · (q − 32)` with the 6-bit `q`. Within each half of 128 values,
//! for `l` in 0..32: value `l` has the low nibble of `ql[l]`, value `l+32` the
//! low nibble of `ql[l+32]`, value `l+64` the high nibble of `ql[l]`, value
//! `l+96` the high nibble of `ql[l+32]`; their high bits are bit pairs 0, 2,
//! 4 and 6 of `qh[l]`. The second half uses the next 64 `ql` and 32 `qh`
//! bytes. Sub-block `i` (values 16·i..16·i+16) uses `scales[i]`.

use half::f16;

/// Values per block.
pub const BLOCK_ELEMS: usize = 256;
/// Bytes per block.
pub const BLOCK_BYTES: usize = 210;

const QL: usize = 0;
const QH: usize = 128;
const SCALES: usize = 192;
/// Offset of the f16 super-block scale `d`.
pub(crate) const D: usize = 208;

/// The 6-bit codes `q` (0..=63) of one block's 256 values, in order.
pub fn levels(b: &[u8]) -> [u8; BLOCK_ELEMS] {
    let mut out = [0u8; BLOCK_ELEMS];
    for half in 0..2 {
        let ql = &b[QL + 64 * half..QL + 64 * half + 64];
        let qh = &b[QH + 32 * half..QH + 32 * half + 32];
        let y = &mut out[128 * half..128 * half + 128];
        for l in 0..32 {
            y[l] = (ql[l] & 0xF) | ((qh[l] & 3) << 4);
            y[l + 32] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
            y[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            y[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
    }
    out
}

/// The 16 group scales of one block (group `g`: values `16g..16g+16`).
pub fn scales(b: &[u8]) -> [i8; 16] {
    std::array::from_fn(|g| b[SCALES + g] as i8)
}

/// Expands one block into 256 values: `d · sc_g · (q − 32)`.
pub fn dequantize_block(b: &[u8], out: &mut [f32]) {
    let d = f16::from_le_bytes([b[D], b[D + 1]]).to_f32();
    let (levels, scales) = (levels(b), scales(b));
    for (k, (y, &q)) in out.iter_mut().zip(&levels).enumerate() {
        *y = d * f32::from(scales[k / 16]) * (i32::from(q) - 32) as f32;
    }
}

const GROUP_MAX_EPS: f32 = 1e-15;

fn nearest_int(v: f32) -> i32 {
    v.round_ties_even() as i32
}

/// llama.cpp's `make_qx_quants` with `rmse_type = 1` (weights x²): finds the
/// scale minimising the weighted squared error over a small search around
/// `nmax / max`, writing `l + nmax` into `levels`.
fn make_qx_quants(x: &[f32], nmax: i32, levels: &mut [u8]) -> f32 {
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        levels.fill(0);
        return 0.0;
    }
    let quantize = |iscale: f32, levels: Option<&mut [u8]>| {
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        let mut levels = levels;
        for (i, &v) in x.iter().enumerate() {
            let l = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
            if let Some(levels) = levels.as_deref_mut() {
                levels[i] = (l + nmax) as u8;
            }
            let w = v * v;
            sumlx += w * v * l as f32;
            suml2 += w * (l * l) as f32;
        }
        (sumlx, suml2)
    };
    let (sumlx, suml2) = quantize(-(nmax as f32) / max, Some(levels));
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        let iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = quantize(iscale, None);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            quantize(iscale, Some(levels));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Quantises 256 values (llama.cpp's reference `quantize_row_q6_K`).
pub fn quantize_block(x: &[f32]) -> [u8; BLOCK_BYTES] {
    let mut out = [0u8; BLOCK_BYTES];
    let mut levels = [0u8; BLOCK_ELEMS];
    let mut scales = [0f32; 16];
    let mut max_scale = 0.0f32;
    let mut max_abs_scale = 0.0f32;
    for ib in 0..16 {
        let s = make_qx_quants(
            &x[16 * ib..16 * ib + 16],
            32,
            &mut levels[16 * ib..16 * ib + 16],
        );
        scales[ib] = s;
        if s.abs() > max_abs_scale {
            max_abs_scale = s.abs();
            max_scale = s;
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        return out;
    }
    let iscale = -128.0 / max_scale;
    let d = f16::from_f32(1.0 / iscale);
    out[D..D + 2].copy_from_slice(&d.to_le_bytes());
    for (ib, &s) in scales.iter().enumerate() {
        out[SCALES + ib] = (nearest_int(iscale * s).min(127) as i8) as u8;
    }
    for j in 0..16 {
        let sd = d.to_f32() * f32::from(out[SCALES + j] as i8);
        if sd == 0.0 {
            continue;
        }
        for ii in 0..16 {
            let l = nearest_int(x[16 * j + ii] / sd).clamp(-32, 31);
            levels[16 * j + ii] = (l + 32) as u8;
        }
    }
    for half in 0..2 {
        let lv = &levels[128 * half..128 * half + 128];
        for l in 0..32 {
            let (q1, q2, q3, q4) = (lv[l], lv[l + 32], lv[l + 64], lv[l + 96]);
            out[QL + 64 * half + l] = (q1 & 0xF) | ((q3 & 0xF) << 4);
            out[QL + 64 * half + l + 32] = (q2 & 0xF) | ((q4 & 0xF) << 4);
            out[QH + 32 * half + l] =
                (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_built_block_decodes_by_the_layout() {
        let mut b = [0u8; BLOCK_BYTES];
        b[D..D + 2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        for i in 0..16 {
            b[SCALES + i] = (i as i8 - 8) as u8;
        }
        // value 3 (half 0, l=3): low nibble of ql[3], bits 0..1 of qh[3].
        b[QL + 3] = 0x0A | 0x50; // value 67 gets high nibble 5
        b[QH + 3] = 0b10_00_00_01; // value 3 high bits 1, value 99 high bits 2
        b[QL + 64 + 40] = 0xC0; // half 1, l = 8: value 128+8+96=232 low nibble 12
        let mut y = [0f32; 256];
        dequantize_block(&b, &mut y);
        let q = |v: i32, sc: i32| 0.5 * sc as f32 * (v - 32) as f32;
        assert_eq!(y[3], q(0x0A | (1 << 4), -8));
        assert_eq!(y[67], q(5, -4));
        assert_eq!(y[99], q(2 << 4, -2));
        assert_eq!(y[232], q(12, 6));
        assert_eq!(y[0], q(0, -8));
    }

    #[test]
    fn quantisation_error_is_small() {
        let x: Vec<f32> = (0..256)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0 * if i % 16 == 3 { 3.0 } else { 1.0 })
            .collect();
        let b = quantize_block(&x);
        let mut y = [0f32; 256];
        dequantize_block(&b, &mut y);
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() <= amax / 31.0, "{a} vs {b}");
        }
    }

    #[test]
    fn zero_block_is_all_zero() {
        let b = quantize_block(&[0.0; 256]);
        assert!(b.iter().all(|&v| v == 0));
    }
}
