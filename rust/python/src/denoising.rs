//! Denoising kernels as frozen, picklable Python objects: `SpanCorruptor` (T5 span
//! corruption and UL2 mixtures) and `BartNoiser`, plus `compute_input_and_target_lengths`.

use lmobjectives_core::batch::{Dtype, TokenId};
use lmobjectives_core::denoise::bart::{BartConfig, BartJob, BartParams, MaskLength};
use lmobjectives_core::denoise::seq2seq::{Seq2SeqConfig, Seq2SeqJob, Seq2SeqParams};
use lmobjectives_core::denoise::t5;
use lmobjectives_core::denoise::ul2::{Denoiser, DenoiserParams};
use lmobjectives_core::denoise::{Seq2SeqBatch, Trimmed, Widths, trim_rows};
use lmobjectives_core::recipes::Recipe;
use lmobjectives_core::rng::{RowKeys, Streams, purpose};
use numpy::{
    Element, IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyList, PyString, PyTuple};

use crate::convert::{
    Recyclable, id_rows, key_name, mask_rows, pooled2, ragged, row_keys, sample_keys,
    unless_all_ones,
};
use crate::errors::{detached, invalid, to_py, wrong_type};
use crate::with_rows;

type Arrays<'py, O> = (
    Bound<'py, PyArray2<O>>,
    Bound<'py, PyArray2<O>>,
    Bound<'py, PyArray2<O>>,
    Bound<'py, PyArray2<O>>,
    Bound<'py, PyArray2<O>>,
);

