//! Negative selection: exclusions, margin and score filters, the rank window and sampling
//! (see [`SelectParams`]).

use super::{PURPOSE, check_corpus_ids};
use crate::batch::Ragged;
use crate::parallel::for_each_mut;
use crate::rng::{RowKeys, Streams};
use crate::{CoreError, Result};

/// Which negatives are drawn from the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// The first `num_negatives` of the window (the hardest).
    Top,
    /// `num_negatives` of the window uniformly without replacement, from the query's own
    /// keyed stream; returned in window order (by score).
    Random,
}

impl Sampling {
    pub fn parse(arg: &str, s: &str) -> Result<Self> {
        match s {
            "top" => Ok(Sampling::Top),
            "random" => Ok(Sampling::Random),
            other => Err(CoreError::invalid(
                arg,
                format!("must be 'top' or 'random', got {other:?}"),
            )),
        }
    }
}

/// What `range_min` / `range_max` count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranks {
    /// Ranks among the candidates that survive the exclusions and filters
    /// (sentence-transformers).
    Filtered,
    /// Raw retrieval ranks, positives included, before anything is removed (NV-Retriever's
    /// "top-K shifted by N", FlagEmbedding's `range_for_sampling`).
    Raw,
}

impl Ranks {
    pub fn parse(arg: &str, s: &str) -> Result<Self> {
        match s {
            "filtered" => Ok(Ranks::Filtered),
            "raw" => Ok(Ranks::Raw),
            other => Err(CoreError::invalid(
                arg,
                format!("must be 'filtered' or 'raw', got {other:?}"),
            )),
        }
    }
}

/// How negatives are chosen from each query's ranked candidates.
///
/// For each query, in rank order, a candidate is dropped if it is padding (id `-1` or score
/// `-inf`), one of the query's positives (unless `include_positives`), the query's own corpus
/// row (`self_ids`; kept when it is also a positive and `include_positives` is set, as
/// sentence-transformers 6.3 keeps a query that is its own positive), or if it fails a filter, tested in this order with `pos` the query's **minimum** positive
/// score and all arithmetic in float32 as sentence-transformers does it:
/// `score + absolute_margin > pos`, `score > pos − |pos|·relative_margin`,
/// `score > max_score`, `score < min_score`. The window is then the survivors of ranks
/// `[range_min, range_max)` — counted among survivors ([`Ranks::Filtered`]) or among raw
/// candidates ([`Ranks::Raw`]) — and `num_negatives` are taken from it ([`Sampling`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SelectParams {
    pub num_negatives: usize,
    pub range_min: usize,
    pub range_max: usize,
    pub absolute_margin: Option<f32>,
    pub relative_margin: Option<f32>,
    pub max_score: Option<f32>,
    pub min_score: Option<f32>,
    pub sampling: Sampling,
    pub ranks: Ranks,
    pub include_positives: bool,
    pub seed: u64,
}

impl SelectParams {
    pub fn validate(&self) -> Result<()> {
        if self.num_negatives == 0 {
            return Err(CoreError::invalid("num_negatives", "must be at least 1"));
        }
        if self.range_min >= self.range_max {
            return Err(CoreError::invalid(
                "range_min",
                format!(
                    "must be smaller than range_max, got range_min={} and range_max={}",
                    self.range_min, self.range_max
                ),
            ));
        }
        if self.num_negatives > self.range_max - self.range_min {
            return Err(CoreError::invalid(
                "num_negatives",
                format!(
                    "is {} but the window range_min={}..range_max={} holds only {}",
                    self.num_negatives,
                    self.range_min,
                    self.range_max,
                    self.range_max - self.range_min
                ),
            ));
        }
        for (arg, v) in [
            ("absolute_margin", self.absolute_margin),
            ("relative_margin", self.relative_margin),
            ("max_score", self.max_score),
            ("min_score", self.min_score),
        ] {
            if let Some(v) = v
                && !v.is_finite()
            {
                return Err(CoreError::invalid(
                    arg,
                    format!("must be a finite number, got {v}"),
                ));
            }
        }
        Ok(())
    }

