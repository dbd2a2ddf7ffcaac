//! Per-token KL estimators (Schulman, "Approximating KL divergence"; TRL's `kl_estimator`)
//! of KL(π ‖ π_ref) from the log-probabilities of tokens sampled from π.
//!
//! With `d = log π_ref(a) − log π(a)`:
//! - `k1 = −d` — unbiased, can be negative per token (and its sum, when generation settings
//!   make the samples not come from π: TRL #235/#736/#925);
//! - `k2 = d²/2` — biased, low variance, non-negative;
//! - `k3 = exp(d) − d − 1` — unbiased and non-negative (GRPO's in-loss KL).
//!
//! Outputs are 0 outside the mask; the per-row sums are the sequence-level estimates.

use super::{Grid, Real, check_finite_masked};
use crate::parallel::for_each_mut;
use crate::{CoreError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Estimator {
    K1,
    K2,
    K3,
}

impl Estimator {
    pub fn parse(arg: &str, s: &str) -> Result<Self> {
        match s {
            "k1" => Ok(Estimator::K1),
            "k2" => Ok(Estimator::K2),
            "k3" => Ok(Estimator::K3),
            other => Err(CoreError::invalid(
                arg,
                format!("must be 'k1', 'k2' or 'k3', got {other:?}"),
            )),
        }
    }

    /// The estimate for one token from `logp = log π(a)` and `ref_logp = log π_ref(a)`.
    #[inline]
    pub fn eval(self, logp: f64, ref_logp: f64) -> f64 {
        let d = ref_logp - logp;
        match self {
            Estimator::K1 => -d,
            Estimator::K2 => 0.5 * d * d,
            Estimator::K3 => k3(d),
        }
    }
}

/// `exp(d) − 1 − d`, accurate to a few ulps for every `d` and never negative: near 0 (where
/// the subtraction would cancel) by its Taylor series `d²·Σ_{n≥2} d^(n−2)/n!` to n = 18
/// (truncation < 1e-19 relative for |d| < 1/2); elsewhere directly with `exp` (several times
/// faster than `exp_m1`; the result is > 0.1 there, so the subtraction loses nothing).
#[inline]
fn k3(d: f64) -> f64 {
    if d.abs() < 0.5 {
        // 1/n! for n = 2..=18
        const INV_FACT: [f64; 17] = [
            1.0 / 2.0,
            1.0 / 6.0,
            1.0 / 24.0,
            1.0 / 120.0,
            1.0 / 720.0,
            1.0 / 5_040.0,
            1.0 / 40_320.0,
            1.0 / 362_880.0,
            1.0 / 3_628_800.0,
            1.0 / 39_916_800.0,
            1.0 / 479_001_600.0,
            1.0 / 6_227_020_800.0,
            1.0 / 87_178_291_200.0,
            1.0 / 1_307_674_368_000.0,
            1.0 / 20_922_789_888_000.0,
            1.0 / 355_687_428_096_000.0,
            1.0 / 6_402_373_705_728_000.0,
        ];
        let mut s = 0.0;
        for c in INV_FACT.iter().rev() {
            s = s * d + c;
        }
        d * d * s
    } else {
        (d.exp() - 1.0 - d).max(0.0)
    }
}

/// Per-token estimates (`rows × cols`, 0 outside the mask) and their per-row sums.
pub fn kl_per_token<T: Real>(
    logprobs: &Grid<'_, T>,
    ref_logprobs: &Grid<'_, T>,
    mask: &Grid<'_, bool>,
    estimator: Estimator,
    threads: usize,
) -> Result<(Vec<T>, Vec<T>)> {
    logprobs.check_same_shape("logprobs", "ref_logprobs", ref_logprobs)?;
    logprobs.check_same_shape("logprobs", "mask", mask)?;
    check_finite_masked("logprobs", logprobs, mask)?;
    check_finite_masked("ref_logprobs", ref_logprobs, mask)?;
    let (rows, cols) = logprobs.shape();
    let mut out = vec![T::ZERO; rows * cols];
    let mut sums = vec![T::ZERO; rows];
    if cols == 0 {
        return Ok((out, sums));
    }
    let mut items: Vec<(&mut [T], &mut T)> = out.chunks_mut(cols).zip(sums.iter_mut()).collect();
    for_each_mut(
        super::grid_threads(threads, rows, cols),
        &mut items,
        |r, (o, s)| {
            let (p, q, m) = (logprobs.row(r), ref_logprobs.row(r), mask.row(r));
            let mut total = 0.0f64;
            // Branch-free: unmasked values are computed and discarded (never read into
            // the result, so NaN there is harmless).
            for t in 0..cols {
                let k = estimator.eval(p[t].to_f64(), q[t].to_f64());
                let k = if m[t] { k } else { 0.0 };
                o[t] = T::from_f64(k);
                total += k;
            }
            **s = T::from_f64(total);
        },
    )?;
    Ok((out, sums))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimators_by_hand() {
        let (p, q) = (-1.0f64, -1.5f64); // d = -0.5
        assert_eq!(Estimator::K1.eval(p, q), 0.5);
        assert_eq!(Estimator::K2.eval(p, q), 0.125);
        let k3 = (-0.5f64).exp() + 0.5 - 1.0;
        assert!((Estimator::K3.eval(p, q) - k3).abs() < 1e-15);
        assert_eq!(Estimator::K3.eval(-2.0, -2.0), 0.0);
    }

    #[test]
    fn k3_equals_the_exp_m1_form_everywhere() {
        // `exp_m1(d) − d` is itself accurate only to about ε·|d| in absolute terms (its
        // subtraction cancels), so the two agree within that.
        let check = |d: f64| {
            let want = d.exp_m1() - d;
            let got = Estimator::K3.eval(0.0, d);
            assert!(got >= 0.0);
            let tol = 1e-14 * want.abs() + 2.0 * f64::EPSILON * d.abs();
            assert!((got - want).abs() <= tol, "{d}: {got} {want}");
        };
        let mut d = -30.0f64;
        while d < 30.0 {
            check(d);
            d += 0.0137;
        }
        for d in [1e-300f64, -1e-12, 1e-8, 0.4999, -0.4999, 0.5, -0.5, 0.125] {
            check(d);
        }
        // Near 0 the series keeps full relative precision: d²/2·(1 + d/3) up to O(d⁴).
        for d in [1e-8f64, -1e-9, 1e-150] {
            let want = d * d / 2.0 * (1.0 + d / 3.0);
            let got = Estimator::K3.eval(0.0, d);
            assert!(
                (got - want).abs() <= 4.0 * f64::EPSILON * want,
                "{d}: {got} {want}"
            );
        }
    }

    #[test]
    fn masked_positions_are_zero_and_never_read() {
        let p = [-1.0f32, f32::NAN, -0.5];
        let q = [-1.0f32, 3.0, -0.25];
        let m = [true, false, true];
        let g = |v| Grid::new("x", v, 1, 3).unwrap();
        let (k, s) = kl_per_token(
            &g(&p[..]),
            &g(&q[..]),
            &Grid::new("m", &m[..], 1, 3).unwrap(),
            Estimator::K1,
            1,
        )
        .unwrap();
        assert_eq!(k, [0.0, 0.0, -0.25]);
        assert_eq!(s, [-0.25]);
    }
}
