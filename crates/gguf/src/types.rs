//! ggml tensor type ids and byte sizes.
//!
//! [`GgmlType`] is the raw id as stored in a file, an open set: any `u32` is representable and
//! nothing here assumes the id is known. [`TensorType`] is what the id *means* inside a given file.
//! The two differ only for id 39, which is TL2 in bitnet.cpp files and MXFP4 in mainline ggml
//! files; the reader resolves it per tensor (see [`crate::GgufFile`]).

/// A raw ggml type id as stored in a tensor-info record.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct GgmlType(pub u32);

impl GgmlType {
    pub const F32: GgmlType = GgmlType(0);
    pub const F16: GgmlType = GgmlType(1);
    pub const Q4_0: GgmlType = GgmlType(2);
    pub const Q4_1: GgmlType = GgmlType(3);
    pub const Q5_0: GgmlType = GgmlType(6);
    pub const Q5_1: GgmlType = GgmlType(7);
    pub const Q8_0: GgmlType = GgmlType(8);
    pub const Q8_1: GgmlType = GgmlType(9);
    pub const Q2_K: GgmlType = GgmlType(10);
    pub const Q3_K: GgmlType = GgmlType(11);
    pub const Q4_K: GgmlType = GgmlType(12);
    pub const Q5_K: GgmlType = GgmlType(13);
    pub const Q6_K: GgmlType = GgmlType(14);
    pub const Q8_K: GgmlType = GgmlType(15);
    pub const I8: GgmlType = GgmlType(24);
    pub const I16: GgmlType = GgmlType(25);
    pub const I32: GgmlType = GgmlType(26);
    pub const I64: GgmlType = GgmlType(27);
    pub const F64: GgmlType = GgmlType(28);
    pub const BF16: GgmlType = GgmlType(30);
    pub const TQ1_0: GgmlType = GgmlType(34);
    pub const TQ2_0: GgmlType = GgmlType(35);
    /// bitnet.cpp's 2-bit ternary format (mainline: a removed id never found in files).
    pub const I2_S: GgmlType = GgmlType(36);
    /// bitnet.cpp's ARM lookup-table format.
    pub const TL1: GgmlType = GgmlType(38);
    /// bitnet.cpp TL2 *or* mainline MXFP4, depending on the file.
    pub const TL2_OR_MXFP4: GgmlType = GgmlType(39);

    /// The conventional name of a known id; id 39 is reported as `"TL2/MXFP4"`.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "F32",
            1 => "F16",
            2 => "Q4_0",
            3 => "Q4_1",
            6 => "Q5_0",
            7 => "Q5_1",
            8 => "Q8_0",
            9 => "Q8_1",
            10 => "Q2_K",
            11 => "Q3_K",
            12 => "Q4_K",
            13 => "Q5_K",
            14 => "Q6_K",
            15 => "Q8_K",
            24 => "I8",
            25 => "I16",
            26 => "I32",
            27 => "I64",
            28 => "F64",
            30 => "BF16",
            34 => "TQ1_0",
            35 => "TQ2_0",
            36 => "I2_S",
            38 => "TL1",
            39 => "TL2/MXFP4",
            _ => return None,
        })
    }
}

/// The resolved meaning of a tensor's type inside one file.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum TensorType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    I8,
    I16,
    I32,
    I64,
    F64,
    TQ1_0,
    TQ2_0,
    I2_S,
    TL1,
    TL2,
    MXFP4,
    /// An id this crate does not know; its data size is unknown.
    Unknown(u32),
}

/// Round `n` up to a multiple of 32.
pub(crate) fn pad32(n: u64) -> Option<u64> {
    n.checked_add(31).map(|v| v / 32 * 32)
}

/// bitnet.cpp's fixed TL2 over-allocation `B = (K−256)·M/3·5/8 + 256·M/2·4/8`, evaluated left to
/// right with C's truncating signed 64-bit division (LAYOUT.md §0). `None` if negative or too big.
pub(crate) fn tl2_body_bytes(m: u64, k: u64) -> Option<u64> {
    let (m, k) = (i128::from(m), i128::from(k));
    // i128 cannot overflow for u64 inputs: |(k-256)*m| < 2^128 / 2.
    let a = (k - 256) * m / 3 * 5 / 8;
    let b = 256 * m / 2 * 4 / 8;
    u64::try_from(a + b).ok()
}