/// `(input_ids, attention_mask, labels, decoder_input_ids, decoder_attention_mask)`, each
/// moved into NumPy without a copy.
fn arrays<O: Recyclable>(py: Python<'_>, b: Seq2SeqBatch<O>) -> PyResult<Arrays<'_, O>> {
    let (n, wi, wt) = (b.rows, b.input_width, b.target_width);
    Ok((
        pooled2(py, n, wi, b.input_ids)?,
        pooled2(py, n, wi, b.attention_mask)?,
        pooled2(py, n, wt, b.labels)?,
        pooled2(py, n, wt, b.decoder_input_ids)?,
        pooled2(py, n, wt, b.decoder_attention_mask)?,
    ))
}

/// T5's `random_spans_helper(inputs_length, noise_density, mean_noise_span_length, 1, 1)`:
/// `(raw tokens, targets length)`.
#[pyfunction]
#[pyo3(signature = (inputs_length, noise_density=0.15, mean_noise_span_length=3.0))]
pub fn compute_input_and_target_lengths(
    #[pyo3(from_py_with = crate::args::int)] inputs_length: usize,
    #[pyo3(from_py_with = crate::args::float)] noise_density: f64,
    #[pyo3(from_py_with = crate::args::float)] mean_noise_span_length: f64,
) -> PyResult<(usize, usize)> {
    crate::errors::guarded(move || {
        t5::compute_input_and_target_lengths(inputs_length, noise_density, mean_noise_span_length)
            .map_err(to_py)
    })
}

/// One denoiser as Python passes it: `(kind, noise_density, mean_noise_span_length,
/// mode_token_id)` with kind `"spans"` or `"prefix"`.
type DenoiserTuple = (String, f64, f64, Option<i64>);

fn denoiser_params(d: &DenoiserTuple) -> PyResult<DenoiserParams> {
    let (kind, density, mean, mode) = d;
    DenoiserParams::parse("denoisers", kind, *density, *mean, *mode).map_err(to_py)
}

/// Per denoiser, `(raw_length, input_length, target_length, max_sentinels)` at inputs of
/// `input_length` tokens (a mode token, when the tuple has one, and EOS included).
#[pyfunction]
#[pyo3(signature = (denoisers, input_length, random_roll=false))]
pub fn denoiser_lengths(
    denoisers: Vec<DenoiserTuple>,
    #[pyo3(from_py_with = crate::args::int)] input_length: usize,
    random_roll: bool,
) -> PyResult<Vec<(usize, usize, usize, usize)>> {
    crate::errors::guarded(move || {
        denoisers
            .iter()
            .map(|d| {
                let p = denoiser_params(d)?;
                let d = Denoiser::new(&p, input_length, random_roll, i64::from(i32::MAX))
                    .map_err(to_py)?;
                Ok((
                    d.raw_length,
                    d.input_length,
                    d.target_length,
                    d.max_sentinels,
                ))
            })
            .collect()
    })
}

/// T5 span corruption / UL2 mixture configuration (validated once) and its kernel.
#[pyclass(frozen, module = "lmobjectives._core")]
pub struct SpanCorruptor {
    cfg: Seq2SeqConfig,
    vocab_size: i64,
    eos_token_id: i64,
    pad_token_id: i64,
    decoder_start_token_id: i64,
    sentinel_ids: Vec<i64>,
    denoisers: Vec<DenoiserTuple>,
    weights: Vec<f64>,
    input_length: usize,
    random_roll: bool,
    per_batch: bool,
    purpose: String,
}

#[pymethods]
impl SpanCorruptor {
    #[new]
    #[pyo3(signature = (
        vocab_size, eos_token_id, pad_token_id, decoder_start_token_id, sentinel_ids,
        denoisers, weights, input_length, random_roll=false, per_batch=false, purpose="t5",
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        #[pyo3(from_py_with = crate::args::int)] vocab_size: i64,
        #[pyo3(from_py_with = crate::args::int)] eos_token_id: i64,
        #[pyo3(from_py_with = crate::args::int)] pad_token_id: i64,
        #[pyo3(from_py_with = crate::args::int)] decoder_start_token_id: i64,
        #[pyo3(from_py_with = crate::args::ints)] sentinel_ids: Vec<i64>,
        denoisers: Vec<DenoiserTuple>,
        #[pyo3(from_py_with = crate::args::floats)] weights: Vec<f64>,
        #[pyo3(from_py_with = crate::args::int)] input_length: usize,
        random_roll: bool,
        per_batch: bool,
        purpose: &str,
    ) -> PyResult<Self> {
        crate::errors::guarded(move || {
            let params = denoisers
                .iter()
                .map(denoiser_params)
                .collect::<PyResult<Vec<_>>>()?;
            let cfg = Seq2SeqConfig::new(&Seq2SeqParams {
                vocab_size,
                eos_token_id,
                pad_token_id,
                decoder_start_token_id,
                sentinel_ids: &sentinel_ids,
                denoisers: &params,
                weights: &weights,
                input_length,
                random_roll,
                per_batch,
                purpose: self::purpose(purpose),
            })
            .map_err(to_py)?;
            Ok(Self {
                cfg,
                vocab_size,
                eos_token_id,
                pad_token_id,
                decoder_start_token_id,
                sentinel_ids,
                denoisers,
                weights,
                input_length,
                random_roll,
                per_batch,
                purpose: purpose.to_string(),
            })
        })
    }

    #[getter]
    fn vocab_size(&self) -> PyResult<i64> {
        crate::errors::guarded(move || Ok(self.vocab_size))
    }

    #[getter]
    fn eos_token_id(&self) -> PyResult<i64> {
        crate::errors::guarded(move || Ok(self.eos_token_id))
    }

    #[getter]
    fn pad_token_id(&self) -> PyResult<i64> {
        crate::errors::guarded(move || Ok(self.pad_token_id))
    }

    #[getter]
    fn decoder_start_token_id(&self) -> PyResult<i64> {
        crate::errors::guarded(move || Ok(self.decoder_start_token_id))
    }

    #[getter]
    fn sentinel_ids(&self) -> PyResult<Vec<i64>> {
        crate::errors::guarded(move || Ok(self.sentinel_ids.clone()))
    }

    #[getter]
    fn denoisers(&self) -> PyResult<Vec<DenoiserTuple>> {
        crate::errors::guarded(move || Ok(self.denoisers.clone()))
    }

    #[getter]
    fn weights(&self) -> PyResult<Vec<f64>> {
        crate::errors::guarded(move || Ok(self.weights.clone()))
    }

    #[getter]
    fn random_roll(&self) -> PyResult<bool> {
        crate::errors::guarded(move || Ok(self.random_roll))
    }

    #[getter]
    fn per_batch(&self) -> PyResult<bool> {
        crate::errors::guarded(move || Ok(self.per_batch))
    }

    /// Raw tokens each denoiser cuts a row to.
    #[getter]
    fn raw_lengths(&self) -> PyResult<Vec<usize>> {
        crate::errors::guarded(move || {
            Ok(self.cfg.denoisers().iter().map(|d| d.raw_length).collect())
        })
    }

    /// Longest inputs (mode token and EOS included) of each denoiser.
    #[getter]
    fn input_lengths(&self) -> PyResult<Vec<usize>> {
        crate::errors::guarded(move || {
            Ok({
                self.cfg
                    .denoisers()
                    .iter()
                    .map(|d| d.input_length)
                    .collect()
            })
        })
    }

    /// Longest targets (EOS included) of each denoiser.
    #[getter]
    fn target_lengths(&self) -> PyResult<Vec<usize>> {
        crate::errors::guarded(move || {
            Ok({
                self.cfg
                    .denoisers()
                    .iter()
                    .map(|d| d.target_length)
                    .collect()
            })
        })
    }

    /// The inputs length the raw lengths were computed for.
    #[getter]
    fn input_length(&self) -> PyResult<usize> {
        crate::errors::guarded(move || Ok(self.input_length))
    }

    /// The denoiser batch `batch_index` uses in per-batch mode.
    #[pyo3(signature = (*, seed, epoch=0, batch_index=0))]
    fn batch_denoiser(
        &self,
        #[pyo3(from_py_with = crate::args::int)] seed: u64,
        #[pyo3(from_py_with = crate::args::int)] epoch: u64,
        #[pyo3(from_py_with = crate::args::int)] batch_index: u64,
    ) -> PyResult<usize> {
        crate::errors::guarded(move || {
            Ok({
                let streams = Streams::new(seed, epoch, purpose(&self.purpose));
                self.cfg.batch_denoiser(&streams, batch_index)
            })
        })
    }

    /// Noises a batch of raw token rows (no EOS) into `(input_ids, attention_mask, labels,
    /// decoder_input_ids, decoder_attention_mask)`.
    #[pyo3(signature = (
        input_ids, *, attention_mask=None, seed, epoch=0, batch_index=0, sample_ids=None,
        truncation=false, input_width=None, target_width=None, pad_to_multiple_of=1,
        dtype="int64", num_threads=1, rows_name=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn corrupt<'py>(
        &self,
        py: Python<'py>,
        input_ids: &Bound<'py, PyAny>,
        attention_mask: Option<&Bound<'py, PyAny>>,
        #[pyo3(from_py_with = crate::args::int)] seed: u64,
        #[pyo3(from_py_with = crate::args::int)] epoch: u64,
        #[pyo3(from_py_with = crate::args::int)] batch_index: u64,
        sample_ids: Option<&Bound<'py, PyAny>>,
        truncation: bool,
        #[pyo3(from_py_with = crate::args::opt_int)] input_width: Option<usize>,
        #[pyo3(from_py_with = crate::args::opt_int)] target_width: Option<usize>,
        #[pyo3(from_py_with = crate::args::int)] pad_to_multiple_of: usize,
        dtype: &str,
        #[pyo3(from_py_with = crate::args::int)] num_threads: usize,
        rows_name: Option<&str>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        crate::errors::guarded(move || {
            let dtype = Dtype::parse("dtype", dtype).map_err(to_py)?;
            let name = |key: &str| key_name(rows_name, key);
            // Read after the rows (a bad row is reported before a bad mask).
            let mask = || {
                attention_mask
                    .map(|a| mask_rows(a, "attention_mask", name("attention_mask").as_deref()))
                    .transpose()
                    .map_err(|e| typed(py, e))
            };
            let sample_ids = sample_keys(sample_ids)?;
            let call = SpanCall {
                cfg: &self.cfg,
                widths: Widths {
                    input: input_width,
                    target: target_width,
                    multiple_of: pad_to_multiple_of,
                },
                truncation,
                seed,
                epoch,
                keys: row_keys(&sample_ids, batch_index),
                batch_index,
                dtype,
                threads: num_threads,
            };
            if let Some(out) = call.run_in_place(py, input_ids, &mask)? {
                return Ok(out);
            }
            let rows = id_rows(input_ids, "input_ids", name("input_ids").as_deref())
                .map_err(|e| typed(py, e))?;
            let attn = mask()?;
            with_rows!(rows, "input_ids", |r| {
                let attn = unless_all_ones(ragged("attention_mask", &attn)?, &r);
                let trimmed = Trimmed::new(&r, attn.as_ref()).map_err(to_py)?;
                call.run(py, &trimmed.rows)
            })
        })
    }

    /// The columns of a batch of examples in its common form, read in one pass: a non-empty
    /// list of dicts with the keys of the first, among `input_ids` (required),
    /// `attention_mask` and `idx` (read) and `special_tokens_mask`, `token_type_ids`,
    /// `word_ids` (not used here); each row a list, tuple or NumPy array (checked when
    /// converted, as any rows); each `idx` an `int` in `[0, 2**64)`. Returns `(input_ids rows,
    /// attention_mask rows or None, sample ids as uint64 or None)`, or `None` for any other
    /// batch, which the general normaliser then reads (and names what is wrong with it).
    fn example_columns<'py>(
        &self,
        py: Python<'py>,
        examples: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        crate::errors::guarded(move || {
            let Some(cols) = ExampleColumns::read(examples)? else {
                return Ok(None);
            };
            let mask = match cols.attention_mask {
                Some(m) => PyList::new(py, m)?.into_any(),
                None => py.None().into_bound(py),
            };
            let ids = match cols.idx {
                Some(v) => v.into_pyarray(py).into_any(),
                None => py.None().into_bound(py),
            };
            Ok(Some(
                (PyList::new(py, cols.input_ids)?, mask, ids).into_pyobject(py)?,
            ))
        })
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        crate::errors::guarded(move || {
            let py = slf.py();
            let s = slf.get();
            let args = (
                s.vocab_size,
                s.eos_token_id,
                s.pad_token_id,
                s.decoder_start_token_id,
                s.sentinel_ids.clone(),
                s.denoisers.clone(),
                s.weights.clone(),
                s.input_length,
                s.random_roll,
                s.per_batch,
                s.purpose.clone(),
            );
            (slf.get_type(), args).into_pyobject(py)
        })
    }

    fn __repr__(&self) -> PyResult<String> {
        crate::errors::guarded(move || {
            Ok({
                format!(
                    "SpanCorruptor(vocab_size={}, eos_token_id={}, pad_token_id={}, \
             decoder_start_token_id={}, sentinels={}, denoisers={:?}, weights={:?}, \
             input_length={}, random_roll={}, per_batch={}, purpose={:?})",
                    self.vocab_size,
                    self.eos_token_id,
                    self.pad_token_id,
                    self.decoder_start_token_id,
                    self.sentinel_ids.len(),
                    self.denoisers,
                    self.weights,
                    self.input_length,
                    py_bool(self.random_roll),
                    py_bool(self.per_batch),
                    self.purpose,
                )
            })
        })
    }
}

