//! BART denoising (Lewis et al., 2020) with fairseq's `DenoisingDataset` semantics: sentence
//! permutation, text infilling / word masking / token deletion, insertion and rotation.
//!
//! A row becomes the source `BOS tokens EOS` (or is taken as such), which is also the target
//! (`labels`). The source is noised in fairseq's order:
//!
//! 1. **Sentence permutation** (`permute_sentence_ratio = p`): of the `S` sentences between
//!    BOS and EOS, `k = ceil(S·p)` are chosen and shuffled among their own slots. Sentences
//!    come from per-token `sentence_starts` (e.g. a corpus's sentence offsets) or, as fairseq
//!    does, end at full-stop tokens (a run of full stops ends a sentence after its first one;
//!    the token before EOS always ends one).
//! 2. **Masking** (`mask_ratio = r`): `W` word starts (BOS and EOS never are; see
//!    [`crate::word_starts`]); a budget of `ceil(W·r)` words (computed in `float32`, as
//!    fairseq). With `span-poisson`, span lengths are drawn from Poisson(λ) truncated where
//!    fairseq truncates it (the first term below 1e−7) until they reach the budget, the last
//!    one cut to fit; zero lengths become inserted masks. Spans start at distinct random word
//!    starts and extend over whole words (continuation tokens are free), never past EOS. Each
//!    span is random-replaced with probability `random_ratio`. `replace_length = 1`: a span
//!    becomes one `<mask>`; `0`: it is deleted; `−1`: each of its tokens becomes `<mask>`.
//!    With `word` / `subword` every span is one word / token. Overlapping spans merge as in
//!    fairseq (a span reaching a later span's start deletes or overwrites it).
//! 3. **Insertion** (zero-length spans, then `insert_ratio`): `n = ceil(len·p)` new tokens at
//!    random positions other than the first and last; `ceil(n·random_ratio)` of them random
//!    ids, the rest `<mask>`.
//! 4. **Rotation** (`rotate_ratio`): with that probability, the interior is rotated: with an
//!    offset `o` uniform in `[1, max(1, len−1)]` the source becomes
//!    `BOS x[o..len−1] x[1..o] EOS` (`o = 1` and `o = len − 1` leave it unchanged).
//!
//! Random ids are drawn uniformly from the non-special ids (fairseq draws from
//! `[1, vocab_size)`, which includes `<mask>`, EOS and other specials). Every random choice
//! comes from the row's keyed stream, in this order: permutation (`k` draws to choose the
//! sentences, `k − 1` to shuffle them; none when `S < 2`), span lengths (one 64-bit draw per
//! length), span starts (one `below` per span, a partial Fisher–Yates over the word starts),
//! random flags (one 64-bit draw per span, when `random_ratio > 0`), random ids (one `below`
//! per random write; spans in decreasing start order, tokens left to right), then each
//! insertion (one `below` per inserted token — partial Fisher–Yates over the slots — then one
//! per random id), then rotation (one 64-bit draw, and one `below` for the offset when it
//! rotates).

use super::{Seq2SeqBatch, Widths, fill_decoder, fill_encoder};
use crate::batch::{OutId, TokenId};
use crate::ids::{check_id, check_row_ids, check_vocab};
use crate::parallel::for_each_mut;
use crate::rng::{Chance, Rng, RowKeys, Streams};
use crate::word_starts::WordStarts;
use crate::{CoreError, Result, check_probability};

/// The purpose tag of BART streams.
pub const PURPOSE: u64 = crate::rng::purpose("bart");

/// Tokens per thread below which more threads do not pay for the hand-off.
const GRAIN_TOKENS: usize = 8 * 1024;

/// fairseq stops the Poisson table at the first term below this.
const POISSON_TAIL: f64 = 1e-7;

/// What one masking span covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskLength {
    /// One token (every token is a word start).
    Subword,
    /// One whole word.
    Word,
    /// Poisson(λ) whole words (text infilling).
    SpanPoisson,
}

