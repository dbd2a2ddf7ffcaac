//! The one conversion of scalar and list arguments: every integer and float parameter of a
//! binding is read through these functions (`#[pyo3(from_py_with = crate::args::int)]`,
//! checked by `tests/library/test_errors.py`).
//!
//! An integer is any object with `__index__` except a bool; it must fit the parameter's Rust
//! type, else an `InvalidArgumentError` says the range (never an `OverflowError`). A float is
//! any real number except a bool, and never NaN. A list of integers is any sequence of them
//! (not a string), each item checked the same way and named by its position.
//!
//! The functions do not know the argument's name: their messages start with `{arg}`, which
//! `lmobjectives.errors.LMObjectivesError.add_note` replaces by the name from the note PyO3
//! adds to every argument error ("while processing 'NAME'").

use numpy::{PyArray1, PyArrayMethods, PyUntypedArray};
use pyo3::exceptions::{PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyString};

use crate::errors::{invalid, wrong_type};

/// Integer types an argument may be converted to.
pub trait IntArg: Sized + Copy + TryFrom<i128> {
    const MIN: i128;
    const MAX: i128;
}

macro_rules! int_arg {
    ($($t:ty),*) => {$(
        impl IntArg for $t {
            const MIN: i128 = <$t>::MIN as i128;
            const MAX: i128 = <$t>::MAX as i128;
        }
    )*};
}
int_arg!(u8, u16, u32, u64, usize, i32, i64);

