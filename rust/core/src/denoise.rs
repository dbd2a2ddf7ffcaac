//! Denoising objectives for encoder–decoder pretraining: T5 span corruption ([`t5`],
//! [`seq2seq`]), UL2's mixture of denoisers ([`ul2`]) and BART's noising ([`bart`]).
//!
//! Every kernel turns raw token rows into five padded `rows × width` outputs with Hugging Face
//! names ([`Seq2SeqBatch`]): the encoder's `input_ids` and `attention_mask`, and the decoder's
//! `labels` (`-100` on padding), `decoder_input_ids` (labels shifted right behind
//! `decoder_start_token_id`, exactly as `transformers`' `shift_tokens_right`) and
//! `decoder_attention_mask`. Rows are noised in parallel, each from its own keyed stream
//! ([`crate::rng`]), so a batch is the same for any thread count.

pub mod bart;
pub mod seq2seq;
pub mod t5;
pub mod ul2;

use crate::batch::{OutId, Ragged, fill_rows};
use crate::ids::IGNORE_INDEX;
use crate::{CoreError, Result};

/// A padded encoder–decoder batch: two `rows × input_width` and three
/// `rows × target_width` row-major buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct Seq2SeqBatch<O> {
    pub rows: usize,
    pub input_width: usize,
    pub target_width: usize,
    pub input_ids: Vec<O>,
    pub attention_mask: Vec<O>,
    pub labels: Vec<O>,
    pub decoder_input_ids: Vec<O>,
    pub decoder_attention_mask: Vec<O>,
}

/// How wide the encoder and decoder outputs are: the longest row of the batch, or a fixed
/// width (a longer row is an error), rounded up to a multiple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Widths {
    pub input: Option<usize>,
    pub target: Option<usize>,
    pub multiple_of: usize,
}

impl Default for Widths {
    fn default() -> Self {
        Self {
            input: None,
            target: None,
            multiple_of: 1,
        }
    }
}

impl Widths {
    pub fn validate(&self) -> Result<()> {
        if self.multiple_of == 0 {
            return Err(CoreError::invalid(
                "pad_to_multiple_of",
                "must be a positive integer",
            ));
        }
        if self.input == Some(0) || self.target == Some(0) {
            return Err(CoreError::invalid(
                "max_length",
                "padded widths must be positive",
            ));
        }
        Ok(())
    }

    fn width(
        &self,
        arg: &str,
        fixed: Option<usize>,
        lengths: impl Iterator<Item = usize>,
    ) -> Result<usize> {
        let (mut longest, mut row, mut rows) = (0, 0, 0);
        for (r, n) in lengths.enumerate() {
            if n > longest {
                (longest, row) = (n, r);
            }
            rows = r + 1;
        }
        let base = match fixed {
            Some(w) if longest > w => {
                return Err(CoreError::invalid(
                    arg,
                    format!("row {row} has {longest} tokens, more than the padded width {w}"),
                ));
            }
            Some(w) => crate::limits::length("max_length", w)?,
            None => longest,
        };
        let blame = if self.multiple_of > 1 {
            "pad_to_multiple_of"
        } else {
            arg
        };
        let width = crate::limits::round_up(blame, base, self.multiple_of)?;
        crate::limits::elements(arg, rows, width)?;
        Ok(width)
    }

    pub fn input_width(&self, lengths: impl Iterator<Item = usize>) -> Result<usize> {
        self.width("input_ids", self.input, lengths)
    }

    pub fn target_width(&self, lengths: impl Iterator<Item = usize>) -> Result<usize> {
        self.width("labels", self.target, lengths)
    }
}

/// Where each row's tokens are: the whole row, or its attended tokens when an
/// `attention_mask` is given (they must be one contiguous block: padding on the left or the
/// right, not inside a row).
pub fn row_ranges<T>(
    ids: &Ragged<'_, T>,
    attention: Option<&Ragged<'_, u8>>,
) -> Result<Vec<std::ops::Range<usize>>> {
    let Some(att) = attention else {
        return Ok((0..ids.rows()).map(|r| 0..ids.row_len(r)).collect());
    };
    ids.check_aligned("attention_mask", att)?;
    (0..ids.rows()).map(|r| attended(r, att.row(r))).collect()
}

/// The attended block of row `r` of an attention mask (see [`row_ranges`]).
fn attended(r: usize, a: &[u8]) -> Result<std::ops::Range<usize>> {
    let start = a.iter().position(|&m| m != 0).unwrap_or(a.len());
    let end = a.iter().rposition(|&m| m != 0).map_or(start, |e| e + 1);
    if a[start..end].contains(&0) {
        return Err(CoreError::invalid(
            "attention_mask",
            format!(
                "row {r} has padding between its tokens (only left or right padding is \
                 supported)"
            ),
        ));
    }
    Ok(start..end)
}

