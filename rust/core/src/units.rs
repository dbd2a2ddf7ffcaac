//! Masking units larger than a token: whole words, SpanBERT spans and ALBERT/Megatron n-grams.
//!
//! A row's eligible tokens are cut into **words** (a word start comes from the tokenizer's
//! vocabulary table, from per-token word ids, or from an example boundary) grouped into
//! **segments**: maximal runs of eligible tokens, which padding, special tokens and packed-
//! example boundaries break. No unit ever crosses a segment, so masks never cross a special
//! token, padding, or the boundary between two packed examples.
//!
//! Budgets are in tokens, as Google BERT counts them. A unit is always whole words: where a
//! reference would cut the last unit mid-word to hit the budget exactly (SpanBERT), we skip
//! or shorten to whole words instead, so a row can end up one word short of its budget.
//! SpanBERT's own rule is [`select_spans_spanbert`] (its recipe), and Google BERT's and
//! ALBERT's candidate lists, which run across special tokens, are [`compact_words`].

use crate::rng::{Categorical, GeometricGaps, Rng};

/// One word: `len` consecutive eligible tokens from `start`, inside segment `segment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Word {
    pub start: u32,
    pub len: u32,
    pub segment: u32,
}

/// A selected unit: words `first .. first + count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    pub first: u32,
    pub count: u32,
}

/// A run of selected tokens `start .. end` (token indices as the words count them) in one
/// segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub start: u32,
    pub end: u32,
    pub segment: u32,
}

/// Per-token flag: the token may be masked.
pub const ELIGIBLE: u8 = 1;
/// Per-token flag: an eligible token begins a new word (ignored for the first token of a
/// segment, which always does).
pub const STARTS_WORD: u8 = 2;
/// Per-token flag: a new (packed) example begins here — a new segment.
pub const BOUNDARY: u8 = 4;

/// Cuts a row into words from its per-token flags ([`ELIGIBLE`], [`STARTS_WORD`],
/// [`BOUNDARY`]), given as an iterator so callers need not materialise them.
pub fn segment_words(flags: impl IntoIterator<Item = u8>, out: &mut Vec<Word>) {
    out.clear();
    let mut segment = 0u32;
    let mut open = false; // inside a segment that already has a word
    for (t, f) in flags.into_iter().enumerate() {
        if open && (f & BOUNDARY != 0 || f & ELIGIBLE == 0) {
            segment += 1;
            open = false;
        }
        if f & ELIGIBLE == 0 {
            continue;
        }
        if !open || f & STARTS_WORD != 0 {
            out.push(Word {
                start: t as u32,
                len: 1,
                segment,
            });
            open = true;
        } else if let Some(w) = out.last_mut() {
            w.len += 1;
        }
    }
}

/// Google BERT's and ALBERT's candidate list: words over the eligible tokens alone, so special
/// tokens do not end a word or a segment — a continuation piece right after `[SEP]` joins the
/// word before it, and n-grams run across `[SEP]` — while `hard(t)` tokens (padding) and
/// [`BOUNDARY`] flags (packed-example starts, also when set on a special token) still begin a
/// new segment. The words count eligible tokens only (`Word::start` indexes the returned
/// positions); returns the row position of each eligible token.
pub fn compact_words(
    flags: impl IntoIterator<Item = u8>,
    hard: impl Fn(usize) -> bool,
    out: &mut Vec<Word>,
) -> Vec<u32> {
    let mut positions = Vec::new();
    let mut compact = Vec::new();
    let mut pending = false;
    for (t, f) in flags.into_iter().enumerate() {
        pending |= f & BOUNDARY != 0 || hard(t);
        if f & ELIGIBLE == 0 {
            continue;
        }
        compact.push(if pending { f | BOUNDARY } else { f & !BOUNDARY });
        positions.push(t as u32);
        pending = false;
    }
    segment_words(compact, out);
    positions
}

/// Number of eligible tokens in `words`.
pub fn token_count(words: &[Word]) -> usize {
    words.iter().map(|w| w.len as usize).sum()
}

