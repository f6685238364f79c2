//! Writing GGUF files.
//!
//! Layout written: header, metadata in insertion order, tensor infos in insertion order, zero
//! padding to the alignment, then each tensor's data at the next aligned offset (zero padding in
//! between and, by default, after the last tensor, as ggml and gguf-py do).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::reader::{GgufFile, MAX_ARRAY_DEPTH, MAX_DIMS, validate_alignment};
use crate::types::{GgmlType, TensorType};
use crate::value::{Metadata, Value};

struct PendingTensor {
    name: String,
    ne: Vec<u64>,
    raw_type: GgmlType,
    data: Vec<u8>,
}

/// Builds a GGUF file in memory and writes it out.
pub struct GgufWriter {
    version: u32,
    metadata: Metadata,
    tensors: Vec<PendingTensor>,
    names: HashMap<String, usize>,
    trailing: Option<Vec<u8>>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    /// An empty version-3 file (alignment 32 unless `general.alignment` is set in the metadata).
    pub fn new() -> Self {
        GgufWriter {
            version: 3,
            metadata: Metadata::new(),
            tensors: Vec::new(),
            names: HashMap::new(),
            trailing: None,
        }
    }

    /// Copy a parsed file: version, all metadata and every tensor's data, in file order.
    ///
    /// Tensors of unknown type carry the bytes from their offset up to the next tensor's offset
    /// (or the end of the file). Bytes after the last tensor that are not the standard zero
    /// padding are kept and written back verbatim (see [`GgufWriter::set_trailing_bytes`]), so a
    /// file laid out the way ggml/gguf-py lay files out (tensors in table order, each at the next
    /// aligned offset, zero padding) is reproduced byte for byte. Files laid out differently
    /// (gaps, non-zero padding, tensors out of table order) are re-laid-out canonically.
    pub fn from_file(f: &GgufFile) -> Result<Self> {
        let mut w = GgufWriter::new();
        w.version = f.version();
        w.metadata = f.metadata().clone();
        let data_size = f.data_size();
        let mut offsets: Vec<u64> = f.tensors().iter().map(|t| t.offset).collect();
        offsets.sort_unstable();
        offsets.dedup();
        let mut last_end: Option<(u64, u64)> = None; // (offset, end) of the tensor at the largest offset
        for (i, t) in f.tensors().iter().enumerate() {
            let data = match t.nbytes {
                Some(_) => f.tensor_data(t)?.to_vec(),
                None => {
                    // A later tensor at the same offset means this one is
                    // empty (tensors are laid out in order; the last of
                    // those sharing an offset may still hold bytes).
                    let shared = f.tensors()[i + 1..].iter().any(|o| o.offset == t.offset);
                    let next = offsets.get(offsets.partition_point(|&x| x <= t.offset));
                    let end = match next {
                        _ if shared => t.offset,
                        Some(&n) => n,
                        None => data_size,
                    };
                    let start = f.data_offset() + t.offset;
                    let stop = f.data_offset() + end;
                    let bytes = usize::try_from(start)
                        .ok()
                        .zip(usize::try_from(stop).ok())
                        .and_then(|(a, b)| f.bytes().get(a..b));
                    bytes
                        .ok_or_else(|| Error::TensorOutOfBounds {
                            tensor: t.name.clone(),
                            offset: t.offset,
                            nbytes: end.saturating_sub(t.offset),
                            data_size,
                        })?
                        .to_vec()
                }
            };
            let end = t.offset + data.len() as u64;
            if last_end.is_none_or(|(o, _)| t.offset >= o) {
                last_end = Some((t.offset, end));
            }
            w.push_tensor(t.name.clone(), t.ne.clone(), t.raw_type, data)?;
        }
        if let Some((_, end)) = last_end {
            let tail = usize::try_from(f.data_offset() + end)
                .ok()
                .and_then(|s| f.bytes().get(s..))
                .unwrap_or(&[]);
            let standard = end.next_multiple_of(f.alignment()) - end;
            if tail.len() as u64 != standard || tail.iter().any(|&b| b != 0) {
                w.trailing = Some(tail.to_vec());
            }
        }
        Ok(w)
    }

