//! Ternary weight formats: decoding to one canonical matrix, and encoding back.
//!
//! Every format decodes to a [`TernaryTensor`]: `rows` = M (output features, `ne[1]`),
//! `cols` = K (`ne[0]`), values row-major in {-1, 0, 1}, plus the scale(s). The byte layouts
//! follow `fixtures/tl-formats/LAYOUT.md` (I2_S, TL1, TL2) and SPEC §2.4–2.5 (TQ1_0, TQ2_0).
//! Decoders validate lengths and codes and return errors naming the tensor and the element; they
//! never panic. Encoders exist for round-trip tests and for writing files.

mod i2s;
mod tiling;
mod tl1;
mod tl2;
mod tq1;
mod tq2;

pub use i2s::encode_i2s;
pub use tiling::{TlKind, TlTiling, parse_kernel_config, tl_preset};
pub use tl1::encode_tl1;
pub use tl2::encode_tl2;
pub use tq1::encode_tq1_0;
pub use tq2::encode_tq2_0;

use crate::error::{Error, Result};
use crate::reader::{GgufFile, TensorInfo};
use crate::types::TensorType;

/// Elements per TQ1_0/TQ2_0 block.
pub const TQ_BLOCK: usize = 256;

/// How the real weights are obtained from the ternary values.
#[derive(Clone, Debug, PartialEq)]
pub enum TernaryScale {
    /// One f32 for the whole tensor (I2_S / TL1 / TL2 tail scale): W = s · t.
    PerTensor(f32),
    /// TQ1_0/TQ2_0: one f16 `d` per 256-element block (row-major flat order), as f32: W = d · t.
    PerBlock { block: usize, scales: Vec<f32> },
}

/// A decoded ternary matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct TernaryTensor {
    /// M: output features (`ne[1]`).
    pub rows: usize,
    /// K: input features (`ne[0]`).
    pub cols: usize,
    /// Row-major values in {-1, 0, 1}; `values[r * cols + c]`.
    pub values: Vec<i8>,
    pub scale: TernaryScale,
}

impl TernaryTensor {
    /// One scale per row, if every row uses a single scale.
    ///
    /// Blocks whose 256 values are all zero are ignored (their `d` does not matter, and
    /// llama.cpp's quantizer writes 0 there). A row whose blocks are all zero gets the `d` of its
    /// first block. `None` if some row mixes different scales, or if the block size does not
    /// divide the row length.
    pub fn row_scales(&self) -> Option<Vec<f32>> {
        match &self.scale {
            TernaryScale::PerTensor(s) => Some(vec![*s; self.rows]),
            TernaryScale::PerBlock { block, scales } => {
                let block = *block;
                if block == 0 || !self.cols.is_multiple_of(block) {
                    return None;
                }
                let per_row = self.cols / block;
                if scales.len() != per_row * self.rows || self.values.len() != self.rows * self.cols
                {
                    return None;
                }
                let mut out = Vec::with_capacity(self.rows);
                for r in 0..self.rows {
                    let row_scales = &scales[r * per_row..(r + 1) * per_row];
                    let mut chosen: Option<f32> = None;
                    for (b, &d) in row_scales.iter().enumerate() {
                        let start = r * self.cols + b * block;
                        if self.values[start..start + block].iter().all(|&v| v == 0) {
                            continue;
                        }
                        match chosen {
                            None => chosen = Some(d),
                            Some(c) if c.to_bits() == d.to_bits() => {}
                            Some(_) => return None,
                        }
                    }
                    out.push(chosen.or(row_scales.first().copied()).unwrap_or(0.0));
                }
                Some(out)
            }
        }
    }

    /// One scale for the whole tensor, if all rows share it (see [`TernaryTensor::row_scales`];
    /// rows that are entirely zero are ignored).
    pub fn tensor_scale(&self) -> Option<f32> {
        if let TernaryScale::PerTensor(s) = self.scale {
            return Some(s);
        }
        let rows = self.row_scales()?;
        let mut chosen: Option<f32> = None;
        for (r, s) in rows.iter().enumerate() {
            let row = &self.values[r * self.cols..(r + 1) * self.cols];
            if row.iter().all(|&v| v == 0) {
                continue;
            }
            match chosen {
                None => chosen = Some(*s),
                Some(c) if c.to_bits() == s.to_bits() => {}
                Some(_) => return None,
            }
        }
        chosen.or(rows.first().copied())
    }
}