fn short_repr(obj: &Bound<'_, PyAny>) -> String {
    let r = obj
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "?".into());
    if r.chars().count() > 40 {
        format!("{}…", r.chars().take(40).collect::<String>())
    } else {
        r
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

fn is_bool(obj: &Bound<'_, PyAny>) -> bool {
    obj.is_instance_of::<PyBool>()
        || type_name(obj) == "bool_"
        || (type_name(obj) == "bool" && !obj.is_instance_of::<pyo3::types::PyInt>())
}

/// One integer, named `what` in messages (`{arg}` or `{arg}[3]`).
fn int_named<T: IntArg>(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<T> {
    if is_bool(obj) {
        return Err(wrong_type(format!(
            "{what}: expected an int, got a bool ({})",
            short_repr(obj)
        )));
    }
    let wide = match obj.extract::<i128>() {
        Ok(v) => Some(v),
        Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => None,
        Err(e) if e.is_instance_of::<PyTypeError>(obj.py()) => {
            return Err(wrong_type(format!(
                "{what}: expected an int, got {} ({})",
                type_name(obj),
                short_repr(obj)
            )));
        }
        Err(e) => return Err(e),
    };
    match wide.and_then(|v| T::try_from(v).ok()) {
        Some(v) => Ok(v),
        None => Err(invalid(format!(
            "{what}: must be an integer in [{}, {}], got {}",
            T::MIN,
            T::MAX,
            short_repr(obj)
        ))),
    }
}

/// An integer argument.
pub fn int<T: IntArg>(obj: &Bound<'_, PyAny>) -> PyResult<T> {
    int_named(obj, "{arg}")
}

/// An optional integer argument (`None` stays `None`).
pub fn opt_int<T: IntArg>(obj: &Bound<'_, PyAny>) -> PyResult<Option<T>> {
    if obj.is_none() {
        Ok(None)
    } else {
        int(obj).map(Some)
    }
}

/// Float types an argument may be converted to.
pub trait FloatArg: Sized + Copy {
    fn from_f64(x: f64) -> Option<Self>;
}

impl FloatArg for f64 {
    fn from_f64(x: f64) -> Option<Self> {
        Some(x)
    }
}

impl FloatArg for f32 {
    fn from_f64(x: f64) -> Option<Self> {
        // A finite double that overflows f32 is out of range, not infinity.
        let y = x as f32;
        (y.is_finite() || !x.is_finite()).then_some(y)
    }
}

fn float_named<T: FloatArg>(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<T> {
    if is_bool(obj) || obj.is_instance_of::<PyString>() {
        return Err(wrong_type(format!(
            "{what}: expected a number, got {} ({})",
            type_name(obj),
            short_repr(obj)
        )));
    }
    let x = match obj.extract::<f64>() {
        Ok(x) => x,
        Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => {
            return Err(invalid(format!(
                "{what}: {} is too large for a float",
                short_repr(obj)
            )));
        }
        Err(_) => {
            return Err(wrong_type(format!(
                "{what}: expected a number, got {} ({})",
                type_name(obj),
                short_repr(obj)
            )));
        }
    };
    if x.is_nan() {
        return Err(invalid(format!("{what}: must be a number, got nan")));
    }
    T::from_f64(x).ok_or_else(|| invalid(format!("{what}: {x} is out of range")))
}

/// A float argument (never NaN; ranges are the kernels' to check).
pub fn float<T: FloatArg>(obj: &Bound<'_, PyAny>) -> PyResult<T> {
    float_named(obj, "{arg}")
}

/// An optional float argument.
pub fn opt_float<T: FloatArg>(obj: &Bound<'_, PyAny>) -> PyResult<Option<T>> {
    if obj.is_none() {
        Ok(None)
    } else {
        float(obj).map(Some)
    }
}

fn items<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Vec<Bound<'py, PyAny>>> {
    if obj.is_instance_of::<PyString>() || obj.is_none() || is_bool(obj) {
        return Err(wrong_type(format!(
            "{{arg}}: expected a sequence of numbers, got {}",
            type_name(obj)
        )));
    }
    if let Ok(arr) = obj.cast::<PyUntypedArray>()
        && numpy::PyUntypedArrayMethods::ndim(arr) != 1
    {
        return Err(invalid(format!(
            "{{arg}}: expected a 1-D sequence, got a {}-D array",
            numpy::PyUntypedArrayMethods::ndim(arr)
        )));
    }
    let iter = obj.try_iter().map_err(|_| {
        wrong_type(format!(
            "{{arg}}: expected a sequence of numbers, got {}",
            type_name(obj)
        ))
    })?;
    iter.collect()
}

/// A list of integers (a list, tuple, 1-D array or other iterable; not a string).
pub fn ints<T: IntArg>(obj: &Bound<'_, PyAny>) -> PyResult<Vec<T>> {
    if let Ok(a) = obj.cast::<PyArray1<u64>>() {
        // Sample keys arrive as uint64 arrays, one per batch: read them at once.
        let ro = a.readonly();
        let mut out = Vec::with_capacity(ro.as_array().len());
        for (i, &x) in ro.as_array().iter().enumerate() {
            out.push(T::try_from(i128::from(x)).map_err(|_| {
                invalid(format!(
                    "{{arg}}[{i}]: must be an integer in [{}, {}], got {x}",
                    T::MIN,
                    T::MAX
                ))
            })?);
        }
        return Ok(out);
    }
    items(obj)?
        .iter()
        .enumerate()
        .map(|(i, x)| int_at(x, i))
        .collect()
}

/// Item `i` of a list of integers: the common case without building its name; anything else
/// goes through [`int_named`], which names `{arg}[i]` in the error.
fn int_at<T: IntArg>(x: &Bound<'_, PyAny>, i: usize) -> PyResult<T> {
    if !is_bool(x)
        && let Ok(v) = x.extract::<i128>()
        && let Ok(v) = T::try_from(v)
    {
        return Ok(v);
    }
    int_named(x, &format!("{{arg}}[{i}]"))
}

/// An optional list of integers.
pub fn opt_ints<T: IntArg>(obj: &Bound<'_, PyAny>) -> PyResult<Option<Vec<T>>> {
    if obj.is_none() {
        Ok(None)
    } else {
        ints(obj).map(Some)
    }
}

/// A list of floats (never NaN).
pub fn floats<T: FloatArg>(obj: &Bound<'_, PyAny>) -> PyResult<Vec<T>> {
    items(obj)?
        .iter()
        .enumerate()
        .map(|(i, x)| float_named(x, &format!("{{arg}}[{i}]")))
        .collect()
}

/// An optional list of floats.
pub fn opt_floats<T: FloatArg>(obj: &Bound<'_, PyAny>) -> PyResult<Option<Vec<T>>> {
    if obj.is_none() {
        Ok(None)
    } else {
        floats(obj).map(Some)
    }
}
