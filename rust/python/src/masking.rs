//! `MlmMasker`: the MLM masking kernel as a frozen, picklable Python object.

use lmobjectives_core::batch::Dtype;
use lmobjectives_core::batch::PadSpec;
use lmobjectives_core::masking::{
    Budget, MlmBatch, MlmConfig, MlmJob, MlmParams, PURPOSE, PositionSampling, ReplaceBy,
    TokenMasks, UnitArgs, UnitSpec, effective_special_ids, length_samples,
};
use lmobjectives_core::recipes::{Family, RECIPES, Recipe, resolve_masking};
use lmobjectives_core::rng::{RowKeys, Streams};
use numpy::PyArray2;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::convert::{
    IdRows, Recyclable, example_columns, fill_allocated, flatten_rows, id_rows, key_name,
    mask_rows, pad_spec, pooled2, ragged, row_keys, sample_keys, unless_all_ones, word_id_rows,
};
use crate::errors::{detached, to_py};
use crate::with_rows;

/// MLM masking configuration (validated once) and the kernel that applies it to batches.
#[pyclass(frozen, module = "lmobjectives._core")]
pub struct MlmMasker {
    cfg: MlmConfig,
    args: Args,
}

/// The constructor's arguments, kept for the getters, `repr` and pickling.
#[derive(Debug, Clone)]
struct Args {
    vocab_size: i64,
    mask_token_id: i64,
    pad_token_id: i64,
    special_token_ids: Vec<i64>,
    mlm_probability: f64,
    mask_replace_prob: f64,
    random_replace_prob: f64,
    exact_budget: bool,
    max_predictions: Option<usize>,
    unit: String,
    replace_by: String,
    word_starts: Option<Vec<bool>>,
    geometric_p: f64,
    span_lower: u32,
    span_upper: u32,
    ngram: u32,
    favor_shorter_ngram: bool,
    position_sampling: String,
    recipe: String,
    token_counts: Option<Vec<i64>>,
}

impl Args {
    fn unit_args(&self) -> UnitArgs {
        UnitArgs {
            geometric_p: self.geometric_p,
            span_lower: self.span_lower,
            span_upper: self.span_upper,
            ngram: self.ngram,
            favor_shorter_ngram: self.favor_shorter_ngram,
        }
    }

    fn kwargs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("vocab_size", self.vocab_size)?;
        d.set_item("mask_token_id", self.mask_token_id)?;
        d.set_item("pad_token_id", self.pad_token_id)?;
        d.set_item("special_token_ids", self.special_token_ids.clone())?;
        d.set_item("mlm_probability", self.mlm_probability)?;
        d.set_item("mask_replace_prob", self.mask_replace_prob)?;
        d.set_item("random_replace_prob", self.random_replace_prob)?;
        d.set_item("exact_budget", self.exact_budget)?;
        d.set_item("max_predictions", self.max_predictions)?;
        d.set_item("unit", &self.unit)?;
        d.set_item("replace_by", &self.replace_by)?;
        d.set_item("word_starts", self.word_starts.clone())?;
        d.set_item("geometric_p", self.geometric_p)?;
        d.set_item("span_lower", self.span_lower)?;
        d.set_item("span_upper", self.span_upper)?;
        d.set_item("ngram", self.ngram)?;
        d.set_item("favor_shorter_ngram", self.favor_shorter_ngram)?;
        d.set_item("position_sampling", &self.position_sampling)?;
        d.set_item("recipe", &self.recipe)?;
        d.set_item("token_counts", self.token_counts.clone())?;
        Ok(d)
    }
}

type Arrays<'py, O> = (
    Bound<'py, PyArray2<O>>,
    Bound<'py, PyArray2<O>>,
    Bound<'py, PyArray2<O>>,
);