/// A conversion error as the project's typed error, same message: a plain `TypeError` (a row
/// of the wrong type or dtype) becomes an `ArgumentTypeError`, a plain `ValueError` (a row of
/// the wrong shape) an `InvalidArgumentError`; any other error is kept.
fn typed(py: Python<'_>, e: PyErr) -> PyErr {
    let kind = e.get_type(py);
    if kind.is(py.get_type::<PyTypeError>()) {
        wrong_type(e.value(py).to_string())
    } else if kind.is(py.get_type::<PyValueError>()) {
        invalid(e.value(py).to_string())
    } else {
        e
    }
}

/// An attention mask as gathered 0/1 values and row offsets, when given.
type MaskRows = Option<(Vec<u8>, Vec<usize>)>;

/// What [`SpanCorruptor::corrupt`] runs, whatever form the rows came in.
struct SpanCall<'a> {
    cfg: &'a Seq2SeqConfig,
    widths: Widths,
    truncation: bool,
    seed: u64,
    epoch: u64,
    keys: RowKeys<'a>,
    batch_index: u64,
    dtype: Dtype,
    threads: usize,
}

impl SpanCall<'_> {
    fn run<'py, T: TokenId>(
        &self,
        py: Python<'py>,
        rows: &[&[T]],
    ) -> PyResult<Bound<'py, PyTuple>> {
        let job = Seq2SeqJob::new(
            self.cfg,
            rows,
            self.widths,
            self.truncation,
            self.seed,
            self.epoch,
            &self.keys,
            self.batch_index,
        )
        .map_err(to_py)?;
        run_job(py, self.dtype, &job, self.threads)
    }

    /// Runs rows given as a list of 1-D arrays of one dtype (what a list of examples holds),
    /// read in place; `None` for any other rows.
    fn run_in_place<'py>(
        &self,
        py: Python<'py>,
        input_ids: &Bound<'py, PyAny>,
        mask: &dyn Fn() -> PyResult<MaskRows>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let Ok(list) = input_ids.cast::<PyList>() else {
            return Ok(None);
        };
        macro_rules! in_place {
            ($($t:ty),*) => {$(
                if let Some(arrays) = array_rows::<$t>(list) {
                    let rows = arrays
                        .iter()
                        .map(|a| a.as_slice())
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| PyValueError::new_err(format!("input_ids: {e}")))?;
                    let attn = mask()?;
                    let attn = ragged("attention_mask", &attn)?;
                    let rows = trim_rows(&rows, attn.as_ref()).map_err(to_py)?;
                    return self.run(py, &rows).map(Some);
                }
            )*};
        }
        in_place!(i64, i32, u32, u16);
        Ok(None)
    }
}

