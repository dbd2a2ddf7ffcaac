//! Token-level augmentations for contrastive language modelling (CLEAR, SimCSE's discrete
//! baselines, TSDAE's deletion noise), on token ids, seeded per row.
//!
//! A row is cut into **segments**, the maximal runs of non-special tokens; special tokens
//! (`[CLS]`, `[SEP]`, padding, …) stay where they are and are never deleted, replaced, moved
//! or inserted. Each segment goes through the enabled operations in this order:
//!
//! 1. **crop** (`c`): keep a contiguous window of `n − ⌊c·n⌋` tokens (at least 1) at a uniform
//!    start — one `below` draw;
//! 2. **span deletion** (`s`): delete one contiguous span of `min(⌊s·n⌋, n − 1)` tokens at a
//!    uniform start — one draw (none when the span is empty);
//! 3. **token deletion** (`p`): delete each token independently with probability `p` — one
//!    draw per token; a segment never empties: if every token was drawn for deletion, one
//!    uniform token survives (one more draw);
//! 4. **reordering** (`r`): swap two non-overlapping spans of `L = ⌊r·n / 2⌋` tokens each, the
//!    pair uniform among all such pairs — two draws (none when `L = 0`);
//! 5. **substitution** (`p`): replace each token with probability `p` by a random token — one
//!    draw per token, plus the token's draws;
//! 6. **insertion** (`p`): after each token, with probability `p`, insert a random token — one
//!    draw per token, plus the token's draws.
//!
//! `n` is the segment's length when the operation starts. Random tokens are uniform over the
//! non-special ids, or drawn from a unigram distribution (Walker's alias method: one `below`
//! and one `next_f64` draw). All draws of a row come from its own keyed stream (see
//! [`crate::rng`]), whose purpose word also carries the view number, so two views of one row
//! are independent and every view is the same for any thread count.

use crate::batch::{OutId, PadSpec, Ragged, TokenId, fill_rows};
use crate::rng::{Chance, Rng, RowKeys, Streams, hash_words, mix64, purpose};
use crate::{CoreError, Result, check_probability};

/// The purpose tag of the augmentation streams (combined with the view number).
pub const PURPOSE: u64 = purpose("contrastive-augment");

/// The purpose word of view `view` (0 = anchor, 1 = positive, …).
pub fn view_purpose(view: u64) -> u64 {
    hash_words(&[PURPOSE, view])
}

/// What an [`Augmenter`] does (all rates default to 0 = off).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AugmentParams<'a> {
    pub vocab_size: i64,
    pub special_token_ids: &'a [i64],
    pub crop: f64,
    pub span_deletion: f64,
    pub token_deletion: f64,
    pub reorder: f64,
    pub substitution: f64,
    pub insertion: f64,
    /// Weights of the random tokens over the vocabulary (`None`: uniform); specials get none.
    pub unigram: Option<&'a [f64]>,
}

/// Walker's alias table over `0..n`.
#[derive(Debug, Clone, PartialEq)]
struct Alias {
    prob: Vec<f64>,
    alias: Vec<u32>,
}

