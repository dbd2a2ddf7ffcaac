//! Hard-negative mining: exact top-k search, pair scores and negative selection.
//!
//! The search runs in chunks of tasks with the interpreter detached; between chunks it
//! re-attaches to check for signals (Ctrl-C raises `KeyboardInterrupt` within a chunk's time,
//! about a tenth of a second) and to report progress.

use lmobjectives_core::batch::{Ragged, offsets_from_i64};
use lmobjectives_core::mining::{
    Candidates, Embeddings, Isa, Ranks, Sampling, Search, SearchOptions, SelectInputs,
    SelectParams, Selection, Similarity, Values, pair_scores as core_pair_scores, positives,
    select,
};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert::to_numpy2;
use crate::errors::{detached, to_py};

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

/// The number of rows of an embedding matrix.
fn qm_rows(m: &Matrix<'_>) -> usize {
    match m {
        Matrix::F32(a) => a.shape()[0],
        Matrix::F16(a) => a.shape()[0],
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

fn slice1_opt<'a, T: numpy::Element>(
    a: &'a Option<PyReadonlyArray1<'_, T>>,
    arg: &str,
) -> PyResult<Option<&'a [T]>> {
    a.as_ref().map(|a| slice1(a, arg)).transpose()
}

fn csr_offsets(a: &PyReadonlyArray1<'_, i64>, arg: &str) -> PyResult<Vec<usize>> {
    offsets_from_i64(arg, slice1(a, arg)?).map_err(to_py)
}

/// Ids and scores, `rows × k` each.
type Ranked<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>);

/// Negative ids and scores (`rows × n`) and what each selection rule removed, by name.
type Selected<'py> = (
    Bound<'py, PyArray2<i64>>,
    Bound<'py, PyArray2<f32>>,
    Bound<'py, PyDict>,
);

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
    #[pyo3(from_py_with = crate::args::int)] k: usize,
    similarity: &str,
    queries_float16: bool,
    corpus_float16: bool,
    #[pyo3(from_py_with = crate::args::int)] num_threads: usize,
    progress: Option<&Bound<'py, PyAny>>,
    isa: Option<&str>,
    #[pyo3(from_py_with = crate::args::opt_int)] query_block: Option<usize>,
    #[pyo3(from_py_with = crate::args::opt_int)] corpus_tile: Option<usize>,
    #[pyo3(from_py_with = crate::args::opt_int)] span: Option<usize>,
) -> PyResult<Ranked<'py>> {
    crate::errors::guarded(move || {
        let similarity = Similarity::parse("similarity", similarity).map_err(to_py)?;
        let isa = isa
            .map(|s| Isa::parse("isa", s))
            .transpose()
            .map_err(to_py)?;
        let qm = Matrix::extract(queries, "queries", queries_float16)?;
        let cm = Matrix::extract(corpus, "corpus", corpus_float16)?;
        let q = qm.embeddings("queries")?;
        let c = cm.embeddings("corpus")?;
        // Per-query heaps are sized by k even without queries: bound k itself too.
        lmobjectives_core::limits::length("k", k).map_err(to_py)?;
        lmobjectives_core::limits::elements("k", qm_rows(&qm), k).map_err(to_py)?;
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
            detached(py, || search.run(done..end, &mut result, num_threads))?;
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
    })
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
    #[pyo3(from_py_with = crate::args::int)] num_threads: usize,
    name: &str,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    crate::errors::guarded(move || {
        let similarity = Similarity::parse("similarity", similarity).map_err(to_py)?;
        let qm = Matrix::extract(queries, "queries", queries_float16)?;
        let cm = Matrix::extract(corpus, "corpus", corpus_float16)?;
        let q = qm.embeddings("queries")?;
        let c = cm.embeddings("corpus")?;
        let offs = csr_offsets(&offsets, name)?;
        let vals = slice1(&values, name)?;
        let pairs = Ragged::new(name, vals, &offs).map_err(to_py)?;
        let scores = detached(py, || {
            core_pair_scores(name, q, c, similarity, &pairs, num_threads)
        })?;
        Ok(scores.into_pyarray(py))
    })
}

