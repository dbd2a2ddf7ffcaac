//! Dynamic masked-language-model masking (BERT / RoBERTa).
//!
//! For each row: the *eligible* positions are real tokens (attention 1) that are neither a
//! special id (per-vocabulary table) nor flagged in a per-token `special_tokens_mask`. A
//! subset is *selected* — independently with probability `mlm_probability` (HF semantics), or
//! exactly `round(p·n)` of them without replacement (Google BERT / fairseq semantics). Each
//! selected position gets its original id as label and becomes `[MASK]` with probability
//! `mask_replace_prob`, a uniformly drawn *non-special* id with `random_replace_prob`, and
//! stays unchanged otherwise. Every draw comes from the row's keyed stream ([`crate::rng`]).
//!
//! Units larger than a token ([`UnitSpec`]: whole words, SpanBERT spans, ALBERT n-grams) are
//! selected by [`crate::units`]; the replacement decision is then made once per unit (all its
//! tokens share it), once per run of adjacent selected tokens, or per token.
//!
//! A recipe ([`crate::recipes`]) fixes the rules no argument expresses ([`MaskingRules`]): what
//! the exact budget is a share of and how it rounds, which ids random replacements come from,
//! whether words run across special tokens, and how spans end. Each rule is dispatched once per
//! row; the default rules run the same code as before they existed.

use crate::batch::{OutId, PadSpec, Ragged, TokenId, fill_rows, fill_rows_into};
use crate::ids::{IGNORE_INDEX, check_id, check_ids, check_vocab};
use crate::parallel::threads_for;
use crate::rng::{Categorical, Chance, GeometricGaps, Rng, RowKeys, Streams};
use crate::units::{
    BOUNDARY, ELIGIBLE, Run, STARTS_WORD, Unit, Word, compact_words, ngram_weights, segment_words,
    select_ngrams, select_spans, select_spans_spanbert, select_words_bernoulli,
    select_words_budget, span_length_weights, token_count,
};
use crate::word_starts::WordStarts;
use crate::{CoreError, Result, check_probability};

/// Tokens per thread below which more threads do not pay for the hand-off.
const GRAIN_TOKENS: usize = 32 * 1024;

/// The purpose tag of MLM streams.
pub const PURPOSE: u64 = crate::rng::purpose("mlm");

/// How many positions a row selects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// Each eligible position independently with probability `p` (Hugging Face).
    Bernoulli,
    /// Exactly `round(p·n)` eligible positions (at least one when `p > 0` and `n > 0`, as
    /// Google BERT does), capped by `max_predictions`, chosen uniformly without replacement.
    Exact { max_predictions: Option<usize> },
}

impl Budget {
    /// The budget the Python API's `exact_budget` / `max_predictions` arguments describe.
    pub fn new(exact_budget: bool, max_predictions: Option<usize>) -> Result<Self> {
        match (exact_budget, max_predictions) {
            (true, max_predictions) => Ok(Budget::Exact { max_predictions }),
            (false, None) => Ok(Budget::Bernoulli),
            (false, Some(_)) => Err(CoreError::invalid(
                "max_predictions",
                "caps the exact budget; it needs exact_budget=True",
            )),
        }
    }
}

/// What a masking decision selects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnitSpec {
    /// Single tokens (BERT, RoBERTa).
    Token,
    /// Whole words (BERT whole-word masking).
    Word,
    /// SpanBERT spans of whole words, lengths ~ Geometric(`geometric_p`) truncated to
    /// `[lower, upper]` words and renormalised.
    Span {
        geometric_p: f64,
        lower: u32,
        upper: u32,
    },
    /// ALBERT/Megatron n-grams of `1..=max_n` whole words, `P(n) ∝ 1/n` (reversed unless
    /// `favor_shorter`).
    Ngram { max_n: u32, favor_shorter: bool },
}

/// The parameters of span and n-gram units, as the Python API takes them (each unit reads
/// only its own).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnitArgs {
    pub geometric_p: f64,
    pub span_lower: u32,
    pub span_upper: u32,
    pub ngram: u32,
    pub favor_shorter_ngram: bool,
}

impl UnitArgs {
    fn span(&self) -> UnitSpec {
        UnitSpec::Span {
            geometric_p: self.geometric_p,
            lower: self.span_lower,
            upper: self.span_upper,
        }
    }

    fn ngram(&self) -> UnitSpec {
        UnitSpec::Ngram {
            max_n: self.ngram,
            favor_shorter: self.favor_shorter_ngram,
        }
    }
}

impl UnitSpec {
    /// The unit named `s` (`"token"`, `"word"`, `"span"` or `"ngram"`).
    pub fn parse(arg: &str, s: &str, args: &UnitArgs) -> Result<Self> {
        match s {
            "token" => Ok(UnitSpec::Token),
            "word" => Ok(UnitSpec::Word),
            "span" => Ok(args.span()),
            "ngram" => Ok(args.ngram()),
            other => Err(CoreError::invalid(
                arg,
                format!("must be 'token', 'word', 'span' or 'ngram', got {other:?}"),
            )),
        }
    }
}

/// Whether the replacement decision is drawn once per unit, once per run of adjacent selected
/// tokens (SpanBERT's merged spans), or once per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplaceBy {
    Unit,
    Token,
    Run,
}

impl ReplaceBy {
    pub fn parse(arg: &str, s: &str) -> Result<Self> {
        match s {
            "unit" => Ok(ReplaceBy::Unit),
            "token" => Ok(ReplaceBy::Token),
            "run" => Ok(ReplaceBy::Run),
            other => Err(CoreError::invalid(
                arg,
                format!("must be 'unit', 'token' or 'run', got {other:?}"),
            )),
        }
    }
}

/// What the exact budget `p·n` counts as `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetBase {
    /// The eligible tokens (real, non-special): ours, SpanBERT's.
    Eligible,
    /// Every real token of the row, special tokens included (Google BERT's and ALBERT's
    /// `len(tokens)`, [CLS] and [SEP] counted); padding is not counted.
    RealTokens,
}

/// How `p·n` becomes a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// Round half to even (Python 3's `round`, Google BERT's and ALBERT's).
    HalfEven,
    /// Round up (SpanBERT's `math.ceil`).
    Ceil,
}

/// Which ids a random replacement is drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplacementPool {
    /// Uniformly among the non-special ids (ours).
    NonSpecial,
    /// Uniformly among all ids, special ones included (Google BERT, ALBERT, Hugging Face).
    Vocabulary,
    /// In proportion to the corpus's token counts (SpanBERT draws a random token of the
    /// corpus); needs `token_counts`.
    Frequency,
}

/// How SpanBERT spans are selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanRule {
    /// Whole words only; a span stops at a taken word and where the budget would overshoot
    /// ([`crate::units::select_spans`]).
    WholeWords,
    /// SpanBERT's reference: a span runs on through taken words and its last word is cut where
    /// the budget is reached ([`crate::units::select_spans_spanbert`]).
    SpanBert,
}

/// The rules a recipe fixes (see [`crate::recipes`] for each recipe's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskingRules {
    pub budget_base: BudgetBase,
    pub rounding: Rounding,
    pub pool: ReplacementPool,
    /// Special tokens do not end words, spans or n-grams (padding and packed-example
    /// boundaries still do): a continuation piece after `[SEP]` joins the word before it, and
    /// n-grams run across the middle `[SEP]`, as Google BERT's and ALBERT's candidate lists do.
    pub words_across_specials: bool,
    pub spans: SpanRule,
}

/// How the exact budget's positions are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionSampling {
    WithoutReplacement,
    /// ELECTRA's reference sampling (duplicates collapse).
    WithReplacement,
}

impl PositionSampling {
    pub fn parse(arg: &str, s: &str) -> Result<Self> {
        match s {
            "without_replacement" => Ok(PositionSampling::WithoutReplacement),
            "with_replacement" => Ok(PositionSampling::WithReplacement),
            other => Err(CoreError::invalid(
                arg,
                format!("must be 'without_replacement' or 'with_replacement', got {other:?}"),
            )),
        }
    }
}

/// The special ids a masker uses: those given plus the pad and mask ids (always special),
/// sorted, without duplicates.
pub fn effective_special_ids(special_token_ids: &[i64], pad: i64, mask: i64) -> Vec<i64> {
    let mut specials = special_token_ids.to_vec();
    specials.extend([pad, mask]);
    specials.sort_unstable();
    specials.dedup();
    specials
}

/// `count` lengths (in words) of the span or n-gram unit named `unit`, drawn from the law the
/// masker uses with stream `(seed, 0, purpose("lengths"), sample 0)`: for testing the law.
pub fn length_samples(unit: &str, args: &UnitArgs, count: usize, seed: u64) -> Result<Vec<u32>> {
    let (spec, offset) = match unit {
        "span" => (args.span(), args.span_lower),
        "ngram" => (args.ngram(), 1),
        other => {
            return Err(CoreError::invalid(
                "unit",
                format!("must be 'span' or 'ngram', got {other:?}"),
            ));
        }
    };
    let law = length_law(&spec)?.ok_or_else(|| CoreError::Internal("no length law".into()))?;
    let mut rng =
        Streams::new(seed, 0, crate::rng::purpose("lengths")).row(&RowKeys::Samples(&[0]), 0);
    Ok((0..count)
        .map(|_| offset + law.sample(&mut rng) as u32)
        .collect())
}

#[derive(Debug, Clone)]
enum Units {
    Token,
    Word,
    Span { lower: u32, lengths: Categorical },
    Ngram { lengths: Categorical },
}

