//! Kernel micro-benchmarks at the BitNet b1.58 2B-4T shapes.
//!
//! Run with `cargo bench -p bitnet-kernels --bench kernels`; pick a subset with
//! a filter (`-- ternary_gemv`). Cases are named `shape/isa/threads`, with
//! the ternary weights in the layout the level prefers
//! ([`Kernels::ternary_layout`]: the lookup layout on AVX2, 2-bit on
//! AVX-VNNI, base-3 on AVX-512); a `/base3` suffix forces the 1.6-bit
//! layout and `/twobit` the 2-bit one (the AVX2 level's earlier layouts).
//! Throughput: GEMV and head cases count the weight bytes streamed (so the
//! figure compares directly with `stream_read`, the memory-bandwidth
//! ceiling); GEMM cases count multiply-accumulates (items/s = MAC/s).
//!
//! Matrices of the 2B-4T decoder: QKV fused 3840×2560, O 2560×2560, K/V
//! 640×2560, gate/up fused 13824×2560, down 2560×6912, head 128256×2560.
//! Single matrices up to ~7 MB fit in this machine's 32 MB L3; the
//! `decode_layers` case runs the 30 layers of the model (417 MB) so that
//! every weight comes from DRAM, as in real decoding. (With only 8 layers,
//! 111 MB, the L3 still kept a share of the weights between passes and the
//! figure came out above the DRAM bandwidth.)

use std::hint::black_box;

use bitnet_kernels::dense::{DenseMatrix, DenseType};
use bitnet_kernels::{
    Isa, Kernels, Q8Acts, Q8KActs, Q8Matrix, QuantizedActs, ScaleRule, TernaryLayout, TernaryMatrix,
};
use bitnet_threads::ThreadPool;
use divan::Bencher;
use divan::counter::{BytesCount, ItemsCount};

fn main() {
    divan::main();
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let x = self.0;
        (x ^ (x >> 31)).wrapping_mul(0x94d049bb133111eb)
    }
}

fn ternary(rows: usize, cols: usize, seed: u64, layout: TernaryLayout) -> TernaryMatrix {
    let mut rng = Rng(seed);
    let mut values = Vec::with_capacity(rows * cols);
    while values.len() < rows * cols {
        let mut r = rng.next();
        for _ in 0..32 {
            values.push((r % 3) as i8 - 1);
            r /= 3;
            if values.len() == rows * cols {
                break;
            }
        }
    }
    TernaryMatrix::pack_as(
        layout,
        rows,
        cols,
        &values,
        vec![1.0; rows],
        ScaleRule::Multiply,
    )
    .unwrap()
}

