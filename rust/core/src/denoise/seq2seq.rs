//! T5 / UL2 batches: rows → span-corrupted (or prefix-split) inputs and targets, padded, with
//! the decoder inputs shifted right.
//!
//! A row of `L` raw tokens becomes, for a span denoiser with noise runs `N₀ … N_{m−1}`
//! separating non-noise runs `C₀ … C_m` (`C₀` empty when the mask starts with noise):
//!
//! ```text
//! inputs  = [mode]  C₀ S₀ C₁ S₁ … S_{m−1} C_m  EOS
//! targets =         S₀ N₀ S₁ N₁ … S_{m−1} N_{m−1} [S_m]  EOS
//! ```
//!
//! where `S_k` is the k-th sentinel and the trailing `S_m` appears when the row ends with
//! non-noise (T5 replaces every non-noise run of the targets by a sentinel). Without
//! `random_roll` masks start with non-noise and end with noise, and this is exactly T5's
//! `noise_span_to_unique_sentinel` / `nonnoise_span_to_unique_sentinel`. With `random_roll`
//! a mask may start with noise; T5 (and Hugging Face) then number the target sentinels after
//! the non-noise runs, so target sentinel `k` no longer precedes the span input sentinel `k`
//! stands for. Here `S_k` always precedes `N_k`, so filling every input sentinel with the
//! target tokens after the same sentinel gives back the row.
//!
//! The prefix LM splits the row: inputs = `[mode] prefix EOS`, targets = `rest EOS`.
//!
//! Stream use, per row (its keyed stream, purpose `t5-span-corruption` or `ul2`): with more
//! than one denoiser and per-row mixing, one 64-bit draw picks the denoiser ([`Mixture`]);
//! then a span denoiser draws its mask ([`t5::span_mask`]: the noise composition, the
//! non-noise composition, the roll offset) and the prefix LM one `below` for the prefix
//! length ([`t5::prefix_length`]). With per-batch mixing the denoiser is drawn once from the
//! batch stream `(seed, epoch, purpose, tag, batch index)` and rows draw only their masks.

use super::t5::{self, Scratch, SpanMask};
use super::ul2::{Denoiser, DenoiserKind, DenoiserParams, Mixture};
use super::{Seq2SeqBatch, Widths, append_decoder, append_encoder, fill_decoder, fill_encoder};
use crate::batch::{OutId, TokenId};
use crate::ids::{check_id, check_row_ids, check_vocab};
use crate::parallel::for_each_mut;
use crate::rng::{Rng, RowKeys, Streams};
use crate::{CoreError, Result};

/// Tokens per thread below which more threads do not pay for the hand-off.
const GRAIN_TOKENS: usize = 16 * 1024;

/// Tag of the per-batch denoiser stream (`mode = per batch`).
const TAG_BATCH_CHOICE: u64 = 0xD3A0_0000_0000_0003;

/// Everything [`Seq2SeqConfig::new`] needs.
#[derive(Debug, Clone)]
pub struct Seq2SeqParams<'a> {
    pub vocab_size: i64,
    pub eos_token_id: i64,
    pub pad_token_id: i64,
    pub decoder_start_token_id: i64,
    /// Sentinel `k` of a row (T5: `vocab_size − 1 − k`).
    pub sentinel_ids: &'a [i64],
    pub denoisers: &'a [DenoiserParams],
    pub weights: &'a [f64],
    /// Inputs length (mode token and EOS included) the raw lengths are computed for.
    pub input_length: usize,
    pub random_roll: bool,
    /// One denoiser per batch (drawn from the batch's stream) instead of one per row.
    pub per_batch: bool,
    /// Stream purpose tag (T5 and UL2 collators use different ones).
    pub purpose: u64,
}

/// Validated T5/UL2 configuration, built once.
#[derive(Debug, Clone)]
pub struct Seq2SeqConfig {
    vocab_size: u32,
    eos: u32,
    pad: u32,
    decoder_start: u32,
    sentinels: Vec<u32>,
    denoisers: Vec<Denoiser>,
    mixture: Mixture,
    random_roll: bool,
    per_batch: bool,
    purpose: u64,
}