    fn margins(&self) -> bool {
        self.absolute_margin.is_some() || self.relative_margin.is_some()
    }
}

/// Each query's candidates: `rows × depth` ids and scores, ranked best first; id `-1` /
/// score `-inf` pad short lists.
#[derive(Debug, Clone, Copy)]
pub struct Candidates<'a> {
    pub ids: &'a [i64],
    pub scores: &'a [f32],
    pub depth: usize,
}

impl<'a> Candidates<'a> {
    /// Candidates from `ids` and `scores` arrays of shapes `ids_shape` and `scores_shape`
    /// (`[queries, depth]` each, row-major).
    pub fn new(
        ids: &'a [i64],
        scores: &'a [f32],
        ids_shape: [usize; 2],
        scores_shape: [usize; 2],
    ) -> Result<Self> {
        if ids_shape != scores_shape {
            return Err(CoreError::shape(
                "candidates",
                format!("ids {ids_shape:?} and scores {scores_shape:?} differ in shape"),
            ));
        }
        Ok(Self {
            ids,
            scores,
            depth: ids_shape[1],
        })
    }
}

/// The positives of each query from CSR `values` and `offsets`, which come together.
pub fn positives<'a>(
    values: Option<&'a [i64]>,
    offsets: Option<&'a [usize]>,
) -> Result<Option<Ragged<'a, i64>>> {
    match (values, offsets) {
        (Some(v), Some(o)) => Ok(Some(Ragged::new("positives", v, o)?)),
        (None, None) => Ok(None),
        _ => Err(CoreError::invalid(
            "positives",
            "give both positive_values and positive_offsets",
        )),
    }
}

/// How many candidates each rule removed (each candidate counted once, by the first rule
/// that removed it), over every retrieved candidate of every query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    pub positives: u64,
    pub self_ids: u64,
    pub absolute_margin: u64,
    pub relative_margin: u64,
    pub max_score: u64,
    pub min_score: u64,
}

impl Removed {
    /// The counts by rule name, as the Python API reports them.
    pub fn by_rule(&self) -> [(&'static str, u64); 6] {
        [
            ("positives", self.positives),
            ("self", self.self_ids),
            ("absolute_margin", self.absolute_margin),
            ("relative_margin", self.relative_margin),
            ("max_score", self.max_score),
            ("min_score", self.min_score),
        ]
    }

    fn add(&mut self, o: &Removed) {
        self.positives += o.positives;
        self.self_ids += o.self_ids;
        self.absolute_margin += o.absolute_margin;
        self.relative_margin += o.relative_margin;
        self.max_score += o.max_score;
        self.min_score += o.min_score;
    }
}

/// The chosen negatives: `rows × num_negatives` ids (`-1` where fewer were found) and scores
/// (`-inf` there), and what the rules removed.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub num_negatives: usize,
    pub ids: Vec<i64>,
    pub scores: Vec<f32>,
    pub removed: Removed,
}

/// The inputs of [`select`] besides the parameters.
#[derive(Debug, Clone, Copy)]
pub struct SelectInputs<'a> {
    pub candidates: Candidates<'a>,
    /// The corpus ids of each query's positives (`None`: no positives).
    pub positives: Option<Ragged<'a, i64>>,
    /// One score per positive, aligned with `positives.values`.
    pub positive_scores: &'a [f32],
    /// Each query's own corpus id, or `-1` (`None`: no self-exclusion).
    pub self_ids: Option<&'a [i64]>,
    /// The key of each query's random stream (its global id).
    pub keys: &'a [u64],
    /// Corpus rows (ids must lie in `[0, corpus_rows)`).
    pub corpus_rows: usize,
}

