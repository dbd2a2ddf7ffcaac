//! Sequence packing: many short examples in few rows, with no attention across examples.
//!
//! A [`PackPlan`] says which examples share a row (first-fit-decreasing bin packing, or greedy
//! in input order); [`pack`] then writes the rows with `position_ids` restarting at 0 for each
//! example, per-token sequence ids, example-start flags (for masking that must not cross
//! examples), optional causal-LM labels (−100 on each example's first token, as Hugging Face's
//! `DataCollatorWithFlattening` does) and flash-attention `cu_seqlens`.

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
    let mut rows: Vec<Vec<u32>> = Vec::new();
    match strategy {
        Strategy::Greedy => {
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
        }
        Strategy::FirstFitDecreasing => {
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
            // Rows in the order of their first example, so the batch reads in input order.
            rows.sort_unstable_by_key(|r| r[0]);
        }
    }
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
    /// Position within its example (0, 1, …); 0 on padding.
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
/// example rows `examples`.
pub fn pack<T: TokenId, O: OutId>(
    examples: &Ragged<'_, T>,
    plan: &PackPlan,
    width: usize,
    pad_token_id: i64,
    causal_labels: bool,
    threads: usize,
) -> Result<Packed<O>> {
    if plan.examples.len() != examples.rows()
        || plan.examples.iter().any(|&e| e as usize >= examples.rows())
    {
        return Err(CoreError::shape("plan", "does not cover the examples"));
    }
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
    let pad = O::from_i64(pad_token_id);
    let ignore = O::from_i64(IGNORE_INDEX);
    let threads = threads_for(threads, examples.values.len(), 32 * 1024);
    let [
        input_ids,
        attention_mask,
        position_ids,
        sequence_ids,
        labels,
    ] = fill_rows(threads, rows, width, |r, [ids, attn, pos, seq, lab]| {
        let mut t = 0;
        for &e in plan.row(r) {
            let src = examples.row(e as usize);
            for (k, &x) in src.iter().enumerate() {
                ids[t + k] = O::from_i64(x.to_i64());
                attn[t + k] = O::from_i64(1);
                pos[t + k] = O::from_i64(k as i64);
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
        seq[t..].fill(O::from_i64(-1));
        if causal_labels {
            lab[t..].fill(ignore);
        }
    })?;
    let mut boundaries = vec![0u8; rows * width];
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
    Ok(Packed {
        rows,
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
        let out = pack::<i64, i64>(&r, &p, 4, 0, true, 1).unwrap();
        assert_eq!(out.input_ids, [10, 11, 12, 30, 20, 21, 0, 0]);
        assert_eq!(out.position_ids, [0, 1, 2, 0, 0, 1, 0, 0]);
        assert_eq!(out.sequence_ids, [0, 0, 0, 2, 1, 1, -1, -1]);
        assert_eq!(out.attention_mask, [1, 1, 1, 1, 1, 1, 0, 0]);
        assert_eq!(out.labels, [-100, 11, 12, -100, -100, 21, -100, -100]);
        assert_eq!(out.boundaries, [1, 0, 0, 1, 1, 0, 0, 0]);
        assert_eq!(out.cu_seqlens, [0, 3, 4, 6, 8]);
        assert_eq!(out.max_seqlen, 3);
        let flat = pack::<i64, i32>(&r, &PackPlan::single_row(3), 6, 0, false, 1).unwrap();
        assert_eq!(flat.cu_seqlens, [0, 3, 5, 6]);
        assert!(flat.labels.is_empty());
        assert!(pack::<i64, i64>(&r, &PackPlan::single_row(3), 5, 0, false, 1).is_err());
        assert!((efficiency(&[3, 2, 1], 2, 4) - 0.75).abs() < 1e-12);
    }
}