/// The length law of span or n-gram units: index `i` of the returned distribution is a
/// length of `lower + i` words (`lower = 1` for n-grams). `None` for token and word units.
pub fn length_law(unit: &UnitSpec) -> Result<Option<Categorical>> {
    match *unit {
        UnitSpec::Token | UnitSpec::Word => Ok(None),
        UnitSpec::Span {
            geometric_p,
            lower,
            upper,
        } => {
            if !(geometric_p > 0.0 && geometric_p <= 1.0) {
                return Err(CoreError::invalid(
                    "geometric_p",
                    format!("must be in (0, 1], got {geometric_p}"),
                ));
            }
            if lower < 1 || upper < lower || upper > 10_000 {
                return Err(CoreError::invalid(
                    "span_lower",
                    format!(
                        "span lengths need 1 <= span_lower <= span_upper <= 10000, got \
                         [{lower}, {upper}]"
                    ),
                ));
            }
            Categorical::new(&span_length_weights(geometric_p, lower, upper))
                .map(Some)
                .ok_or_else(|| {
                    CoreError::invalid(
                        "geometric_p",
                        format!("gives no mass on [{lower}, {upper}] at p = {geometric_p}"),
                    )
                })
        }
        UnitSpec::Ngram {
            max_n,
            favor_shorter,
        } => {
            if !(1..=1000).contains(&max_n) {
                return Err(CoreError::invalid(
                    "ngram",
                    format!("must be in [1, 1000], got {max_n}"),
                ));
            }
            Categorical::new(&ngram_weights(max_n, favor_shorter))
                .map(Some)
                .ok_or_else(|| CoreError::invalid("ngram", "invalid n-gram weights"))
        }
    }
}

/// Validated MLM configuration. Built once, shared by every batch.
#[derive(Debug, Clone)]
pub struct MlmConfig {
    vocab_size: u32,
    mask_token_id: u32,
    pad_token_id: u32,
    mlm_probability: f64,
    gaps: GeometricGaps,
    /// A selected token becomes [MASK] if `u < to_mask`, a random id if `u < to_mask_or_random`.
    to_mask: Chance,
    to_mask_or_random: Chance,
    budget: Budget,
    /// Exact budget drawn with replacement (ELECTRA's reference sampling).
    with_replacement: bool,
    units: Units,
    /// Replacement decisions per unit (all tokens of a word/span share one draw), per run of
    /// adjacent selected tokens, or per token.
    replace_by: ReplaceBy,
    /// The recipe's rules.
    rules: MaskingRules,
    /// Whether unit masking follows our rules (budget of the eligible tokens, words that stop at
    /// special tokens, whole-word spans, decisions per unit or token): the path that runs
    /// exactly as before recipes existed; any other rule takes [`Row::mask_units_by_rules`].
    whole_units: bool,
    /// Which ids begin a word (from the tokenizer's vocabulary), when a table was given.
    word_starts: Option<WordStarts>,
    /// Per-vocabulary unit flags: [`ELIGIBLE`] unless special, [`STARTS_WORD`] from
    /// `word_starts` (set everywhere without a table).
    vocab_flags: Vec<u8>,
    /// `special[id]`: never selected (and, with the non-special pool, never drawn).
    special: Vec<bool>,
    /// The ids random replacement draws from uniformly (every non-special id, or every id);
    /// empty when it draws by count.
    replacement_pool: Vec<u32>,
    /// The ids and counts random replacement draws from by count, when it does.
    weighted: Option<WeightedPool>,
}

/// Ids with positive counts and their cumulative counts: a draw is a uniformly random token of
/// a corpus with those counts (exactly `count / total`, integer arithmetic).
#[derive(Debug, Clone)]
struct WeightedPool {
    ids: Vec<u32>,
    /// `cum[i]` = the counts of `ids[..=i]`.
    cum: Vec<u64>,
}

/// Which pool random replacement draws from, as a type: the kernels are monomorphised per
/// pool, so choosing one is a single dispatch per row, and the pool is read from the
/// configuration only when a replacement is drawn (nothing more is live in the hot loops).
trait Draw {
    fn draw(cfg: &MlmConfig, rng: &mut Rng) -> u32;
}

/// [`Pool::Uniform`].
struct UniformIds;
/// [`Pool::Weighted`].
struct ByCount;

impl Draw for UniformIds {
    #[inline(always)]
    fn draw(cfg: &MlmConfig, rng: &mut Rng) -> u32 {
        let pool = &cfg.replacement_pool;
        pool[rng.below(pool.len() as u64) as usize]
    }
}

impl Draw for ByCount {
    #[inline]
    fn draw(cfg: &MlmConfig, rng: &mut Rng) -> u32 {
        match &cfg.weighted {
            Some(w) => w.draw(rng),
            None => UniformIds::draw(cfg, rng),
        }
    }
}

impl WeightedPool {
    #[inline]
    fn draw(&self, rng: &mut Rng) -> u32 {
        let total = self.cum.last().copied().unwrap_or(0);
        let k = rng.below(total);
        self.ids[self.cum.partition_point(|&c| c <= k)]
    }
}

/// Everything [`MlmConfig::new`] needs.
#[derive(Debug, Clone)]
pub struct MlmParams<'a> {
    pub vocab_size: i64,
    pub mask_token_id: i64,
    pub pad_token_id: i64,
    pub special_token_ids: &'a [i64],
    pub mlm_probability: f64,
    pub mask_replace_prob: f64,
    pub random_replace_prob: f64,
    pub budget: Budget,
    /// Draw the exact budget's positions with replacement (ELECTRA's reference; duplicates
    /// collapse). Token units only.
    pub with_replacement: bool,
    pub unit: UnitSpec,
    pub replace_by: ReplaceBy,
    /// A per-vocabulary "starts a word" table (`len == vocab_size`), if word boundaries come
    /// from the vocabulary.
    pub word_starts: Option<&'a [bool]>,
    /// The recipe's rules ([`MaskingRules::LMOBJECTIVES`] by default).
    pub rules: MaskingRules,
    /// Token counts, one per id (`len == vocab_size`): random replacements are then drawn in
    /// proportion to them whatever the rules' pool. Required by [`ReplacementPool::Frequency`].
    pub token_counts: Option<&'a [i64]>,
}

impl<'a> MlmParams<'a> {
    /// BERT's defaults (token masking, p = 0.15, 80/10/10, Bernoulli selection) for a
    /// vocabulary; adjust fields with struct-update syntax.
    pub fn new(
        vocab_size: i64,
        mask_token_id: i64,
        pad_token_id: i64,
        special_token_ids: &'a [i64],
    ) -> Self {
        Self {
            vocab_size,
            mask_token_id,
            pad_token_id,
            special_token_ids,
            mlm_probability: 0.15,
            mask_replace_prob: 0.8,
            random_replace_prob: 0.1,
            budget: Budget::Bernoulli,
            with_replacement: false,
            unit: UnitSpec::Token,
            replace_by: ReplaceBy::Unit,
            word_starts: None,
            rules: MaskingRules::LMOBJECTIVES,
            token_counts: None,
        }
    }
}

/// `(mask_replace_prob, random_replace_prob)`, each a probability, summing to at most 1.
fn replace_probabilities(p: &MlmParams<'_>) -> Result<(f64, f64)> {
    let mask_replace_prob = check_probability("mask_replace_prob", p.mask_replace_prob)?;
    let random_replace_prob = check_probability("random_replace_prob", p.random_replace_prob)?;
    let total = mask_replace_prob + random_replace_prob;
    if total > 1.0 + 1e-12 {
        return Err(CoreError::invalid(
            "random_replace_prob",
            format!(
                "mask_replace_prob + random_replace_prob must be at most 1, got \
                 {mask_replace_prob} + {random_replace_prob} = {total}"
            ),
        ));
    }
    Ok((mask_replace_prob, random_replace_prob))
}

/// The units to select, checked against the budget and the position sampling.
fn units(p: &MlmParams<'_>) -> Result<Units> {
    if let Budget::Exact {
        max_predictions: Some(0),
    } = p.budget
    {
        return Err(CoreError::invalid(
            "max_predictions",
            "must be a positive integer",
        ));
    }
    let units = match (p.unit, length_law(&p.unit)?) {
        (UnitSpec::Token, _) => Units::Token,
        (UnitSpec::Word, _) => Units::Word,
        (UnitSpec::Span { lower, .. }, Some(lengths)) => Units::Span { lower, lengths },
        (UnitSpec::Ngram { .. }, Some(lengths)) => Units::Ngram { lengths },
        (_, None) => return Err(CoreError::Internal("missing length law".into())),
    };
    if matches!(units, Units::Span { .. } | Units::Ngram { .. }) && p.budget == Budget::Bernoulli {
        return Err(CoreError::invalid(
            "exact_budget",
            "span and n-gram masking fill a token budget; they need exact_budget=True",
        ));
    }
    if p.replace_by == ReplaceBy::Run && p.unit == UnitSpec::Token {
        return Err(CoreError::invalid(
            "replace_by",
            "'run' draws one decision per run of adjacent selected words; it needs word, span \
             or n-gram units (token masking decides per token)",
        ));
    }
    if p.with_replacement && (p.budget == Budget::Bernoulli || p.unit != UnitSpec::Token) {
        return Err(CoreError::invalid(
            "position_sampling",
            "'with_replacement' draws the exact budget of token masking; it needs \
             exact_budget=True and unit='token'",
        ));
    }
    Ok(units)
}