impl Alias {
    fn new(weights: &[f64]) -> Self {
        let n = weights.len();
        let total: f64 = weights.iter().sum();
        let mut prob: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let mut alias = vec![0u32; n];
        let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| prob[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            alias[s] = l as u32;
            prob[l] -= 1.0 - prob[s];
            if prob[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        for i in large.into_iter().chain(small) {
            prob[i] = 1.0;
        }
        Self { prob, alias }
    }

    #[inline]
    fn draw(&self, rng: &mut Rng) -> usize {
        let i = rng.below(self.prob.len() as u64) as usize;
        if rng.next_f64() < self.prob[i] {
            i
        } else {
            self.alias[i] as usize
        }
    }
}

/// The special ids sorted and deduplicated, each checked to lie in the vocabulary, leaving at
/// least one ordinary id.
fn special_set(ids: &[i64], vocab_size: i64) -> Result<Vec<i64>> {
    let mut specials: Vec<i64> = ids.to_vec();
    specials.sort_unstable();
    specials.dedup();
    if let Some(&bad) = specials.iter().find(|&&s| s < 0 || s >= vocab_size) {
        return Err(CoreError::invalid(
            "special_token_ids",
            format!("id {bad} is outside [0, {vocab_size})"),
        ));
    }
    if specials.len() as i64 >= vocab_size {
        return Err(CoreError::invalid(
            "special_token_ids",
            "every id is special: there is nothing to augment with",
        ));
    }
    Ok(specials)
}

/// The alias table of unigram weights `w` (one per id), with the special ids' weights zeroed.
fn unigram_table(w: &[f64], vocab_size: i64, specials: &[i64]) -> Result<Alias> {
    if w.len() as i64 != vocab_size {
        return Err(CoreError::shape(
            "unigram",
            format!("has {} weights for vocab_size {vocab_size}", w.len()),
        ));
    }
    if let Some(i) = w.iter().position(|x| !(x.is_finite() && *x >= 0.0)) {
        return Err(CoreError::invalid(
            "unigram",
            format!("weight {} of id {i} is not a finite number >= 0", w[i]),
        ));
    }
    let mut w = w.to_vec();
    for &s in specials {
        w[s as usize] = 0.0;
    }
    if w.iter().sum::<f64>() <= 0.0 {
        return Err(CoreError::invalid(
            "unigram",
            "no weight on any non-special id",
        ));
    }
    Ok(Alias::new(&w))
}

/// A validated augmentation configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Augmenter {
    vocab_size: i64,
    /// Sorted, deduplicated, inside the vocabulary.
    specials: Vec<i64>,
    crop: f64,
    span_deletion: f64,
    token_deletion: Chance,
    reorder: f64,
    substitution: Chance,
    insertion: Chance,
    unigram: Option<Alias>,
}

impl Augmenter {
    pub fn new(p: &AugmentParams<'_>) -> Result<Self> {
        if p.vocab_size < 1 || p.vocab_size > i64::from(i32::MAX) {
            return Err(CoreError::invalid(
                "vocab_size",
                format!("must be in [1, 2^31), got {}", p.vocab_size),
            ));
        }
        let specials = special_set(p.special_token_ids, p.vocab_size)?;
        for (arg, v) in [
            ("crop", p.crop),
            ("span_deletion", p.span_deletion),
            ("reorder", p.reorder),
        ] {
            if !(v.is_finite() && (0.0..1.0).contains(&v)) {
                return Err(CoreError::invalid(
                    arg,
                    format!("must be a fraction in [0, 1), got {v}"),
                ));
            }
        }
        let unigram = p
            .unigram
            .map(|w| unigram_table(w, p.vocab_size, &specials))
            .transpose()?;
        Ok(Self {
            vocab_size: p.vocab_size,
            crop: p.crop,
            span_deletion: p.span_deletion,
            token_deletion: Chance::new(check_probability("token_deletion", p.token_deletion)?),
            reorder: p.reorder,
            substitution: Chance::new(check_probability("substitution", p.substitution)?),
            insertion: Chance::new(check_probability("insertion", p.insertion)?),
            unigram,
            specials,
        })
    }

    pub fn vocab_size(&self) -> i64 {
        self.vocab_size
    }

    pub fn special_token_ids(&self) -> &[i64] {
        &self.specials
    }

    #[inline]
    fn is_special(&self, id: i64) -> bool {
        self.specials.binary_search(&id).is_ok()
    }

    /// A random non-special token.
    #[inline]
    fn random_token(&self, rng: &mut Rng) -> i64 {
        if let Some(a) = &self.unigram {
            return a.draw(rng) as i64;
        }
        let mut id = rng.below((self.vocab_size - self.specials.len() as i64) as u64) as i64;
        for &s in &self.specials {
            if s <= id {
                id += 1;
            } else {
                break;
            }
        }
        id
    }

    /// Augments one segment in place (see the module documentation for the draws): the
    /// steps in this order, each drawing from `rng` only when enabled.
    fn segment(&self, seg: &mut Vec<i64>, rng: &mut Rng, scratch: &mut Vec<i64>) {
        if self.crop > 0.0 && seg.len() > 1 {
            self.crop(seg, rng);
        }
        if self.span_deletion > 0.0 {
            self.delete_span(seg, rng);
        }
        if !self.token_deletion.never() {
            self.delete_tokens(seg, rng, scratch);
        }
        if self.reorder > 0.0 {
            self.reorder_spans(seg, rng);
        }
        if !self.substitution.never() {
            for t in seg.iter_mut() {
                if self.substitution.hit(rng.next_u64()) {
                    *t = self.random_token(rng);
                }
            }
        }
        if !self.insertion.never() {
            scratch.clear();
            for &t in seg.iter() {
                scratch.push(t);
                if self.insertion.hit(rng.next_u64()) {
                    scratch.push(self.random_token(rng));
                }
            }
            std::mem::swap(seg, scratch);
        }
    }