fn arrays<O: Recyclable>(py: Python<'_>, b: MlmBatch<O>) -> PyResult<Arrays<'_, O>> {
    Ok((
        pooled2(py, b.rows, b.width, b.input_ids)?,
        pooled2(py, b.rows, b.width, b.attention_mask)?,
        pooled2(py, b.rows, b.width, b.labels)?,
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
    O: Recyclable,
{
    let Some(allocate) = allocate else {
        let b = detached(py, || job.run::<O>(threads))?;
        return arrays(py, b)?.into_pyobject(py);
    };
    let dims = (job.rows(), job.width());
    let (arr, ()) = fill_allocated::<O, _>(py, allocate, dims, |out| job.run_into(threads, out))?;
    PyTuple::new(py, [arr.get_item(0)?, arr.get_item(1)?, arr.get_item(2)?])
}

/// Draws `count` span or n-gram lengths (in words) from the same law the masker uses, with
/// stream `(seed, 0, purpose("lengths"), sample 0)` — for testing the law itself.
#[pyfunction]
#[pyo3(signature = (
    unit, count, *, seed=0, geometric_p=0.2, span_lower=1, span_upper=10, ngram=3,
    favor_shorter_ngram=true,
))]
#[allow(clippy::too_many_arguments)]
pub fn _length_samples<'py>(
    py: Python<'py>,
    unit: &str,
    #[pyo3(from_py_with = crate::args::int)] count: usize,
    #[pyo3(from_py_with = crate::args::int)] seed: u64,
    #[pyo3(from_py_with = crate::args::float)] geometric_p: f64,
    #[pyo3(from_py_with = crate::args::int)] span_lower: u32,
    #[pyo3(from_py_with = crate::args::int)] span_upper: u32,
    #[pyo3(from_py_with = crate::args::int)] ngram: u32,
    favor_shorter_ngram: bool,
) -> PyResult<Bound<'py, numpy::PyArray1<u32>>> {
    crate::errors::guarded(move || {
        let args = UnitArgs {
            geometric_p,
            span_lower,
            span_upper,
            ngram,
            favor_shorter_ngram,
        };
        let out = length_samples(unit, &args, count, seed).map_err(to_py)?;
        Ok(numpy::IntoPyArray::into_pyarray(out, py))
    })
}

/// The masking configuration a recipe gives, explicit arguments (not `None`) merged over its
/// defaults: `{"recipe", "unit", "exact_budget", "replace_by"}`.
#[pyfunction]
#[pyo3(signature = (recipe="lmobjectives", *, unit=None, exact_budget=None, replace_by=None))]
pub fn masking_recipe<'py>(
    py: Python<'py>,
    recipe: &str,
    unit: Option<&str>,
    exact_budget: Option<bool>,
    replace_by: Option<&str>,
) -> PyResult<Bound<'py, PyDict>> {
    crate::errors::guarded(move || {
        let r = Recipe::parse("recipe", recipe).map_err(to_py)?;
        let m = resolve_masking(r, unit, exact_budget, replace_by).map_err(to_py)?;
        let d = PyDict::new(py);
        d.set_item("recipe", r.name())?;
        d.set_item("unit", m.unit)?;
        d.set_item("exact_budget", m.exact_budget)?;
        d.set_item("replace_by", m.replace_by)?;
        Ok(d)
    })
}

/// Checks that the recipe named `recipe` applies to `family` (`"masking"`, `"pairs"`, `"t5"`,
/// `"ul2"` or `"bart"`); returns its name.
#[pyfunction]
pub fn check_recipe(recipe: &str, family: &str) -> PyResult<&'static str> {
    crate::errors::guarded(move || {
        let r = Recipe::parse("recipe", recipe).map_err(to_py)?;
        let f = Family::parse("family", family).map_err(to_py)?;
        r.check_family(f).map_err(to_py)?;
        Ok(r.name())
    })
}

/// The recipe names, in documentation order.
#[pyfunction]
pub fn recipe_names() -> PyResult<Vec<&'static str>> {
    crate::errors::guarded(move || Ok(RECIPES.iter().map(|(n, _)| *n).collect()))
}

impl MlmMasker {
    /// The validated configuration (for the kernels that mask as they build, e.g. pairs).
    pub(crate) fn config(&self) -> &MlmConfig {
        &self.cfg
    }