/// The sentinel ids, each in the vocabulary, distinct, and neither EOS nor pad.
fn check_sentinels(ids: &[i64], vocab_size: i64, eos: u32, pad: u32) -> Result<Vec<u32>> {
    let mut sentinels = Vec::with_capacity(ids.len());
    let mut seen = std::collections::HashSet::new();
    for &id in ids {
        let s = check_id("sentinel_ids", id, vocab_size)?;
        if s == eos || s == pad {
            return Err(CoreError::invalid(
                "sentinel_ids",
                format!(
                    "{s} is also the {} id",
                    if s == eos { "EOS" } else { "pad" }
                ),
            ));
        }
        if !seen.insert(s) {
            return Err(CoreError::invalid(
                "sentinel_ids",
                format!("{s} appears more than once"),
            ));
        }
        sentinels.push(s);
    }
    Ok(sentinels)
}

/// Checks that `available` sentinels cover the most noise spans any denoiser can make.
fn check_enough_sentinels(
    denoisers: &[Denoiser],
    available: usize,
    p: &Seq2SeqParams<'_>,
) -> Result<()> {
    let Some(d) = denoisers.iter().find(|d| d.max_sentinels > available) else {
        return Ok(());
    };
    let DenoiserKind::Spans {
        noise_density,
        mean_span,
    } = d.kind
    else {
        unreachable!("only span denoisers need sentinels")
    };
    Err(CoreError::invalid(
        "sentinel_ids",
        format!(
            "rows of {} raw tokens (input_length={}) at noise_density={noise_density}, \
             mean_noise_span_length={mean_span} have up to {} noise spans{}, but only \
             {available} sentinel ids are available; T5 would silently write ordinary \
             vocabulary ids — provide more sentinels (num_sentinels or sentinel_ids) \
             or use a shorter input_length",
            d.raw_length,
            p.input_length,
            d.max_sentinels,
            if p.random_roll {
                " (random_roll can split one)"
            } else {
                ""
            },
        ),
    ))
}

impl Seq2SeqConfig {
    pub fn new(p: &Seq2SeqParams<'_>) -> Result<Self> {
        check_vocab(p.vocab_size)?;
        let v = p.vocab_size;
        let eos = check_id("eos_token_id", p.eos_token_id, v)?;
        let pad = check_id("pad_token_id", p.pad_token_id, v)?;
        let decoder_start = check_id("decoder_start_token_id", p.decoder_start_token_id, v)?;
        let sentinels = check_sentinels(p.sentinel_ids, v, eos, pad)?;
        if p.denoisers.is_empty() {
            return Err(CoreError::invalid(
                "denoisers",
                "needs at least one denoiser",
            ));
        }
        let denoisers = p
            .denoisers
            .iter()
            .map(|d| Denoiser::new(d, p.input_length, p.random_roll, v))
            .collect::<Result<Vec<_>>>()?;
        let mixture = Mixture::new(p.weights, denoisers.len())?;
        check_enough_sentinels(&denoisers, sentinels.len(), p)?;
        Ok(Self {
            vocab_size: v as u32,
            eos,
            pad,
            decoder_start,
            sentinels,
            denoisers,
            mixture,
            random_roll: p.random_roll,
            per_batch: p.per_batch,
            purpose: p.purpose,
        })
    }

    pub fn vocab_size(&self) -> u32 {
        self.vocab_size
    }

    pub fn denoisers(&self) -> &[Denoiser] {
        &self.denoisers
    }

    pub fn sentinels(&self) -> &[u32] {
        &self.sentinels
    }

    /// Longest raw row any denoiser uses.
    pub fn max_raw_length(&self) -> usize {
        self.denoisers
            .iter()
            .map(|d| d.raw_length)
            .max()
            .unwrap_or(0)
    }

    /// Longest inputs (mode token and EOS included) of rows of at most the raw lengths.
    pub fn input_length(&self) -> usize {
        self.denoisers
            .iter()
            .map(|d| d.input_length)
            .max()
            .unwrap_or(0)
    }

    /// Longest targets (EOS included) of rows of at most the raw lengths.
    pub fn target_length(&self) -> usize {
        self.denoisers
            .iter()
            .map(|d| d.target_length)
            .max()
            .unwrap_or(0)
    }

