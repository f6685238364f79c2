//! The GPU weight layout without a GPU: repacking round-trips from both CPU
//! layouts, padding is weight 0, and the kernels' integer sums (modelled on
//! the host word by word, as `decode4` reads them) with the scale rule give
//! the CPU scalar reference's outputs bit for bit.

mod common;

use bitnet_cuda::repack::{GpuTernary, WORD_COLS, words_for};
use bitnet_kernels::{ScaleRule, TernaryLayout, TernaryMatrix};
use common::{Rng, bits, cpu_reference, problem, rows_at};

#[test]
fn repacking_round_trips_from_both_cpu_layouts() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..40 {
        let (rows, cols) = (1 + rng.below(70), 1 + rng.below(300));
        let values: Vec<i8> = (0..rows * cols).map(|_| rng.below(3) as i8 - 1).collect();
        for layout in [TernaryLayout::Base3, TernaryLayout::TwoBit] {
            let m = TernaryMatrix::pack_as(
                layout,
                rows,
                cols,
                &values,
                vec![1.0; rows],
                ScaleRule::Divide,
            )
            .unwrap_or_else(|e| panic!("{e}"));
            let g = GpuTernary::from_matrix(&m).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(g.unpack(), values, "{rows}x{cols} {layout:?}");
            assert_eq!(g.words, words_for(cols));
            assert_eq!(g.words * WORD_COLS % 32, 0);
            assert!(g.padding_is_zero());
            assert_eq!(g.rule, ScaleRule::Divide);
        }
    }
}

#[test]
fn host_model_of_the_kernels_matches_the_cpu_scalar_reference_bit_for_bit() {
    let mut rng = Rng(7);
    for i in 0..30 {
        let rule = if i % 2 == 0 {
            ScaleRule::Multiply
        } else {
            ScaleRule::Divide
        };
        let (rows, cols, n) = (1 + rng.below(50), 1 + rng.below(400), 1 + rng.below(5));
        let p = problem(&mut rng, rows, cols, n, rule);
        let g = GpuTernary::from_matrix(&p.w).unwrap_or_else(|e| panic!("{e}"));
        let stride = g.words * WORD_COLS;
        let q = rows_at(&p.q, stride);
        let mut got = Vec::new();
        for t in 0..n {
            for r in 0..rows {
                let acc = g.int_dot(r, &q[t * stride..][..stride]);
                got.push(rule.apply(acc, p.q.scales()[t], g.scales[r]));
            }
        }
        assert_eq!(
            bits(&got),
            bits(&cpu_reference(&p)),
            "{rows}x{cols}, {n} tokens, {rule:?}"
        );
        let _ = &p.x;
    }
}