/// Decode the bytes of one tensor (exactly its `nbytes`) to the canonical matrix.
///
/// `tiling` is used for TL1/TL2; when `None` the bitnet.cpp preset for (rows, cols) is used, and
/// its absence is an error naming the shape. It is ignored for the other formats.
pub fn decode(
    tensor_name: &str,
    ty: TensorType,
    data: &[u8],
    rows: usize,
    cols: usize,
    tiling: Option<TlTiling>,
) -> Result<TernaryTensor> {
    let ctx = Ctx {
        tensor: tensor_name,
        rows,
        cols,
    };
    let pick = |kind: TlKind, format: &'static str| {
        tiling
            .or_else(|| tl_preset(kind, rows, cols))
            .ok_or_else(|| Error::MissingTiling {
                tensor: tensor_name.to_string(),
                format,
                rows,
                cols,
            })
    };
    match ty {
        TensorType::I2_S => i2s::decode(ctx, data),
        TensorType::TQ1_0 => tq1::decode(ctx, data),
        TensorType::TQ2_0 => tq2::decode(ctx, data),
        TensorType::TL1 => tl1::decode(ctx, data, pick(TlKind::Tl1, "TL1")?),
        TensorType::TL2 => tl2::decode(ctx, data, pick(TlKind::Tl2, "TL2")?),
        other => Err(Error::NotTernaryType {
            tensor: tensor_name.to_string(),
            ty: other.name(),
        }),
    }
}

/// Decode a ternary tensor of a parsed file (`rows` = product of `ne[1..]`, `cols` = `ne[0]`).
pub fn decode_tensor(
    file: &GgufFile,
    t: &TensorInfo,
    tiling: Option<TlTiling>,
) -> Result<TernaryTensor> {
    let shape_err = || Error::TernaryShape {
        tensor: t.name.clone(),
        format: "ternary",
        rows: usize::MAX,
        cols: usize::MAX,
        reason: format!("shape {:?} does not fit in memory", t.ne),
    };
    let rows = usize::try_from(t.rows()).map_err(|_| shape_err())?;
    let cols = usize::try_from(t.cols()).map_err(|_| shape_err())?;
    decode(&t.name, t.ty, file.tensor_data(t)?, rows, cols, tiling)
}

/// Tensor name and shape, carried into the format decoders for error messages.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub tensor: &'a str,
    pub rows: usize,
    pub cols: usize,
}

impl Ctx<'_> {
    pub(crate) fn shape_error(&self, format: &'static str, reason: String) -> Error {
        Error::TernaryShape {
            tensor: self.tensor.to_string(),
            format,
            rows: self.rows,
            cols: self.cols,
            reason,
        }
    }

    /// rows × cols, checked.
    pub(crate) fn n(&self, format: &'static str) -> Result<usize> {
        self.rows
            .checked_mul(self.cols)
            .ok_or_else(|| self.shape_error(format, "element count overflows".into()))
    }

    /// Require `cols` to be a positive multiple of `block`.
    pub(crate) fn require_cols_multiple(&self, format: &'static str, block: usize) -> Result<()> {
        if self.cols == 0 || !self.cols.is_multiple_of(block) {
            return Err(self.shape_error(
                format,
                format!("K = {} is not a positive multiple of {block}", self.cols),
            ));
        }
        Ok(())
    }

    /// Require `data` to be exactly `expected` bytes.
    pub(crate) fn require_len(
        &self,
        format: &'static str,
        data: &[u8],
        expected: usize,
    ) -> Result<()> {
        if data.len() != expected {
            return Err(Error::TensorSizeMismatch {
                tensor: self.tensor.to_string(),
                ty: format.to_string(),
                expected: expected as u64,
                actual: data.len() as u64,
            });
        }
        Ok(())
    }

    pub(crate) fn bad_code(&self, format: &'static str, element: usize, code: u8) -> Error {
        let cols = self.cols.max(1);
        Error::InvalidTernaryCode {
            tensor: self.tensor.to_string(),
            format,
            row: element / cols,
            col: element % cols,
            code,
        }
    }

    pub(crate) fn bad_tiling(
        &self,
        format: &'static str,
        tiling: TlTiling,
        reason: String,
    ) -> Error {
        Error::InvalidTiling {
            tensor: self.tensor.to_string(),
            format,
            rows: self.rows,
            cols: self.cols,
            tiling,
            reason,
        }
    }
}