    /// Validates the constructor's arguments (the special ids become the effective set:
    /// pad and mask are always special; the recipe's defaults fill the unset arguments) into a
    /// masker.
    fn from_args(
        mut args: Args,
        unit: Option<&str>,
        exact_budget: Option<bool>,
        replace_by: Option<&str>,
    ) -> PyResult<Self> {
        let recipe = Recipe::parse("recipe", &args.recipe).map_err(to_py)?;
        let resolved = resolve_masking(recipe, unit, exact_budget, replace_by).map_err(to_py)?;
        args.recipe = recipe.name().to_string();
        args.unit = resolved.unit;
        args.exact_budget = resolved.exact_budget;
        args.replace_by = resolved.replace_by;
        let sampling = PositionSampling::parse("position_sampling", &args.position_sampling);
        let with_replacement = sampling.map_err(to_py)? == PositionSampling::WithReplacement;
        let budget = Budget::new(args.exact_budget, args.max_predictions).map_err(to_py)?;
        let replace_by = ReplaceBy::parse("replace_by", &args.replace_by).map_err(to_py)?;
        args.special_token_ids = effective_special_ids(
            &args.special_token_ids,
            args.pad_token_id,
            args.mask_token_id,
        );
        let cfg = MlmConfig::new(&MlmParams {
            mlm_probability: args.mlm_probability,
            mask_replace_prob: args.mask_replace_prob,
            random_replace_prob: args.random_replace_prob,
            budget,
            unit: UnitSpec::parse("unit", &args.unit, &args.unit_args()).map_err(to_py)?,
            with_replacement,
            replace_by,
            word_starts: args.word_starts.as_deref(),
            rules: resolved.rules,
            token_counts: args.token_counts.as_deref(),
            ..MlmParams::new(
                args.vocab_size,
                args.mask_token_id,
                args.pad_token_id,
                &args.special_token_ids,
            )
        })
        .map_err(to_py)?;
        Ok(Self { cfg, args })
    }
}

/// A batch's per-token planes besides the ids, gathered as `(values, offsets)`.
struct Planes {
    attn: Option<(Vec<u8>, Vec<usize>)>,
    spec: Option<(Vec<u8>, Vec<usize>)>,
    words: Option<(Vec<i64>, Vec<usize>)>,
    bounds: Option<(Vec<u8>, Vec<usize>)>,
}

/// What a batch is keyed and shaped by.
struct Batch<'k> {
    keys: RowKeys<'k>,
    streams: Streams,
    pad: PadSpec,
    dtype: Dtype,
    num_threads: usize,
}

impl MlmMasker {
    /// Masks converted rows (what `mask` and `mask_examples` share).
    fn run<'py>(
        &self,
        py: Python<'py>,
        rows: IdRows<'py>,
        planes: Planes,
        batch: &Batch<'_>,
        allocate: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let attn = ragged("attention_mask", &planes.attn)?;
        let spec = ragged("special_tokens_mask", &planes.spec)?;
        let words = ragged("word_ids", &planes.words)?;
        let bounds = ragged("boundaries", &planes.bounds)?;
        let cfg = &self.cfg;
        let (pad, keys, streams) = (&batch.pad, &batch.keys, &batch.streams);
        with_rows!(rows, "input_ids", |r| {
            let masks = TokenMasks {
                attention_mask: unless_all_ones(attn, &r),
                special_tokens_mask: spec,
                word_ids: words,
                boundaries: bounds,
            };
            let job = MlmJob::new(cfg, &r, &masks, pad, streams, keys).map_err(to_py)?;
            match batch.dtype {
                Dtype::I64 => run_job::<_, i64>(py, &job, batch.num_threads, allocate),
                Dtype::I32 => run_job::<_, i32>(py, &job, batch.num_threads, allocate),
            }
        })
    }
}

