//! Times one decode step's attention over an f16 KV cache, per kernel, for
//! the 2B-4T shape (20 query heads in 5 groups of 4, head dimension 128, 30
//! layers): `attn_probe ISA DEPTH [ITERS]`; prints the best time per token
//! of the key scores, the softmax and the value sums, and the GB/s of keys
//! and values read (each layer's cache is its own memory, as in the model).

use std::time::Instant;

use bitnet_kernels::{Isa, Kernels};
use half::f16;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let k = Kernels::for_isa(Isa::from_name(&a[1]).unwrap()).unwrap();
    let ops = k.ops();
    let n: usize = a.get(2).map_or(2048, |s| s.parse().unwrap());
    let iters: usize = a.get(3).map_or(10, |s| s.parse().unwrap());
    let (layers, groups, heads, d) = (30, 5, 4, 128);
    let mut s = 7u64;
    let mut next = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    let cache: Vec<(Vec<f16>, Vec<f16>)> = (0..layers * groups)
        .map(|_| {
            let kv = |f: &mut dyn FnMut() -> f32| (0..n * d).map(|_| f16::from_f32(f())).collect();
            (kv(&mut next), kv(&mut next))
        })
        .collect();
    let q: Vec<f32> = (0..heads * d).map(|_| next()).collect();
    let mut scores = vec![0f32; heads * n];
    let mut out = vec![0f32; heads * d];
    let mut best = [f64::MAX; 3];
    for _ in 0..iters {
        let mut t = [0f64; 3];
        for (keys, values) in &cache {
            let t0 = Instant::now();
            ops.attn_scores_f16(&q, keys, d, 0.088, &mut scores);
            let t1 = Instant::now();
            for row in scores.chunks_exact_mut(n) {
                ops.softmax_fast(row);
            }
            let t2 = Instant::now();
            ops.attn_values_f16(&scores, values, d, &mut out);
            let t3 = Instant::now();
            t[0] += (t1 - t0).as_secs_f64();
            t[1] += (t2 - t1).as_secs_f64();
            t[2] += (t3 - t2).as_secs_f64();
        }
        for i in 0..3 {
            best[i] = best[i].min(t[i]);
        }
    }
    let bytes = (layers * groups * n * d * 2) as f64;
    println!(
        "{} depth {n}: scores {:.2} ms ({:.1} GB/s), softmax {:.2} ms, values {:.2} ms ({:.1} GB/s), out[0] {}",
        k.isa(),
        best[0] * 1e3,
        bytes / best[0] / 1e9,
        best[1] * 1e3,
        best[2] * 1e3,
        bytes / best[2] / 1e9,
        out[0]
    );
}
