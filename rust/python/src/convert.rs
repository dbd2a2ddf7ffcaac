//! Python → slices (read in place where possible) and Rust buffers → NumPy (moved, no copy).
//!
//! Everything here runs with the GIL held and before any kernel: inputs are extracted first,
//! then the kernel runs detached from the interpreter.

use lmobjectives_core::batch::{
    OutId, POOL_MIN_BYTES, PadSpec, Ragged, Side, TokenId, dense_offsets, offsets_from_i64,
};
use lmobjectives_core::rng::RowKeys;
use numpy::ndarray::{Array2, ArrayView2};
use numpy::{
    Element, IntoPyArray, PyArray1, PyArray2, PyArray3, PyArrayMethods, PyReadonlyArray1,
    PyReadonlyArray2, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::PyErr;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyFloat, PyList, PyTuple};

use crate::errors::{detached, to_py};
use lmobjectives_core::CoreError;

/// Token rows as the kernels see them: a dense 2-D array read in place, or rows gathered
/// from Python lists / 1-D arrays into one flat buffer.
pub enum IdRows<'py> {
    I64(PyReadonlyArray2<'py, i64>),
    I32(PyReadonlyArray2<'py, i32>),
    U32(PyReadonlyArray2<'py, u32>),
    U16(PyReadonlyArray2<'py, u16>),
    I16(PyReadonlyArray2<'py, i16>),
    U8(PyReadonlyArray2<'py, u8>),
    I8(PyReadonlyArray2<'py, i8>),
    U64(PyReadonlyArray2<'py, u64>),
    Flat {
        values: Vec<i64>,
        offsets: Vec<usize>,
    },
    /// Rows stored flat in an int64 array (`RaggedRows`, what our datasets return), read in
    /// place.
    FlatI64 {
        values: PyReadonlyArray1<'py, i64>,
        offsets: Vec<usize>,
    },
}

/// Runs `$body` with `$r` bound to a `Ragged<'_, T>` view of an [`IdRows`], for whatever `T`
/// the rows hold. `$offs` is a scratch binding for dense offsets.
#[macro_export]
macro_rules! with_rows {
    (@dense $a:ident, $arg:expr, |$r:ident| $body:expr) => {{
        let (values, offsets) = $crate::convert::dense_parts(&$a, $arg)?;
        let $r = Ragged::new($arg, values, &offsets).map_err($crate::errors::to_py)?;
        $body
    }};
    ($rows:expr, $arg:expr, |$r:ident| $body:expr) => {{
        use $crate::convert::IdRows;
        use lmobjectives_core::batch::Ragged;
        match $rows {
            IdRows::Flat { values, offsets } => {
                let $r = Ragged::new($arg, &values[..], &offsets[..]).map_err($crate::errors::to_py)?;
                $body
            }
            IdRows::FlatI64 { values, offsets } => {
                let values = values.as_slice().map_err(|_| {
                    pyo3::exceptions::PyValueError::new_err(format!("{}: values must be contiguous", $arg))
                })?;
                let $r = Ragged::new($arg, values, &offsets[..]).map_err($crate::errors::to_py)?;
                $body
            }
            IdRows::I64(a) => with_rows!(@dense a, $arg, |$r| $body),
            IdRows::I32(a) => with_rows!(@dense a, $arg, |$r| $body),
            IdRows::U32(a) => with_rows!(@dense a, $arg, |$r| $body),
            IdRows::U16(a) => with_rows!(@dense a, $arg, |$r| $body),
            IdRows::I16(a) => with_rows!(@dense a, $arg, |$r| $body),
            IdRows::U8(a) => with_rows!(@dense a, $arg, |$r| $body),
            IdRows::I8(a) => with_rows!(@dense a, $arg, |$r| $body),
            IdRows::U64(a) => with_rows!(@dense a, $arg, |$r| $body),
        }
    }};
}

/// The values (read in place, no copy) and CSR offsets of a C-contiguous 2-D array.
pub fn dense_parts<'a, T: Element>(
    a: &'a PyReadonlyArray2<'_, T>,
    arg: &str,
) -> PyResult<(&'a [T], Vec<usize>)> {
    let shape = a.shape();
    let (rows, cols) = (shape[0], shape[1]);
    let values = a
        .as_slice()
        .map_err(|_| PyValueError::new_err(format!("{arg}: a 2-D array must be C-contiguous")))?;
    Ok((values, dense_offsets(rows, cols)))
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

fn dtype_name(a: &Bound<'_, PyUntypedArray>) -> String {
    a.dtype().to_string()
}

macro_rules! try_dense {
    ($arr:expr, $($t:ty => $variant:ident),*) => {
        $(
            if let Ok(a) = $arr.cast::<PyArray2<$t>>() {
                return Ok(Some(IdRows::$variant(a.readonly())));
            }
        )*
    };
}

fn dense_ids<'py>(obj: &Bound<'py, PyAny>, arg: &str) -> PyResult<Option<IdRows<'py>>> {
    let Ok(arr) = obj.cast::<PyUntypedArray>() else {
        return Ok(None);
    };
    if arr.ndim() != 2 {
        return Err(PyValueError::new_err(format!(
            "{arg}: expected a 2-D array or a list of rows, got a {}-D array",
            arr.ndim()
        )));
    }
    if !arr.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "{arg}: a 2-D array must be C-contiguous (use numpy.ascontiguousarray)"
        )));
    }
    try_dense!(arr, i64 => I64, i32 => I32, u32 => U32, u16 => U16, i16 => I16, u8 => U8, i8 => I8, u64 => U64);
    Err(PyTypeError::new_err(format!(
        "{arg}: token ids must have an integer dtype, got {}",
        dtype_name(arr)
    )))
}

/// Extracts token-id rows: a 2-D integer array (read in place) or a sequence of rows, each a
/// list/tuple of ints or a 1-D integer array (gathered into one buffer).
///
/// `rows_name` names row `r` in error messages: a template where `{row}` is replaced by the
/// row index (e.g. `"examples[{row}]['input_ids']"`); default `"{arg}[{row}]"`.
pub fn id_rows<'py>(
    obj: &Bound<'py, PyAny>,
    arg: &str,
    rows_name: Option<&str>,
) -> PyResult<IdRows<'py>> {
    if let Some(d) = dense_ids(obj, arg)? {
        return Ok(d);
    }
    if let Some(rows) = ragged_i64(obj, arg)? {
        return Ok(rows);
    }
    if let Some((values, offsets)) = ragged_parts(obj, arg)? {
        return Ok(IdRows::Flat { values, offsets });
    }
    let (values, offsets) = flatten(obj, arg, rows_name, false, None, |v| v)?;
    Ok(IdRows::Flat { values, offsets })
}