/// `special[id]`: the mask and pad ids and every id of `special_token_ids`.
fn special_table(p: &MlmParams<'_>, mask_token_id: u32, pad_token_id: u32) -> Result<Vec<bool>> {
    let mut special = vec![false; p.vocab_size as usize];
    special[mask_token_id as usize] = true;
    special[pad_token_id as usize] = true;
    for &id in p.special_token_ids {
        special[check_id("special_token_ids", id, p.vocab_size)? as usize] = true;
    }
    Ok(special)
}

/// What random replacement draws from — the ids it draws uniformly, or (with token counts) the
/// ids and counts it draws by count; an error when it would have nothing to draw.
fn replacement_pool(
    p: &MlmParams<'_>,
    special: &[bool],
    random_replace_prob: f64,
) -> Result<(Vec<u32>, Option<WeightedPool>)> {
    if let Some(counts) = p.token_counts {
        let weighted = weighted_pool(counts, special.len(), random_replace_prob)?;
        return Ok((Vec::new(), Some(weighted)));
    }
    let pool: Vec<u32> = match p.rules.pool {
        ReplacementPool::NonSpecial => (0..special.len() as u32)
            .filter(|&i| !special[i as usize])
            .collect(),
        ReplacementPool::Vocabulary => (0..special.len() as u32).collect(),
        ReplacementPool::Frequency if random_replace_prob > 0.0 => {
            return Err(CoreError::invalid(
                "token_counts",
                "required: this recipe draws random replacements in proportion to the \
                 corpus's token counts (SpanBERT); pass one count per id, e.g. \
                 TokenCorpus.token_counts()",
            ));
        }
        ReplacementPool::Frequency => Vec::new(),
    };
    if random_replace_prob > 0.0 && pool.is_empty() {
        return Err(CoreError::invalid(
            "random_replace_prob",
            "is positive but every id in the vocabulary is special, so there is nothing \
             to draw a random replacement from",
        ));
    }
    Ok((pool, None))
}

/// The ids with positive counts and their cumulative counts, checked: one non-negative count
/// per id, not all zero when random replacement is on.
fn weighted_pool(
    counts: &[i64],
    vocab_size: usize,
    random_replace_prob: f64,
) -> Result<WeightedPool> {
    if counts.len() != vocab_size {
        return Err(CoreError::shape(
            "token_counts",
            format!(
                "needs one count per id ({vocab_size}), got {}",
                counts.len()
            ),
        ));
    }
    let (mut ids, mut cum) = (Vec::new(), Vec::new());
    let mut total = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        if c < 0 {
            return Err(CoreError::invalid(
                "token_counts",
                format!("counts must be non-negative, got {c} at id {i}"),
            ));
        }
        if c > 0 {
            total = total
                .checked_add(c as u64)
                .ok_or_else(|| CoreError::invalid("token_counts", "the counts overflow 64 bits"))?;
            ids.push(i as u32);
            cum.push(total);
        }
    }
    if random_replace_prob > 0.0 && total == 0 {
        return Err(CoreError::invalid(
            "token_counts",
            "every count is 0, so there is nothing to draw a random replacement from",
        ));
    }
    Ok(WeightedPool { ids, cum })
}

/// Per-vocabulary unit flags: 0 for special ids, else [`ELIGIBLE`] and [`STARTS_WORD`] where
/// the word-start table says so (everywhere without a table).
fn vocab_flags(special: &[bool], word_starts: Option<&[bool]>) -> Vec<u8> {
    (0..special.len())
        .map(|i| {
            let starts = word_starts.is_none_or(|w| w[i]);
            if special[i] {
                0
            } else {
                ELIGIBLE | if starts { STARTS_WORD } else { 0 }
            }
        })
        .collect()
}

impl MlmConfig {
    pub fn new(p: &MlmParams<'_>) -> Result<Self> {
        check_vocab(p.vocab_size)?;
        let mask_token_id = check_id("mask_token_id", p.mask_token_id, p.vocab_size)?;
        let mlm_probability = check_probability("mlm_probability", p.mlm_probability)?;
        let (mask_replace_prob, random_replace_prob) = replace_probabilities(p)?;
        let total = mask_replace_prob + random_replace_prob;
        let units = units(p)?;
        let word_starts = p
            .word_starts
            .map(|w| WordStarts::from_table(w, p.vocab_size as usize))
            .transpose()?;
        let pad_token_id = check_id("pad_token_id", p.pad_token_id, p.vocab_size)?;
        let special = special_table(p, mask_token_id, pad_token_id)?;
        let (replacement_pool, weighted) = replacement_pool(p, &special, random_replace_prob)?;
        Ok(Self {
            vocab_size: p.vocab_size as u32,
            mask_token_id,
            pad_token_id,
            mlm_probability,
            gaps: GeometricGaps::new(mlm_probability),
            to_mask: Chance::new(mask_replace_prob),
            // The float slack allowed above makes a sum of 1 + 1e-12 mean "always".
            to_mask_or_random: Chance::new(if total >= 1.0 - 1e-12 { 1.0 } else { total }),
            budget: p.budget,
            with_replacement: p.with_replacement,
            units,
            replace_by: p.replace_by,
            rules: p.rules,
            whole_units: p.rules.budget_base == BudgetBase::Eligible
                && !p.rules.words_across_specials
                && (p.rules.spans == SpanRule::WholeWords
                    || !matches!(p.unit, UnitSpec::Span { .. }))
                && p.replace_by != ReplaceBy::Run,
            word_starts,
            vocab_flags: vocab_flags(&special, p.word_starts),
            special,
            replacement_pool,
            weighted,
        })
    }

    /// Whether a batch needs word boundaries (unit other than token).
    pub fn needs_words(&self) -> bool {
        !matches!(self.units, Units::Token)
    }

    /// Whether word boundaries can come from the vocabulary.
    pub fn has_word_starts(&self) -> bool {
        self.word_starts.is_some()
    }

    pub fn vocab_size(&self) -> u32 {
        self.vocab_size
    }

    pub fn mask_token_id(&self) -> u32 {
        self.mask_token_id
    }

    pub fn pad_token_id(&self) -> u32 {
        self.pad_token_id
    }

    pub fn is_special(&self, id: i64) -> bool {
        self.special[id as usize]
    }

    /// The number of positions the exact budget selects among `n` eligible ones (the budget
    /// counted over the eligible tokens).
    pub fn exact_count(&self, n: usize) -> usize {
        self.budget_of(n, n)
    }

    /// The exact budget of a row with `eligible` eligible tokens whose budget base (see
    /// [`BudgetBase`]) counts `base` tokens: `p·base` rounded by the rules, at least one (as
    /// Google BERT does), at most `eligible` and `max_predictions`.
    pub fn budget_of(&self, eligible: usize, base: usize) -> usize {
        let Budget::Exact { max_predictions } = self.budget else {
            return eligible;
        };
        if eligible == 0 || self.mlm_probability == 0.0 {
            return 0;
        }
        let share = self.mlm_probability * base as f64;
        let k = match self.rules.rounding {
            Rounding::HalfEven => share.round_ties_even(),
            Rounding::Ceil => share.ceil(),
        } as usize;
        k.max(1)
            .min(eligible)
            .min(max_predictions.unwrap_or(usize::MAX))
    }

    /// The recipe's rules.
    pub fn rules(&self) -> MaskingRules {
        self.rules
    }
}

/// The optional per-token arrays that travel with `input_ids` (same row lengths).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenMasks<'a> {
    /// 0 marks padding already present in the input: copied as attention 0, never selected.
    pub attention_mask: Option<Ragged<'a, u8>>,
    /// Non-zero marks a token that must not be selected (e.g. a tokenizer's [CLS]/[SEP]).
    pub special_tokens_mask: Option<Ragged<'a, u8>>,
    /// Per-token word index (a fast tokenizer's `word_ids()`, `-1` for none): a token starts a
    /// word where the index changes. Takes precedence over the vocabulary table.
    pub word_ids: Option<Ragged<'a, i64>>,
    /// Non-zero where a new (packed) example begins: words, spans and n-grams never cross it.
    pub boundaries: Option<Ragged<'a, u8>>,
}

/// A padded, masked batch: three `rows × width` row-major buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct MlmBatch<O> {
    pub rows: usize,
    pub width: usize,
    pub input_ids: Vec<O>,
    pub attention_mask: Vec<O>,
    pub labels: Vec<O>,
}

/// Masks and pads a batch into new buffers (see [`MlmJob`]).
pub fn mask_batch<T: TokenId, O: OutId>(
    cfg: &MlmConfig,
    input_ids: &Ragged<'_, T>,
    masks: &TokenMasks<'_>,
    pad: &PadSpec,
    streams: &Streams,
    keys: &RowKeys<'_>,
    threads: usize,
) -> Result<MlmBatch<O>> {
    MlmJob::new(cfg, input_ids, masks, pad, streams, keys)?.run(threads)
}

/// A validated MLM batch: every check is done at construction, so running it cannot fail
/// (except for a thread pool that cannot start) and the output width is known up front —
/// which lets a caller provide the output memory itself ([`MlmJob::run_into`]).
#[derive(Debug, Clone, Copy)]
pub struct MlmJob<'a, T> {
    cfg: &'a MlmConfig,
    input_ids: &'a Ragged<'a, T>,
    masks: &'a TokenMasks<'a>,
    pad: &'a PadSpec,
    streams: &'a Streams,
    keys: &'a RowKeys<'a>,
    width: usize,
}

