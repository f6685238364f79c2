//! Scalar reference for dense products: f32 dot products of stored rows
//! (converted block by block) with f32 activations.

use super::{DenseMatrix, DenseType, dequantize, q6_k, q8_0};
use crate::out::OutRows;

/// `out[t][r] = Σ_k w[r][k] · x[t][k]` for rows `rows` and every token.
pub(crate) fn matmul(
    w: &DenseMatrix<'_>,
    x: &[f32],
    n_tokens: usize,
    out: &OutRows,
    rows: std::ops::Range<usize>,
) {
    let cols = w.cols();
    let block = match w.ty() {
        DenseType::Q6K => q6_k::BLOCK_ELEMS,
        DenseType::Q8_0 => q8_0::BLOCK_ELEMS,
        _ => 64,
    };
    let block_bytes = w.ty().row_bytes(block).unwrap_or(0);
    let mut buf = [0f32; q6_k::BLOCK_ELEMS];
    // Tokens in groups of eight, so the accumulators live on the stack (no
    // allocation per call).
    const GROUP: usize = 8;
    for r in rows {
        let row = w.row(r);
        for t0 in (0..n_tokens).step_by(GROUP) {
            let nt = GROUP.min(n_tokens - t0);
            let mut acc = [0f32; GROUP];
            let mut k = 0;
            while k < cols {
                let n = block.min(cols - k);
                let bytes = &row[k / block * block_bytes..][..w.ty().row_bytes(n).unwrap_or(0)];
                dequantize(w.ty(), bytes, &mut buf[..n]);
                for (i, a) in acc[..nt].iter_mut().enumerate() {
                    let t = t0 + i;
                    let xt = &x[t * cols + k..t * cols + k + n];
                    for (wv, xv) in buf[..n].iter().zip(xt) {
                        *a += wv * xv;
                    }
                }
                k += n;
            }
            for (i, &a) in acc[..nt].iter().enumerate() {
                out.write(t0 + i, r, a);
            }
        }
    }
}