/// Extracts a per-token 0/1 mask (attention or special-tokens mask), dense or ragged, as
/// flat bytes (non-zero → 1) plus offsets.
pub fn mask_rows(
    obj: &Bound<'_, PyAny>,
    arg: &str,
    rows_name: Option<&str>,
) -> PyResult<(Vec<u8>, Vec<usize>)> {
    if let Ok(arr) = obj.cast::<PyUntypedArray>() {
        if arr.ndim() != 2 {
            return Err(PyValueError::new_err(format!(
                "{arg}: expected a 2-D array or a list of rows, got a {}-D array",
                arr.ndim()
            )));
        }
        let (rows, cols) = (arr.shape()[0], arr.shape()[1]);
        let mut out = Vec::with_capacity(rows * cols);
        let mut push = |v: bool| out.push(u8::from(v));
        macro_rules! gather {
            ($($t:ty),*) => {
                $(
                    if let Ok(a) = arr.cast::<PyArray2<$t>>() {
                        let ro = a.readonly();
                        ro.as_array().iter().for_each(|&x| push(x != <$t>::default()));
                        return Ok((out, dense_offsets(rows, cols)));
                    }
                )*
            };
        }
        gather!(bool, i64, i32, u8, i8, u16, i16, u32, u64);
        return Err(PyTypeError::new_err(format!(
            "{arg}: a mask must have an integer or bool dtype, got {}",
            dtype_name(arr)
        )));
    }
    if let Some((values, offsets)) = ragged_parts(obj, arg)? {
        return Ok((
            values.into_iter().map(|v| u8::from(v != 0)).collect(),
            offsets,
        ));
    }
    flatten(obj, arg, rows_name, true, None, |v| u8::from(v != 0))
}

fn is_ragged_rows(obj: &Bound<'_, PyAny>) -> bool {
    obj.get_type()
        .name()
        .map(|n| n == "RaggedRows")
        .unwrap_or(false)
}

/// Rows stored flat (`RaggedRows`) in a contiguous int64 array: read in place (no copy);
/// `None` for other objects and value types.
fn ragged_i64<'py>(obj: &Bound<'py, PyAny>, arg: &str) -> PyResult<Option<IdRows<'py>>> {
    if !is_ragged_rows(obj) {
        return Ok(None);
    }
    let values = obj.getattr("values")?;
    let Ok(values) = values.cast::<PyArray1<i64>>() else {
        return Ok(None);
    };
    let values = values.readonly();
    if values.as_slice().is_err() {
        return Ok(None);
    }
    let offsets = obj.getattr("offsets")?;
    let offsets = offsets
        .cast::<PyArray1<i64>>()
        .map_err(|_| PyTypeError::new_err(format!("{arg}: offsets must be a 1-D int64 array")))?
        .readonly();
    let offsets = match offsets.as_slice() {
        Ok(o) => offsets_from_i64(arg, o),
        Err(_) => offsets_from_i64(arg, &offsets.as_array().to_vec()),
    }
    .map_err(to_py)?;
    Ok(Some(IdRows::FlatI64 { values, offsets }))
}

