//! BLEU and self-BLEU over token-id sequences, pinned to NLTK's `sentence_bleu` (checked
//! against NLTK 3.10.4) with smoothing method 1, as Texygen and TextGAN-PyTorch report them.
//!
//! **BLEU of one hypothesis `h` against a reference set `R`** (every hypothesis is scored
//! against the same whole set, and the metric is the mean over hypotheses):
//! - modified precision of order `n`: `p_n = Σ_g min(c_h(g), max_{ref∈R} c_ref(g)) /
//!   max(1, |h| − n + 1)` over the distinct `n`-grams `g` of `h` (`c` = occurrence counts;
//!   the denominator is 1 when `|h| < n`);
//! - brevity penalty: `r` = the reference length closest to `|h|` (ties: the shorter);
//!   `BP = 1` if `|h| > r`, `0` if `|h| = 0`, else `exp(1 − r/|h|)`;
//! - `BLEU = 0` when no unigram matches; otherwise `BP · exp(Σ_n w_n · ln p_n)` where, with
//!   smoothing method 1, a zero `p_n` becomes `ε / max(1, |h| − n + 1)` (`ε = 0.1`); without
//!   smoothing a zero `p_n` (with `w_n > 0`) makes BLEU exactly 0 (NLTK returns a number below
//!   1e-70 and warns). Weights default to uniform `1/N` (BLEU-N).
//!
//! **Self-BLEU** (Texygen `SelfBleu`, fast mode): sample `i` is the hypothesis and all the
//! *other* samples are its references; the metric is the mean over samples.
//!
//! Implementation: n-grams are interned exactly (an n-gram's id is the interned pair of its
//! (n−1)-gram prefix id and last token, so no hashing collisions can change a count). The
//! reference side is one table of maximum counts per n-gram (for self-BLEU the two largest
//! counts and the owner of the largest, so leaving one sample out is O(1)), built once, not
//! once per hypothesis as NLTK does; hypotheses are then scored in parallel.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::batch::{Ragged, TokenId};
use crate::parallel::{for_each_mut, threads_for};
use crate::{CoreError, Result};

/// A small multiplicative hasher for the interning table's integer keys.
#[derive(Default)]
struct Fx(u64);

