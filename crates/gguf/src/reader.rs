//! Parsing a GGUF file: header, metadata, tensor table, and access to tensor bytes.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{Error, Result};
use crate::types::{GgmlType, TensorType};
use crate::value::Metadata;

/// Arrays may nest at most this deep (an array of arrays of scalars has depth 2). ggml itself
/// does not read nested arrays at all; the cap keeps recursion bounded on hostile input.
pub const MAX_ARRAY_DEPTH: usize = 8;
/// GGUF/ggml limit on tensor rank.
pub const MAX_DIMS: usize = 4;
/// Alignment used when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Largest accepted `general.alignment` (real files use 32). The cap keeps padding, and therefore
/// what a writer re-creating the file must emit, bounded.
pub const MAX_ALIGNMENT: u64 = 1 << 24;

/// Check a `general.alignment` value: a power of two, a multiple of 8, at most [`MAX_ALIGNMENT`].
pub(crate) fn validate_alignment(a: Option<u64>) -> Result<u64> {
    match a {
        None => Ok(DEFAULT_ALIGNMENT),
        Some(a) if a.is_power_of_two() && a % 8 == 0 && a <= MAX_ALIGNMENT => Ok(a),
        Some(value) => Err(Error::InvalidAlignment { value }),
    }
}

/// One entry of the tensor table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions in ggml order: `ne[0]` is the innermost (contiguous) one.
    pub ne: Vec<u64>,
    /// The type as resolved for this file (id 39 → TL2 or MXFP4).
    pub ty: TensorType,
    /// The id stored in the file.
    pub raw_type: GgmlType,
    /// Offset of the data relative to [`GgufFile::data_offset`].
    pub offset: u64,
    /// Size of the data in bytes; `None` only for unknown types.
    pub nbytes: Option<u64>,
}

impl TensorInfo {
    /// Product of all dimensions (saturating; the reader rejects overflowing shapes).
    pub fn n_elements(&self) -> u64 {
        self.ne.iter().fold(1u64, |a, &d| a.saturating_mul(d))
    }

    /// Product of `ne[1..]`: the number of rows (M, output features) of a weight matrix.
    pub fn rows(&self) -> u64 {
        self.ne
            .iter()
            .skip(1)
            .fold(1u64, |a, &d| a.saturating_mul(d))
    }

    /// `ne[0]`: the number of columns (K, input features) of a weight matrix.
    pub fn cols(&self) -> u64 {
        self.ne.first().copied().unwrap_or(1)
    }
}

enum Backing {
    Mmap(Mmap),
    Static(&'static [u8]),
    Owned(Vec<u8>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mmap(m) => m,
            Backing::Static(s) => s,
            Backing::Owned(v) => v,
        }
    }
}

