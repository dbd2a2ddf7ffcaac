//! Sequence-level RL bookkeeping: completion masks, returns, GAE, whitening, group baselines,
//! KL estimators, BLEU, rollout index maps. Float arrays are float32 or float64 (all of one
//! call the same), read in place; masks are bool arrays; outputs are moved into NumPy.

use lmobjectives_core::batch::Side;
use lmobjectives_core::rl::groups::{Baseline, NanPolicy, Scale, group_advantages, group_indices};
use lmobjectives_core::rl::kl::{Estimator, kl_per_token};
use lmobjectives_core::rl::masks::{CompletionSpec, completion_mask as completion_kernel};
use lmobjectives_core::rl::ngrams::{
    BleuSpec, Smoothing, bleu as bleu_kernel, self_bleu as self_bleu_kernel,
};
use lmobjectives_core::rl::returns::{
    clip_masked as clip_kernel, discounted_returns as rtg_kernel, gae as gae_kernel,
    whiten as whiten_kernel,
};
use lmobjectives_core::rl::rollout::{Order, plan, scatter};
use lmobjectives_core::rl::{Grid, Real};
use numpy::{
    Element, IntoPyArray, PyArray1, PyArray2, PyArrayDescrMethods, PyArrayMethods,
    PyReadonlyArray1, PyReadonlyArray2, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert::{id_rows, to_numpy2};
use crate::errors::{detached, to_py};
use crate::with_rows;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Float {
    F32,
    F64,
}

fn describe(obj: &Bound<'_, PyAny>) -> String {
    match obj.cast::<PyUntypedArray>() {
        Ok(a) => format!("a {}-D {} array", a.ndim(), a.dtype()),
        Err(_) => obj
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into()),
    }
}

/// The float type of `obj` (a float32 or float64 NumPy array).
fn float_kind(obj: &Bound<'_, PyAny>, arg: &str) -> PyResult<Float> {
    let a = obj.cast::<PyUntypedArray>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{arg}: expected a NumPy array, got {}",
            describe(obj)
        ))
    })?;
    let dt = a.dtype();
    if dt.is_equiv_to(&numpy::dtype::<f64>(obj.py())) {
        Ok(Float::F64)
    } else if dt.is_equiv_to(&numpy::dtype::<f32>(obj.py())) {
        Ok(Float::F32)
    } else {
        Err(PyTypeError::new_err(format!(
            "{arg}: expected a float32 or float64 array, got {}",
            describe(obj)
        )))
    }
}

fn arr2<'py, T: Element>(obj: &Bound<'py, PyAny>, arg: &str) -> PyResult<PyReadonlyArray2<'py, T>> {
    let a = obj.cast::<PyArray2<T>>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{arg}: expected a 2-D {} array, got {}",
            numpy::dtype::<T>(obj.py()),
            describe(obj)
        ))
    })?;
    Ok(a.readonly())
}

fn arr1<'py, T: Element>(obj: &Bound<'py, PyAny>, arg: &str) -> PyResult<PyReadonlyArray1<'py, T>> {
    let a = obj.cast::<PyArray1<T>>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{arg}: expected a 1-D {} array, got {}",
            numpy::dtype::<T>(obj.py()),
            describe(obj)
        ))
    })?;
    Ok(a.readonly())
}

fn grid<'a, T: Element>(a: &'a PyReadonlyArray2<'_, T>, arg: &str) -> PyResult<Grid<'a, T>> {
    let (rows, cols) = (a.shape()[0], a.shape()[1]);
    let values = a
        .as_slice()
        .map_err(|_| PyValueError::new_err(format!("{arg}: must be C-contiguous")))?;
    Grid::new(arg, values, rows, cols).map_err(to_py)
}

fn slice1<'a, T: Element>(a: &'a PyReadonlyArray1<'_, T>, arg: &str) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{arg}: must be contiguous")))
}

