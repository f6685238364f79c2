//! The scalar reference for ternary × int8 products: decode each block and
//! multiply-accumulate `t · q` in plain integer arithmetic, in any layout.

use super::{BLOCK_ROWS, TernaryMatrix, lut3};
use crate::act::QuantizedActs;
use crate::out::OutRows;

/// Computes the outputs of row blocks `blocks` for every token.
pub(crate) fn gemm(
    w: &TernaryMatrix,
    x: &QuantizedActs,
    out: &OutRows,
    blocks: std::ops::Range<usize>,
) {
    let (block_cols, block_bytes) = (w.layout().block_cols(), w.layout().block_bytes());
    for t in 0..x.n_tokens() {
        let q = x.row(t);
        let s_x = x.scales()[t];
        for rb in blocks.clone() {
            let mut acc = [0i32; BLOCK_ROWS];
            let mut values = [0i8; BLOCK_ROWS * lut3::BLOCK_COLS];
            for (cb, block) in w.row_block(rb).chunks_exact(block_bytes).enumerate() {
                w.decode_block(block, &mut values);
                let q = &q[cb * block_cols..][..block_cols];
                for (a, row) in acc.iter_mut().zip(values.chunks_exact(block_cols)) {
                    *a += row
                        .iter()
                        .zip(q)
                        .map(|(&t, &q)| i32::from(t) * i32::from(q))
                        .sum::<i32>();
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