/// Chooses each query's negatives from its candidates (see [`SelectParams`]). The random
/// stream of query `q` is `(seed, 0, PURPOSE, keys[q])`, so results do not depend on the
/// thread count, the tiling of the search, or which other queries are in the call.
pub fn select(
    params: &SelectParams,
    inputs: &SelectInputs<'_>,
    threads: usize,
) -> Result<Selection> {
    params.validate()?;
    let rows = inputs.keys.len();
    check_candidates(&inputs.candidates, rows, inputs.corpus_rows)?;
    check_positives(params, inputs, rows)?;
    if let Some(s) = inputs.self_ids {
        check_self_ids(s, rows, inputs.corpus_rows)?;
    }
    const ROWS: usize = 512;
    let k = params.num_negatives;
    crate::limits::elements("num_negatives", rows, k)?;
    let depth = inputs.candidates.depth;
    let chunks = rows.div_ceil(ROWS);
    let mut parts: Vec<(Vec<i64>, Vec<f32>, Removed)> = vec![Default::default(); chunks];
    let threads = crate::parallel::threads_for(threads, rows * depth, 65_536);
    let streams = Streams::new(params.seed, 0, PURPOSE);
    for_each_mut(threads, &mut parts, |ci, (ids, scores, removed)| {
        let span = ci * ROWS..((ci + 1) * ROWS).min(rows);
        ids.resize(span.len() * k, -1);
        scores.resize(span.len() * k, f32::NEG_INFINITY);
        let mut scratch = Scratch {
            // The window never holds more than a row's candidates.
            window: Vec::with_capacity(params.range_max.min(depth)),
            ..Scratch::default()
        };
        for (r, q) in span.enumerate() {
            let out = (
                &mut ids[r * k..(r + 1) * k],
                &mut scores[r * k..(r + 1) * k],
            );
            select_row(params, inputs, &streams, q, &mut scratch, removed, out);
        }
    })?;
    let mut out = Selection {
        num_negatives: k,
        ids: Vec::with_capacity(rows * k),
        scores: Vec::with_capacity(rows * k),
        removed: Removed::default(),
    };
    for (ids, scores, removed) in &parts {
        out.ids.extend_from_slice(ids);
        out.scores.extend_from_slice(scores);
        out.removed.add(removed);
    }
    Ok(out)
}

/// Checks the candidates' shape (`rows × depth`, depth ≥ 1), ids (corpus rows or −1) and
/// scores (numbers, or −inf for padding).
fn check_candidates(c: &Candidates<'_>, rows: usize, corpus_rows: usize) -> Result<()> {
    if c.depth == 0 {
        return Err(CoreError::shape(
            "candidates",
            "must have at least one column",
        ));
    }
    if c.ids.len() != rows * c.depth || c.scores.len() != rows * c.depth {
        return Err(CoreError::shape(
            "candidates",
            format!(
                "ids/scores have {}/{} values, not queries × depth = {rows} × {}",
                c.ids.len(),
                c.scores.len(),
                c.depth
            ),
        ));
    }
    let n = corpus_rows as i64;
    if let Some(i) = c.ids.iter().position(|&id| id < -1 || id >= n) {
        return Err(CoreError::invalid(
            "candidates",
            format!(
                "id {} at [{}][{}] is not a corpus row (the corpus has {n} rows)",
                c.ids[i],
                i / c.depth,
                i % c.depth
            ),
        ));
    }
    if let Some(i) = c
        .scores
        .iter()
        .position(|s| s.is_nan() || *s == f32::INFINITY)
    {
        return Err(CoreError::invalid(
            "candidates",
            format!(
                "score {} at [{}][{}] is not a number",
                c.scores[i],
                i / c.depth,
                i % c.depth
            ),
        ));
    }
    Ok(())
}

/// Checks the positives (one non-empty row of corpus ids per query, one finite score each);
/// margins need them.
fn check_positives(params: &SelectParams, inputs: &SelectInputs<'_>, rows: usize) -> Result<()> {
    let Some(p) = &inputs.positives else {
        if params.margins() {
            return Err(CoreError::invalid(
                "positives",
                "absolute_margin and relative_margin are measured from the positives' scores; \
                 give positives",
            ));
        }
        return Ok(());
    };
    if p.rows() != rows {
        return Err(CoreError::shape(
            "positives",
            format!("has {} rows for {rows} queries", p.rows()),
        ));
    }
    check_corpus_ids("positives", p, inputs.corpus_rows)?;
    if let Some(r) = (0..rows).find(|&r| p.row_len(r) == 0) {
        return Err(CoreError::invalid(
            "positives",
            format!("query {r} has no positives (every query needs at least one)"),
        ));
    }
    let scores = inputs.positive_scores;
    if scores.len() != p.values.len() {
        return Err(CoreError::shape(
            "positive_scores",
            format!(
                "has {} values for {} positives",
                scores.len(),
                p.values.len()
            ),
        ));
    }
    if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
        return Err(CoreError::invalid(
            "positive_scores",
            format!("score {} at {i} is not finite", scores[i]),
        ));
    }
    Ok(())
}