/// Rows given as a non-empty list of 1-D C-contiguous arrays of dtype `T`, borrowed to be
/// read in place (no copy); `None` when any item is something else (the general conversion
/// gathers those, and names a bad row).
fn array_rows<'py, T: Element>(list: &Bound<'py, PyList>) -> Option<Vec<PyReadonlyArray1<'py, T>>> {
    if list.is_empty() {
        return None;
    }
    list.iter()
        .map(|item| {
            let a = item.cast::<PyArray1<T>>().ok()?;
            if a.is_c_contiguous() {
                a.try_readonly().ok()
            } else {
                None
            }
        })
        .collect()
}

/// The columns [`SpanCorruptor::example_columns`] reads.
struct ExampleColumns<'py> {
    input_ids: Vec<Bound<'py, PyAny>>,
    attention_mask: Option<Vec<Bound<'py, PyAny>>>,
    idx: Option<Vec<u64>>,
}

/// Keys of an example that the span collators do not read (accepted, as the general
/// normaliser accepts them).
const UNUSED_KEYS: [&str; 3] = ["special_tokens_mask", "token_type_ids", "word_ids"];

impl<'py> ExampleColumns<'py> {
    /// See [`SpanCorruptor::example_columns`]; `None` when the batch is not in that form.
    fn read(examples: &Bound<'py, PyAny>) -> PyResult<Option<Self>> {
        let Ok(list) = examples.cast_exact::<PyList>() else {
            return Ok(None);
        };
        let Some(first) = list.iter().next() else {
            return Ok(None);
        };
        let Ok(first) = first.cast_exact::<PyDict>() else {
            return Ok(None);
        };
        let Some(keys) = ExampleKeys::of(first)? else {
            return Ok(None);
        };
        let n = list.len();
        let mut cols = Self {
            input_ids: Vec::with_capacity(n),
            attention_mask: keys.attention_mask.as_ref().map(|_| Vec::with_capacity(n)),
            idx: keys.idx.as_ref().map(|_| Vec::with_capacity(n)),
        };
        let width = first.len();
        for ex in list.iter() {
            let Ok(ex) = ex.cast_exact::<PyDict>() else {
                return Ok(None);
            };
            // Same size and every key of the first: the same keys.
            if ex.len() != width || !cols.push(ex, &keys)? {
                return Ok(None);
            }
        }
        Ok(Some(cols))
    }

