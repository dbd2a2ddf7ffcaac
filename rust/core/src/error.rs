//! The one error type of the core. Every fallible kernel returns `Result<_, CoreError>`;
//! the Python bindings map each variant to an exception class that subclasses `ValueError`.

use thiserror::Error;

/// What can go wrong in a kernel. `arg` always names the user-facing argument.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CoreError {
    /// A parameter or input value is outside what the kernel accepts.
    #[error("{arg}: {message}")]
    InvalidArgument { arg: String, message: String },

    /// A token id outside `[0, vocab_size)`.
    #[error(
        "{arg}: token id {value} at row {row}, position {position} is outside [0, {vocab_size})"
    )]
    TokenOutOfRange {
        arg: String,
        row: usize,
        position: usize,
        value: i64,
        vocab_size: u64,
    },

    /// Arrays that must line up do not (lengths, shapes).
    #[error("{arg}: {message}")]
    ShapeMismatch { arg: String, message: String },

    /// An index outside a sequence; `arg` names the position (e.g. `indices[3]`).
    #[error("{arg} = {value} is out of range for {len} items")]
    IndexOutOfRange { arg: String, value: i64, len: i64 },

    /// A size derived from the arguments is over a documented limit (see
    /// [`crate::limits`]); reported before anything is allocated.
    #[error("{arg}: {message}")]
    TooLarge { arg: String, message: String },

    /// A resource problem that is not the caller's fault (e.g. a thread pool could not start).
    #[error("internal error: {0}")]
    Internal(String),
}

impl CoreError {
    /// Shorthand for [`CoreError::InvalidArgument`].
    pub fn invalid(arg: impl Into<String>, message: impl Into<String>) -> Self {
        CoreError::InvalidArgument {
            arg: arg.into(),
            message: message.into(),
        }
    }

    /// Shorthand for [`CoreError::ShapeMismatch`].
    pub fn shape(arg: impl Into<String>, message: impl Into<String>) -> Self {
        CoreError::ShapeMismatch {
            arg: arg.into(),
            message: message.into(),
        }
    }
}

/// Result alias used throughout the core.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;

/// Checks that `p` is a finite probability in `[0, 1]`.
pub fn check_probability(arg: &str, p: f64) -> Result<f64> {
    if p.is_finite() && (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(CoreError::invalid(
            arg,
            format!("must be a probability in [0, 1], got {p}"),
        ))
    }
}
