//! Token-level contrastive augmentations as a frozen, picklable Python object.

use lmobjectives_core::batch::Dtype;
use lmobjectives_core::contrastive::{
    AugmentParams, Augmenter as CoreAugmenter, duplicate_groups as core_duplicate_groups,
    view_purpose,
};
use lmobjectives_core::rng::Streams;
use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::convert::{id_rows, pad_spec, row_keys, to_numpy2};
use crate::errors::{detached, to_py};
use crate::with_rows;

/// Augmentation configuration (validated once) and the kernel that applies it to batches.
#[pyclass(frozen, module = "lmobjectives._core")]
pub struct TokenAugmenter {
    inner: CoreAugmenter,
    crop: f64,
    span_deletion: f64,
    token_deletion: f64,
    reorder: f64,
    substitution: f64,
    insertion: f64,
    unigram: Option<Vec<f64>>,
}

#[pymethods]
impl TokenAugmenter {
    #[new]
    #[pyo3(signature = (
        vocab_size, special_token_ids, crop=0.0, span_deletion=0.0, token_deletion=0.0,
        reorder=0.0, substitution=0.0, insertion=0.0, unigram=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        #[pyo3(from_py_with = crate::args::int)] vocab_size: i64,
        #[pyo3(from_py_with = crate::args::ints)] special_token_ids: Vec<i64>,
        #[pyo3(from_py_with = crate::args::float)] crop: f64,
        #[pyo3(from_py_with = crate::args::float)] span_deletion: f64,
        #[pyo3(from_py_with = crate::args::float)] token_deletion: f64,
        #[pyo3(from_py_with = crate::args::float)] reorder: f64,
        #[pyo3(from_py_with = crate::args::float)] substitution: f64,
        #[pyo3(from_py_with = crate::args::float)] insertion: f64,
        #[pyo3(from_py_with = crate::args::opt_floats)] unigram: Option<Vec<f64>>,
    ) -> PyResult<Self> {
        crate::errors::guarded(move || {
            let inner = CoreAugmenter::new(&AugmentParams {
                vocab_size,
                special_token_ids: &special_token_ids,
                crop,
                span_deletion,
                token_deletion,
                reorder,
                substitution,
                insertion,
                unigram: unigram.as_deref(),
            })
            .map_err(to_py)?;
            Ok(Self {
                inner,
                crop,
                span_deletion,
                token_deletion,
                reorder,
                substitution,
                insertion,
                unigram,
            })
        })
    }

    #[getter]
    fn vocab_size(&self) -> PyResult<i64> {
        crate::errors::guarded(move || Ok(self.inner.vocab_size()))
    }

    #[getter]
    fn special_token_ids(&self) -> PyResult<Vec<i64>> {
        crate::errors::guarded(move || Ok(self.inner.special_token_ids().to_vec()))
    }

    /// Augments and pads a batch: `(input_ids, attention_mask)`, `rows × width`, moved out of
    /// Rust buffers without a copy. `view` selects an independent stream per view.
    #[pyo3(signature = (
        input_ids, *, pad_token_id, seed, epoch=0, batch_index=0, sample_ids=None, view=0,
        max_length=None, truncation=false, pad_to_max_length=false, pad_to_multiple_of=1,
        padding_side="right", dtype="int64", num_threads=1, rows_name=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn augment<'py>(
        &self,
        py: Python<'py>,
        input_ids: &Bound<'py, PyAny>,
        #[pyo3(from_py_with = crate::args::int)] pad_token_id: i64,
        #[pyo3(from_py_with = crate::args::int)] seed: u64,
        #[pyo3(from_py_with = crate::args::int)] epoch: u64,
        #[pyo3(from_py_with = crate::args::int)] batch_index: u64,
        #[pyo3(from_py_with = crate::args::opt_ints)] sample_ids: Option<Vec<u64>>,
        #[pyo3(from_py_with = crate::args::int)] view: u64,
        #[pyo3(from_py_with = crate::args::opt_int)] max_length: Option<usize>,
        truncation: bool,
        pad_to_max_length: bool,
        #[pyo3(from_py_with = crate::args::int)] pad_to_multiple_of: usize,
        padding_side: &str,
        dtype: &str,
        #[pyo3(from_py_with = crate::args::int)] num_threads: usize,
        rows_name: Option<&str>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        crate::errors::guarded(move || {
            let dtype = Dtype::parse("dtype", dtype).map_err(to_py)?;
            let spec = pad_spec(
                max_length,
                truncation,
                pad_to_max_length,
                pad_to_multiple_of,
                padding_side,
            )?;
            let rows = id_rows(input_ids, "input_ids", rows_name)?;
            let keys = row_keys(&sample_ids, batch_index);
            let streams = Streams::new(seed, epoch, view_purpose(view));
            let aug = &self.inner;
            with_rows!(rows, "input_ids", |r| {
                let n = r.rows();
                macro_rules! run {
                    ($o:ty) => {{
                        let (w, ids, mask) = detached(py, || {
                            aug.batch::<_, $o>(
                                &r,
                                &streams,
                                &keys,
                                &spec,
                                pad_token_id,
                                num_threads,
                            )
                        })?;
                        PyTuple::new(py, [to_numpy2(py, n, w, ids)?, to_numpy2(py, n, w, mask)?])
                    }};
                }
                match dtype {
                    Dtype::I64 => run!(i64),
                    Dtype::I32 => run!(i32),
                }
            })
        })
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        crate::errors::guarded(move || {
            let py = slf.py();
            let s = slf.get();
            let args = (
                s.inner.vocab_size(),
                s.inner.special_token_ids().to_vec(),
                s.crop,
                s.span_deletion,
                s.token_deletion,
                s.reorder,
                s.substitution,
                s.insertion,
                s.unigram.clone(),
            );
            (slf.get_type(), args).into_pyobject(py)
        })
    }

    fn __repr__(&self) -> PyResult<String> {
        crate::errors::guarded(move || {
            Ok({
                format!(
                    "TokenAugmenter(vocab_size={}, special_token_ids={:?}, crop={}, span_deletion={}, \
             token_deletion={}, reorder={}, substitution={}, insertion={}, unigram={})",
                    self.inner.vocab_size(),
                    self.inner.special_token_ids(),
                    self.crop,
                    self.span_deletion,
                    self.token_deletion,
                    self.reorder,
                    self.substitution,
                    self.insertion,
                    if self.unigram.is_some() {
                        "[...]"
                    } else {
                        "None"
                    },
                )
            })
        })
    }
}

/// For each row, the index of the first row with exactly the same tokens (int64 `[rows]`).
#[pyfunction]
#[pyo3(signature = (input_ids, *, rows_name=None))]
pub fn duplicate_groups<'py>(
    py: Python<'py>,
    input_ids: &Bound<'py, PyAny>,
    rows_name: Option<&str>,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    crate::errors::guarded(move || {
        let rows = id_rows(input_ids, "input_ids", rows_name)?;
        with_rows!(rows, "input_ids", |r| {
            let groups = detached(py, || Ok(core_duplicate_groups(&r)))?;
            Ok(groups.into_pyarray(py))
        })
    })
}
