//! Errors of the kernels crate.

/// What went wrong when building a kernel operand.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A buffer's size disagrees with the shape it should have.
    #[error("{what}: expected {expected}, found {found}")]
    Shape {
        /// Which operand.
        what: &'static str,
        /// The size required by the shape.
        expected: String,
        /// The size given.
        found: String,
    },
    /// A "ternary" value outside {-1, 0, 1}.
    #[error("value {value} at index {index} is not ternary (-1, 0 or 1)")]
    NotTernary {
        /// Flat index of the value.
        index: usize,
        /// The value.
        value: i8,
    },
    /// A requested kernel level this CPU cannot run.
    #[error("kernel level `{requested}` is not supported by this CPU (available: {available})")]
    IsaUnavailable {
        /// The requested level.
        requested: String,
        /// What this CPU supports.
        available: String,
    },
}

/// Result with the kernels [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
