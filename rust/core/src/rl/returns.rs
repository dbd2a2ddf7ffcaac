//! Returns and advantages over the masked steps of each row.
//!
//! The steps of a row are its masked positions in column order; `γ` discounts one step to the
//! next *masked* position, so left and right padding give the same numbers. (To discount by
//! column instead — MaskGAN's return over all positions with rewards only on the missing
//! tokens — mask every real token and put zeros where there is no reward.)
//!
//! - Reward-to-go: `G_t = r_t + γ·G_{t+1}`, with `G` after the last step equal to 0.
//! - GAE (Schulman et al. 2016): `δ_t = r_t + γ·V_{t+1} − V_t`, `Â_t = δ_t + γλ·Â_{t+1}`; the
//!   value after the last step is `bootstrap[r]` (default 0: the episode ended). The value
//!   targets are `R_t = Â_t + V_t`. Values outside the mask are never read — a value head's
//!   outputs on padding cannot leak in (the mask is the value mask).
//! - Whitening (TRL `masked_whiten`): `(x − mean)/sqrt(var + eps)` with the mean and the
//!   (Bessel-corrected by default) variance over every masked value of the batch.

use super::{Grid, Real, check_finite, check_finite_masked, check_positive, check_unit};
use crate::parallel::for_each_mut;
use crate::{CoreError, Result};

fn check_mask<T>(like: &str, x: &Grid<'_, T>, mask: &Grid<'_, bool>) -> Result<()> {
    x.check_same_shape(like, "mask", mask)
}

/// Discounted reward-to-go over the masked steps of each row (0 outside the mask).
pub fn discounted_returns<T: Real>(
    rewards: &Grid<'_, T>,
    mask: &Grid<'_, bool>,
    gamma: f64,
    threads: usize,
) -> Result<Vec<T>> {
    check_unit("gamma", gamma)?;
    check_mask("rewards", rewards, mask)?;
    check_finite_masked("rewards", rewards, mask)?;
    let (rows, cols) = rewards.shape();
    let mut out = vec![T::ZERO; rows * cols];
    if cols == 0 {
        return Ok(out);
    }
    let mut items: Vec<&mut [T]> = out.chunks_mut(cols).collect();
    for_each_mut(
        super::grid_threads(threads, rows, cols),
        &mut items,
        |r, o| {
            let (x, m) = (rewards.row(r), mask.row(r));
            let mut g = 0.0f64;
            for t in (0..cols).rev() {
                if m[t] {
                    g = x[t].to_f64() + gamma * g;
                    o[t] = T::from_f64(g);
                }
            }
        },
    )?;
    Ok(out)
}

/// GAE advantages and value targets `(advantages, returns)` over the masked steps of each row.
/// `bootstrap[r]` is the value of the state after row `r`'s last step (default 0).
pub fn gae<T: Real>(
    rewards: &Grid<'_, T>,
    values: &Grid<'_, T>,
    mask: &Grid<'_, bool>,
    bootstrap: Option<&[T]>,
    gamma: f64,
    lam: f64,
    threads: usize,
) -> Result<(Vec<T>, Vec<T>)> {
    check_unit("gamma", gamma)?;
    check_unit("lam", lam)?;
    check_mask("rewards", rewards, mask)?;
    rewards.check_same_shape("rewards", "values", values)?;
    check_finite_masked("rewards", rewards, mask)?;
    check_finite_masked("values", values, mask)?;
    let (rows, cols) = rewards.shape();
    if let Some(b) = bootstrap {
        if b.len() != rows {
            return Err(CoreError::shape(
                "bootstrap",
                format!("has {} entries but rewards has {rows} rows", b.len()),
            ));
        }
        check_finite("bootstrap", b)?;
    }
    let mut adv = vec![T::ZERO; rows * cols];
    let mut ret = vec![T::ZERO; rows * cols];
    if cols == 0 {
        return Ok((adv, ret));
    }
    let mut items: Vec<(&mut [T], &mut [T])> =
        adv.chunks_mut(cols).zip(ret.chunks_mut(cols)).collect();
    let gl = gamma * lam;
    for_each_mut(
        super::grid_threads(threads, rows, cols),
        &mut items,
        |r, (a, g)| {
            let (x, v, m) = (rewards.row(r), values.row(r), mask.row(r));
            let mut next_v = bootstrap.map_or(0.0, |b| b[r].to_f64());
            let mut last = 0.0f64;
            for t in (0..cols).rev() {
                if m[t] {
                    let vt = v[t].to_f64();
                    let delta = x[t].to_f64() + gamma * next_v - vt;
                    last = delta + gl * last;
                    a[t] = T::from_f64(last);
                    g[t] = T::from_f64(last + vt);
                    next_v = vt;
                }
            }
        },
    )?;
    Ok((adv, ret))
}