    /// Appends one example's values; `false` when one is missing or of another form.
    fn push(&mut self, ex: &Bound<'py, PyDict>, keys: &ExampleKeys<'py>) -> PyResult<bool> {
        let Some(row) = row_item(ex, &keys.input_ids)? else {
            return Ok(false);
        };
        self.input_ids.push(row);
        if let (Some(key), Some(out)) = (&keys.attention_mask, &mut self.attention_mask) {
            let Some(row) = row_item(ex, key)? else {
                return Ok(false);
            };
            out.push(row);
        }
        if let (Some(key), Some(out)) = (&keys.idx, &mut self.idx) {
            // An exact int in [0, 2**64); anything else is left to the normaliser.
            let Some(v) = ex.get_item(key)? else {
                return Ok(false);
            };
            let Some(v) = v
                .is_exact_instance_of::<PyInt>()
                .then(|| v.extract::<u64>().ok())
                .flatten()
            else {
                return Ok(false);
            };
            out.push(v);
        }
        for key in &keys.unused {
            if !ex.contains(key)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The keys of a batch's first example, by use.
struct ExampleKeys<'py> {
    input_ids: Bound<'py, PyAny>,
    attention_mask: Option<Bound<'py, PyAny>>,
    idx: Option<Bound<'py, PyAny>>,
    unused: Vec<Bound<'py, PyAny>>,
}

impl<'py> ExampleKeys<'py> {
    /// `None` unless every key is a known `str` and `input_ids` is among them.
    fn of(first: &Bound<'py, PyDict>) -> PyResult<Option<Self>> {
        let (mut input_ids, mut attention_mask, mut idx) = (None, None, None);
        let mut unused = Vec::new();
        for key in first.keys() {
            let Ok(name) = key.cast_exact::<PyString>() else {
                return Ok(None);
            };
            match name.to_str()? {
                "input_ids" => input_ids = Some(key),
                "attention_mask" => attention_mask = Some(key),
                "idx" => idx = Some(key),
                other if UNUSED_KEYS.contains(&other) => unused.push(key),
                _ => return Ok(None),
            }
        }
        Ok(input_ids.map(|input_ids| Self {
            input_ids,
            attention_mask,
            idx,
            unused,
        }))
    }
}

/// `ex[key]` when it is a row the conversion reads as it is (a list, a tuple or a NumPy
/// array); `None` when it is missing or anything else (a tensor: the normaliser converts it).
fn row_item<'py>(
    ex: &Bound<'py, PyDict>,
    key: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    Ok(ex.get_item(key)?.filter(|row| {
        row.cast::<PyList>().is_ok()
            || row.cast::<PyTuple>().is_ok()
            || row.cast::<PyUntypedArray>().is_ok()
    }))
}

fn py_bool(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// Runs a job at the requested output width with the GIL released.
fn run_job<'py, J: RunBoth + Sync>(
    py: Python<'py>,
    dtype: Dtype,
    job: &J,
    threads: usize,
) -> PyResult<Bound<'py, PyTuple>> {
    match dtype {
        Dtype::I64 => arrays(py, detached(py, || job.run_i64(threads))?)?.into_pyobject(py),
        Dtype::I32 => arrays(py, detached(py, || job.run_i32(threads))?)?.into_pyobject(py),
    }
}

/// Both output widths of a job, behind one bound.
trait RunBoth {
    fn run_i64(&self, threads: usize) -> lmobjectives_core::Result<Seq2SeqBatch<i64>>;
    fn run_i32(&self, threads: usize) -> lmobjectives_core::Result<Seq2SeqBatch<i32>>;
}

impl<T: TokenId> RunBoth for Seq2SeqJob<'_, T> {
    fn run_i64(&self, threads: usize) -> lmobjectives_core::Result<Seq2SeqBatch<i64>> {
        self.run(threads)
    }
    fn run_i32(&self, threads: usize) -> lmobjectives_core::Result<Seq2SeqBatch<i32>> {
        self.run(threads)
    }
}