    /// The metadata to be written.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Mutable access to the metadata to be written.
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.metadata
    }

    /// GGUF version to write (3 by default; copied by [`GgufWriter::from_file`]).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Set the version to write; only 2 and 3 are accepted (their little-endian encodings are
    /// identical).
    pub fn set_version(&mut self, version: u32) -> Result<()> {
        if version != 2 && version != 3 {
            return Err(Error::UnsupportedVersion { version });
        }
        self.version = version;
        Ok(())
    }

    /// Bytes written after the last tensor's data. `None` (the default) writes zero padding up to
    /// the alignment, as ggml does; `Some(bytes)` writes exactly `bytes` instead.
    pub fn set_trailing_bytes(&mut self, bytes: Option<Vec<u8>>) {
        self.trailing = bytes;
    }

    /// Number of tensors added so far.
    pub fn tensor_count(&self) -> usize {
        self.tensors.len()
    }

    /// The alignment the file will be written with (`general.alignment` or 32).
    pub fn alignment(&self) -> Result<u64> {
        validate_alignment(self.metadata.get_u64("general.alignment")?)
    }

    /// Add a tensor. The data length is checked against the type's size for the shape when the
    /// type is known (type 39 accepts either the TL2 or the MXFP4 size); unknown ids accept any
    /// length. Names must be unique; at most 4 dimensions.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        ne: Vec<u64>,
        raw_type: GgmlType,
        data: Vec<u8>,
    ) -> Result<()> {
        let name = name.into();
        if ne.len() > MAX_DIMS {
            return Err(Error::TooManyDims {
                tensor: name,
                n_dims: ne.len() as u64,
            });
        }
        if let Some(dim) = ne.iter().position(|&d| d > i64::MAX as u64) {
            return Err(Error::InvalidDimension {
                value: ne[dim],
                tensor: name,
                dim,
            });
        }
        let n = ne.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        if n.is_none_or(|n| n > i64::MAX as u64) {
            return Err(Error::ElementCountOverflow { tensor: name, ne });
        }
        let candidates: Vec<TensorType> = if raw_type == GgmlType::TL2_OR_MXFP4 {
            vec![TensorType::TL2, TensorType::MXFP4]
        } else {
            vec![TensorType::from_ggml(raw_type, false)]
        };
        if !matches!(candidates[..], [TensorType::Unknown(_)]) {
            let sizes: Vec<u64> = candidates.iter().filter_map(|t| t.nbytes(&ne)).collect();
            let Some(&expected) = sizes.first() else {
                return Err(Error::InvalidTensorShape {
                    tensor: name,
                    ty: candidates[0].name(),
                    ne,
                });
            };
            if !sizes.contains(&(data.len() as u64)) {
                let ty = if candidates.len() > 1 {
                    "TL2/MXFP4".to_string()
                } else {
                    candidates[0].name()
                };
                return Err(Error::TensorSizeMismatch {
                    tensor: name,
                    ty,
                    expected,
                    actual: data.len() as u64,
                });
            }
        }
        self.push_tensor(name, ne, raw_type, data)
    }

    fn push_tensor(
        &mut self,
        name: String,
        ne: Vec<u64>,
        raw_type: GgmlType,
        data: Vec<u8>,
    ) -> Result<()> {
        if self.names.contains_key(&name) {
            return Err(Error::DuplicateTensor { name });
        }
        self.names.insert(name.clone(), self.tensors.len());
        self.tensors.push(PendingTensor {
            name,
            ne,
            raw_type,
            data,
        });
        Ok(())
    }

    /// Serialise the header (everything before the data section, padding included).
    fn header(&self, alignment: u64) -> Result<Vec<u8>> {
        let mut h = Vec::new();
        h.extend_from_slice(b"GGUF");
        h.extend_from_slice(&self.version.to_le_bytes());
        h.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        h.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in self.metadata.iter() {
            put_string(&mut h, key);
            h.extend_from_slice(&value.value_type().id().to_le_bytes());
            put_value(&mut h, key, value, 0)?;
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_string(&mut h, &t.name);
            h.extend_from_slice(&(t.ne.len() as u32).to_le_bytes());
            for d in &t.ne {
                h.extend_from_slice(&d.to_le_bytes());
            }
            h.extend_from_slice(&t.raw_type.0.to_le_bytes());
            h.extend_from_slice(&offset.to_le_bytes());
            offset = (offset + t.data.len() as u64).next_multiple_of(alignment);
        }
        let padded = (h.len() as u64).next_multiple_of(alignment);
        h.resize(padded as usize, 0);
        Ok(h)
    }

    /// Write the file to `w`.
    pub fn write_to<W: Write>(&self, mut w: W) -> Result<()> {
        let alignment = self.alignment()?;
        let header = self.header(alignment)?;
        let io = |source| Error::WriteIo { source };
        w.write_all(&header).map_err(io)?;
        let last = self.tensors.len().checked_sub(1);
        for (i, t) in self.tensors.iter().enumerate() {
            w.write_all(&t.data).map_err(io)?;
            let pad = (t.data.len() as u64).next_multiple_of(alignment) - t.data.len() as u64;
            match (&self.trailing, Some(i) == last) {
                (Some(tail), true) => w.write_all(tail).map_err(io)?,
                _ => write_zeros(&mut w, pad).map_err(io)?,
            }
        }
        if self.tensors.is_empty()
            && let Some(tail) = &self.trailing
        {
            w.write_all(tail).map_err(io)?;
        }
        w.flush().map_err(io)
    }

    /// Writes the file to `path`, atomically: the bytes go to a temporary
    /// file beside it (`.NAME.partial-PID`), which is synced and renamed
    /// over `path` only when complete. A failure (disk full, a read-only
    /// target) removes the temporary file, and an interrupted process leaves
    /// at most that hidden temporary, never a `path` that looks complete.
    pub fn write_file(&self, path: &Path) -> Result<()> {
        let io = |op: &'static str| {
            move |source| Error::Io {
                path: path.to_path_buf(),
                op,
                source,
            }
        };
        let name = path.file_name().ok_or_else(|| {
            io("create")(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the output path has no file name",
            ))
        })?;
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".partial-{}", std::process::id()));
        let temp = path.with_file_name(temp_name);
        let written = (|| {
            let file = std::fs::File::create(&temp).map_err(io("create"))?;
            let mut out = std::io::BufWriter::new(file);
            match self.write_to(&mut out) {
                Err(Error::WriteIo { source }) => Err(io("write")(source)),
                r => r,
            }?;
            out.into_inner()
                .map_err(|e| io("write")(e.into_error()))?
                .sync_all()
                .map_err(io("sync"))?;
            std::fs::rename(&temp, path).map_err(io("rename"))
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written
    }

    /// The whole file as a byte vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.write_to(&mut out)?;
        Ok(out)
    }
}