/// Per-row partial sums, added in row order afterwards (deterministic for any thread count).
fn masked_moments<T: Real>(
    x: &Grid<'_, T>,
    mask: &Grid<'_, bool>,
    center: Option<f64>,
    threads: usize,
) -> Result<(f64, usize)> {
    let (rows, cols) = x.shape();
    let mut partial = vec![(0.0f64, 0usize); rows];
    for_each_mut(
        super::grid_threads(threads, rows, cols),
        &mut partial,
        |r, p| {
            let (v, m) = (x.row(r), mask.row(r));
            for (&a, &on) in v.iter().zip(m) {
                if on {
                    let d = a.to_f64() - center.unwrap_or(0.0);
                    p.0 += if center.is_some() { d * d } else { d };
                    p.1 += 1;
                }
            }
        },
    )?;
    Ok(partial
        .iter()
        .fold((0.0, 0), |(s, n), &(a, b)| (s + a, n + b)))
}

/// Whitens the masked values of the whole batch: `(x − mean)·(var + eps)^(−1/2)` (plus the
/// mean back when `!shift_mean`), variance Bessel-corrected when `unbiased`. 0 outside the
/// mask. Also returns the `(mean, var)` used.
pub fn whiten<T: Real>(
    x: &Grid<'_, T>,
    mask: &Grid<'_, bool>,
    shift_mean: bool,
    unbiased: bool,
    eps: f64,
    threads: usize,
) -> Result<(Vec<T>, f64, f64)> {
    check_positive("eps", eps, true)?;
    check_mask("values", x, mask)?;
    check_finite_masked("values", x, mask)?;
    let (rows, cols) = x.shape();
    let (sum, n) = masked_moments(x, mask, None, threads)?;
    let need = if unbiased { 2 } else { 1 };
    if n < need {
        return Err(CoreError::invalid(
            "mask",
            format!(
                "whitening needs at least {need} masked value{} (unbiased={unbiased}), got {n}",
                if need > 1 { "s" } else { "" }
            ),
        ));
    }
    let mean = sum / n as f64;
    let (ss, _) = masked_moments(x, mask, Some(mean), threads)?;
    let mut var = ss / n as f64;
    if unbiased {
        var *= n as f64 / (n as f64 - 1.0);
    }
    let scale = 1.0 / (var + eps).sqrt();
    let add = if shift_mean { 0.0 } else { mean };
    let mut out = vec![T::ZERO; rows * cols];
    if cols == 0 {
        return Ok((out, mean, var));
    }
    let mut items: Vec<&mut [T]> = out.chunks_mut(cols).collect();
    for_each_mut(
        super::grid_threads(threads, rows, cols),
        &mut items,
        |r, o| {
            let (v, m) = (x.row(r), mask.row(r));
            for t in 0..cols {
                if m[t] {
                    o[t] = T::from_f64((v[t].to_f64() - mean) * scale + add);
                }
            }
        },
    )?;
    Ok((out, mean, var))
}

