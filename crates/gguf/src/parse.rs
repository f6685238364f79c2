//! The GGUF parser: a bounds-checked cursor over the file bytes, metadata values, the tensor
//! table, type-39 resolution and the extent checks. Every count is validated against the bytes
//! that remain before anything is allocated.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::reader::{MAX_ARRAY_DEPTH, MAX_DIMS, TensorInfo, validate_alignment};
use crate::types::{GgmlType, TensorType};
use crate::value::{Array, Metadata, Value, ValueType};

/// The smallest encoding of one metadata entry: key length, value type, one-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// The smallest encoding of one tensor-info record: name length, n_dims, type, offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;

/// Everything parsed from the bytes, before it is attached to its storage.
pub(crate) struct Parsed {
    pub version: u32,
    pub alignment: u64,
    pub header_len: u64,
    pub data_offset: u64,
    pub metadata: Metadata,
    pub tensors: Vec<TensorInfo>,
    pub index: HashMap<String, usize>,
}

/// Bounds-checked little-endian reader over the file bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn offset(&self) -> u64 {
        self.pos as u64
    }

    fn remaining(&self) -> u64 {
        self.buf.len().saturating_sub(self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        let available = self.remaining();
        let slice = usize::try_from(n)
            .ok()
            .filter(|_| n <= available)
            .and_then(|n| self.buf.get(self.pos..self.pos + n));
        match slice {
            Some(s) => {
                self.pos += s.len();
                Ok(s)
            }
            None => Err(Error::Truncated {
                what: what(),
                offset: self.offset(),
                needed: n,
                available,
            }),
        }
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count that is about to size an allocation: it must fit in the remaining bytes.
    fn count(&mut self, min_item_bytes: u64, what: &dyn Fn() -> String) -> Result<u64> {
        let offset = self.offset();
        let count = self.u64(what)?;
        let max_possible = self.remaining() / min_item_bytes.max(1);
        if count > max_possible {
            return Err(Error::CountTooLarge {
                what: what(),
                offset,
                count,
                max_possible,
            });
        }
        Ok(count)
    }

    /// A GGUF string (u64 length + bytes), which must be UTF-8.
    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String> {
        let len = self.count(1, &|| format!("length of {}", what()))?;
        let start = self.offset();
        let bytes = self.take(len, what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(Error::InvalidUtf8 {
                what: what(),
                offset: start,
            }),
        }
    }
}

fn read_value(cur: &mut Cursor<'_>, ty: ValueType, key: &str, depth: usize) -> Result<Value> {
    let what = || format!("value of metadata key '{key}'");
    Ok(match ty {
        ValueType::U8 => Value::U8(u8::from_le_bytes(cur.array(&what)?)),
        ValueType::I8 => Value::I8(i8::from_le_bytes(cur.array(&what)?)),
        ValueType::U16 => Value::U16(u16::from_le_bytes(cur.array(&what)?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(cur.array(&what)?)),
        ValueType::U32 => Value::U32(u32::from_le_bytes(cur.array(&what)?)),
        ValueType::I32 => Value::I32(i32::from_le_bytes(cur.array(&what)?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(cur.array(&what)?)),
        ValueType::U64 => Value::U64(u64::from_le_bytes(cur.array(&what)?)),
        ValueType::I64 => Value::I64(i64::from_le_bytes(cur.array(&what)?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(cur.array(&what)?)),
        ValueType::Bool => {
            let offset = cur.offset();
            match cur.array::<1>(&what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                value => {
                    return Err(Error::InvalidBool {
                        key: key.to_string(),
                        value,
                        offset,
                    });
                }
            }
        }
        ValueType::String => Value::String(cur.string(&what)?),
        ValueType::Array => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(Error::ArrayNestingTooDeep {
                    key: key.to_string(),
                    max_depth: MAX_ARRAY_DEPTH,
                });
            }
            let type_offset = cur.offset();
            let type_id = cur.u32(&|| format!("element type of array '{key}'"))?;
            let elem_type =
                ValueType::from_u32(type_id).ok_or_else(|| Error::UnknownValueType {
                    key: key.to_string(),
                    type_id,
                    offset: type_offset,
                })?;
            let count = cur.count(elem_type.min_encoded_size(), &|| {
                format!("element count of array '{key}'")
            })?;
            // `count` <= remaining bytes, so this allocation is bounded by the file size.
            let mut values = Vec::with_capacity(count as usize);
            for _ in 0..count {
                values.push(read_value(cur, elem_type, key, depth + 1)?);
            }
            Value::Array(Array { elem_type, values })
        }
    })
}

/// Tensor-info record as read, before its type is resolved and its extent checked.
struct RawTensor {
    name: String,
    ne: Vec<u64>,
    raw_type: GgmlType,
    offset: u64,
}

/// Parse a whole GGUF file held in `buf`.
pub(crate) fn parse(buf: &[u8]) -> Result<Parsed> {
    let mut cur = Cursor { buf, pos: 0 };
    let magic: [u8; 4] = cur.array(&|| "magic".into())?;
    if &magic != b"GGUF" {
        return Err(Error::BadMagic { found: magic });
    }
    let version = cur.u32(&|| "version".into())?;
    if version != 2 && version != 3 {
        return Err(Error::UnsupportedVersion { version });
    }
    let n_tensors = cur.count(MIN_TENSOR_INFO_BYTES, &|| "tensor count".into())?;
    let n_kv = cur.count(MIN_KV_BYTES, &|| "metadata entry count".into())?;

    let mut metadata = Metadata::new();
    for i in 0..n_kv {
        let key = cur.string(&|| format!("key of metadata entry #{i}"))?;
        let type_offset = cur.offset();
        let type_id = cur.u32(&|| format!("value type of metadata key '{key}'"))?;
        let ty = ValueType::from_u32(type_id).ok_or_else(|| Error::UnknownValueType {
            key: key.clone(),
            type_id,
            offset: type_offset,
        })?;
        let value = read_value(&mut cur, ty, &key, 0)?;
        metadata.push_unique(key, value)?;
    }

    // Re-check the tensor count against what is left after the metadata, before allocating.
    let max_tensors = cur.remaining() / MIN_TENSOR_INFO_BYTES;
    if n_tensors > max_tensors {
        return Err(Error::CountTooLarge {
            what: "tensor count".into(),
            offset: 8,
            count: n_tensors,
            max_possible: max_tensors,
        });
    }
    let mut raw = Vec::with_capacity(n_tensors as usize);
    let mut index = HashMap::with_capacity(n_tensors as usize);
    for i in 0..n_tensors {
        let t = read_tensor_info(&mut cur, i)?;
        if index.insert(t.name.clone(), raw.len()).is_some() {
            return Err(Error::DuplicateTensor { name: t.name });
        }
        raw.push(t);
    }
    let header_len = cur.offset();

    let alignment = validate_alignment(metadata.get_u64("general.alignment")?)?;
    let data_offset = header_len
        .checked_next_multiple_of(alignment)
        .ok_or(Error::InvalidAlignment { value: alignment })?;
    let data_size = (buf.len() as u64).saturating_sub(data_offset);

    let tensors = resolve_tensors(raw, &metadata, alignment, data_size)?;
    Ok(Parsed {
        version,
        alignment,
        header_len,
        data_offset,
        metadata,
        tensors,
        index,
    })
}

fn read_tensor_info(cur: &mut Cursor<'_>, i: u64) -> Result<RawTensor> {
    let name = cur.string(&|| format!("name of tensor #{i}"))?;
    let n_dims = cur.u32(&|| format!("dimension count of tensor '{name}'"))?;
    if n_dims as usize > MAX_DIMS {
        return Err(Error::TooManyDims {
            tensor: name,
            n_dims: n_dims.into(),
        });
    }
    let mut ne = Vec::with_capacity(n_dims as usize);
    for d in 0..n_dims as usize {
        let value = cur.u64(&|| format!("dimension {d} of tensor '{name}'"))?;
        if value > i64::MAX as u64 {
            return Err(Error::InvalidDimension {
                tensor: name,
                dim: d,
                value,
            });
        }
        ne.push(value);
    }
    let n = ne.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
    if n.is_none_or(|n| n > i64::MAX as u64) {
        return Err(Error::ElementCountOverflow { tensor: name, ne });
    }
    let raw_type = GgmlType(cur.u32(&|| format!("type of tensor '{name}'"))?);
    let offset = cur.u64(&|| format!("data offset of tensor '{name}'"))?;
    Ok(RawTensor {
        name,
        ne,
        raw_type,
        offset,
    })
}

/// Resolve each tensor's type (type 39 needs the file context), compute sizes and check that the
/// data is aligned and inside the file.
fn resolve_tensors(
    raw: Vec<RawTensor>,
    metadata: &Metadata,
    alignment: u64,
    data_size: u64,
) -> Result<Vec<TensorInfo>> {
    let arch_is_bitnet = metadata
        .get("general.architecture")
        .and_then(Value::as_str)
        .is_some_and(|a| a.starts_with("bitnet"));
    let file_type_tl2 = metadata
        .get("general.file_type")
        .and_then(Value::as_i128)
        .is_some_and(|t| t == 39);
    let prefer_tl2 = arch_is_bitnet || file_type_tl2;

    let mut offsets: Vec<u64> = raw.iter().map(|t| t.offset).collect();
    offsets.sort_unstable();
    offsets.dedup();
    let next_offset = |o: u64| offsets.get(offsets.partition_point(|&x| x <= o)).copied();

    let mut out = Vec::with_capacity(raw.len());
    for t in raw {
        if t.offset % alignment != 0 {
            return Err(Error::MisalignedOffset {
                tensor: t.name,
                offset: t.offset,
                alignment,
            });
        }
        let ty = if t.raw_type == GgmlType::TL2_OR_MXFP4 {
            let extent = Extent {
                offset: t.offset,
                next: next_offset(t.offset),
                data_size,
                alignment,
            };
            resolve_type_39(&t.ne, extent, prefer_tl2)
        } else {
            TensorType::from_ggml(t.raw_type, false)
        };
        let nbytes = ty.nbytes(&t.ne);
        let needed = match (ty, nbytes) {
            (TensorType::Unknown(_), _) => 0,
            (_, Some(n)) => n,
            (_, None) => {
                return Err(Error::InvalidTensorShape {
                    tensor: t.name,
                    ty: ty.name(),
                    ne: t.ne,
                });
            }
        };
        if t.offset
            .checked_add(needed)
            .is_none_or(|end| end > data_size)
        {
            return Err(Error::TensorOutOfBounds {
                tensor: t.name,
                offset: t.offset,
                nbytes: needed,
                data_size,
            });
        }
        out.push(TensorInfo {
            name: t.name,
            ne: t.ne,
            ty,
            raw_type: t.raw_type,
            offset: t.offset,
            nbytes,
        });
    }
    Ok(out)
}

/// Where a tensor's data sits and how much room the file leaves it.
#[derive(Clone, Copy)]
struct Extent {
    offset: u64,
    /// The next larger tensor offset in the file, if any.
    next: Option<u64>,
    data_size: u64,
    alignment: u64,
}

impl Extent {
    /// Whether a tensor of `size` bytes fills exactly this extent (up to alignment padding).
    fn fits(self, size: u64) -> bool {
        match self.next {
            Some(next) => size.checked_next_multiple_of(self.alignment) == Some(next - self.offset),
            None => {
                let room = self.data_size.saturating_sub(self.offset);
                self.offset <= self.data_size && size <= room && room - size < self.alignment
            }
        }
    }
}

/// Decide whether a type-39 tensor is bitnet.cpp TL2 or ggml MXFP4.
///
/// 1. If exactly one of the two sizes fills the room the file leaves the tensor (distance to the
///    next tensor's offset, or to the end of the file for the last one, up to alignment padding),
///    that one wins: the byte layout is the strongest evidence.
/// 2. Otherwise, if the shape is valid for only one of them, that one.
/// 3. Otherwise TL2 when `general.architecture` starts with "bitnet" or `general.file_type` is 39
///    (MOSTLY_TL2), else MXFP4.
fn resolve_type_39(ne: &[u64], extent: Extent, prefer_tl2: bool) -> TensorType {
    let tl2 = TensorType::TL2.nbytes(ne);
    let mx = TensorType::MXFP4.nbytes(ne);
    let fits = |s: Option<u64>| s.is_some_and(|s| extent.fits(s));
    match (fits(tl2), fits(mx)) {
        (true, false) => TensorType::TL2,
        (false, true) => TensorType::MXFP4,
        _ => match (tl2.is_some(), mx.is_some()) {
            (true, false) => TensorType::TL2,
            (false, true) => TensorType::MXFP4,
            _ if prefer_tl2 => TensorType::TL2,
            _ => TensorType::MXFP4,
        },
    }
}
