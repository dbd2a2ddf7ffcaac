//! Group baselines: several completions of one prompt form a group, and each completion's
//! advantage is its score against the others'.
//!
//! - `Baseline::Mean` (GRPO): `b_i = mean_group(r)`.
//! - `Baseline::LeaveOneOut` (RLOO, "new self-critical"): `b_i = (Σ_group r − r_i)/(n − 1)`.
//!
//! Then `A_i = (r_i − b_i) / (s_i + eps)` where `s_i` is, by `Scale`: the group's standard
//! deviation (`Group`, GRPO's default), the whole batch's (`Batch`), or no division at all
//! (`None`, Dr. GRPO and RLOO). Standard deviations are Bessel-corrected, as `torch.std`.
//! A group whose scores are all equal gets advantages of exactly 0 (no round-off residue), so
//! such groups give exactly zero gradient (TRL #3857).
//!
//! NaN scores (an unscorable completion) are an error with `NanPolicy::Raise`; with
//! `NanPolicy::Zero` they are left out of every statistic and get advantage 0, as TRL does.
//! A group needs two scored members; with `Zero` a group left with fewer gets advantages 0.

use super::Real;
use crate::{CoreError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    Mean,
    LeaveOneOut,
}

impl Baseline {
    pub fn parse(arg: &str, s: &str) -> Result<Self> {
        match s {
            "mean" => Ok(Baseline::Mean),
            "leave_one_out" => Ok(Baseline::LeaveOneOut),
            other => Err(CoreError::invalid(
                arg,
                format!("must be 'mean' or 'leave_one_out', got {other:?}"),
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Group,
    Batch,
    None,
}

impl Scale {
    pub fn parse(arg: &str, s: &str) -> Result<Self> {
        match s {
            "group" => Ok(Scale::Group),
            "batch" => Ok(Scale::Batch),
            "none" => Ok(Scale::None),
            other => Err(CoreError::invalid(
                arg,
                format!("must be 'group', 'batch' or 'none', got {other:?}"),
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NanPolicy {
    Raise,
    Zero,
}

impl NanPolicy {
    pub fn parse(arg: &str, s: &str) -> Result<Self> {
        match s {
            "raise" => Ok(NanPolicy::Raise),
            "zero" => Ok(NanPolicy::Zero),
            other => Err(CoreError::invalid(
                arg,
                format!("must be 'raise' or 'zero', got {other:?}"),
            )),
        }
    }
}

/// Group indices given as signed integers (as NumPy holds them) as `usize`; a negative one
/// is an error naming `arg` and the row.
pub fn group_indices(arg: &str, groups: &[i64]) -> Result<Vec<usize>> {
    groups
        .iter()
        .enumerate()
        .map(|(i, &g)| {
            usize::try_from(g)
                .map_err(|_| CoreError::invalid(arg, format!("row {i} has group {g} < 0")))
        })
        .collect()
}

/// Advantages and the per-row statistics used.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupAdvantages<T> {
    pub advantages: Vec<T>,
    /// The baseline `b_i` of each row (NaN for an unscored row).
    pub baseline: Vec<T>,
    /// The divisor's standard deviation of each row's group (or the batch); 0 with `Scale::None`.
    pub std: Vec<T>,
}

#[derive(Clone, Copy, Default)]
struct Stats {
    n: usize,
    sum: f64,
    min: f64,
    max: f64,
}

/// Bessel-corrected standard deviation of `xs` around `mean` (0 for fewer than 2 values).
fn std_of(xs: impl Iterator<Item = f64>, mean: f64, n: usize) -> f64 {
    if n < 2 {
        return 0.0;
    }
    let ss: f64 = xs.map(|x| (x - mean) * (x - mean)).sum();
    (ss / (n as f64 - 1.0)).sqrt()
}

/// Group advantages of `scores` (one per row); `groups[i]` is row `i`'s group in
/// `0..num_groups`.
pub fn group_advantages<T: Real>(
    scores: &[T],
    groups: &[usize],
    num_groups: usize,
    baseline: Baseline,
    scale: Scale,
    eps: f64,
    nan: NanPolicy,
) -> Result<GroupAdvantages<T>> {
    super::check_positive("eps", eps, true)?;
    check_scores_and_groups(scores, groups, num_groups, nan)?;
    let st = group_stats(scores, groups, num_groups);
    if nan == NanPolicy::Raise
        && let Some(g) = st.iter().position(|e| e.n == 1)
    {
        return Err(CoreError::invalid(
            "groups",
            format!("group {g} has a single member; a group baseline needs at least 2"),
        ));
    }
    let mean: Vec<f64> = st.iter().map(Stats::mean).collect();
    let spread: Vec<f64> = match scale {
        Scale::Group => group_stds(scores, groups, &st, &mean),
        Scale::Batch => vec![batch_std(scores); num_groups],
        Scale::None => vec![0.0; num_groups],
    };
    let n = scores.len();
    let mut out = GroupAdvantages {
        advantages: vec![T::ZERO; n],
        baseline: vec![T::ZERO; n],
        std: vec![T::ZERO; n],
    };
    for (i, (score, &g)) in scores.iter().zip(groups).enumerate() {
        let s = spread[g];
        let (b, a) = advantage(score.to_f64(), &st[g], mean[g], s, baseline, scale, eps);
        out.std[i] = T::from_f64(s);
        out.baseline[i] = T::from_f64(b);
        out.advantages[i] = T::from_f64(a);
    }
    Ok(out)
}

/// Checks one group in range per score, and the scores: no infinity, and no NaN unless the
/// policy zeroes them.
fn check_scores_and_groups<T: Real>(
    scores: &[T],
    groups: &[usize],
    num_groups: usize,
    nan: NanPolicy,
) -> Result<()> {
    if groups.len() != scores.len() {
        return Err(CoreError::shape(
            "groups",
            format!(
                "has {} entries but scores has {}",
                groups.len(),
                scores.len()
            ),
        ));
    }
    if let Some(i) = groups.iter().position(|&g| g >= num_groups) {
        return Err(CoreError::invalid(
            "groups",
            format!(
                "row {i} is in group {} but there are {num_groups} groups",
                groups[i]
            ),
        ));
    }
    for (i, s) in scores.iter().enumerate() {
        let v = s.to_f64();
        if v.is_nan() && nan == NanPolicy::Raise {
            return Err(CoreError::invalid(
                "scores",
                format!(
                    "score {i} is NaN (pass nan='zero' to give unscored completions advantage 0)"
                ),
            ));
        }
        if v.is_infinite() {
            return Err(CoreError::invalid("scores", format!("score {i} is {v}")));
        }
    }
    Ok(())
}

/// Count, sum, min and max of each group's scored (non-NaN) members.
fn group_stats<T: Real>(scores: &[T], groups: &[usize], num_groups: usize) -> Vec<Stats> {
    let mut st = vec![
        Stats {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            ..Stats::default()
        };
        num_groups
    ];
    for (s, &g) in scores.iter().zip(groups) {
        let v = s.to_f64();
        if v.is_nan() {
            continue;
        }
        let e = &mut st[g];
        e.n += 1;
        e.sum += v;
        e.min = e.min.min(v);
        e.max = e.max.max(v);
    }
    st
}

impl Stats {
    /// The mean (NaN for an empty group); an all-equal group has its exact value as mean
    /// (no round-off).
    fn mean(&self) -> f64 {
        if self.n == 0 {
            f64::NAN
        } else if self.min == self.max {
            self.min
        } else {
            self.sum / self.n as f64
        }
    }
}

/// Each group's standard deviation (0 for fewer than 2 members or all equal).
fn group_stds<T: Real>(scores: &[T], groups: &[usize], st: &[Stats], mean: &[f64]) -> Vec<f64> {
    let mut ss = vec![0.0f64; st.len()];
    for (s, &g) in scores.iter().zip(groups) {
        let v = s.to_f64();
        if !v.is_nan() {
            ss[g] += (v - mean[g]) * (v - mean[g]);
        }
    }
    st.iter()
        .zip(&ss)
        .map(|(e, &q)| {
            if e.n < 2 || e.min == e.max {
                0.0
            } else {
                (q / (e.n as f64 - 1.0)).sqrt()
            }
        })
        .collect()
}

/// The standard deviation of every scored member of the batch.
fn batch_std<T: Real>(scores: &[T]) -> f64 {
    let finite: Vec<f64> = scores
        .iter()
        .map(|s| s.to_f64())
        .filter(|v| !v.is_nan())
        .collect();
    let n = finite.len();
    let m = finite.iter().sum::<f64>() / n.max(1) as f64;
    std_of(finite.iter().copied(), m, n)
}

/// `(baseline, advantage)` of a row scoring `v` in a group of `stats` and `mean`, the
/// centred score divided by `s + eps` (unless `scale` is `None`). An unscored row, or one
/// in a group of fewer than 2 scored members, gets advantage 0.
fn advantage(
    v: f64,
    e: &Stats,
    mean: f64,
    s: f64,
    baseline: Baseline,
    scale: Scale,
    eps: f64,
) -> (f64, f64) {
    if v.is_nan() || e.n < 2 {
        return (if v.is_nan() { f64::NAN } else { mean }, 0.0);
    }
    let b = match baseline {
        Baseline::Mean => mean,
        Baseline::LeaveOneOut if e.min == e.max => e.min,
        Baseline::LeaveOneOut => (e.sum - v) / (e.n as f64 - 1.0),
    };
    let centred = if e.min == e.max { 0.0 } else { v - b };
    let a = match scale {
        _ if centred == 0.0 => 0.0,
        Scale::None => centred,
        _ => centred / (s + eps),
    };
    (b, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpo_and_rloo_by_hand() {
        let r = [1.0f64, 2.0, 3.0, 5.0, 5.0, 5.0];
        let g = [0, 0, 0, 1, 1, 1];
        let a = group_advantages(
            &r,
            &g,
            2,
            Baseline::Mean,
            Scale::Group,
            0.0,
            NanPolicy::Raise,
        )
        .unwrap();
        assert_eq!(a.advantages, [-1.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
        let a = group_advantages(
            &r,
            &g,
            2,
            Baseline::LeaveOneOut,
            Scale::None,
            0.0,
            NanPolicy::Raise,
        )
        .unwrap();
        assert_eq!(a.advantages, [-1.5, 0.0, 1.5, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn all_equal_group_is_exactly_zero() {
        let r = [0.1f64, 0.1, 0.1, 0.7, 0.1];
        let g = [0, 0, 0, 1, 1];
        for b in [Baseline::Mean, Baseline::LeaveOneOut] {
            let a = group_advantages(&r, &g, 2, b, Scale::Group, 1e-4, NanPolicy::Raise).unwrap();
            assert!(a.advantages[..3].iter().all(|&x| x == 0.0));
        }
    }

    #[test]
    fn nan_policy() {
        let r = [1.0f64, f64::NAN, 3.0, 4.0];
        let g = [0, 0, 0, 1];
        assert!(
            group_advantages(
                &r,
                &g,
                2,
                Baseline::Mean,
                Scale::None,
                0.0,
                NanPolicy::Raise
            )
            .is_err()
        );
        let a =
            group_advantages(&r, &g, 2, Baseline::Mean, Scale::None, 0.0, NanPolicy::Zero).unwrap();
        assert_eq!(a.advantages, [-1.0, 0.0, 1.0, 0.0]);
    }
}