    /// The denoiser of batch `batch_index` in per-batch mode (one draw from the batch
    /// stream `(seed, epoch, purpose, tag, batch_index)`).
    pub fn batch_denoiser(&self, streams: &Streams, batch_index: u64) -> usize {
        let mut rng = Rng::from_key(&[
            streams.seed,
            streams.epoch,
            streams.purpose,
            TAG_BATCH_CHOICE,
            batch_index,
        ]);
        self.mixture.choose(&mut rng)
    }
}

/// How a row was noised (enough to write its outputs).
#[derive(Debug, Clone, Default)]
struct Plan {
    denoiser: usize,
    /// Raw tokens used (the row cut to the denoiser's raw length).
    len: usize,
    /// Span denoisers: the noise runs. Prefix LM: empty.
    mask: SpanMask,
    /// Prefix LM: the prefix length.
    prefix: usize,
    input_len: usize,
    target_len: usize,
}

/// A validated T5/UL2 batch: rows are checked at construction; [`Seq2SeqJob::run`] draws the
/// masks (in parallel), checks the sentinel supply and writes the padded outputs.
#[derive(Debug)]
pub struct Seq2SeqJob<'a, T> {
    cfg: &'a Seq2SeqConfig,
    rows: &'a [&'a [T]],
    widths: Widths,
    streams: Streams,
    keys: &'a RowKeys<'a>,
    batch_index: u64,
}