impl MaskLength {
    pub fn parse(arg: &str, s: &str) -> Result<Self> {
        match s {
            "subword" => Ok(Self::Subword),
            "word" => Ok(Self::Word),
            "span-poisson" => Ok(Self::SpanPoisson),
            other => Err(CoreError::invalid(
                arg,
                format!("must be 'span-poisson', 'word' or 'subword', got {other:?}"),
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Subword => "subword",
            Self::Word => "word",
            Self::SpanPoisson => "span-poisson",
        }
    }
}

/// Span lengths from Poisson(λ) over `{0, …, K}`, where `K` is the first `k ≥ λ` whose
/// probability is below 1e−7 (fairseq's table for λ up to about 16; fairseq stops at `k = 0`
/// for larger λ, whose `e^−λ` is already below 1e−7, and then only ever draws 0), sampled by
/// inverse CDF from one 64-bit draw.
#[derive(Debug, Clone, PartialEq)]
pub struct PoissonSpans {
    pmf: Vec<f64>,
    cumulative: Vec<u64>,
}

impl PoissonSpans {
    pub fn new(lambda: f64) -> Result<Self> {
        if !(lambda.is_finite() && lambda > 0.0 && lambda <= 100.0) {
            return Err(CoreError::invalid(
                "poisson_lambda",
                format!("must be in (0, 100], got {lambda}"),
            ));
        }
        let mut pmf = vec![(-lambda).exp()];
        let mut term = pmf[0];
        let mut k = 0.0;
        while !(term < POISSON_TAIL && k >= lambda) {
            k += 1.0;
            term *= lambda / k;
            pmf.push(term);
        }
        let total: f64 = pmf.iter().sum();
        let mut acc = 0.0;
        let mut cumulative: Vec<u64> = pmf
            .iter()
            .map(|p| {
                acc += p / total;
                if acc >= 1.0 {
                    u64::MAX
                } else {
                    (acc * 18_446_744_073_709_551_616.0) as u64
                }
            })
            .collect();
        if let Some(last) = cumulative.last_mut() {
            *last = u64::MAX;
        }
        Ok(Self { pmf, cumulative })
    }

    /// The (normalised) probabilities of lengths `0..=K`.
    pub fn probabilities(&self) -> Vec<f64> {
        let total: f64 = self.pmf.iter().sum();
        self.pmf.iter().map(|p| p / total).collect()
    }

    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.next_u64();
        let last = self.cumulative.len() - 1;
        self.cumulative[..last]
            .iter()
            .position(|&c| u < c)
            .unwrap_or(last)
    }
}

/// Everything [`BartConfig::new`] needs.
#[derive(Debug, Clone)]
pub struct BartParams<'a> {
    pub vocab_size: i64,
    pub bos_token_id: i64,
    pub eos_token_id: i64,
    pub pad_token_id: i64,
    pub mask_token_id: i64,
    pub decoder_start_token_id: i64,
    /// Never drawn as random ids (BOS, EOS, pad and mask always excluded).
    pub special_token_ids: &'a [i64],
    /// Per-vocabulary word-start table (`None`: every token starts a word).
    pub word_starts: Option<&'a [bool]>,
    /// Tokens that end a sentence, used when a row has no `sentence_starts`.
    pub full_stop_ids: &'a [i64],
    pub mask_ratio: f64,
    pub random_ratio: f64,
    pub insert_ratio: f64,
    pub rotate_ratio: f64,
    pub permute_sentence_ratio: f64,
    pub poisson_lambda: f64,
    pub mask_length: MaskLength,
    /// 1: a span becomes one mask; 0: deleted; −1: every token masked.
    pub replace_length: i64,
    /// Wrap rows in BOS … EOS (false: rows already are, which is checked).
    pub add_special_tokens: bool,
    /// Which ids random tokens come from (the recipe's rule).
    pub random_tokens: RandomTokens,
}

/// Which ids BART's random tokens (text infilling's random spans, insertion) are drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RandomTokens {
    /// Uniformly among the non-special ids (ours).
    #[default]
    NonSpecial,
    /// fairseq's `torch.randint(1, len(vocab))`: every id but 0, special ids (mask, EOS,
    /// padding) included.
    FromOne,
}

/// Checks `insert_ratio` (≥ 0) and `replace_length` (−1, 0 or 1).
fn check_insert_and_replace(p: &BartParams<'_>) -> Result<()> {
    if !(p.insert_ratio.is_finite() && p.insert_ratio >= 0.0) {
        return Err(CoreError::invalid(
            "insert_ratio",
            format!("must be a finite number >= 0, got {}", p.insert_ratio),
        ));
    }
    if ![-1, 0, 1].contains(&p.replace_length) {
        return Err(CoreError::invalid(
            "replace_length",
            format!("must be -1, 0 or 1, got {}", p.replace_length),
        ));
    }
    Ok(())
}

/// The ids random replacement draws from: every id but `always_special` and the special ids.
fn random_pool(
    p: &BartParams<'_>,
    always_special: [u32; 4],
    random_ratio: f64,
) -> Result<Vec<u32>> {
    let v = p.vocab_size;
    let mut special = vec![false; v as usize];
    for id in always_special {
        special[id as usize] = true;
    }
    for &id in p.special_token_ids {
        special[check_id("special_token_ids", id, v)? as usize] = true;
    }
    let pool: Vec<u32> = match p.random_tokens {
        RandomTokens::NonSpecial => (0..v as u32).filter(|&i| !special[i as usize]).collect(),
        RandomTokens::FromOne => (1..v as u32).collect(),
    };
    if random_ratio > 0.0 && pool.is_empty() {
        return Err(CoreError::invalid(
            "random_ratio",
            "is positive but every id is special, so there is nothing to draw a random \
             token from",
        ));
    }
    Ok(pool)
}

