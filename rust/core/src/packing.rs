//! Sequence packing: many short examples in few rows, with no attention across examples.
//!
//! A [`PackPlan`] says which examples share a row (first-fit-decreasing bin packing, or greedy
//! in input order); [`pack`] then writes the rows with `position_ids` restarting at 0 (or at a
//! `position_offset`, e.g. RoBERTa's `padding_idx + 1`) for each example, per-token sequence ids, example-start flags (for masking that must not cross
//! examples), optional causal-LM labels (−100 on each example's first token, as Hugging Face's
//! `DataCollatorWithFlattening` does) and flash-attention `cu_seqlens`.
//!
//! [`pack_batch`] is the whole call the Python API makes: it checks the examples, cuts the
//! ones longer than `max_length` when asked ([`Overflow`], [`Cut`]), plans rows or one flat
//! row ([`Layout`]), packs, and packs any aligned per-token columns the same way.

use crate::batch::{OutId, Ragged, TokenId, fill_rows};
use crate::ids::IGNORE_INDEX;
use crate::parallel::threads_for;
use crate::{CoreError, Result};

/// How examples are assigned to rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// First-fit decreasing: longest first (ties: lower index first), each into the first row
    /// with room. At most 11/9·OPT + 6/9 rows. Rows list their examples in input order and
    /// come in the order of their first example.
    FirstFitDecreasing,
    /// In input order, opening a new row when the next example does not fit.
    Greedy,
}

impl Strategy {
    pub fn parse(arg: &str, s: &str) -> Result<Self> {
        match s {
            "ffd" => Ok(Strategy::FirstFitDecreasing),
            "greedy" => Ok(Strategy::Greedy),
            other => Err(CoreError::invalid(
                arg,
                format!("must be 'ffd' or 'greedy', got {other:?}"),
            )),
        }
    }
}

/// Which examples go to which row: row `r` holds `examples[row_starts[r]..row_starts[r+1]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackPlan {
    pub row_starts: Vec<usize>,
    pub examples: Vec<u32>,
}

impl PackPlan {
    pub fn rows(&self) -> usize {
        self.row_starts.len() - 1
    }

    pub fn row(&self, r: usize) -> &[u32] {
        &self.examples[self.row_starts[r]..self.row_starts[r + 1]]
    }

    /// Everything in one row (the padding-free "flat" layout).
    pub fn single_row(n: usize) -> Self {
        Self {
            row_starts: vec![0, n],
            examples: (0..n as u32).collect(),
        }
    }
}

/// Assigns examples of `lengths` to rows of `capacity` tokens.
pub fn plan(lengths: &[usize], capacity: usize, strategy: Strategy) -> Result<PackPlan> {
    if capacity == 0 {
        return Err(CoreError::invalid(
            "max_length",
            "must be a positive integer",
        ));
    }
    if let Some((i, &len)) = lengths.iter().enumerate().find(|&(_, &l)| l > capacity) {
        return Err(CoreError::invalid(
            "examples",
            format!(
                "example {i} has {len} tokens, more than max_length={capacity}; truncate or \
                 split it (overflow='truncate' or 'split')"
            ),
        ));
    }
    let rows = match strategy {
        Strategy::Greedy => greedy_rows(lengths, capacity),
        Strategy::FirstFitDecreasing => first_fit_decreasing_rows(lengths, capacity),
    };
    let mut row_starts = Vec::with_capacity(rows.len() + 1);
    row_starts.push(0);
    let mut examples = Vec::with_capacity(lengths.len());
    for r in rows {
        examples.extend(r);
        row_starts.push(examples.len());
    }
    Ok(PackPlan {
        row_starts,
        examples,
    })
}

/// Rows in input order, a new one opened when the next example does not fit.
fn greedy_rows(lengths: &[usize], capacity: usize) -> Vec<Vec<u32>> {
    let mut rows: Vec<Vec<u32>> = Vec::new();
    let mut room = 0usize;
    for (i, &len) in lengths.iter().enumerate() {
        if rows.is_empty() || len > room {
            rows.push(Vec::new());
            room = capacity;
        }
        room -= len;
        if let Some(r) = rows.last_mut() {
            r.push(i as u32);
        }
    }
    rows
}

