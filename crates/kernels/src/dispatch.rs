//! The kernel table: one set of function pointers per ISA level, chosen once.
//!
//! Model code holds a `&'static Kernels` and never tests CPU features itself.
//! A table for a SIMD level can only be obtained when the CPU supports that
//! level, so holding it is the proof that its functions may run.

use std::ops::Range;
use std::sync::OnceLock;

use bitnet_threads::ThreadPool;

use crate::act::{QuantizedActs, quantize_row};
use crate::dense::q8k::{self, Q8KActs};
use crate::dense::q8x::{Q8Acts, Q8Matrix};
use crate::dense::{self, DenseMatrix, DenseType};
use crate::error::{Error, Result};
use crate::isa::{Avx512, Isa};
use crate::out::OutRows;
use crate::ternary::{self, ScaleRule, TernaryLayout, TernaryMatrix};

/// Name of the environment variable that forces a kernel level.
pub const KERNEL_ENV: &str = "BITNET_KERNEL";

type TernaryFn = unsafe fn(&TernaryMatrix, &QuantizedActs, &OutRows<'_>, Range<usize>);
type QuantizeFn = unsafe fn(&[f32], &mut [i8]) -> (f32, i32);
type DenseFn = unsafe fn(&DenseMatrix<'_>, &[f32], usize, &OutRows<'_>, Range<usize>);
type Q8Fn = unsafe fn(&Q8Matrix, &Q8Acts, &OutRows<'_>, Range<usize>);
type Q6kFn = unsafe fn(&DenseMatrix<'_>, &Q8KActs, &OutRows<'_>, Range<usize>);

/// The kernels of one ISA level.
#[derive(Debug)]
pub struct Kernels {
    isa: Isa,
    ternary: TernaryFn,
    quantize: QuantizeFn,
    dense: DenseFn,
    q8: Q8Fn,
    q6k: Q6kFn,
    /// The ternary layout this level runs fastest.
    layout: TernaryLayout,
    /// Token counts up to this take the ternary GEMV path, per layout
    /// (base-3, 2-bit, lookup).
    gemv_max_tokens: [usize; 3],
}

/// Claims per thread in a compute-bound product: runs of an eighth of an
/// even share are small enough to even out a core slowed by another process
/// and large enough that claiming costs nothing.
const CLAIMS_PER_THREAD: usize = 8;

/// Claims per thread in a ternary GEMV, which streams memory: every run
/// restarts the hardware prefetchers, so runs are long. Measured on the 30
/// layers of 2B-4T (417 MB, 2 threads, digit-decoding GEMV): 1 claim
/// 32.1 GB/s, 2 claims 31.7, 4 claims 30.1, 8 claims 26.9; with the faster
/// plane GEMV 1 and 2 claims are within noise of each other, 4 a few per
/// cent slower. Two keep some slack for a core slowed by another process.
const GEMV_CLAIMS_PER_THREAD: usize = 2;

/// Claims per thread in a lookup-layout GEMV (on AVX2, any token count: its
/// passes of three tokens serve every count, see `ternary::avx2_lut3`; on
/// AVX-512, up to three tokens): one. Each claim builds its own tables and
/// starts two new weight streams; on two Zen 2 cores, 6 alternating runs of
/// the 30 layers of 2B-4T from DRAM, one claim per thread against two took
/// a decode step from 14.8 to 13.6 ms (median) and a 128-token prompt step
/// from 1.35 to 1.32 s. A core
/// slowed by another process then holds up the product (the others cannot
/// take over its half), the price of the 8 %.
const LUT3_CLAIMS_PER_THREAD: usize = 1;

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
        let mut table = Kernels {
            isa,
            ternary: scalar_ternary,
            quantize: quantize_row,
            dense: scalar_dense,
            q8: dense::q8x::matmul,
            q6k: q8k::matmul,
            layout: TernaryLayout::Base3,
            gemv_max_tokens: [0, 0, 0],
        };
        #[cfg(target_arch = "x86_64")]
        match isa {
            Isa::Scalar => {}
            Isa::Avx2 | Isa::AvxVnni => {
                table.ternary = ternary::avx2::matmul;
                table.layout = TernaryLayout::Lut3;
                table.gemv_max_tokens = [
                    ternary::avx2::GEMV_MAX_TOKENS_BASE3,
                    ternary::avx2::GEMV_MAX_TOKENS,
                    usize::MAX,
                ];
                table.dense = dense::avx2::matmul;
                let far = dense::far_streams();
                table.q8 = if far {
                    dense::avx2::q8x_matmul::<true>
                } else {
                    dense::avx2::q8x_matmul::<false>
                };
                table.q6k = if far {
                    dense::avx2_q6k::matmul::<true>
                } else {
                    dense::avx2_q6k::matmul::<false>
                };
                table.quantize = crate::act::avx2::quantize_row;
                // AVX-VNNI: the AVX2 table with `vpdpbusd` ternary products.
                if isa == Isa::AvxVnni {
                    table.ternary = ternary::avx_vnni::matmul;
                    table.layout = TernaryLayout::TwoBit;
                    table.gemv_max_tokens[1] = ternary::avx_vnni::GEMV_MAX_TOKENS;
                }
            }
            Isa::Avx512 => {
                table.ternary = ternary::avx512::matmul;
                table.gemv_max_tokens = [
                    ternary::avx512::GEMV_MAX_TOKENS,
                    ternary::avx2::GEMV_MAX_TOKENS,
                    ternary::avx512::lut3_gemv_max_tokens(),
                ];
                // Zen 4: the lookup layout, where prompts have VBMI for its
                // panel decoder (every Zen 4 has).
                if Avx512::detect().is_some_and(Avx512::in_halves)
                    && table.gemv_max_tokens[2] != usize::MAX
                {
                    table.layout = TernaryLayout::Lut3;
                }
                table.dense = dense::avx512::matmul;
                table.q8 = dense::avx512::q8x_matmul;
                // (No AMD family 17h core has AVX-512.)
                table.q6k = dense::avx2_q6k::matmul::<false>;
                table.quantize = crate::act::avx512::quantize_row;
            }
        }
        Some(table)
    }

    /// The table for `isa`, if this CPU supports it.
    pub fn for_isa(isa: Isa) -> Option<&'static Kernels> {
        static TABLES: [OnceLock<Option<Kernels>>; Isa::ALL.len()] =
            [const { OnceLock::new() }; Isa::ALL.len()];
        let slot = match isa {
            Isa::Scalar => &TABLES[0],
            Isa::Avx2 => &TABLES[1],
            Isa::AvxVnni => &TABLES[2],
            Isa::Avx512 => &TABLES[3],
        };
        slot.get_or_init(|| Kernels::build(isa)).as_ref()
    }

    /// The table selected by `BITNET_KERNEL` (scalar, avx2, avxvnni, avx512,
    /// auto), or
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

    /// The row operations (RMSNorm, softmax, attention dots, …) of this
    /// level.
    pub fn ops(&self) -> &'static crate::ops::Ops {
        crate::ops::Ops::for_isa(self.isa).expect("a table exists only for an available level")
    }

    /// The ternary layout this level's kernels run fastest: the 1.6-bit
    /// base-3 layout on AVX-512, the 2-bit one on AVX-VNNI, the 1.67-bit
    /// lookup layout on AVX2 without VNNI (see [`ternary::lut3`]) and on
    /// AVX-512 cores that split 512-bit operations in halves (Zen 4): there
    /// the lookup GEMV decoded the 30 layers of 2B-4T from DRAM in 22.2 ms
    /// on one core against 28.2 for the base-3 one (13.9 against 14.6 on
    /// two), and prompts decode its blocks into the base-3 GEMM's panels at
    /// the same speed (`ternary::avx512_lut3`). Every level reads every
    /// layout.
    pub fn ternary_layout(&self) -> TernaryLayout {
        self.layout
    }

    /// Packs a ternary matrix in [`Kernels::ternary_layout`] (see
    /// [`TernaryMatrix::pack_as`]).
    pub fn pack_ternary(
        &self,
        rows: usize,
        cols: usize,
        values: &[i8],
        scales: Vec<f32>,
        rule: ScaleRule,
    ) -> Result<TernaryMatrix> {
        TernaryMatrix::pack_as(self.layout, rows, cols, values, scales, rule)
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
    /// (`out` is `n_tokens × w.rows()`).
    ///
    /// Threads claim runs of 16-row blocks from a shared counter: for
    /// decoding, a run is half of a thread's share (long runs stream at full
    /// bandwidth); for prompt processing a sixteenth. Claiming instead of a
    /// fixed split keeps both cores busy when one of them is slowed by
    /// another process.
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
        let claims = match w.layout() {
            TernaryLayout::Lut3 if x.n_tokens() <= self.gemv_max_tokens[2] => {
                LUT3_CLAIMS_PER_THREAD
            }
            TernaryLayout::Base3 if x.n_tokens() <= self.gemv_max_tokens[0] => {
                GEMV_CLAIMS_PER_THREAD
            }
            TernaryLayout::TwoBit if x.n_tokens() <= self.gemv_max_tokens[1] => {
                GEMV_CLAIMS_PER_THREAD
            }
            _ => 2 * CLAIMS_PER_THREAD,
        };
        let chunk = blocks.div_ceil(pool.n_threads() * claims).max(1);
        pool.for_each_chunk(blocks, chunk, |_, range| {
            // SAFETY: this table exists only if the CPU supports its level;
            // each run of row blocks is claimed by one thread, so threads
            // write disjoint rows of `out`.
            unsafe { f(w, x, &out, range) };
        });
    }

    /// `out[t][r] = Σ_k w[r][k] · x[t][k]` in f32 (`x` is `n_tokens × cols`,
    /// `out` is `n_tokens × w.rows()`); threads claim runs of 16 · k rows.
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
        let chunk = w
            .rows()
            .div_ceil(pool.n_threads() * CLAIMS_PER_THREAD)
            .next_multiple_of(16);
        pool.for_each_chunk(w.rows(), chunk, |_, range| {
            // SAFETY: as in `ternary_matmul`.
            unsafe { f(w, x, n_tokens, &out, range) };
        });
    }

    /// The integer Q6_K head product (see [`dense::q8k`]): `w` read in
    /// place, `x` quantised with [`Q8KActs::quantize`]; `out` is
    /// `x.n_tokens() × w.rows()`. Split across the pool by runs of 16 rows.
    pub fn q6k_matmul(&self, pool: &ThreadPool, w: &DenseMatrix<'_>, x: &Q8KActs, out: &mut [f32]) {
        assert_eq!(
            w.ty(),
            DenseType::Q6K,
            "the integer head product reads Q6_K"
        );
        assert_eq!(x.cols(), w.cols(), "activation width must match the matrix");
        let out = OutRows::new(out, x.n_tokens(), w.rows());
        let f = self.q6k;
        let chunk = w
            .rows()
            .div_ceil(pool.n_threads() * CLAIMS_PER_THREAD)
            .next_multiple_of(16);
        pool.for_each_chunk(w.rows(), chunk, |_, range| {
            // SAFETY: as in `ternary_matmul`.
            unsafe { f(w, x, &out, range) };
        });
    }

    /// The int8 head product `out[t][r] = Σ_b d_w·d_x·Σ q_w·q_x` of a
    /// repacked Q8_0 matrix and block-quantised activations (see
    /// [`dense::q8x`]); `out` is `x.n_tokens() × w.rows()`. Split across the
    /// pool by 16-row groups. Quantise `x` with [`Q8Acts::quantize`].
    pub fn q8_matmul(&self, pool: &ThreadPool, w: &Q8Matrix, x: &Q8Acts, out: &mut [f32]) {
        assert_eq!(x.cols(), w.cols(), "activation width must match the matrix");
        let out = OutRows::new(out, x.n_tokens(), w.rows());
        let f = self.q8;
        let chunk = w
            .groups()
            .div_ceil(pool.n_threads() * CLAIMS_PER_THREAD)
            .max(1);
        pool.for_each_chunk(w.groups(), chunk, |_, range| {
            // SAFETY: as in `ternary_matmul`.
            unsafe { f(w, x, &out, range) };
        });
    }
}