impl TensorType {
    /// Map a raw id to a type. Id 39 becomes TL2 when `id39_is_tl2`, else MXFP4.
    pub fn from_ggml(raw: GgmlType, id39_is_tl2: bool) -> TensorType {
        use TensorType::*;
        match raw.0 {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2_K,
            11 => Q3_K,
            12 => Q4_K,
            13 => Q5_K,
            14 => Q6_K,
            15 => Q8_K,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            30 => BF16,
            34 => TQ1_0,
            35 => TQ2_0,
            36 => I2_S,
            38 => TL1,
            39 if id39_is_tl2 => TL2,
            39 => MXFP4,
            id => Unknown(id),
        }
    }

    /// The ggml id stored in files (TL2 and MXFP4 both give 39).
    pub fn id(self) -> u32 {
        use TensorType::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q5_0 => 6,
            Q5_1 => 7,
            Q8_0 => 8,
            Q8_1 => 9,
            Q2_K => 10,
            Q3_K => 11,
            Q4_K => 12,
            Q5_K => 13,
            Q6_K => 14,
            Q8_K => 15,
            I8 => 24,
            I16 => 25,
            I32 => 26,
            I64 => 27,
            F64 => 28,
            BF16 => 30,
            TQ1_0 => 34,
            TQ2_0 => 35,
            I2_S => 36,
            TL1 => 38,
            TL2 | MXFP4 => 39,
            Unknown(id) => id,
        }
    }

    /// The raw id as a [`GgmlType`].
    pub fn ggml(self) -> GgmlType {
        GgmlType(self.id())
    }

    /// Display name (`"I2_S"`, `"TL2"`, `"unknown type 77"`).
    pub fn name(self) -> String {
        use TensorType::*;
        let s = match self {
            F32 => "F32",
            F16 => "F16",
            BF16 => "BF16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2_K => "Q2_K",
            Q3_K => "Q3_K",
            Q4_K => "Q4_K",
            Q5_K => "Q5_K",
            Q6_K => "Q6_K",
            Q8_K => "Q8_K",
            I8 => "I8",
            I16 => "I16",
            I32 => "I32",
            I64 => "I64",
            F64 => "F64",
            TQ1_0 => "TQ1_0",
            TQ2_0 => "TQ2_0",
            I2_S => "I2_S",
            TL1 => "TL1",
            TL2 => "TL2",
            MXFP4 => "MXFP4",
            Unknown(id) => return format!("unknown type {id}"),
        };
        s.to_string()
    }

    /// Whether the type stores ternary weights (TQ1_0, TQ2_0, I2_S, TL1, TL2).
    pub fn is_ternary(self) -> bool {
        use TensorType::*;
        matches!(self, TQ1_0 | TQ2_0 | I2_S | TL1 | TL2)
    }

    /// `(elements, bytes)` per block for block-structured types; `None` for I2_S/TL1/TL2 (whose
    /// size is a whole-tensor formula) and unknown types.
    pub fn block(self) -> Option<(u64, u64)> {
        use TensorType::*;
        Some(match self {
            F32 => (1, 4),
            F16 | BF16 => (1, 2),
            I8 => (1, 1),
            I16 => (1, 2),
            I32 => (1, 4),
            I64 | F64 => (1, 8),
            Q4_0 => (32, 18),
            Q4_1 => (32, 20),
            Q5_0 => (32, 22),
            Q5_1 => (32, 24),
            Q8_0 => (32, 34),
            Q8_1 => (32, 36),
            MXFP4 => (32, 17),
            Q2_K => (256, 84),
            Q3_K => (256, 110),
            Q4_K => (256, 144),
            Q5_K => (256, 176),
            Q6_K => (256, 210),
            Q8_K => (256, 292),
            TQ1_0 => (256, 54),
            TQ2_0 => (256, 66),
            I2_S | TL1 | TL2 | Unknown(_) => return None,
        })
    }

    /// Bytes of a tensor with dims `ne` (`ne[0]` innermost; an empty slice is a scalar).
    ///
    /// `None` for unknown types, for shapes the type cannot hold (`ne[0]` not a multiple of the
    /// block, TL2 with a negative size), and on overflow. I2_S and TL1 take `n/4 + 32` and TL2
    /// `pad32(B) + 32` with `M` = product of `ne[1..]`, as bitnet.cpp's `ggml_nbytes` does.
    pub fn nbytes(self, ne: &[u64]) -> Option<u64> {
        let n = ne.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d))?;
        let k = ne.first().copied().unwrap_or(1);
        match self {
            TensorType::Unknown(_) => None,
            TensorType::I2_S | TensorType::TL1 => (n / 4).checked_add(32),
            TensorType::TL2 => {
                if k == 0 {
                    return None;
                }
                let body = tl2_body_bytes(n / k, k)?;
                pad32(body)?.checked_add(32)
            }
            ty => {
                let (blk, size) = ty.block()?;
                if k % blk != 0 {
                    return None;
                }
                (n / blk).checked_mul(size)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nbytes_matches_ggml_and_bitnet_formulas() {
        use TensorType::*;
        assert_eq!(F32.nbytes(&[1536]), Some(6144));
        assert_eq!(F16.nbytes(&[1536, 512]), Some(1_572_864));
        assert_eq!(Q8_0.nbytes(&[64, 3]), Some(6 * 34));
        assert_eq!(Q8_0.nbytes(&[33, 3]), None);
        assert_eq!(Q4_K.nbytes(&[512, 2]), Some(4 * 144));
        assert_eq!(Q6_K.nbytes(&[256]), Some(210));
        assert_eq!(TQ2_0.nbytes(&[256, 768]), Some(768 * 66));
        assert_eq!(TQ1_0.nbytes(&[768, 256]), Some(768 / 256 * 256 * 54));
        assert_eq!(MXFP4.nbytes(&[64, 2]), Some(4 * 17));
        // Values from tl-formats/manifest.json (bitnet.cpp's ggml_nbytes).
        assert_eq!(I2_S.nbytes(&[1536, 1536]), Some(589_856));
        assert_eq!(TL1.nbytes(&[1536, 4096]), Some(1_572_896));
        assert_eq!(TL2.nbytes(&[1536, 1536]), Some(507_936));
        assert_eq!(TL2.nbytes(&[1536, 4096]), Some(1_354_464));
        assert_eq!(TL2.nbytes(&[4096, 1536]), Some(1_327_136));
        assert_eq!(Unknown(77).nbytes(&[4]), None);
        assert_eq!(F32.nbytes(&[u64::MAX, 2]), None);
        assert_eq!(F32.nbytes(&[]), Some(4));
    }

    #[test]
    fn ids_names_and_resolution() {
        assert_eq!(TensorType::from_ggml(GgmlType(39), true), TensorType::TL2);
        assert_eq!(
            TensorType::from_ggml(GgmlType(39), false),
            TensorType::MXFP4
        );
        assert_eq!(
            TensorType::from_ggml(GgmlType(37), true),
            TensorType::Unknown(37)
        );
        assert_eq!(TensorType::TL2.id(), 39);
        assert_eq!(TensorType::MXFP4.id(), 39);
        assert_eq!(TensorType::Unknown(77).name(), "unknown type 77");
        assert_eq!(GgmlType::TL2_OR_MXFP4.name(), Some("TL2/MXFP4"));
        assert_eq!(GgmlType(37).name(), None);
        for id in 0..64 {
            let t = TensorType::from_ggml(GgmlType(id), true);
            assert_eq!(t.id(), id);
            assert_eq!(
                GgmlType(id).name().is_some(),
                !matches!(t, TensorType::Unknown(_))
            );
        }
        assert!(TensorType::TL2.is_ternary() && !TensorType::MXFP4.is_ternary());
    }
}