/// [`Trimmed::new`] for rows given as separate slices (e.g. NumPy rows read in place): the
/// rows cut to their attended tokens, with the same checks and errors.
pub fn trim_rows<'a, T>(
    rows: &[&'a [T]],
    attention: Option<&Ragged<'_, u8>>,
) -> Result<Vec<&'a [T]>> {
    let Some(att) = attention else {
        return Ok(rows.to_vec());
    };
    if att.rows() != rows.len() {
        return Err(CoreError::shape(
            "attention_mask",
            format!("has {} rows but input_ids has {}", att.rows(), rows.len()),
        ));
    }
    rows.iter()
        .enumerate()
        .map(|(r, row)| {
            let a = att.row(r);
            if a.len() != row.len() {
                return Err(CoreError::shape(
                    "attention_mask",
                    format!(
                        "row {r} has length {} but input_ids row {r} has length {}",
                        a.len(),
                        row.len()
                    ),
                ));
            }
            Ok(&row[attended(r, a)?])
        })
        .collect()
}

/// The rows of `rows` cut to `ranges` (from [`row_ranges`]).
pub fn slice_rows<'a, T>(rows: &Ragged<'a, T>, ranges: &[std::ops::Range<usize>]) -> Vec<&'a [T]> {
    ranges
        .iter()
        .enumerate()
        .map(|(r, range)| &rows.row(r)[range.clone()])
        .collect()
}

/// The rows of `ids` trimmed to their attended tokens (see [`row_ranges`]), with the
/// ranges, so that per-token arrays aligned with `ids` can be trimmed alike.
#[derive(Debug, Clone)]
pub struct Trimmed<'a, T> {
    pub ranges: Vec<std::ops::Range<usize>>,
    pub rows: Vec<&'a [T]>,
}

impl<'a, T> Trimmed<'a, T> {
    pub fn new(ids: &Ragged<'a, T>, attention: Option<&Ragged<'_, u8>>) -> Result<Self> {
        let ranges = row_ranges(ids, attention)?;
        let rows = slice_rows(ids, &ranges);
        Ok(Self { ranges, rows })
    }

    /// `other` (given as `arg`, one value per token of `ids`) trimmed like the rows.
    pub fn aligned<'b, U>(
        &self,
        ids: &Ragged<'_, T>,
        arg: &str,
        other: &Ragged<'b, U>,
    ) -> Result<Vec<&'b [U]>> {
        ids.check_aligned(arg, other)?;
        Ok(slice_rows(other, &self.ranges))
    }
}

/// Builds `input_ids` and `attention_mask` on `threads` threads: `write(r, row)` writes row `r`'s tokens at the
/// start of its (zeroed) row and returns how many; the rest is padding.
fn fill_encoder<O, F>(
    threads: usize,
    rows: usize,
    width: usize,
    pad: i64,
    write: F,
) -> Result<[Vec<O>; 2]>
where
    O: OutId,
    F: Fn(usize, &mut [O]) -> usize + Sync + Send,
{
    fill_rows(threads, rows, width, |r, [ids, attention]| {
        let n = write(r, ids);
        attention[..n].fill(O::from_i64(1));
        if pad != 0 {
            ids[n..].fill(O::from_i64(pad));
        }
    })
}

/// Builds `labels`, `decoder_input_ids` and `decoder_attention_mask`: `write(r, row)` writes
/// row `r`'s targets and returns how many; labels are `-100` after them, decoder inputs are
/// the labels shifted right by one behind `start` with `-100` read as `pad` (Hugging Face's
/// `shift_tokens_right`), and the decoder attends to the target positions.
fn fill_decoder<O, F>(
    threads: usize,
    rows: usize,
    width: usize,
    pad: i64,
    start: i64,
    write: F,
) -> Result<[Vec<O>; 3]>
where
    O: OutId,
    F: Fn(usize, &mut [O]) -> usize + Sync + Send,
{
    fill_rows(threads, rows, width, |r, [labels, decoder, attention]| {
        let n = write(r, labels);
        labels[n..].fill(O::from_i64(IGNORE_INDEX));
        decoder[0] = O::from_i64(start);
        let shifted = n.min(width - 1);
        decoder[1..=shifted].copy_from_slice(&labels[..shifted]);
        if pad != 0 {
            decoder[shifted + 1..].fill(O::from_i64(pad));
        }
        attention[..n].fill(O::from_i64(1));
    })
}

