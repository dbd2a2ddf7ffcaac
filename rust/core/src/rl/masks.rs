//! Completion masks: which generated tokens are actions of the policy.
//!
//! For each row the *completion region* is a contiguous run of real tokens at or after the
//! row's `start` column (the first completion column: 0 for completion-only arrays, the
//! prompt width for `[prompt | completion]` arrays). It is found from, in order of preference:
//!
//! 1. an attention mask: the real tokens (1s) at or after `start`, which must be one run;
//! 2. `Side::Right` (right padding, the default): from `start` to the end of the row;
//!    padding after the first EOS is cut by the EOS rule below, and when there is no EOS a
//!    trailing run of `pad_token_id` (if given) is padding;
//! 3. `Side::Left`: a leading run of `pad_token_id` after `start` is padding (so when
//!    `pad_token_id == eos_token_id` and there is no attention mask, an empty completion that
//!    is a lone EOS cannot be told from padding — pass the attention mask).
//!
//! Inside the region the mask covers every token up to **and including** the first EOS (any
//! of the EOS ids; `include_eos = false` stops just before it). A row whose region has no EOS
//! is *truncated* (the generation hit its length limit): its mask covers the whole region, or
//! nothing with `mask_truncated` (TRL GRPO's `mask_truncated_completions`).
//!
//! `last` is the column of the last masked token: the EOS itself for finished rows. That is
//! where a sequence-level score belongs — **not** on the first PAD after EOS, where TRL's PPO
//! puts it (TRL #3750); `-1` for an empty mask.

use super::Grid;
use crate::batch::{Side, TokenId};
use crate::parallel::for_each_mut;
use crate::{CoreError, Result};

/// What ends a completion and where padding sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionSpec {
    /// Ids that end a completion (at least one).
    pub eos_token_ids: Vec<i64>,
    /// The padding id (needed for left padding without an attention mask).
    pub pad_token_id: Option<i64>,
    pub side: Side,
    /// Mask the EOS token itself (default true: the policy chose it).
    pub include_eos: bool,
    /// Give truncated rows (no EOS) an empty mask.
    pub mask_truncated: bool,
}

impl CompletionSpec {
    pub fn validate(&self) -> Result<()> {
        if self.eos_token_ids.is_empty() {
            return Err(CoreError::invalid(
                "eos_token_id",
                "give at least one end-of-sequence id",
            ));
        }
        Ok(())
    }
}

/// The masks of one batch (`rows × cols` row-major mask, per-row vectors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub mask: Vec<bool>,
    /// Masked tokens per row.
    pub lengths: Vec<i64>,
    /// Column of the first token of the completion region (`cols` when it is empty).
    pub first: Vec<i64>,
    /// Column of the last masked token, `-1` when the mask is empty.
    pub last: Vec<i64>,
    /// No EOS in the completion region.
    pub truncated: Vec<bool>,
}

struct RowOut<'a> {
    mask: &'a mut [bool],
    lengths: &'a mut i64,
    first: &'a mut i64,
    last: &'a mut i64,
    truncated: &'a mut bool,
}

/// Builds the completion masks of `ids` (`rows × cols`), each row's region starting at
/// `starts[r]`. `attention` (same shape) marks real tokens when given.
pub fn completion_mask<T: TokenId>(
    ids: &Grid<'_, T>,
    attention: Option<&Grid<'_, bool>>,
    starts: &[usize],
    spec: &CompletionSpec,
    threads: usize,
) -> Result<Completion> {
    spec.validate()?;
    check_starts_and_attention(ids, attention, starts, spec)?;
    let (rows, cols) = ids.shape();
    let mut out = Completion {
        mask: vec![false; rows * cols],
        lengths: vec![0; rows],
        first: vec![0; rows],
        last: vec![-1; rows],
        truncated: vec![false; rows],
    };
    let mut items: Vec<RowOut<'_>> = out
        .mask
        .chunks_mut(cols.max(1))
        .take(rows)
        .zip(out.lengths.iter_mut())
        .zip(out.first.iter_mut())
        .zip(out.last.iter_mut())
        .zip(out.truncated.iter_mut())
        .map(|((((mask, lengths), first), last), truncated)| RowOut {
            mask,
            lengths,
            first,
            last,
            truncated,
        })
        .collect();
    if cols == 0 {
        for o in &mut items {
            *o.truncated = true;
        }
        drop(items);
        return Ok(out);
    }
    let threads = super::grid_threads(threads, rows, cols);
    for_each_mut(threads, &mut items, |r, o| {
        let att = attention.map(|a| a.row(r));
        fill_row(ids.row(r), att, starts[r], spec, o);
    })?;
    drop(items);
    Ok(out)
}

/// Checks one start column per row (within the row), and an attention mask whose real
/// tokens after the start are one run — or, without one, a pad id for left padding.
fn check_starts_and_attention<T>(
    ids: &Grid<'_, T>,
    attention: Option<&Grid<'_, bool>>,
    starts: &[usize],
    spec: &CompletionSpec,
) -> Result<()> {
    let (rows, cols) = ids.shape();
    if starts.len() != rows {
        return Err(CoreError::shape(
            "completion_start",
            format!("has {} entries but ids has {rows} rows", starts.len()),
        ));
    }
    if let Some(r) = starts.iter().position(|&s| s > cols) {
        return Err(CoreError::invalid(
            "completion_start",
            format!(
                "row {r} starts at column {} but rows have {cols} columns",
                starts[r]
            ),
        ));
    }
    let Some(a) = attention else {
        if spec.side == Side::Left && spec.pad_token_id.is_none() {
            return Err(CoreError::invalid(
                "pad_token_id",
                "left-padded completions need pad_token_id (or an attention_mask)",
            ));
        }
        return Ok(());
    };
    ids.check_same_shape("ids", "attention_mask", a)?;
    // The real tokens of the completion region must be one run.
    for (r, &s) in starts.iter().enumerate() {
        let row = &a.row(r)[s..];
        let runs = row
            .iter()
            .enumerate()
            .filter(|&(i, &m)| m && (i == 0 || !row[i - 1]))
            .count();
        if runs > 1 {
            return Err(CoreError::invalid(
                "attention_mask",
                format!("row {r}: the real tokens after column {s} are not one contiguous run"),
            ));
        }
    }
    Ok(())
}

