//! Times the head product on the 2B-4T head shape as the model runs it (Q6_K
//! through the integer path, the others with f32 activations; `q8x` is a
//! Q8_0 head through the int8 path, as the model runs a Q8_0 head):
//! `head_probe TYPE(f16|q8_0|q8x|q6_k|bf16) ISA THREADS [TOKENS]`.

use std::time::Instant;

use bitnet_kernels::dense::{DenseMatrix, DenseType};
use bitnet_kernels::{Isa, Kernels};
use bitnet_threads::ThreadPool;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let ty = match a[1].as_str() {
        "f16" => DenseType::F16,
        "bf16" => DenseType::BF16,
        "q8_0" | "q8x" => DenseType::Q8_0,
        _ => DenseType::Q6K,
    };
    let k = Kernels::for_isa(Isa::from_name(&a[2]).unwrap()).unwrap();
    let threads: usize = a[3].parse().unwrap();
    let n: usize = a.get(4).map_or(1, |s| s.parse().unwrap());
    let (rows, cols) = (128256usize, 2560usize);
    let len = rows * ty.row_bytes(cols).unwrap();
    let mut s = 3u64;
    let mut bytes: Vec<u8> = (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 56) as u8
        })
        .collect();
    let small = half::f16::from_f32(0.01).to_le_bytes();
    match ty {
        DenseType::F16 => bytes.chunks_exact_mut(2).for_each(|c| c[1] &= 0x3B),
        DenseType::BF16 => bytes.chunks_exact_mut(2).for_each(|c| c[1] &= 0x3F),
        DenseType::Q8_0 => bytes
            .chunks_exact_mut(34)
            .for_each(|c| c[..2].copy_from_slice(&small)),
        _ => bytes
            .chunks_exact_mut(210)
            .for_each(|c| c[208..].copy_from_slice(&small)),
    }
    let m = DenseMatrix::new(ty, rows, cols, &bytes).unwrap();
    let x: Vec<f32> = (0..n * cols)
        .map(|i| (i % 17) as f32 / 17.0 - 0.5)
        .collect();
    let pool = ThreadPool::new(threads);
    let mut out = vec![0f32; n * rows];
    let mut q = bitnet_kernels::dense::q8k::Q8KActs::new();
    let int8 =
        (a[1] == "q8x").then(|| bitnet_kernels::dense::q8x::Q8Matrix::from_dense(&m).unwrap());
    let mut q8 = bitnet_kernels::dense::q8x::Q8Acts::new();
    let mut best = f64::MAX;
    for _ in 0..15 {
        let t = Instant::now();
        if let Some(w8) = &int8 {
            q8.quantize(&x, n, cols);
            k.q8_matmul(&pool, w8, &q8, &mut out);
        } else if ty == DenseType::Q6K {
            q.quantize(&x, n, cols);
            k.q6k_matmul(&pool, &m, &q, &mut out);
        } else {
            k.dense_matmul(&pool, &m, &x, n, &mut out);
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "{ty:?} {} {threads}t n={n}: {:.2} ms = {:.1} GB/s",
        k.isa(),
        best * 1e3,
        len as f64 / best / 1e9
    );
}