/// Rows stored flat (`lmobjectives._inputs.RaggedRows`: row `r` is
/// `values[offsets[r]:offsets[r + 1]]`), as `(values, offsets)`; `None` for other objects.
fn ragged_parts(obj: &Bound<'_, PyAny>, arg: &str) -> PyResult<Option<(Vec<i64>, Vec<usize>)>> {
    if obj
        .get_type()
        .name()
        .map(|n| n != "RaggedRows")
        .unwrap_or(true)
    {
        return Ok(None);
    }
    let values = obj.getattr("values")?;
    let offsets = obj.getattr("offsets")?;
    let offsets = offsets
        .cast::<PyArray1<i64>>()
        .map_err(|_| PyTypeError::new_err(format!("{arg}: offsets must be a 1-D int64 array")))?
        .readonly();
    let offsets = offsets_from_i64(arg, &offsets.as_array().to_vec()).map_err(to_py)?;
    let arr = values
        .cast::<PyUntypedArray>()
        .map_err(|_| PyTypeError::new_err(format!("{arg}: values must be a 1-D integer array")))?;
    macro_rules! gather {
        ($($t:ty),*) => {
            $(
                if let Ok(a) = arr.cast::<PyArray1<$t>>() {
                    let v: Vec<i64> = a.readonly().as_array().iter().map(|&x| i64::from(x)).collect();
                    Ragged::new(arg, &v, &offsets).map_err(to_py)?;
                    return Ok(Some((v, offsets)));
                }
            )*
        };
    }
    gather!(i64, i32, u32, u16, u8, i16, i8, bool);
    Err(PyTypeError::new_err(format!(
        "{arg}: values must be an integer array, got dtype {}",
        dtype_name(arr)
    )))
}

/// Extracts per-token word indices (a fast tokenizer's `word_ids()`), where `None` (a special
/// token) becomes `-1`; dense 2-D integer arrays are accepted too, and float arrays and
/// values, whose NaN is what `None` becomes in `datasets`' NumPy and torch formats (NaN
/// becomes `-1`; other values must be integral).
pub fn word_id_rows(
    obj: &Bound<'_, PyAny>,
    arg: &str,
    rows_name: Option<&str>,
) -> PyResult<(Vec<i64>, Vec<usize>)> {
    if let Ok(arr) = obj.cast::<PyUntypedArray>() {
        if arr.ndim() != 2 {
            return Err(PyValueError::new_err(format!(
                "{arg}: expected a 2-D array or a list of rows, got a {}-D array",
                arr.ndim()
            )));
        }
        let (rows, cols) = (arr.shape()[0], arr.shape()[1]);
        macro_rules! gather {
            ($($t:ty),*) => {
                $(
                    if let Ok(a) = arr.cast::<PyArray2<$t>>() {
                        let values = a.readonly().as_array().iter().map(|&x| i64::from(x)).collect();
                        return Ok((values, dense_offsets(rows, cols)));
                    }
                )*
            };
        }
        gather!(i64, i32, i16, i8, u32, u16, u8);
        macro_rules! gather_float {
            ($($t:ty),*) => {
                $(
                    if let Ok(a) = arr.cast::<PyArray2<$t>>() {
                        let ro = a.readonly();
                        let mut values = Vec::with_capacity(rows * cols);
                        for ((r, t), &x) in ro.as_array().indexed_iter() {
                            values.push(float_word_id(f64::from(x), -1, || {
                                format!("{}[{t}]", row_name(rows_name, arg, r))
                            })?);
                        }
                        return Ok((values, dense_offsets(rows, cols)));
                    }
                )*
            };
        }
        gather_float!(f64, f32);
        return Err(PyTypeError::new_err(format!(
            "{arg}: word ids must have an integer or float dtype, got {}",
            dtype_name(arr)
        )));
    }
    flatten(obj, arg, rows_name, false, Some(-1), |v| v)
}

fn row_name(template: Option<&str>, arg: &str, r: usize) -> String {
    RowName {
        template,
        arg,
        row: r,
    }
    .to_string()
}