impl<'a, T: TokenId> Seq2SeqJob<'a, T> {
    /// `rows`: each row's raw tokens (no EOS). Rows longer than the longest raw length are an
    /// error unless `truncation`; every row is cut to its denoiser's raw length.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: &'a Seq2SeqConfig,
        rows: &'a [&'a [T]],
        widths: Widths,
        truncation: bool,
        seed: u64,
        epoch: u64,
        keys: &'a RowKeys<'a>,
        batch_index: u64,
    ) -> Result<Self> {
        widths.validate()?;
        if rows.is_empty() {
            return Err(CoreError::invalid("examples", "the batch is empty"));
        }
        keys.check_rows(rows.len())?;
        let max_raw = cfg.max_raw_length();
        for (r, row) in rows.iter().enumerate() {
            if row.is_empty() {
                return Err(CoreError::invalid(
                    "input_ids",
                    format!("row {r} is empty (zero-length rows cannot be noised)"),
                ));
            }
            if row.len() > max_raw && !truncation {
                return Err(CoreError::invalid(
                    "input_ids",
                    format!(
                        "row {r} has {} tokens, more than the {max_raw} raw tokens the inputs \
                         of input_length={} hold; pass truncation=True to cut rows, or cut \
                         the corpus into chunks of {max_raw} tokens",
                        row.len(),
                        cfg.input_length(),
                    ),
                ));
            }
            if !ids_in_range(row, cfg.vocab_size) {
                check_row_ids("input_ids", r, row, cfg.vocab_size)?;
            }
        }
        Ok(Self {
            cfg,
            rows,
            widths,
            streams: Streams::new(seed, epoch, cfg.purpose),
            keys,
            batch_index,
        })
    }

    /// Plans row `r` into `plan` (its mask's buffer is reused).
    fn plan_row(
        &self,
        r: usize,
        batch_choice: Option<usize>,
        scratch: &mut Scratch,
        plan: &mut Plan,
    ) {
        let cfg = self.cfg;
        let mut rng = self.streams.row(self.keys, r);
        let denoiser = batch_choice.unwrap_or_else(|| cfg.mixture.choose(&mut rng));
        let d = &cfg.denoisers[denoiser];
        let len = self.rows[r].len().min(d.raw_length);
        let mode = usize::from(d.mode_token.is_some());
        plan.denoiser = denoiser;
        plan.len = len;
        plan.prefix = 0;
        match d.kind {
            DenoiserKind::Spans {
                noise_density,
                mean_span,
            } => {
                t5::span_mask(
                    &mut rng,
                    len,
                    noise_density,
                    mean_span,
                    cfg.random_roll,
                    scratch,
                    &mut plan.mask,
                );
                let m = plan.mask.runs.len();
                let trailing = usize::from(plan.mask.ends_clean);
                plan.input_len = mode + len - plan.mask.noise + m + 1;
                plan.target_len = plan.mask.noise + m + trailing + 1;
            }
            DenoiserKind::Prefix { noise_density } => {
                plan.mask = SpanMask::default();
                plan.prefix = t5::prefix_length(&mut rng, len, noise_density);
                plan.input_len = mode + plan.prefix + 1;
                plan.target_len = len - plan.prefix + 1;
            }
        }
    }

    /// Draws every row's noise and writes the batch.
    pub fn run<O: OutId>(&self, threads: usize) -> Result<Seq2SeqBatch<O>> {
        let cfg = self.cfg;
        let total: usize = self.rows.iter().map(|r| r.len()).sum();
        let threads = crate::parallel::threads_for(threads, total, GRAIN_TOKENS);
        let plans = self.plans(threads)?;
        let input_width = self.widths.input_width(plans.iter().map(|p| p.input_len))?;
        let target_width = self
            .widths
            .target_width(plans.iter().map(|p| p.target_len))?;
        let rows = self.rows.len();
        let (pad, start) = (i64::from(cfg.pad), i64::from(cfg.decoder_start));
        let inputs = |r: usize| (&plans[r], self.rows[r]);
        let ([input_ids, attention_mask], [labels, decoder_input_ids, decoder_attention_mask]) =
            if threads <= 1 {
                // One thread: rows appended to the batch buffers, each value written once.
                (
                    append_encoder(rows, input_width, pad, |r, buf| {
                        let (plan, row) = inputs(r);
                        self.write_inputs(plan, row, buf)
                    }),
                    append_decoder(rows, target_width, pad, start, |r, buf| {
                        let (plan, row) = inputs(r);
                        self.write_targets(plan, row, buf)
                    }),
                )
            } else {
                (
                    fill_encoder(threads, rows, input_width, pad, |r, out| {
                        let (plan, row) = inputs(r);
                        self.write_inputs(plan, row, &mut Writer { out, at: 0 })
                    })?,
                    fill_decoder(threads, rows, target_width, pad, start, |r, out| {
                        let (plan, row) = inputs(r);
                        self.write_targets(plan, row, &mut Writer { out, at: 0 })
                    })?,
                )
            };
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

    /// Every row's plan; an error names the first row that needs more sentinels than there
    /// are (only reachable when rows exceed what the configuration was checked for).
    fn plans(&self, threads: usize) -> Result<Vec<Plan>> {
        let cfg = self.cfg;
        let batch_choice = cfg
            .per_batch
            .then(|| cfg.batch_denoiser(&self.streams, self.batch_index));
        let mut plans: Vec<Plan> = vec![Plan::default(); self.rows.len()];
        // One scratch per chunk of rows would need per-thread state; masks are small, so each
        // row takes a fresh scratch only on the parallel path.
        if threads <= 1 {
            let mut scratch = Scratch::default();
            for (r, p) in plans.iter_mut().enumerate() {
                self.plan_row(r, batch_choice, &mut scratch, p);
            }
        } else {
            for_each_mut(threads, &mut plans, |r, p| {
                self.plan_row(r, batch_choice, &mut Scratch::default(), p);
            })?;
        }
        for (r, p) in plans.iter().enumerate() {
            let need = p.mask.runs.len() + usize::from(p.mask.ends_clean);
            if matches!(cfg.denoisers[p.denoiser].kind, DenoiserKind::Spans { .. })
                && need > cfg.sentinels.len()
            {
                return Err(CoreError::invalid(
                    "sentinel_ids",
                    format!(
                        "row {r} needs {need} sentinels but only {} are available",
                        cfg.sentinels.len()
                    ),
                ));
            }
        }
        Ok(plans)
    }

    /// Writes the inputs of one row (`plan.input_len` tokens) to `w`; returns the length.
    fn write_inputs<O: OutId>(&self, plan: &Plan, row: &[T], w: &mut impl Sink<O>) -> usize {
        let cfg = self.cfg;
        let d = &cfg.denoisers[plan.denoiser];
        let row = &row[..plan.len];
        if let Some(m) = d.mode_token {
            w.push(m);
        }
        match d.kind {
            DenoiserKind::Spans { .. } => {
                let mut pos = 0usize;
                for (k, &(s, l)) in plan.mask.runs.iter().enumerate() {
                    w.copy(&row[pos..s as usize]);
                    w.push(cfg.sentinels[k]);
                    pos = (s + l) as usize;
                }
                w.copy(&row[pos..]);
            }
            DenoiserKind::Prefix { .. } => w.copy(&row[..plan.prefix]),
        }
        w.push(cfg.eos);
        plan.input_len
    }

    /// Writes the targets of one row (`plan.target_len` tokens) to `w`; returns the length.
    fn write_targets<O: OutId>(&self, plan: &Plan, row: &[T], w: &mut impl Sink<O>) -> usize {
        let cfg = self.cfg;
        let d = &cfg.denoisers[plan.denoiser];
        let row = &row[..plan.len];
        match d.kind {
            DenoiserKind::Spans { .. } => {
                for (k, &(s, l)) in plan.mask.runs.iter().enumerate() {
                    w.push(cfg.sentinels[k]);
                    w.copy(&row[s as usize..(s + l) as usize]);
                }
                if plan.mask.ends_clean {
                    w.push(cfg.sentinels[plan.mask.runs.len()]);
                }
            }
            DenoiserKind::Prefix { .. } => w.copy(&row[plan.prefix..]),
        }
        w.push(cfg.eos);
        plan.target_len
    }
}

