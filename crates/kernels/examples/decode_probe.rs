//! One forward step over the 30 ternary layers of 2B-4T (417 MB) for
//! `TOKENS` tokens (1: a decode step; 128: a prompt), including the
//! activation quantisation, the matrices in one shared buffer as the model
//! loader packs them: `decode_probe ISA THREADS [ITERS] [TOKENS]`;
//! prints the best time, GB/s of weights and GMAC/s.

use std::time::Instant;

use bitnet_kernels::{Isa, Kernels, QuantizedActs, ScaleRule, SharedPacking, TernaryMatrix};
use bitnet_threads::ThreadPool;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let k = Kernels::for_isa(Isa::from_name(&a[1]).unwrap()).unwrap();
    let threads: usize = a[2].parse().unwrap();
    let iters: usize = a.get(3).map_or(20, |s| s.parse().unwrap());
    let n: usize = a.get(4).map_or(1, |s| s.parse().unwrap());
    let mut s = 1u64;
    let mut next = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        s >> 33
    };
    // The 30 layers in one shared buffer, as the model loader packs them.
    let shapes = [(3840, 2560), (2560, 2560), (13824, 2560), (2560, 6912)];
    let values: Vec<Vec<i8>> = shapes
        .iter()
        .map(|&(r, c)| (0..r * c).map(|_| (next() % 3) as i8 - 1).collect())
        .collect();
    let all: Vec<(usize, usize)> = (0..30).flat_map(|_| shapes).collect();
    let mut packing = SharedPacking::new(k.ternary_layout(), &all);
    let parts: Vec<_> = packing
        .slots()
        .into_iter()
        .enumerate()
        .map(|(i, slot)| {
            let rows = slot.rows();
            slot.pack(&values[i % 4], vec![1.0; rows], ScaleRule::Multiply)
                .unwrap()
        })
        .collect();
    let mats: Vec<TernaryMatrix> = packing.finish(parts).unwrap();
    let layers: Vec<&[TernaryMatrix]> = mats.chunks(4).collect();
    let bytes: usize = mats.iter().map(|m| m.size_bytes()).sum();
    let macs: usize = mats.iter().map(|m| m.rows() * m.cols() * n).sum();
    let xa: Vec<f32> = (0..n * 2560)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let xb: Vec<f32> = (0..n * 6912)
        .map(|i| ((i * 53) % 97) as f32 / 48.0 - 1.0)
        .collect();
    let mut qa = QuantizedActs::new();
    let mut qb = QuantizedActs::new();
    let pool = ThreadPool::new(threads);
    let mut out = vec![0f32; n * 13824];
    let mut best = f64::MAX;
    for _ in 0..iters {
        let t = Instant::now();
        for layer in &layers {
            for m in layer.iter() {
                let x = if m.cols() == 2560 {
                    k.quantize(&xa, n, 2560, &mut qa);
                    &qa
                } else {
                    k.quantize(&xb, n, 6912, &mut qb);
                    &qb
                };
                k.ternary_matmul(&pool, m, x, &mut out[..n * m.rows()]);
            }
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "{} {threads}t, {n} tokens: {:.2} ms = {:.1} GB/s, {:.0} GMAC/s",
        k.isa(),
        best * 1e3,
        bytes as f64 / best / 1e9,
        macs as f64 / best / 1e9
    );
}