/// A parsed GGUF file. The bytes stay where they are (memory map, static slice or owned vector);
/// tensor data is handed out as borrowed slices.
pub struct GgufFile {
    backing: Backing,
    path: Option<PathBuf>,
    version: u32,
    alignment: u64,
    header_len: u64,
    data_offset: u64,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    index: HashMap<String, usize>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("len", &self.bytes().len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .field("metadata_entries", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Memory-map and parse the file at `path`. Parse errors are wrapped in [`Error::InFile`].
    pub fn open(path: &Path) -> Result<GgufFile> {
        let io = |op: &'static str| {
            move |source| Error::Io {
                path: path.to_path_buf(),
                op,
                source,
            }
        };
        let file = File::open(path).map_err(io("open"))?;
        let len = file.metadata().map_err(io("stat"))?.len();
        let backing = if len == 0 {
            Backing::Owned(Vec::new())
        } else {
            // SAFETY: the map is read-only and never written through. As with every memory-mapped
            // reader, the caller must not truncate or rewrite the file while it is open; that is
            // the documented contract of `GgufFile::open`.
            Backing::Mmap(unsafe { Mmap::map(&file) }.map_err(io("memory-map"))?)
        };
        Self::from_backing(backing, Some(path.to_path_buf())).map_err(|e| Error::InFile {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Parse a file held in a static slice (e.g. `include_bytes!`).
    pub fn from_static(bytes: &'static [u8]) -> Result<GgufFile> {
        Self::from_backing(Backing::Static(bytes), None)
    }

    /// Parse a file held in memory.
    pub fn from_vec(bytes: Vec<u8>) -> Result<GgufFile> {
        Self::from_backing(Backing::Owned(bytes), None)
    }

    fn from_backing(backing: Backing, path: Option<PathBuf>) -> Result<GgufFile> {
        let p = crate::parse::parse(backing.bytes())?;
        Ok(GgufFile {
            backing,
            path,
            version: p.version,
            alignment: p.alignment,
            header_len: p.header_len,
            data_offset: p.data_offset,
            metadata: p.metadata,
            tensors: p.tensors,
            index: p.index,
        })
    }

    /// The path given to [`GgufFile::open`].
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Data alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute byte offset where the tensor info table ends (before alignment padding).
    pub fn header_len(&self) -> u64 {
        self.header_len
    }

    /// Absolute byte offset of the tensor data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Bytes from the start of the data section to the end of the file.
    pub fn data_size(&self) -> u64 {
        (self.bytes().len() as u64).saturating_sub(self.data_offset)
    }

    /// The metadata table in file order.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// `general.architecture`, if present and a string.
    pub fn architecture(&self) -> Option<&str> {
        self.metadata.get("general.architecture")?.as_str()
    }

    /// The tensor table in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// Look a tensor up by name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        self.backing.bytes()
    }

    /// Absolute byte range of a tensor's data (exactly `nbytes` long).
    pub fn tensor_range(&self, t: &TensorInfo) -> Result<Range<usize>> {
        let nbytes = t.nbytes.ok_or_else(|| Error::UnknownTensorType {
            tensor: t.name.clone(),
            id: t.raw_type.0,
        })?;
        let oob = || Error::TensorOutOfBounds {
            tensor: t.name.clone(),
            offset: t.offset,
            nbytes,
            data_size: self.data_size(),
        };
        let start = self.data_offset.checked_add(t.offset).ok_or_else(oob)?;
        let end = start.checked_add(nbytes).ok_or_else(oob)?;
        if end > self.bytes().len() as u64 {
            return Err(oob());
        }
        // Both fit in usize: end <= bytes().len().
        Ok(start as usize..end as usize)
    }

    /// A tensor's data, exactly `nbytes` long. Unknown types are an error naming tensor and id.
    pub fn tensor_data(&self, t: &TensorInfo) -> Result<&[u8]> {
        let r = self.tensor_range(t)?;
        let len = self.bytes().len();
        self.bytes().get(r).ok_or_else(|| Error::TensorOutOfBounds {
            tensor: t.name.clone(),
            offset: t.offset,
            nbytes: t.nbytes.unwrap_or(0),
            data_size: len as u64,
        })
    }

    /// Hint that the pages backing this absolute byte range are no longer needed, e.g. after a
    /// tensor was repacked into another buffer. On a memory map this is `madvise(MADV_DONTNEED)`
    /// on the whole 4 KiB pages inside the range; the data stays readable (it is paged in again
    /// from the file on the next access). No-op for in-memory files and on non-Unix targets.
    pub fn release(&self, range: Range<usize>) {
        #[cfg(unix)]
        if let Backing::Mmap(map) = &self.backing {
            const PAGE: usize = 4096;
            let end = range.end.min(map.len()) / PAGE * PAGE;
            let Some(start) = range.start.checked_next_multiple_of(PAGE) else {
                return;
            };
            if start < end {
                // SAFETY: the mapping is a read-only MAP_SHARED file mapping that is never written
                // through, so dropping its pages does not change what later reads observe: the
                // kernel refills them from the (unmodified) file, exactly as after eviction under
                // memory pressure. Outstanding `&[u8]` borrows therefore keep seeing the same bytes.
                // `start..end` lies inside the map (end <= map.len()).
                let _ = unsafe {
                    map.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        start,
                        end - start,
                    )
                };
            }
        }
        #[cfg(not(unix))]
        let _ = range;
    }
}
