//! The crate's single error type.
//!
//! Every variant carries the facts needed to act on it without a debugger: the byte offset in the
//! file where parsing stopped, the metadata key or tensor name involved, and the offending value.
//! Errors from [`crate::GgufFile::open`] are wrapped in [`Error::InFile`] so the message starts with
//! the path; [`Error::root`] strips that wrapper for matching on the underlying cause.

use std::path::PathBuf;

use crate::ternary::TlTiling;
use crate::value::ValueType;

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong while reading, writing or decoding GGUF data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call on a named file failed.
    #[error("{path}: cannot {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// Writing to a caller-supplied sink failed.
    #[error("writing GGUF output failed: {source}")]
    WriteIo {
        #[source]
        source: std::io::Error,
    },

    /// An error that occurred while parsing the file at `path`.
    #[error("{path}: {source}")]
    InFile { path: PathBuf, source: Box<Error> },

    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: magic bytes are {found:02x?}, expected [47, 47, 55, 46] (\"GGUF\")")]
    BadMagic { found: [u8; 4] },

    /// The header's version field is not 2 or 3.
    #[error(
        "unsupported GGUF version {version}: only versions 2 and 3 are supported (version 1 used 32-bit counts)"
    )]
    UnsupportedVersion { version: u32 },

    /// The file ended in the middle of a field.
    #[error(
        "file truncated while reading {what} at byte {offset}: need {needed} bytes, {available} left"
    )]
    Truncated {
        what: String,
        offset: u64,
        needed: u64,
        available: u64,
    },

    /// A count or length field claims more items than the rest of the file could possibly hold.
    #[error(
        "{what} at byte {offset} is {count}, but the rest of the file can hold at most {max_possible}"
    )]
    CountTooLarge {
        what: String,
        offset: u64,
        count: u64,
        max_possible: u64,
    },

    /// A string that must be UTF-8 is not.
    #[error("{what} at byte {offset} is not valid UTF-8")]
    InvalidUtf8 { what: String, offset: u64 },

    /// A metadata value (or array element) has a type id outside 0..=12.
    #[error("metadata key '{key}': unknown value type {type_id} at byte {offset}")]
    UnknownValueType {
        key: String,
        type_id: u32,
        offset: u64,
    },

    /// Arrays nested deeper than the reader/writer supports.
    #[error("metadata key '{key}': arrays nested more than {max_depth} levels deep")]
    ArrayNestingTooDeep { key: String, max_depth: usize },

    /// A boolean value byte that is neither 0 nor 1.
    #[error("metadata key '{key}': boolean byte at offset {offset} is {value}, expected 0 or 1")]
    InvalidBool { key: String, value: u8, offset: u64 },

    /// The same metadata key appears twice.
    #[error("metadata key '{key}' appears more than once")]
    DuplicateKey { key: String },

    /// A metadata value exists but has a type the caller cannot use.
    #[error("metadata key '{key}': expected {expected}, found {found}")]
    MetadataType {
        key: String,
        expected: &'static str,
        found: String,
    },

    /// An array value whose element does not match the array's declared element type (writer).
    #[error(
        "metadata key '{key}': array element {index} is {found:?}, but the array is declared {expected:?}"
    )]
    ArrayElementType {
        key: String,
        index: usize,
        expected: ValueType,
        found: ValueType,
    },

    /// `general.alignment` is not a power of two that is a multiple of 8 (and at most 16 MiB).
    #[error(
        "general.alignment = {value} is invalid: it must be a power of two, a multiple of 8 and at most 16 MiB"
    )]
    InvalidAlignment { value: u64 },

    /// A tensor with more than 4 dimensions.
    #[error("tensor '{tensor}': {n_dims} dimensions, at most 4 are allowed")]
    TooManyDims { tensor: String, n_dims: u64 },

    /// A dimension that does not fit ggml's signed 64-bit `ne`.
    #[error("tensor '{tensor}': dimension {dim} = {value} exceeds 2^63-1")]
    InvalidDimension {
        tensor: String,
        dim: usize,
        value: u64,
    },

    /// The product of the dimensions overflows.
    #[error("tensor '{tensor}': element count of shape {ne:?} overflows 64 bits")]
    ElementCountOverflow { tensor: String, ne: Vec<u64> },

    /// The shape cannot be stored in the tensor's type (e.g. ne\[0\] not a multiple of the block).
    #[error(
        "tensor '{tensor}': shape {ne:?} is not valid for type {ty} (ne[0] must be a multiple of the block size, sizes must not overflow)"
    )]
    InvalidTensorShape {
        tensor: String,
        ty: String,
        ne: Vec<u64>,
    },

    /// Two tensors share a name.
    #[error("tensor name '{name}' appears more than once")]
    DuplicateTensor { name: String },

    /// A tensor's data offset is not a multiple of the file's alignment.
    #[error(
        "tensor '{tensor}': data offset {offset} is not a multiple of the alignment {alignment}"
    )]
    MisalignedOffset {
        tensor: String,
        offset: u64,
        alignment: u64,
    },

    /// A tensor's bytes run past the end of the file.
    #[error(
        "tensor '{tensor}': data at offset {offset} with {nbytes} bytes runs past the end of the data section ({data_size} bytes)"
    )]
    TensorOutOfBounds {
        tensor: String,
        offset: u64,
        nbytes: u64,
        data_size: u64,
    },

    /// The tensor's type id is not one this crate knows the size of.
    #[error(
        "tensor '{tensor}': ggml type id {id} is not known to this reader, its data size is unknown"
    )]
    UnknownTensorType { tensor: String, id: u32 },

    /// A byte buffer whose length does not match what the type and shape require.
    #[error("tensor '{tensor}' ({ty}): expected {expected} bytes, got {actual}")]
    TensorSizeMismatch {
        tensor: String,
        ty: String,
        expected: u64,
        actual: u64,
    },

    /// `ternary::decode` was called on a type that is not ternary.
    #[error("tensor '{tensor}': type {ty} is not a ternary type")]
    NotTernaryType { tensor: String, ty: String },

    /// The matrix shape is not supported by a ternary format.
    #[error("{format} tensor '{tensor}' with {rows} rows x {cols} columns: {reason}")]
    TernaryShape {
        tensor: String,
        format: &'static str,
        rows: usize,
        cols: usize,
        reason: String,
    },

    /// A stored code that the format never produces (I2_S code 3, TL1 nibble > 8, ...).
    #[error(
        "{format} tensor '{tensor}': invalid code {code} for the element at row {row}, column {col}"
    )]
    InvalidTernaryCode {
        tensor: String,
        format: &'static str,
        row: usize,
        col: usize,
        code: u8,
    },

    /// No TL1/TL2 tiling was given and no preset exists for the shape.
    #[error(
        "{format} tensor '{tensor}': no tiling given and no bitnet.cpp preset for M={rows} x K={cols}; pass the kernel_config.ini the file was converted with"
    )]
    MissingTiling {
        tensor: String,
        format: &'static str,
        rows: usize,
        cols: usize,
    },

    /// A TL1/TL2 tiling that does not fit the shape.
    #[error(
        "{format} tensor '{tensor}' (M={rows} x K={cols}): tiling {tiling:?} is invalid: {reason}"
    )]
    InvalidTiling {
        tensor: String,
        format: &'static str,
        rows: usize,
        cols: usize,
        tiling: TlTiling,
        reason: String,
    },

    /// Encoder input with the wrong number of values.
    #[error("{format} encoder: {rows} x {cols} matrix needs {expected} values, got {actual}")]
    EncodeValueCount {
        format: &'static str,
        rows: usize,
        cols: usize,
        expected: u64,
        actual: u64,
    },

    /// Encoder input containing a value outside {-1, 0, 1}.
    #[error("{format} encoder: value {value} at index {index} is not in {{-1, 0, 1}}")]
    NotTernaryValue {
        format: &'static str,
        index: usize,
        value: i8,
    },

    /// A malformed bitnet.cpp `kernel_config.ini`.
    #[error("kernel_config.ini line {line}: {reason}")]
    KernelConfig { line: usize, reason: String },
}

impl Error {
    /// The underlying error with any [`Error::InFile`] wrappers removed.
    pub fn root(&self) -> &Error {
        let mut e = self;
        while let Error::InFile { source, .. } = e {
            e = source;
        }
        e
    }
}
