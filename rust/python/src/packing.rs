//! `pack`: sequence packing (plan + rows) as one call.

use lmobjectives_core::CoreError;
use lmobjectives_core::batch::{OutId, Ragged, TokenId};
use lmobjectives_core::packing::{PackPlan, Strategy, pack as pack_rows, pack_column, plan};
use numpy::{Element, IntoPyArray};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert::{OutDtype, id_rows, mask_rows, to_numpy2, word_id_rows};
use crate::errors::{detached, to_py};
use crate::with_rows;

/// Cuts rows longer than `max_length` (`overflow="truncate"`: keep the start; `"split"`:
/// consecutive pieces) into a new flat buffer; `None` when nothing needs cutting.
fn cut<T: TokenId>(
    rows: &Ragged<'_, T>,
    max_length: usize,
    split: bool,
) -> Option<(Vec<i64>, Vec<usize>, Vec<usize>)> {
    if (0..rows.rows()).all(|r| rows.row_len(r) <= max_length) {
        return None;
    }
    let mut values = Vec::with_capacity(rows.values.len());
    let mut offsets = vec![0];
    let mut source = Vec::new(); // example each piece comes from
    for r in 0..rows.rows() {
        let row = rows.row(r);
        let pieces: Vec<&[T]> = if split {
            row.chunks(max_length).collect()
        } else {
            vec![&row[..row.len().min(max_length)]]
        };
        for piece in pieces {
            values.extend(piece.iter().map(|x| x.to_i64()));
            offsets.push(values.len());
            source.push(r);
        }
    }
    Some((values, offsets, source))
}

/// A flat column: values and CSR offsets.
type Column = (Vec<i64>, Vec<usize>);

/// An optional aligned column to pack: name, data, padding value.
type NamedColumn<'a> = (&'a str, Option<Column>, i64);

struct Options<'a> {
    max_length: Option<usize>,
    flat: bool,
    strategy: Strategy,
    overflow: &'a str,
    pad_token_id: i64,
    causal_labels: bool,
    multiple: usize,
    num_threads: usize,
}

/// Packs `rows`, plus aligned optional columns, into a dict of arrays.
fn run<'py, T: TokenId, O: OutId + Element>(
    py: Python<'py>,
    rows: &Ragged<'_, T>,
    columns: &[NamedColumn<'_>],
    o: &Options<'_>,
) -> PyResult<Bound<'py, PyDict>> {
    if rows.rows() == 0 {
        return Err(to_py(CoreError::invalid("examples", "the batch is empty")));
    }
    if let Some(r) = (0..rows.rows()).find(|&r| rows.row_len(r) == 0) {
        return Err(to_py(CoreError::invalid(
            "examples",
            format!("row {r} is empty (zero-length examples cannot be packed)"),
        )));
    }
    let cap = o.max_length;
    let cut_rows = match (cap, o.overflow) {
        (Some(m), "truncate") => cut(rows, m, false),
        (Some(m), "split") => cut(rows, m, true),
        (_, "error" | "truncate" | "split") => None,
        (_, other) => {
            return Err(to_py(CoreError::invalid(
                "overflow",
                format!("must be 'error', 'truncate' or 'split', got {other:?}"),
            )));
        }
    };
    // Rows after cutting (a copy only when something was cut).
    let cut_ragged = cut_rows
        .as_ref()
        .map(|(v, off, _)| Ragged::new("examples", v.as_slice(), off.as_slice()))
        .transpose()
        .map_err(to_py)?;
    let source: Option<&[usize]> = cut_rows.as_ref().map(|(_, _, s)| s.as_slice());
    let n = cut_ragged.as_ref().map_or(rows.rows(), |r| r.rows());
    let lengths: Vec<usize> = match &cut_ragged {
        Some(c) => (0..n).map(|r| c.row_len(r)).collect(),
        None => (0..n).map(|r| rows.row_len(r)).collect(),
    };
    let total: usize = lengths.iter().sum();
    let (the_plan, width) = if o.flat {
        if let Some(m) = cap
            && total > m
            && o.overflow == "error"
        {
            return Err(to_py(CoreError::invalid(
                "max_length",
                format!("the batch has {total} tokens, more than max_length={m}"),
            )));
        }
        (
            PackPlan::single_row(n),
            total.div_ceil(o.multiple) * o.multiple,
        )
    } else {
        let Some(m) = cap else {
            return Err(to_py(CoreError::invalid(
                "max_length",
                "packing into rows needs max_length",
            )));
        };
        let p = plan(&lengths, m, o.strategy).map_err(to_py)?;
        (p, m.div_ceil(o.multiple) * o.multiple)
    };
    let packed = detached(py, || match &cut_ragged {
        Some(c) => pack_rows::<i64, O>(
            c,
            &the_plan,
            width,
            o.pad_token_id,
            o.causal_labels,
            o.num_threads,
        ),
        None => pack_rows::<T, O>(
            rows,
            &the_plan,
            width,
            o.pad_token_id,
            o.causal_labels,
            o.num_threads,
        ),
    })?;
    let (r, w) = (packed.rows, packed.width);
    let out = PyDict::new(py);
    out.set_item("input_ids", to_numpy2(py, r, w, packed.input_ids)?)?;
    out.set_item(
        "attention_mask",
        to_numpy2(py, r, w, packed.attention_mask)?,
    )?;
    out.set_item("position_ids", to_numpy2(py, r, w, packed.position_ids)?)?;
    out.set_item("sequence_ids", to_numpy2(py, r, w, packed.sequence_ids)?)?;
    if o.causal_labels {
        out.set_item("labels", to_numpy2(py, r, w, packed.labels)?)?;
    }
    out.set_item("boundaries", to_numpy2(py, r, w, packed.boundaries)?)?;
    out.set_item("cu_seqlens", packed.cu_seqlens.into_pyarray(py))?;
    out.set_item("max_seqlen", packed.max_seqlen)?;
    out.set_item("num_tokens", total)?;
    out.set_item("num_sequences", n)?;
    for (name, column, pad) in columns {
        let Some((values, offsets)) = column else {
            continue;
        };
        let col = Ragged::new(name, values.as_slice(), offsets.as_slice()).map_err(to_py)?;
        rows.check_aligned(name, &col).map_err(to_py)?;
        // Cut the column like the rows, then pack it with the same plan.
        let recut = source.map(|src| {
            let m = cap.unwrap_or(usize::MAX);
            let mut v = Vec::new();
            let mut off = vec![0];
            let mut last = usize::MAX;
            let mut pos = 0;
            for &s in src {
                if s != last {
                    pos = 0;
                    last = s;
                }
                let row = col.row(s);
                let take = (row.len() - pos).min(m);
                v.extend_from_slice(&row[pos..pos + take]);
                pos += take;
                off.push(v.len());
            }
            (v, off)
        });
        let packed_col: Vec<O> = match &recut {
            Some((v, off)) => {
                let c = Ragged::new(name, v.as_slice(), off.as_slice()).map_err(to_py)?;
                pack_column(&c, &the_plan, width, *pad).map_err(to_py)?
            }
            None => pack_column(&col, &the_plan, width, *pad).map_err(to_py)?,
        };
        out.set_item(*name, to_numpy2(py, r, w, packed_col)?)?;
    }
    Ok(out)
}

