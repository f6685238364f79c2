//! The sampler alone on a 128k-token vocabulary (Llama 3's 128256), for
//! every kind of chain: how long one `Sampler::sample` takes.
//!
//! Run: `cargo bench -p bitnet-sampling --bench sampler`. Each case prints
//! the median and the spread (min..max) of the per-call time over several
//! rounds. Two logit shapes: `peaked` (a trained model's: a few likely
//! tokens over a broad tail) and `flat` (a random-weight model's, as the
//! tiny-bitnet fixture's: the 95 % nucleus holds about a third of the
//! vocabulary, the worst case for top-p).

use std::hint::black_box;
use std::time::Instant;

use bitnet_sampling::{Sampler, SamplerConfig};

#[path = "../tests/common/logits.rs"]
mod logits;

use logits::{VOCAB, flat, peaked};

fn config(temperature: f32, top_k: usize, top_p: f32, min_p: f32, penalty: f32) -> SamplerConfig {
    SamplerConfig {
        temperature,
        top_k,
        top_p,
        min_p,
        repeat_penalty: penalty,
        seed: 1,
        ..SamplerConfig::default()
    }
}

fn main() {
    let cases = [
        ("greedy", config(0.0, 0, 1.0, 0.0, 1.0)),
        ("greedy, repeat-penalty 1.1", config(0.0, 0, 1.0, 0.0, 1.1)),
        (
            "llama.cpp default (0.8, k40, p0.95, m0.05)",
            SamplerConfig {
                seed: 1,
                ..SamplerConfig::default()
            },
        ),
        ("temp 1, no truncation", config(1.0, 0, 1.0, 0.0, 1.0)),
        (
            "temp 0.7, top-p 0.9 (OpenAI)",
            config(0.7, 0, 0.9, 0.0, 1.0),
        ),
        ("temp 1, min-p 0.05", config(1.0, 0, 1.0, 0.05, 1.0)),
        (
            "temp 1, top-k 1000, repeat-penalty 1.1",
            config(1.0, 1000, 1.0, 0.0, 1.1),
        ),
        (
            "temp 1, top-p 0.99, repeat-penalty 1.1",
            config(1.0, 0, 0.99, 0.0, 1.1),
        ),
    ];
    let history: Vec<u32> = (0..64u32).map(|i| i * 2003 % VOCAB as u32).collect();
    let shapes: [(&str, Vec<Vec<f32>>); 2] = [
        ("peaked", (0..8).map(peaked).collect()),
        ("flat", (0..8).map(flat).collect()),
    ];
    let (rounds, per_round) = (7, 32);
    println!(
        "sampler on a {VOCAB}-token vocabulary: µs per call, median of {rounds} rounds of {per_round} calls (min..max)"
    );
    // `cargo bench -p bitnet-sampling --bench sampler -- TEXT...` runs the
    // cases whose line contains every TEXT.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    for (shape, logits) in &shapes {
        for (name, cfg) in &cases {
            let line = format!("{shape} {name}");
            if !filter.iter().all(|f| line.contains(f.as_str())) {
                continue;
            }
            let mut sampler = Sampler::new(cfg.clone());
            let mut times: Vec<f64> = (0..rounds)
                .map(|_| {
                    let t = Instant::now();
                    for i in 0..per_round {
                        black_box(sampler.sample(black_box(&logits[i % logits.len()]), &history));
                    }
                    t.elapsed().as_secs_f64() * 1e6 / per_round as f64
                })
                .collect();
            times.sort_by(f64::total_cmp);
            println!(
                "  {shape:<7} {name:<44} {:>8.1} ({:.1}..{:.1})",
                times[rounds / 2],
                times[0],
                times[rounds - 1]
            );
        }
    }
}