/// `clamp(x, −bound, bound)` on masked values (MaskGAN's advantage clipping, bound 5), 0
/// outside the mask.
pub fn clip_masked<T: Real>(
    x: &Grid<'_, T>,
    mask: &Grid<'_, bool>,
    bound: f64,
    threads: usize,
) -> Result<Vec<T>> {
    check_positive("clip", bound, false)?;
    check_mask("values", x, mask)?;
    check_finite_masked("values", x, mask)?;
    let (rows, cols) = x.shape();
    let mut out = vec![T::ZERO; rows * cols];
    if cols == 0 {
        return Ok(out);
    }
    let mut items: Vec<&mut [T]> = out.chunks_mut(cols).collect();
    for_each_mut(
        super::grid_threads(threads, rows, cols),
        &mut items,
        |r, o| {
            let (v, m) = (x.row(r), mask.row(r));
            for t in 0..cols {
                if m[t] {
                    o[t] = T::from_f64(v[t].to_f64().clamp(-bound, bound));
                }
            }
        },
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid<'a, T>(v: &'a [T], cols: usize) -> Grid<'a, T> {
        Grid::new("x", v, v.len() / cols, cols).unwrap()
    }

    #[test]
    fn reward_to_go_skips_padding() {
        let r = [0.0, 1.0, 2.0, 9.0, 9.0, 1.0, 2.0];
        let m = [false, true, true, false, false, true, true];
        let out = discounted_returns(&grid(&r[..], 7), &grid(&m[..], 7), 0.5, 1).unwrap();
        // one row, steps at columns 1, 2, 5, 6: G6 = 2, G5 = 1 + 0.5·2, G2 = 2 + 0.5·2, G1 = 1 + 0.5·3
        assert_eq!(out, [0.0, 2.5, 3.0, 0.0, 0.0, 2.0, 2.0]);
    }

    #[test]
    fn gae_with_lambda_one_is_reward_to_go_minus_value() {
        let r = [0.5f64, -1.0, 2.0, 0.0];
        let v = [0.1f64, 0.2, 0.3, 7.0];
        let m = [true, true, true, false];
        let (a, g) = gae(
            &grid(&r[..], 4),
            &grid(&v[..], 4),
            &grid(&m[..], 4),
            None,
            0.9,
            1.0,
            1,
        )
        .unwrap();
        let rtg = discounted_returns(&grid(&r[..], 4), &grid(&m[..], 4), 0.9, 1).unwrap();
        for t in 0..3 {
            assert!((a[t] - (rtg[t] - v[t])).abs() < 1e-12);
            assert!((g[t] - rtg[t]).abs() < 1e-12);
        }
        assert_eq!((a[3], g[3]), (0.0, 0.0));
    }

    #[test]
    fn gae_lambda_zero_is_one_step_td() {
        let r = [1.0f64, 2.0];
        let v = [0.5f64, 0.25];
        let m = [true, true];
        let b = [4.0f64];
        let (a, _) = gae(
            &grid(&r[..], 2),
            &grid(&v[..], 2),
            &grid(&m[..], 2),
            Some(&b[..]),
            0.5,
            0.0,
            1,
        )
        .unwrap();
        assert_eq!(a, [1.0 + 0.5 * 0.25 - 0.5, 2.0 + 0.5 * 4.0 - 0.25]);
    }

    #[test]
    fn whiten_is_unit_variance_over_mask() {
        let x = [1.0f32, 2.0, 3.0, 100.0];
        let m = [true, true, true, false];
        let (w, mean, var) =
            whiten(&grid(&x[..], 4), &grid(&m[..], 4), true, true, 0.0, 1).unwrap();
        assert_eq!(mean, 2.0);
        assert_eq!(var, 1.0);
        assert_eq!(w, [-1.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn out_of_range_and_non_finite_are_errors() {
        let r = [1.0f64, f64::NAN];
        let m = [true, true];
        let e = discounted_returns(&grid(&r[..], 2), &grid(&m[..], 2), 1.5, 1).unwrap_err();
        assert!(e.to_string().starts_with("gamma:"));
        let e = discounted_returns(&grid(&r[..], 2), &grid(&m[..], 2), 1.0, 1).unwrap_err();
        assert!(e.to_string().contains("row 0, position 1"));
        let m = [true, false];
        assert!(discounted_returns(&grid(&r[..], 2), &grid(&m[..], 2), 1.0, 1).is_ok());
    }
}