impl<'a, T: TokenId> MlmJob<'a, T> {
    pub fn new(
        cfg: &'a MlmConfig,
        input_ids: &'a Ragged<'a, T>,
        masks: &'a TokenMasks<'a>,
        pad: &'a PadSpec,
        streams: &'a Streams,
        keys: &'a RowKeys<'a>,
    ) -> Result<Self> {
        let width = pad.width("input_ids", input_ids)?;
        check_ids("input_ids", input_ids, u64::from(cfg.vocab_size))?;
        if let Some(a) = &masks.attention_mask {
            input_ids.check_aligned("attention_mask", a)?;
        }
        if let Some(s) = &masks.special_tokens_mask {
            input_ids.check_aligned("special_tokens_mask", s)?;
        }
        if let Some(w) = &masks.word_ids {
            input_ids.check_aligned("word_ids", w)?;
        }
        if let Some(b) = &masks.boundaries {
            input_ids.check_aligned("boundaries", b)?;
        }
        if cfg.needs_words() && masks.word_ids.is_none() && cfg.word_starts.is_none() {
            return Err(CoreError::invalid(
                "unit",
                "word, span and n-gram masking need word boundaries: configure them from a \
                 tokenizer (WordPiece '##', SentencePiece '▁', byte-level BPE 'Ġ') or \
                 word_starts, or pass word_ids with the examples",
            ));
        }
        keys.check_rows(input_ids.rows())?;
        Ok(Self {
            cfg,
            input_ids,
            masks,
            pad,
            streams,
            keys,
            width,
        })
    }

    pub fn rows(&self) -> usize {
        self.input_ids.rows()
    }

    /// The padded row length of the batch.
    pub fn width(&self) -> usize {
        self.width
    }

    fn threads(&self, requested: usize) -> usize {
        threads_for(requested, self.input_ids.values.len(), GRAIN_TOKENS)
    }

    /// Masks into new buffers.
    pub fn run<O: OutId>(&self, threads: usize) -> Result<MlmBatch<O>> {
        let (threads, rows, width) = (self.threads(threads), self.rows(), self.width);
        // One dispatch per batch on where random replacements come from.
        let [input_ids, attention_mask, labels] = if self.cfg.weighted.is_some() {
            fill_rows(threads, rows, width, |r, row| {
                self.fill_row::<O, ByCount>(r, row)
            })?
        } else {
            fill_rows(threads, rows, width, |r, row| {
                self.fill_row::<O, UniformIds>(r, row)
            })?
        };
        Ok(MlmBatch {
            rows: self.rows(),
            width: self.width,
            input_ids,
            attention_mask,
            labels,
        })
    }

    /// Masks into `[input_ids, attention_mask, labels]`, each `rows × width` (any prior
    /// content is overwritten).
    pub fn run_into<O: OutId>(&self, threads: usize, out: [&mut [O]; 3]) -> Result<()> {
        if out.iter().any(|b| b.len() != self.rows() * self.width) {
            return Err(CoreError::shape(
                "out",
                format!(
                    "each output must hold {} × {} values",
                    self.rows(),
                    self.width
                ),
            ));
        }
        let (threads, width) = (self.threads(threads), self.width);
        if self.cfg.weighted.is_some() {
            fill_rows_into(threads, width, out, |r, row| {
                self.fill_row::<O, ByCount>(r, row)
            })
        } else {
            fill_rows_into(threads, width, out, |r, row| {
                self.fill_row::<O, UniformIds>(r, row)
            })
        }
    }

    /// Writes row `r` into zeroed `[ids, attention, labels]` rows: only what differs from 0.
    fn fill_row<O: OutId, D: Draw>(&self, r: usize, [ids, attention, labels]: [&mut [O]; 3]) {
        let cfg = self.cfg;
        let src = self.input_ids.row(r);
        let kept = self.pad.kept(src.len());
        let start = self.pad.start(kept, self.width);
        let region = start..start + kept;
        labels.fill(O::from_i64(IGNORE_INDEX));
        if cfg.pad_token_id != 0 {
            let pad_id = O::from_i64(i64::from(cfg.pad_token_id));
            ids[..start].fill(pad_id);
            ids[start + kept..].fill(pad_id);
        }
        let attn = self
            .masks
            .attention_mask
            .as_ref()
            .map(|a| &a.row(r)[..kept]);
        write_attention(&mut attention[region.clone()], attn);
        let spec = self
            .masks
            .special_tokens_mask
            .as_ref()
            .map(|s| &s.row(r)[..kept]);
        let kept_src = &src[..kept];
        let row = Row {
            src: kept_src,
            ids: &mut ids[region.clone()],
            labels: &mut labels[region],
            rng: self.streams.row(self.keys, r),
            real_tokens: (cfg.rules.budget_base == BudgetBase::RealTokens)
                .then(|| real_tokens(kept_src, attn, cfg.pad_token_id)),
        };
        self.mask_row::<O, D>(r, row, attn, spec);
    }

    /// Masks one row's kept region, drawing random replacements as `D` does.
    #[inline(always)]
    fn mask_row<O: OutId, D: Draw>(
        &self,
        r: usize,
        row: Row<'_, T, O>,
        attn: Option<&[u8]>,
        spec: Option<&[u8]>,
    ) {
        let cfg = self.cfg;
        if cfg.needs_words() {
            if cfg.whole_units {
                let words = self.words(r, row.src, attn, spec);
                row.mask_units::<D>(cfg, &words);
            } else {
                self.units_by_rules::<O, D>(r, row, attn, spec);
            }
            return;
        }
        let table = &cfg.special;
        // Monomorphised per mask combination: no per-token Option checks.
        match (attn, spec) {
            (None, None) => row.mask::<D>(cfg, |_, id| !table[id as usize]),
            (Some(a), None) => row.mask::<D>(cfg, |t, id| a[t] != 0 && !table[id as usize]),
            (None, Some(s)) => row.mask::<D>(cfg, |t, id| s[t] == 0 && !table[id as usize]),
            (Some(a), Some(s)) => {
                row.mask::<D>(cfg, |t, id| a[t] != 0 && s[t] == 0 && !table[id as usize])
            }
        }
    }

    /// Unit masking under rules other than ours (see [`MlmConfig::whole_units`]): its own
    /// function, so that our path keeps its registers.
    #[inline(never)]
    fn units_by_rules<O: OutId, D: Draw>(
        &self,
        r: usize,
        row: Row<'_, T, O>,
        attn: Option<&[u8]>,
        spec: Option<&[u8]>,
    ) {
        let cfg = self.cfg;
        if cfg.rules.words_across_specials {
            let (words, positions) = self.words_across_specials(r, row.src, attn, spec);
            row.mask_units_by_rules::<D>(cfg, &words, Some(&positions));
        } else {
            let words = self.words(r, row.src, attn, spec);
            row.mask_units_by_rules::<D>(cfg, &words, None);
        }
    }

    /// The words of row `r`'s kept tokens `src` (see [`segment_words`]).
    #[inline]
    fn words(&self, r: usize, src: &[T], attn: Option<&[u8]>, spec: Option<&[u8]>) -> Vec<Word> {
        let cfg = self.cfg;
        let kept = src.len();
        let word_ids = self.masks.word_ids.as_ref().map(|w| &w.row(r)[..kept]);
        let bounds = self.masks.boundaries.as_ref().map(|b| &b.row(r)[..kept]);
        let mut words = Vec::with_capacity(kept);
        if word_ids.is_some() || bounds.is_some() {
            segment_words(
                unit_flags(cfg, src, attn, spec, word_ids, bounds),
                &mut words,
            );
            return words;
        }
        // Common cases: the vocabulary says where words start, the masks clear tokens (as
        // `unit_flags` does, without materialising the flags).
        // A local slice: the table's pointer and length stay in registers through the loop.
        let table: &[u8] = &cfg.vocab_flags;
        let vocab = |x: &T| table[x.to_i64() as usize];
        let keep = |b: bool| 0u8.wrapping_sub(u8::from(b)); // all bits where b
        match (attn, spec) {
            (None, None) => segment_words(src.iter().map(vocab), &mut words),
            (None, Some(s)) => segment_words(
                src.iter().zip(s).map(|(x, &m)| vocab(x) & keep(m == 0)),
                &mut words,
            ),
            (Some(a), None) => segment_words(
                src.iter().zip(a).map(|(x, &m)| vocab(x) & keep(m != 0)),
                &mut words,
            ),
            (Some(a), Some(s)) => segment_words(
                src.iter()
                    .zip(a.iter().zip(s))
                    .map(|(x, (&am, &sm))| vocab(x) & keep(am != 0 && sm == 0)),
                &mut words,
            ),
        }
        words
    }

