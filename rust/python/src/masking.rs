//! `MlmMasker`: the MLM masking kernel as a frozen, picklable Python object.

use lmobjectives_core::batch::Ragged;
use lmobjectives_core::masking::{
    Budget, MlmBatch, MlmConfig, MlmJob, MlmParams, PURPOSE, TokenMasks,
};
use lmobjectives_core::rng::{RowKeys, Streams};
use numpy::{PyArray2, PyArray3, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::convert::{OutDtype, id_rows, mask_rows, pad_spec, to_numpy2};
use crate::errors::to_py;
use crate::with_rows;

/// MLM masking configuration (validated once) and the kernel that applies it to batches.
#[pyclass(frozen, module = "lmobjectives._core")]
pub struct MlmMasker {
    cfg: MlmConfig,
    pad_token_id: i64,
    special_token_ids: Vec<i64>,
    mlm_probability: f64,
    mask_replace_prob: f64,
    random_replace_prob: f64,
    exact_budget: bool,
    max_predictions: Option<usize>,
}

type Arrays<'py, O> = (
    Bound<'py, PyArray2<O>>,
    Bound<'py, PyArray2<O>>,
    Bound<'py, PyArray2<O>>,
);

fn arrays<O: lmobjectives_core::batch::OutId + numpy::Element>(
    py: Python<'_>,
    b: MlmBatch<O>,
) -> PyResult<Arrays<'_, O>> {
    Ok((
        to_numpy2(py, b.rows, b.width, b.input_ids)?,
        to_numpy2(py, b.rows, b.width, b.attention_mask)?,
        to_numpy2(py, b.rows, b.width, b.labels)?,
    ))
}

/// Runs a validated job into Rust-owned buffers, or into the `(3, rows, width)` array that
/// `allocate(shape, dtype)` returns (e.g. a view of a shared-memory or pinned tensor).
fn run_job<'py, T, O>(
    py: Python<'py>,
    job: &MlmJob<'_, T>,
    threads: usize,
    allocate: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyTuple>>
where
    T: lmobjectives_core::batch::TokenId,
    O: lmobjectives_core::batch::OutId + numpy::Element,
{
    let Some(allocate) = allocate else {
        let b = py.detach(|| job.run::<O>(threads)).map_err(to_py)?;
        return arrays(py, b)?.into_pyobject(py);
    };
    let (rows, width) = (job.rows(), job.width());
    let dtype = numpy::dtype::<O>(py);
    let obj = allocate.call1(((3usize, rows, width), dtype.str()?))?;
    let arr = obj.cast::<PyArray3<O>>().map_err(|_| {
        PyTypeError::new_err(format!(
            "allocate: must return a NumPy array of dtype {dtype}, got {}",
            obj.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    if arr.shape() != [3, rows, width] || !arr.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "allocate: must return a C-contiguous array of shape (3, {rows}, {width}), got {:?}",
            arr.shape()
        )));
    }
    {
        let mut rw = arr
            .try_readwrite()
            .map_err(|e| PyValueError::new_err(format!("allocate: array not writeable: {e}")))?;
        let out = rw
            .as_slice_mut()
            .map_err(|e| PyValueError::new_err(format!("allocate: {e}")))?;
        let n = rows * width;
        let (ids, rest) = out.split_at_mut(n);
        let (attention, labels) = rest.split_at_mut(n);
        py.detach(|| job.run_into(threads, [ids, attention, labels]))
            .map_err(to_py)?;
    }
    PyTuple::new(py, [arr.get_item(0)?, arr.get_item(1)?, arr.get_item(2)?])
}