/// The per-vocabulary "ends a sentence" table (empty when no full-stop ids are given).
fn full_stop_table(ids: &[i64], vocab_size: i64) -> Result<Vec<bool>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut full_stop = vec![false; vocab_size as usize];
    for &id in ids {
        full_stop[check_id("full_stop_token_ids", id, vocab_size)? as usize] = true;
    }
    Ok(full_stop)
}

/// Validated BART noising configuration, built once.
#[derive(Debug, Clone)]
pub struct BartConfig {
    vocab_size: u32,
    bos: u32,
    eos: u32,
    pad: u32,
    mask: u32,
    decoder_start: u32,
    word_starts: WordStarts,
    full_stop: Vec<bool>,
    mask_ratio: f64,
    random_ratio: f64,
    insert_ratio: f64,
    rotate_ratio: f64,
    permute_sentence_ratio: f64,
    random: Chance,
    rotate: Chance,
    spans: Option<PoissonSpans>,
    mask_length: MaskLength,
    replace_length: i64,
    add_special_tokens: bool,
    pool: Vec<u32>,
}

impl BartConfig {
    pub fn new(p: &BartParams<'_>) -> Result<Self> {
        check_vocab(p.vocab_size)?;
        let v = p.vocab_size;
        let bos = check_id("bos_token_id", p.bos_token_id, v)?;
        let eos = check_id("eos_token_id", p.eos_token_id, v)?;
        let pad = check_id("pad_token_id", p.pad_token_id, v)?;
        let mask = check_id("mask_token_id", p.mask_token_id, v)?;
        let decoder_start = check_id("decoder_start_token_id", p.decoder_start_token_id, v)?;
        let mask_ratio = check_probability("mask_ratio", p.mask_ratio)?;
        let random_ratio = check_probability("random_ratio", p.random_ratio)?;
        let rotate_ratio = check_probability("rotate_ratio", p.rotate_ratio)?;
        let permute_sentence_ratio =
            check_probability("permute_sentence_ratio", p.permute_sentence_ratio)?;
        check_insert_and_replace(p)?;
        let word_starts = match (p.mask_length, p.word_starts) {
            (MaskLength::Subword, _) => WordStarts::every_token(),
            (_, Some(t)) => WordStarts::from_table(t, v as usize)?,
            (_, None) => WordStarts::every_token(),
        };
        let pool = random_pool(p, [bos, eos, pad, mask], random_ratio)?;
        let full_stop = full_stop_table(p.full_stop_ids, v)?;
        let spans = (p.mask_length == MaskLength::SpanPoisson)
            .then(|| PoissonSpans::new(p.poisson_lambda))
            .transpose()?;
        Ok(Self {
            vocab_size: v as u32,
            bos,
            eos,
            pad,
            mask,
            decoder_start,
            word_starts,
            full_stop,
            mask_ratio,
            random_ratio,
            insert_ratio: p.insert_ratio,
            rotate_ratio,
            permute_sentence_ratio,
            random: Chance::new(random_ratio),
            rotate: Chance::new(rotate_ratio),
            spans,
            mask_length: p.mask_length,
            replace_length: p.replace_length,
            add_special_tokens: p.add_special_tokens,
            pool,
        })
    }

    pub fn vocab_size(&self) -> u32 {
        self.vocab_size
    }

    pub fn spans(&self) -> Option<&PoissonSpans> {
        self.spans.as_ref()
    }

    pub fn word_starts(&self) -> &WordStarts {
        &self.word_starts
    }

    #[inline]
    fn random_id(&self, rng: &mut Rng) -> u32 {
        self.pool[rng.below(self.pool.len() as u64) as usize]
    }

    /// The source of a row: `BOS row EOS`, or the row itself.
    fn source<T: TokenId>(&self, row: &[T]) -> Vec<u32> {
        let mut src = Vec::with_capacity(row.len() + 2);
        if self.add_special_tokens {
            src.push(self.bos);
        }
        src.extend(row.iter().map(|x| x.to_i64() as u32));
        if self.add_special_tokens {
            src.push(self.eos);
        }
        src
    }

    /// Noises one source (see the module documentation for the steps and the draws).
    pub fn noise(&self, mut src: Vec<u32>, starts: Option<&[u8]>, rng: &mut Rng) -> Vec<u32> {
        if self.permute_sentence_ratio > 0.0 {
            self.permute_sentences(&mut src, starts, rng);
        }
        if self.mask_ratio > 0.0 {
            src = self.mask_words(src, rng);
        }
        if self.insert_ratio > 0.0 {
            src = self.insert(src, self.insert_ratio, rng);
        }
        if self.rotate_ratio > 0.0 && self.rotate.hit(rng.next_u64()) {
            let n = src.len();
            // fairseq: offset = randint(1, max(1, n − 1) + 1); offsets 1 and n − 1 keep it.
            let offset = 1 + rng.below(n.saturating_sub(1).max(1) as u64) as usize;
            if n > 2 {
                src[1..n - 1].rotate_left(offset - 1);
            }
        }
        src
    }