    /// The words of row `r`'s kept tokens when words run across special tokens (see
    /// [`compact_words`]), and the position of each eligible token (the words' token indices
    /// count eligible tokens only).
    #[inline(never)]
    fn words_across_specials(
        &self,
        r: usize,
        src: &[T],
        attn: Option<&[u8]>,
        spec: Option<&[u8]>,
    ) -> (Vec<Word>, Vec<u32>) {
        let cfg = self.cfg;
        let kept = src.len();
        let word_ids = self.masks.word_ids.as_ref().map(|w| &w.row(r)[..kept]);
        let bounds = self.masks.boundaries.as_ref().map(|b| &b.row(r)[..kept]);
        let mut words = Vec::with_capacity(kept);
        // Padding (attention 0 or the pad id) still ends words; special tokens do not.
        let pad = i64::from(cfg.pad_token_id);
        let hard = |t: usize| attn.is_some_and(|a| a[t] == 0) || src[t].to_i64() == pad;
        let positions =
            if attn.is_none() && spec.is_none() && word_ids.is_none() && bounds.is_none() {
                let flags = src.iter().map(|x| cfg.vocab_flags[x.to_i64() as usize]);
                compact_words(flags, hard, &mut words)
            } else {
                let flags = unit_flags(cfg, src, attn, spec, word_ids, bounds);
                compact_words(flags, hard, &mut words)
            };
        (words, positions)
    }
}

/// The real tokens of a row (attention 1, not the pad id), special tokens included: what
/// [`BudgetBase::RealTokens`] counts.
fn real_tokens<T: TokenId>(src: &[T], attn: Option<&[u8]>, pad: u32) -> usize {
    let pad = i64::from(pad);
    match attn {
        Some(a) => src
            .iter()
            .zip(a)
            .filter(|&(x, &m)| m != 0 && x.to_i64() != pad)
            .count(),
        None => src.iter().filter(|x| x.to_i64() != pad).count(),
    }
}

/// The attention row of the kept tokens: the given mask as 0/1, or all 1.
#[inline]
fn write_attention<O: OutId>(attention: &mut [O], attn: Option<&[u8]>) {
    match attn {
        Some(a) => {
            for (d, &m) in attention.iter_mut().zip(a) {
                *d = O::from_i64(i64::from(m != 0));
            }
        }
        None => attention.fill(O::from_i64(1)),
    }
}

/// One row's kept region and its random stream.
struct Row<'a, T, O> {
    src: &'a [T],
    ids: &'a mut [O],
    labels: &'a mut [O],
    rng: Rng,
    /// The row's real tokens when the budget counts them ([`BudgetBase::RealTokens`]).
    real_tokens: Option<usize>,
}

impl<T: TokenId, O: OutId> Row<'_, T, O> {
    /// Copies the ids, selects among eligible positions and applies the replacements.
    ///
    /// Stream use (documented, pinned by tests). Bernoulli mode: every position (eligible
    /// or not) is an independent Bernoulli(p) trial, realised by jumping from success to
    /// success with [`GeometricGaps`]; a success on an eligible position selects it and is
    /// immediately followed by its replacement draws; successes on ineligible positions are
    /// dropped (the selection law per eligible token is exactly Bernoulli(p)). Exact mode:
    /// the partial Fisher–Yates swaps first, then the replacement draws of the chosen
    /// positions in position order.
    #[inline(always)]
    fn mask<D: Draw>(self, cfg: &MlmConfig, eligible: impl Fn(usize, i64) -> bool) {
        for (d, &x) in self.ids.iter_mut().zip(self.src) {
            *d = O::from_i64(x.to_i64());
        }
        match cfg.budget {
            Budget::Bernoulli => self.mask_bernoulli::<D>(cfg, eligible),
            Budget::Exact { .. } => self.mask_exact::<D>(cfg, eligible),
        }
    }

    /// Bernoulli selection: jumps from success to success of the per-position trials. (Takes
    /// the row by value: its slices and stream live in locals through the loop.)
    #[inline(always)]
    fn mask_bernoulli<D: Draw>(self, cfg: &MlmConfig, eligible: impl Fn(usize, i64) -> bool) {
        let Row {
            src,
            ids,
            labels,
            mut rng,
            ..
        } = self;
        if cfg.gaps.never() {
            return;
        }
        let n = src.len() as u64;
        let mut t = cfg.gaps.sample(&mut rng, n);
        while t < n {
            let i = t as usize;
            let id = src[i].to_i64();
            if eligible(i, id) {
                replace::<O, D>(cfg, &mut rng, id, (&mut ids[i], &mut labels[i]));
            }
            t += 1 + cfg.gaps.sample(&mut rng, n - t - 1);
        }
    }

    /// Exact budget: the eligible positions, a uniform choice of [`MlmConfig::budget_of`]
    /// them, then their replacements in position order.
    #[inline(always)]
    fn mask_exact<D: Draw>(self, cfg: &MlmConfig, eligible: impl Fn(usize, i64) -> bool) {
        let Row {
            src,
            ids,
            labels,
            mut rng,
            real_tokens,
        } = self;
        let mut candidates: Vec<u32> = Vec::with_capacity(src.len());
        for (t, &x) in src.iter().enumerate() {
            if eligible(t, x.to_i64()) {
                candidates.push(t as u32);
            }
        }
        let n = candidates.len();
        let k = cfg.budget_of(n, real_tokens.unwrap_or(n));
        let chosen = choose(cfg, &mut rng, &mut candidates, k);
        chosen.sort_unstable();
        for &t in chosen.iter() {
            let t = t as usize;
            let id = src[t].to_i64();
            replace::<O, D>(cfg, &mut rng, id, (&mut ids[t], &mut labels[t]));
        }
    }
}

/// `k` of `candidates`: a uniform `k`-subset by partial Fisher–Yates (the first `k` entries),
/// or, with replacement (ELECTRA's reference), `k` draws whose duplicates collapse, so fewer
/// than `k` positions may be chosen.
#[inline(always)]
fn choose<'c>(
    cfg: &MlmConfig,
    rng: &mut Rng,
    candidates: &'c mut Vec<u32>,
    k: usize,
) -> &'c mut [u32] {
    if cfg.with_replacement {
        let n = candidates.len() as u64;
        let mut drawn: Vec<u32> = (0..k).map(|_| candidates[rng.below(n) as usize]).collect();
        drawn.sort_unstable();
        drawn.dedup();
        *candidates = drawn;
        return &mut candidates[..];
    }
    for i in 0..k {
        let j = i + rng.below((candidates.len() - i) as u64) as usize;
        candidates.swap(i, j);
    }
    &mut candidates[..k]
}

impl<T: TokenId, O: OutId> Row<'_, T, O> {
    /// Unit masking under our rules: copies the ids, selects units among the row's words
    /// ([`crate::units`]) and applies the replacements in position order.
    ///
    /// Stream use (also of [`Row::mask_units_by_rules`]): the selection's draws first (see each selector), then per unit (or per run
    /// of adjacent selected tokens, `replace_by="run"` and SpanBERT's spans) in position order
    /// either one decision draw for the whole unit followed by one draw per token that becomes
    /// random, or the per-token draws of token masking (`replace_by="token"`).
    fn mask_units<D: Draw>(self, cfg: &MlmConfig, words: &[Word]) {
        let Row {
            src,
            ids,
            labels,
            mut rng,
            ..
        } = self;
        for (d, &x) in ids.iter_mut().zip(src) {
            *d = O::from_i64(x.to_i64());
        }
        let budget = cfg.exact_count(token_count(words));
        let selected = select_units(cfg, words, budget, &mut rng);
        for unit in selected {
            let first = words[unit.first as usize].start as usize;
            let last = words[(unit.first + unit.count - 1) as usize];
            let span = first..(last.start + last.len) as usize;
            let tokens = src[span.clone()]
                .iter()
                .zip(&mut ids[span.clone()])
                .zip(&mut labels[span]);
            if cfg.replace_by == ReplaceBy::Unit {
                let u = rng.next_u64();
                for ((&x, id), label) in tokens {
                    *label = O::from_i64(x.to_i64());
                    if cfg.to_mask.hit(u) {
                        *id = O::from_i64(i64::from(cfg.mask_token_id));
                    } else if cfg.to_mask_or_random.hit(u) {
                        *id = O::from_i64(i64::from(D::draw(cfg, &mut rng)));
                    }
                }
            } else {
                for ((&x, id), label) in tokens {
                    replace::<O, D>(cfg, &mut rng, x.to_i64(), (id, label));
                }
            }
        }
    }

    /// Unit masking under rules other than ours (see [`MlmConfig::whole_units`]): the budget
    /// base, words across special tokens (`positions` maps their token indices to the row),
    /// SpanBERT's spans, decisions per run.
    fn mask_units_by_rules<D: Draw>(
        self,
        cfg: &MlmConfig,
        words: &[Word],
        positions: Option<&[u32]>,
    ) {
        let Row {
            src,
            ids,
            labels,
            mut rng,
            real_tokens,
        } = self;
        for (d, &x) in ids.iter_mut().zip(src) {
            *d = O::from_i64(x.to_i64());
        }
        let eligible = token_count(words);
        let budget = cfg.budget_of(eligible, real_tokens.unwrap_or(eligible));
        if let (Units::Span { lower, lengths }, SpanRule::SpanBert) = (&cfg.units, cfg.rules.spans)
        {
            let runs = select_spans_spanbert(words, budget, *lower, lengths, &mut rng);
            Row {
                src,
                ids,
                labels,
                rng,
                real_tokens,
            }
            .apply_runs::<D>(cfg, &runs, positions);
            return;
        }
        let selected = select_units(cfg, words, budget, &mut rng);
        if positions.is_none() && cfg.replace_by != ReplaceBy::Run {
            Row {
                src,
                ids,
                labels,
                rng,
                real_tokens,
            }
            .apply_units::<D>(cfg, words, &selected);
            return;
        }
        let runs = unit_runs(
            words,
            &selected,
            positions,
            cfg.replace_by == ReplaceBy::Run,
        );
        Row {
            src,
            ids,
            labels,
            rng,
            real_tokens,
        }
        .apply_runs::<D>(cfg, &runs, positions);
    }

    /// The replacements of whole units, a unit's tokens contiguous in the row. (Takes the row
    /// by value so that the stream lives in locals, not behind the row's slices.)
    #[inline(always)]
    fn apply_units<D: Draw>(self, cfg: &MlmConfig, words: &[Word], selected: &[Unit]) {
        let Row {
            src,
            ids,
            labels,
            mut rng,
            ..
        } = self;
        let rng = &mut rng;
        for unit in selected {
            let first = words[unit.first as usize].start as usize;
            let last = words[(unit.first + unit.count - 1) as usize];
            let span = first..(last.start + last.len) as usize;
            let tokens = src[span.clone()]
                .iter()
                .zip(&mut ids[span.clone()])
                .zip(&mut labels[span]);
            if cfg.replace_by == ReplaceBy::Unit {
                let u = rng.next_u64();
                for ((&x, id), label) in tokens {
                    *label = O::from_i64(x.to_i64());
                    if cfg.to_mask.hit(u) {
                        *id = O::from_i64(i64::from(cfg.mask_token_id));
                    } else if cfg.to_mask_or_random.hit(u) {
                        *id = O::from_i64(i64::from(D::draw(cfg, rng)));
                    }
                }
            } else {
                for ((&x, id), label) in tokens {
                    replace::<O, D>(cfg, rng, x.to_i64(), (id, label));
                }
            }
        }
    }

    /// The replacements of runs of token indices (mapped through `positions` when given): one
    /// decision per run, or per token with `replace_by="token"`.
    fn apply_runs<D: Draw>(self, cfg: &MlmConfig, runs: &[Run], positions: Option<&[u32]>) {
        let Row {
            src,
            ids,
            labels,
            mut rng,
            ..
        } = self;
        let at = |k: u32| positions.map_or(k as usize, |p| p[k as usize] as usize);
        let per_token = cfg.replace_by == ReplaceBy::Token;
        for run in runs {
            let u = if per_token { 0 } else { rng.next_u64() };
            for k in run.start..run.end {
                let t = at(k);
                let x = src[t].to_i64();
                let (id, label) = (&mut ids[t], &mut labels[t]);
                if per_token {
                    replace::<O, D>(cfg, &mut rng, x, (id, label));
                    continue;
                }
                *label = O::from_i64(x);
                if cfg.to_mask.hit(u) {
                    *id = O::from_i64(i64::from(cfg.mask_token_id));
                } else if cfg.to_mask_or_random.hit(u) {
                    *id = O::from_i64(i64::from(D::draw(cfg, &mut rng)));
                }
            }
        }
    }
}