/// Name used in errors raised by the encoders, which have no tensor name.
pub(crate) const ENCODER_INPUT: &str = "<encoder input>";

/// Check encoder input: `values.len() == rows * cols` and every value in {-1, 0, 1}.
pub(crate) fn check_values(
    format: &'static str,
    values: &[i8],
    rows: usize,
    cols: usize,
) -> Result<Ctx<'static>> {
    let ctx = Ctx {
        tensor: ENCODER_INPUT,
        rows,
        cols,
    };
    let n = ctx.n(format)?;
    if values.len() != n {
        return Err(Error::EncodeValueCount {
            format,
            rows,
            cols,
            expected: n as u64,
            actual: values.len() as u64,
        });
    }
    if let Some(index) = values.iter().position(|v| !(-1..=1).contains(v)) {
        return Err(Error::NotTernaryValue {
            format,
            index,
            value: values[index],
        });
    }
    Ok(ctx)
}

/// Pair index used by TL1 and TL2's pair part: `3·t0 + t1 + 4` ∈ 0..=8.
pub(crate) fn pair_index(t0: i8, t1: i8) -> u8 {
    (3 * t0 + t1 + 4) as u8
}

/// Inverse of [`pair_index`] for indices 0..=8.
pub(crate) const PAIRS: [[i8; 2]; 9] = [
    [-1, -1],
    [-1, 0],
    [-1, 1],
    [0, -1],
    [0, 0],
    [0, 1],
    [1, -1],
    [1, 0],
    [1, 1],
];

/// The f32 scale stored little-endian at `at`.
pub(crate) fn read_f32(data: &[u8], at: usize) -> f32 {
    let mut b = [0u8; 4];
    if let Some(s) = data.get(at..at + 4) {
        b.copy_from_slice(s);
    }
    f32::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_scales_ignore_zero_blocks() {
        let mut values = vec![1i8; 2 * 512];
        values[256..512].fill(0); // row 0, block 1 all zero
        let t = TernaryTensor {
            rows: 2,
            cols: 512,
            values,
            scale: TernaryScale::PerBlock {
                block: 256,
                scales: vec![0.5, 0.0, 0.25, 0.25],
            },
        };
        assert_eq!(t.row_scales(), Some(vec![0.5, 0.25]));
        assert_eq!(t.tensor_scale(), None);
        let mut t2 = t.clone();
        t2.scale = TernaryScale::PerBlock {
            block: 256,
            scales: vec![0.5, 0.0, 0.5, 0.25],
        };
        assert_eq!(t2.row_scales(), None);
        let mut t3 = t.clone();
        t3.scale = TernaryScale::PerBlock {
            block: 256,
            scales: vec![0.5, 0.0, 0.5, 0.5],
        };
        assert_eq!(t3.tensor_scale(), Some(0.5));
        let t4 = TernaryTensor {
            rows: 1,
            cols: 4,
            values: vec![0; 4],
            scale: TernaryScale::PerTensor(2.0),
        };
        assert_eq!(t4.row_scales(), Some(vec![2.0]));
    }

    #[test]
    fn pair_table_inverts_pair_index() {
        for t0 in -1..=1i8 {
            for t1 in -1..=1i8 {
                assert_eq!(PAIRS[pair_index(t0, t1) as usize], [t0, t1]);
            }
        }
    }

    #[test]
    fn decode_rejects_non_ternary_types_and_missing_tiling() {
        let e = decode("w", TensorType::F32, &[0; 4], 1, 1, None).unwrap_err();
        assert_eq!(e.to_string(), "tensor 'w': type F32 is not a ternary type");
        let e = decode("w", TensorType::TL2, &[0; 64], 32, 100, None).unwrap_err();
        assert!(matches!(
            e,
            Error::MissingTiling {
                rows: 32,
                cols: 100,
                ..
            }
        ));
        assert!(e.to_string().contains("M=32 x K=100"), "{e}");
    }
}