/// First-fit decreasing rows, each listing its examples in input order, in the order of their
/// first example (so the batch reads in input order).
fn first_fit_decreasing_rows(lengths: &[usize], capacity: usize) -> Vec<Vec<u32>> {
    let mut rows: Vec<Vec<u32>> = Vec::new();
    let mut order: Vec<u32> = (0..lengths.len() as u32).collect();
    order.sort_by(|&a, &b| {
        lengths[b as usize]
            .cmp(&lengths[a as usize])
            .then(a.cmp(&b))
    });
    let mut tree = RoomTree::new(lengths.len().max(1), capacity);
    for &i in &order {
        let r = tree.first_fit(lengths[i as usize]);
        if r == rows.len() {
            rows.push(Vec::new());
        }
        rows[r].push(i);
    }
    for r in &mut rows {
        r.sort_unstable();
    }
    rows.sort_unstable_by_key(|r| r[0]);
    rows
}

/// A max segment tree over the remaining room of `n` potential rows (all start at
/// `capacity`): finds the leftmost row with enough room in `O(log n)`.
struct RoomTree {
    size: usize,
    room: Vec<usize>,
}

impl RoomTree {
    fn new(n: usize, capacity: usize) -> Self {
        let size = n.next_power_of_two();
        Self {
            size,
            room: vec![capacity; 2 * size],
        }
    }

    /// Places `len` tokens in the leftmost row with room for them; returns the row.
    fn first_fit(&mut self, len: usize) -> usize {
        let mut node = 1;
        while node < self.size {
            node = if self.room[2 * node] >= len {
                2 * node
            } else {
                2 * node + 1
            };
        }
        let row = node - self.size;
        self.room[node] -= len;
        node /= 2;
        while node >= 1 {
            self.room[node] = self.room[2 * node].max(self.room[2 * node + 1]);
            node /= 2;
        }
        row
    }
}

/// Packed rows: `rows × width` buffers plus `cu_seqlens`.
#[derive(Debug, Clone, PartialEq)]
pub struct Packed<O> {
    pub rows: usize,
    pub width: usize,
    pub input_ids: Vec<O>,
    /// 1 on tokens of an example, 0 on padding.
    pub attention_mask: Vec<O>,
    /// Position within its example plus the position offset (`o`, `o + 1`, …); on padding
    /// `o - 1` (RoBERTa's padding index when `o` is `padding_idx + 1`), or 0 when `o` is 0.
    pub position_ids: Vec<O>,
    /// Index of the example (in input order); −1 on padding.
    pub sequence_ids: Vec<O>,
    /// Causal-LM labels: the ids, with −100 on each example's first token and on padding
    /// (empty unless requested).
    pub labels: Vec<O>,
    /// 1 on the first token of each example (what masking kernels take as `boundaries`).
    pub boundaries: Vec<u8>,
    /// Segment boundaries over the flattened `rows × width` buffer, flash-attention style: each
    /// example is a segment, and so is each row's padding tail; ends at `rows × width`.
    pub cu_seqlens: Vec<i32>,
    /// Longest segment of `cu_seqlens`.
    pub max_seqlen: usize,
}

/// Writes the rows of `plan` (each `width` long, `width` ≥ every row's total) from the
/// example rows `examples`; each example's positions start at `position_offset` (≥ 0).
pub fn pack<T: TokenId, O: OutId>(
    examples: &Ragged<'_, T>,
    plan: &PackPlan,
    width: usize,
    pad_token_id: i64,
    causal_labels: bool,
    position_offset: i64,
    threads: usize,
) -> Result<Packed<O>> {
    if plan.examples.len() != examples.rows()
        || plan.examples.iter().any(|&e| e as usize >= examples.rows())
    {
        return Err(CoreError::shape("plan", "does not cover the examples"));
    }
    check_position_offset(position_offset, width)?;
    let totals = row_totals(examples, plan, width)?;
    let threads = threads_for(threads, examples.values.len(), 32 * 1024);
    let [
        input_ids,
        attention_mask,
        position_ids,
        sequence_ids,
        labels,
    ] = write_rows(
        examples,
        plan,
        width,
        pad_token_id,
        causal_labels,
        position_offset,
        threads,
    )?;
    let (boundaries, cu_seqlens, max_seqlen) = segments(examples, plan, width, &totals);
    Ok(Packed {
        rows: plan.rows(),
        width,
        input_ids,
        attention_mask,
        position_ids,
        sequence_ids,
        labels: if causal_labels { labels } else { Vec::new() },
        boundaries,
        cu_seqlens,
        max_seqlen,
    })
}