fn write_zeros<W: Write>(w: &mut W, mut n: u64) -> std::io::Result<()> {
    const ZEROS: [u8; 4096] = [0; 4096];
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        w.write_all(&ZEROS[..k])?;
        n -= k as u64;
    }
    Ok(())
}

fn put_string(h: &mut Vec<u8>, s: &str) {
    h.extend_from_slice(&(s.len() as u64).to_le_bytes());
    h.extend_from_slice(s.as_bytes());
}

fn put_value(h: &mut Vec<u8>, key: &str, v: &Value, depth: usize) -> Result<()> {
    match v {
        Value::U8(x) => h.push(*x),
        Value::I8(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => h.push(u8::from(*x)),
        Value::String(s) => put_string(h, s),
        Value::U64(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::Array(a) => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(Error::ArrayNestingTooDeep {
                    key: key.to_string(),
                    max_depth: MAX_ARRAY_DEPTH,
                });
            }
            h.extend_from_slice(&a.elem_type.id().to_le_bytes());
            h.extend_from_slice(&(a.values.len() as u64).to_le_bytes());
            for (index, e) in a.values.iter().enumerate() {
                if e.value_type() != a.elem_type {
                    return Err(Error::ArrayElementType {
                        key: key.to_string(),
                        index,
                        expected: a.elem_type,
                        found: e.value_type(),
                    });
                }
                put_value(h, key, e, depth + 1)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{Array, ValueType};

    #[test]
    fn header_bytes_are_exact() {
        let mut w = GgufWriter::new();
        w.metadata_mut().insert("a", Value::U8(5));
        w.add_tensor("t", vec![2], GgmlType::F32, vec![1, 2, 3, 4, 5, 6, 7, 8])
            .unwrap();
        let b = w.to_bytes().unwrap();
        let mut want = Vec::new();
        want.extend_from_slice(b"GGUF");
        want.extend_from_slice(&3u32.to_le_bytes());
        want.extend_from_slice(&1u64.to_le_bytes()); // tensors
        want.extend_from_slice(&1u64.to_le_bytes()); // kvs
        want.extend_from_slice(&1u64.to_le_bytes());
        want.push(b'a');
        want.extend_from_slice(&0u32.to_le_bytes()); // u8
        want.push(5);
        want.extend_from_slice(&1u64.to_le_bytes());
        want.push(b't');
        want.extend_from_slice(&1u32.to_le_bytes());
        want.extend_from_slice(&2u64.to_le_bytes());
        want.extend_from_slice(&0u32.to_le_bytes()); // F32
        want.extend_from_slice(&0u64.to_le_bytes()); // offset
        assert_eq!(want.len(), 71);
        want.resize(96, 0);
        want.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        want.resize(128, 0);
        assert_eq!(b, want);
    }

    #[test]
    fn mixed_array_is_rejected_naming_key_and_index() {
        let mut w = GgufWriter::new();
        w.metadata_mut().insert(
            "bad.arr",
            Value::Array(Array {
                elem_type: ValueType::U32,
                values: vec![Value::U32(1), Value::I32(2)],
            }),
        );
        let e = w.to_bytes().unwrap_err();
        assert!(matches!(
            e,
            Error::ArrayElementType { ref key, index: 1, expected: ValueType::U32, found: ValueType::I32 } if key == "bad.arr"
        ));
    }

    #[test]
    fn add_tensor_checks() {
        let mut w = GgufWriter::new();
        let e = w
            .add_tensor("q", vec![256, 2], GgmlType::TQ2_0, vec![0; 131])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "tensor 'q' (TQ2_0): expected 132 bytes, got 131"
        );
        let e = w
            .add_tensor("q", vec![100], GgmlType::Q8_0, vec![0; 10])
            .unwrap_err();
        assert!(matches!(e, Error::InvalidTensorShape { ref tensor, .. } if tensor == "q"));
        let e = w
            .add_tensor("q", vec![1, 1, 1, 1, 1], GgmlType::F32, vec![0; 4])
            .unwrap_err();
        assert!(matches!(e, Error::TooManyDims { n_dims: 5, .. }));
        // Type 39 accepts the TL2 size and the MXFP4 size.
        let tl2 = TensorType::TL2.nbytes(&[256, 32]).unwrap() as usize;
        w.add_tensor("a", vec![256, 32], GgmlType(39), vec![0; tl2])
            .unwrap();
        w.add_tensor("b", vec![256, 32], GgmlType(39), vec![0; 32 * 8 * 17])
            .unwrap();
        w.add_tensor("c", vec![3], GgmlType(200), vec![9; 5])
            .unwrap();
        let e = w
            .add_tensor("c", vec![1], GgmlType::F32, vec![0; 4])
            .unwrap_err();
        assert_eq!(e.to_string(), "tensor name 'c' appears more than once");
        assert!(w.set_version(1).is_err());
    }

    /// Tensors of unknown size at one offset: only the last may hold bytes
    /// (a case the round-trip property test found in CI).
    #[test]
    fn unknown_tensors_sharing_an_offset_round_trip() {
        let mut w = GgufWriter::new();
        w.add_tensor("t0", vec![1, 1], GgmlType(200), vec![])
            .unwrap();
        w.add_tensor("t1", vec![3, 3], GgmlType(200), (1..=32).collect())
            .unwrap();
        w.add_tensor("t2", vec![3, 1], GgmlType(200), vec![])
            .unwrap();
        let bytes = w.to_bytes().unwrap();
        let f = GgufFile::from_vec(bytes.clone()).unwrap();
        let offsets: Vec<u64> = f.tensors().iter().map(|t| t.offset).collect();
        assert_eq!(offsets, [0, 0, 32]);
        assert_eq!(
            GgufWriter::from_file(&f).unwrap().to_bytes().unwrap(),
            bytes
        );
    }
}
