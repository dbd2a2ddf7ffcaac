//! Generic padding of aligned per-token rows (token_type_ids and friends).

use lmobjectives_core::batch::{Dtype, pad as pad_rows};
use pyo3::prelude::*;

use crate::convert::{id_rows, pad_spec, pooled2};
use crate::errors::{detached, to_py};
use crate::with_rows;

/// Pads rows of integers into a `rows × width` array (moved out of Rust, no copy).
#[pyfunction]
#[pyo3(signature = (
    rows, *, pad_value=0, max_length=None, truncation=false, pad_to_max_length=false,
    pad_to_multiple_of=1, padding_side="right", dtype="int64", name="rows", rows_name=None,
))]
#[allow(clippy::too_many_arguments)]
pub fn pad<'py>(
    py: Python<'py>,
    rows: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = crate::args::int)] pad_value: i64,
    #[pyo3(from_py_with = crate::args::opt_int)] max_length: Option<usize>,
    truncation: bool,
    pad_to_max_length: bool,
    #[pyo3(from_py_with = crate::args::int)] pad_to_multiple_of: usize,
    padding_side: &str,
    dtype: &str,
    name: &str,
    rows_name: Option<&str>,
) -> PyResult<Bound<'py, PyAny>> {
    crate::errors::guarded(move || {
        let dtype = Dtype::parse("dtype", dtype).map_err(to_py)?;
        let spec = pad_spec(
            max_length,
            truncation,
            pad_to_max_length,
            pad_to_multiple_of,
            padding_side,
        )?;
        dtype.check_fits("pad_value", pad_value).map_err(to_py)?;
        let data = id_rows(rows, name, rows_name)?;
        with_rows!(data, name, |r| {
            let n = r.rows();
            match dtype {
                Dtype::I64 => {
                    let (w, buf) = detached(py, || pad_rows::<_, i64>(name, &r, &spec, pad_value))?;
                    Ok(pooled2(py, n, w, buf)?.into_any())
                }
                Dtype::I32 => {
                    let (w, buf) = detached(py, || pad_rows::<_, i32>(name, &r, &spec, pad_value))?;
                    Ok(pooled2(py, n, w, buf)?.into_any())
                }
            }
        })
    })
}