/// The tokens of each packed row; an error when one exceeds `width` or the batch exceeds
/// what int32 `cu_seqlens` can address.
fn row_totals<T>(examples: &Ragged<'_, T>, plan: &PackPlan, width: usize) -> Result<Vec<usize>> {
    let rows = plan.rows();
    let totals: Vec<usize> = (0..rows)
        .map(|r| {
            plan.row(r)
                .iter()
                .map(|&e| examples.row_len(e as usize))
                .sum()
        })
        .collect();
    if let Some(&t) = totals.iter().find(|&&t| t > width) {
        return Err(CoreError::invalid(
            "max_length",
            format!("a packed row holds {t} tokens, more than the row width {width}"),
        ));
    }
    if width > i32::MAX as usize || rows * width > i32::MAX as usize {
        return Err(CoreError::invalid(
            "max_length",
            "the packed batch exceeds 2^31 tokens (cu_seqlens are int32)",
        ));
    }
    Ok(totals)
}

/// The positions must stay in int32 (the narrowest output): `0 <= offset` and
/// `offset + width <= i32::MAX`.
fn check_position_offset(position_offset: i64, width: usize) -> Result<()> {
    if position_offset < 0 || position_offset.saturating_add(width as i64) > i64::from(i32::MAX) {
        return Err(CoreError::invalid(
            "position_offset",
            format!("must be in [0, 2**31 - row width], got {position_offset}"),
        ));
    }
    Ok(())
}

/// `[input_ids, attention_mask, position_ids, sequence_ids, labels]` of the packed rows
/// (labels stay zero unless `causal_labels`).
fn write_rows<T: TokenId, O: OutId>(
    examples: &Ragged<'_, T>,
    plan: &PackPlan,
    width: usize,
    pad_token_id: i64,
    causal_labels: bool,
    position_offset: i64,
    threads: usize,
) -> Result<[Vec<O>; 5]> {
    let pad = O::from_i64(pad_token_id);
    let ignore = O::from_i64(IGNORE_INDEX);
    let pad_position = O::from_i64((position_offset - 1).max(0));
    fill_rows(
        threads,
        plan.rows(),
        width,
        |r, [ids, attn, pos, seq, lab]| {
            let mut t = 0;
            for &e in plan.row(r) {
                let src = examples.row(e as usize);
                for (k, &x) in src.iter().enumerate() {
                    ids[t + k] = O::from_i64(x.to_i64());
                    attn[t + k] = O::from_i64(1);
                    pos[t + k] = O::from_i64(position_offset + k as i64);
                    seq[t + k] = O::from_i64(i64::from(e));
                    if causal_labels {
                        lab[t + k] = if k == 0 {
                            ignore
                        } else {
                            O::from_i64(x.to_i64())
                        };
                    }
                }
                t += src.len();
            }
            ids[t..].fill(pad);
            pos[t..].fill(pad_position);
            seq[t..].fill(O::from_i64(-1));
            if causal_labels {
                lab[t..].fill(ignore);
            }
        },
    )
}