/// The name of row `row` in error messages ([`row_name`]), written out only when an error
/// message needs it (a batch has many rows and, normally, no error).
struct RowName<'a> {
    template: Option<&'a str>,
    arg: &'a str,
    row: usize,
}

impl std::fmt::Display for RowName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (arg, r) = (self.arg, self.row);
        match self.template {
            Some(t) if t.contains("{row}") => f.write_str(&t.replace("{row}", &r.to_string())),
            Some(t) => write!(f, "{t}[{r}]"),
            None => write!(f, "{arg}[{r}]"),
        }
    }
}

/// Gathers a sequence of rows into `(values, offsets)`.
fn flatten<V>(
    obj: &Bound<'_, PyAny>,
    arg: &str,
    rows_name: Option<&str>,
    allow_bool: bool,
    none_as: Option<i64>,
    conv: impl Fn(i64) -> V,
) -> PyResult<(Vec<V>, Vec<usize>)> {
    let rows: Vec<Bound<'_, PyAny>> = if let Ok(l) = obj.cast::<PyList>() {
        l.iter().collect()
    } else if let Ok(t) = obj.cast::<PyTuple>() {
        t.iter().collect()
    } else {
        return Err(PyTypeError::new_err(format!(
            "{arg}: expected a 2-D integer array or a list of rows, got {}",
            type_name(obj)
        )));
    };
    flatten_rows(&rows, arg, rows_name, allow_bool, none_as, conv)
}

/// [`flatten`] over rows already taken out of their sequence.
pub fn flatten_rows<V>(
    rows: &[Bound<'_, PyAny>],
    arg: &str,
    rows_name: Option<&str>,
    allow_bool: bool,
    none_as: Option<i64>,
    conv: impl Fn(i64) -> V,
) -> PyResult<(Vec<V>, Vec<usize>)> {
    // One allocation: the rows' lengths are cheap to read (a failed `len` is left to the
    // row's own conversion, which names it).
    let total: usize = rows.iter().map(|r| r.len().unwrap_or(0)).sum();
    let mut values = Vec::with_capacity(total);
    let mut offsets = Vec::with_capacity(rows.len() + 1);
    offsets.push(0);
    for (r, row) in rows.iter().enumerate() {
        let name = RowName {
            template: rows_name,
            arg,
            row: r,
        };
        push_row(row, &name, allow_bool, none_as, &conv, &mut values)?;
        offsets.push(values.len());
    }
    Ok((values, offsets))
}

/// A batch's rows by column: `input_ids`, `attention_mask`, `special_tokens_mask` (`None`
/// where the examples lack the key).
pub type ExampleColumns<'py> = [Option<Vec<Bound<'py, PyAny>>>; 3];

/// The columns of a batch in the tokenizer's plain form — a list of exact dicts with the same
/// keys, `input_ids` and optionally `attention_mask` and `special_tokens_mask` (nothing
/// else), each an exact list — as one row list per key ([`ExampleColumns`]). `Ok(None)` for
/// anything else (another key, a missing key, another mapping or row type): the caller then
/// takes the general path, which accepts or names it. Reads each example once, with no
/// Python-level work per row.
pub fn example_columns<'py>(examples: &Bound<'py, PyAny>) -> PyResult<Option<ExampleColumns<'py>>> {
    use pyo3::types::{PyDict, PyDictMethods};
    let py = examples.py();
    let Ok(list) = examples.cast_exact::<PyList>() else {
        return Ok(None);
    };
    let keys = [
        pyo3::intern!(py, "input_ids"),
        pyo3::intern!(py, "attention_mask"),
        pyo3::intern!(py, "special_tokens_mask"),
    ];
    let Some(first) = list
        .iter()
        .next()
        .and_then(|f| f.cast_exact::<PyDict>().ok().cloned())
    else {
        return Ok(None);
    };
    let mut present = [false; 3];
    for (k, key) in keys.iter().enumerate() {
        present[k] = first.contains(key)?;
    }
    let count = present.iter().filter(|&&p| p).count();
    if !present[0] || first.len() != count {
        return Ok(None);
    }
    let mut cols: ExampleColumns<'py> =
        std::array::from_fn(|k| present[k].then(|| Vec::with_capacity(list.len())));
    for ex in list.iter() {
        let Ok(ex) = ex.cast_exact::<PyDict>() else {
            return Ok(None);
        };
        if ex.len() != count {
            return Ok(None);
        }
        for (col, key) in cols.iter_mut().zip(keys) {
            let Some(col) = col else { continue };
            match ex.get_item(key)? {
                Some(row) if row.is_exact_instance_of::<PyList>() => col.push(row),
                _ => return Ok(None),
            }
        }
    }
    Ok(Some(cols))
}

