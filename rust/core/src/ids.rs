//! Token ids shared by every objective: the label value of ignored positions and the range
//! checks of ids against a vocabulary.

use crate::batch::{Ragged, TokenId};
use crate::{CoreError, Result};

/// Label value for positions that do not contribute to the loss.
pub const IGNORE_INDEX: i64 = -100;

/// Checks that a vocabulary size lies in `[1, MAX_VOCAB]` ([`crate::limits::MAX_VOCAB`],
/// 2²⁴: the kernels that take a vocabulary keep per-id tables, which stay small; ids then fit
/// in int32 outputs too).
pub fn check_vocab(vocab_size: i64) -> Result<()> {
    if vocab_size < 1 {
        return Err(CoreError::invalid(
            "vocab_size",
            format!("must be at least 1, got {vocab_size}"),
        ));
    }
    crate::limits::vocab("vocab_size", vocab_size as u64)?;
    Ok(())
}

/// Checks that the id given as `arg` lies in `[0, vocab_size)`; returns it as `u32`.
pub fn check_id(arg: &str, id: i64, vocab_size: i64) -> Result<u32> {
    if (0..vocab_size).contains(&id) {
        Ok(id as u32)
    } else {
        Err(CoreError::invalid(
            arg,
            format!("must be in [0, vocab_size={vocab_size}), got {id}"),
        ))
    }
}

/// Checks the ids of row `r` lie in `[0, vocab_size)`.
pub fn check_row_ids<T: TokenId>(arg: &str, r: usize, row: &[T], vocab_size: u32) -> Result<()> {
    let v = i64::from(vocab_size);
    // Fast path: a min/max fold (vectorises), then locate an offender only on failure.
    let (lo, hi) = row.iter().fold((i64::MAX, i64::MIN), |(lo, hi), &x| {
        let x = x.to_i64();
        (lo.min(x), hi.max(x))
    });
    if row.is_empty() || (lo >= 0 && hi < v) {
        return Ok(());
    }
    let (position, value) = row
        .iter()
        .map(|x| x.to_i64())
        .enumerate()
        .find(|(_, x)| !(0..v).contains(x))
        .unwrap_or_default();
    Err(CoreError::TokenOutOfRange {
        arg: arg.to_string(),
        row: r,
        position,
        value,
        vocab_size: u64::from(vocab_size),
    })
}

/// Checks every id of `rows` lies in `[0, vocab_size)`; reports the first one that does not.
pub fn check_ids<T: TokenId>(arg: &str, rows: &Ragged<'_, T>, vocab_size: u64) -> Result<()> {
    let v = vocab_size as i64;
    // Fast path: one branch-free scan (no early exit, so it vectorises); only on failure
    // locate the offending row/position. `0 <= x < v` is `(x as u64) < v` for `v >= 0`.
    let bound = v.max(0) as u64;
    let bad = rows
        .values
        .iter()
        .fold(0u64, |acc, &x| acc | u64::from(x.to_i64() as u64 >= bound));
    if bad == 0 {
        return Ok(());
    }
    for r in 0..rows.rows() {
        for (position, &x) in rows.row(r).iter().enumerate() {
            let value = x.to_i64();
            if !(0..v).contains(&value) {
                return Err(CoreError::TokenOutOfRange {
                    arg: arg.to_string(),
                    row: r,
                    position,
                    value,
                    vocab_size,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_range_check_reports_first_offender() {
        let v = [1i64, 2, 99, -1];
        let r = Ragged::new("input_ids", &v, &[0, 2, 4]).unwrap();
        match check_ids("input_ids", &r, 10) {
            Err(CoreError::TokenOutOfRange {
                row,
                position,
                value,
                ..
            }) => assert_eq!((row, position, value), (1, 0, 99)),
            other => panic!("unexpected {other:?}"),
        }
        assert!(check_ids("input_ids", &r, 100).is_err());
        let ok = [0u16, 9];
        let r = Ragged::new("input_ids", &ok, &[0, 2]).unwrap();
        assert!(check_ids("input_ids", &r, 10).is_ok());
        let big = [u64::MAX];
        let r = Ragged::new("input_ids", &big, &[0, 1]).unwrap();
        assert!(check_ids("input_ids", &r, 10).is_err());
    }
}