/// Runs `$body` with `$t` the float type of `$obj` (`f32` or `f64`).
macro_rules! with_float {
    ($obj:expr, $arg:expr, |$t:ident| $body:expr) => {{
        match float_kind($obj, $arg)? {
            Float::F64 => {
                type $t = f64;
                $body
            }
            Float::F32 => {
                type $t = f32;
                $body
            }
        }
    }};
}

// -- completion masks -------------------------------------------------------------------------

fn completion_impl<'py, T: Element + lmobjectives_core::batch::TokenId>(
    py: Python<'py>,
    ids: &Bound<'py, PyArray2<T>>,
    attention: Option<&Grid<'_, bool>>,
    starts: Option<Vec<usize>>,
    spec: &CompletionSpec,
    num_threads: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let ro = ids.readonly();
    let g = grid(&ro, "ids")?;
    let starts = starts.unwrap_or_else(|| vec![0; g.rows]);
    let (rows, cols) = g.shape();
    let c = detached(py, || {
        completion_kernel(&g, attention, &starts, spec, num_threads)
    })?;
    let out = PyDict::new(py);
    out.set_item("mask", to_numpy2(py, rows, cols, c.mask)?)?;
    out.set_item("lengths", c.lengths.into_pyarray(py))?;
    out.set_item("first", c.first.into_pyarray(py))?;
    out.set_item("last", c.last.into_pyarray(py))?;
    out.set_item("truncated", c.truncated.into_pyarray(py))?;
    Ok(out)
}

/// Completion masks of a 2-D array of token ids: see `lmobjectives.rl.completion_mask`.
#[pyfunction]
#[pyo3(signature = (
    ids, eos_token_ids, *, pad_token_id=None, attention_mask=None, completion_start=None,
    padding_side="right", include_eos=true, mask_truncated=false, num_threads=0,
))]
#[allow(clippy::too_many_arguments)]
pub fn completion_mask<'py>(
    py: Python<'py>,
    ids: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = crate::args::ints)] eos_token_ids: Vec<i64>,
    #[pyo3(from_py_with = crate::args::opt_int)] pad_token_id: Option<i64>,
    attention_mask: Option<&Bound<'py, PyAny>>,
    #[pyo3(from_py_with = crate::args::opt_ints)] completion_start: Option<Vec<usize>>,
    padding_side: &str,
    include_eos: bool,
    mask_truncated: bool,
    #[pyo3(from_py_with = crate::args::int)] num_threads: usize,
) -> PyResult<Bound<'py, PyDict>> {
    crate::errors::guarded(move || {
        let spec = CompletionSpec {
            eos_token_ids,
            pad_token_id,
            side: Side::parse("padding_side", padding_side).map_err(to_py)?,
            include_eos,
            mask_truncated,
        };
        let att_ro = attention_mask
            .map(|a| arr2::<bool>(a, "attention_mask"))
            .transpose()?;
        let att = att_ro
            .as_ref()
            .map(|a| grid(a, "attention_mask"))
            .transpose()?;
        let arr = ids.cast::<PyUntypedArray>().map_err(|_| {
            PyTypeError::new_err(format!(
                "ids: expected a 2-D integer array, got {}",
                describe(ids)
            ))
        })?;
        if arr.ndim() != 2 {
            return Err(PyValueError::new_err(format!(
                "ids: expected a 2-D array, got {}",
                describe(ids)
            )));
        }
        macro_rules! arm {
        ($($t:ty),*) => {$(
            if let Ok(a) = ids.cast::<PyArray2<$t>>() {
                return completion_impl::<$t>(py, a, att.as_ref(), completion_start, &spec, num_threads);
            }
        )*};
    }
        arm!(i64, i32, u32, u16, i16, u8, i8, u64);
        Err(PyTypeError::new_err(format!(
            "ids: expected an integer array, got {}",
            describe(ids)
        )))
    })
}

// -- returns ----------------------------------------------------------------------------------