/// Each word independently with probability `p` (Hugging Face 5.x whole-word masking: the
/// expected token fraction stays `p`). One draw per selected word (gap sampling over words).
pub fn select_words_bernoulli(words: &[Word], gaps: &GeometricGaps, rng: &mut Rng) -> Vec<Unit> {
    let mut out = Vec::with_capacity(words.len());
    if gaps.never() {
        return out;
    }
    let n = words.len() as u64;
    let mut w = gaps.sample(rng, n);
    while w < n {
        out.push(Unit {
            first: w as u32,
            count: 1,
        });
        w += 1 + gaps.sample(rng, n - w - 1);
    }
    out
}

/// Google BERT's whole-word budget: words in uniformly random order (a full Fisher–Yates
/// shuffle, `W − 1` draws), each taken if it fits the remaining token budget, skipped if it
/// would overshoot; stops when the budget is reached.
pub fn select_words_budget(words: &[Word], budget: usize, rng: &mut Rng) -> Vec<Unit> {
    let mut order: Vec<u32> = (0..words.len() as u32).collect();
    shuffle(&mut order, rng);
    let mut out = Vec::with_capacity(words.len());
    let mut used = 0usize;
    for &w in &order {
        if used >= budget {
            break;
        }
        let len = words[w as usize].len as usize;
        if used + len <= budget {
            used += len;
            out.push(Unit { first: w, count: 1 });
        }
    }
    out.sort_unstable_by_key(|u| u.first);
    out
}

/// ALBERT / Megatron n-gram masking. Every word is a candidate start, visited in random order;
/// for each, `n = 1 + lengths.sample()` words (clipped to the segment), shortened while it would
/// overshoot the budget; skipped if nothing fits or if any of its words is already taken.
pub fn select_ngrams(
    words: &[Word],
    budget: usize,
    lengths: &Categorical,
    rng: &mut Rng,
) -> Vec<Unit> {
    let mut order: Vec<u32> = (0..words.len() as u32).collect();
    shuffle(&mut order, rng);
    let mut taken = vec![false; words.len()];
    let mut out = Vec::with_capacity(words.len());
    let mut used = 0usize;
    for &i in &order {
        if used >= budget {
            break;
        }
        let i = i as usize;
        let mut n = (1 + lengths.sample(rng)).min(segment_room(words, i));
        let mut tokens = span_tokens(words, i, n);
        while n > 0 && used + tokens > budget {
            n -= 1;
            tokens = span_tokens(words, i, n);
        }
        if n == 0 || taken[i..i + n].iter().any(|&t| t) {
            continue;
        }
        taken[i..i + n].iter_mut().for_each(|t| *t = true);
        used += tokens;
        out.push(Unit {
            first: i as u32,
            count: n as u32,
        });
    }
    out.sort_unstable_by_key(|u| u.first);
    out
}

/// SpanBERT span masking: repeat { draw a length `ℓ = lower + lengths.sample()` in words; draw
/// an anchor token uniformly among eligible tokens (redraw if its word is taken); take the
/// anchor's word and the following words, up to `ℓ`, stopping at the segment's end, at a taken
/// word or where the budget would overshoot } until the budget is reached or `10·W + 100`
/// attempts have been made (so a remainder no word fits into cannot loop forever).
pub fn select_spans(
    words: &[Word],
    budget: usize,
    lower: u32,
    lengths: &Categorical,
    rng: &mut Rng,
) -> Vec<Unit> {
    let mut out = Vec::with_capacity(words.len());
    if words.is_empty() {
        return out;
    }
    // cum[w] = eligible tokens before word w, to map a uniform token to its word.
    let mut cum = Vec::with_capacity(words.len());
    let mut total = 0u64;
    for w in words {
        cum.push(total);
        total += u64::from(w.len);
    }
    let mut taken = vec![false; words.len()];
    let mut used = 0usize;
    let max_attempts = 10 * words.len() + 100;
    for _ in 0..max_attempts {
        if used >= budget {
            break;
        }
        let want = lower as usize + lengths.sample(rng);
        let j = rng.below(total);
        let w = cum.partition_point(|&c| c <= j) - 1;
        if taken[w] {
            continue;
        }
        let room = segment_room(words, w).min(want);
        let mut count = 0;
        while count < room && !taken[w + count] {
            let len = words[w + count].len as usize;
            if used + len > budget {
                break;
            }
            used += len;
            taken[w + count] = true;
            count += 1;
        }
        if count > 0 {
            out.push(Unit {
                first: w as u32,
                count: count as u32,
            });
        }
    }
    out.sort_unstable_by_key(|u| u.first);
    out
}