/// Checks one self id (a corpus row or −1) per query.
fn check_self_ids(s: &[i64], rows: usize, corpus_rows: usize) -> Result<()> {
    if s.len() != rows {
        return Err(CoreError::shape(
            "self_ids",
            format!("has {} entries for {rows} queries", s.len()),
        ));
    }
    let n = corpus_rows as i64;
    if let Some(i) = s.iter().position(|&id| id < -1 || id >= n) {
        return Err(CoreError::invalid(
            "self_ids",
            format!(
                "[{i}] = {} is not a corpus row (the corpus has {n} rows)",
                s[i]
            ),
        ));
    }
    Ok(())
}

/// Buffers reused across the queries of a chunk.
#[derive(Default)]
struct Scratch {
    window: Vec<(i64, f32)>,
    sorted_pos: Vec<i64>,
    order: Vec<usize>,
}

/// Query `q`'s negatives into `out` (ids, scores): its window of surviving candidates, then
/// the top or a random sample of it.
fn select_row(
    p: &SelectParams,
    inputs: &SelectInputs<'_>,
    streams: &Streams,
    q: usize,
    scratch: &mut Scratch,
    removed: &mut Removed,
    (out_ids, out_scores): (&mut [i64], &mut [f32]),
) {
    fill_window(p, inputs, q, scratch, removed);
    let skip = match p.ranks {
        Ranks::Raw => 0,
        Ranks::Filtered => p.range_min.min(scratch.window.len()),
    };
    let window = &scratch.window[skip..];
    let k = p.num_negatives;
    let order = &mut scratch.order;
    order.clear();
    order.extend(0..window.len());
    if p.sampling == Sampling::Random && window.len() > k {
        // Partial Fisher–Yates over window positions: `order[..k]` is a uniform k-subset
        // (one `below` draw each); then back in window order.
        let mut rng = streams.row(&RowKeys::Samples(inputs.keys), q);
        let w = window.len();
        for i in 0..k {
            let j = i + rng.below((w - i) as u64) as usize;
            order.swap(i, j);
        }
        order[..k].sort_unstable();
    }
    for (i, &w) in order.iter().take(k).enumerate() {
        out_ids[i] = window[w].0;
        out_scores[i] = window[w].1;
    }
}

/// One query's positive ids: a linear scan for a few, a binary search over a sorted copy
/// for many.
enum Positives<'a> {
    Few(&'a [i64]),
    Sorted(&'a [i64]),
}

impl Positives<'_> {
    #[inline]
    fn contains(&self, id: i64) -> bool {
        match self {
            Positives::Few(p) => p.contains(&id),
            Positives::Sorted(p) => p.binary_search(&id).is_ok(),
        }
    }
}

/// Query `q`'s positives (sorted into `sorted` when there are many) and their minimum score
/// (`+inf` without positives).
fn query_positives<'a>(
    inputs: &'a SelectInputs<'_>,
    q: usize,
    sorted: &'a mut Vec<i64>,
) -> (Positives<'a>, f32) {
    let (pos, pos_scores): (&[i64], &[f32]) = match &inputs.positives {
        Some(pr) => (
            pr.row(q),
            &inputs.positive_scores[pr.offsets[q]..pr.offsets[q + 1]],
        ),
        None => (&[], &[]),
    };
    let pmin = pos_scores.iter().copied().fold(f32::INFINITY, f32::min);
    if pos.len() <= 16 {
        return (Positives::Few(pos), pmin);
    }
    sorted.clear();
    sorted.extend_from_slice(pos);
    sorted.sort_unstable();
    (Positives::Sorted(sorted), pmin)
}