#[pymethods]
impl MlmMasker {
    #[new]
    #[pyo3(signature = (
        vocab_size, mask_token_id, pad_token_id, special_token_ids, *,
        mlm_probability=0.15, mask_replace_prob=0.8, random_replace_prob=0.1,
        exact_budget=None, max_predictions=None, unit=None, replace_by=None,
        word_starts=None, geometric_p=0.2, span_lower=1, span_upper=10, ngram=3,
        favor_shorter_ngram=true, position_sampling="without_replacement",
        recipe="lmobjectives", token_counts=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        #[pyo3(from_py_with = crate::args::int)] vocab_size: i64,
        #[pyo3(from_py_with = crate::args::int)] mask_token_id: i64,
        #[pyo3(from_py_with = crate::args::int)] pad_token_id: i64,
        #[pyo3(from_py_with = crate::args::ints)] special_token_ids: Vec<i64>,
        #[pyo3(from_py_with = crate::args::float)] mlm_probability: f64,
        #[pyo3(from_py_with = crate::args::float)] mask_replace_prob: f64,
        #[pyo3(from_py_with = crate::args::float)] random_replace_prob: f64,
        exact_budget: Option<bool>,
        #[pyo3(from_py_with = crate::args::opt_int)] max_predictions: Option<usize>,
        unit: Option<&str>,
        replace_by: Option<&str>,
        word_starts: Option<Vec<bool>>,
        #[pyo3(from_py_with = crate::args::float)] geometric_p: f64,
        #[pyo3(from_py_with = crate::args::int)] span_lower: u32,
        #[pyo3(from_py_with = crate::args::int)] span_upper: u32,
        #[pyo3(from_py_with = crate::args::int)] ngram: u32,
        favor_shorter_ngram: bool,
        position_sampling: &str,
        recipe: &str,
        #[pyo3(from_py_with = crate::args::opt_ints)] token_counts: Option<Vec<i64>>,
    ) -> PyResult<Self> {
        crate::errors::guarded(move || {
            Self::from_args(
                Args {
                    vocab_size,
                    mask_token_id,
                    pad_token_id,
                    special_token_ids,
                    mlm_probability,
                    mask_replace_prob,
                    random_replace_prob,
                    exact_budget: false,
                    max_predictions,
                    unit: String::new(),
                    replace_by: String::new(),
                    word_starts,
                    geometric_p,
                    span_lower,
                    span_upper,
                    ngram,
                    favor_shorter_ngram,
                    position_sampling: position_sampling.to_string(),
                    recipe: recipe.to_string(),
                    token_counts,
                },
                unit,
                exact_budget,
                replace_by,
            )
        })
    }

    #[getter]
    fn vocab_size(&self) -> PyResult<i64> {
        crate::errors::guarded(move || Ok(i64::from(self.cfg.vocab_size())))
    }

    #[getter]
    fn mask_token_id(&self) -> PyResult<i64> {
        crate::errors::guarded(move || Ok(i64::from(self.cfg.mask_token_id())))
    }

    #[getter]
    fn pad_token_id(&self) -> PyResult<i64> {
        crate::errors::guarded(move || Ok(self.args.pad_token_id))
    }

    #[getter]
    fn special_token_ids(&self) -> PyResult<Vec<i64>> {
        crate::errors::guarded(move || Ok(self.args.special_token_ids.clone()))
    }

    #[getter]
    fn unit(&self) -> PyResult<&str> {
        crate::errors::guarded(move || Ok(self.args.unit.as_str()))
    }

    #[getter]
    fn replace_by(&self) -> PyResult<&str> {
        crate::errors::guarded(move || Ok(self.args.replace_by.as_str()))
    }

    #[getter]
    fn recipe(&self) -> PyResult<&str> {
        crate::errors::guarded(move || Ok(self.args.recipe.as_str()))
    }

    #[getter]
    fn has_token_counts(&self) -> PyResult<bool> {
        crate::errors::guarded(move || Ok(self.args.token_counts.is_some()))
    }

    #[getter]
    fn has_word_starts(&self) -> PyResult<bool> {
        crate::errors::guarded(move || Ok(self.args.word_starts.is_some()))
    }

    #[getter]
    fn mlm_probability(&self) -> PyResult<f64> {
        crate::errors::guarded(move || Ok(self.args.mlm_probability))
    }

    #[getter]
    fn mask_replace_prob(&self) -> PyResult<f64> {
        crate::errors::guarded(move || Ok(self.args.mask_replace_prob))
    }

    #[getter]
    fn random_replace_prob(&self) -> PyResult<f64> {
        crate::errors::guarded(move || Ok(self.args.random_replace_prob))
    }

    #[getter]
    fn exact_budget(&self) -> PyResult<bool> {
        crate::errors::guarded(move || Ok(self.args.exact_budget))
    }

    #[getter]
    fn max_predictions(&self) -> PyResult<Option<usize>> {
        crate::errors::guarded(move || Ok(self.args.max_predictions))
    }

    /// Masks and pads a batch.
    ///
    /// Returns `(input_ids, attention_mask, labels)` as `rows × width` arrays moved out of Rust
    /// buffers without a copy. `input_ids` is a C-contiguous 2-D integer array (read in place)
    /// or a list of rows (lists of ints or 1-D integer arrays).
    // long: one binding: its 20 arguments converted, then the kernel under the panic guard
    #[pyo3(signature = (
        input_ids, *, attention_mask=None, special_tokens_mask=None, word_ids=None,
        boundaries=None, seed, epoch=0, batch_index=0, sample_ids=None,
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
        word_ids: Option<&Bound<'py, PyAny>>,
        boundaries: Option<&Bound<'py, PyAny>>,
        #[pyo3(from_py_with = crate::args::int)] seed: u64,
        #[pyo3(from_py_with = crate::args::int)] epoch: u64,
        #[pyo3(from_py_with = crate::args::int)] batch_index: u64,
        sample_ids: Option<&Bound<'py, PyAny>>,
        #[pyo3(from_py_with = crate::args::opt_int)] max_length: Option<usize>,
        truncation: bool,
        pad_to_max_length: bool,
        #[pyo3(from_py_with = crate::args::int)] pad_to_multiple_of: usize,
        padding_side: &str,
        dtype: &str,
        #[pyo3(from_py_with = crate::args::int)] num_threads: usize,
        rows_name: Option<&str>,
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
            let name = |key: &str| key_name(rows_name, key);
            let rows = id_rows(input_ids, "input_ids", name("input_ids").as_deref())?;
            let mask = |obj: Option<&Bound<'py, PyAny>>, arg: &str| {
                obj.map(|m| mask_rows(m, arg, name(arg).as_deref()))
                    .transpose()
            };
            let attn = mask(attention_mask, "attention_mask")?;
            let spec = mask(special_tokens_mask, "special_tokens_mask")?;
            let words = word_ids
                .map(|w| word_id_rows(w, "word_ids", name("word_ids").as_deref()))
                .transpose()?;
            let bounds = mask(boundaries, "boundaries")?;
            let sample_ids = sample_keys(sample_ids)?;
            self.run(
                py,
                rows,
                Planes {
                    attn,
                    spec,
                    words,
                    bounds,
                },
                &Batch {
                    keys: row_keys(&sample_ids, batch_index),
                    streams: Streams::new(seed, epoch, PURPOSE),
                    pad,
                    dtype,
                    num_threads,
                },
                allocate,
            )
        })
    }

    /// [`MlmMasker::mask`] for a list of examples in the tokenizer's plain form — exact dicts
    /// with the same keys, `input_ids` and optionally `attention_mask` and
    /// `special_tokens_mask`, each an exact list of ints — read in one pass with no Python
    /// work per example; rows are named `examples[{row}]['{key}']` in errors. Returns `None`
    /// (having read nothing else) for a batch in any other form: pass it to `mask` then.
    // long: the same keyword arguments as `mask`, converted, then the shared run
    #[pyo3(signature = (
        examples, *, seed, epoch=0, batch_index=0,
        max_length=None, truncation=false, pad_to_max_length=false, pad_to_multiple_of=1,
        padding_side="right", dtype="int64", num_threads=1, allocate=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn mask_examples<'py>(
        &self,
        py: Python<'py>,
        examples: &Bound<'py, PyAny>,
        #[pyo3(from_py_with = crate::args::int)] seed: u64,
        #[pyo3(from_py_with = crate::args::int)] epoch: u64,
        #[pyo3(from_py_with = crate::args::int)] batch_index: u64,
        #[pyo3(from_py_with = crate::args::opt_int)] max_length: Option<usize>,
        truncation: bool,
        pad_to_max_length: bool,
        #[pyo3(from_py_with = crate::args::int)] pad_to_multiple_of: usize,
        padding_side: &str,
        dtype: &str,
        #[pyo3(from_py_with = crate::args::int)] num_threads: usize,
        allocate: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        crate::errors::guarded(move || {
            let dtype = Dtype::parse("dtype", dtype).map_err(to_py)?;
            let pad = pad_spec(
                max_length,
                truncation,
                pad_to_max_length,
                pad_to_multiple_of,
                padding_side,
            )?;
            let Some([ids, attn, spec]) = example_columns(examples)? else {
                return Ok(None);
            };
            let name = |key: &str| format!("examples[{{row}}]['{key}']");
            let ids = ids.unwrap_or_default();
            let (values, offsets) = flatten_rows(
                &ids,
                "input_ids",
                Some(&name("input_ids")),
                false,
                None,
                |v| v,
            )?;
            let mask = |rows: Option<Vec<Bound<'py, PyAny>>>, arg: &str| {
                rows.map(|r| {
                    flatten_rows(&r, arg, Some(&name(arg)), true, None, |v| u8::from(v != 0))
                })
                .transpose()
            };
            let attn = mask(attn, "attention_mask")?;
            let spec = mask(spec, "special_tokens_mask")?;
            self.run(
                py,
                IdRows::Flat { values, offsets },
                Planes {
                    attn,
                    spec,
                    words: None,
                    bounds: None,
                },
                &Batch {
                    keys: row_keys(&None, batch_index),
                    streams: Streams::new(seed, epoch, PURPOSE),
                    pad,
                    dtype,
                    num_threads,
                },
                allocate,
            )
            .map(Some)
        })
    }

    /// Pickles as `functools.partial(MlmMasker, **arguments)()`.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        crate::errors::guarded(move || {
            let py = slf.py();
            let kwargs = slf.get().args.kwargs(py)?;
            let partial = py
                .import("functools")?
                .getattr("partial")?
                .call((slf.get_type(),), Some(&kwargs))?;
            (partial, PyTuple::empty(py)).into_pyobject(py)
        })
    }

    fn __repr__(&self) -> PyResult<String> {
        crate::errors::guarded(move || {
            Ok({
                let a = &self.args;
                let py_bool = |b: bool| if b { "True" } else { "False" };
                let mut s = format!(
                    "MlmMasker(vocab_size={}, mask_token_id={}, pad_token_id={}, special_token_ids={:?}, \
             mlm_probability={}, mask_replace_prob={}, random_replace_prob={}, exact_budget={}, \
             max_predictions={}, unit='{}', replace_by='{}'",
                    a.vocab_size,
                    a.mask_token_id,
                    a.pad_token_id,
                    a.special_token_ids,
                    a.mlm_probability,
                    a.mask_replace_prob,
                    a.random_replace_prob,
                    py_bool(a.exact_budget),
                    a.max_predictions
                        .map_or("None".to_string(), |m| m.to_string()),
                    a.unit,
                    a.replace_by,
                );
                match a.unit.as_str() {
                    "span" => {
                        s += &format!(
                            ", geometric_p={}, span_lower={}, span_upper={}",
                            a.geometric_p, a.span_lower, a.span_upper
                        )
                    }
                    "ngram" => {
                        s += &format!(
                            ", ngram={}, favor_shorter_ngram={}",
                            a.ngram,
                            py_bool(a.favor_shorter_ngram)
                        )
                    }
                    _ => {}
                }
                if a.word_starts.is_some() {
                    s += ", word_starts=<table>";
                }
                if a.position_sampling != "without_replacement" {
                    s += &format!(", position_sampling='{}'", a.position_sampling);
                }
                if a.recipe != "lmobjectives" {
                    s += &format!(", recipe='{}'", a.recipe);
                }
                if a.token_counts.is_some() {
                    s += ", token_counts=<counts>";
                }
                s + ")"
            })
        })
    }
}
