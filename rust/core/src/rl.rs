//! Data-side bookkeeping of sequence-level RL objectives (policy gradient, actor-critic,
//! GRPO/RLOO, inverse RL, text GANs): the non-differentiable parts trainers get wrong.
//!
//! - [`masks`]: completion masks up to and including the first EOS, left or right padding, the
//!   index of the last real token (where a sequence-level score goes), truncation flags.
//! - [`returns`]: discounted reward-to-go, GAE(γ, λ), whitening over valid tokens, clipping.
//! - [`groups`]: group baselines (GRPO mean/std, RLOO leave-one-out) over rows of one prompt.
//! - [`kl`]: per-token KL estimators k1, k2, k3 from log-probability arrays.
//! - [`ngrams`]: BLEU (NLTK `sentence_bleu` with smoothing method 1) and self-BLEU.
//! - [`rollout`]: Monte-Carlo rollout index maps (SeqGAN-style Q(prefix) estimates) so rollout
//!   scores can never be misaligned with their sample and prefix.
//!
//! Layout: every per-token array is a dense row-major `rows × cols` grid ([`Grid`]) with a
//! boolean mask of the same shape. The *steps* of a row are its masked positions, in column
//! order: nothing depends on where the padding sits, so left- and right-padded batches give
//! the same numbers on their real tokens. Values at unmasked positions are never read (they
//! may be NaN, `INVALID_LOGPROB`, a value head's output on padding …) and outputs are 0 there.
//!
//! Numbers: inputs are `f32` or `f64` ([`Real`]); every accumulation runs in `f64` and the
//! output has the input's type. Reductions over the batch (whitening, batch std) add per-row
//! partial sums in row order, so results are identical for any thread count.

pub mod groups;
pub mod kl;
pub mod masks;
pub mod ngrams;
pub mod returns;
pub mod rollout;

use crate::{CoreError, Result};

/// A floating-point element type the kernels read and write (`f32` or `f64`).
pub trait Real: Copy + Send + Sync + PartialOrd + 'static {
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
    const ZERO: Self;
}

impl Real for f64 {
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline]
    fn from_f64(v: f64) -> Self {
        v
    }
    const ZERO: Self = 0.0;
}

impl Real for f32 {
    #[inline]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    #[inline]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    const ZERO: Self = 0.0;
}

/// A dense row-major `rows × cols` array (read in place from NumPy).
#[derive(Debug, Clone, Copy)]
pub struct Grid<'a, T> {
    pub values: &'a [T],
    pub rows: usize,
    pub cols: usize,
}

impl<'a, T> Grid<'a, T> {
    /// Checks that `values` holds exactly `rows × cols` elements.
    pub fn new(arg: &str, values: &'a [T], rows: usize, cols: usize) -> Result<Self> {
        if rows.checked_mul(cols) != Some(values.len()) {
            return Err(CoreError::shape(
                arg,
                format!(
                    "{} values do not make a {rows} × {cols} array",
                    values.len()
                ),
            ));
        }
        Ok(Self { values, rows, cols })
    }

    #[inline]
    pub fn row(&self, r: usize) -> &'a [T] {
        &self.values[r * self.cols..(r + 1) * self.cols]
    }

    #[inline]
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Checks that `other` has this grid's shape (`arg` names `other`, `like` names `self`).
    pub fn check_same_shape<U>(&self, like: &str, arg: &str, other: &Grid<'_, U>) -> Result<()> {
        if other.shape() != self.shape() {
            return Err(CoreError::shape(
                arg,
                format!(
                    "has shape ({}, {}) but {like} has shape ({}, {})",
                    other.rows, other.cols, self.rows, self.cols
                ),
            ));
        }
        Ok(())
    }
}

/// Checks that every value of `x` at a masked position is finite; names the first that is
/// not (row-major order) so errors are deterministic.
pub fn check_finite_masked<T: Real>(
    arg: &str,
    x: &Grid<'_, T>,
    mask: &Grid<'_, bool>,
) -> Result<()> {
    // A branch-free scan per block (vectorises); the position only when a block fails.
    const BLOCK: usize = 512;
    let blocks = x.values.chunks(BLOCK).zip(mask.values.chunks(BLOCK));
    for (b, (xs, ms)) in blocks.enumerate() {
        let bad = xs
            .iter()
            .zip(ms)
            .fold(false, |acc, (&v, &m)| acc | (m & !v.to_f64().is_finite()));
        if !bad {
            continue;
        }
        let j = xs
            .iter()
            .zip(ms)
            .position(|(&v, &m)| m && !v.to_f64().is_finite())
            .unwrap_or(0);
        let (i, v) = (b * BLOCK + j, xs[j]);
        return Err(CoreError::invalid(
            arg,
            format!(
                "non-finite value {} at row {}, position {} (inside the mask)",
                v.to_f64(),
                i / x.cols.max(1),
                i % x.cols.max(1)
            ),
        ));
    }
    Ok(())
}

/// Checks that every value of a 1-D array is finite.
pub fn check_finite<T: Real>(arg: &str, x: &[T]) -> Result<()> {
    if let Some(i) = x.iter().position(|v| !v.to_f64().is_finite()) {
        return Err(CoreError::invalid(
            arg,
            format!("non-finite value {} at index {i}", x[i].to_f64()),
        ));
    }
    Ok(())
}

/// Checks that `v` is a finite number in `[0, 1]` (a discount γ or a GAE λ).
pub fn check_unit(arg: &str, v: f64) -> Result<f64> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(CoreError::invalid(
            arg,
            format!("must be in [0, 1], got {v}"),
        ))
    }
}

/// Checks that `v` is finite and `> 0` (or `>= 0` when `allow_zero`).
pub fn check_positive(arg: &str, v: f64, allow_zero: bool) -> Result<f64> {
    let ok = v.is_finite() && (v > 0.0 || (allow_zero && v == 0.0));
    if ok {
        Ok(v)
    } else {
        let what = if allow_zero { ">= 0" } else { "> 0" };
        Err(CoreError::invalid(
            arg,
            format!("must be a finite number {what}, got {v}"),
        ))
    }
}

/// Threads worth using for a `rows × cols` job (about 32k elements per thread).
pub(crate) fn grid_threads(requested: usize, rows: usize, cols: usize) -> usize {
    crate::parallel::threads_for(requested, rows.saturating_mul(cols.max(1)), 1 << 15)
}