/// The units a row selects among its words (whole words, our spans, n-grams).
fn select_units(cfg: &MlmConfig, words: &[Word], budget: usize, rng: &mut Rng) -> Vec<Unit> {
    match (&cfg.units, cfg.budget) {
        (Units::Word, Budget::Bernoulli) => select_words_bernoulli(words, &cfg.gaps, rng),
        (Units::Word, Budget::Exact { .. }) => select_words_budget(words, budget, rng),
        (Units::Span { lower, lengths }, _) => select_spans(words, budget, *lower, lengths, rng),
        (Units::Ngram { lengths }, _) => select_ngrams(words, budget, lengths, rng),
        (Units::Token, _) => Vec::new(),
    }
}

/// The token runs of selected units, in position order; with `merge`, units that touch (the
/// next begins at the row position right after the previous ends, in the same segment) make
/// one run.
fn unit_runs(
    words: &[Word],
    selected: &[Unit],
    positions: Option<&[u32]>,
    merge: bool,
) -> Vec<Run> {
    let at = |k: u32| positions.map_or(k, |p| p[k as usize]);
    let mut runs: Vec<Run> = Vec::with_capacity(selected.len());
    for unit in selected {
        let first = words[unit.first as usize];
        let last = words[(unit.first + unit.count - 1) as usize];
        let run = Run {
            start: first.start,
            end: last.start + last.len,
            segment: first.segment,
        };
        match runs.last_mut() {
            Some(prev)
                if merge
                    && prev.end == run.start
                    && prev.segment == run.segment
                    && at(prev.end - 1) + 1 == at(run.start) =>
            {
                prev.end = run.end;
            }
            _ => runs.push(run),
        }
    }
    runs
}

/// Per-token unit flags of a row: the vocabulary's, cleared where the attention mask is 0 or
/// the special-tokens mask is set, word starts from `word_ids` when given, example starts.
fn unit_flags<T: TokenId>(
    cfg: &MlmConfig,
    src: &[T],
    attn: Option<&[u8]>,
    spec: Option<&[u8]>,
    word_ids: Option<&[i64]>,
    bounds: Option<&[u8]>,
) -> Vec<u8> {
    let mut flags: Vec<u8> = src
        .iter()
        .map(|x| cfg.vocab_flags[x.to_i64() as usize])
        .collect();
    if let Some(a) = attn {
        for (f, &m) in flags.iter_mut().zip(a) {
            if m == 0 {
                *f = 0;
            }
        }
    }
    if let Some(s) = spec {
        for (f, &m) in flags.iter_mut().zip(s) {
            if m != 0 {
                *f = 0;
            }
        }
    }
    if let Some(w) = word_ids {
        for (t, f) in flags.iter_mut().enumerate() {
            let starts = t == 0 || w[t] != w[t - 1] || w[t] < 0;
            *f = (*f & !STARTS_WORD) | if starts { STARTS_WORD } else { 0 };
        }
    }
    if let Some(b) = bounds {
        for (f, &m) in flags.iter_mut().zip(b) {
            if m != 0 {
                *f |= BOUNDARY;
            }
        }
    }
    flags
}

/// Labels a selected position and applies the 80/10/10 (configurable) decision, a random
/// replacement drawn as `D` does.
#[inline]
fn replace<O: OutId, D: Draw>(
    cfg: &MlmConfig,
    rng: &mut Rng,
    original: i64,
    (id, label): (&mut O, &mut O),
) {
    *label = O::from_i64(original);
    let u = rng.next_u64();
    if cfg.to_mask.hit(u) {
        *id = O::from_i64(i64::from(cfg.mask_token_id));
    } else if cfg.to_mask_or_random.hit(u) {
        *id = O::from_i64(i64::from(D::draw(cfg, rng)));
    }
}

/// Token masking of one row that a kernel has already written into its output — for the
/// kernels that build rows straight into the padded batch (sentence pairs:
/// [`crate::pair_batch`]). `src` is the row's kept tokens (ids checked to be in the
/// vocabulary), `ids` the same tokens in the output (masked in place), `labels` the row's
/// labels, all [`IGNORE_INDEX`] (the selected positions get their original ids). Draws from
/// `rng` exactly what [`MlmJob`] draws for the same kept tokens given without attention or
/// special-tokens masks, so both make the same batch. `scratch` is reused between rows.
/// Token units only: the caller checks that [`MlmConfig::needs_words`] is false.
pub fn mask_written_row<O: OutId>(
    cfg: &MlmConfig,
    rng: Rng,
    src: &[u32],
    (ids, labels): (&mut [O], &mut [O]),
    scratch: &mut Vec<u32>,
) {
    if cfg.weighted.is_some() {
        written_row::<O, ByCount>(cfg, rng, src, (ids, labels), scratch);
    } else {
        written_row::<O, UniformIds>(cfg, rng, src, (ids, labels), scratch);
    }
}