/// Example-start flags over the `rows × width` buffer, flash-attention `cu_seqlens` (each
/// example a segment, and each row's padding tail) and the longest segment.
fn segments<T>(
    examples: &Ragged<'_, T>,
    plan: &PackPlan,
    width: usize,
    totals: &[usize],
) -> (Vec<u8>, Vec<i32>, usize) {
    let mut boundaries = vec![0u8; plan.rows() * width];
    let mut cu_seqlens = vec![0i32];
    let mut max_seqlen = 0;
    for (r, &total) in totals.iter().enumerate() {
        let mut t = r * width;
        for &e in plan.row(r) {
            let len = examples.row_len(e as usize);
            if len > 0 {
                boundaries[t] = 1;
            }
            t += len;
            cu_seqlens.push(t as i32);
            max_seqlen = max_seqlen.max(len);
        }
        if total < width {
            cu_seqlens.push(((r + 1) * width) as i32);
            max_seqlen = max_seqlen.max(width - total);
        }
    }
    (boundaries, cu_seqlens, max_seqlen)
}

/// Packs a per-token column aligned with the examples (e.g. `token_type_ids`, a
/// special-tokens mask, word ids) into the same rows as [`pack`], padding with `pad_value`.
pub fn pack_column<T: TokenId, O: OutId>(
    column: &Ragged<'_, T>,
    plan: &PackPlan,
    width: usize,
    pad_value: i64,
) -> Result<Vec<O>> {
    let pad = O::from_i64(pad_value);
    let [out] = fill_rows(1, plan.rows(), width, |r, [dst]| {
        let mut t = 0;
        for &e in plan.row(r) {
            for &x in column.row(e as usize) {
                dst[t] = O::from_i64(x.to_i64());
                t += 1;
            }
        }
        dst[t..].fill(pad);
    })?;
    Ok(out)
}

/// The share of `rows × width` slots that hold tokens.
pub fn efficiency(lengths: &[usize], rows: usize, width: usize) -> f64 {
    if rows == 0 || width == 0 {
        return 0.0;
    }
    lengths.iter().sum::<usize>() as f64 / (rows * width) as f64
}

/// How the packed examples are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Rows of `max_length` tokens, filled by a [`Strategy`].
    Rows,
    /// One padding-free row holding every example.
    Flat,
}

impl Layout {
    pub fn parse(arg: &str, s: &str) -> Result<Self> {
        match s {
            "rows" => Ok(Layout::Rows),
            "flat" => Ok(Layout::Flat),
            other => Err(CoreError::invalid(
                arg,
                format!("must be 'rows' or 'flat', got {other:?}"),
            )),
        }
    }
}

/// What happens to an example longer than `max_length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// It is an error.
    Error,
    /// Its first `max_length` tokens are kept.
    Truncate,
    /// It becomes consecutive pieces of at most `max_length` tokens.
    Split,
}

impl Overflow {
    pub fn parse(arg: &str, s: &str) -> Result<Self> {
        match s {
            "error" => Ok(Overflow::Error),
            "truncate" => Ok(Overflow::Truncate),
            "split" => Ok(Overflow::Split),
            other => Err(CoreError::invalid(
                arg,
                format!("must be 'error', 'truncate' or 'split', got {other:?}"),
            )),
        }
    }
}

/// Everything [`pack_batch`] needs besides the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackOptions {
    /// Row capacity (needed by [`Layout::Rows`]); with [`Layout::Flat`], a cap on the batch.
    pub max_length: Option<usize>,
    pub layout: Layout,
    pub strategy: Strategy,
    pub overflow: Overflow,
    pub pad_token_id: i64,
    pub causal_labels: bool,
    /// First position of every example (0; RoBERTa and XLM-R number from `padding_idx + 1`).
    pub position_offset: i64,
    /// Round the row width up to a multiple of this (1 = no rounding).
    pub multiple_of: usize,
    pub threads: usize,
}

impl PackOptions {
    pub fn validate(&self) -> Result<()> {
        if self.multiple_of == 0 {
            return Err(CoreError::invalid(
                "pad_to_multiple_of",
                "must be a positive integer",
            ));
        }
        if self.max_length == Some(0) {
            return Err(CoreError::invalid(
                "max_length",
                "must be a positive integer",
            ));
        }
        check_position_offset(self.position_offset, 0)
    }

