//! How the CUDA tests skip. NVRTC: absent, a test prints "skipped: NVRTC
//! not found (...)" and passes, except under CI (`CI` set), which installs
//! it (`.ci/run`) and so fails instead. A GPU: absent, the device tests print
//! "skipped: no CUDA device (...)" (CI has none), except with
//! `BITNET_REQUIRE_GPU` set, as `scripts/gpu-check` does on a GPU machine.

#![allow(dead_code)]

use bitnet_cuda::{CudaError, Gpu};

/// Prints a line the test harness does not capture (a skip must show even
/// when the test passes): written to stderr directly, not through `eprintln!`.
pub fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// NVRTC is loadable, or the test should return (after saying so).
pub fn nvrtc_or_skip(test: &str) -> bool {
    match bitnet_cuda::nvrtc::nvrtc() {
        Ok(_) => true,
        Err(e) => {
            if std::env::var_os("CI").is_some() {
                panic!("{test}: {e}; CI installs NVRTC, so this must not be skipped");
            }
            say(&format!("{test}: skipped: {e}"));
            false
        }
    }
}

/// GPU 0 opened with every kernel compiled, or `None` (after saying so).
pub fn gpu_or_skip(test: &str) -> Option<Gpu> {
    match Gpu::open(0) {
        Ok(g) => Some(g),
        Err(e @ (CudaError::NoDriver | CudaError::NoDevice { .. }))
            if std::env::var_os("BITNET_REQUIRE_GPU").is_none() =>
        {
            say(&format!("{test}: skipped: no CUDA device ({e})"));
            None
        }
        Err(e) => panic!("{test}: {e}"),
    }
}

use bitnet_kernels::{Isa, Kernels, QuantizedActs, ScaleRule, TernaryMatrix};

/// A small deterministic generator (xorshift), so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    /// Next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Uniform f32 in `[-1, 1)`.
    pub fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// A random ternary problem: the CPU matrix (scalar-reference layout),
/// f32 activations, and the CPU scalar reference's quantisation of them.
pub struct Problem {
    pub w: TernaryMatrix,
    pub x: Vec<f32>,
    pub q: QuantizedActs,
    pub n_tokens: usize,
}

pub fn problem(
    rng: &mut Rng,
    rows: usize,
    cols: usize,
    n_tokens: usize,
    rule: ScaleRule,
) -> Problem {
    let values: Vec<i8> = (0..rows * cols).map(|_| rng.below(3) as i8 - 1).collect();
    let scales: Vec<f32> = (0..rows).map(|_| 0.5 + rng.f32().abs()).collect();
    let w =
        TernaryMatrix::pack(rows, cols, &values, scales, rule).unwrap_or_else(|e| panic!("{e}"));
    let x: Vec<f32> = (0..n_tokens * cols).map(|_| rng.f32() * 4.0).collect();
    let mut q = QuantizedActs::new();
    scalar().quantize(&x, n_tokens, cols, &mut q);
    Problem { w, x, q, n_tokens }
}

/// The scalar kernel table (the reference every level reproduces).
pub fn scalar() -> &'static Kernels {
    Kernels::for_isa(Isa::Scalar).unwrap_or_else(|| panic!("the scalar table always exists"))
}

/// The CPU scalar reference's outputs, `n_tokens × rows`.
pub fn cpu_reference(p: &Problem) -> Vec<f32> {
    let pool = bitnet_threads::ThreadPool::new(1);
    let mut out = vec![0.0f32; p.n_tokens * p.w.rows()];
    scalar().ternary_matmul(&pool, &p.w, &p.q, &mut out);
    out
}

/// The quantised rows re-laid at `stride` bytes (zero padded).
pub fn rows_at(q: &QuantizedActs, stride: usize) -> Vec<i8> {
    let mut out = vec![0i8; q.n_tokens() * stride];
    for t in 0..q.n_tokens() {
        out[t * stride..][..q.cols()].copy_from_slice(&q.row(t)[..q.cols()]);
    }
    out
}

/// Bit patterns, for exact comparisons that treat -0 and +0 apart.
pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}