fn push_row<V>(
    row: &Bound<'_, PyAny>,
    arg: &dyn std::fmt::Display,
    allow_bool: bool,
    none_as: Option<i64>,
    conv: &impl Fn(i64) -> V,
    out: &mut Vec<V>,
) -> PyResult<()> {
    if let Ok(l) = row.cast::<PyList>() {
        out.reserve(l.len());
        if (allow_bool && small_bit_list(l, conv, out)) || exact_int_list(l, none_as, conv, out) {
            return Ok(());
        }
        return push_items(l.iter(), arg, none_as, conv, out);
    }
    if let Ok(tup) = row.cast::<PyTuple>() {
        out.reserve(tup.len());
        return push_items(tup.iter(), arg, none_as, conv, out);
    }
    if let Ok(arr) = row.cast::<PyUntypedArray>() {
        return push_array(arr, arg, allow_bool, none_as, conv, out);
    }
    Err(PyTypeError::new_err(format!(
        "{arg}: expected a list of ints or a 1-D integer array, got {}",
        type_name(row)
    )))
}

/// The general path over the items of a list or tuple row: each an `int` (or `None`, read as
/// `none_as` when given); errors name the item.
fn push_items<'py, V>(
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    arg: &dyn std::fmt::Display,
    none_as: Option<i64>,
    conv: &impl Fn(i64) -> V,
    out: &mut Vec<V>,
) -> PyResult<()> {
    for (t, item) in items.enumerate() {
        if let Some(v) = none_as
            && item.is_none()
        {
            out.push(conv(v));
            continue;
        }
        if let Some(v) = none_as
            && let Ok(f) = item.cast::<PyFloat>()
        {
            out.push(conv(float_word_id(f.value(), v, || format!("{arg}[{t}]"))?));
            continue;
        }
        let v = item.extract::<i64>().map_err(|_| {
            PyTypeError::new_err(format!(
                "{arg}[{t}]: expected an integer, got {} ({})",
                type_name(&item),
                item.repr().map(|r| r.to_string()).unwrap_or_default()
            ))
        })?;
        out.push(conv(v));
    }
    Ok(())
}

/// A float where an optional integer is expected (`none_as` given: word ids): NaN — how
/// `datasets`' NumPy and torch formats store `None` — becomes `none_as`; an integral value in
/// ±2⁵³ is that integer; anything else is a `TypeError` (as any other non-integer is)
/// naming `position()`.
fn float_word_id(x: f64, none_as: i64, position: impl Fn() -> String) -> PyResult<i64> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if x.is_nan() {
        return Ok(none_as);
    }
    if x.fract() != 0.0 || !(-EXACT..=EXACT).contains(&x) {
        return Err(PyTypeError::new_err(format!(
            "{}: expected an integer (or NaN for none), got {x}",
            position()
        )));
    }
    Ok(x as i64)
}

/// A row given as a 1-D NumPy array of integers (or bools, where allowed; or floats with NaN
/// for none, where `none_as` is given).
fn push_array<V>(
    arr: &Bound<'_, PyUntypedArray>,
    arg: &dyn std::fmt::Display,
    allow_bool: bool,
    none_as: Option<i64>,
    conv: &impl Fn(i64) -> V,
    out: &mut Vec<V>,
) -> PyResult<()> {
    if arr.ndim() != 1 {
        return Err(PyValueError::new_err(format!(
            "{arg}: expected a 1-D row, got a {}-D array",
            arr.ndim()
        )));
    }
    out.reserve(arr.len());
    // Contiguous arrays of types that always fit in i64: one tight loop over the slice
    // (no per-element range check), which the compiler can vectorise.
    macro_rules! gather_contiguous {
        ($($t:ty),*) => {
            $(
                if let Ok(a) = arr.cast::<PyArray1<$t>>() {
                    let ro = a.readonly();
                    if let Ok(slice) = ro.as_slice() {
                        out.extend(slice.iter().map(|&x| conv(i64::from(x))));
                        return Ok(());
                    }
                }
            )*
        };
    }
    gather_contiguous!(i64, i32, u32, u16, i16, u8, i8);
    macro_rules! gather {
        ($($t:ty),*) => {
            $(
                if let Ok(a) = arr.cast::<PyArray1<$t>>() {
                    let ro = a.readonly();
                    for &x in ro.as_array().iter() {
                        let v = i64::try_from(x).map_err(|_| PyValueError::new_err(format!(
                            "{arg}: value {x} does not fit in a 64-bit signed integer"
                        )))?;
                        out.push(conv(v));
                    }
                    return Ok(());
                }
            )*
        };
    }
    gather!(i64, i32, u32, u16, i16, u8, i8, u64);
    push_non_integer_array(arr, arg, allow_bool, none_as, conv, out)
}