/// Packs examples into rows (`layout="rows"`, first-fit-decreasing or greedy) or one
/// padding-free row (`layout="flat"`). Returns a dict: `input_ids`, `attention_mask`,
/// `position_ids`, `sequence_ids`, `boundaries`, optional causal `labels`, `cu_seqlens` (int32),
/// `max_seqlen`, `num_tokens`, `num_sequences`, and any aligned columns given, packed alike.
#[pyfunction]
#[pyo3(signature = (
    examples, *, max_length=None, layout="rows", strategy="ffd", overflow="error",
    pad_token_id=0, causal_labels=false, pad_to_multiple_of=1, special_tokens_mask=None,
    word_ids=None, token_type_ids=None, dtype="int64", num_threads=1, rows_name=None,
))]
#[allow(clippy::too_many_arguments)]
pub fn pack<'py>(
    py: Python<'py>,
    examples: &Bound<'py, PyAny>,
    max_length: Option<usize>,
    layout: &str,
    strategy: &str,
    overflow: &str,
    pad_token_id: i64,
    causal_labels: bool,
    pad_to_multiple_of: usize,
    special_tokens_mask: Option<&Bound<'py, PyAny>>,
    word_ids: Option<&Bound<'py, PyAny>>,
    token_type_ids: Option<&Bound<'py, PyAny>>,
    dtype: &str,
    num_threads: usize,
    rows_name: Option<&str>,
) -> PyResult<Bound<'py, PyDict>> {
    let dtype = OutDtype::parse(dtype)?;
    let flat = match layout {
        "rows" => false,
        "flat" => true,
        other => {
            return Err(to_py(CoreError::invalid(
                "layout",
                format!("must be 'rows' or 'flat', got {other:?}"),
            )));
        }
    };
    if pad_to_multiple_of == 0 {
        return Err(to_py(CoreError::invalid(
            "pad_to_multiple_of",
            "must be a positive integer",
        )));
    }
    if max_length == Some(0) {
        return Err(to_py(CoreError::invalid(
            "max_length",
            "must be a positive integer",
        )));
    }
    let options = Options {
        max_length,
        flat,
        strategy: Strategy::parse("strategy", strategy).map_err(to_py)?,
        overflow,
        pad_token_id,
        causal_labels,
        multiple: pad_to_multiple_of,
        num_threads,
    };
    let name = |key: &str| rows_name.map(|t| t.replace("{key}", key));
    let columns = [
        (
            "special_tokens_mask",
            special_tokens_mask
                .map(|s| {
                    mask_rows(
                        s,
                        "special_tokens_mask",
                        name("special_tokens_mask").as_deref(),
                    )
                })
                .transpose()?
                .map(|(v, o)| (v.into_iter().map(i64::from).collect(), o)),
            1,
        ),
        (
            "word_ids",
            word_ids
                .map(|w| word_id_rows(w, "word_ids", name("word_ids").as_deref()))
                .transpose()?,
            -1,
        ),
        (
            "token_type_ids",
            token_type_ids
                .map(|t| {
                    with_rows!(
                        id_rows(t, "token_type_ids", name("token_type_ids").as_deref())?,
                        "token_type_ids",
                        |r| Ok::<_, PyErr>((
                            r.values.iter().map(|x| x.to_i64()).collect::<Vec<i64>>(),
                            r.offsets.to_vec()
                        ))
                    )
                })
                .transpose()?,
            0,
        ),
    ];
    let rows = id_rows(examples, "input_ids", name("input_ids").as_deref())?;
    with_rows!(rows, "input_ids", |r| match dtype {
        OutDtype::I64 => run::<_, i64>(py, &r, &columns, &options),
        OutDtype::I32 => run::<_, i32>(py, &r, &columns, &options),
    })
}