/// SpanBERT's span masking as its reference (`PairWithSpanMaskingScheme.mask`) does it: repeat
/// { draw a length `ℓ = lower + lengths.sample()` in words; draw an anchor token uniformly among
/// the eligible tokens (redraw, length included, if it is already masked); mask from the start
/// of the anchor's word through `ℓ` words, counting words that are already masked and running on
/// through them, stopping at the segment's end and — mid-word if need be — as soon as `budget`
/// tokens are masked } until the budget is reached. The budget is always reached exactly
/// (`min(budget, tokens)`). Returns the maximal runs of adjacent masked tokens in position
/// order, which is how the reference merges its spans before replacing them.
pub fn select_spans_spanbert(
    words: &[Word],
    budget: usize,
    lower: u32,
    lengths: &Categorical,
    rng: &mut Rng,
) -> Vec<Run> {
    let (Some(first), Some(last)) = (words.first(), words.last()) else {
        return Vec::new();
    };
    let base = first.start as usize;
    let mut masked = vec![false; (last.start + last.len) as usize - base];
    let mut cum = Vec::with_capacity(words.len());
    let mut total = 0u64;
    for w in words {
        cum.push(total);
        total += u64::from(w.len);
    }
    let budget = budget.min(total as usize);
    let mut used = 0usize;
    while used < budget {
        let want = lower as usize + lengths.sample(rng);
        let j = rng.below(total);
        let w = cum.partition_point(|&c| c <= j) - 1;
        let anchor = (u64::from(words[w].start) + (j - cum[w])) as usize - base;
        if masked[anchor] {
            continue;
        }
        let segment = words[w].segment;
        let mut k = w;
        while k < w + want && k < words.len() && words[k].segment == segment && used < budget {
            let start = words[k].start as usize - base;
            for m in &mut masked[start..start + words[k].len as usize] {
                if used == budget {
                    break;
                }
                if !*m {
                    *m = true;
                    used += 1;
                }
            }
            k += 1;
        }
    }
    masked_runs(words, &masked, base)
}

/// The maximal runs of masked tokens (`masked[t - base]`) within each segment, in order.
fn masked_runs(words: &[Word], masked: &[bool], base: usize) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for w in words {
        for t in w.start..w.start + w.len {
            if !masked[t as usize - base] {
                continue;
            }
            match runs.last_mut() {
                Some(r) if r.end == t && r.segment == w.segment => r.end = t + 1,
                _ => runs.push(Run {
                    start: t,
                    end: t + 1,
                    segment: w.segment,
                }),
            }
        }
    }
    runs
}

/// Words from `i` to the end of its segment.
fn segment_room(words: &[Word], i: usize) -> usize {
    let seg = words[i].segment;
    words[i..].iter().take_while(|w| w.segment == seg).count()
}

fn span_tokens(words: &[Word], i: usize, n: usize) -> usize {
    token_count(&words[i..i + n])
}

