//! `CoreError` → Python exceptions. Every argument error subclasses `ValueError`, so
//! `except ValueError` catches them, and the message names the offending argument; an index
//! out of range is an `IndexError`, as for any Python sequence.

use lmobjectives_core::CoreError;
use pyo3::PyErr;
use pyo3::create_exception;
use pyo3::exceptions::{PyIndexError, PyRuntimeError, PyValueError};

create_exception!(
    lmobjectives,
    LMObjectivesError,
    PyValueError,
    "Base class of the errors raised by lmobjectives kernels (a ValueError)."
);
create_exception!(
    lmobjectives,
    InvalidArgumentError,
    LMObjectivesError,
    "A parameter or input value is outside what the kernel accepts."
);
create_exception!(
    lmobjectives,
    TokenIdError,
    LMObjectivesError,
    "A token id lies outside [0, vocab_size)."
);
create_exception!(
    lmobjectives,
    ShapeError,
    LMObjectivesError,
    "Arrays that must line up (lengths, shapes) do not."
);

pub fn to_py(e: CoreError) -> PyErr {
    let msg = e.to_string();
    match e {
        CoreError::InvalidArgument { .. } => InvalidArgumentError::new_err(msg),
        CoreError::TokenOutOfRange { .. } => TokenIdError::new_err(msg),
        CoreError::ShapeMismatch { .. } => ShapeError::new_err(msg),
        CoreError::IndexOutOfRange { .. } => PyIndexError::new_err(msg),
        CoreError::Internal(_) => PyRuntimeError::new_err(msg),
    }
}

/// Runs a kernel with the interpreter detached (GIL released). A `CoreError` becomes its
/// exception class; a panic — which would be a bug — becomes a `RuntimeError` instead of
/// unwinding into Python as a `PanicException` (a `BaseException` most code does not catch).
pub fn detached<T, F>(py: pyo3::Python<'_>, f: F) -> pyo3::PyResult<T>
where
    F: Send + FnOnce() -> Result<T, CoreError>,
    T: Send,
{
    let outcome = py.detach(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    match outcome {
        Ok(result) => result.map_err(to_py),
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(PyRuntimeError::new_err(format!(
                "internal error in lmobjectives (please report it): {what}"
            )))
        }
    }
}
