//! Hard-negative mining: exact top-k search, pair scores and negative selection.
//!
//! The search runs in chunks of tasks with the interpreter detached; between chunks it
//! re-attaches to check for signals (Ctrl-C raises `KeyboardInterrupt` within a chunk's time,
//! about a tenth of a second) and to report progress.

use lmobjectives_core::batch::Ragged;
use lmobjectives_core::mining::{
    Candidates, Embeddings, Isa, Ranks, Sampling, Search, SearchOptions, SelectInputs,
    SelectParams, Similarity, Values, pair_scores as core_pair_scores, select,
};
use numpy::ndarray::Array2;
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::to_py;

/// A 2-D embedding array read in place: float32, or float16 given as its uint16 bits.
enum Matrix<'py> {
    F32(PyReadonlyArray2<'py, f32>),
    F16(PyReadonlyArray2<'py, u16>),
}

impl<'py> Matrix<'py> {
    fn extract(obj: &Bound<'py, PyAny>, arg: &str, float16: bool) -> PyResult<Self> {
        let arr = obj
            .cast::<PyUntypedArray>()
            .map_err(|_| PyTypeError::new_err(format!("{arg}: expected a NumPy array")))?;
        if arr.ndim() != 2 {
            return Err(PyValueError::new_err(format!(
                "{arg}: expected a 2-D array (rows × dim), got {} dimensions",
                arr.ndim()
            )));
        }
        if !arr.is_c_contiguous() {
            return Err(PyValueError::new_err(format!(
                "{arg}: must be C-contiguous"
            )));
        }
        if float16 {
            if let Ok(a) = arr.cast::<PyArray2<u16>>() {
                return Ok(Matrix::F16(a.readonly()));
            }
        } else if let Ok(a) = arr.cast::<PyArray2<f32>>() {
            return Ok(Matrix::F32(a.readonly()));
        }
        Err(PyTypeError::new_err(format!(
            "{arg}: expected float32 (or float16) values, got {}",
            arr.dtype()
        )))
    }

    fn embeddings(&self, arg: &str) -> PyResult<Embeddings<'_>> {
        let (values, shape) = match self {
            Matrix::F32(a) => (Values::F32(slice(a, arg)?), a.shape()),
            Matrix::F16(a) => (Values::F16(slice(a, arg)?), a.shape()),
        };
        Embeddings::new(arg, values, shape[0], shape[1]).map_err(to_py)
    }
}

fn slice<'a, T: numpy::Element>(a: &'a PyReadonlyArray2<'_, T>, arg: &str) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{arg}: must be C-contiguous")))
}

fn slice1<'a, T: numpy::Element>(a: &'a PyReadonlyArray1<'_, T>, arg: &str) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{arg}: must be C-contiguous")))
}

fn csr_offsets(a: &PyReadonlyArray1<'_, i64>, arg: &str) -> PyResult<Vec<usize>> {
    slice1(a, arg)?
        .iter()
        .map(|&o| {
            usize::try_from(o)
                .map_err(|_| PyValueError::new_err(format!("{arg}: negative offset {o}")))
        })
        .collect()
}

/// Ids and scores, `rows × k` each.
type Ranked<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>);

/// Negative ids and scores (`rows × n`) and what each selection rule removed, by name.
type Selected<'py> = (
    Bound<'py, PyArray2<i64>>,
    Bound<'py, PyArray2<f32>>,
    Bound<'py, PyDict>,
);

fn to_numpy2<'py, T: numpy::Element>(
    py: Python<'py>,
    rows: usize,
    cols: usize,
    v: Vec<T>,
) -> PyResult<Bound<'py, PyArray2<T>>> {
    let arr = Array2::from_shape_vec((rows, cols), v)
        .map_err(|e| PyValueError::new_err(format!("internal shape error: {e}")))?;
    Ok(arr.into_pyarray(py))
}