/// [`push_array`] for the dtypes that are not integers: bools (where allowed), floats with
/// NaN for none (where `none_as` is given); an error for any other.
fn push_non_integer_array<V>(
    arr: &Bound<'_, PyUntypedArray>,
    arg: &dyn std::fmt::Display,
    allow_bool: bool,
    none_as: Option<i64>,
    conv: &impl Fn(i64) -> V,
    out: &mut Vec<V>,
) -> PyResult<()> {
    if allow_bool && let Ok(a) = arr.cast::<PyArray1<bool>>() {
        a.readonly()
            .as_array()
            .iter()
            .for_each(|&x| out.push(conv(i64::from(x))));
        return Ok(());
    }
    if let Some(none) = none_as
        && push_float_array(arr, arg, none, conv, out)?
    {
        return Ok(());
    }
    Err(PyTypeError::new_err(format!(
        "{arg}: expected an integer array, got dtype {}",
        dtype_name(arr)
    )))
}

/// A 1-D float array where optional integers are expected (word ids): NaN becomes `none_as`
/// ([`float_word_id`]). `Ok(false)` when the array is not of a float dtype.
fn push_float_array<V>(
    arr: &Bound<'_, PyUntypedArray>,
    arg: &dyn std::fmt::Display,
    none_as: i64,
    conv: &impl Fn(i64) -> V,
    out: &mut Vec<V>,
) -> PyResult<bool> {
    macro_rules! gather_float {
        ($($t:ty),*) => {
            $(
                if let Ok(a) = arr.cast::<PyArray1<$t>>() {
                    for (t, &x) in a.readonly().as_array().iter().enumerate() {
                        let v = float_word_id(f64::from(x), none_as, || format!("{arg}[{t}]"))?;
                        out.push(conv(v));
                    }
                    return Ok(true);
                }
            )*
        };
    }
    gather_float!(f64, f32);
    Ok(false)
}

/// Calls `f` on each item of `list` (a borrowed pointer from `PyList_GetItem`, the limited
/// API's one way in) until it returns `false`; returns whether it never did. `f` must not run
/// Python code.
#[allow(unsafe_code)]
#[inline(always)]
fn all_items(
    list: &Bound<'_, PyList>,
    mut f: impl FnMut(*mut pyo3::ffi::PyObject) -> bool,
) -> bool {
    let ptr = list.as_ptr();
    (0..list.len()).all(|i| {
        // SAFETY: the GIL is held (we have a `Bound`), `i < len(list)` and `f` runs no Python
        // code, so the list cannot change and the borrowed item stays alive.
        let item = unsafe { pyo3::ffi::PyList_GetItem(ptr, i as pyo3::ffi::Py_ssize_t) };
        if item.is_null() {
            let _ = PyErr::take(list.py());
            return false;
        }
        f(item)
    })
}

/// The fast path for the common row type, a list of exact Python `int`s: items are read as
/// borrowed pointers (no reference counting, no dynamic dispatch). Returns `false` — with
/// `out` unchanged — at the first item that is not an exact `int` or does not fit in `i64`;
/// the caller then takes the general path, which reports errors precisely.
#[allow(unsafe_code)]
fn exact_int_list<V>(
    list: &Bound<'_, PyList>,
    none_as: Option<i64>,
    conv: &impl Fn(i64) -> V,
    out: &mut Vec<V>,
) -> bool {
    let start = out.len();
    let none = list.py().None().as_ptr();
    let ok = all_items(list, |item| {
        if let Some(v) = none_as
            && item == none
        {
            out.push(conv(v));
            return true;
        }
        // SAFETY: `item` is a valid borrowed reference (the list holds it).
        if unsafe { pyo3::ffi::PyLong_CheckExact(item) } == 0 {
            return false;
        }
        let mut overflow: std::os::raw::c_int = 0;
        // SAFETY: `item` is an exact int; this call cannot fail or run Python code, it only
        // reports overflow through the flag.
        let v = unsafe { pyo3::ffi::PyLong_AsLongLongAndOverflow(item, &mut overflow) };
        if overflow != 0 {
            return false;
        }
        out.push(conv(v));
        true
    });
    if !ok {
        out.truncate(start);
    }
    ok
}

