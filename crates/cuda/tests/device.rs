//! Kernels on a GPU against the CPU scalar reference, bit for bit, on random
//! shapes. Without a device they print "skipped: no CUDA device (...)"; with
//! `BITNET_REQUIRE_GPU` set (scripts/gpu-check) a missing device fails.

mod common;

use bitnet_cuda::ops::Product;
use bitnet_cuda::repack::{GpuTernary, WORD_COLS};
use bitnet_kernels::ScaleRule;
use common::{Rng, bits, cpu_reference, gpu_or_skip, problem, rows_at};

fn products_match(product: Product, max_tokens: usize, seed: u64) {
    let name = format!("{product:?}_matches_the_cpu_reference").to_lowercase();
    let Some(gpu) = gpu_or_skip(&name) else {
        return;
    };
    eprintln!("{name}: on {}", gpu.describe());
    let mut rng = Rng(seed);
    for i in 0..40 {
        let rule = if i % 2 == 0 {
            ScaleRule::Multiply
        } else {
            ScaleRule::Divide
        };
        let (rows, cols) = (1 + rng.below(700), 1 + rng.below(3000));
        let n = 1 + rng.below(max_tokens);
        let p = problem(&mut rng, rows, cols, n, rule);
        let g = GpuTernary::from_matrix(&p.w).unwrap_or_else(|e| panic!("{e}"));
        let stride = g.words * WORD_COLS;
        let w = gpu.upload_ternary(&g).unwrap_or_else(|e| panic!("{e}"));
        let x = gpu.upload_acts(&rows_at(&p.q, stride), p.q.scales(), stride);
        let x = x.unwrap_or_else(|e| panic!("{e}"));
        let y = gpu
            .ternary_matmul(&w, &x, product)
            .and_then(|y| gpu.download(&y));
        let y = y.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            bits(&y),
            bits(&cpu_reference(&p)),
            "{rows}x{cols}, {n} tokens, {rule:?}"
        );
    }
}

#[test]
fn gemv_matches_the_cpu_scalar_reference_bit_for_bit() {
    products_match(Product::Gemv, 20, 11);
}

#[test]
fn tensor_core_gemm_matches_the_cpu_scalar_reference_bit_for_bit() {
    products_match(Product::Gemm, 300, 12);
}

#[test]
fn quantiser_matches_the_cpu_scalar_reference_bit_for_bit() {
    let Some(gpu) = gpu_or_skip("quantiser_matches_the_cpu_scalar_reference_bit_for_bit") else {
        return;
    };
    let mut rng = Rng(13);
    for _ in 0..20 {
        let (cols, n) = (1 + rng.below(5000), 1 + rng.below(9));
        let p = problem(&mut rng, 1, cols, n, ScaleRule::Multiply);
        let stride = bitnet_cuda::repack::words_for(cols) * WORD_COLS;
        let x = gpu
            .stream()
            .clone_htod(&p.x)
            .unwrap_or_else(|e| panic!("{e}"));
        let a = gpu
            .quantize(&x, n, cols, stride, None)
            .unwrap_or_else(|e| panic!("{e}"));
        let q = gpu.download(&a.q).unwrap_or_else(|e| panic!("{e}"));
        let s = gpu.download(&a.scales).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(q, rows_at(&p.q, stride), "{cols} cols, {n} tokens");
        assert_eq!(bits(&s), bits(p.q.scales()));
    }
}
