//! NSP/SOP instance index and materialisation.

use lmobjectives_core::batch::Dtype;
use lmobjectives_core::masking::PURPOSE;
use lmobjectives_core::pair_batch::{PairIndexRef, PairMlmJob};
use lmobjectives_core::pairs::{
    Corpus, PairIndex, PairParams, Task, build_index, materialize, shard_items,
};
use lmobjectives_core::recipes::Recipe;
use lmobjectives_core::rng::Streams;
use numpy::PyArray2;
use numpy::ndarray::Array2;
use numpy::{
    Element, IntoPyArray, PyArray1, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::convert::{Recyclable, fill_allocated, pad_spec, pooled1, pooled2};
use crate::errors::{detached, to_py};
use crate::masking::MlmMasker;

fn contiguous<'a, T: Element>(a: &'a PyReadonlyArray1<'_, T>, arg: &str) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{arg}: must be a contiguous 1-D array")))
}

/// Runs `$body` with `$ids` bound to the corpus ids as a slice of their own integer type.
macro_rules! with_ids {
    ($obj:expr, |$ids:ident| $body:expr) => {{
        let arr = $obj
            .cast::<PyUntypedArray>()
            .map_err(|_| PyTypeError::new_err("ids: expected a 1-D integer NumPy array"))?;
        if arr.ndim() != 1 {
            return Err(PyValueError::new_err("ids: expected a 1-D array"));
        }
        macro_rules! arm {
            ($t:ty) => {
                if let Ok(a) = arr.cast::<PyArray1<$t>>() {
                    let ro = a.readonly();
                    let $ids: &[$t] = contiguous(&ro, "ids")?;
                    return $body;
                }
            };
        }
        arm!(u16);
        arm!(u32);
        arm!(i32);
        arm!(i64);
        arm!(u8);
        Err(PyTypeError::new_err(format!(
            "ids: token ids must be an integer array, got dtype {}",
            arr.dtype()
        )))
    }};
}

fn index_to_py<'py>(py: Python<'py>, index: PairIndex) -> PyResult<Bound<'py, PyDict>> {
    let n = index.len();
    // (`into_flattened` reinterprets the buffer: no copy of the index.)
    let flat = |v: Vec<[u64; 2]>| v.into_flattened();
    let a = Array2::from_shape_vec((n, 2), flat(index.a))
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let b = Array2::from_shape_vec((n, 2), flat(index.b))
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let out = PyDict::new(py);
    out.set_item("a", a.into_pyarray(py))?;
    out.set_item("b", b.into_pyarray(py))?;
    out.set_item("label", index.label.into_pyarray(py))?;
    Ok(out)
}

/// Builds the NSP/SOP instances of one pass over a corpus: `{"a", "b"}` (uint64 `[n, 2]`
/// token ranges) and `"label"` (uint8), in shuffled order, with the rules of `recipe`. `ids`
/// may be the number of tokens instead of the array (the index reads only the offsets), as
/// for a sharded corpus whose ids are not one array.
#[pyfunction]
#[pyo3(signature = (
    ids, sentence_offsets, document_offsets, *, task="nsp", max_seq_length=128,
    short_seq_prob=0.1, random_next_prob=0.5, swap_prob=0.5, seed, epoch=0, num_threads=1,
    recipe="lmobjectives",
))]
#[allow(clippy::too_many_arguments)]
pub fn build_pair_index<'py>(
    py: Python<'py>,
    ids: &Bound<'py, PyAny>,
    sentence_offsets: PyReadonlyArray1<'py, i64>,
    document_offsets: PyReadonlyArray1<'py, i64>,
    task: &str,
    #[pyo3(from_py_with = crate::args::int)] max_seq_length: usize,
    #[pyo3(from_py_with = crate::args::float)] short_seq_prob: f64,
    #[pyo3(from_py_with = crate::args::float)] random_next_prob: f64,
    #[pyo3(from_py_with = crate::args::float)] swap_prob: f64,
    #[pyo3(from_py_with = crate::args::int)] seed: u64,
    #[pyo3(from_py_with = crate::args::int)] epoch: u64,
    #[pyo3(from_py_with = crate::args::int)] num_threads: usize,
    recipe: &str,
) -> PyResult<Bound<'py, PyDict>> {
    crate::errors::guarded(move || {
        let task = Task::parse("task", task).map_err(to_py)?;
        let rules = Recipe::parse("recipe", recipe)
            .and_then(|r| r.pairs(task))
            .map_err(to_py)?;
        let params = PairParams {
            task,
            max_seq_length,
            short_seq_prob,
            random_next_prob,
            swap_prob,
            rules,
        };
        let so = contiguous(&sentence_offsets, "sentence_offsets")?;
        let dof = contiguous(&document_offsets, "document_offsets")?;
        if let Ok(num_tokens) = ids.extract::<usize>() {
            let units = vec![(); num_tokens]; // (zero-sized: no memory)
            let corpus = Corpus::new(&units[..], so, dof).map_err(to_py)?;
            let index = detached(py, || {
                build_index(&corpus, &params, seed, epoch, num_threads)
            })?;
            return index_to_py(py, index);
        }
        with_ids!(ids, |slice| {
            let corpus = Corpus::new(slice, so, dof).map_err(to_py)?;
            let index = detached(py, || {
                build_index(&corpus, &params, seed, epoch, num_threads)
            })?;
            index_to_py(py, index)
        })
    })
}