impl<T: TokenId> RunBoth for BartJob<'_, T> {
    fn run_i64(&self, threads: usize) -> lmobjectives_core::Result<Seq2SeqBatch<i64>> {
        self.run(threads)
    }
    fn run_i32(&self, threads: usize) -> lmobjectives_core::Result<Seq2SeqBatch<i32>> {
        self.run(threads)
    }
}

/// BART noising configuration (validated once) and its kernel.
#[pyclass(frozen, module = "lmobjectives._core")]
pub struct BartNoiser {
    cfg: BartConfig,
    args: BartArgs,
}

#[derive(Clone)]
struct BartArgs {
    vocab_size: i64,
    bos_token_id: i64,
    eos_token_id: i64,
    pad_token_id: i64,
    mask_token_id: i64,
    decoder_start_token_id: i64,
    special_token_ids: Vec<i64>,
    word_starts: Option<Vec<bool>>,
    full_stop_token_ids: Vec<i64>,
    mask_ratio: f64,
    random_ratio: f64,
    insert_ratio: f64,
    rotate_ratio: f64,
    permute_sentence_ratio: f64,
    poisson_lambda: f64,
    mask_length: String,
    replace_length: i64,
    add_special_tokens: bool,
    recipe: String,
}

impl BartArgs {
    fn params(&self) -> PyResult<BartParams<'_>> {
        Ok(BartParams {
            vocab_size: self.vocab_size,
            bos_token_id: self.bos_token_id,
            eos_token_id: self.eos_token_id,
            pad_token_id: self.pad_token_id,
            mask_token_id: self.mask_token_id,
            decoder_start_token_id: self.decoder_start_token_id,
            special_token_ids: &self.special_token_ids,
            word_starts: self.word_starts.as_deref(),
            full_stop_ids: &self.full_stop_token_ids,
            mask_ratio: self.mask_ratio,
            random_ratio: self.random_ratio,
            insert_ratio: self.insert_ratio,
            rotate_ratio: self.rotate_ratio,
            permute_sentence_ratio: self.permute_sentence_ratio,
            poisson_lambda: self.poisson_lambda,
            mask_length: MaskLength::parse("mask_length", &self.mask_length).map_err(to_py)?,
            replace_length: self.replace_length,
            add_special_tokens: self.add_special_tokens,
            random_tokens: Recipe::parse("recipe", &self.recipe)
                .and_then(Recipe::bart_random_tokens)
                .map_err(to_py)?,
        })
    }
}

