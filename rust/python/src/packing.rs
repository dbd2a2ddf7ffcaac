//! `pack`: sequence packing (plan + rows) as one call.

use lmobjectives_core::batch::{Dtype, OutId, Ragged};
use lmobjectives_core::packing::{
    AlignedColumn, Layout, Overflow, PackOptions, PackedBatch, Strategy, pack_batch,
};
use numpy::{Element, IntoPyArray};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert::{id_rows, id_rows_i64, key_name, mask_rows, to_numpy2, word_id_rows};
use crate::errors::{detached, to_py};
use crate::with_rows;

/// An optional aligned column as gathered: name, int64 `(values, offsets)`, padding value.
type Column = (&'static str, (Vec<i64>, Vec<usize>), i64);

/// The aligned columns given, in the order the output lists them.
fn aligned_columns(
    special_tokens_mask: Option<&Bound<'_, PyAny>>,
    word_ids: Option<&Bound<'_, PyAny>>,
    token_type_ids: Option<&Bound<'_, PyAny>>,
    rows_name: Option<&str>,
) -> PyResult<Vec<Column>> {
    let mut columns = Vec::new();
    if let Some(s) = special_tokens_mask {
        let name = key_name(rows_name, "special_tokens_mask");
        let (v, o) = mask_rows(s, "special_tokens_mask", name.as_deref())?;
        columns.push((
            "special_tokens_mask",
            (v.into_iter().map(i64::from).collect(), o),
            1,
        ));
    }
    if let Some(w) = word_ids {
        let name = key_name(rows_name, "word_ids");
        columns.push((
            "word_ids",
            word_id_rows(w, "word_ids", name.as_deref())?,
            -1,
        ));
    }
    if let Some(t) = token_type_ids {
        let name = key_name(rows_name, "token_type_ids");
        columns.push((
            "token_type_ids",
            id_rows_i64(t, "token_type_ids", name.as_deref())?,
            0,
        ));
    }
    Ok(columns)
}

/// The gathered columns as the kernel reads them.
fn as_aligned(gathered: &[Column]) -> PyResult<Vec<AlignedColumn<'_>>> {
    gathered
        .iter()
        .map(|(name, (v, o), pad_value)| {
            let rows = Ragged::new(name, v, o).map_err(to_py)?;
            Ok(AlignedColumn {
                name,
                rows,
                pad_value: *pad_value,
            })
        })
        .collect()
}

/// Nothing the packed batch copies from the input may wrap or be negative: ids are in
/// `[0, vocab_size)` when a vocabulary is given, else non-negative, and every copied value
/// (ids, aligned columns, the padding id) fits the output dtype.
fn check_inputs<T: lmobjectives_core::batch::TokenId, O: OutId>(
    rows: &Ragged<'_, T>,
    columns: &[AlignedColumn<'_>],
    options: &PackOptions,
    vocab_size: Option<u64>,
) -> lmobjectives_core::Result<()> {
    use lmobjectives_core::batch::{check_fits, check_scalar_fits, check_values};
    match vocab_size {
        Some(v) => lmobjectives_core::ids::check_ids("input_ids", rows, v)?,
        None => check_values(
            "input_ids",
            rows,
            0,
            i64::MAX - 1,
            "token ids are non-negative",
        )?,
    }
    check_fits::<_, O>("input_ids", rows)?;
    check_scalar_fits::<O>("pad_token_id", options.pad_token_id)?;
    for c in columns {
        check_fits::<_, O>(c.name, &c.rows)?;
    }
    Ok(())
}

/// The packed batch as the dict `pack` returns.
fn to_dict<'py, O: OutId + Element>(
    py: Python<'py>,
    b: PackedBatch<O>,
    names: &[&str],
    causal_labels: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let p = b.packed;
    let (r, w) = (p.rows, p.width);
    let out = PyDict::new(py);
    out.set_item("input_ids", to_numpy2(py, r, w, p.input_ids)?)?;
    out.set_item("attention_mask", to_numpy2(py, r, w, p.attention_mask)?)?;
    out.set_item("position_ids", to_numpy2(py, r, w, p.position_ids)?)?;
    out.set_item("sequence_ids", to_numpy2(py, r, w, p.sequence_ids)?)?;
    if causal_labels {
        out.set_item("labels", to_numpy2(py, r, w, p.labels)?)?;
    }
    out.set_item("boundaries", to_numpy2(py, r, w, p.boundaries)?)?;
    out.set_item("cu_seqlens", p.cu_seqlens.into_pyarray(py))?;
    out.set_item("max_seqlen", p.max_seqlen)?;
    out.set_item("num_tokens", b.num_tokens)?;
    out.set_item("num_sequences", b.num_sequences)?;
    for (name, column) in names.iter().zip(b.columns) {
        out.set_item(*name, to_numpy2(py, r, w, column)?)?;
    }
    Ok(out)
}