/// Where a row's outputs go, token by token.
trait Sink<O> {
    fn push(&mut self, id: u32);
    /// Copies (and converts) a run of tokens.
    fn copy<T: TokenId>(&mut self, src: &[T]);
}

/// Writes from the start of an (already zeroed) output row: the parallel path.
struct Writer<'a, O> {
    out: &'a mut [O],
    at: usize,
}

impl<O: OutId> Sink<O> for Writer<'_, O> {
    #[inline]
    fn push(&mut self, id: u32) {
        self.out[self.at] = O::from_i64(i64::from(id));
        self.at += 1;
    }

    /// One bounds check, a vectorisable loop.
    #[inline]
    fn copy<T: TokenId>(&mut self, src: &[T]) {
        let dst = &mut self.out[self.at..self.at + src.len()];
        for (d, &x) in dst.iter_mut().zip(src) {
            *d = O::from_i64(x.to_i64());
        }
        self.at += src.len();
    }
}

/// Runs of at most this many tokens are appended one by one (see [`Sink::copy`] for `Vec`).
const SHORT_RUN: usize = 8;

/// Appends to the batch buffer (one thread; its capacity is the whole batch).
impl<O: OutId> Sink<O> for Vec<O> {
    #[inline]
    fn push(&mut self, id: u32) {
        Vec::push(self, O::from_i64(i64::from(id)));
    }

    /// Short runs (most noise spans are a few tokens) one by one: a `memcpy` call, which
    /// `extend` becomes, costs more than they do.
    #[inline]
    fn copy<T: TokenId>(&mut self, src: &[T]) {
        if src.len() <= SHORT_RUN {
            for &x in src {
                Vec::push(self, O::from_i64(x.to_i64()));
            }
        } else {
            self.extend(src.iter().map(|&x| O::from_i64(x.to_i64())));
        }
    }
}