fn ranges<'a>(a: &'a PyReadonlyArray2<'_, u64>, arg: &str) -> PyResult<&'a [[u64; 2]]> {
    if a.shape()[1] != 2 {
        return Err(PyValueError::new_err(format!(
            "{arg}: expected shape [n, 2]"
        )));
    }
    let flat = a
        .as_slice()
        .map_err(|_| PyValueError::new_err(format!("{arg}: must be C-contiguous")))?;
    let (pairs, rest) = flat.as_chunks::<2>();
    if !rest.is_empty() {
        return Err(PyValueError::new_err(format!(
            "{arg}: expected shape [n, 2]"
        )));
    }
    Ok(pairs)
}

/// `[CLS] A [SEP] B [SEP]` for items `indices` of the shard `rank`/`world` (item `i` is
/// instance `i * world + rank`; negative items count from the end): `(ids, token_type_ids,
/// offsets, labels, keys)`, the first three flat (CSR, int64), `keys` the global sample keys
/// `epoch << 40 | instance`, all moved out of Rust without a copy.
#[pyfunction]
#[pyo3(signature = (
    ids, a, b, label, indices, *, cls_token_id, sep_token_id, rank=0, world=1, epoch=0,
))]
#[allow(clippy::too_many_arguments)]
pub fn pair_rows<'py>(
    py: Python<'py>,
    ids: &Bound<'py, PyAny>,
    a: PyReadonlyArray2<'py, u64>,
    b: PyReadonlyArray2<'py, u64>,
    label: PyReadonlyArray1<'py, u8>,
    #[pyo3(from_py_with = crate::args::ints)] indices: Vec<i64>,
    #[pyo3(from_py_with = crate::args::int)] cls_token_id: i64,
    #[pyo3(from_py_with = crate::args::int)] sep_token_id: i64,
    #[pyo3(from_py_with = crate::args::int)] rank: u64,
    #[pyo3(from_py_with = crate::args::int)] world: u64,
    #[pyo3(from_py_with = crate::args::int)] epoch: u64,
) -> PyResult<Bound<'py, PyTuple>> {
    crate::errors::guarded(move || {
        let (ra, rb) = (ranges(&a, "a")?, ranges(&b, "b")?);
        let labels = contiguous(&label, "label")?;
        let (items, keys) =
            shard_items(labels.len() as u64, &indices, rank, world, epoch).map_err(to_py)?;
        with_ids!(ids, |slice| {
            let rows = detached(py, || {
                materialize(slice, (ra, rb, labels), &items, cls_token_id, sep_token_id)
            })?;
            let offsets: Vec<i64> = rows.offsets.iter().map(|&o| o as i64).collect();
            PyTuple::new(
                py,
                [
                    pooled1(py, rows.ids)?.into_any(),
                    pooled1(py, rows.token_type_ids)?.into_any(),
                    offsets.into_pyarray(py).into_any(),
                    rows.labels.into_pyarray(py).into_any(),
                    keys.into_pyarray(py).into_any(),
                ],
            )
        })
    })
}

/// Items `indices` of the shard `rank`/`world` of a pass of `total` instances (as
/// [`pair_rows`] reads them): `(items, keys)`, the instances and their global sample keys
/// `epoch << 40 | instance` (uint64).
#[pyfunction]
#[pyo3(signature = (total, indices, *, rank=0, world=1, epoch=0))]
pub fn pair_items<'py>(
    py: Python<'py>,
    #[pyo3(from_py_with = crate::args::int)] total: u64,
    #[pyo3(from_py_with = crate::args::ints)] indices: Vec<i64>,
    #[pyo3(from_py_with = crate::args::int)] rank: u64,
    #[pyo3(from_py_with = crate::args::int)] world: u64,
    #[pyo3(from_py_with = crate::args::int)] epoch: u64,
) -> PyResult<Bound<'py, PyTuple>> {
    crate::errors::guarded(move || {
        let (items, keys) = shard_items(total, &indices, rank, world, epoch).map_err(to_py)?;
        PyTuple::new(
            py,
            [
                items.into_pyarray(py).into_any(),
                keys.into_pyarray(py).into_any(),
            ],
        )
    })
}