#[pymethods]
impl MlmMasker {
    #[new]
    #[pyo3(signature = (
        vocab_size, mask_token_id, pad_token_id, special_token_ids,
        mlm_probability=0.15, mask_replace_prob=0.8, random_replace_prob=0.1,
        exact_budget=false, max_predictions=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        vocab_size: i64,
        mask_token_id: i64,
        pad_token_id: i64,
        special_token_ids: Vec<i64>,
        mlm_probability: f64,
        mask_replace_prob: f64,
        random_replace_prob: f64,
        exact_budget: bool,
        max_predictions: Option<usize>,
    ) -> PyResult<Self> {
        if max_predictions.is_some() && !exact_budget {
            return Err(to_py(lmobjectives_core::CoreError::invalid(
                "max_predictions",
                "caps the exact budget; it needs exact_budget=True",
            )));
        }
        let budget = if exact_budget {
            Budget::Exact { max_predictions }
        } else {
            Budget::Bernoulli
        };
        let cfg = MlmConfig::new(&MlmParams {
            vocab_size,
            mask_token_id,
            pad_token_id,
            special_token_ids: &special_token_ids,
            mlm_probability,
            mask_replace_prob,
            random_replace_prob,
            budget,
        })
        .map_err(to_py)?;
        // Report the effective set: pad and mask are always special.
        let mut special_token_ids = special_token_ids;
        special_token_ids.extend([pad_token_id, mask_token_id]);
        special_token_ids.sort_unstable();
        special_token_ids.dedup();
        Ok(Self {
            cfg,
            pad_token_id,
            special_token_ids,
            mlm_probability,
            mask_replace_prob,
            random_replace_prob,
            exact_budget,
            max_predictions,
        })
    }

    #[getter]
    fn vocab_size(&self) -> i64 {
        i64::from(self.cfg.vocab_size())
    }

    #[getter]
    fn mask_token_id(&self) -> i64 {
        i64::from(self.cfg.mask_token_id())
    }

    #[getter]
    fn pad_token_id(&self) -> i64 {
        self.pad_token_id
    }

    #[getter]
    fn special_token_ids(&self) -> Vec<i64> {
        self.special_token_ids.clone()
    }

    #[getter]
    fn mlm_probability(&self) -> f64 {
        self.mlm_probability
    }

    #[getter]
    fn mask_replace_prob(&self) -> f64 {
        self.mask_replace_prob
    }

    #[getter]
    fn random_replace_prob(&self) -> f64 {
        self.random_replace_prob
    }

    #[getter]
    fn exact_budget(&self) -> bool {
        self.exact_budget
    }

    #[getter]
    fn max_predictions(&self) -> Option<usize> {
        self.max_predictions
    }

    /// Masks and pads a batch.
    ///
    /// Returns `(input_ids, attention_mask, labels)` as `rows × width` arrays moved out of Rust
    /// buffers without a copy. `input_ids` is a C-contiguous 2-D integer array (read in place)
    /// or a list of rows (lists of ints or 1-D integer arrays).
    #[pyo3(signature = (
        input_ids, *, attention_mask=None, special_tokens_mask=None,
        seed, epoch=0, batch_index=0, sample_ids=None,
        max_length=None, truncation=false, pad_to_max_length=false, pad_to_multiple_of=1,
        padding_side="right", dtype="int64", num_threads=1, rows_name=None, allocate=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn mask<'py>(
        &self,
        py: Python<'py>,
        input_ids: &Bound<'py, PyAny>,
        attention_mask: Option<&Bound<'py, PyAny>>,
        special_tokens_mask: Option<&Bound<'py, PyAny>>,
        seed: u64,
        epoch: u64,
        batch_index: u64,
        sample_ids: Option<Vec<u64>>,
        max_length: Option<usize>,
        truncation: bool,
        pad_to_max_length: bool,
        pad_to_multiple_of: usize,
        padding_side: &str,
        dtype: &str,
        num_threads: usize,
        rows_name: Option<&str>,
        allocate: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let dtype = OutDtype::parse(dtype)?;
        let pad = pad_spec(
            max_length,
            truncation,
            pad_to_max_length,
            pad_to_multiple_of,
            padding_side,
        )?;
        // `rows_name` is a template such as "examples[{row}]['{key}']" for error messages.
        let name = |key: &str| rows_name.map(|t| t.replace("{key}", key));
        let rows = id_rows(input_ids, "input_ids", name("input_ids").as_deref())?;
        let attn = attention_mask
            .map(|a| mask_rows(a, "attention_mask", name("attention_mask").as_deref()))
            .transpose()?;
        let spec = special_tokens_mask
            .map(|s| {
                mask_rows(
                    s,
                    "special_tokens_mask",
                    name("special_tokens_mask").as_deref(),
                )
            })
            .transpose()?;
        let masks = TokenMasks {
            attention_mask: attn
                .as_ref()
                .map(|(v, o)| Ragged::new("attention_mask", v, o))
                .transpose()
                .map_err(to_py)?,
            special_tokens_mask: spec
                .as_ref()
                .map(|(v, o)| Ragged::new("special_tokens_mask", v, o))
                .transpose()
                .map_err(to_py)?,
        };
        let keys = match &sample_ids {
            Some(ids) => RowKeys::Samples(ids),
            None => RowKeys::Batch { index: batch_index },
        };
        let streams = Streams::new(seed, epoch, PURPOSE);
        let cfg = &self.cfg;
        with_rows!(rows, "input_ids", |r| {
            let job = MlmJob::new(cfg, &r, &masks, &pad, &streams, &keys).map_err(to_py)?;
            match dtype {
                OutDtype::I64 => run_job::<_, i64>(py, &job, num_threads, allocate),
                OutDtype::I32 => run_job::<_, i32>(py, &job, num_threads, allocate),
            }
        })
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let s = slf.get();
        let args = (
            i64::from(s.cfg.vocab_size()),
            i64::from(s.cfg.mask_token_id()),
            s.pad_token_id,
            s.special_token_ids.clone(),
            s.mlm_probability,
            s.mask_replace_prob,
            s.random_replace_prob,
            s.exact_budget,
            s.max_predictions,
        );
        (slf.get_type(), args).into_pyobject(py)
    }

    fn __repr__(&self) -> String {
        format!(
            "MlmMasker(vocab_size={}, mask_token_id={}, pad_token_id={}, special_token_ids={:?}, \
             mlm_probability={}, mask_replace_prob={}, random_replace_prob={}, exact_budget={}, \
             max_predictions={:?})",
            self.cfg.vocab_size(),
            self.cfg.mask_token_id(),
            self.pad_token_id,
            self.special_token_ids,
            self.mlm_probability,
            self.mask_replace_prob,
            self.random_replace_prob,
            if self.exact_budget { "True" } else { "False" },
            self.max_predictions,
        )
    }
}