    /// Keeps a random window of `n − ⌊crop·n⌋` tokens (at least one).
    fn crop(&self, seg: &mut Vec<i64>, rng: &mut Rng) {
        let n = seg.len();
        let keep = (n - (self.crop * n as f64) as usize).max(1);
        let start = rng.below((n - keep + 1) as u64) as usize;
        seg.drain(..start);
        seg.truncate(keep);
    }

    /// Deletes one random span of `⌊span_deletion·n⌋` tokens (leaving at least one).
    fn delete_span(&self, seg: &mut Vec<i64>, rng: &mut Rng) {
        let n = seg.len();
        let del = ((self.span_deletion * n as f64) as usize).min(n.saturating_sub(1));
        if del > 0 {
            let start = rng.below((n - del + 1) as u64) as usize;
            seg.drain(start..start + del);
        }
    }

    /// Deletes each token with probability `token_deletion`; keeps a random one if none is
    /// left.
    fn delete_tokens(&self, seg: &mut Vec<i64>, rng: &mut Rng, scratch: &mut Vec<i64>) {
        let n = seg.len();
        scratch.clear();
        for &t in seg.iter() {
            if !self.token_deletion.hit(rng.next_u64()) {
                scratch.push(t);
            }
        }
        if scratch.is_empty() && n > 0 {
            scratch.push(seg[rng.below(n as u64) as usize]);
        }
        std::mem::swap(seg, scratch);
    }

    /// Swaps two random non-overlapping spans of `⌊reorder·n/2⌋` tokens.
    fn reorder_spans(&self, seg: &mut [i64], rng: &mut Rng) {
        let n = seg.len();
        let l = (self.reorder * n as f64 / 2.0) as usize;
        if l > 0 && 2 * l <= n {
            // Two distinct slots of free + 2 (the gaps around and between the spans),
            // i.e. a uniform unordered pair of non-overlapping spans.
            let free = (n - 2 * l) as u64;
            let i = rng.below(free + 2);
            let mut j = rng.below(free + 1);
            if j >= i {
                j += 1;
            }
            let (i, j) = (i.min(j) as usize, i.max(j) as usize);
            let (a, b) = (i, j + l - 1);
            for k in 0..l {
                seg.swap(a + k, b + k);
            }
        }
    }

    /// One augmented row.
    pub fn row<T: TokenId>(&self, src: &[T], rng: &mut Rng, out: &mut Vec<i64>) {
        let mut seg = Vec::new();
        let mut scratch = Vec::new();
        let mut i = 0;
        while i < src.len() {
            let t = src[i].to_i64();
            if self.is_special(t) {
                out.push(t);
                i += 1;
                continue;
            }
            seg.clear();
            while i < src.len() && !self.is_special(src[i].to_i64()) {
                seg.push(src[i].to_i64());
                i += 1;
            }
            self.segment(&mut seg, rng, &mut scratch);
            out.extend_from_slice(&seg);
        }
    }