fn acts(n: usize, cols: usize, k: &Kernels) -> QuantizedActs {
    let mut rng = Rng(99);
    let x: Vec<f32> = (0..n * cols)
        .map(|_| (rng.next() % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    let mut q = QuantizedActs::new();
    k.quantize(&x, n, cols, &mut q);
    q
}

/// A parsed case: `shape/isa/threads[/base3|/twobit]`.
struct Case {
    rows: usize,
    cols: usize,
    k: &'static Kernels,
    threads: usize,
    layout: TernaryLayout,
}

fn parse(case: &str) -> Option<Case> {
    let mut parts = case.split('/');
    let (shape, isa, threads) = (parts.next()?, parts.next()?, parts.next()?);
    let (r, c) = shape.split_once('x')?;
    let k = Kernels::for_isa(Isa::from_name(isa)?)?;
    let layout = match parts.next() {
        Some("base3") => TernaryLayout::Base3,
        Some("twobit") => TernaryLayout::TwoBit,
        _ => k.ternary_layout(),
    };
    Some(Case {
        rows: r.parse().ok()?,
        cols: c.parse().ok()?,
        k,
        threads: threads.trim_end_matches('t').parse().ok()?,
        layout,
    })
}

const GEMV_CASES: &[&str] = &[
    "2560x2560/scalar/1t",
    "2560x2560/avx2/1t/base3",
    "2560x2560/avx2/1t/twobit",
    "2560x2560/avx2/1t",
    "2560x2560/avx512/1t",
    "2560x2560/avx2/2t",
    "2560x2560/avxvnni/1t",
    "2560x2560/avxvnni/2t",
    "2560x2560/avx512/2t",
    "640x2560/avx2/1t/base3",
    "640x2560/avxvnni/1t",
    "640x2560/avx2/1t",
    "640x2560/avx512/1t",
    "640x2560/avx512/2t",
    "3840x2560/avx512/2t",
    "13824x2560/avx2/1t/base3",
    "13824x2560/avx2/1t/twobit",
    "13824x2560/avx2/1t",
    "13824x2560/avx512/1t",
    "13824x2560/avx2/2t",
    "13824x2560/avxvnni/1t",
    "13824x2560/avxvnni/2t",
    "13824x2560/avx512/2t",
    "2560x6912/avx2/1t/base3",
    "2560x6912/avx2/1t/twobit",
    "2560x6912/avx2/1t",
    "2560x6912/avxvnni/1t",
    "2560x6912/avx512/1t",
    "2560x6912/avx2/2t",
    "2560x6912/avx512/2t",
];

/// One token: a decode step's product. Counts packed weight bytes.
#[divan::bench(args = GEMV_CASES)]
fn ternary_gemv(b: Bencher, case: &str) {
    let Some(Case {
        rows,
        cols,
        k,
        threads,
        layout,
    }) = parse(case)
    else {
        return;
    };
    let w = ternary(rows, cols, 1, layout);
    let x = acts(1, cols, k);
    let pool = ThreadPool::new(threads);
    let mut out = vec![0f32; rows];
    b.counter(BytesCount::new(w.size_bytes()))
        .bench_local(|| k.ternary_matmul(&pool, black_box(&w), &x, &mut out));
}

const GEMM_CASES: &[&str] = &[
    "2560x2560/scalar/1t",
    "2560x2560/avx2/1t/base3",
    "2560x2560/avx2/1t",
    "2560x2560/avx512/1t",
    "2560x2560/avx2/2t",
    "2560x2560/avxvnni/1t",
    "2560x2560/avxvnni/2t",
    "2560x2560/avx512/2t",
    "640x2560/avx512/2t",
    "3840x2560/avx512/2t",
    "13824x2560/avx2/1t",
    "13824x2560/avx2/2t",
    "13824x2560/avxvnni/1t",
    "13824x2560/avxvnni/2t",
    "13824x2560/avx512/1t",
    "13824x2560/avx512/2t",
    "2560x6912/avx2/2t",
    "2560x6912/avxvnni/2t",
    "2560x6912/avx512/1t",
    "2560x6912/avx512/2t",
];

/// 128 tokens: prompt processing. Counts multiply-accumulates.
#[divan::bench(args = GEMM_CASES, sample_count = 20, sample_size = 1)]
fn ternary_gemm128(b: Bencher, case: &str) {
    let Some(Case {
        rows,
        cols,
        k,
        threads,
        layout,
    }) = parse(case)
    else {
        return;
    };
    let n = 128;
    let w = ternary(rows, cols, 2, layout);
    let x = acts(n, cols, k);
    let pool = ThreadPool::new(threads);
    let mut out = vec![0f32; n * rows];
    b.counter(ItemsCount::new(rows * cols * n))
        .bench_local(|| k.ternary_matmul(&pool, black_box(&w), &x, &mut out));
}

/// Token counts around the GEMV/GEMM switch, 2560×2560, best ISA (or
/// `BITNET_KERNEL`), 2 threads.
#[divan::bench(args = [1, 2, 3, 4, 5, 6, 8, 12, 16, 32])]
fn ternary_tokens(b: Bencher, n: usize) {
    let Ok(k) = Kernels::from_env() else {
        return;
    };
    let w = ternary(2560, 2560, 3, k.ternary_layout());
    let x = acts(n, 2560, k);
    let pool = ThreadPool::new(2);
    let mut out = vec![0f32; n * 2560];
    b.counter(ItemsCount::new(2560 * 2560 * n))
        .bench_local(|| k.ternary_matmul(&pool, black_box(&w), &x, &mut out));
}

/// The 30 decoder layers of 2B-4T (QKV, O, gate/up, down; 417 MB packed),
/// one token: every weight byte comes from DRAM, as in real decoding.
/// (Copies of one random layer at distinct addresses. With only 8 layers,
/// 111 MB, the L3 kept a share of the weights between passes and the figure
/// came out above the DRAM bandwidth.)
#[divan::bench(args = ["avx2/1t/base3", "avx2/1t", "avx2/2t/base3", "avx2/2t", "avxvnni/1t", "avxvnni/2t", "avx512/1t", "avx512/2t"], sample_count = 20, sample_size = 1)]
fn decode_layers(b: Bencher, case: &str) {
    let Some(Case {
        k, threads, layout, ..
    }) = parse(&format!("1x1/{case}"))
    else {
        return;
    };
    let shapes = [(3840, 2560), (2560, 2560), (13824, 2560), (2560, 6912)];
    let one: Vec<TernaryMatrix> = shapes
        .iter()
        .map(|&(r, c)| ternary(r, c, 10, layout))
        .collect();
    let layers: Vec<Vec<TernaryMatrix>> = (0..30).map(|_| one.clone()).collect();
    let x2560 = acts(1, 2560, k);
    let x6912 = acts(1, 6912, k);
    let pool = ThreadPool::new(threads);
    let mut out = vec![0f32; 13824];
    let bytes: usize = layers.iter().flatten().map(|m| m.size_bytes()).sum();
    b.counter(BytesCount::new(bytes)).bench_local(|| {
        for layer in &layers {
            for m in layer {
                let x = if m.cols() == 2560 { &x2560 } else { &x6912 };
                k.ternary_matmul(&pool, m, x, &mut out[..m.rows()]);
            }
        }
    });
}

fn head_bytes(ty: DenseType, rows: usize, cols: usize) -> Vec<u8> {
    let n = rows * ty.row_bytes(cols).unwrap();
    let mut rng = Rng(5);
    let mut bytes: Vec<u8> = (0..n.div_ceil(8))
        .flat_map(|_| rng.next().to_le_bytes())
        .take(n)
        .collect();
    // Keep every f16 scale / value finite and small.
    let small = half::f16::from_f32(0.01).to_le_bytes();
    match ty {
        DenseType::F16 => bytes.chunks_exact_mut(2).for_each(|c| c[1] &= 0x3B),
        DenseType::BF16 => bytes.chunks_exact_mut(2).for_each(|c| c[1] &= 0x3F),
        DenseType::F32 => bytes.chunks_exact_mut(4).for_each(|c| c[3] &= 0x3F),
        DenseType::Q8_0 => bytes
            .chunks_exact_mut(34)
            .for_each(|c| c[..2].copy_from_slice(&small)),
        DenseType::Q6K => bytes
            .chunks_exact_mut(210)
            .for_each(|c| c[208..].copy_from_slice(&small)),
    }
    bytes
}

/// The tied LM head of 2B-4T (128256 × 2560), one token. Counts weight bytes.
#[divan::bench(args = [
    "F16/avx2/2t", "F16/avx512/1t", "F16/avx512/2t",
    "Q8_0/avx2/2t", "Q8_0/avx512/1t", "Q8_0/avx512/2t",
    "Q6_K/avx2/2t", "Q6_K/avx512/1t", "Q6_K/avx512/2t",
], sample_count = 10, sample_size = 1)]
fn head(b: Bencher, case: &str) {
    let (ty, rest) = case.split_once('/').unwrap();
    let ty = match ty {
        "F16" => DenseType::F16,
        "Q8_0" => DenseType::Q8_0,
        _ => DenseType::Q6K,
    };
    let Some(Case { k, threads, .. }) = parse(&format!("1x1/{rest}")) else {
        return;
    };
    let (rows, cols) = (128256, 2560);
    let bytes = head_bytes(ty, rows, cols);
    let m = DenseMatrix::new(ty, rows, cols, &bytes).unwrap();
    let x: Vec<f32> = (0..cols).map(|i| (i % 17) as f32 / 17.0 - 0.5).collect();
    let pool = ThreadPool::new(threads);
    let mut out = vec![0f32; rows];
    b.counter(BytesCount::new(bytes.len()))
        .bench_local(|| k.dense_matmul(&pool, &m, black_box(&x), 1, &mut out));
}