    /// Exclusive sentence ends in source coordinates (sentences tile `[1, last end)`).
    fn sentence_ends(&self, src: &[u32], starts: Option<&[u8]>) -> Vec<usize> {
        let n = src.len();
        let mut ends = Vec::new();
        if let Some(starts) = starts {
            let offset = usize::from(self.add_special_tokens);
            for (i, &s) in starts.iter().enumerate() {
                let pos = i + offset;
                if s != 0 && pos > 1 && pos < n - 1 {
                    ends.push(pos);
                }
            }
            ends.push(n - 1);
        } else if !self.full_stop.is_empty() {
            // fairseq: full_stops[-2] = 1; ends = {j + 2 : fs[j + 1] and not fs[j]}.
            let fs = |i: usize| i == n - 2 || self.full_stop[src[i] as usize];
            for j in 0..n - 1 {
                if fs(j + 1) && !fs(j) {
                    ends.push(j + 2);
                }
            }
        } else {
            ends.push(n - 1);
        }
        ends
    }

    fn permute_sentences(&self, src: &mut Vec<u32>, starts: Option<&[u8]>, rng: &mut Rng) {
        let ends = self.sentence_ends(src, starts);
        let s = ends.len();
        if s < 2 {
            return;
        }
        let k = ((s as f64 * 2.0 * self.permute_sentence_ratio) / 2.0).ceil() as usize;
        let k = k.min(s);
        let mut idx: Vec<usize> = (0..s).collect();
        for i in 0..k {
            let j = i + rng.below((s - i) as u64) as usize;
            idx.swap(i, j);
        }
        let subs = &idx[..k];
        let mut perm: Vec<usize> = (0..k).collect();
        for i in (1..k).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            perm.swap(i, j);
        }
        let mut ordering: Vec<usize> = (0..s).collect();
        for i in 0..k {
            ordering[subs[i]] = subs[perm[i]];
        }
        let mut out = Vec::with_capacity(src.len());
        out.push(src[0]);
        for &i in &ordering {
            let from = if i > 0 { ends[i - 1] } else { 1 };
            out.extend_from_slice(&src[from..ends[i]]);
        }
        out.extend_from_slice(&src[ends[s - 1]..]);
        *src = out;
    }

    fn mask_words(&self, mut src: Vec<u32>, rng: &mut Rng) -> Vec<u32> {
        let n = src.len();
        let (is_start, positions) = self.word_start_positions(&src);
        let budget = ((positions.len() as f32) * (self.mask_ratio as f32)).ceil() as usize;
        if budget == 0 {
            return src;
        }
        let (lengths, num_inserts) = match &self.spans {
            Some(dist) => span_lengths(dist, budget, rng),
            None => (vec![1; budget], 0),
        };
        if lengths.is_empty() {
            let p = num_inserts as f64 / n as f64;
            return self.insert(src, p, rng);
        }
        let m = lengths.len().min(positions.len());
        let mut starts = positions;
        for i in 0..m {
            let j = i + rng.below((starts.len() - i) as u64) as usize;
            starts.swap(i, j);
        }
        let random: Vec<bool> = if self.random_ratio > 0.0 {
            (0..m).map(|_| self.random.hit(rng.next_u64())).collect()
        } else {
            vec![false; m]
        };
        let keep = self.mask_spans(&mut src, &is_start, &starts[..m], &lengths, &random, rng);
        let mut out = vec![0u32; n];
        let mut kept = 0;
        for (&x, &k) in src.iter().zip(&keep) {
            out[kept] = x;
            kept += usize::from(k);
        }
        out.truncate(kept);
        if num_inserts > 0 {
            let p = num_inserts as f64 / out.len() as f64;
            out = self.insert(out, p, rng);
        }
        out
    }

    /// `is_start[i]`: token `i` begins a word (never BOS or EOS), and the positions where
    /// that holds.
    #[inline(always)]
    fn word_start_positions(&self, src: &[u32]) -> (Vec<bool>, Vec<u32>) {
        let n = src.len();
        // Branch-free compaction of the positions: word starts are too irregular for the
        // branch predictor.
        let mut is_start = vec![false; n];
        let mut positions: Vec<u32> = vec![0; n];
        let mut count = 0;
        for i in 1..n.saturating_sub(1) {
            let w = self.word_starts.starts(src[i]);
            is_start[i] = w;
            positions[count] = i as u32;
            count += usize::from(w);
        }
        positions.truncate(count);
        (is_start, positions)
    }

    /// Masks (or deletes, as `replace_length` says) span `j`: from token `starts[j]` over
    /// `lengths[j]` words, with random ids where `random[j]`; the last span first. Returns
    /// which tokens are kept.
    #[inline(always)]
    fn mask_spans(
        &self,
        src: &mut [u32],
        is_start: &[bool],
        starts: &[u32],
        lengths: &[u32],
        random: &[bool],
        rng: &mut Rng,
    ) -> Vec<bool> {
        let n = src.len();
        // Spans in decreasing start order (start in the high half, span index in the low).
        let mut order: Vec<u64> = (0..starts.len())
            .map(|j| (u64::from(starts[j]) << 32) | j as u64)
            .collect();
        order.sort_unstable_by(|a, b| b.cmp(a));
        let mut keep = vec![true; n];
        for &key in &order {
            let (s, j) = ((key >> 32) as usize, (key & 0xFFFF_FFFF) as usize);
            let flag = random[j];
            let replace = |src: &mut [u32], rng: &mut Rng, q: usize| {
                src[q] = if flag { self.random_id(rng) } else { self.mask };
            };
            if self.replace_length == 0 {
                keep[s] = false;
            } else {
                replace(src, rng, s);
            }
            let mut q = s + 1;
            let mut remaining = i64::from(lengths[j]) - 1;
            while self.span_continues(q, n, is_start, &mut remaining) {
                if self.replace_length == -1 {
                    replace(src, rng, q);
                } else {
                    keep[q] = false;
                }
                q += 1;
            }
        }
        keep
    }

    /// Whether a span with `remaining` words left covers token `q` too.
    #[inline(always)]
    fn span_continues(&self, q: usize, n: usize, is_start: &[bool], remaining: &mut i64) -> bool {
        match self.mask_length {
            MaskLength::SpanPoisson => {
                // Word starts cost one word; EOS (255 in fairseq) stops every span.
                *remaining -= if q == n - 1 {
                    255
                } else {
                    i64::from(is_start[q])
                };
                *remaining >= 0
            }
            _ => q != n - 1 && !is_start[q],
        }
    }

    fn insert(&self, tokens: Vec<u32>, p: f64, rng: &mut Rng) -> Vec<u32> {
        if p == 0.0 {
            return tokens;
        }
        let nt = tokens.len();
        let n = (nt as f64 * p).ceil() as usize;
        let total = nt + n;
        let slots = total - 2;
        let mut idx: Vec<u32> = (0..slots as u32).collect();
        for i in 0..n {
            let j = i + rng.below((slots - i) as u64) as usize;
            idx.swap(i, j);
        }
        let num_random = (n as f64 * self.random_ratio).ceil() as usize;
        let mut out = vec![u32::MAX; total];
        let mut noise = vec![false; total];
        for (i, &pos) in idx[..n].iter().enumerate() {
            let pos = pos as usize + 1;
            noise[pos] = true;
            out[pos] = if i < num_random {
                self.random_id(rng)
            } else {
                self.mask
            };
        }
        let mut it = tokens.into_iter();
        for (o, &is_noise) in out.iter_mut().zip(&noise) {
            if !is_noise {
                *o = it.next().unwrap_or(self.eos);
            }
        }
        out
    }

    /// `count` span lengths from this configuration's distribution, drawn from the stream of
    /// `seed` (for inspecting the distribution; rows use their own streams).
    pub fn sample_span_lengths(&self, count: usize, seed: u64) -> Result<Vec<u32>> {
        let Some(dist) = &self.spans else {
            return Err(CoreError::invalid(
                "mask_length",
                "span lengths are only drawn with mask_length='span-poisson'",
            ));
        };
        let mut rng = Rng::from_key(&[seed, PURPOSE, 0x5BA7_0000_0000_0004]);
        Ok((0..count).map(|_| dist.sample(&mut rng) as u32).collect())
    }
}