/// The fast path for 0/1 masks: CPython keeps one shared object for each small int, so a
/// mask list made of `0` and `1` is read by pointer comparison alone. Returns `false` — with
/// `out` unchanged — at the first item that is not one of those two objects.
fn small_bit_list<V>(list: &Bound<'_, PyList>, conv: &impl Fn(i64) -> V, out: &mut Vec<V>) -> bool {
    let py = list.py();
    let Ok(zero_obj) = 0i64.into_pyobject(py);
    let Ok(one_obj) = 1i64.into_pyobject(py);
    let (zero, one) = (zero_obj.as_ptr(), one_obj.as_ptr());
    let start = out.len();
    let ok = all_items(list, |item| {
        if item == zero {
            out.push(conv(0));
        } else if item == one {
            out.push(conv(1));
        } else {
            return false;
        }
        true
    });
    if !ok {
        out.truncate(start);
    }
    ok
}

/// Moves a `rows × width` row-major buffer into a NumPy array (no copy: the array's base is
/// the Rust allocation).
pub fn to_numpy2<O: Element>(
    py: Python<'_>,
    rows: usize,
    width: usize,
    buf: Vec<O>,
) -> PyResult<Bound<'_, PyArray2<O>>> {
    let arr = Array2::from_shape_vec((rows, width), buf)
        .map_err(|e| PyValueError::new_err(format!("internal shape error: {e}")))?;
    Ok(arr.into_pyarray(py))
}

/// The owner of a recycled output buffer (the `base` of the NumPy arrays made by
/// [`pooled2`]): when NumPy frees the array, the buffer goes back to its pool
/// (`lmobjectives_core::batch::BufferPool`) for the next batch instead of to the allocator.
#[pyclass(frozen, module = "lmobjectives._core")]
pub struct RecycledBuffer {
    buf: std::sync::Mutex<Recycled>,
}

enum Recycled {
    I64(Vec<i64>),
    I32(Vec<i32>),
}

impl Drop for RecycledBuffer {
    fn drop(&mut self) {
        let buf = self.buf.get_mut().unwrap_or_else(|e| e.into_inner());
        match std::mem::replace(buf, Recycled::I64(Vec::new())) {
            Recycled::I64(v) => i64::pool().give(v),
            Recycled::I32(v) => i32::pool().give(v),
        }
    }
}

/// An output type whose buffers are recycled.
pub trait Recyclable: OutId + Element {
    fn wrap(v: Vec<Self>) -> RecycledBuffer;
}

impl Recyclable for i64 {
    fn wrap(v: Vec<Self>) -> RecycledBuffer {
        RecycledBuffer {
            buf: std::sync::Mutex::new(Recycled::I64(v)),
        }
    }
}

impl Recyclable for i32 {
    fn wrap(v: Vec<Self>) -> RecycledBuffer {
        RecycledBuffer {
            buf: std::sync::Mutex::new(Recycled::I32(v)),
        }
    }
}

/// [`to_numpy2`] for a batch's outputs: the same array (no copy), but large buffers go back
/// to their pool when NumPy frees the array (see [`RecycledBuffer`]).
#[allow(unsafe_code)]
pub fn pooled2<O: Recyclable>(
    py: Python<'_>,
    rows: usize,
    width: usize,
    buf: Vec<O>,
) -> PyResult<Bound<'_, PyArray2<O>>> {
    if buf.len() != rows * width {
        return Err(PyValueError::new_err(format!(
            "internal shape error: {} values for {rows} × {width}",
            buf.len()
        )));
    }
    if buf.capacity() * std::mem::size_of::<O>() < POOL_MIN_BYTES {
        return to_numpy2(py, rows, width, buf);
    }
    let ptr = buf.as_ptr();
    // The Vec's heap memory does not move when the Vec moves into its owner.
    let owner = Bound::new(py, O::wrap(buf))?;
    // SAFETY: `ptr` points to `rows * width` initialised values owned by `owner`, which is
    // never mutated (frozen; its buffer is only taken back in `Drop`) and becomes the
    // array's base object, so the memory lives exactly as long as the array needs it.
    let view = unsafe { ArrayView2::from_shape_ptr((rows, width), ptr) };
    // SAFETY: as above: `owner` keeps the memory valid and unreallocated until it is dropped.
    Ok(unsafe { PyArray2::borrow_from_array(&view, owner.into_any()) })
}