/// The head repacked for the int8 product ([`Q8Matrix`], from Q8_0), one
/// token (including quantising the activations). Counts weight bytes.
#[divan::bench(args = ["avx2/1t", "avx2/2t", "avx512/1t", "avx512/2t", "scalar/2t"], sample_count = 10, sample_size = 1)]
fn head_q8(b: Bencher, case: &str) {
    let Some(Case { k, threads, .. }) = parse(&format!("1x1/{case}")) else {
        return;
    };
    let (rows, cols) = (128256, 2560);
    let bytes = head_bytes(DenseType::Q8_0, rows, cols);
    let m = Q8Matrix::from_dense(&DenseMatrix::new(DenseType::Q8_0, rows, cols, &bytes).unwrap())
        .unwrap();
    drop(bytes);
    let x: Vec<f32> = (0..cols).map(|i| (i % 17) as f32 / 17.0 - 0.5).collect();
    let pool = ThreadPool::new(threads);
    let mut acts = Q8Acts::new();
    let mut out = vec![0f32; rows];
    b.counter(BytesCount::new(m.size_bytes())).bench_local(|| {
        acts.quantize(black_box(&x), 1, cols);
        k.q8_matmul(&pool, &m, &acts, &mut out)
    });
}

/// The Q6_K head as an integer product ([`Kernels::q6k_matmul`]), one
/// token (including quantising the activations). Counts weight bytes.
#[divan::bench(args = ["avx2/1t", "avx2/2t", "avx512/1t", "avx512/2t"], sample_count = 10, sample_size = 1)]
fn head_q6k(b: Bencher, case: &str) {
    let Some(Case { k, threads, .. }) = parse(&format!("1x1/{case}")) else {
        return;
    };
    let (rows, cols) = (128256, 2560);
    let bytes = head_bytes(DenseType::Q6K, rows, cols);
    let m = DenseMatrix::new(DenseType::Q6K, rows, cols, &bytes).unwrap();
    let x: Vec<f32> = (0..cols).map(|i| (i % 17) as f32 / 17.0 - 0.5).collect();
    let pool = ThreadPool::new(threads);
    let mut acts = Q8KActs::new();
    let mut out = vec![0f32; rows];
    b.counter(BytesCount::new(bytes.len())).bench_local(|| {
        acts.quantize(black_box(&x), 1, cols);
        k.q6k_matmul(&pool, &m, &acts, &mut out)
    });
}