/// Packs examples into rows (`layout="rows"`, first-fit-decreasing or greedy) or one
/// padding-free row (`layout="flat"`). Returns a dict: `input_ids`, `attention_mask`,
/// `position_ids` (from `position_offset` in each example), `sequence_ids`, `boundaries`,
/// optional causal `labels`, `cu_seqlens` (int32), `max_seqlen`, `num_tokens`,
/// `num_sequences`, and any aligned columns given, packed alike.
#[pyfunction]
#[pyo3(signature = (
    examples, *, max_length=None, layout="rows", strategy="ffd", overflow="error",
    pad_token_id=0, causal_labels=false, position_offset=0, pad_to_multiple_of=1,
    special_tokens_mask=None, word_ids=None, token_type_ids=None, dtype="int64", num_threads=1,
    rows_name=None, vocab_size=None,
))]
#[allow(clippy::too_many_arguments)]
pub fn pack<'py>(
    py: Python<'py>,
    examples: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = crate::args::opt_int)] max_length: Option<usize>,
    layout: &str,
    strategy: &str,
    overflow: &str,
    #[pyo3(from_py_with = crate::args::int)] pad_token_id: i64,
    causal_labels: bool,
    #[pyo3(from_py_with = crate::args::int)] position_offset: i64,
    #[pyo3(from_py_with = crate::args::int)] pad_to_multiple_of: usize,
    special_tokens_mask: Option<&Bound<'py, PyAny>>,
    word_ids: Option<&Bound<'py, PyAny>>,
    token_type_ids: Option<&Bound<'py, PyAny>>,
    dtype: &str,
    #[pyo3(from_py_with = crate::args::int)] num_threads: usize,
    rows_name: Option<&str>,
    #[pyo3(from_py_with = crate::args::opt_int)] vocab_size: Option<u64>,
) -> PyResult<Bound<'py, PyDict>> {
    crate::errors::guarded(move || {
        let dtype = Dtype::parse("dtype", dtype).map_err(to_py)?;
        let options = PackOptions {
            max_length,
            layout: Layout::parse("layout", layout).map_err(to_py)?,
            strategy: Strategy::parse("strategy", strategy).map_err(to_py)?,
            overflow: Overflow::parse("overflow", overflow).map_err(to_py)?,
            pad_token_id,
            causal_labels,
            position_offset,
            multiple_of: pad_to_multiple_of,
            threads: num_threads,
        };
        options.validate().map_err(to_py)?;
        let gathered = aligned_columns(special_tokens_mask, word_ids, token_type_ids, rows_name)?;
        let rows = id_rows(
            examples,
            "input_ids",
            key_name(rows_name, "input_ids").as_deref(),
        )?;
        let columns = as_aligned(&gathered)?;
        let names: Vec<&str> = gathered.iter().map(|c| c.0).collect();
        let labels = options.causal_labels;
        with_rows!(rows, "input_ids", |r| match dtype {
            Dtype::I64 => {
                let batch = detached(py, || {
                    check_inputs::<_, i64>(&r, &columns, &options, vocab_size)?;
                    pack_batch::<_, i64>(&r, &columns, &options)
                })?;
                to_dict(py, batch, &names, labels)
            }
            Dtype::I32 => {
                let batch = detached(py, || {
                    check_inputs::<_, i32>(&r, &columns, &options, vocab_size)?;
                    pack_batch::<_, i32>(&r, &columns, &options)
                })?;
                to_dict(py, batch, &names, labels)
            }
        })
    })
}