/// Exact top-`k` search: `(ids int64 [Q, k], scores float32 [Q, k])`, each row by score
/// (descending) then id. `progress(done, total)` is called after every chunk of tasks.
#[pyfunction]
#[pyo3(signature = (
    queries, corpus, *, k, similarity="cosine", queries_float16=false, corpus_float16=false,
    num_threads=0, progress=None, isa=None, query_block=None, corpus_tile=None, span=None,
))]
#[allow(clippy::too_many_arguments)]
pub fn search_topk<'py>(
    py: Python<'py>,
    queries: &Bound<'py, PyAny>,
    corpus: &Bound<'py, PyAny>,
    k: usize,
    similarity: &str,
    queries_float16: bool,
    corpus_float16: bool,
    num_threads: usize,
    progress: Option<&Bound<'py, PyAny>>,
    isa: Option<&str>,
    query_block: Option<usize>,
    corpus_tile: Option<usize>,
    span: Option<usize>,
) -> PyResult<Ranked<'py>> {
    let similarity = Similarity::parse("similarity", similarity).map_err(to_py)?;
    let isa = isa
        .map(|s| Isa::parse("isa", s))
        .transpose()
        .map_err(to_py)?;
    let qm = Matrix::extract(queries, "queries", queries_float16)?;
    let cm = Matrix::extract(corpus, "corpus", corpus_float16)?;
    let q = qm.embeddings("queries")?;
    let c = cm.embeddings("corpus")?;
    let options = SearchOptions {
        isa,
        query_block,
        corpus_tile,
        span,
        ..SearchOptions::new(k, similarity)
    };
    let search = Search::new(q, c, &options, num_threads).map_err(to_py)?;
    let mut result = search.start();
    let (tasks, chunk) = (search.tasks(), search.chunk(num_threads));
    let mut done = 0;
    while done < tasks {
        let end = (done + chunk).min(tasks);
        py.detach(|| search.run(done..end, &mut result, num_threads))
            .map_err(to_py)?;
        done = end;
        py.check_signals()?;
        if let Some(p) = progress {
            p.call1((done, tasks))?;
        }
    }
    let rows = result.rows();
    Ok((
        to_numpy2(py, rows, k, result.ids)?,
        to_numpy2(py, rows, k, result.scores)?,
    ))
}

/// The score of each `(query, corpus row)` pair given as CSR (`values`, `offsets`), exactly
/// as `search_topk` computes it: float32 aligned with `values`.
#[pyfunction]
#[pyo3(signature = (
    queries, corpus, values, offsets, *, similarity="cosine", queries_float16=false,
    corpus_float16=false, num_threads=0, name="positives",
))]
#[allow(clippy::too_many_arguments)]
pub fn pair_scores<'py>(
    py: Python<'py>,
    queries: &Bound<'py, PyAny>,
    corpus: &Bound<'py, PyAny>,
    values: PyReadonlyArray1<'py, i64>,
    offsets: PyReadonlyArray1<'py, i64>,
    similarity: &str,
    queries_float16: bool,
    corpus_float16: bool,
    num_threads: usize,
    name: &str,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let similarity = Similarity::parse("similarity", similarity).map_err(to_py)?;
    let qm = Matrix::extract(queries, "queries", queries_float16)?;
    let cm = Matrix::extract(corpus, "corpus", corpus_float16)?;
    let q = qm.embeddings("queries")?;
    let c = cm.embeddings("corpus")?;
    let offs = csr_offsets(&offsets, name)?;
    let vals = slice1(&values, name)?;
    let pairs = Ragged::new(name, vals, &offs).map_err(to_py)?;
    let scores = py
        .detach(|| core_pair_scores(name, q, c, similarity, &pairs, num_threads))
        .map_err(to_py)?;
    Ok(scores.into_pyarray(py))
}

