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
        for layout in [
            TernaryLayout::Base3,
            TernaryLayout::TwoBit,
            TernaryLayout::Lut3,
        ] {
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

/// `decode4` of common.cuh on the host: four signed bytes of group `g`.
fn decode4(w: u32, g: u32) -> [i32; 4] {
    ((w >> (2 * g)) & 0x0303_0303)
        .to_le_bytes()
        .map(|b| i32::from(b) - 1)
}

/// `ternary_gemm`'s indexing replayed on the host, one warp of 16 rows and
/// one 8-token tile at a time: each lane (g, tig) builds its A and B
/// registers exactly as the kernel does, the m16n8k32 s8 fragment layouts of
/// the PTX ISA place them in the 16x32 and 32x8 operands, and the C layout
/// says where each lane's four sums are stored. Catches indexing mistakes
/// in the kernel without a GPU (not a misreading of the PTX layout itself,
/// which only the device tests can).
#[test]
fn gemm_fragment_indexing_reproduces_the_cpu_reference() {
    let mut rng = Rng(99);
    for i in 0..12 {
        let rule = if i % 2 == 0 {
            ScaleRule::Multiply
        } else {
            ScaleRule::Divide
        };
        let (rows, cols, n) = (1 + rng.below(40), 1 + rng.below(200), 1 + rng.below(20));
        let p = problem(&mut rng, rows, cols, n, rule);
        let g = GpuTernary::from_matrix(&p.w).unwrap_or_else(|e| panic!("{e}"));
        let stride = g.words * WORD_COLS;
        let q = rows_at(&p.q, stride);
        let x_int = |tok: usize, idx: usize| -> [i32; 4] {
            let b = &q[tok * stride + 4 * idx..][..4];
            [b[0], b[1], b[2], b[3]].map(i32::from)
        };
        let mut y = vec![0f32; n * rows];
        for row0 in (0..rows).step_by(16) {
            for tok0 in (0..n).step_by(8) {
                // c[lane][i], the kernel's accumulators.
                let mut c = [[0i32; 4]; 32];
                for kc in (0..g.words).step_by(2) {
                    let mut a = [[[0i32; 4]; 4]; 32];
                    let mut b = [[[0i32; 4]; 2]; 32];
                    for lane in 0..32 {
                        let (gr, tig) = (lane / 4, (lane % 4) as u32);
                        let (ra, rb) = (row0 + gr, row0 + gr + 8);
                        let word = |r: usize, k: usize| g.data[r * g.words + k];
                        if ra < rows {
                            a[lane][0] = decode4(word(ra, kc), tig);
                            a[lane][2] = decode4(word(ra, kc + 1), tig);
                        }
                        if rb < rows {
                            a[lane][1] = decode4(word(rb, kc), tig);
                            a[lane][3] = decode4(word(rb, kc + 1), tig);
                        }
                        let tok = tok0 + gr;
                        if tok < n {
                            b[lane][0] = x_int(tok, kc * 4 + tig as usize);
                            b[lane][1] = x_int(tok, kc * 4 + 4 + tig as usize);
                        }
                    }
                    // The PTX fragment layouts (m16n8k32, .s8).
                    let a_at = |r: usize, k: usize| {
                        a[(r % 8) * 4 + (k % 16) / 4]
                            [usize::from(r >= 8) + 2 * usize::from(k >= 16)][k % 4]
                    };
                    let b_at = |k: usize, col: usize| {
                        b[col * 4 + (k % 16) / 4][usize::from(k >= 16)][k % 4]
                    };
                    for (lane, cl) in c.iter_mut().enumerate() {
                        for (i, acc) in cl.iter_mut().enumerate() {
                            let r = lane / 4 + 8 * usize::from(i >= 2);
                            let col = (lane % 4) * 2 + (i & 1);
                            *acc += (0..32).map(|k| a_at(r, k) * b_at(k, col)).sum::<i32>();
                        }
                    }
                }
                for (lane, acc) in c.iter().enumerate() {
                    for (i, &s) in acc.iter().enumerate() {
                        let r = row0 + lane / 4 + 8 * usize::from(i >= 2);
                        let tok = tok0 + (lane % 4) * 2 + (i & 1);
                        if r < rows && tok < n {
                            y[tok * rows + r] = rule.apply(s, p.q.scales()[tok], g.scales[r]);
                        }
                    }
                }
            }
        }
        assert_eq!(
            bits(&y),
            bits(&cpu_reference(&p)),
            "{rows}x{cols}, {n} tokens, {rule:?}"
        );
    }
}