fn rtg_impl<'py, T: Real + Element>(
    py: Python<'py>,
    rewards: &Bound<'py, PyAny>,
    mask: &Bound<'py, PyAny>,
    gamma: f64,
    num_threads: usize,
) -> PyResult<Bound<'py, PyArray2<T>>> {
    let (r, m) = (arr2::<T>(rewards, "rewards")?, arr2::<bool>(mask, "mask")?);
    let (r, m) = (grid(&r, "rewards")?, grid(&m, "mask")?);
    let out = detached(py, || rtg_kernel(&r, &m, gamma, num_threads))?;
    to_numpy2(py, r.rows, r.cols, out)
}

/// Discounted reward-to-go over the masked steps of each row.
#[pyfunction]
#[pyo3(signature = (rewards, mask, *, gamma, num_threads=0))]
pub fn discounted_returns<'py>(
    py: Python<'py>,
    rewards: &Bound<'py, PyAny>,
    mask: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = crate::args::float)] gamma: f64,
    #[pyo3(from_py_with = crate::args::int)] num_threads: usize,
) -> PyResult<Bound<'py, PyAny>> {
    crate::errors::guarded(move || {
        with_float!(rewards, "rewards", |F| Ok(rtg_impl::<F>(
            py,
            rewards,
            mask,
            gamma,
            num_threads
        )?
        .into_any()))
    })
}

type Pair<'py, T> = (Bound<'py, PyArray2<T>>, Bound<'py, PyArray2<T>>);

#[allow(clippy::too_many_arguments)]
fn gae_impl<'py, T: Real + Element>(
    py: Python<'py>,
    rewards: &Bound<'py, PyAny>,
    values: &Bound<'py, PyAny>,
    mask: &Bound<'py, PyAny>,
    bootstrap: Option<&Bound<'py, PyAny>>,
    gamma: f64,
    lam: f64,
    num_threads: usize,
) -> PyResult<Pair<'py, T>> {
    let r = arr2::<T>(rewards, "rewards")?;
    let v = arr2::<T>(values, "values")?;
    let m = arr2::<bool>(mask, "mask")?;
    let b = bootstrap.map(|b| arr1::<T>(b, "bootstrap")).transpose()?;
    let (r, v, m) = (grid(&r, "rewards")?, grid(&v, "values")?, grid(&m, "mask")?);
    let b = b.as_ref().map(|b| slice1(b, "bootstrap")).transpose()?;
    let (adv, ret) = detached(py, || gae_kernel(&r, &v, &m, b, gamma, lam, num_threads))?;
    Ok((
        to_numpy2(py, r.rows, r.cols, adv)?,
        to_numpy2(py, r.rows, r.cols, ret)?,
    ))
}

/// GAE advantages and value targets `(advantages, returns)`.
#[pyfunction]
#[pyo3(signature = (rewards, values, mask, *, gamma, lam, bootstrap=None, num_threads=0))]
#[allow(clippy::too_many_arguments)]
pub fn gae<'py>(
    py: Python<'py>,
    rewards: &Bound<'py, PyAny>,
    values: &Bound<'py, PyAny>,
    mask: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = crate::args::float)] gamma: f64,
    #[pyo3(from_py_with = crate::args::float)] lam: f64,
    bootstrap: Option<&Bound<'py, PyAny>>,
    #[pyo3(from_py_with = crate::args::int)] num_threads: usize,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    crate::errors::guarded(move || {
        with_float!(rewards, "rewards", |F| {
            let (a, g) = gae_impl::<F>(
                py,
                rewards,
                values,
                mask,
                bootstrap,
                gamma,
                lam,
                num_threads,
            )?;
            Ok((a.into_any(), g.into_any()))
        })
    })
}

