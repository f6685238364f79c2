//! The crate's single error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading a tokenizer, encoding, decoding or rendering a chat
/// template. Variants carry the file, field, token or template they are about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file of a model directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A JSON file (tokenizer.json, tokenizer_config.json, ...) is not valid JSON or has a field of
    /// the wrong shape.
    #[error("{file}: invalid JSON: {source}")]
    Json {
        /// The file (a path or a well-known name such as `tokenizer_config.json`).
        file: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },

    /// The Hugging Face `tokenizers` library rejected a tokenizer definition or failed on input.
    #[error("{file}: {message}")]
    Hf {
        /// The file or vocabulary the tokenizer came from.
        file: String,
        /// The library's message.
        message: String,
    },

    /// A field of a configuration or GGUF vocabulary has an invalid value.
    #[error("{source_name}: field `{field}`: {message}")]
    InvalidField {
        /// The file or vocabulary (`tokenizer_config.json`, `gguf`, ...).
        source_name: String,
        /// The field, e.g. `tokenizer.ggml.merges[12]`.
        field: String,
        /// What is wrong with it.
        message: String,
    },

    /// A tokenizer kind this crate does not implement (e.g. GGUF `tokenizer.ggml.model = "bert"`).
    #[error("unsupported {what}: {value}")]
    Unsupported {
        /// The kind of thing, e.g. `GGUF tokenizer model`.
        what: &'static str,
        /// Its value.
        value: String,
    },

    /// A token id is not in the vocabulary.
    #[error("token id {id} is out of range (vocabulary size {vocab_size})")]
    TokenOutOfRange {
        /// The offending id.
        id: u32,
        /// The vocabulary size.
        vocab_size: usize,
    },

    /// A text byte has no token: the vocabulary has neither a `<0xNN>` byte token for it nor an
    /// unknown token.
    #[error(
        "byte 0x{byte:02X} has no token in the vocabulary (no <0x{byte:02X}> and no unknown token)"
    )]
    ByteNotInVocab {
        /// The byte.
        byte: u8,
    },

    /// Encoding failed inside the tokenizer implementation.
    #[error("encoding failed: {message}")]
    Encode {
        /// Details.
        message: String,
    },

    /// A chat template does not compile.
    #[error("chat template `{name}` does not compile: {message}")]
    TemplateSyntax {
        /// The template's name (where it came from).
        name: String,
        /// The Jinja engine's message, with line information.
        message: String,
    },

    /// Rendering a chat template failed (including `raise_exception(...)` in the template).
    #[error("chat template `{name}` failed to render: {message}")]
    TemplateRender {
        /// The template's name (where it came from).
        name: String,
        /// The Jinja engine's message.
        message: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