impl Hasher for Fx {
    #[inline]
    fn finish(&self) -> u64 {
        // Final avalanche so the table's low bits depend on every input bit.
        let mut z = self.0;
        z = (z ^ (z >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        z ^ (z >> 33)
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_i64(&mut self, i: i64) {
        self.write_u64(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

const ROOT: u32 = u32::MAX;

/// How zero precisions are treated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Smoothing {
    /// A zero precision makes the score 0.
    None,
    /// NLTK `SmoothingFunction(epsilon).method1`: a zero precision becomes `epsilon / den`.
    Method1 { epsilon: f64 },
}

impl Smoothing {
    /// `"method1"` (with `epsilon`) or `"none"`.
    pub fn parse(arg: &str, s: &str, epsilon: f64) -> Result<Self> {
        match s {
            "method1" => Ok(Smoothing::Method1 { epsilon }),
            "none" => Ok(Smoothing::None),
            other => Err(CoreError::invalid(
                arg,
                format!("must be 'method1' or 'none', got {other:?}"),
            )),
        }
    }
}

/// What BLEU to compute.
#[derive(Debug, Clone, PartialEq)]
pub struct BleuSpec {
    /// `w_n` for n = 1..=N (`N = weights.len()`).
    pub weights: Vec<f64>,
    pub smoothing: Smoothing,
}

impl BleuSpec {
    /// Uniform weights `1/max_n`, smoothing method 1 with ε = 0.1 (Texygen's BLEU-N).
    pub fn uniform(max_n: usize) -> Self {
        Self {
            weights: vec![1.0 / max_n as f64; max_n],
            smoothing: Smoothing::Method1 { epsilon: 0.1 },
        }
    }

    /// A validated spec.
    pub fn new(weights: Vec<f64>, smoothing: Smoothing) -> Result<Self> {
        let spec = Self { weights, smoothing };
        spec.validate()?;
        Ok(spec)
    }

    pub fn validate(&self) -> Result<()> {
        if self.weights.is_empty() || self.weights.len() > 64 {
            return Err(CoreError::invalid(
                "weights",
                format!("need 1 to 64 n-gram weights, got {}", self.weights.len()),
            ));
        }
        if let Some(w) = self.weights.iter().find(|w| !w.is_finite() || **w < 0.0) {
            return Err(CoreError::invalid(
                "weights",
                format!("must be finite and >= 0, got {w}"),
            ));
        }
        if let Smoothing::Method1 { epsilon } = self.smoothing
            && !(epsilon.is_finite() && epsilon > 0.0)
        {
            return Err(CoreError::invalid(
                "epsilon",
                format!("must be a finite number > 0, got {epsilon}"),
            ));
        }
        Ok(())
    }

    fn max_n(&self) -> usize {
        self.weights.len()
    }
}

/// Interned n-grams up to order `max_n`, with each id's order.
struct Table {
    map: HashMap<(u32, i64), u32, BuildHasherDefault<Fx>>,
    order: Vec<u8>,
    max_n: usize,
}

impl Table {
    fn new(max_n: usize) -> Self {
        Self {
            map: HashMap::default(),
            order: Vec::new(),
            max_n,
        }
    }

    /// Interns every n-gram of `row` (orders 1..=max_n), appending their ids to `out`.
    fn intern_row<T: TokenId>(&mut self, row: &[T], out: &mut Vec<u32>) {
        for i in 0..row.len() {
            let mut prefix = ROOT;
            for (k, t) in row[i..].iter().take(self.max_n).enumerate() {
                let next = self.order.len() as u32;
                let id = *self.map.entry((prefix, t.to_i64())).or_insert(next);
                if id == next {
                    self.order.push((k + 1) as u8);
                }
                out.push(id);
                prefix = id;
            }
        }
    }

    /// The ids of the n-grams of `row` that the table knows (unknown n-grams and their
    /// extensions are skipped), appended to `out`.
    fn lookup_row<T: TokenId>(&self, row: &[T], out: &mut Vec<u32>) {
        for i in 0..row.len() {
            let mut prefix = ROOT;
            for t in row[i..].iter().take(self.max_n) {
                match self.map.get(&(prefix, t.to_i64())) {
                    Some(&id) => {
                        out.push(id);
                        prefix = id;
                    }
                    None => break,
                }
            }
        }
    }
}

/// Sorts `ids` and calls `f(id, count)` for each distinct id.
fn for_counts(ids: &mut [u32], mut f: impl FnMut(u32, u32)) {
    ids.sort_unstable();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i + 1;
        while j < ids.len() && ids[j] == ids[i] {
            j += 1;
        }
        f(ids[i], (j - i) as u32);
        i = j;
    }
}

/// Reference lengths with multiplicities, for the closest-length rule.
struct Lengths {
    /// Sorted distinct lengths and how many references have each.
    sorted: Vec<(usize, usize)>,
}

impl Lengths {
    fn new(lengths: impl Iterator<Item = usize>) -> Self {
        let mut v: Vec<usize> = lengths.collect();
        v.sort_unstable();
        let mut sorted: Vec<(usize, usize)> = Vec::new();
        for l in v {
            match sorted.last_mut() {
                Some((x, c)) if *x == l => *c += 1,
                _ => sorted.push((l, 1)),
            }
        }
        Self { sorted }
    }

    /// The length closest to `h` (ties: the shorter), not counting one reference of length
    /// `exclude` (the hypothesis itself in self-BLEU).
    fn closest(&self, h: usize, exclude: Option<usize>) -> Option<usize> {
        let present = |&(l, c): &(usize, usize)| {
            let c = if exclude == Some(l) { c - 1 } else { c };
            (c > 0).then_some(l)
        };
        let at = self.sorted.partition_point(|&(l, _)| l < h);
        let below = self.sorted[..at].iter().rev().find_map(present);
        let above = self.sorted[at..].iter().find_map(present);
        match (below, above) {
            (Some(b), Some(a)) => Some(if h - b <= a - h { b } else { a }),
            (b, a) => b.or(a),
        }
    }
}

/// One hypothesis's score from its clipped match counts per order and its closest reference
/// length.
fn score(spec: &BleuSpec, numerators: &[u64], hyp_len: usize, ref_len: usize) -> f64 {
    if numerators[0] == 0 {
        return 0.0;
    }
    let mut log_sum = 0.0f64;
    for (k, &w) in spec.weights.iter().enumerate() {
        let n = k + 1;
        let den = if hyp_len >= n { hyp_len + 1 - n } else { 0 }.max(1) as f64;
        let p = match (numerators[k], spec.smoothing) {
            (0, Smoothing::Method1 { epsilon }) => epsilon / den,
            (0, Smoothing::None) if w > 0.0 => return 0.0,
            (0, Smoothing::None) => continue,
            (m, _) => m as f64 / den,
        };
        log_sum += w * p.ln();
    }
    let bp = if hyp_len > ref_len {
        1.0
    } else if hyp_len == 0 {
        0.0
    } else {
        (1.0 - ref_len as f64 / hyp_len as f64).exp()
    };
    bp * log_sum.exp()
}

fn threads_for_rows(threads: usize, rows: usize) -> usize {
    threads_for(threads, rows, 64)
}

/// Sentence BLEU of every hypothesis against the whole reference set.
pub fn bleu<T: TokenId, U: TokenId>(
    hypotheses: &Ragged<'_, T>,
    references: &Ragged<'_, U>,
    spec: &BleuSpec,
    threads: usize,
) -> Result<Vec<f64>> {
    spec.validate()?;
    if references.rows() == 0 {
        return Err(CoreError::invalid(
            "references",
            "need at least one reference",
        ));
    }
    let mut table = Table::new(spec.max_n());
    let mut max_count: Vec<u32> = Vec::new();
    let mut scratch = Vec::new();
    for r in 0..references.rows() {
        scratch.clear();
        table.intern_row(references.row(r), &mut scratch);
        max_count.resize(table.order.len(), 0);
        for_counts(&mut scratch, |id, c| {
            let m = &mut max_count[id as usize];
            *m = (*m).max(c);
        });
    }
    let lengths = Lengths::new((0..references.rows()).map(|r| references.row_len(r)));
    let mut out = vec![0.0f64; hypotheses.rows()];
    let table = &table;
    let max_count = &max_count;
    for_each_mut(
        threads_for_rows(threads, hypotheses.rows()),
        &mut out,
        |h, o| {
            let row = hypotheses.row(h);
            let mut ids = Vec::with_capacity(row.len() * spec.max_n());
            table.lookup_row(row, &mut ids);
            let mut num = vec![0u64; spec.max_n()];
            for_counts(&mut ids, |id, c| {
                let k = table.order[id as usize] as usize - 1;
                num[k] += u64::from(c.min(max_count[id as usize]));
            });
            let r = lengths.closest(row.len(), None).unwrap_or(0);
            *o = score(spec, &num, row.len(), r);
        },
    )?;
    Ok(out)
}

/// Self-BLEU of every sample: the sample against all the others.
pub fn self_bleu<T: TokenId>(
    samples: &Ragged<'_, T>,
    spec: &BleuSpec,
    threads: usize,
) -> Result<Vec<f64>> {
    spec.validate()?;
    let n = samples.rows();
    if n < 2 {
        return Err(CoreError::invalid(
            "samples",
            format!("self-BLEU needs at least 2 samples, got {n}"),
        ));
    }
    let mut table = Table::new(spec.max_n());
    // Per n-gram: the largest count, its sample, and the second largest count.
    let mut top: Vec<(u32, u32, u32)> = Vec::new();
    let mut own: Vec<Vec<(u32, u32)>> = Vec::with_capacity(n);
    let mut scratch = Vec::new();
    for s in 0..n {
        scratch.clear();
        table.intern_row(samples.row(s), &mut scratch);
        top.resize(table.order.len(), (0, u32::MAX, 0));
        let mut counts = Vec::new();
        for_counts(&mut scratch, |id, c| {
            counts.push((id, c));
            let e = &mut top[id as usize];
            if c > e.0 {
                *e = (c, s as u32, e.0);
            } else if c > e.2 {
                e.2 = c;
            }
        });
        own.push(counts);
    }
    let lengths = Lengths::new((0..n).map(|r| samples.row_len(r)));
    let mut out = vec![0.0f64; n];
    let (table, top, own) = (&table, &top, &own);
    for_each_mut(threads_for_rows(threads, n), &mut out, |s, o| {
        let mut num = vec![0u64; spec.max_n()];
        for &(id, c) in &own[s] {
            let e = top[id as usize];
            let others = if e.1 == s as u32 { e.2 } else { e.0 };
            let k = table.order[id as usize] as usize - 1;
            num[k] += u64::from(c.min(others));
        }
        let len = samples.row_len(s);
        let r = lengths.closest(len, Some(len)).unwrap_or(0);
        *o = score(spec, &num, len, r);
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ragged(rows: &[&[i64]]) -> (Vec<i64>, Vec<usize>) {
        let mut v = Vec::new();
        let mut o = vec![0];
        for r in rows {
            v.extend_from_slice(r);
            o.push(v.len());
        }
        (v, o)
    }

    #[test]
    fn identical_sentence_scores_one() {
        let (v, o) = ragged(&[&[1, 2, 3, 4, 5]]);
        let r = Ragged::new("x", &v[..], &o[..]).unwrap();
        let s = bleu(&r, &r, &BleuSpec::uniform(4), 1).unwrap();
        assert!((s[0] - 1.0).abs() < 1e-15);
    }

    #[test]
    fn clipping_and_brevity_by_hand() {
        // "the the the the" against "the cat": p1 = min(4, 1)/4 = 1/4; BLEU-1, BP = 1 (4 > 2).
        let (h, ho) = ragged(&[&[7, 7, 7, 7]]);
        let (r, ro) = ragged(&[&[7, 8]]);
        let hyp = Ragged::new("h", &h[..], &ho[..]).unwrap();
        let refs = Ragged::new("r", &r[..], &ro[..]).unwrap();
        let s = bleu(&hyp, &refs, &BleuSpec::uniform(1), 1).unwrap();
        assert!((s[0] - 0.25).abs() < 1e-15);
        // A short hypothesis: [7] against [7, 8]: p1 = 1, BP = exp(1 − 2/1).
        let (h, ho) = ragged(&[&[7]]);
        let hyp = Ragged::new("h", &h[..], &ho[..]).unwrap();
        let s = bleu(&hyp, &refs, &BleuSpec::uniform(1), 1).unwrap();
        assert!((s[0] - (-1.0f64).exp()).abs() < 1e-15);
    }

    #[test]
    fn self_bleu_leaves_the_sample_out() {
        // Two identical samples score 1 against each other; a third unrelated one scores 0.
        let (v, o) = ragged(&[&[1, 2, 3], &[1, 2, 3], &[9, 9, 9]]);
        let r = Ragged::new("x", &v[..], &o[..]).unwrap();
        let s = self_bleu(&r, &BleuSpec::uniform(2), 1).unwrap();
        assert!((s[0] - 1.0).abs() < 1e-15 && (s[1] - 1.0).abs() < 1e-15);
        assert_eq!(s[2], 0.0);
    }

    #[test]
    fn closest_length_ties_go_to_the_shorter() {
        let l = Lengths::new([3, 7, 7].into_iter());
        assert_eq!(l.closest(5, None), Some(3));
        assert_eq!(l.closest(7, Some(7)), Some(7));
        let l = Lengths::new([3, 7].into_iter());
        assert_eq!(l.closest(7, Some(7)), Some(3));
    }
}