/// Query `q`'s candidates in rank order, less the excluded and filtered ones (counted in
/// `removed`), into `scratch.window`: all ranks counted among survivors (up to `range_max`),
/// or raw ranks `[range_min, range_max)`.
#[inline]
fn fill_window(
    p: &SelectParams,
    inputs: &SelectInputs<'_>,
    q: usize,
    scratch: &mut Scratch,
    removed: &mut Removed,
) {
    let c = inputs.candidates;
    let ids = &c.ids[q * c.depth..(q + 1) * c.depth];
    let scores = &c.scores[q * c.depth..(q + 1) * c.depth];
    let (pos, pmin) = query_positives(inputs, q, &mut scratch.sorted_pos);
    let is_pos = |id: i64| pos.contains(id);
    let rel_thr = p.relative_margin.map(|m| pmin - pmin.abs() * m);
    let self_id = inputs.self_ids.map_or(-1, |s| s[q]);
    let (first, last, keep) = match p.ranks {
        Ranks::Raw => (
            p.range_min.min(c.depth),
            p.range_max.min(c.depth),
            usize::MAX,
        ),
        Ranks::Filtered => (0, c.depth, p.range_max),
    };
    let window = &mut scratch.window;
    window.clear();
    for r in first..last {
        let (id, s) = (ids[r], scores[r]);
        if id < 0 || s == f32::NEG_INFINITY {
            continue;
        }
        if !p.include_positives && is_pos(id) {
            removed.positives += 1;
        } else if id == self_id && !(p.include_positives && is_pos(id)) {
            removed.self_ids += 1;
        } else if p.absolute_margin.is_some_and(|m| s + m > pmin) {
            removed.absolute_margin += 1;
        } else if rel_thr.is_some_and(|t| s > t) {
            removed.relative_margin += 1;
        } else if p.max_score.is_some_and(|m| s > m) {
            removed.max_score += 1;
        } else if p.min_score.is_some_and(|m| s < m) {
            removed.min_score += 1;
        } else if window.len() < keep {
            window.push((id, s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(n: usize, lo: usize, hi: usize) -> SelectParams {
        SelectParams {
            num_negatives: n,
            range_min: lo,
            range_max: hi,
            absolute_margin: None,
            relative_margin: None,
            max_score: None,
            min_score: None,
            sampling: Sampling::Top,
            ranks: Ranks::Filtered,
            include_positives: false,
            seed: 0,
        }
    }

    // One query, candidates 0..8 with falling scores; positive 2 (score 0.5); self row 0.
    const IDS: [i64; 8] = [0, 1, 2, 3, 4, 5, 6, 7];
    const SCORES: [f32; 8] = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2];
    const POS_OFFSETS: [usize; 2] = [0, 1];
    const POS_IDS: [i64; 1] = [2];

    fn one_query() -> SelectInputs<'static> {
        SelectInputs {
            candidates: Candidates {
                ids: &IDS,
                scores: &SCORES,
                depth: 8,
            },
            positives: Some(Ragged::new("positives", &POS_IDS, &POS_OFFSETS).unwrap()),
            positive_scores: &[0.5],
            self_ids: Some(&[0]),
            keys: &[0],
            corpus_rows: 8,
        }
    }

    #[test]
    fn selection_exclusions_and_rank_windows() {
        let inputs = one_query();
        let run = |p: &SelectParams| select(p, &inputs, 1).unwrap();
        // Positive 2 and self 0 removed; range_min counts survivors: [1, 3, 4, 5, 6, 7] → skip 1.
        let s = run(&params(3, 1, 8));
        assert_eq!(s.ids, [3, 4, 5]);
        assert_eq!(s.removed.positives, 1);
        assert_eq!(s.removed.self_ids, 1);
        // include_positives keeps the positive; the self row stays excluded unless it is
        // itself a positive (sentence-transformers 6.3: a query that is its own positive).
        let kept = SelectParams {
            include_positives: true,
            ..params(3, 0, 8)
        };
        assert_eq!(run(&kept).ids, [1, 2, 3]);
        let own_positive = SelectInputs {
            self_ids: Some(&[2]),
            ..inputs
        };
        let s = select(&kept, &own_positive, 1).unwrap();
        assert_eq!(s.ids, [0, 1, 2]);
        assert_eq!(s.removed.self_ids, 0);
        // Raw ranks: window = raw ranks 1..4 = [1, 2, 3] minus the positive.
        let s = run(&SelectParams {
            ranks: Ranks::Raw,
            ..params(2, 1, 4)
        });
        assert_eq!(s.ids, [1, 3]);
    }

    #[test]
    fn selection_margins_and_score_filters() {
        let inputs = one_query();
        let run = |p: &SelectParams| select(p, &inputs, 1).unwrap();
        // Absolute margin 0.15 from pos 0.5: keep score < 0.35 (score + m > pos dropped).
        let s = run(&SelectParams {
            absolute_margin: Some(0.15),
            ..params(3, 0, 8)
        });
        assert_eq!(s.ids, [6, 7, -1]);
        assert_eq!(s.scores[2], f32::NEG_INFINITY);
        // Relative margin is sign-safe: pos −0.5, m = 0.2 → threshold −0.6.
        let neg_scores = [-0.1f32, -0.2, -0.3, -0.4, -0.5, -0.55, -0.65, -0.7];
        let inputs2 = SelectInputs {
            candidates: Candidates {
                ids: &IDS,
                scores: &neg_scores,
                depth: 8,
            },
            positive_scores: &[-0.5],
            self_ids: None,
            ..inputs
        };
        let s = select(
            &SelectParams {
                relative_margin: Some(0.2),
                ..params(2, 0, 8)
            },
            &inputs2,
            1,
        )
        .unwrap();
        assert_eq!(s.ids, [6, 7]);
        // max/min score window.
        let s = run(&SelectParams {
            max_score: Some(0.65),
            min_score: Some(0.35),
            ..params(3, 0, 8)
        });
        assert_eq!(s.ids, [3, 4, 5]);
    }

    #[test]
    fn random_selection_is_a_stable_subset_in_window_order() {
        let inputs = one_query();
        let run = |p: &SelectParams| select(p, &inputs, 1).unwrap();
        let p = SelectParams {
            sampling: Sampling::Random,
            seed: 9,
            ..params(2, 0, 8)
        };
        let a = run(&p);
        assert_eq!(a, run(&p));
        assert!(a.ids[0] < a.ids[1] && a.ids.iter().all(|i| [1, 3, 4, 5, 6, 7].contains(i)));
    }

    #[test]
    fn selection_errors_name_the_argument() {
        let ids = [0i64, 1];
        let scores = [0.5f32, 0.4];
        let inputs = SelectInputs {
            candidates: Candidates {
                ids: &ids,
                scores: &scores,
                depth: 2,
            },
            positives: None,
            positive_scores: &[],
            self_ids: None,
            keys: &[0],
            corpus_rows: 2,
        };
        let err = |p: &SelectParams, i: &SelectInputs<'_>| select(p, i, 1).unwrap_err().to_string();
        assert!(err(&params(0, 0, 2), &inputs).starts_with("num_negatives"));
        assert!(err(&params(1, 2, 2), &inputs).starts_with("range_min"));
        assert!(err(&params(3, 0, 2), &inputs).starts_with("num_negatives"));
        let margin = SelectParams {
            absolute_margin: Some(0.1),
            ..params(1, 0, 2)
        };
        assert!(err(&margin, &inputs).starts_with("positives"));
        let offsets = [0usize, 0];
        let empty = Ragged::new("positives", &[], &offsets).unwrap();
        let no_pos = SelectInputs {
            positives: Some(empty),
            ..inputs
        };
        assert!(err(&params(1, 0, 2), &no_pos).contains("query 0 has no positives"));
        let bad_ids = [0i64, 5];
        let bad = SelectInputs {
            candidates: Candidates {
                ids: &bad_ids,
                ..inputs.candidates
            },
            ..inputs
        };
        assert!(err(&params(1, 0, 2), &bad).starts_with("candidates: id 5"));
    }
}