#[pymethods]
impl BartNoiser {
    #[new]
    #[pyo3(signature = (
        vocab_size, bos_token_id, eos_token_id, pad_token_id, mask_token_id,
        decoder_start_token_id, special_token_ids, word_starts=None, full_stop_token_ids=vec![],
        mask_ratio=0.3, random_ratio=0.1, insert_ratio=0.0, rotate_ratio=0.0,
        permute_sentence_ratio=1.0, poisson_lambda=3.0, mask_length="span-poisson",
        replace_length=1, add_special_tokens=true, recipe="lmobjectives",
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        #[pyo3(from_py_with = crate::args::int)] vocab_size: i64,
        #[pyo3(from_py_with = crate::args::int)] bos_token_id: i64,
        #[pyo3(from_py_with = crate::args::int)] eos_token_id: i64,
        #[pyo3(from_py_with = crate::args::int)] pad_token_id: i64,
        #[pyo3(from_py_with = crate::args::int)] mask_token_id: i64,
        #[pyo3(from_py_with = crate::args::int)] decoder_start_token_id: i64,
        #[pyo3(from_py_with = crate::args::ints)] special_token_ids: Vec<i64>,
        word_starts: Option<Vec<bool>>,
        #[pyo3(from_py_with = crate::args::ints)] full_stop_token_ids: Vec<i64>,
        #[pyo3(from_py_with = crate::args::float)] mask_ratio: f64,
        #[pyo3(from_py_with = crate::args::float)] random_ratio: f64,
        #[pyo3(from_py_with = crate::args::float)] insert_ratio: f64,
        #[pyo3(from_py_with = crate::args::float)] rotate_ratio: f64,
        #[pyo3(from_py_with = crate::args::float)] permute_sentence_ratio: f64,
        #[pyo3(from_py_with = crate::args::float)] poisson_lambda: f64,
        mask_length: &str,
        #[pyo3(from_py_with = crate::args::int)] replace_length: i64,
        add_special_tokens: bool,
        recipe: &str,
    ) -> PyResult<Self> {
        crate::errors::guarded(move || {
            let args = BartArgs {
                vocab_size,
                bos_token_id,
                eos_token_id,
                pad_token_id,
                mask_token_id,
                decoder_start_token_id,
                special_token_ids,
                word_starts,
                full_stop_token_ids,
                mask_ratio,
                random_ratio,
                insert_ratio,
                rotate_ratio,
                permute_sentence_ratio,
                poisson_lambda,
                mask_length: mask_length.to_string(),
                replace_length,
                add_special_tokens,
                recipe: recipe.to_string(),
            };
            let cfg = BartConfig::new(&args.params()?).map_err(to_py)?;
            Ok(Self { cfg, args })
        })
    }

    #[getter]
    fn vocab_size(&self) -> PyResult<i64> {
        crate::errors::guarded(move || Ok(self.args.vocab_size))
    }

    #[getter]
    fn bos_token_id(&self) -> PyResult<i64> {
        crate::errors::guarded(move || Ok(self.args.bos_token_id))
    }

    #[getter]
    fn eos_token_id(&self) -> PyResult<i64> {
        crate::errors::guarded(move || Ok(self.args.eos_token_id))
    }

    #[getter]
    fn pad_token_id(&self) -> PyResult<i64> {
        crate::errors::guarded(move || Ok(self.args.pad_token_id))
    }

    #[getter]
    fn mask_token_id(&self) -> PyResult<i64> {
        crate::errors::guarded(move || Ok(self.args.mask_token_id))
    }

    #[getter]
    fn decoder_start_token_id(&self) -> PyResult<i64> {
        crate::errors::guarded(move || Ok(self.args.decoder_start_token_id))
    }

    #[getter]
    fn special_token_ids(&self) -> PyResult<Vec<i64>> {
        crate::errors::guarded(move || Ok(self.args.special_token_ids.clone()))
    }

    #[getter]
    fn full_stop_token_ids(&self) -> PyResult<Vec<i64>> {
        crate::errors::guarded(move || Ok(self.args.full_stop_token_ids.clone()))
    }

    #[getter]
    fn mask_ratio(&self) -> PyResult<f64> {
        crate::errors::guarded(move || Ok(self.args.mask_ratio))
    }

    #[getter]
    fn random_ratio(&self) -> PyResult<f64> {
        crate::errors::guarded(move || Ok(self.args.random_ratio))
    }

    #[getter]
    fn insert_ratio(&self) -> PyResult<f64> {
        crate::errors::guarded(move || Ok(self.args.insert_ratio))
    }

    #[getter]
    fn rotate_ratio(&self) -> PyResult<f64> {
        crate::errors::guarded(move || Ok(self.args.rotate_ratio))
    }

    #[getter]
    fn permute_sentence_ratio(&self) -> PyResult<f64> {
        crate::errors::guarded(move || Ok(self.args.permute_sentence_ratio))
    }

    #[getter]
    fn poisson_lambda(&self) -> PyResult<f64> {
        crate::errors::guarded(move || Ok(self.args.poisson_lambda))
    }

    #[getter]
    fn mask_length(&self) -> PyResult<String> {
        crate::errors::guarded(move || Ok(self.args.mask_length.clone()))
    }

    #[getter]
    fn replace_length(&self) -> PyResult<i64> {
        crate::errors::guarded(move || Ok(self.args.replace_length))
    }

    #[getter]
    fn add_special_tokens(&self) -> PyResult<bool> {
        crate::errors::guarded(move || Ok(self.args.add_special_tokens))
    }

    /// The word-start table (one bool per id), or `None` when every token starts a word.
    #[getter]
    fn word_starts<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyArray1<bool>>>> {
        crate::errors::guarded(move || {
            Ok({
                self.cfg
                    .word_starts()
                    .table()
                    .map(|t| t.to_vec().into_pyarray(py))
            })
        })
    }

    /// Probabilities of span lengths `0..=K` (span-poisson only).
    #[getter]
    fn span_length_probabilities(&self) -> PyResult<Option<Vec<f64>>> {
        crate::errors::guarded(move || Ok(self.cfg.spans().map(|s| s.probabilities())))
    }

    /// `count` span lengths drawn from the span-length distribution the kernel uses.
    #[pyo3(signature = (count, *, seed))]
    fn sample_span_lengths<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = crate::args::int)] count: usize,
        #[pyo3(from_py_with = crate::args::int)] seed: u64,
    ) -> PyResult<Bound<'py, PyArray1<u32>>> {
        crate::errors::guarded(move || {
            let v = detached(py, || self.cfg.sample_span_lengths(count, seed))?;
            Ok(v.into_pyarray(py))
        })
    }

    /// Noises a batch into `(input_ids, attention_mask, labels, decoder_input_ids,
    /// decoder_attention_mask)`.
    #[pyo3(signature = (
        input_ids, *, attention_mask=None, sentence_starts=None, seed, epoch=0, batch_index=0,
        sample_ids=None, pad_to_multiple_of=1, dtype="int64", num_threads=1, rows_name=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn noise<'py>(
        &self,
        py: Python<'py>,
        input_ids: &Bound<'py, PyAny>,
        attention_mask: Option<&Bound<'py, PyAny>>,
        sentence_starts: Option<&Bound<'py, PyAny>>,
        #[pyo3(from_py_with = crate::args::int)] seed: u64,
        #[pyo3(from_py_with = crate::args::int)] epoch: u64,
        #[pyo3(from_py_with = crate::args::int)] batch_index: u64,
        sample_ids: Option<&Bound<'py, PyAny>>,
        #[pyo3(from_py_with = crate::args::int)] pad_to_multiple_of: usize,
        dtype: &str,
        #[pyo3(from_py_with = crate::args::int)] num_threads: usize,
        rows_name: Option<&str>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        crate::errors::guarded(move || {
            let dtype = Dtype::parse("dtype", dtype).map_err(to_py)?;
            let name = |key: &str| key_name(rows_name, key);
            let rows = id_rows(input_ids, "input_ids", name("input_ids").as_deref())?;
            let attn = attention_mask
                .map(|a| mask_rows(a, "attention_mask", name("attention_mask").as_deref()))
                .transpose()?;
            let starts = sentence_starts
                .map(|s| mask_rows(s, "sentence_starts", name("sentence_starts").as_deref()))
                .transpose()?;
            let widths = Widths {
                input: None,
                target: None,
                multiple_of: pad_to_multiple_of,
            };
            let sample_ids = sample_keys(sample_ids)?;
            let keys = row_keys(&sample_ids, batch_index);
            let cfg = &self.cfg;
            with_rows!(rows, "input_ids", |r| {
                let trimmed =
                    Trimmed::new(&r, ragged("attention_mask", &attn)?.as_ref()).map_err(to_py)?;
                let start_rows = ragged("sentence_starts", &starts)?
                    .map(|s| trimmed.aligned(&r, "sentence_starts", &s))
                    .transpose()
                    .map_err(to_py)?;
                let job = BartJob::new(
                    cfg,
                    &trimmed.rows,
                    start_rows.as_deref(),
                    widths,
                    Streams::new(seed, epoch, 0),
                    &keys,
                )
                .map_err(to_py)?;
                run_job(py, dtype, &job, num_threads)
            })
        })
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        crate::errors::guarded(move || {
            let py = slf.py();
            let a = slf.get().args.clone();
            let args = [
                a.vocab_size.into_pyobject(py)?.into_any(),
                a.bos_token_id.into_pyobject(py)?.into_any(),
                a.eos_token_id.into_pyobject(py)?.into_any(),
                a.pad_token_id.into_pyobject(py)?.into_any(),
                a.mask_token_id.into_pyobject(py)?.into_any(),
                a.decoder_start_token_id.into_pyobject(py)?.into_any(),
                a.special_token_ids.into_pyobject(py)?.into_any(),
                a.word_starts.into_pyobject(py)?.into_any(),
                a.full_stop_token_ids.into_pyobject(py)?.into_any(),
                a.mask_ratio.into_pyobject(py)?.into_any(),
                a.random_ratio.into_pyobject(py)?.into_any(),
                a.insert_ratio.into_pyobject(py)?.into_any(),
                a.rotate_ratio.into_pyobject(py)?.into_any(),
                a.permute_sentence_ratio.into_pyobject(py)?.into_any(),
                a.poisson_lambda.into_pyobject(py)?.into_any(),
                a.mask_length.into_pyobject(py)?.into_any(),
                a.replace_length.into_pyobject(py)?.into_any(),
                a.add_special_tokens
                    .into_pyobject(py)?
                    .to_owned()
                    .into_any(),
                a.recipe.into_pyobject(py)?.into_any(),
            ];
            (slf.get_type(), PyTuple::new(py, args)?).into_pyobject(py)
        })
    }

    fn __repr__(&self) -> PyResult<String> {
        crate::errors::guarded(move || {
            Ok({
                let a = &self.args;
                format!(
                    "BartNoiser(vocab_size={}, bos_token_id={}, eos_token_id={}, pad_token_id={}, \
             mask_token_id={}, decoder_start_token_id={}, mask_ratio={:?}, random_ratio={:?}, \
             insert_ratio={:?}, rotate_ratio={:?}, permute_sentence_ratio={:?}, poisson_lambda={:?}, \
             mask_length={:?}, replace_length={}, add_special_tokens={}, word_starts={}, \
             recipe={:?})",
                    a.vocab_size,
                    a.bos_token_id,
                    a.eos_token_id,
                    a.pad_token_id,
                    a.mask_token_id,
                    a.decoder_start_token_id,
                    a.mask_ratio,
                    a.random_ratio,
                    a.insert_ratio,
                    a.rotate_ratio,
                    a.permute_sentence_ratio,
                    a.poisson_lambda,
                    a.mask_length,
                    a.replace_length,
                    py_bool(a.add_special_tokens),
                    if a.word_starts.is_some() {
                        "table"
                    } else {
                        "None"
                    },
                    a.recipe,
                )
            })
        })
    }

    #[getter]
    fn recipe(&self) -> PyResult<&str> {
        crate::errors::guarded(move || Ok(self.args.recipe.as_str()))
    }
}