fn whiten_impl<'py, T: Real + Element>(
    py: Python<'py>,
    values: &Bound<'py, PyAny>,
    mask: &Bound<'py, PyAny>,
    shift_mean: bool,
    unbiased: bool,
    eps: f64,
    num_threads: usize,
) -> PyResult<(Bound<'py, PyArray2<T>>, f64, f64)> {
    let (x, m) = (arr2::<T>(values, "values")?, arr2::<bool>(mask, "mask")?);
    let (x, m) = (grid(&x, "values")?, grid(&m, "mask")?);
    let (out, mean, var) = detached(py, || {
        whiten_kernel(&x, &m, shift_mean, unbiased, eps, num_threads)
    })?;
    Ok((to_numpy2(py, x.rows, x.cols, out)?, mean, var))
}

/// Whitening over every masked value of the batch: `(whitened, mean, var)`.
#[pyfunction]
#[pyo3(signature = (values, mask, *, shift_mean=true, unbiased=true, eps=1e-8, num_threads=0))]
pub fn whiten<'py>(
    py: Python<'py>,
    values: &Bound<'py, PyAny>,
    mask: &Bound<'py, PyAny>,
    shift_mean: bool,
    unbiased: bool,
    #[pyo3(from_py_with = crate::args::float)] eps: f64,
    #[pyo3(from_py_with = crate::args::int)] num_threads: usize,
) -> PyResult<(Bound<'py, PyAny>, f64, f64)> {
    crate::errors::guarded(move || {
        with_float!(values, "values", |F| {
            let (w, m, v) =
                whiten_impl::<F>(py, values, mask, shift_mean, unbiased, eps, num_threads)?;
            Ok((w.into_any(), m, v))
        })
    })
}

fn clip_impl<'py, T: Real + Element>(
    py: Python<'py>,
    values: &Bound<'py, PyAny>,
    mask: &Bound<'py, PyAny>,
    bound: f64,
    num_threads: usize,
) -> PyResult<Bound<'py, PyArray2<T>>> {
    let (x, m) = (arr2::<T>(values, "values")?, arr2::<bool>(mask, "mask")?);
    let (x, m) = (grid(&x, "values")?, grid(&m, "mask")?);
    let out = detached(py, || clip_kernel(&x, &m, bound, num_threads))?;
    to_numpy2(py, x.rows, x.cols, out)
}

/// `clip(values, −bound, bound)` on the mask, 0 elsewhere.
#[pyfunction]
#[pyo3(signature = (values, mask, *, bound, num_threads=0))]
pub fn clip_masked<'py>(
    py: Python<'py>,
    values: &Bound<'py, PyAny>,
    mask: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = crate::args::float)] bound: f64,
    #[pyo3(from_py_with = crate::args::int)] num_threads: usize,
) -> PyResult<Bound<'py, PyAny>> {
    crate::errors::guarded(move || {
        with_float!(values, "values", |F| Ok(clip_impl::<F>(
            py,
            values,
            mask,
            bound,
            num_threads
        )?
        .into_any()))
    })
}

// -- group baselines --------------------------------------------------------------------------

type Triple<'py, T> = (
    Bound<'py, PyArray1<T>>,
    Bound<'py, PyArray1<T>>,
    Bound<'py, PyArray1<T>>,
);

#[allow(clippy::too_many_arguments)]
fn groups_impl<'py, T: Real + Element>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    groups: &[usize],
    num_groups: usize,
    baseline: Baseline,
    scale: Scale,
    eps: f64,
    nan: NanPolicy,
) -> PyResult<Triple<'py, T>> {
    let s = arr1::<T>(scores, "scores")?;
    let s = slice1(&s, "scores")?;
    let out = detached(py, || {
        group_advantages(s, groups, num_groups, baseline, scale, eps, nan)
    })?;
    Ok((
        out.advantages.into_pyarray(py),
        out.baseline.into_pyarray(py),
        out.std.into_pyarray(py),
    ))
}