    /// The examples cut as [`Overflow`] says; `None` when nothing needs cutting.
    pub fn cut<T: TokenId>(&self, examples: &Ragged<'_, T>) -> Option<Cut> {
        match (self.max_length, self.overflow) {
            (Some(m), Overflow::Truncate) => Cut::new(examples, m, false),
            (Some(m), Overflow::Split) => Cut::new(examples, m, true),
            _ => None,
        }
    }

    /// The plan and the row width for examples of `lengths`.
    pub fn plan(&self, lengths: &[usize]) -> Result<(PackPlan, usize)> {
        let round = |w: usize| {
            crate::limits::round_up(
                if self.multiple_of > 1 {
                    "pad_to_multiple_of"
                } else {
                    "max_length"
                },
                w,
                self.multiple_of,
            )
        };
        if let Some(m) = self.max_length {
            crate::limits::length("max_length", m)?;
        }
        match self.layout {
            Layout::Flat => {
                let mut total: usize = 0;
                for &n in lengths {
                    total = crate::limits::sum("examples", total, n)?;
                }
                // The flat row holds the whole batch: `overflow` cuts examples, but the row
                // itself never exceeds max_length, whatever `overflow` says.
                if let Some(m) = self.max_length
                    && total > m
                {
                    return Err(CoreError::invalid(
                        "max_length",
                        format!(
                            "the batch has {total} tokens, more than max_length={m} (the flat \
                             layout is one row; use layout='rows' to spread examples over rows)"
                        ),
                    ));
                }
                Ok((PackPlan::single_row(lengths.len()), round(total)?))
            }
            Layout::Rows => {
                let Some(m) = self.max_length else {
                    return Err(CoreError::invalid(
                        "max_length",
                        "packing into rows needs max_length",
                    ));
                };
                let width = round(m)?;
                let plan = plan(lengths, m, self.strategy)?;
                crate::limits::elements("max_length", plan.rows(), width)?;
                Ok((plan, width))
            }
        }
    }
}

/// Examples cut to at most `max_length` tokens each (as int64 rows), and which example each
/// piece comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub values: Vec<i64>,
    pub offsets: Vec<usize>,
    /// `source[i]`: the example piece `i` comes from (non-decreasing).
    pub source: Vec<usize>,
    pub max_length: usize,
}

impl Cut {
    /// Cuts rows longer than `max_length`: keeps their start (`split = false`) or splits
    /// them into consecutive pieces (`split = true`). `None` when no row is too long.
    pub fn new<T: TokenId>(rows: &Ragged<'_, T>, max_length: usize, split: bool) -> Option<Self> {
        if (0..rows.rows()).all(|r| rows.row_len(r) <= max_length) {
            return None;
        }
        let mut values = Vec::with_capacity(rows.values.len());
        let mut offsets = vec![0];
        let mut source = Vec::new();
        for r in 0..rows.rows() {
            let row = rows.row(r);
            let pieces: Vec<&[T]> = if split {
                row.chunks(max_length).collect()
            } else {
                vec![&row[..row.len().min(max_length)]]
            };
            for piece in pieces {
                values.extend(piece.iter().map(|x| x.to_i64()));
                offsets.push(values.len());
                source.push(r);
            }
        }
        Some(Self {
            values,
            offsets,
            source,
            max_length,
        })
    }

    /// The pieces as rows.
    pub fn rows(&self) -> Ragged<'_, i64> {
        // Valid CSR by construction.
        Ragged {
            values: &self.values,
            offsets: &self.offsets,
        }
    }

    /// A per-token column aligned with the uncut examples, cut into the same pieces:
    /// `(values, offsets)`.
    pub fn column<T: Copy>(&self, column: &Ragged<'_, T>) -> (Vec<T>, Vec<usize>) {
        let mut values = Vec::with_capacity(self.values.len());
        let mut offsets = vec![0];
        let (mut last, mut pos) = (usize::MAX, 0);
        for &s in &self.source {
            if s != last {
                (last, pos) = (s, 0);
            }
            let row = column.row(s);
            let take = (row.len() - pos).min(self.max_length);
            values.extend_from_slice(&row[pos..pos + take]);
            pos += take;
            offsets.push(values.len());
        }
        (values, offsets)
    }
}