    /// Augments every row (ids are checked against the vocabulary first) and pads the batch:
    /// `(width, input_ids, attention_mask)`, `rows × width` each.
    pub fn batch<T: TokenId, O: OutId>(
        &self,
        rows: &Ragged<'_, T>,
        streams: &Streams,
        keys: &RowKeys<'_>,
        spec: &PadSpec,
        pad_token_id: i64,
        threads: usize,
    ) -> Result<(usize, Vec<O>, Vec<O>)> {
        crate::ids::check_ids("input_ids", rows, self.vocab_size as u64)?;
        keys.check_rows(rows.rows())?;
        if pad_token_id < 0 || pad_token_id >= self.vocab_size {
            return Err(CoreError::invalid(
                "pad_token_id",
                format!("{pad_token_id} is outside [0, {})", self.vocab_size),
            ));
        }
        let n = rows.rows();
        let mut out: Vec<Vec<i64>> = vec![Vec::new(); n];
        let threads = crate::parallel::threads_for(threads, rows.values.len(), 16_384);
        crate::parallel::for_each_mut(threads, &mut out, |r, dst| {
            let mut rng = streams.row(keys, r);
            self.row(rows.row(r), &mut rng, dst);
        })?;
        let offsets: Vec<usize> = std::iter::once(0)
            .chain(out.iter().scan(0, |acc, r| {
                *acc += r.len();
                Some(*acc)
            }))
            .collect();
        let values: Vec<i64> = out.concat();
        let aug = Ragged::new("input_ids", &values, &offsets)?;
        let width = spec.width("input_ids", &aug)?;
        let pad = O::from_i64(pad_token_id);
        let [ids, mask] = fill_rows(threads, n, width, |r, [ids, mask]: [&mut [O]; 2]| {
            let src = aug.row(r);
            let kept = spec.kept(src.len());
            let start = spec.start(kept, width);
            ids[..start].fill(pad);
            ids[start + kept..].fill(pad);
            for (d, &s) in ids[start..start + kept].iter_mut().zip(&src[..kept]) {
                *d = O::from_i64(s);
            }
            mask[start..start + kept].fill(O::from_i64(1));
        })?;
        Ok((width, ids, mask))
    }
}

/// For each row, the index of the first row with exactly the same tokens (so rows `i` and
/// `j` hold the same text iff `groups[i] == groups[j]`).
pub fn duplicate_groups<T: TokenId>(rows: &Ragged<'_, T>) -> Vec<i64> {
    let n = rows.rows();
    let hashes: Vec<u64> = (0..n)
        .map(|r| {
            rows.row(r)
                .iter()
                .fold(mix64(rows.row_len(r) as u64), |h, &t| {
                    mix64(h ^ (t.to_i64() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
                })
        })
        .collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&r| (hashes[r], r));
    let mut groups = vec![0i64; n];
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j < n && hashes[order[j]] == hashes[order[i]] {
            j += 1;
        }
        // Within one hash bucket (in row order), compare contents exactly.
        for a in i..j {
            let ra = order[a];
            groups[ra] = ra as i64;
            for &rb in &order[i..a] {
                let same = rows.row_len(ra) == rows.row_len(rb)
                    && rows
                        .row(ra)
                        .iter()
                        .zip(rows.row(rb))
                        .all(|(x, y)| x.to_i64() == y.to_i64());
                if same {
                    groups[ra] = groups[rb];
                    break;
                }
            }
        }
        i = j;
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::dense_offsets;

    const SPECIALS: [i64; 3] = [0, 2, 3];

    fn params() -> AugmentParams<'static> {
        AugmentParams {
            vocab_size: 100,
            special_token_ids: &SPECIALS,
            ..AugmentParams::default()
        }
    }

    fn run(a: &Augmenter, row: &[i64], seed: u64) -> Vec<i64> {
        let mut rng = Rng::from_seed(seed);
        let mut out = Vec::new();
        a.row(row, &mut rng, &mut out);
        out
    }

    #[test]
    fn nothing_enabled_is_the_identity() {
        let a = Augmenter::new(&params()).unwrap();
        let row = [2i64, 10, 11, 12, 3, 13, 14, 3];
        assert_eq!(run(&a, &row, 1), row);
    }

    #[test]
    fn specials_stay_in_place_and_segments_never_empty() {
        let a = Augmenter::new(&AugmentParams {
            token_deletion: 1.0,
            ..params()
        })
        .unwrap();
        let row = [2i64, 10, 11, 12, 3, 13, 14, 3];
        let out = run(&a, &row, 3);
        assert_eq!(out.len(), 5);
        assert_eq!((out[0], out[2], out[4]), (2, 3, 3));
        assert!([10, 11, 12].contains(&out[1]) && [13, 14].contains(&out[3]));
    }

    #[test]
    fn crop_span_reorder_keep_the_multiset_or_a_window() {
        let row: Vec<i64> = std::iter::once(2).chain(10..30).chain([3]).collect();
        let crop = Augmenter::new(&AugmentParams {
            crop: 0.25,
            ..params()
        })
        .unwrap();
        let out = run(&crop, &row, 5);
        assert_eq!(out.len(), 2 + 15);
        assert!(out[1..16].windows(2).all(|w| w[1] == w[0] + 1));
        let span = Augmenter::new(&AugmentParams {
            span_deletion: 0.3,
            ..params()
        })
        .unwrap();
        let out = run(&span, &row, 6);
        assert_eq!(out.len(), 2 + 14);
        let reorder = Augmenter::new(&AugmentParams {
            reorder: 0.5,
            ..params()
        })
        .unwrap();
        let out = run(&reorder, &row, 7);
        let mut sorted = out.clone();
        sorted.sort_unstable();
        let mut want = row.clone();
        want.sort_unstable();
        assert_eq!(sorted, want);
        assert_ne!(out, row);
    }

    #[test]
    fn random_tokens_are_never_special() {
        let a = Augmenter::new(&AugmentParams {
            vocab_size: 6,
            substitution: 1.0,
            insertion: 1.0,
            ..params()
        })
        .unwrap();
        let row = [2i64, 1, 4, 5, 3];
        for seed in 0..200 {
            let out = run(&a, &row, seed);
            assert_eq!(out.len(), 8);
            assert_eq!((out[0], out[7]), (2, 3));
            assert!(out[1..7].iter().all(|t| [1, 4, 5].contains(t)), "{out:?}");
        }
        let mut w = vec![0.0; 6];
        w[5] = 1.0;
        w[0] = 5.0; // a special: ignored
        let uni = Augmenter::new(&AugmentParams {
            vocab_size: 6,
            substitution: 1.0,
            unigram: Some(&w),
            ..params()
        })
        .unwrap();
        assert_eq!(run(&uni, &row, 1), [2, 5, 5, 5, 3]);
    }

    #[test]
    fn alias_table_matches_the_weights() {
        let w = [1.0, 0.0, 3.0, 6.0];
        let a = Alias::new(&w);
        let mut rng = Rng::from_seed(2);
        let n = 200_000;
        let mut counts = [0usize; 4];
        for _ in 0..n {
            counts[a.draw(&mut rng)] += 1;
        }
        assert_eq!(counts[1], 0);
        for (c, wi) in counts.iter().zip(w) {
            let p = wi / 10.0;
            let z = (*c as f64 - n as f64 * p) / (n as f64 * p * (1.0 - p)).sqrt().max(1.0);
            assert!(z.abs() < 5.0, "{counts:?}");
        }
    }

    #[test]
    fn batches_are_the_same_for_any_thread_count() {
        let a = Augmenter::new(&AugmentParams {
            token_deletion: 0.2,
            insertion: 0.1,
            substitution: 0.1,
            reorder: 0.2,
            ..params()
        })
        .unwrap();
        let ids: Vec<i64> = (0..64 * 40).map(|i| 4 + (i * 7) % 90).collect();
        let offs = dense_offsets(64, 40);
        let rows = Ragged::new("input_ids", &ids, &offs).unwrap();
        let s = Streams::new(1, 0, view_purpose(1));
        let keys = RowKeys::Batch { index: 0 };
        let one = a
            .batch::<i64, i64>(&rows, &s, &keys, &PadSpec::default(), 0, 1)
            .unwrap();
        let four = a
            .batch::<i64, i64>(&rows, &s, &keys, &PadSpec::default(), 0, 4)
            .unwrap();
        assert_eq!(one, four);
        let other_view = a
            .batch::<i64, i64>(
                &rows,
                &Streams::new(1, 0, view_purpose(0)),
                &keys,
                &PadSpec::default(),
                0,
                1,
            )
            .unwrap();
        assert_ne!(one, other_view);
    }

    #[test]
    fn bad_configurations() {
        let bad = |p: AugmentParams<'_>| Augmenter::new(&p).unwrap_err().to_string();
        assert!(
            bad(AugmentParams {
                crop: 1.0,
                ..params()
            })
            .starts_with("crop")
        );
        assert!(
            bad(AugmentParams {
                token_deletion: 1.5,
                ..params()
            })
            .starts_with("token_deletion")
        );
        assert!(
            bad(AugmentParams {
                special_token_ids: &[100],
                ..params()
            })
            .starts_with("special_token_ids")
        );
        assert!(
            bad(AugmentParams {
                unigram: Some(&[1.0; 5]),
                ..params()
            })
            .starts_with("unigram")
        );
    }

    #[test]
    fn duplicate_groups_find_identical_rows() {
        let ids = [1i64, 2, 3, 1, 2, 3, 1, 2];
        let offs = [0usize, 3, 6, 8, 8];
        let rows = Ragged::new("x", &ids, &offs).unwrap();
        assert_eq!(duplicate_groups(&rows), [0, 0, 2, 3]);
    }
}