/// Span lengths in words summing to `budget` (the last one cut short), zero-length spans
/// dropped; returns the lengths and how many zero-length spans (insertions) there were.
fn span_lengths(dist: &PoissonSpans, budget: usize, rng: &mut Rng) -> (Vec<u32>, usize) {
    let mut lengths: Vec<u32> = Vec::new();
    let mut total = 0usize;
    while total < budget {
        let l = dist.sample(rng);
        lengths.push(l as u32);
        total += l;
    }
    if let Some(last) = lengths.last_mut() {
        *last -= (total - budget) as u32;
    }
    let num_inserts = lengths.iter().filter(|&&l| l == 0).count();
    lengths.retain(|&l| l > 0);
    (lengths, num_inserts)
}

/// Checks that `starts` has one flag per token of each row.
fn check_sentence_starts<T>(starts: &[&[u8]], rows: &[&[T]]) -> Result<()> {
    if starts.len() != rows.len() {
        return Err(CoreError::shape(
            "sentence_starts",
            format!("has {} rows but input_ids has {}", starts.len(), rows.len()),
        ));
    }
    for (r, (a, b)) in starts.iter().zip(rows).enumerate() {
        if a.len() != b.len() {
            return Err(CoreError::shape(
                "sentence_starts",
                format!(
                    "row {r} has length {} but input_ids row {r} has length {}",
                    a.len(),
                    b.len()
                ),
            ));
        }
    }
    Ok(())
}

