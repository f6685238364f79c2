//! # bitnet-gguf: GGUF files and ternary weight formats
//!
//! This crate reads and writes GGUF containers (versions 2 and 3) and converts the ternary weight
//! encodings used by BitNet b1.58 models — bitnet.cpp's I2_S, TL1 and TL2 and llama.cpp's TQ1_0
//! and TQ2_0 — to and from one canonical matrix of {-1, 0, +1} values with its scale.
//!
//! ## Why our own reader
//!
//! GGUF's type space is not one namespace. bitnet.cpp's llama.cpp fork assigned ids 36 (I2_S),
//! 37 (I8_S), 38 (TL1) and 39 (TL2) for its own formats, while mainline ggml removed 36–38 and
//! later reused 39 for MXFP4. General-purpose readers treat the id as a closed enum: an id they do
//! not know is either a hard error for the whole file or, in C, an out-of-bounds lookup in a type
//! traits table. For an engine whose reason to exist is exactly those ids, neither is acceptable.
//! So the type id here is an open set ([`GgmlType`] wraps any `u32`); a tensor of an unknown type
//! still parses, carries [`TensorType::Unknown`] and no size, and only asking for its bytes fails,
//! with an error naming the tensor and the id. Id 39 is resolved per file (see below).
//!
//! The second reason is hostile or broken input. Files are memory-mapped and parsed with a
//! bounds-checked cursor; every count or length is compared with the bytes that remain *before*
//! anything is allocated, so a 100-byte file claiming 2^64 tensors fails at once instead of
//! reserving memory. Nothing on the parse path panics: truncation, bad UTF-8, unknown value types,
//! excessive nesting, too many dimensions, overflowing shapes, misaligned or out-of-range data and
//! duplicate names all return a typed [`Error`] that names the byte offset, key or tensor.
//!
//! ## Design
//!
//! * [`GgufFile`] owns the bytes (a read-only memory map, a `&'static` slice or a `Vec`) and the
//!   parsed header: [`Metadata`] (insertion-ordered, hashed lookups, typed getters) and the tensor
//!   table of [`TensorInfo`]. Tensor data is handed out as borrowed slices of exactly `nbytes`.
//! * [`GgufWriter`] lays a file out the way ggml and gguf-py do (metadata and tensors in insertion
//!   order, each tensor at the next aligned offset, zero padding). Arrays keep their declared
//!   element type and floats their bits, so `GgufWriter::from_file` followed by a write reproduces
//!   such a file byte for byte.
//! * [`ternary`] decodes and encodes the five ternary formats. TL1/TL2 byte orders depend on tile
//!   sizes that are not stored in the file; they come from bitnet.cpp's presets or its
//!   `kernel_config.ini` ([`ternary::tl_preset`], [`ternary::parse_kernel_config`]).
//!
//! ## Example
//!
//! ```
//! use bitnet_gguf::{GgmlType, GgufFile, GgufWriter, TensorType, Value, ternary};
//!
//! # fn main() -> bitnet_gguf::Result<()> {
//! // A 2 x 128 ternary matrix stored as I2_S with scale 0.5.
//! let values: Vec<i8> = (0..256).map(|i| (i % 3) as i8 - 1).collect();
//! let mut w = GgufWriter::new();
//! w.metadata_mut().insert("general.architecture", Value::String("bitnet-b1.58".into()));
//! let bytes = ternary::encode_i2s(&values, 2, 128, 0.5)?;
//! w.add_tensor("blk.0.attn_q.weight", vec![128, 2], GgmlType::I2_S, bytes)?;
//!
//! let f = GgufFile::from_vec(w.to_bytes()?)?;
//! assert_eq!(f.architecture(), Some("bitnet-b1.58"));
//! let t = f.tensor("blk.0.attn_q.weight").expect("tensor present");
//! assert_eq!((t.ty, t.rows(), t.cols()), (TensorType::I2_S, 2, 128));
//! let m = ternary::decode_tensor(&f, t, None)?;
//! assert_eq!(m.values, values);
//! assert_eq!(m.row_scales(), Some(vec![0.5, 0.5]));
//! # Ok(())
//! # }
//! ```
//!
//! ## Type 39: TL2 or MXFP4
//!
//! For each tensor of id 39 the reader computes both candidate sizes. If exactly one of them fills
//! the room the file leaves the tensor (up to the next tensor's offset, or to the end of the file
//! for the last tensor, modulo alignment padding), that type is chosen. Otherwise, if the shape is
//! valid for only one of them, that one. Otherwise it is TL2 when `general.architecture` starts
//! with `bitnet` or `general.file_type` is 39 (MOSTLY_TL2), and MXFP4 in every other case.
//!
//! ## Decisions worth knowing
//!
//! * Strings (keys, values, tensor names) must be UTF-8; invalid bytes are an error naming the
//!   offset, never replaced, so that every accepted file can be written back unchanged.
//! * Booleans must be 0 or 1; arrays may nest at most [`MAX_ARRAY_DEPTH`] levels; tensors have at
//!   most 4 dimensions, each below 2^63, with an element count below 2^63.
//! * `general.alignment` may have any integer type but must be a power of two, a multiple of 8 and
//!   at most 16 MiB.
//! * A tensor of known type must lie entirely inside the file; offsets must be aligned. Tensors
//!   are not required to be contiguous or in table order.
//! * Memory amplification: each metadata array element becomes one [`Value`] (32 bytes), so a
//!   file's metadata can occupy up to ~32× its size in memory. Real vocabularies are far below that.

mod error;
mod parse;
mod reader;
pub mod ternary;
mod types;
mod value;
mod writer;

pub use error::{Error, Result};
pub use reader::{
    DEFAULT_ALIGNMENT, GgufFile, MAX_ALIGNMENT, MAX_ARRAY_DEPTH, MAX_DIMS, TensorInfo,
};
pub use types::{GgmlType, TensorType};
pub use value::{Array, Metadata, Value, ValueType};
pub use writer::GgufWriter;

#[cfg(test)]
mod tests {
    fn send_sync_static<T: Send + Sync + 'static>() {}

    #[test]
    fn public_types_are_thread_safe() {
        send_sync_static::<crate::Error>();
        send_sync_static::<crate::GgufFile>();
        send_sync_static::<crate::GgufWriter>();
        send_sync_static::<crate::ternary::TernaryTensor>();
    }
}
