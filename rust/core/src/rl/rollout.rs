//! Monte-Carlo rollout bookkeeping (SeqGAN's Q(prefix) estimate): which sample, prefix and
//! rollout each completion row belongs to, and the scatter of their scores back to tokens.
//!
//! For a sample `Y` of length `L`, the reward of the token at (0-based) position `i` is
//! `Q_i = (1/N) Σ_n D(Y^n)` where each `Y^n` completes the prefix `Y[..i+1]` (prefix length
//! `i + 1`) by sampling; for the last token, `Q_{L−1} = D(Y)` itself (no rollout). The plan
//! lists one row per (sample, prefix length in `1..L`, rollout) with explicit indices, so the
//! scores can be computed in any order and scattered back by index: a reshape can never mix
//! samples, positions and rollouts (TextGAN-PyTorch #62).
//!
//! Orders of the plan rows:
//! - `PrefixMajor` (default): prefix length, then rollout, then sample — each prefix length
//!   is one contiguous block of `N × (samples long enough)` rows, which is how a batched RNN
//!   generator continues all samples from the same prefix length at once;
//! - `SampleMajor`: sample, then prefix length, then rollout.

use super::{Real, check_finite};
use crate::{CoreError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    PrefixMajor,
    SampleMajor,
}

impl Order {
    pub fn parse(arg: &str, s: &str) -> Result<Self> {
        match s {
            "prefix_major" => Ok(Order::PrefixMajor),
            "sample_major" => Ok(Order::SampleMajor),
            other => Err(CoreError::invalid(
                arg,
                format!("must be 'prefix_major' or 'sample_major', got {other:?}"),
            )),
        }
    }
}

/// One row per (sample, prefix length, rollout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub sample: Vec<i64>,
    pub prefix_length: Vec<i64>,
    pub rollout: Vec<i64>,
}

/// The rollout rows for samples of the given `lengths` and `num_rollouts` rollouts each.
pub fn plan(lengths: &[usize], num_rollouts: usize, order: Order) -> Result<Plan> {
    if num_rollouts == 0 {
        return Err(CoreError::invalid("num_rollouts", "must be at least 1"));
    }
    let mut total: usize = 0;
    for &l in lengths {
        let rows = crate::limits::elements("num_rollouts", l.saturating_sub(1), num_rollouts)?;
        total = crate::limits::sum("lengths", total, rows)?;
    }
    let mut p = Plan {
        sample: Vec::with_capacity(total),
        prefix_length: Vec::with_capacity(total),
        rollout: Vec::with_capacity(total),
    };
    let mut push = |b: usize, t: usize, n: usize| {
        p.sample.push(b as i64);
        p.prefix_length.push(t as i64);
        p.rollout.push(n as i64);
    };
    match order {
        Order::PrefixMajor => {
            let longest = lengths.iter().copied().max().unwrap_or(0);
            for t in 1..longest {
                for n in 0..num_rollouts {
                    for (b, &l) in lengths.iter().enumerate() {
                        if t < l {
                            push(b, t, n);
                        }
                    }
                }
            }
        }
        Order::SampleMajor => {
            for (b, &l) in lengths.iter().enumerate() {
                for t in 1..l {
                    for n in 0..num_rollouts {
                        push(b, t, n);
                    }
                }
            }
        }
    }
    Ok(p)
}

/// Scatters rollout scores back to tokens: `Q[b, t − 1]` is the mean score of the rows with
/// `sample = b` and `prefix_length = t`, `Q[b, L_b − 1] = final_scores[b]`, 0 past `L_b`.
/// Every (sample, prefix length < L) must have at least one row, and all the same count.
pub fn scatter<T: Real>(
    scores: &[T],
    sample: &[i64],
    prefix_length: &[i64],
    lengths: &[usize],
    final_scores: &[T],
    cols: usize,
) -> Result<Vec<T>> {
    crate::limits::elements("cols", lengths.len(), cols)?;
    check_scatter_shapes(scores, sample, prefix_length, lengths, final_scores, cols)?;
    check_finite("scores", scores)?;
    check_finite("final_scores", final_scores)?;
    let rows = lengths.len();
    let (sum, count) = sum_by_prefix(scores, sample, prefix_length, lengths, cols)?;
    let mut expected = None;
    let mut out = vec![T::ZERO; rows * cols];
    for b in 0..rows {
        let l = lengths[b];
        for i in 0..l.saturating_sub(1) {
            let c = count[b * cols + i];
            if c == 0 || expected.is_some_and(|e| e != c) {
                return Err(CoreError::invalid(
                    "scores",
                    format!(
                        "sample {b}, prefix length {}: {c} rollouts (expected {})",
                        i + 1,
                        expected.map_or("at least 1".to_string(), |e: u32| e.to_string())
                    ),
                ));
            }
            expected = Some(c);
            out[b * cols + i] = T::from_f64(sum[b * cols + i] / f64::from(c));
        }
        if l > 0 {
            out[b * cols + l - 1] = final_scores[b];
        }
    }
    Ok(out)
}

