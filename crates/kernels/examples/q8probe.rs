//! Times the int8 head product on the 2B-4T head shape and checks it
//! against the f32 path: `q8probe ISA THREADS`.

use std::time::Instant;

use bitnet_kernels::dense::{self, DenseMatrix, DenseType};
use bitnet_kernels::{Isa, Kernels, Q8Acts, Q8Matrix};
use bitnet_threads::ThreadPool;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let k = Kernels::for_isa(Isa::from_name(&a[1]).unwrap()).unwrap();
    let threads: usize = a[2].parse().unwrap();
    let (rows, cols) = (128256usize, 2560usize);
    let mut s = 1u64;
    let vals: Vec<f32> = (0..rows * cols)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) % 2001) as f32 / 1000.0 - 1.0
        })
        .collect();
    let bytes = dense::quantize(DenseType::Q8_0, &vals).unwrap();
    drop(vals);
    let m = DenseMatrix::new(DenseType::Q8_0, rows, cols, &bytes).unwrap();
    let t = Instant::now();
    let q = Q8Matrix::from_dense(&m).unwrap();
    println!("repack Q8_0: {:.2} s", t.elapsed().as_secs_f64());
    let f16_bytes = dense::quantize(
        DenseType::F16,
        &(0..cols * 4096)
            .map(|i| (i % 255) as f32 / 255.0)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let t = Instant::now();
    let _ =
        Q8Matrix::from_dense(&DenseMatrix::new(DenseType::F16, 4096, cols, &f16_bytes).unwrap())
            .unwrap();
    println!(
        "requantise F16 -> Q8: {:.2} s per 4096 rows ({:.1} s for the head)",
        t.elapsed().as_secs_f64(),
        t.elapsed().as_secs_f64() * rows as f64 / 4096.0
    );
    let x: Vec<f32> = (0..cols)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let mut acts = Q8Acts::new();
    acts.quantize(&x, 1, cols);
    let pool = ThreadPool::new(threads);
    let mut out = vec![0f32; rows];
    let mut best = f64::MAX;
    for _ in 0..20 {
        let t = Instant::now();
        k.q8_matmul(&pool, &q, &acts, &mut out);
        best = best.min(t.elapsed().as_secs_f64());
    }
    let mut f = vec![0f32; rows];
    let mut best_f = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        k.dense_matmul(&pool, &m, &x, 1, &mut f);
        best_f = best_f.min(t.elapsed().as_secs_f64());
    }
    let err = out
        .iter()
        .zip(&f)
        .fold(0f32, |e, (a, b)| e.max((a - b).abs()));
    let mag = f.iter().fold(0f32, |e, b| e.max(b.abs()));
    println!(
        "q8: {:.2} ms = {:.1} GB/s; f32 path: {:.2} ms = {:.1} GB/s; max |Δ| {err:.3} of max |y| {mag:.1}",
        best * 1e3,
        q.size_bytes() as f64 / best / 1e9,
        best_f * 1e3,
        bytes.len() as f64 / best_f / 1e9
    );
}
