//! Quick timing of one ternary product shape: `probe ISA ROWS COLS TOKENS
//! THREADS [ITERS]`; prints the best time, GMAC/s and packed GB/s.

use std::time::Instant;

use bitnet_kernels::{Isa, Kernels, QuantizedActs, ScaleRule};
use bitnet_threads::ThreadPool;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let isa = Isa::from_name(&a[1]).expect("isa");
    let (rows, cols, n, threads): (usize, usize, usize, usize) = (
        a[2].parse().unwrap(),
        a[3].parse().unwrap(),
        a[4].parse().unwrap(),
        a[5].parse().unwrap(),
    );
    let iters: usize = a.get(6).map_or(20, |s| s.parse().unwrap());
    let k = Kernels::for_isa(isa).expect("level not available");
    let mut seed = 1u64;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        seed >> 33
    };
    let values: Vec<i8> = (0..rows * cols).map(|_| (next() % 3) as i8 - 1).collect();
    let w = k
        .pack_ternary(rows, cols, &values, vec![1.0; rows], ScaleRule::Multiply)
        .unwrap();
    let x: Vec<f32> = (0..n * cols)
        .map(|_| (next() % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    let mut q = QuantizedActs::new();
    k.quantize(&x, n, cols, &mut q);
    let pool = ThreadPool::new(threads);
    let mut out = vec![0f32; n * rows];
    let mut best = f64::MAX;
    for _ in 0..iters {
        let t = Instant::now();
        k.ternary_matmul(&pool, &w, &q, &mut out);
        best = best.min(t.elapsed().as_secs_f64());
    }
    let macs = (rows * cols * n) as f64;
    println!(
        "{isa} {rows}x{cols} n={n} t={threads}: {:.1} us, {:.1} GMAC/s, {:.2} GB/s",
        best * 1e6,
        macs / best / 1e9,
        w.size_bytes() as f64 / best / 1e9
    );
}