/// A per-token column aligned with the examples (`token_type_ids`, a special-tokens mask,
/// word ids), packed into the same rows, padded with `pad_value`.
#[derive(Debug, Clone, Copy)]
pub struct AlignedColumn<'a> {
    pub name: &'a str,
    pub rows: Ragged<'a, i64>,
    pub pad_value: i64,
}

/// What [`pack_batch`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedBatch<O> {
    pub packed: Packed<O>,
    /// Tokens packed (after any cutting).
    pub num_tokens: usize,
    /// Sequences packed (pieces count separately when examples were split).
    pub num_sequences: usize,
    /// Each column given, `rows × width`, in the order given.
    pub columns: Vec<Vec<O>>,
}

/// Packs a batch of examples, plus aligned columns, as [`PackOptions`] say.
pub fn pack_batch<T: TokenId, O: OutId>(
    examples: &Ragged<'_, T>,
    columns: &[AlignedColumn<'_>],
    options: &PackOptions,
) -> Result<PackedBatch<O>> {
    options.validate()?;
    if examples.rows() == 0 {
        return Err(CoreError::invalid("examples", "the batch is empty"));
    }
    if let Some(r) = (0..examples.rows()).find(|&r| examples.row_len(r) == 0) {
        return Err(CoreError::invalid(
            "examples",
            format!("row {r} is empty (zero-length examples cannot be packed)"),
        ));
    }
    match options.cut(examples) {
        Some(cut) => pack_with_columns(&cut.rows(), examples, Some(&cut), columns, options),
        None => pack_with_columns(examples, examples, None, columns, options),
    }
}

/// Packs `rows` (the examples, or their pieces when `cut`), then each column (aligned with
/// the uncut `examples`, cut alike) into the same rows.
fn pack_with_columns<U: TokenId, T, O: OutId>(
    rows: &Ragged<'_, U>,
    examples: &Ragged<'_, T>,
    cut: Option<&Cut>,
    columns: &[AlignedColumn<'_>],
    o: &PackOptions,
) -> Result<PackedBatch<O>> {
    let lengths: Vec<usize> = (0..rows.rows()).map(|r| rows.row_len(r)).collect();
    let (the_plan, width) = o.plan(&lengths)?;
    let packed = pack::<U, O>(
        rows,
        &the_plan,
        width,
        o.pad_token_id,
        o.causal_labels,
        o.position_offset,
        o.threads,
    )?;
    let columns = columns
        .iter()
        .map(|c| {
            examples.check_aligned(c.name, &c.rows)?;
            match cut {
                Some(cut) => {
                    let (values, offsets) = cut.column(&c.rows);
                    let pieces = Ragged::new(c.name, &values, &offsets)?;
                    pack_column(&pieces, &the_plan, width, c.pad_value)
                }
                None => pack_column(&c.rows, &the_plan, width, c.pad_value),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(PackedBatch {
        packed,
        num_tokens: lengths.iter().sum(),
        num_sequences: rows.rows(),
        columns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ffd_packs_tightly_and_keeps_input_order_within_rows() {
        let lengths = [5, 3, 8, 2, 7, 1, 4];
        let p = plan(&lengths, 10, Strategy::FirstFitDecreasing).unwrap();
        // 30 tokens in rows of 10: FFD finds the optimum here.
        assert_eq!(p.rows(), 3);
        let mut seen: Vec<u32> = p.examples.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
        for r in 0..p.rows() {
            let row = p.row(r);
            assert!(row.windows(2).all(|w| w[0] < w[1]));
            assert!(row.iter().map(|&e| lengths[e as usize]).sum::<usize>() <= 10);
        }
        let g = plan(&lengths, 10, Strategy::Greedy).unwrap();
        assert_eq!(g.examples, (0..7).collect::<Vec<_>>());
        assert!(g.rows() >= p.rows());
        assert!(plan(&[11], 10, Strategy::Greedy).is_err());
        assert!(plan(&[1], 0, Strategy::Greedy).is_err());
        assert_eq!(
            plan(&[], 4, Strategy::FirstFitDecreasing).unwrap().rows(),
            0
        );
    }

    #[test]
    fn first_fit_tree_matches_a_linear_scan() {
        let lengths: Vec<usize> = (0..500).map(|i| 1 + (i * 7919) % 97).collect();
        let p = plan(&lengths, 128, Strategy::FirstFitDecreasing).unwrap();
        // Reference: first fit by linear scan over rows, longest first.
        let mut order: Vec<usize> = (0..lengths.len()).collect();
        order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]).then(a.cmp(&b)));
        let mut room: Vec<usize> = Vec::new();
        let mut rows: Vec<Vec<u32>> = Vec::new();
        for i in order {
            match room.iter().position(|&r| r >= lengths[i]) {
                Some(r) => {
                    room[r] -= lengths[i];
                    rows[r].push(i as u32);
                }
                None => {
                    room.push(128 - lengths[i]);
                    rows.push(vec![i as u32]);
                }
            }
        }
        assert_eq!(p.rows(), rows.len());
        for r in &mut rows {
            r.sort_unstable();
        }
        rows.sort_unstable_by_key(|r| r[0]);
        for (r, want) in rows.iter().enumerate() {
            assert_eq!(p.row(r), want.as_slice());
        }
    }

    #[test]
    fn packed_rows_have_positions_labels_and_segments() {
        let ids = [10i64, 11, 12, 20, 21, 30];
        let r = Ragged::new("x", &ids, &[0, 3, 5, 6]).unwrap();
        let p = plan(&[3, 2, 1], 4, Strategy::FirstFitDecreasing).unwrap();
        assert_eq!(p.examples, [0, 2, 1]);
        let out = pack::<i64, i64>(&r, &p, 4, 0, true, 0, 1).unwrap();
        assert_eq!(out.input_ids, [10, 11, 12, 30, 20, 21, 0, 0]);
        assert_eq!(out.position_ids, [0, 1, 2, 0, 0, 1, 0, 0]);
        assert_eq!(out.sequence_ids, [0, 0, 0, 2, 1, 1, -1, -1]);
        assert_eq!(out.attention_mask, [1, 1, 1, 1, 1, 1, 0, 0]);
        assert_eq!(out.labels, [-100, 11, 12, -100, -100, 21, -100, -100]);
        assert_eq!(out.boundaries, [1, 0, 0, 1, 1, 0, 0, 0]);
        assert_eq!(out.cu_seqlens, [0, 3, 4, 6, 8]);
        assert_eq!(out.max_seqlen, 3);
        let flat = pack::<i64, i32>(&r, &PackPlan::single_row(3), 6, 0, false, 0, 1).unwrap();
        assert_eq!(flat.cu_seqlens, [0, 3, 5, 6]);
        assert!(flat.labels.is_empty());
        assert!(pack::<i64, i64>(&r, &PackPlan::single_row(3), 5, 0, false, 0, 1).is_err());
        assert!((efficiency(&[3, 2, 1], 2, 4) - 0.75).abs() < 1e-12);
        // RoBERTa numbering: positions from padding_idx + 1 = 2, padding at padding_idx = 1.
        let roberta = pack::<i64, i64>(&r, &p, 4, 1, false, 2, 1).unwrap();
        assert_eq!(roberta.position_ids, [2, 3, 4, 2, 2, 3, 1, 1]);
        assert_eq!(roberta.input_ids, [10, 11, 12, 30, 20, 21, 1, 1]);
        let one = pack::<i64, i64>(&r, &p, 4, 0, false, 1, 1).unwrap();
        assert_eq!(one.position_ids, [1, 2, 3, 1, 1, 2, 0, 0]);
        assert!(pack::<i64, i64>(&r, &p, 4, 0, false, -1, 1).is_err());
        assert!(pack::<i64, i64>(&r, &p, 4, 0, false, i64::from(i32::MAX) - 3, 1).is_err());
    }

    #[test]
    fn cut_truncates_or_splits_and_recuts_columns() {
        let ids = [1i64, 2, 3, 4, 5, 6, 7];
        let r = Ragged::new("x", &ids, &[0, 5, 7]).unwrap();
        assert!(Cut::new(&r, 5, true).is_none());
        let t = Cut::new(&r, 3, false).unwrap();
        assert_eq!(
            (t.values.as_slice(), t.offsets.as_slice()),
            (&[1, 2, 3, 6, 7][..], &[0, 3, 5][..])
        );
        assert_eq!(t.source, [0, 1]);
        let s = Cut::new(&r, 2, true).unwrap();
        assert_eq!(s.values, ids);
        assert_eq!(s.offsets, [0, 2, 4, 5, 7]);
        assert_eq!(s.source, [0, 0, 0, 1]);
        let col = [10i64, 11, 12, 13, 14, 15, 16];
        let c = Ragged::new("c", &col, &[0, 5, 7]).unwrap();
        assert_eq!(s.column(&c), (col.to_vec(), vec![0, 2, 4, 5, 7]));
        assert_eq!(t.column(&c), (vec![10, 11, 12, 15, 16], vec![0, 3, 5]));
    }

    fn options(layout: Layout, overflow: Overflow, max_length: Option<usize>) -> PackOptions {
        PackOptions {
            max_length,
            layout,
            strategy: Strategy::FirstFitDecreasing,
            overflow,
            pad_token_id: 0,
            causal_labels: false,
            position_offset: 0,
            multiple_of: 1,
            threads: 1,
        }
    }

    #[test]
    fn pack_batch_cuts_plans_and_packs_columns() {
        let ids = [1i64, 2, 3, 4, 5, 6, 7];
        let r = Ragged::new("input_ids", &ids, &[0, 5, 7]).unwrap();
        let tt = [0i64, 0, 0, 1, 1, 0, 1];
        let col = AlignedColumn {
            name: "token_type_ids",
            rows: Ragged::new("token_type_ids", &tt, &[0, 5, 7]).unwrap(),
            pad_value: 9,
        };
        let o = options(Layout::Rows, Overflow::Split, Some(3));
        let b = pack_batch::<i64, i64>(&r, &[col], &o).unwrap();
        // Pieces [1 2 3] [4 5] [6 7]: FFD puts the two 2-token pieces in rows of their own.
        assert_eq!(b.packed.input_ids, [1, 2, 3, 4, 5, 0, 6, 7, 0]);
        assert_eq!(b.columns, [vec![0, 0, 0, 1, 1, 9, 0, 1, 9]]);
        assert_eq!((b.num_tokens, b.num_sequences), (7, 3));
        let flat = pack_batch::<i64, i32>(&r, &[], &options(Layout::Flat, Overflow::Error, None));
        assert_eq!(flat.unwrap().packed.width, 7);
    }

    #[test]
    fn pack_batch_errors_name_the_argument() {
        let ids = [1i64, 2, 3];
        let r = Ragged::new("input_ids", &ids, &[0, 3]).unwrap();
        let err = |o: PackOptions| pack_batch::<i64, i64>(&r, &[], &o).unwrap_err().to_string();
        let rows = options(Layout::Rows, Overflow::Error, None);
        assert_eq!(err(rows), "max_length: packing into rows needs max_length");
        let flat = options(Layout::Flat, Overflow::Error, Some(2));
        assert!(
            err(flat).starts_with("max_length: the batch has 3 tokens, more than max_length=2")
        );
        let zero = PackOptions {
            multiple_of: 0,
            ..flat
        };
        assert!(err(zero).starts_with("pad_to_multiple_of:"));
        let negative = PackOptions {
            position_offset: -2,
            ..flat
        };
        assert!(err(negative).starts_with("position_offset: must be in [0,"));
        let empty = Ragged::new("input_ids", &ids[..0], &[0, 0]).unwrap();
        let e = pack_batch::<i64, i64>(&empty, &[], &flat).unwrap_err();
        assert!(e.to_string().contains("row 0 is empty"));
        assert!(Layout::parse("layout", "x").is_err());
        assert_eq!(
            Overflow::parse("overflow", "x").unwrap_err().to_string(),
            "overflow: must be 'error', 'truncate' or 'split', got \"x\""
        );
    }
}
