//! The kernel table: one set of function pointers per ISA level, chosen once.
//!
//! Model code holds a `&'static Kernels` and never tests CPU features itself.
//! A table for a SIMD level can only be obtained when the CPU supports that
//! level, so holding it is the proof that its functions may run.

use std::ops::Range;
use std::sync::OnceLock;

use bitnet_threads::{ThreadPool, split_range};

use crate::act::{QuantizedActs, quantize_row};
use crate::dense::{self, DenseMatrix};
use crate::error::{Error, Result};
use crate::isa::Isa;
use crate::out::OutRows;
use crate::ternary::{self, TernaryMatrix};

/// Name of the environment variable that forces a kernel level.
pub const KERNEL_ENV: &str = "BITNET_KERNEL";

type TernaryFn = unsafe fn(&TernaryMatrix, &QuantizedActs, &OutRows<'_>, Range<usize>);
type QuantizeFn = unsafe fn(&[f32], &mut [i8]) -> (f32, i32);
type DenseFn = unsafe fn(&DenseMatrix<'_>, &[f32], usize, &OutRows<'_>, Range<usize>);

/// The kernels of one ISA level.
#[derive(Debug)]
pub struct Kernels {
    isa: Isa,
    ternary: TernaryFn,
    quantize: QuantizeFn,
    dense: DenseFn,
}

fn scalar_ternary(w: &TernaryMatrix, x: &QuantizedActs, out: &OutRows<'_>, blocks: Range<usize>) {
    ternary::scalar::gemm(w, x, out, blocks)
}

fn scalar_dense(w: &DenseMatrix<'_>, x: &[f32], n: usize, out: &OutRows<'_>, rows: Range<usize>) {
    dense::scalar::matmul(w, x, n, out, rows)
}

impl Kernels {
    fn build(isa: Isa) -> Option<Kernels> {
        if !isa.is_available() {
            return None;
        }
        // Every level starts from the scalar reference; SIMD levels replace
        // the entries they implement.
        let table = Kernels {
            isa,
            ternary: scalar_ternary,
            quantize: quantize_row,
            dense: scalar_dense,
        };
        Some(table)
    }

    /// The table for `isa`, if this CPU supports it.
    pub fn for_isa(isa: Isa) -> Option<&'static Kernels> {
        static TABLES: [OnceLock<Option<Kernels>>; 3] =
            [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        let slot = match isa {
            Isa::Scalar => &TABLES[0],
            Isa::Avx2 => &TABLES[1],
            Isa::Avx512 => &TABLES[2],
        };
        slot.get_or_init(|| Kernels::build(isa)).as_ref()
    }

    /// The table selected by `BITNET_KERNEL` (scalar, avx2, avx512, auto), or
    /// the best level of this CPU when the variable is unset or `auto`.
    pub fn from_env() -> Result<&'static Kernels> {
        match std::env::var(KERNEL_ENV) {
            Ok(v) if !v.trim().is_empty() && v.trim() != "auto" => {
                let unavailable = || Error::IsaUnavailable {
                    requested: v.clone(),
                    available: Isa::available()
                        .iter()
                        .map(|i| i.name())
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                let isa = Isa::from_name(&v).ok_or_else(unavailable)?;
                Kernels::for_isa(isa).ok_or_else(unavailable)
            }
            _ => Ok(Kernels::best()),
        }
    }

    /// The table of the best level this CPU supports.
    pub fn best() -> &'static Kernels {
        Kernels::for_isa(Isa::best())
            .or_else(|| Kernels::for_isa(Isa::Scalar))
            .expect("the scalar table always exists")
    }

    /// The level of this table.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Quantises `n_tokens` rows of `cols` activations (per-token absmax
    /// int8) into `out`.
    pub fn quantize(&self, x: &[f32], n_tokens: usize, cols: usize, out: &mut QuantizedActs) {
        assert_eq!(x.len(), n_tokens * cols, "activation shape");
        out.reshape(n_tokens, cols);
        let stride = out.stride();
        let (q, scales, sums) = out.parts_mut();
        for t in 0..n_tokens {
            // SAFETY: this table exists only if the CPU supports its level.
            let (s, sum) = unsafe {
                (self.quantize)(&x[t * cols..(t + 1) * cols], &mut q[t * stride..][..cols])
            };
            scales[t] = s;
            sums[t] = sum;
        }
    }

    /// `out[t][r] = scale(Σ_k w[r][k] · q[t][k])` for every token of `x`
    /// (`out` is `n_tokens × w.rows()`), split across the pool by row blocks.
    pub fn ternary_matmul(
        &self,
        pool: &ThreadPool,
        w: &TernaryMatrix,
        x: &QuantizedActs,
        out: &mut [f32],
    ) {
        assert_eq!(x.cols(), w.cols(), "activation width must match the matrix");
        let out = OutRows::new(out, x.n_tokens(), w.rows());
        let blocks = w.row_blocks();
        let f = self.ternary;
        pool.run(|i, n| {
            let range = split_range(blocks, n, i, 1);
            if !range.is_empty() {
                // SAFETY: this table exists only if the CPU supports its
                // level; threads write disjoint row blocks of `out`.
                unsafe { f(w, x, &out, range) };
            }
        });
    }

    /// `out[t][r] = Σ_k w[r][k] · x[t][k]` in f32 (`x` is `n_tokens × cols`,
    /// `out` is `n_tokens × w.rows()`), split across the pool by rows.
    pub fn dense_matmul(
        &self,
        pool: &ThreadPool,
        w: &DenseMatrix<'_>,
        x: &[f32],
        n_tokens: usize,
        out: &mut [f32],
    ) {
        assert_eq!(x.len(), n_tokens * w.cols(), "activation shape");
        let out = OutRows::new(out, n_tokens, w.rows());
        let f = self.dense;
        pool.run(|i, n| {
            let range = split_range(w.rows(), n, i, 16);
            if !range.is_empty() {
                // SAFETY: as in `ternary_matmul`.
                unsafe { f(w, x, n_tokens, &out, range) };
            }
        });
    }
}