/// Checks one sample and prefix length per score, one final score per sample, and lengths
/// within `cols`.
fn check_scatter_shapes<T>(
    scores: &[T],
    sample: &[i64],
    prefix_length: &[i64],
    lengths: &[usize],
    final_scores: &[T],
    cols: usize,
) -> Result<()> {
    let rows = lengths.len();
    for (name, len) in [
        ("sample", sample.len()),
        ("prefix_length", prefix_length.len()),
    ] {
        if len != scores.len() {
            return Err(CoreError::shape(
                name,
                format!("has {len} entries but scores has {}", scores.len()),
            ));
        }
    }
    if final_scores.len() != rows {
        return Err(CoreError::shape(
            "final_scores",
            format!(
                "has {} entries but there are {rows} samples",
                final_scores.len()
            ),
        ));
    }
    if let Some(b) = lengths.iter().position(|&l| l > cols) {
        return Err(CoreError::invalid(
            "lengths",
            format!("sample {b} has length {} > {cols} columns", lengths[b]),
        ));
    }
    Ok(())
}

/// Sums and counts of the rollout scores by `(sample, prefix length − 1)` (`rows × cols`).
fn sum_by_prefix<T: Real>(
    scores: &[T],
    sample: &[i64],
    prefix_length: &[i64],
    lengths: &[usize],
    cols: usize,
) -> Result<(Vec<f64>, Vec<u32>)> {
    let rows = lengths.len();
    let mut sum = vec![0.0f64; rows * cols];
    let mut count = vec![0u32; rows * cols];
    for (i, (&b, &t)) in sample.iter().zip(prefix_length).enumerate() {
        let ok_b = usize::try_from(b).ok().filter(|&b| b < rows);
        let Some(b) = ok_b else {
            return Err(CoreError::invalid(
                "sample",
                format!("row {i}: sample {b} is outside [0, {rows})"),
            ));
        };
        let l = lengths[b];
        let ok_t = usize::try_from(t).ok().filter(|&t| t >= 1 && t < l);
        let Some(t) = ok_t else {
            return Err(CoreError::invalid(
                "prefix_length",
                format!("row {i}: prefix length {t} is outside [1, {l}) for sample {b}"),
            ));
        };
        sum[b * cols + t - 1] += scores[i].to_f64();
        count[b * cols + t - 1] += 1;
    }
    Ok((sum, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_then_scatter_is_aligned() {
        let lengths = [3usize, 2];
        for order in [Order::PrefixMajor, Order::SampleMajor] {
            let p = plan(&lengths, 2, order).unwrap();
            assert_eq!(p.sample.len(), (2 + 1) * 2);
            // A score that encodes its own (sample, prefix): 10·b + t.
            let scores: Vec<f64> = p
                .sample
                .iter()
                .zip(&p.prefix_length)
                .map(|(&b, &t)| (10 * b + t) as f64)
                .collect();
            let q = scatter(
                &scores,
                &p.sample,
                &p.prefix_length,
                &lengths,
                &[-1.0, -2.0],
                4,
            )
            .unwrap();
            assert_eq!(q, [1.0, 2.0, -1.0, 0.0, 11.0, -2.0, 0.0, 0.0]);
        }
    }

    #[test]
    fn missing_rollouts_are_an_error() {
        let e = scatter(&[1.0f64], &[0], &[1], &[3], &[0.0], 3).unwrap_err();
        assert!(e.to_string().contains("prefix length 2"));
    }
}