/// Uniform in-place shuffle (Fisher–Yates from the end, `len − 1` draws).
pub fn shuffle<T>(items: &mut [T], rng: &mut Rng) {
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// SpanBERT's span-length law: `P(ℓ) ∝ p (1 − p)^(ℓ − 1)` on `lower ..= upper` words,
/// renormalised (mean 3.8 words at `p = 0.2`, `[1, 10]`). Index `i` is length `lower + i`.
pub fn span_length_weights(geometric_p: f64, lower: u32, upper: u32) -> Vec<f64> {
    (lower..=upper)
        .map(|l| geometric_p * (1.0 - geometric_p).powi(l as i32 - 1))
        .collect()
}

/// ALBERT's n-gram law: `P(n) ∝ 1/n` on `1 ..= max_n` (reversed when `favor_shorter` is false).
/// Index `i` is `n = i + 1`.
pub fn ngram_weights(max_n: u32, favor_shorter: bool) -> Vec<f64> {
    let mut w: Vec<f64> = (1..=max_n).map(|n| 1.0 / f64::from(n)).collect();
    if !favor_shorter {
        w.reverse();
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words_of(n: usize, elig: &[bool], starts: &[bool], bounds: &[bool]) -> Vec<Word> {
        let flags: Vec<u8> = (0..n)
            .map(|t| {
                u8::from(elig[t]) * ELIGIBLE
                    + u8::from(starts[t]) * STARTS_WORD
                    + u8::from(bounds[t]) * BOUNDARY
            })
            .collect();
        let mut out = Vec::new();
        segment_words(flags, &mut out);
        out
    }

    #[test]
    fn segmentation_follows_starts_specials_and_boundaries() {
        // [CLS] play ##ing the ##m [SEP] | new example: a ##b
        let elig = [false, true, true, true, true, false, true, true];
        let starts = [true, true, false, true, false, true, true, false];
        let bounds = [false, false, false, false, false, false, true, false];
        let w = words_of(8, &elig, &starts, &bounds);
        assert_eq!(
            w,
            [
                Word {
                    start: 1,
                    len: 2,
                    segment: 0
                },
                Word {
                    start: 3,
                    len: 2,
                    segment: 0
                },
                Word {
                    start: 6,
                    len: 2,
                    segment: 1
                },
            ]
        );
        // A boundary inside a run of eligible tokens starts a new segment and word.
        let elig = [true; 4];
        let starts = [true, false, false, false];
        let bounds = [false, false, true, false];
        let w = words_of(4, &elig, &starts, &bounds);
        assert_eq!(w.len(), 2);
        assert_eq!((w[1].start, w[1].segment), (2, 1));
        // A continuation right after a special token starts a word anyway.
        let elig = [false, true];
        let starts = [true, false];
        let w = words_of(2, &elig, &starts, &[false, false]);
        assert_eq!(
            w,
            [Word {
                start: 1,
                len: 1,
                segment: 0
            }]
        );
    }

    fn sample_words(lens: &[u32], segs: &[u32]) -> Vec<Word> {
        let mut start = 0;
        lens.iter()
            .zip(segs)
            .map(|(&len, &segment)| {
                let w = Word {
                    start,
                    len,
                    segment,
                };
                start += len;
                w
            })
            .collect()
    }

    #[test]
    fn word_budget_never_overshoots_and_skips_big_words() {
        let words = sample_words(&[3, 1, 2, 5, 1, 1], &[0; 6]);
        for seed in 0..200 {
            let mut r = Rng::from_seed(seed);
            let sel = select_words_budget(&words, 4, &mut r);
            let used: usize = sel
                .iter()
                .map(|u| words[u.first as usize].len as usize)
                .sum();
            assert!(used <= 4);
            assert!(sel.iter().all(|u| words[u.first as usize].len <= 4));
            // Greedy: nothing left out would still fit.
            let chosen: Vec<u32> = sel.iter().map(|u| u.first).collect();
            let fits_more = (0..words.len() as u32)
                .filter(|w| !chosen.contains(w))
                .any(|w| used + words[w as usize].len as usize <= 4);
            assert!(!fits_more || used == 4);
        }
    }

    #[test]
    fn ngrams_stay_in_segment_and_budget() {
        let words = sample_words(&[1, 2, 1, 1, 3, 1, 1, 1], &[0, 0, 0, 1, 1, 1, 2, 2]);
        let lengths = Categorical::new(&ngram_weights(3, true)).unwrap();
        for seed in 0..300 {
            let mut r = Rng::from_seed(seed);
            let sel = select_ngrams(&words, 6, &lengths, &mut r);
            let mut used = 0;
            let mut seen = vec![false; words.len()];
            for u in &sel {
                let span = &words[u.first as usize..(u.first + u.count) as usize];
                assert!(span.iter().all(|w| w.segment == span[0].segment));
                for k in u.first..u.first + u.count {
                    assert!(!seen[k as usize]);
                    seen[k as usize] = true;
                }
                used += token_count(span);
            }
            assert!(used <= 6);
        }
    }

    #[test]
    fn spans_terminate_and_respect_budget() {
        let words = sample_words(&[2; 50], &[0; 50]);
        let lengths = Categorical::new(&span_length_weights(0.2, 1, 10)).unwrap();
        let mut r = Rng::from_seed(1);
        // Budget 15 with 2-token words: at most 14 can be used, and the loop must end.
        let sel = select_spans(&words, 15, 1, &lengths, &mut r);
        let used: usize = sel
            .iter()
            .map(|u| token_count(&words[u.first as usize..(u.first + u.count) as usize]))
            .sum();
        assert_eq!(used, 14);
        assert!(select_spans(&[], 5, 1, &lengths, &mut r).is_empty());
    }

    #[test]
    fn length_laws() {
        let w = span_length_weights(0.2, 1, 10);
        let total: f64 = w.iter().sum();
        let mean: f64 = w
            .iter()
            .enumerate()
            .map(|(i, x)| (i + 1) as f64 * x)
            .sum::<f64>()
            / total;
        assert!((mean - 3.8).abs() < 0.01, "{mean}");
        assert!((w[0] / total - 0.2241).abs() < 1e-4);
        let n = ngram_weights(3, true);
        let t: f64 = n.iter().sum();
        assert!((n[0] / t - 0.5455).abs() < 1e-4);
        assert_eq!(ngram_weights(2, false), vec![0.5, 1.0]);
    }

    #[test]
    fn bernoulli_words_rate() {
        let words = sample_words(&[1; 20_000], &[0; 20_000]);
        let gaps = GeometricGaps::new(0.15);
        let mut r = Rng::from_seed(4);
        let k = select_words_bernoulli(&words, &gaps, &mut r).len() as f64;
        let z = (k - 3000.0) / (20_000.0f64 * 0.15 * 0.85).sqrt();
        assert!(z.abs() < 5.0);
    }

    #[test]
    fn compact_words_run_across_specials_but_not_padding_or_boundaries() {
        // [CLS] a ##b [SEP] ##c d [SEP] [PAD] ##e | (boundary on [CLS]) f
        let e = ELIGIBLE;
        let sw = ELIGIBLE | STARTS_WORD;
        let flags = [0, sw, e, 0, e, sw, 0, 0, e, BOUNDARY, sw];
        let mut words = Vec::new();
        let pos = compact_words(flags, |t| t == 7, &mut words);
        assert_eq!(pos, [1, 2, 4, 5, 8, 10]);
        let w = |start, len, segment| Word {
            start,
            len,
            segment,
        };
        // "a ##b ##c" is one word across [SEP]; padding ends the segment, so "##e" starts one;
        // the boundary set on a special token still starts a new segment.
        assert_eq!(words, [w(0, 3, 0), w(3, 1, 0), w(4, 1, 1), w(5, 1, 2)]);
    }

    #[test]
    fn spanbert_spans_fill_the_budget_exactly_and_may_cut_words() {
        let words = sample_words(&[3; 40], &[0; 40]);
        let lengths = Categorical::new(&span_length_weights(0.2, 1, 10)).unwrap();
        let mut cut = 0;
        for seed in 0..200 {
            let mut r = Rng::from_seed(seed);
            let runs = select_spans_spanbert(&words, 17, 1, &lengths, &mut r);
            let used: u32 = runs.iter().map(|x| x.end - x.start).sum();
            assert_eq!(used, 17);
            // Runs are maximal: separated by at least one unmasked token.
            assert!(runs.windows(2).all(|p| p[0].end < p[1].start));
            cut += usize::from(runs.iter().any(|x| x.start % 3 != 0 || x.end % 3 != 0));
        }
        // 17 is not a multiple of 3: the last word is always cut.
        assert_eq!(cut, 200);
        // Whole budget = every token; empty rows select nothing.
        let mut r = Rng::from_seed(1);
        let all = select_spans_spanbert(&words, 500, 1, &lengths, &mut r);
        assert_eq!(
            all,
            [Run {
                start: 0,
                end: 120,
                segment: 0
            }]
        );
        assert!(select_spans_spanbert(&[], 5, 1, &lengths, &mut r).is_empty());
    }
}
