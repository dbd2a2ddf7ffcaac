//! `CoreError` → Python exceptions, and the one way a kernel runs ([`detached`]).
//!
//! The exception classes live in the pure-Python module `lmobjectives.errors` (one hierarchy
//! for every layer; `LMObjectivesError` subclasses `ValueError`); the bindings look them up
//! there once. Messages name the offending argument; an index out of range is an
//! `IndexError`, as for any Python sequence.

use lmobjectives_core::CoreError;
use pyo3::exceptions::{PyIndexError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

/// The classes of `lmobjectives.errors` the bindings raise.
#[derive(Clone, Copy)]
pub enum Class {
    Base,
    InvalidArgument,
    ArgumentType,
    Limit,
    TokenId,
    Shape,
    Internal,
}

impl Class {
    const ALL: [(Class, &'static str); 7] = [
        (Class::Base, "LMObjectivesError"),
        (Class::InvalidArgument, "InvalidArgumentError"),
        (Class::ArgumentType, "ArgumentTypeError"),
        (Class::Limit, "LimitError"),
        (Class::TokenId, "TokenIdError"),
        (Class::Shape, "ShapeError"),
        (Class::Internal, "InternalError"),
    ];

    fn name(self) -> &'static str {
        Self::ALL[self as usize].1
    }
}

static CLASSES: PyOnceLock<Vec<Py<PyType>>> = PyOnceLock::new();

fn classes(py: Python<'_>) -> PyResult<&Vec<Py<PyType>>> {
    CLASSES.get_or_try_init(py, || {
        let module = py.import("lmobjectives.errors")?;
        Class::ALL
            .iter()
            .map(|(_, name)| Ok(module.getattr(*name)?.cast_into::<PyType>()?.unbind()))
            .collect()
    })
}

/// The class `c` (for re-export from `_core`).
pub fn class(py: Python<'_>, c: Class) -> PyResult<Bound<'_, PyType>> {
    Ok(classes(py)?[c as usize].bind(py).clone())
}

/// A new exception of class `c` with message `msg`. If the class cannot be found (only if
/// `lmobjectives.errors` itself is broken), a `RuntimeError` says so.
pub fn new_err(c: Class, msg: impl Into<String>) -> PyErr {
    let msg = msg.into();
    Python::attach(|py| match classes(py) {
        Ok(all) => PyErr::from_type(all[c as usize].bind(py).clone(), msg),
        Err(e) => PyRuntimeError::new_err(format!(
            "lmobjectives.errors.{} unavailable ({e}): {msg}",
            c.name()
        )),
    })
}

/// An `InvalidArgumentError` (a `ValueError`).
pub fn invalid(msg: impl Into<String>) -> PyErr {
    new_err(Class::InvalidArgument, msg)
}

/// An `ArgumentTypeError` (a `ValueError` and a `TypeError`).
pub fn wrong_type(msg: impl Into<String>) -> PyErr {
    new_err(Class::ArgumentType, msg)
}

pub fn to_py(e: CoreError) -> PyErr {
    let msg = e.to_string();
    match e {
        CoreError::InvalidArgument { .. } => new_err(Class::InvalidArgument, msg),
        CoreError::TooLarge { .. } => new_err(Class::Limit, msg),
        CoreError::TokenOutOfRange { .. } => new_err(Class::TokenId, msg),
        CoreError::ShapeMismatch { .. } => new_err(Class::Shape, msg),
        CoreError::IndexOutOfRange { .. } => PyIndexError::new_err(msg),
        CoreError::Internal(_) => new_err(Class::Internal, msg),
    }
}

/// A caught panic's message.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

/// The error a caught panic becomes: an `InternalError` (an `LMObjectivesError`), so one
/// `except` still catches everything the library raises.
pub fn panic_to_py(payload: &(dyn std::any::Any + Send)) -> PyErr {
    new_err(
        Class::Internal,
        format!(
            "internal error in lmobjectives (please report it): {}",
            panic_message(payload)
        ),
    )
}

/// Installs a panic hook that stays silent: every binding runs under `catch_unwind`
/// ([`detached`], [`guarded`]) and reports the panic as an `InternalError`, so the default
/// hook's message and backtrace on stderr would only be noise. Panics on threads the
/// bindings did not start keep the previous hook.
pub fn install_quiet_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let pool_thread = std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("lmobjectives-"));
            if !(QUIET.with(std::cell::Cell::get) || pool_thread) {
                previous(info);
            }
        }));
    });
}

thread_local! {
    /// Whether a panic on this thread will be caught by a binding (so the hook stays quiet).
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` under `catch_unwind` with the quiet hook armed on this thread. The kernels' pool
/// threads (named `lmobjectives-N`) are always quiet: rayon re-raises their panics on the
/// calling thread, where this catches them.
fn catching<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    install_quiet_panic_hook();
    let was = QUIET.with(|q| q.replace(true));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    out
}

/// Runs a kernel with the interpreter detached (GIL released). A `CoreError` becomes its
/// exception class; a panic — which would be a bug — becomes an `InternalError` instead of
/// unwinding into Python as a `PanicException` (a `BaseException` most code does not catch),
/// and prints nothing.
pub fn detached<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    F: Send + FnOnce() -> Result<T, CoreError>,
    T: Send,
{
    match py.detach(|| catching(f)) {
        Ok(result) => result.map_err(to_py),
        Err(payload) => Err(panic_to_py(&*payload)),
    }
}

/// Runs a binding's whole body (argument conversion, result conversion — the parts that hold
/// the GIL) under the same panic guard as [`detached`]. Every `#[pyfunction]` and
/// `#[pymethods]` body goes through `guarded` or `detached` (checked by
/// `tests/library/test_errors.py`).
pub fn guarded<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match catching(f) {
        Ok(result) => result,
        Err(payload) => Err(panic_to_py(&*payload)),
    }
}