/// [`pooled2`] for one row.
pub fn pooled1<O: Recyclable>(py: Python<'_>, buf: Vec<O>) -> PyResult<Bound<'_, PyArray1<O>>> {
    let n = buf.len();
    let arr = pooled2(py, 1, n, buf)?;
    arr.reshape([n])
}

/// The padding geometry from the keyword arguments every batch-making function takes.
pub fn pad_spec(
    max_length: Option<usize>,
    truncation: bool,
    pad_to_max_length: bool,
    pad_to_multiple_of: usize,
    padding_side: &str,
) -> PyResult<PadSpec> {
    Ok(PadSpec {
        max_length,
        truncation,
        pad_to_max_length,
        multiple_of: pad_to_multiple_of,
        side: Side::parse("padding_side", padding_side).map_err(to_py)?,
    })
}

/// The name of the rows of `key` in error messages: `rows_name` (a template such as
/// `"examples[{row}]['{key}']"`) with `{key}` filled in.
pub fn key_name(rows_name: Option<&str>, key: &str) -> Option<String> {
    rows_name.map(|t| t.replace("{key}", key))
}

/// Token rows converted to int64: `(values, offsets)`.
pub fn id_rows_i64(
    obj: &Bound<'_, PyAny>,
    arg: &str,
    rows_name: Option<&str>,
) -> PyResult<(Vec<i64>, Vec<usize>)> {
    with_rows!(id_rows(obj, arg, rows_name)?, arg, |r| Ok((
        r.values.iter().map(|x| x.to_i64()).collect(),
        r.offsets.to_vec()
    )))
}

/// A view of gathered `(values, offsets)` rows, when given.
pub fn ragged<'a, V>(
    arg: &str,
    rows: &'a Option<(Vec<V>, Vec<usize>)>,
) -> PyResult<Option<Ragged<'a, V>>> {
    rows.as_ref()
        .map(|(v, o)| Ragged::new(arg, v, o))
        .transpose()
        .map_err(to_py)
}

/// An attention mask that is 1 on every token of `rows` (rows of the same lengths) says
/// nothing a missing one does not: `None` then, so the kernel skips it (what a tokenizer's
/// unpadded `attention_mask` lists are). Any other mask is kept, and checked by the kernel.
pub fn unless_all_ones<'a, T>(
    mask: Option<Ragged<'a, u8>>,
    rows: &Ragged<'_, T>,
) -> Option<Ragged<'a, u8>> {
    // A fold without early exit vectorises (masks are mostly all ones).
    mask.filter(|m| {
        m.offsets != rows.offsets || m.values.iter().fold(0u8, |a, &v| a | (v ^ 1)) != 0
    })
}

/// Sample keys from a uint64 array (read at once) or any sequence of ints.
pub fn sample_keys(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Vec<u64>>> {
    obj.map(|s| match s.cast::<PyArray1<u64>>() {
        Ok(a) => Ok(a.readonly().as_array().to_vec()),
        Err(_) => s.extract::<Vec<u64>>(),
    })
    .transpose()
}

/// Row keys: the sample keys when given, else the batch index.
pub fn row_keys(sample_ids: &Option<Vec<u64>>, batch_index: u64) -> RowKeys<'_> {
    match sample_ids {
        Some(ids) => RowKeys::Samples(ids),
        None => RowKeys::Batch { index: batch_index },
    }
}

/// Calls `allocate((3, rows, width), dtype)` (e.g. a view of a shared-memory or pinned tensor),
/// checks that it returned a writeable, C-contiguous `O` array of that shape, and runs `fill`
/// on its three `rows × width` planes with the GIL released. Returns the array and what `fill`
/// returned.
pub fn fill_allocated<'py, O, R>(
    py: Python<'py>,
    allocate: &Bound<'py, PyAny>,
    (rows, width): (usize, usize),
    fill: impl Send + FnOnce([&mut [O]; 3]) -> Result<R, CoreError>,
) -> PyResult<(Bound<'py, PyArray3<O>>, R)>
where
    O: Element + Send,
    R: Send,
{
    let dtype = numpy::dtype::<O>(py);
    let obj = allocate.call1(((3usize, rows, width), dtype.str()?))?;
    let arr = obj.cast::<PyArray3<O>>().map_err(|_| {
        PyTypeError::new_err(format!(
            "allocate: must return a NumPy array of dtype {dtype}, got {}",
            type_name(&obj)
        ))
    })?;
    if arr.shape() != [3, rows, width] || !arr.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "allocate: must return a C-contiguous array of shape (3, {rows}, {width}), got {:?}",
            arr.shape()
        )));
    }
    let result = {
        let mut rw = arr
            .try_readwrite()
            .map_err(|e| PyValueError::new_err(format!("allocate: array not writeable: {e}")))?;
        let out = rw
            .as_slice_mut()
            .map_err(|e| PyValueError::new_err(format!("allocate: {e}")))?;
        let (ids, rest) = out.split_at_mut(rows * width);
        let (attention, labels) = rest.split_at_mut(rows * width);
        detached(py, || fill([ids, attention, labels]))?
    };
    Ok((arr.clone(), result))
}
