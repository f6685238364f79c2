//! llama.cpp Q8_0: blocks of 32 values, `d: f16` then `qs: [i8; 32]`;
//! value = `d · q`.

use half::f16;

/// Values per block.
pub const BLOCK_ELEMS: usize = 32;
/// Bytes per block.
pub const BLOCK_BYTES: usize = 34;

/// Quantises 32 values: `d = amax / 127`, `q = round(x / d)` (ties away from
/// zero, as llama.cpp's reference quantiser).
pub fn quantize_block(x: &[f32]) -> [u8; BLOCK_BYTES] {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut out = [0u8; BLOCK_BYTES];
    out[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    for (o, &v) in out[2..].iter_mut().zip(x) {
        *o = ((v * id).round() as i8) as u8;
    }
    out
}

/// Expands one block into 32 values.
pub fn dequantize_block(b: &[u8], out: &mut [f32]) {
    let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
    for (o, &q) in out.iter_mut().zip(&b[2..BLOCK_BYTES]) {
        *o = d * f32::from(q as i8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_round_trip() {
        let x: Vec<f32> = (0..32).map(|i| (i as f32 - 15.5) / 8.0).collect();
        let b = quantize_block(&x);
        let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
        assert_eq!(d, f16::from_f32(1.9375 / 127.0).to_f32());
        assert_eq!(b[2] as i8, -127);
        assert_eq!(b[33] as i8, 127);
        let mut y = [0f32; 32];
        dequantize_block(&b, &mut y);
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() <= d * 0.5 + 1e-3, "{a} vs {b}");
        }
    }
}