/// One row's mask and statistics; its completion region starts at column `s` or later.
fn fill_row<T: TokenId>(
    row: &[T],
    attention: Option<&[bool]>,
    s: usize,
    spec: &CompletionSpec,
    o: &mut RowOut<'_>,
) {
    let is_pad = |t: i64| spec.pad_token_id == Some(t);
    let (a, b) = region(row, attention, s, spec);
    *o.first = a as i64;
    let eos = row[a..b]
        .iter()
        .position(|t| spec.eos_token_ids.contains(&t.to_i64()))
        .map(|i| a + i);
    let end = match eos {
        Some(e) if spec.include_eos => e + 1,
        Some(e) => e,
        None => {
            *o.truncated = true;
            if spec.mask_truncated {
                a
            } else if attention.is_none() && spec.side == Side::Right {
                let trail = row[a..b]
                    .iter()
                    .rev()
                    .take_while(|t| is_pad(t.to_i64()))
                    .count();
                b - trail
            } else {
                b
            }
        }
    };
    o.mask[a..end].iter_mut().for_each(|m| *m = true);
    *o.lengths = (end - a) as i64;
    *o.last = if end > a { end as i64 - 1 } else { -1 };
}

/// The completion region `[a, b)` of a row: the attended run at or after `s`, else from `s`
/// (past leading padding when left-padded) to the end.
fn region<T: TokenId>(
    row: &[T],
    attention: Option<&[bool]>,
    s: usize,
    spec: &CompletionSpec,
) -> (usize, usize) {
    let cols = row.len();
    match attention {
        Some(att) => {
            let m = &att[s..];
            match m.iter().position(|&x| x) {
                Some(i) => {
                    let len = m[i..].iter().take_while(|&&x| x).count();
                    (s + i, s + i + len)
                }
                None => (cols, cols),
            }
        }
        None => match spec.side {
            Side::Right => (s, cols),
            Side::Left => {
                let lead = row[s..]
                    .iter()
                    .take_while(|t| spec.pad_token_id == Some(t.to_i64()))
                    .count();
                (s + lead, cols)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(side: Side) -> CompletionSpec {
        CompletionSpec {
            eos_token_ids: vec![2],
            pad_token_id: Some(0),
            side,
            include_eos: true,
            mask_truncated: false,
        }
    }

    fn run(ids: &[i64], cols: usize, side: Side, starts: Option<Vec<usize>>) -> Completion {
        let rows = ids.len() / cols;
        let g = Grid::new("ids", ids, rows, cols).unwrap();
        let starts = starts.unwrap_or(vec![0; rows]);
        completion_mask(&g, None, &starts, &spec(side), 1).unwrap()
    }

    #[test]
    fn right_padding_stops_at_first_eos() {
        // row 0: EOS at 2 then pads; row 1: no EOS (truncated); row 2: trailing pads, no EOS.
        let c = run(
            &[5, 6, 2, 0, 0, 5, 6, 7, 8, 9, 5, 6, 0, 0, 0],
            5,
            Side::Right,
            None,
        );
        let m: Vec<u8> = c.mask.iter().map(|&b| u8::from(b)).collect();
        assert_eq!(m, [1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]);
        assert_eq!(c.last, [2, 4, 1]);
        assert_eq!(c.lengths, [3, 5, 2]);
        assert_eq!(c.truncated, [false, true, true]);
    }

    #[test]
    fn left_padding_matches_right_padding() {
        let right = run(&[5, 6, 2, 0, 0, 7, 2, 0, 0, 0], 5, Side::Right, None);
        let left = run(&[0, 0, 5, 6, 2, 0, 0, 0, 7, 2], 5, Side::Left, None);
        assert_eq!(right.lengths, left.lengths);
        assert_eq!(left.last, [4, 4]);
        assert_eq!(left.first, [2, 3]);
        assert_eq!(right.truncated, left.truncated);
    }

    #[test]
    fn prompt_columns_are_skipped_and_eos_in_prompt_ignored() {
        // [prompt | completion]; the prompt contains an EOS id that must not end the completion.
        let c = run(
            &[2, 9, 5, 2, 0, 9, 9, 5, 5, 5],
            5,
            Side::Right,
            Some(vec![2, 2]),
        );
        assert_eq!(c.first, [2, 2]);
        assert_eq!(c.last, [3, 4]);
        assert_eq!(c.truncated, [false, true]);
    }

    #[test]
    fn attention_mask_must_be_one_run() {
        let ids = [5i64, 6, 7, 8];
        let g = Grid::new("ids", &ids[..], 1, 4).unwrap();
        let att = [true, false, true, true];
        let a = Grid::new("attention_mask", &att[..], 1, 4).unwrap();
        let e = completion_mask(&g, Some(&a), &[0], &spec(Side::Right), 1).unwrap_err();
        assert!(e.to_string().contains("contiguous"));
    }
}