/// [`mask_written_row`] with the replacement pool as a type.
// long: the rare modes handed to the row kernel, then the exact budget's three steps
#[inline(always)]
fn written_row<O: OutId, D: Draw>(
    cfg: &MlmConfig,
    mut rng: Rng,
    src: &[u32],
    (ids, labels): (&mut [O], &mut [O]),
    scratch: &mut Vec<u32>,
) {
    let table = &cfg.special;
    let real_tokens = (cfg.rules.budget_base == BudgetBase::RealTokens)
        .then(|| real_tokens(src, None, cfg.pad_token_id));
    if cfg.budget == Budget::Bernoulli || cfg.with_replacement {
        // The rarer modes: the row kernel's own code (the ids are already copied).
        let row = Row {
            src,
            ids,
            labels,
            rng,
            real_tokens,
        };
        let eligible = |_: usize, id: i64| !table[id as usize];
        match cfg.budget {
            Budget::Bernoulli => row.mask_bernoulli::<D>(cfg, eligible),
            Budget::Exact { .. } => row.mask_exact::<D>(cfg, eligible),
        }
        return;
    }
    // Exact budget without replacement, as `Row::mask_exact` and `choose` do it: the eligible
    // positions in order (written without a branch), a partial Fisher–Yates of `k` of them,
    // then the replacements in position order.
    if scratch.len() < src.len() {
        scratch.resize(src.len(), 0);
    }
    let candidates = &mut scratch[..src.len()];
    let mut n = 0;
    for (t, &x) in src.iter().enumerate() {
        candidates[n] = t as u32;
        n += usize::from(!table[x as usize]);
    }
    let k = cfg.budget_of(n, real_tokens.unwrap_or(n));
    for i in 0..k {
        let j = i + rng.below((n - i) as u64) as usize;
        candidates.swap(i, j);
    }
    let chosen = &mut candidates[..k];
    if src.len() <= 256 {
        // Position order through a bit set (the positions are distinct).
        let mut bits = [0u64; 4];
        for &t in chosen.iter() {
            bits[(t >> 6) as usize] |= 1 << (t & 63);
        }
        for (w, mut word) in bits.into_iter().enumerate() {
            while word != 0 {
                let t = w * 64 + word.trailing_zeros() as usize;
                word &= word - 1;
                replace::<O, D>(
                    cfg,
                    &mut rng,
                    i64::from(src[t]),
                    (&mut ids[t], &mut labels[t]),
                );
            }
        }
    } else {
        chosen.sort_unstable();
        for &t in chosen.iter() {
            let t = t as usize;
            replace::<O, D>(
                cfg,
                &mut rng,
                i64::from(src[t]),
                (&mut ids[t], &mut labels[t]),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Side, dense_offsets};

    fn params(specials: &[i64]) -> MlmParams<'_> {
        MlmParams {
            vocab_size: 100,
            mask_token_id: 4,
            pad_token_id: 0,
            special_token_ids: specials,
            mlm_probability: 0.15,
            mask_replace_prob: 0.8,
            random_replace_prob: 0.1,
            budget: Budget::Bernoulli,
            with_replacement: false,
            unit: UnitSpec::Token,
            replace_by: ReplaceBy::Unit,
            word_starts: None,
            rules: MaskingRules::LMOBJECTIVES,
            token_counts: None,
        }
    }

    fn run(cfg: &MlmConfig, ids: &[i64], offsets: &[usize], threads: usize) -> MlmBatch<i64> {
        let r = Ragged::new("input_ids", ids, offsets).unwrap();
        mask_batch::<i64, i64>(
            cfg,
            &r,
            &TokenMasks::default(),
            &PadSpec::default(),
            &Streams::new(1, 0, PURPOSE),
            &RowKeys::Batch { index: 0 },
            threads,
        )
        .unwrap()
    }

    #[test]
    fn config_validation() {
        let sp = [1, 2, 3];
        assert!(MlmConfig::new(&params(&sp)).is_ok());
        let bad = |f: &dyn Fn(&mut MlmParams<'_>)| {
            let mut p = params(&sp);
            f(&mut p);
            MlmConfig::new(&p).unwrap_err()
        };
        assert!(
            matches!(bad(&|p| p.vocab_size = 0), CoreError::InvalidArgument { arg, .. } if arg == "vocab_size")
        );
        assert!(
            matches!(bad(&|p| p.mask_token_id = 100), CoreError::InvalidArgument { arg, .. } if arg == "mask_token_id")
        );
        assert!(
            matches!(bad(&|p| p.mlm_probability = 1.5), CoreError::InvalidArgument { arg, .. } if arg == "mlm_probability")
        );
        assert!(matches!(
            bad(&|p| p.mlm_probability = f64::NAN),
            CoreError::InvalidArgument { .. }
        ));
        assert!(
            matches!(bad(&|p| p.mask_replace_prob = -0.1), CoreError::InvalidArgument { arg, .. } if arg == "mask_replace_prob")
        );
        assert!(
            matches!(bad(&|p| { p.mask_replace_prob = 0.9; p.random_replace_prob = 0.2 }), CoreError::InvalidArgument { arg, .. } if arg == "random_replace_prob")
        );
        assert!(
            matches!(bad(&|p| p.budget = Budget::Exact { max_predictions: Some(0) }), CoreError::InvalidArgument { arg, .. } if arg == "max_predictions")
        );
        assert!(
            matches!(bad(&|p| p.pad_token_id = -1), CoreError::InvalidArgument { arg, .. } if arg == "pad_token_id")
        );
        let all: Vec<i64> = (0..100).collect();
        let mut p = params(&all);
        assert!(MlmConfig::new(&p).is_err());
        p.random_replace_prob = 0.0;
        assert!(MlmConfig::new(&p).is_ok());
    }

    #[test]
    fn labels_consistent_and_specials_untouched() {
        let sp = [1, 2, 3];
        let cfg = MlmConfig::new(&MlmParams {
            mlm_probability: 0.5,
            ..params(&sp)
        })
        .unwrap();
        let ids: Vec<i64> = (0..4000)
            .map(|i| [1, 2, 3, 10, 20, 30, 99][i % 7])
            .collect();
        let out = run(&cfg, &ids, &[0, 1000, 2500, 4000], 1);
        assert_eq!(out.width, 1500);
        let offsets = [0usize, 1000, 2500, 4000];
        let mut selected = 0;
        for r in 0..3 {
            let src = &ids[offsets[r]..offsets[r + 1]];
            for t in 0..out.width {
                let k = r * out.width + t;
                if t >= src.len() {
                    assert_eq!(
                        (out.input_ids[k], out.attention_mask[k], out.labels[k]),
                        (0, 0, IGNORE_INDEX)
                    );
                    continue;
                }
                assert_eq!(out.attention_mask[k], 1);
                let orig = src[t];
                if out.labels[k] == IGNORE_INDEX {
                    assert_eq!(out.input_ids[k], orig);
                } else {
                    selected += 1;
                    assert_eq!(out.labels[k], orig);
                    assert!(!sp.contains(&orig));
                    let now = out.input_ids[k];
                    assert!((0..100).contains(&now));
                    assert!(now == 4 || now == orig || !cfg.is_special(now));
                }
                if sp.contains(&orig) {
                    assert_eq!(out.input_ids[k], orig);
                }
            }
        }
        assert!(selected > 0);
    }

    #[test]
    fn thread_count_does_not_change_output() {
        let sp = [1, 2, 3];
        let cfg = MlmConfig::new(&params(&sp)).unwrap();
        let (rows, cols) = (256, 512);
        let ids: Vec<i64> = (0..rows * cols)
            .map(|i| 5 + (i as i64 * 7919) % 90)
            .collect();
        let offs = dense_offsets(rows, cols);
        // Big enough that 4 threads really are used.
        assert_eq!(threads_for(4, ids.len(), GRAIN_TOKENS), 4);
        let one = run(&cfg, &ids, &offs, 1);
        assert_eq!(one, run(&cfg, &ids, &offs, 2));
        assert_eq!(one, run(&cfg, &ids, &offs, 4));
    }

    #[test]
    fn caller_buffers_get_the_same_batch() {
        let cfg = MlmConfig::new(&params(&[1, 2, 3])).unwrap();
        let ids: Vec<i64> = (0..300).map(|i| 5 + (i * 31) % 90).collect();
        let offsets = [0, 100, 170, 300];
        let r = Ragged::new("input_ids", &ids, &offsets).unwrap();
        let (masks, pad) = (TokenMasks::default(), PadSpec::default());
        let streams = Streams::new(3, 1, PURPOSE);
        let keys = RowKeys::Batch { index: 2 };
        let job = MlmJob::new(&cfg, &r, &masks, &pad, &streams, &keys).unwrap();
        assert_eq!((job.rows(), job.width()), (3, 130));
        let own = job.run::<i32>(1).unwrap();
        // Dirty caller memory is fully overwritten.
        let mut bufs = [vec![7i32; 390], vec![7i32; 390], vec![7i32; 390]];
        let [a, b, c] = &mut bufs;
        job.run_into(2, [a.as_mut_slice(), b, c]).unwrap();
        assert_eq!(bufs[0], own.input_ids);
        assert_eq!(bufs[1], own.attention_mask);
        assert_eq!(bufs[2], own.labels);
        let mut short = [vec![0i32; 389], vec![0i32; 389], vec![0i32; 389]];
        let [a, b, c] = &mut short;
        assert!(job.run_into(1, [a.as_mut_slice(), b, c]).is_err());
    }

    #[test]
    fn with_replacement_collapses_duplicates() {
        let sp = [1, 2, 3];
        let mut p = params(&sp);
        p.budget = Budget::Exact {
            max_predictions: None,
        };
        p.with_replacement = true;
        let cfg = MlmConfig::new(&p).unwrap();
        let (rows, cols) = (400, 128);
        let ids: Vec<i64> = (0..rows * cols).map(|i| 10 + (i as i64 % 50)).collect();
        let out = run(&cfg, &ids, &dense_offsets(rows, cols), 1);
        let per_row: Vec<usize> = (0..rows)
            .map(|r| {
                out.labels[r * cols..(r + 1) * cols]
                    .iter()
                    .filter(|&&l| l != IGNORE_INDEX)
                    .count()
            })
            .collect();
        // k = round(0.15 * 128) = 19 draws among 128: E[distinct] = 128 (1 - (127/128)^19).
        assert!(per_row.iter().all(|&c| (1..=19).contains(&c)));
        let mean = per_row.iter().sum::<usize>() as f64 / rows as f64;
        let expected = 128.0 * (1.0 - (127.0f64 / 128.0).powi(19));
        assert!((mean - expected).abs() < 0.2, "{mean} vs {expected}");
        p.budget = Budget::Bernoulli;
        assert!(MlmConfig::new(&p).is_err());
    }

    #[test]
    fn exact_budget_counts() {
        let sp = [1, 2, 3];
        let mut p = params(&sp);
        p.budget = Budget::Exact {
            max_predictions: None,
        };
        let cfg = MlmConfig::new(&p).unwrap();
        assert_eq!(cfg.exact_count(512), 77); // round(76.8)
        assert_eq!(cfg.exact_count(10), 2); // round(1.5) = 2 (ties to even)
        assert_eq!(cfg.exact_count(30), 4); // round(4.5) = 4 (ties to even)
        assert_eq!(cfg.exact_count(3), 1); // at least one
        assert_eq!(cfg.exact_count(0), 0);
        let ids: Vec<i64> = (0..5 * 200).map(|i| 10 + (i as i64 % 50)).collect();
        let out = run(&cfg, &ids, &dense_offsets(5, 200), 2);
        for r in 0..5 {
            let n = out.labels[r * 200..(r + 1) * 200]
                .iter()
                .filter(|&&l| l != IGNORE_INDEX)
                .count();
            assert_eq!(n, 30);
        }
        p.budget = Budget::Exact {
            max_predictions: Some(20),
        };
        assert_eq!(MlmConfig::new(&p).unwrap().exact_count(512), 20);
    }

    #[test]
    fn attention_and_special_masks_block_selection() {
        let cfg = MlmConfig::new(&MlmParams {
            mlm_probability: 1.0,
            mask_replace_prob: 1.0,
            random_replace_prob: 0.0,
            ..params(&[])
        })
        .unwrap();
        let ids = [10i64, 11, 12, 13];
        let r = Ragged::new("input_ids", &ids, &[0, 4]).unwrap();
        let attn = [1u8, 1, 1, 0];
        let spec = [1u8, 0, 0, 0];
        let masks = TokenMasks {
            attention_mask: Some(Ragged::new("attention_mask", &attn, &[0, 4]).unwrap()),
            special_tokens_mask: Some(Ragged::new("special_tokens_mask", &spec, &[0, 4]).unwrap()),
            ..TokenMasks::default()
        };
        let out = mask_batch::<i64, i32>(
            &cfg,
            &r,
            &masks,
            &PadSpec {
                side: Side::Left,
                max_length: Some(6),
                pad_to_max_length: true,
                ..PadSpec::default()
            },
            &Streams::new(0, 0, PURPOSE),
            &RowKeys::Batch { index: 0 },
            1,
        )
        .unwrap();
        assert_eq!(out.input_ids, [0, 0, 10, 4, 4, 13]);
        assert_eq!(out.attention_mask, [0, 0, 1, 1, 1, 0]);
        assert_eq!(out.labels, [-100, -100, -100, 11, 12, -100]);
    }

    #[test]
    fn bad_batches_are_errors_not_panics() {
        let cfg = MlmConfig::new(&params(&[1])).unwrap();
        let ids = [10i64, 200];
        let r = Ragged::new("input_ids", &ids, &[0, 2]).unwrap();
        let go = |r: &Ragged<'_, i64>, m: &TokenMasks<'_>, keys: &RowKeys<'_>| {
            mask_batch::<i64, i64>(
                &cfg,
                r,
                m,
                &PadSpec::default(),
                &Streams::new(0, 0, PURPOSE),
                keys,
                1,
            )
        };
        let b = RowKeys::Batch { index: 0 };
        assert!(matches!(
            go(&r, &TokenMasks::default(), &b),
            Err(CoreError::TokenOutOfRange { value: 200, .. })
        ));
        let ok = [10i64, 11];
        let r = Ragged::new("input_ids", &ok, &[0, 2]).unwrap();
        let short = [1u8];
        let m = TokenMasks {
            attention_mask: Some(Ragged::new("attention_mask", &short, &[0, 1]).unwrap()),
            ..TokenMasks::default()
        };
        assert!(matches!(
            go(&r, &m, &b),
            Err(CoreError::ShapeMismatch { .. })
        ));
        assert!(matches!(
            go(&r, &TokenMasks::default(), &RowKeys::Samples(&[1, 2])),
            Err(CoreError::ShapeMismatch { .. })
        ));
        let empty = Ragged::new("input_ids", &ok[..0], &[0, 0]).unwrap();
        assert!(go(&empty, &TokenMasks::default(), &b).is_err());
    }

    fn masked_per_row(out: &MlmBatch<i64>, rows: usize) -> Vec<usize> {
        (0..rows)
            .map(|r| {
                out.labels[r * out.width..(r + 1) * out.width]
                    .iter()
                    .filter(|&&l| l != IGNORE_INDEX)
                    .count()
            })
            .collect()
    }

    #[test]
    fn budget_rules_count_and_round_as_the_recipes_do() {
        let sp = [1, 2, 3];
        let exact = Budget::Exact {
            max_predictions: None,
        };
        let google = MlmConfig::new(&MlmParams {
            budget: exact,
            rules: MaskingRules::GOOGLE,
            ..params(&sp)
        })
        .unwrap();
        // 20 tokens, 18 of them eligible: Google counts all 20 (round(3.0) = 3), ours 18
        // (round(2.7) = 3), and at 30 + 2 tokens: round(4.8) = 5 against round(4.5) = 4.
        assert_eq!(google.budget_of(30, 32), 5);
        let ids: Vec<i64> = [2].into_iter().chain(10..40).chain([3]).collect();
        let out = run(&google, &ids, &[0, 32], 1);
        assert_eq!(masked_per_row(&out, 1), [5]);
        let ours = MlmConfig::new(&MlmParams {
            budget: exact,
            ..params(&sp)
        })
        .unwrap();
        assert_eq!(masked_per_row(&run(&ours, &ids, &[0, 32], 1), 1), [4]);
        let spanbert = MlmConfig::new(&MlmParams {
            budget: exact,
            rules: MaskingRules {
                pool: ReplacementPool::NonSpecial,
                ..MaskingRules::SPANBERT
            },
            ..params(&sp)
        })
        .unwrap();
        assert_eq!(spanbert.exact_count(510), 77); // ceil(76.5)
        assert_eq!(ours.exact_count(510), 76); // round half to even
    }

    #[test]
    fn replacement_pools() {
        let sp = [1, 2, 3];
        let all_random = |rules, counts| {
            let cfg = MlmConfig::new(&MlmParams {
                mlm_probability: 1.0,
                mask_replace_prob: 0.0,
                random_replace_prob: 1.0,
                rules,
                token_counts: counts,
                ..params(&sp)
            })
            .unwrap();
            let ids: Vec<i64> = (0..20_000).map(|i| 10 + i % 50).collect();
            run(&cfg, &ids, &[0, 20_000], 1).input_ids
        };
        let ours = all_random(MaskingRules::LMOBJECTIVES, None);
        assert!(ours.iter().all(|&x| ![0, 1, 2, 3, 4].contains(&x)));
        let vocab = all_random(MaskingRules::GOOGLE, None);
        assert!(
            vocab.contains(&4) && vocab.contains(&0),
            "specials are drawn too"
        );
        let mut counts = vec![0i64; 100];
        counts[7] = 1;
        counts[9] = 3;
        let freq = all_random(MaskingRules::SPANBERT, Some(&counts));
        assert!(freq.iter().all(|&x| x == 7 || x == 9));
        let nines = freq.iter().filter(|&&x| x == 9).count() as f64 / freq.len() as f64;
        assert!((nines - 0.75).abs() < 0.02, "{nines}");
        // Checked: a frequency pool needs counts, one per id, non-negative, not all zero.
        let bad = |counts: Option<&[i64]>| {
            MlmConfig::new(&MlmParams {
                rules: MaskingRules::SPANBERT,
                token_counts: counts,
                ..params(&sp)
            })
            .unwrap_err()
        };
        for err in [
            bad(None),
            bad(Some(&[1; 10])),
            bad(Some(&[-1; 100])),
            bad(Some(&[0; 100])),
        ] {
            assert!(
                matches!(&err, CoreError::InvalidArgument { arg, .. } | CoreError::ShapeMismatch { arg, .. } if arg == "token_counts"),
                "{err}"
            );
        }
    }

    #[test]
    fn words_across_specials_never_label_the_special_tokens() {
        // ids 10..49 start words, 50..99 continue them; rows "[CLS] A [SEP] B [SEP]" where B
        // starts with a continuation piece.
        let starts: Vec<bool> = (0..100).map(|i| i < 50).collect();
        let sp = [1, 2, 3];
        let cfg = MlmConfig::new(&MlmParams {
            mlm_probability: 0.5,
            budget: Budget::Exact {
                max_predictions: None,
            },
            unit: UnitSpec::Ngram {
                max_n: 3,
                favor_shorter: true,
            },
            replace_by: ReplaceBy::Token,
            word_starts: Some(&starts),
            rules: MaskingRules::GOOGLE,
            ..params(&sp)
        })
        .unwrap();
        let row = [2i64, 10, 11, 12, 3, 60, 13, 14, 3];
        let ids: Vec<i64> = row.iter().copied().cycle().take(row.len() * 400).collect();
        let offsets: Vec<usize> = (0..=400).map(|r| r * row.len()).collect();
        let out = run(&cfg, &ids, &offsets, 1);
        let mut across = 0;
        for r in 0..400 {
            let lab = &out.labels[r * row.len()..(r + 1) * row.len()];
            assert!([0, 4, 8].iter().all(|&t| lab[t] == IGNORE_INDEX));
            // "12 [SEP] 60" is one word: both or neither.
            assert_eq!(lab[3] == IGNORE_INDEX, lab[5] == IGNORE_INDEX);
            across += usize::from(lab[3] != IGNORE_INDEX && lab[6] != IGNORE_INDEX);
            // round(0.5 * 9) = 4 of the 7 eligible tokens at most, 4 when words allow.
            assert!(lab.iter().filter(|&&l| l != IGNORE_INDEX).count() <= 4);
        }
        assert!(across > 0, "n-grams run across [SEP]");
        assert!(
            MlmConfig::new(&MlmParams {
                replace_by: ReplaceBy::Run,
                ..params(&sp)
            })
            .is_err()
        );
    }
}