/// Checks row `r`: not empty, ids in the vocabulary, wrapped in BOS … EOS when the config
/// does not add them.
fn check_row<T: TokenId>(cfg: &BartConfig, r: usize, row: &[T]) -> Result<()> {
    if row.is_empty() {
        return Err(CoreError::invalid(
            "input_ids",
            format!("row {r} is empty (zero-length rows cannot be noised)"),
        ));
    }
    check_row_ids("input_ids", r, row, cfg.vocab_size)?;
    if !cfg.add_special_tokens {
        let first = row[0].to_i64();
        let last = row[row.len() - 1].to_i64();
        if row.len() < 2 || first != i64::from(cfg.bos) || last != i64::from(cfg.eos) {
            return Err(CoreError::invalid(
                "input_ids",
                format!(
                    "row {r} must start with BOS ({}) and end with EOS ({}) when \
                     add_special_tokens=False",
                    cfg.bos, cfg.eos
                ),
            ));
        }
    }
    Ok(())
}

/// A validated BART batch.
#[derive(Debug)]
pub struct BartJob<'a, T> {
    cfg: &'a BartConfig,
    rows: &'a [&'a [T]],
    sentence_starts: Option<&'a [&'a [u8]]>,
    widths: Widths,
    streams: Streams,
    keys: &'a RowKeys<'a>,
}