/// Group advantages `(advantages, baseline, std)` of one score per row.
#[pyfunction]
#[pyo3(signature = (scores, groups, num_groups, *, baseline="mean", scale="group", eps=1e-4, nan="raise"))]
#[allow(clippy::too_many_arguments)]
#[pyo3(name = "group_advantages")]
pub fn group_advantages_py<'py>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    groups: PyReadonlyArray1<'py, i64>,
    #[pyo3(from_py_with = crate::args::int)] num_groups: usize,
    baseline: &str,
    scale: &str,
    #[pyo3(from_py_with = crate::args::float)] eps: f64,
    nan: &str,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    crate::errors::guarded(move || {
        let baseline = Baseline::parse("baseline", baseline).map_err(to_py)?;
        let scale = Scale::parse("scale", scale).map_err(to_py)?;
        let nan = NanPolicy::parse("nan", nan).map_err(to_py)?;
        let g = group_indices("groups", &groups.as_array().to_vec()).map_err(to_py)?;
        with_float!(scores, "scores", |F| {
            let (a, b, s) =
                groups_impl::<F>(py, scores, &g, num_groups, baseline, scale, eps, nan)?;
            Ok((a.into_any(), b.into_any(), s.into_any()))
        })
    })
}

// -- KL ---------------------------------------------------------------------------------------

/// Per-token values `[rows, cols]` and per-row sums `[rows]`.
type PerTokenAndRow<'py, T> = (Bound<'py, PyArray2<T>>, Bound<'py, PyArray1<T>>);

fn kl_impl<'py, T: Real + Element>(
    py: Python<'py>,
    logprobs: &Bound<'py, PyAny>,
    ref_logprobs: &Bound<'py, PyAny>,
    mask: &Bound<'py, PyAny>,
    estimator: Estimator,
    num_threads: usize,
) -> PyResult<PerTokenAndRow<'py, T>> {
    let p = arr2::<T>(logprobs, "logprobs")?;
    let q = arr2::<T>(ref_logprobs, "ref_logprobs")?;
    let m = arr2::<bool>(mask, "mask")?;
    let (p, q, m) = (
        grid(&p, "logprobs")?,
        grid(&q, "ref_logprobs")?,
        grid(&m, "mask")?,
    );
    let (k, s) = detached(py, || kl_per_token(&p, &q, &m, estimator, num_threads))?;
    Ok((to_numpy2(py, p.rows, p.cols, k)?, s.into_pyarray(py)))
}

/// Per-token KL estimates and per-row sums.
#[pyfunction]
#[pyo3(signature = (logprobs, ref_logprobs, mask, *, estimator="k1", num_threads=0))]
pub fn kl_estimate<'py>(
    py: Python<'py>,
    logprobs: &Bound<'py, PyAny>,
    ref_logprobs: &Bound<'py, PyAny>,
    mask: &Bound<'py, PyAny>,
    estimator: &str,
    #[pyo3(from_py_with = crate::args::int)] num_threads: usize,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    crate::errors::guarded(move || {
        let est = Estimator::parse("estimator", estimator).map_err(to_py)?;
        with_float!(logprobs, "logprobs", |F| {
            let (k, s) = kl_impl::<F>(py, logprobs, ref_logprobs, mask, est, num_threads)?;
            Ok((k.into_any(), s.into_any()))
        })
    })
}

// -- BLEU -------------------------------------------------------------------------------------

fn bleu_spec(weights: Vec<f64>, smoothing: &str, epsilon: f64) -> PyResult<BleuSpec> {
    let smoothing = Smoothing::parse("smoothing", smoothing, epsilon).map_err(to_py)?;
    BleuSpec::new(weights, smoothing).map_err(to_py)
}

/// Sentence BLEU of each hypothesis against the whole reference set (float64 per hypothesis).
#[pyfunction]
#[pyo3(signature = (hypotheses, references, *, weights, smoothing="method1", epsilon=0.1, num_threads=0))]
pub fn bleu<'py>(
    py: Python<'py>,
    hypotheses: &Bound<'py, PyAny>,
    references: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = crate::args::floats)] weights: Vec<f64>,
    smoothing: &str,
    #[pyo3(from_py_with = crate::args::float)] epsilon: f64,
    #[pyo3(from_py_with = crate::args::int)] num_threads: usize,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    crate::errors::guarded(move || {
        let spec = bleu_spec(weights, smoothing, epsilon)?;
        let h = id_rows(hypotheses, "hypotheses", None)?;
        let r = id_rows(references, "references", None)?;
        let out = with_rows!(h, "hypotheses", |hr| {
            with_rows!(r, "references", |rr| detached(py, || bleu_kernel(
                &hr,
                &rr,
                &spec,
                num_threads
            )))
        })?;
        Ok(out.into_pyarray(py))
    })
}

