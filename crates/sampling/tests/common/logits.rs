//! Deterministic 128k-token logits for the sampler's tests and benchmark,
//! made with basic arithmetic only (no transcendental functions), so they
//! are the same on every platform.

#![allow(dead_code)]

use bitnet_sampling::Rng;

/// Llama 3's vocabulary size.
pub const VOCAB: usize = 128_256;

/// Roughly normal noise with unit spread: the sum of four uniforms.
fn noise(rng: &mut Rng) -> f32 {
    ((0..4).map(|_| rng.next_f64()).sum::<f64>() - 2.0) as f32
}

/// A random-weight model's logits (the tiny-bitnet fixture's shape): a
/// broad bump, the 95 % nucleus holds tens of thousands of tokens.
pub fn flat(seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..VOCAB).map(|_| 3.5 * noise(&mut rng)).collect()
}

/// A trained model's logits: a broad tail and sixteen likely tokens.
pub fn peaked(seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut l: Vec<f32> = (0..VOCAB).map(|_| 4.0 * noise(&mut rng)).collect();
    for k in 0..16 {
        let id = (rng.next_u64() % VOCAB as u64) as usize;
        l[id] = 14.0 + 8.0 / (k + 1) as f32;
    }
    l
}