/// [`fill_encoder`] on the calling thread, every value written once (no zeroing first):
/// `write(r, buf)` appends row `r`'s tokens to `buf` and returns how many (at most `width`);
/// the row is then padded. The buffers come from the pool with room for the whole batch.
fn append_encoder<O, F>(rows: usize, width: usize, pad: i64, mut write: F) -> [Vec<O>; 2]
where
    O: OutId,
    F: FnMut(usize, &mut Vec<O>) -> usize,
{
    let n = rows * width;
    let (mut ids, mut attention) = (O::pool().take(n), O::pool().take(n));
    let (pad, one, zero) = (O::from_i64(pad), O::from_i64(1), O::default());
    for r in 0..rows {
        let end = (r + 1) * width;
        let len = write(r, &mut ids);
        debug_assert_eq!(ids.len(), r * width + len);
        ids.resize(end, pad);
        attention.resize(r * width + len, one);
        attention.resize(end, zero);
    }
    [ids, attention]
}

/// [`fill_decoder`] on the calling thread, every value written once: `write(r, buf)` appends
/// row `r`'s targets to `buf` and returns how many (at most `width`, which is at least 1).
fn append_decoder<O, F>(
    rows: usize,
    width: usize,
    pad: i64,
    start: i64,
    mut write: F,
) -> [Vec<O>; 3]
where
    O: OutId,
    F: FnMut(usize, &mut Vec<O>) -> usize,
{
    let n = rows * width;
    let mut bufs: [Vec<O>; 3] = std::array::from_fn(|_| O::pool().take(n));
    let [labels, decoder, attention] = &mut bufs;
    let (pad, one, zero) = (O::from_i64(pad), O::from_i64(1), O::default());
    for r in 0..rows {
        let (base, end) = (r * width, (r + 1) * width);
        let len = write(r, labels);
        debug_assert_eq!(labels.len(), base + len);
        labels.resize(end, O::from_i64(IGNORE_INDEX));
        decoder.push(O::from_i64(start));
        let shifted = len.min(width.saturating_sub(1));
        decoder.extend_from_slice(&labels[base..base + shifted]);
        decoder.resize(end, pad);
        attention.resize(base + len, one);
        attention.resize(end, zero);
    }
    bufs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths() {
        let w = Widths::default();
        assert_eq!(w.input_width([3usize, 7, 5].into_iter()).unwrap(), 7);
        let w = Widths {
            input: Some(8),
            target: None,
            multiple_of: 4,
        };
        assert_eq!(w.input_width([3usize, 7].into_iter()).unwrap(), 8);
        assert_eq!(w.target_width([3usize, 9].into_iter()).unwrap(), 12);
        let err = w.input_width([3usize, 9].into_iter()).unwrap_err();
        assert!(err.to_string().contains("row 1 has 9"));
        assert!(
            Widths {
                multiple_of: 0,
                ..Widths::default()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn decoder_inputs_are_shifted_labels() {
        let [labels, dec, att] = fill_decoder::<i64, _>(1, 2, 5, 0, 9, |r, out| {
            let n = 3 + r * 2;
            for (i, o) in out[..n].iter_mut().enumerate() {
                *o = 10 + i as i64;
            }
            n
        })
        .unwrap();
        assert_eq!(labels, [10, 11, 12, -100, -100, 10, 11, 12, 13, 14]);
        // Position 3 of row 0 gets the last label (as shift_tokens_right), then pad.
        assert_eq!(dec, [9, 10, 11, 12, 0, 9, 10, 11, 12, 13]);
        assert_eq!(att, [1, 1, 1, 0, 0, 1, 1, 1, 1, 1]);
    }

    #[test]
    fn attention_trims_rows() {
        let ids = [0i64, 5, 6, 0, 7, 8, 9, 0, 1, 0, 2, 0];
        let att = [0u8, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 0];
        let offs = [0, 4, 8, 12];
        let r = Ragged::new("input_ids", &ids, &offs).unwrap();
        let a = Ragged::new("attention_mask", &att[..8], &offs[..3]).unwrap();
        let ids8 = Ragged::new("input_ids", &ids[..8], &offs[..3]).unwrap();
        let ranges = row_ranges(&ids8, Some(&a)).unwrap();
        let rows = slice_rows(&ids8, &ranges);
        assert_eq!(rows, [&[5i64, 6][..], &[7, 8, 9, 0][..]]);
        let a = Ragged::new("attention_mask", &att, &offs).unwrap();
        assert!(row_ranges(&r, Some(&a)).is_err());
        assert_eq!(row_ranges(&r, None).unwrap(), [0..4, 0..4, 0..4]);
    }
}