/// Self-BLEU of each sample against all the others (float64 per sample).
#[pyfunction]
#[pyo3(signature = (samples, *, weights, smoothing="method1", epsilon=0.1, num_threads=0))]
pub fn self_bleu<'py>(
    py: Python<'py>,
    samples: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = crate::args::floats)] weights: Vec<f64>,
    smoothing: &str,
    #[pyo3(from_py_with = crate::args::float)] epsilon: f64,
    #[pyo3(from_py_with = crate::args::int)] num_threads: usize,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    crate::errors::guarded(move || {
        let spec = bleu_spec(weights, smoothing, epsilon)?;
        let s = id_rows(samples, "samples", None)?;
        let out = with_rows!(s, "samples", |sr| detached(py, || self_bleu_kernel(
            &sr,
            &spec,
            num_threads
        )))?;
        Ok(out.into_pyarray(py))
    })
}

// -- rollouts ---------------------------------------------------------------------------------

/// The MC rollout plan `(sample, prefix_length, rollout)` (int64 arrays, one row each).
/// `(sample, prefix_length, rollout)` of a rollout plan.
type PlanArrays<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
);

#[pyfunction]
#[pyo3(signature = (lengths, num_rollouts, *, order="prefix_major"))]
pub fn rollout_plan<'py>(
    py: Python<'py>,
    #[pyo3(from_py_with = crate::args::ints)] lengths: Vec<usize>,
    #[pyo3(from_py_with = crate::args::int)] num_rollouts: usize,
    order: &str,
) -> PyResult<PlanArrays<'py>> {
    crate::errors::guarded(move || {
        let order = Order::parse("order", order).map_err(to_py)?;
        let p = plan(&lengths, num_rollouts, order).map_err(to_py)?;
        Ok((
            p.sample.into_pyarray(py),
            p.prefix_length.into_pyarray(py),
            p.rollout.into_pyarray(py),
        ))
    })
}

fn scatter_impl<'py, T: Real + Element>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    sample: &[i64],
    prefix_length: &[i64],
    lengths: &[usize],
    final_scores: &Bound<'py, PyAny>,
    cols: usize,
) -> PyResult<Bound<'py, PyArray2<T>>> {
    let s = arr1::<T>(scores, "scores")?;
    let f = arr1::<T>(final_scores, "final_scores")?;
    let (s, f) = (slice1(&s, "scores")?, slice1(&f, "final_scores")?);
    let q = detached(py, || scatter(s, sample, prefix_length, lengths, f, cols))?;
    to_numpy2(py, lengths.len(), cols, q)
}

/// Scatters rollout scores back to per-token rewards `[samples, cols]`.
#[pyfunction]
#[pyo3(signature = (scores, sample, prefix_length, lengths, final_scores, cols))]
pub fn rollout_scatter<'py>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    sample: PyReadonlyArray1<'py, i64>,
    prefix_length: PyReadonlyArray1<'py, i64>,
    #[pyo3(from_py_with = crate::args::ints)] lengths: Vec<usize>,
    final_scores: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = crate::args::int)] cols: usize,
) -> PyResult<Bound<'py, PyAny>> {
    crate::errors::guarded(move || {
        let sample = slice1(&sample, "sample")?;
        let prefix = slice1(&prefix_length, "prefix_length")?;
        with_float!(scores, "scores", |F| Ok(scatter_impl::<F>(
            py,
            scores,
            sample,
            prefix,
            &lengths,
            final_scores,
            cols
        )?
        .into_any()))
    })
}