/// Chooses negatives from ranked candidates: `(ids int64 [Q, n], scores float32 [Q, n],
/// removed: dict)`.
// long: one binding: its 22 arguments converted, then the kernel under the panic guard
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
    #[pyo3(from_py_with = crate::args::int)] corpus_rows: usize,
    keys: PyReadonlyArray1<'py, u64>,
    #[pyo3(from_py_with = crate::args::int)] num_negatives: usize,
    #[pyo3(from_py_with = crate::args::int)] range_min: usize,
    #[pyo3(from_py_with = crate::args::int)] range_max: usize,
    positive_values: Option<PyReadonlyArray1<'py, i64>>,
    positive_offsets: Option<PyReadonlyArray1<'py, i64>>,
    positive_scores: Option<PyReadonlyArray1<'py, f32>>,
    self_ids: Option<PyReadonlyArray1<'py, i64>>,
    #[pyo3(from_py_with = crate::args::opt_float)] absolute_margin: Option<f32>,
    #[pyo3(from_py_with = crate::args::opt_float)] relative_margin: Option<f32>,
    #[pyo3(from_py_with = crate::args::opt_float)] max_score: Option<f32>,
    #[pyo3(from_py_with = crate::args::opt_float)] min_score: Option<f32>,
    sampling: &str,
    ranks: &str,
    include_positives: bool,
    #[pyo3(from_py_with = crate::args::int)] seed: u64,
    #[pyo3(from_py_with = crate::args::int)] num_threads: usize,
) -> PyResult<Selected<'py>> {
    crate::errors::guarded(move || {
        let params = SelectParams {
            num_negatives,
            range_min,
            range_max,
            absolute_margin,
            relative_margin,
            max_score,
            min_score,
            sampling: Sampling::parse("sampling", sampling).map_err(to_py)?,
            ranks: Ranks::parse("ranks", ranks).map_err(to_py)?,
            include_positives,
            seed,
        };
        let (ids_shape, scores_shape) = (candidate_ids.shape(), candidate_scores.shape());
        let candidates = Candidates::new(
            slice(&candidate_ids, "candidate_ids")?,
            slice(&candidate_scores, "candidate_scores")?,
            [ids_shape[0], ids_shape[1]],
            [scores_shape[0], scores_shape[1]],
        )
        .map_err(to_py)?;
        let offs = positive_offsets
            .as_ref()
            .map(|o| csr_offsets(o, "positives"))
            .transpose()?;
        let vals = slice1_opt(&positive_values, "positives")?;
        let inputs = SelectInputs {
            candidates,
            positives: positives(vals, offs.as_deref()).map_err(to_py)?,
            positive_scores: slice1_opt(&positive_scores, "positive_scores")?.unwrap_or(&[]),
            self_ids: slice1_opt(&self_ids, "self_ids")?,
            keys: slice1(&keys, "keys")?,
            corpus_rows,
        };
        let sel = detached(py, || select(&params, &inputs, num_threads))?;
        selected(py, sel, inputs.keys.len())
    })
}

/// The selection as Python gets it: ids, scores and the removal counts by rule.
fn selected(py: Python<'_>, sel: Selection, rows: usize) -> PyResult<Selected<'_>> {
    let removed = PyDict::new(py);
    for (name, v) in sel.removed.by_rule() {
        removed.set_item(name, v)?;
    }
    let n = sel.num_negatives;
    Ok((
        to_numpy2(py, rows, n, sel.ids)?,
        to_numpy2(py, rows, n, sel.scores)?,
        removed,
    ))
}

/// The instruction sets this CPU runs the search kernels with, fastest first.
#[pyfunction]
pub fn mining_isas() -> PyResult<Vec<&'static str>> {
    crate::errors::guarded(move || Ok(Isa::available().iter().map(|i| i.name()).collect()))
}
