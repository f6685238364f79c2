//! Errors of the model crate.

use std::path::PathBuf;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading a file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The GGUF container is invalid.
    #[error(transparent)]
    Gguf(#[from] bitnet_gguf::Error),
    /// A safetensors file is invalid.
    #[error("{file}: invalid safetensors data: {reason}")]
    Safetensors {
        /// Which file.
        file: String,
        /// What the parser said.
        reason: String,
    },
    /// config.json is missing a field or has a bad value.
    #[error("{file}: field `{field}`: {reason}")]
    Config {
        /// Which file.
        file: String,
        /// The field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The architecture is not one we implement.
    #[error("{file}: unsupported model architecture `{arch}` (supported: {supported})")]
    UnsupportedArch {
        /// Which file.
        file: String,
        /// The architecture named by the file.
        arch: String,
        /// What we support.
        supported: &'static str,
    },
    /// A tensor the architecture needs is absent.
    #[error("{file}: missing tensor `{tensor}`")]
    MissingTensor {
        /// Which file.
        file: String,
        /// The tensor.
        tensor: String,
    },
    /// A tensor's shape disagrees with the configuration.
    #[error("{file}: tensor `{tensor}` has shape {found:?}, expected {expected:?}")]
    TensorShape {
        /// Which file.
        file: String,
        /// The tensor.
        tensor: String,
        /// The shape the configuration implies (outermost first).
        expected: Vec<usize>,
        /// The shape in the file (outermost first).
        found: Vec<usize>,
    },
    /// A tensor has a storage type this role cannot use.
    #[error("{file}: tensor `{tensor}` has type {ty}, which cannot be used as {role}")]
    TensorType {
        /// Which file.
        file: String,
        /// The tensor.
        tensor: String,
        /// Its type.
        ty: String,
        /// What it is needed for.
        role: &'static str,
    },
    /// A tensor's content is invalid (bad ternary code, non-finite scale, ...).
    #[error("{file}: tensor `{tensor}`: {reason}")]
    TensorData {
        /// Which file.
        file: String,
        /// The tensor.
        tensor: String,
        /// What is wrong.
        reason: String,
    },
    /// A kernel operand could not be built.
    #[error("tensor `{tensor}`: {source}")]
    Kernel {
        /// The tensor.
        tensor: String,
        /// The cause.
        source: bitnet_kernels::Error,
    },
    /// A token id outside the vocabulary.
    #[error("token id {id} is outside the vocabulary (size {vocab})")]
    TokenOutOfRange {
        /// The id.
        id: u32,
        /// Vocabulary size.
        vocab: usize,
    },
    /// A sequence would grow past its KV cache.
    #[error(
        "context is full: sequence {seq} needs position {position} but the context holds {capacity} tokens"
    )]
    ContextFull {
        /// Sequence index.
        seq: usize,
        /// The position that does not fit.
        position: usize,
        /// Cache capacity.
        capacity: usize,
    },
    /// A batch refers to a sequence without a cache.
    #[error("batch refers to sequence {seq} but only {n_caches} caches were given")]
    NoSuchSequence {
        /// The sequence index.
        seq: usize,
        /// Number of caches.
        n_caches: usize,
    },
    /// Logits asked of an embedding model.
    #[error("{model} is an embedding model: it has no language-model head (use `bitnet embed`)")]
    NoLmHead {
        /// The model.
        model: String,
    },
    /// Embedding asked of a model or input that cannot give one.
    #[error("cannot embed: {reason}")]
    Embedding {
        /// Why.
        reason: String,
    },
}

/// Result with the model [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