/// Chooses negatives from ranked candidates: `(ids int64 [Q, n], scores float32 [Q, n],
/// removed: dict)`.
#[pyfunction]
#[pyo3(signature = (
    candidate_ids, candidate_scores, *, corpus_rows, keys, num_negatives, range_min, range_max,
    positive_values=None, positive_offsets=None, positive_scores=None, self_ids=None,
    absolute_margin=None, relative_margin=None, max_score=None, min_score=None,
    sampling="top", ranks="filtered", include_positives=false, seed=0, num_threads=0,
))]
#[allow(clippy::too_many_arguments)]
pub fn select_negatives<'py>(
    py: Python<'py>,
    candidate_ids: PyReadonlyArray2<'py, i64>,
    candidate_scores: PyReadonlyArray2<'py, f32>,
    corpus_rows: usize,
    keys: PyReadonlyArray1<'py, u64>,
    num_negatives: usize,
    range_min: usize,
    range_max: usize,
    positive_values: Option<PyReadonlyArray1<'py, i64>>,
    positive_offsets: Option<PyReadonlyArray1<'py, i64>>,
    positive_scores: Option<PyReadonlyArray1<'py, f32>>,
    self_ids: Option<PyReadonlyArray1<'py, i64>>,
    absolute_margin: Option<f32>,
    relative_margin: Option<f32>,
    max_score: Option<f32>,
    min_score: Option<f32>,
    sampling: &str,
    ranks: &str,
    include_positives: bool,
    seed: u64,
    num_threads: usize,
) -> PyResult<Selected<'py>> {
    let sampling = match sampling {
        "top" => Sampling::Top,
        "random" => Sampling::Random,
        other => {
            return Err(PyValueError::new_err(format!(
                "sampling: must be 'top' or 'random', got {other:?}"
            )));
        }
    };
    let ranks = match ranks {
        "filtered" => Ranks::Filtered,
        "raw" => Ranks::Raw,
        other => {
            return Err(PyValueError::new_err(format!(
                "ranks: must be 'filtered' or 'raw', got {other:?}"
            )));
        }
    };
    let params = SelectParams {
        num_negatives,
        range_min,
        range_max,
        absolute_margin,
        relative_margin,
        max_score,
        min_score,
        sampling,
        ranks,
        include_positives,
        seed,
    };
    if candidate_ids.shape() != candidate_scores.shape() {
        return Err(PyValueError::new_err(format!(
            "candidates: ids {:?} and scores {:?} differ in shape",
            candidate_ids.shape(),
            candidate_scores.shape()
        )));
    }
    let depth = candidate_ids.shape()[1];
    let ids = candidate_ids
        .as_slice()
        .map_err(|_| PyValueError::new_err("candidate_ids: must be C-contiguous"))?;
    let scores = candidate_scores
        .as_slice()
        .map_err(|_| PyValueError::new_err("candidate_scores: must be C-contiguous"))?;
    let keys_s = slice1(&keys, "keys")?;
    let offs = positive_offsets
        .as_ref()
        .map(|o| csr_offsets(o, "positives"))
        .transpose()?;
    let vals = positive_values
        .as_ref()
        .map(|v| slice1(v, "positives"))
        .transpose()?;
    let positives = match (vals, &offs) {
        (Some(v), Some(o)) => Some(Ragged::new("positives", v, o).map_err(to_py)?),
        (None, None) => None,
        _ => {
            return Err(PyValueError::new_err(
                "positives: give both positive_values and positive_offsets",
            ));
        }
    };
    let pos_scores = positive_scores
        .as_ref()
        .map(|s| slice1(s, "positive_scores"))
        .transpose()?
        .unwrap_or(&[]);
    let self_s = self_ids
        .as_ref()
        .map(|s| slice1(s, "self_ids"))
        .transpose()?;
    let inputs = SelectInputs {
        candidates: Candidates { ids, scores, depth },
        positives,
        positive_scores: pos_scores,
        self_ids: self_s,
        keys: keys_s,
        corpus_rows,
    };
    let sel = py
        .detach(|| select(&params, &inputs, num_threads))
        .map_err(to_py)?;
    let rows = keys_s.len();
    let removed = PyDict::new(py);
    let r = sel.removed;
    for (name, v) in [
        ("positives", r.positives),
        ("self", r.self_ids),
        ("absolute_margin", r.absolute_margin),
        ("relative_margin", r.relative_margin),
        ("max_score", r.max_score),
        ("min_score", r.min_score),
    ] {
        removed.set_item(name, v)?;
    }
    Ok((
        to_numpy2(py, rows, num_negatives, sel.ids)?,
        to_numpy2(py, rows, num_negatives, sel.scores)?,
        removed,
    ))
}

/// The instruction sets this CPU runs the search kernels with, fastest first.
#[pyfunction]
pub fn mining_isas() -> Vec<&'static str> {
    Isa::available().iter().map(|i| i.name()).collect()
}