/// Per-token activation quantisation, 128 tokens × 2560 (one projection's
/// input in prompt processing). Counts values.
#[divan::bench(args = ["scalar", "avx2", "avx512"])]
fn quantize128(b: Bencher, isa: &str) {
    let Some(k) = Isa::from_name(isa).and_then(Kernels::for_isa) else {
        return;
    };
    let x: Vec<f32> = (0..128 * 2560)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let mut q = QuantizedActs::new();
    b.counter(ItemsCount::new(x.len()))
        .bench_local(|| k.quantize(black_box(&x), 128, 2560, &mut q));
}

/// The bandwidth ceiling: a plain sum over 512 MB, split by threads.
#[divan::bench(args = [1, 2], sample_count = 10, sample_size = 1)]
fn stream_read(b: Bencher, threads: usize) {
    let words: usize = 64 << 20;
    let data: Vec<u64> = (0..words as u64).collect();
    let pool = ThreadPool::new(threads);
    b.counter(BytesCount::new(words * 8)).bench_local(|| {
        pool.run(|i, n| {
            let chunk = words.div_ceil(n);
            let part = &data[(i * chunk).min(words)..((i + 1) * chunk).min(words)];
            let mut acc = [0u64; 8];
            for c in part.chunks_exact(8) {
                for j in 0..8 {
                    acc[j] = acc[j].wrapping_add(c[j]);
                }
            }
            black_box(acc);
        })
    });
}