/// Runs a validated pair job into Rust-owned buffers, or with `input_ids`, `attention_mask`
/// and `labels` in the `(3, rows, width)` array `allocate(shape, dtype)` returns.
fn run_pair_job<'py, T, O>(
    py: Python<'py>,
    job: &PairMlmJob<'_, T>,
    threads: usize,
    allocate: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyTuple>>
where
    T: lmobjectives_core::batch::TokenId,
    O: Recyclable,
{
    let (rows, width) = (job.rows(), job.width());
    let Some(allocate) = allocate else {
        let b = detached(py, || job.run::<O>(threads))?;
        return PyTuple::new(
            py,
            [
                pooled2(py, rows, width, b.input_ids)?.into_any(),
                pooled2(py, rows, width, b.attention_mask)?.into_any(),
                pooled2(py, rows, width, b.labels)?.into_any(),
                pooled2(py, rows, width, b.token_type_ids)?.into_any(),
                b.pair_labels.into_pyarray(py).into_any(),
            ],
        );
    };
    let (arr, (types, pair_labels)) = fill_allocated(py, allocate, (rows, width), |out| {
        job.run_into(threads, out)
    })?;
    let types: Bound<'py, PyArray2<O>> = pooled2(py, rows, width, types)?;
    PyTuple::new(
        py,
        [
            arr.get_item(0)?,
            arr.get_item(1)?,
            arr.get_item(2)?,
            types.into_any(),
            pair_labels.into_pyarray(py).into_any(),
        ],
    )
}

/// Instances `items` (with sample keys `keys`, from [`pair_items`]) as a masked, padded
/// BERT/ALBERT pretraining batch made in one pass: `(input_ids, attention_mask, labels,
/// token_type_ids, pair_labels)`, the same arrays as materialising the rows ([`pair_rows`]),
/// masking them with `masker` keyed by `keys` and padding the token types. Token masking only.
// long: one binding: its arguments converted, then the kernel under the panic guard
#[pyfunction]
#[pyo3(signature = (
    ids, a, b, label, items, keys, masker, *, cls_token_id, sep_token_id, seed, epoch=0,
    max_length=None, truncation=false, pad_to_max_length=false, pad_to_multiple_of=1,
    padding_side="right", dtype="int64", num_threads=1, allocate=None,
))]
#[allow(clippy::too_many_arguments)]
pub fn pair_mlm_batch<'py>(
    py: Python<'py>,
    ids: &Bound<'py, PyAny>,
    a: PyReadonlyArray2<'py, u64>,
    b: PyReadonlyArray2<'py, u64>,
    label: PyReadonlyArray1<'py, u8>,
    items: PyReadonlyArray1<'py, u64>,
    keys: PyReadonlyArray1<'py, u64>,
    masker: &Bound<'py, MlmMasker>,
    #[pyo3(from_py_with = crate::args::int)] cls_token_id: i64,
    #[pyo3(from_py_with = crate::args::int)] sep_token_id: i64,
    #[pyo3(from_py_with = crate::args::int)] seed: u64,
    #[pyo3(from_py_with = crate::args::int)] epoch: u64,
    #[pyo3(from_py_with = crate::args::opt_int)] max_length: Option<usize>,
    truncation: bool,
    pad_to_max_length: bool,
    #[pyo3(from_py_with = crate::args::int)] pad_to_multiple_of: usize,
    padding_side: &str,
    dtype: &str,
    #[pyo3(from_py_with = crate::args::int)] num_threads: usize,
    allocate: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyTuple>> {
    crate::errors::guarded(move || {
        let dtype = Dtype::parse("dtype", dtype).map_err(to_py)?;
        let pad = pad_spec(
            max_length,
            truncation,
            pad_to_max_length,
            pad_to_multiple_of,
            padding_side,
        )?;
        let index = PairIndexRef {
            a: ranges(&a, "a")?,
            b: ranges(&b, "b")?,
            label: contiguous(&label, "label")?,
        };
        let (items, keys) = (contiguous(&items, "items")?, contiguous(&keys, "keys")?);
        let cfg = masker.get().config();
        let streams = Streams::new(seed, epoch, PURPOSE);
        let ends = (cls_token_id, sep_token_id);
        with_ids!(ids, |slice| {
            let job = PairMlmJob::new(slice, index, items, ends, cfg, &pad, &streams, keys)
                .map_err(to_py)?;
            match dtype {
                Dtype::I64 => run_pair_job::<_, i64>(py, &job, num_threads, allocate),
                Dtype::I32 => run_pair_job::<_, i32>(py, &job, num_threads, allocate),
            }
        })
    })
}