/// Whether every id of `row` lies in `[0, vocab_size)`: one branch-free pass over the sign
/// bits of `x` and of `x − vocab_size` (64-bit ORs, ANDs and subtractions vectorise where a
/// 64-bit min/max fold does not); [`check_row_ids`] names an offender only when it fails.
fn ids_in_range<T: TokenId>(row: &[T], vocab_size: u32) -> bool {
    let v = i64::from(vocab_size);
    let (mut any_negative, mut all_below) = (0i64, -1i64);
    for &x in row {
        let x = x.to_i64();
        any_negative |= x;
        all_below &= x.wrapping_sub(v);
    }
    any_negative >= 0 && all_below < 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::IGNORE_INDEX;

    const V: i64 = 1000;

    fn t5_params<'a>(sentinels: &'a [i64], denoisers: &'a [DenoiserParams]) -> Seq2SeqParams<'a> {
        Seq2SeqParams {
            vocab_size: V,
            eos_token_id: 1,
            pad_token_id: 0,
            decoder_start_token_id: 0,
            sentinel_ids: sentinels,
            denoisers,
            weights: &[1.0],
            input_length: 64,
            random_roll: false,
            per_batch: false,
            purpose: crate::rng::purpose("t5-test"),
        }
    }

    fn span(d: f64, mu: f64) -> DenoiserParams {
        DenoiserParams {
            kind: DenoiserKind::Spans {
                noise_density: d,
                mean_span: mu,
            },
            mode_token: None,
        }
    }

    /// Fills each input sentinel with the target tokens that follow the same sentinel.
    fn reconstruct(inputs: &[i64], targets: &[i64], sentinels: &[i64]) -> Vec<i64> {
        let is_s = |x: i64| sentinels.contains(&x);
        let mut out = Vec::new();
        for &x in inputs {
            if is_s(x) {
                let at = targets.iter().position(|&t| t == x).unwrap();
                out.extend(
                    targets[at + 1..]
                        .iter()
                        .take_while(|&&t| !is_s(t) && t != 1),
                );
            } else {
                out.push(x);
            }
        }
        out
    }

    fn run(
        cfg: &Seq2SeqConfig,
        rows: &[Vec<i64>],
        widths: Widths,
        threads: usize,
    ) -> Result<Seq2SeqBatch<i64>> {
        let slices: Vec<&[i64]> = rows.iter().map(|r| r.as_slice()).collect();
        let keys = RowKeys::Batch { index: 3 };
        Seq2SeqJob::new(cfg, &slices, widths, false, 9, 0, &keys, 3)?.run(threads)
    }

    fn rows(n: usize, lo: usize, hi: usize) -> Vec<Vec<i64>> {
        (0..n)
            .map(|r| {
                let len = lo + (r * 7919) % (hi - lo + 1);
                (0..len)
                    .map(|i| 10 + ((r * 131 + i * 17) % 700) as i64)
                    .collect()
            })
            .collect()
    }

    fn valid_row(b: &Seq2SeqBatch<i64>, r: usize) -> (Vec<i64>, Vec<i64>) {
        let inp = &b.input_ids[r * b.input_width..(r + 1) * b.input_width];
        let att = &b.attention_mask[r * b.input_width..(r + 1) * b.input_width];
        let lab = &b.labels[r * b.target_width..(r + 1) * b.target_width];
        let n = att.iter().filter(|&&a| a == 1).count();
        let t = lab.iter().filter(|&&l| l != IGNORE_INDEX).count();
        (inp[..n].to_vec(), lab[..t].to_vec())
    }

    #[test]
    fn inputs_and_targets_reconstruct_every_row() {
        let sentinels: Vec<i64> = (0..100).map(|k| V - 1 - k).collect();
        for roll in [false, true] {
            let ds = [span(0.15, 3.0)];
            let cfg = Seq2SeqConfig::new(&Seq2SeqParams {
                random_roll: roll,
                ..t5_params(&sentinels, &ds)
            })
            .unwrap();
            let raw = cfg.max_raw_length();
            let data = rows(40, 1, raw);
            let b = run(&cfg, &data, Widths::default(), 1).unwrap();
            for (r, row) in data.iter().enumerate() {
                let (inp, tg) = valid_row(&b, r);
                assert_eq!(*inp.last().unwrap(), 1);
                assert_eq!(*tg.last().unwrap(), 1);
                assert_eq!(reconstruct(&inp[..inp.len() - 1], &tg, &sentinels), *row);
                assert!(inp.len() <= cfg.input_length() && tg.len() <= cfg.target_length());
            }
        }
    }

    #[test]
    fn fixed_lengths_at_the_raw_length() {
        let sentinels: Vec<i64> = (0..100).map(|k| V - 1 - k).collect();
        let ds = [span(0.15, 3.0)];
        let cfg = Seq2SeqConfig::new(&Seq2SeqParams {
            input_length: 512,
            ..t5_params(&sentinels, &ds)
        })
        .unwrap();
        assert_eq!((cfg.max_raw_length(), cfg.target_length()), (568, 114));
        let data = rows(8, 568, 568);
        let b = run(&cfg, &data, Widths::default(), 2).unwrap();
        assert_eq!((b.input_width, b.target_width), (512, 114));
        assert!(b.attention_mask.iter().all(|&a| a == 1));
        assert_eq!(b, run(&cfg, &data, Widths::default(), 1).unwrap());
        // Decoder inputs are the labels shifted right behind the start id.
        for r in 0..8 {
            let lab = &b.labels[r * 114..(r + 1) * 114];
            let dec = &b.decoder_input_ids[r * 114..(r + 1) * 114];
            assert_eq!(dec[0], 0);
            assert_eq!(&dec[1..], &lab[..113]);
        }
    }

    #[test]
    fn one_thread_and_several_write_the_same_batch() {
        // Rows of varied lengths (padding), a non-zero pad id, a mixture with mode tokens and
        // the prefix LM: one thread appends rows, several fill zeroed rows.
        let sentinels: Vec<i64> = (0..200).map(|k| V - 1 - k).collect();
        let ds = two_denoisers();
        for roll in [false, true] {
            let cfg = Seq2SeqConfig::new(&Seq2SeqParams {
                weights: &[1.0, 1.0],
                input_length: 512,
                pad_token_id: 2,
                random_roll: roll,
                ..t5_params(&sentinels, &ds)
            })
            .unwrap();
            let data = rows(90, 200, 700);
            let slices: Vec<&[i64]> = data.iter().map(|r| r.as_slice()).collect();
            let total: usize = slices.iter().map(|r| r.len()).sum();
            assert_eq!(
                crate::parallel::threads_for(2, total, GRAIN_TOKENS),
                2,
                "the parallel path runs"
            );
            let keys = RowKeys::Batch { index: 5 };
            let job =
                Seq2SeqJob::new(&cfg, &slices, Widths::default(), true, 3, 1, &keys, 5).unwrap();
            let one = job.run::<i64>(1).unwrap();
            assert_eq!(one, job.run::<i64>(2).unwrap());
            assert!(one.input_ids.contains(&2) && one.labels.contains(&IGNORE_INDEX));
            let narrow = job.run::<i32>(1).unwrap();
            assert_eq!(narrow, job.run::<i32>(2).unwrap());
            assert!(
                narrow
                    .labels
                    .iter()
                    .zip(&one.labels)
                    .all(|(&a, &b)| i64::from(a) == b)
            );
        }
    }

    #[test]
    fn the_fast_id_check_agrees_with_the_reference() {
        for (row, ok) in [
            (vec![0i64, 5, 999], true),
            (vec![], true),
            (vec![1000], false),
            (vec![-1], false),
            (vec![5, i64::MIN], false),
            (vec![5, i64::MAX], false),
        ] {
            assert_eq!(ids_in_range(&row, 1000), ok, "{row:?}");
            assert_eq!(check_row_ids("x", 0, &row, 1000).is_ok(), ok);
        }
        assert!(!ids_in_range(&[u64::MAX], 1000));
        assert!(ids_in_range(&[999u16], 1000) && !ids_in_range(&[1000u16], 1000));
    }

    #[test]
    fn too_few_sentinels_is_an_error() {
        let sentinels: Vec<i64> = (0..100).map(|k| V - 1 - k).collect();
        let ds = [span(0.5, 3.0)];
        let err = Seq2SeqConfig::new(&Seq2SeqParams {
            input_length: 512,
            ..t5_params(&sentinels, &ds)
        })
        .unwrap_err();
        assert!(err.to_string().contains("128 noise spans"), "{err}");
        let dup = [998, 998];
        assert!(Seq2SeqConfig::new(&t5_params(&dup, &[span(0.15, 3.0)])).is_err());
        let eos = [1];
        assert!(Seq2SeqConfig::new(&t5_params(&eos, &[span(0.15, 3.0)])).is_err());
    }

    #[test]
    fn bad_rows_are_errors() {
        let sentinels: Vec<i64> = (0..100).map(|k| V - 1 - k).collect();
        let ds = [span(0.15, 3.0)];
        let cfg = Seq2SeqConfig::new(&t5_params(&sentinels, &ds)).unwrap();
        let raw = cfg.max_raw_length();
        assert!(run(&cfg, &[vec![]], Widths::default(), 1).is_err());
        assert!(run(&cfg, &[vec![5; raw + 1]], Widths::default(), 1).is_err());
        assert!(run(&cfg, &[vec![5, V]], Widths::default(), 1).is_err());
        let fixed = Widths {
            input: Some(10),
            ..Widths::default()
        };
        assert!(run(&cfg, &[vec![5; raw]], fixed, 1).is_err());
    }

    /// A span denoiser with mode token 5 and a prefix-LM denoiser with mode token 7.
    fn two_denoisers() -> [DenoiserParams; 2] {
        [
            DenoiserParams {
                mode_token: Some(5),
                ..span(0.15, 3.0)
            },
            DenoiserParams {
                kind: DenoiserKind::Prefix { noise_density: 0.5 },
                mode_token: Some(7),
            },
        ]
    }

    #[test]
    fn mixture_with_mode_tokens_and_prefix_lm() {
        let sentinels: Vec<i64> = (0..200).map(|k| V - 1 - k).collect();
        let ds = two_denoisers();
        let cfg = Seq2SeqConfig::new(&Seq2SeqParams {
            weights: &[1.0, 1.0],
            input_length: 128,
            ..t5_params(&sentinels, &ds)
        })
        .unwrap();
        let data = rows(64, 100, 200);
        let slices: Vec<&[i64]> = data.iter().map(|r| r.as_slice()).collect();
        let keys = RowKeys::Batch { index: 0 };
        let b = Seq2SeqJob::new(&cfg, &slices, Widths::default(), true, 1, 0, &keys, 0)
            .unwrap()
            .run::<i64>(1)
            .unwrap();
        let mut seen = [0; 2];
        for (r, row) in data.iter().enumerate() {
            let (inp, tg) = valid_row(&b, r);
            match inp[0] {
                5 => {
                    seen[0] += 1;
                    let raw = cfg.denoisers()[0].raw_length.min(row.len());
                    assert_eq!(
                        reconstruct(&inp[1..inp.len() - 1], &tg, &sentinels),
                        row[..raw]
                    );
                }
                7 => {
                    seen[1] += 1;
                    let raw = cfg.denoisers()[1].raw_length.min(row.len());
                    let mut joined = inp[1..inp.len() - 1].to_vec();
                    joined.extend(&tg[..tg.len() - 1]);
                    assert_eq!(joined, row[..raw]);
                    assert!(inp.len() >= 3, "prefix of at least one token");
                }
                other => panic!("no mode token: {other}"),
            }
        }
        assert!(seen[0] > 10 && seen[1] > 10, "{seen:?}");
    }

    #[test]
    fn per_batch_mixture_gives_every_row_the_same_denoiser() {
        let sentinels: Vec<i64> = (0..200).map(|k| V - 1 - k).collect();
        let ds = two_denoisers();
        let cfg_b = Seq2SeqConfig::new(&Seq2SeqParams {
            weights: &[1.0, 1.0],
            input_length: 128,
            per_batch: true,
            ..t5_params(&sentinels, &ds)
        })
        .unwrap();
        let data = rows(64, 100, 200);
        let slices: Vec<&[i64]> = data.iter().map(|r| r.as_slice()).collect();
        let mut firsts = std::collections::HashSet::new();
        for index in 0..20 {
            let keys = RowKeys::Batch { index };
            let b = Seq2SeqJob::new(&cfg_b, &slices, Widths::default(), true, 1, 0, &keys, index)
                .unwrap()
                .run::<i64>(1)
                .unwrap();
            let modes: std::collections::HashSet<i64> =
                (0..64).map(|r| b.input_ids[r * b.input_width]).collect();
            assert_eq!(modes.len(), 1);
            firsts.extend(modes);
        }
        assert_eq!(firsts.len(), 2);
    }
}