impl<'a, T: TokenId> BartJob<'a, T> {
    pub fn new(
        cfg: &'a BartConfig,
        rows: &'a [&'a [T]],
        sentence_starts: Option<&'a [&'a [u8]]>,
        widths: Widths,
        streams: Streams,
        keys: &'a RowKeys<'a>,
    ) -> Result<Self> {
        widths.validate()?;
        if rows.is_empty() {
            return Err(CoreError::invalid("examples", "the batch is empty"));
        }
        keys.check_rows(rows.len())?;
        if let Some(s) = sentence_starts {
            check_sentence_starts(s, rows)?;
        }
        for (r, row) in rows.iter().enumerate() {
            check_row(cfg, r, row)?;
        }
        Ok(Self {
            cfg,
            rows,
            sentence_starts,
            widths,
            streams: Streams::new(streams.seed, streams.epoch, PURPOSE),
            keys,
        })
    }

    /// Noises every row and writes the batch.
    pub fn run<O: OutId>(&self, threads: usize) -> Result<Seq2SeqBatch<O>> {
        let cfg = self.cfg;
        let total: usize = self.rows.iter().map(|r| r.len()).sum();
        let threads = crate::parallel::threads_for(threads, total, GRAIN_TOKENS);
        let mut noised: Vec<Vec<u32>> = vec![Vec::new(); self.rows.len()];
        for_each_mut(threads, &mut noised, |r, out| {
            let mut rng = self.streams.row(self.keys, r);
            let starts = self.sentence_starts.map(|s| s[r]);
            *out = cfg.noise(cfg.source(self.rows[r]), starts, &mut rng);
        })?;
        let extra = if cfg.add_special_tokens { 2 } else { 0 };
        let input_width = self.widths.input_width(noised.iter().map(Vec::len))?;
        let target_width = self
            .widths
            .target_width(self.rows.iter().map(|r| r.len() + extra))?;
        let rows = self.rows.len();
        let [input_ids, attention_mask] =
            fill_encoder(threads, rows, input_width, i64::from(cfg.pad), |r, out| {
                for (o, &x) in out.iter_mut().zip(&noised[r]) {
                    *o = O::from_i64(i64::from(x));
                }
                noised[r].len()
            })?;
        let [labels, decoder_input_ids, decoder_attention_mask] = fill_decoder(
            threads,
            rows,
            target_width,
            i64::from(cfg.pad),
            i64::from(cfg.decoder_start),
            |r, out| {
                let row = self.rows[r];
                let mut w = 0;
                if cfg.add_special_tokens {
                    out[0] = O::from_i64(i64::from(cfg.bos));
                    w = 1;
                }
                for (o, &x) in out[w..].iter_mut().zip(row) {
                    *o = O::from_i64(x.to_i64());
                }
                w += row.len();
                if cfg.add_special_tokens {
                    out[w] = O::from_i64(i64::from(cfg.eos));
                    w += 1;
                }
                w
            },
        )?;
        Ok(Seq2SeqBatch {
            rows,
            input_width,
            target_width,
            input_ids,
            attention_mask,
            labels,
            decoder_input_ids,
            decoder_attention_mask,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: i64 = 1000;
    const BOS: u32 = 2;
    const EOS: u32 = 3;
    const MASK: u32 = 4;

    fn params<'a>(ws: Option<&'a [bool]>) -> BartParams<'a> {
        BartParams {
            vocab_size: V,
            bos_token_id: 2,
            eos_token_id: 3,
            pad_token_id: 0,
            mask_token_id: 4,
            decoder_start_token_id: 3,
            special_token_ids: &[1],
            word_starts: ws,
            full_stop_ids: &[],
            mask_ratio: 0.3,
            random_ratio: 0.0,
            insert_ratio: 0.0,
            rotate_ratio: 0.0,
            permute_sentence_ratio: 0.0,
            poisson_lambda: 3.0,
            mask_length: MaskLength::SpanPoisson,
            replace_length: 1,
            add_special_tokens: true,
            random_tokens: RandomTokens::NonSpecial,
        }
    }

    fn source(n: u32) -> Vec<u32> {
        let mut s = vec![BOS];
        s.extend(10..10 + n);
        s.push(EOS);
        s
    }

    #[test]
    fn poisson_table_matches_fairseq() {
        let p = PoissonSpans::new(3.0).unwrap();
        assert_eq!(p.pmf.len(), 18, "support 0..17 at λ = 3");
        assert!((p.probabilities()[0] - (-3.0f64).exp()).abs() < 1e-6);
        assert_eq!(PoissonSpans::new(3.5).unwrap().pmf.len(), 19);
        assert!(PoissonSpans::new(0.0).is_err());
        assert!(PoissonSpans::new(f64::NAN).is_err());
        // λ = 20: fairseq would stop at k = 0; here the table covers the distribution.
        let big = PoissonSpans::new(20.0).unwrap();
        assert!(big.pmf.len() > 40);
    }

    #[test]
    fn span_lengths_follow_the_truncated_poisson() {
        let cfg = BartConfig::new(&params(None)).unwrap();
        let probs = cfg.spans().unwrap().probabilities();
        let n = 200_000;
        let chi2 = |lengths: &[u32]| {
            let mut counts = vec![0f64; probs.len()];
            for &l in lengths {
                counts[l as usize] += 1.0;
            }
            // Pool the tail (k >= 10) into one cell so expected counts stay large.
            let (mut stat, mut tail_c, mut tail_e) = (0.0, 0.0, 0.0);
            for (k, (&c, &p)) in counts.iter().zip(&probs).enumerate() {
                let e = p * n as f64;
                if k >= 10 {
                    tail_c += c;
                    tail_e += e;
                } else {
                    stat += (c - e).powi(2) / e;
                }
            }
            stat + (tail_c - tail_e).powi(2) / tail_e
        };
        // 10 degrees of freedom: the 1e-6 upper quantile is about 51.
        let ok = chi2(&cfg.sample_span_lengths(n, 1).unwrap());
        assert!(ok < 51.0, "chi2 = {ok}");
        // Control: λ = 3.2 must fail the λ = 3 test.
        let other = BartConfig::new(&BartParams {
            poisson_lambda: 3.2,
            ..params(None)
        })
        .unwrap();
        let bad = chi2(&other.sample_span_lengths(n, 1).unwrap());
        assert!(bad > 51.0, "control chi2 = {bad}");
    }

    #[test]
    fn infilling_with_one_mask_per_span() {
        let cfg = BartConfig::new(&params(None)).unwrap();
        let mut rng = Rng::from_seed(3);
        for _ in 0..200 {
            let src = source(100);
            let out = cfg.noise(src.clone(), None, &mut rng);
            assert_eq!((out[0], *out.last().unwrap()), (BOS, EOS));
            // Kept tokens appear in order; every removed run is marked by one mask, except
            // zero-length spans which only insert masks.
            let kept: Vec<u32> = out.iter().copied().filter(|&x| x >= 10).collect();
            assert!(kept.windows(2).all(|w| w[0] < w[1]));
            let removed = 100 - kept.len();
            // The budget is ceil(100 · 0.3) in float32, as fairseq: 30.000002 → 31.
            assert!(removed <= 31, "at most the budget");
            assert!(out.contains(&MASK));
        }
    }

    #[test]
    fn replace_length_minus_one_keeps_length_and_zero_deletes() {
        let minus = BartConfig::new(&BartParams {
            replace_length: -1,
            ..params(None)
        })
        .unwrap();
        let zero = BartConfig::new(&BartParams {
            replace_length: 0,
            mask_length: MaskLength::Subword,
            ..params(None)
        })
        .unwrap();
        let mut rng = Rng::from_seed(5);
        for _ in 0..100 {
            let out = minus.noise(source(50), None, &mut rng);
            // No zero-length inserts can make it longer than... the inserts add masks.
            let masked = out.iter().filter(|&&x| x == MASK).count();
            assert!(masked >= 1 && masked <= 16 + out.len() - 52);
            let out = zero.noise(source(50), None, &mut rng);
            // float32: 50 · 0.3 = 15.000001, so fairseq deletes 16 tokens.
            assert_eq!(out.len(), 52 - 16);
            assert!(!out.contains(&MASK));
        }
    }

    #[test]
    fn word_mode_masks_whole_words() {
        // Word starts: even ids start a word, odd ids continue it.
        let table: Vec<bool> = (0..V).map(|i| i % 2 == 0 || i < 10).collect();
        let cfg = BartConfig::new(&BartParams {
            mask_length: MaskLength::Word,
            replace_length: -1,
            ..params(Some(&table))
        })
        .unwrap();
        let mut rng = Rng::from_seed(8);
        for _ in 0..100 {
            let src = source(60); // 10..70: words of 2 tokens (even, odd)
            let out = cfg.noise(src.clone(), None, &mut rng);
            assert_eq!(out.len(), src.len());
            for i in (1..61).step_by(2) {
                assert_eq!(out[i] == MASK, out[i + 1] == MASK, "word {i} half masked");
            }
            let words = (1..61).step_by(2).filter(|&i| out[i] == MASK).count();
            assert_eq!(words, 9, "ceil(0.3 · 30) words");
        }
    }

    #[test]
    fn permutation_rotation_and_insertion() {
        let cfg = BartConfig::new(&BartParams {
            mask_ratio: 0.0,
            permute_sentence_ratio: 1.0,
            rotate_ratio: 1.0,
            ..params(None)
        })
        .unwrap();
        let mut rng = Rng::from_seed(2);
        let row: Vec<u32> = (10..40).collect();
        let starts: Vec<u8> = (0..30).map(|i| u8::from(i % 6 == 0)).collect();
        let mut rotated_differently = std::collections::HashSet::new();
        for _ in 0..50 {
            let src = cfg.source(&row);
            let out = cfg.noise(src, Some(&starts), &mut rng);
            assert_eq!((out[0], out[31]), (BOS, EOS));
            let mut sorted = out[1..31].to_vec();
            sorted.sort_unstable();
            assert_eq!(sorted, row);
            // Undo the rotation: the interior is a rotation of a sentence permutation.
            let at = out[1..31].iter().position(|&x| (x - 10) % 6 == 0).unwrap();
            rotated_differently.insert(at);
        }
        assert!(rotated_differently.len() > 3);
        let ins = BartConfig::new(&BartParams {
            mask_ratio: 0.0,
            insert_ratio: 0.1,
            random_ratio: 0.5,
            ..params(None)
        })
        .unwrap();
        let out = ins.noise(source(98), None, &mut rng);
        assert_eq!(out.len(), 100 + 10);
        assert_eq!(out.iter().filter(|&&x| x == MASK).count(), 5);
        assert_eq!((out[0], out[109]), (BOS, EOS));
    }

    #[test]
    fn full_stop_sentences_as_fairseq() {
        let cfg = BartConfig::new(&BartParams {
            full_stop_ids: &[9],
            ..params(None)
        })
        .unwrap();
        // BOS a b . c . . d EOS → sentences [a b .] [c .]; the forced full stop before EOS
        // continues the run ". d", which stays in place (as in fairseq).
        let src = [BOS, 20, 21, 9, 22, 9, 9, 23, EOS];
        assert_eq!(cfg.sentence_ends(&src, None), [4, 6]);
        let src = [BOS, 20, 9, EOS];
        assert_eq!(cfg.sentence_ends(&src, None), [3]);
    }

    #[test]
    fn batches_are_thread_independent() {
        let cfg = BartConfig::new(&BartParams {
            random_ratio: 0.1,
            insert_ratio: 0.05,
            permute_sentence_ratio: 1.0,
            full_stop_ids: &[9],
            ..params(None)
        })
        .unwrap();
        let data: Vec<Vec<i64>> = (0..64)
            .map(|r| {
                (0..300 + r)
                    .map(|i| 10 + ((r * 7 + i * 13) % 900) as i64)
                    .collect()
            })
            .collect();
        let rows: Vec<&[i64]> = data.iter().map(|r| r.as_slice()).collect();
        let keys = RowKeys::Batch { index: 1 };
        let go = |threads| {
            BartJob::new(
                &cfg,
                &rows,
                None,
                Widths::default(),
                Streams::new(1, 0, 0),
                &keys,
            )
            .unwrap()
            .run::<i64>(threads)
            .unwrap()
        };
        let one = go(1);
        assert_eq!(one, go(2));
        assert_eq!(one, go(4));
        assert_eq!(one.target_width, 365);
    }

    #[test]
    fn bad_rows_are_errors() {
        let keys = RowKeys::Batch { index: 1 };
        let cfg = BartConfig::new(&params(None)).unwrap();
        let empty: Vec<&[i64]> = vec![&[]];
        assert!(
            BartJob::new(
                &cfg,
                &empty,
                None,
                Widths::default(),
                Streams::new(1, 0, 0),
                &keys
            )
            .is_err()
        );
        let strict = BartConfig::new(&BartParams {
            add_special_tokens: false,
            ..params(None)
        })
        .unwrap();
        let bad: Vec<&[i64]> = vec![&[2, 10, 11]];
        assert!(
            BartJob::new(
                &strict,
                &bad,
                None,
                Widths::default(),
                Streams::new(1, 0, 0),
                &keys
            )
            .is_err()
        );
    }
}
