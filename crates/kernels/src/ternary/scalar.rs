//! The scalar reference for ternary × int8 products: decode each digit and
//! multiply-accumulate `t · q` in plain integer arithmetic, in any layout.

use super::{BLOCK_ROWS, TernaryLayout, TernaryMatrix, lut3};
use crate::act::QuantizedActs;
use crate::out::OutRows;

/// Computes the outputs of row blocks `blocks` for every token.
pub(crate) fn gemm(
    w: &TernaryMatrix,
    x: &QuantizedActs,
    out: &OutRows,
    blocks: std::ops::Range<usize>,
) {
    let (block_cols, steps) = (w.layout().block_cols(), w.layout().steps_per_block());
    for t in 0..x.n_tokens() {
        let q = x.row(t);
        let s_x = x.scales()[t];
        for rb in blocks.clone() {
            let mut acc = [0i32; BLOCK_ROWS];
            let row_block = w.row_block(rb);
            let block_bytes = w.layout().block_bytes();
            for cb in 0..w.col_blocks() {
                let block = &row_block[cb * block_bytes..][..block_bytes];
                if w.layout() == TernaryLayout::Lut3 {
                    for (i, a) in acc.iter_mut().enumerate() {
                        for c in 0..block_cols {
                            let t_val = i32::from(lut3::value(block, i, c));
                            *a += t_val * i32::from(q[cb * block_cols + c]);
                        }
                    }
                    continue;
                }
                for (j, &byte) in block.iter().enumerate() {
                    for d in 0..steps {
                        let t_val = i32::from(w.code(byte, d)) - 1;
                        let qv = i32::from(q[cb * block_cols + j % 4 + 4 * d]);
                        acc[j / 4] += t_val * qv;
                    }
                }
            }
            for (i, &a) in acc.iter().enumerate() {
                let r = rb * BLOCK_ROWS + i;
                if r < w.rows() {
                    out.write(t, r, w.rule().apply(a, s_x, w.scales()[r]));
                }
            }
        }
    }
}
