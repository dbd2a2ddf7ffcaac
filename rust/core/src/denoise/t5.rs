//! T5 span corruption: the length arithmetic and the noise masks (Raffel et al., 2020;
//! `t5/data/preprocessors.py`).
//!
//! Everything here is per row and allocation-light; [`super::seq2seq`] turns masks into
//! batches. Counts use `f64` and round half to even, as T5's Python helper and Hugging Face's
//! NumPy port do (T5's TensorFlow mask computes `round(L·d)` in `float32`; the two can differ
//! only when `L·d` is within `float32` rounding of a half-integer).

use crate::rng::Rng;
use crate::{CoreError, Result};

/// `round(x)` with ties to even, as Python's `round` and `numpy.round`.
#[inline]
fn round_even(x: f64) -> usize {
    x.round_ties_even().max(0.0) as usize
}

/// Rows (raw token counts) above this are not supported by the length search.
const MAX_TOKENS: usize = u32::MAX as usize;

/// `(inputs, targets)` lengths, EOS included, that T5's `random_spans_helper` assigns to
/// `tokens` raw tokens: `noise = round(n·d)`, `spans = round(noise/μ)`, inputs = non-noise +
/// one sentinel per span + EOS, targets = noise + one sentinel per span + EOS.
pub fn reference_lengths(tokens: usize, noise_density: f64, mean_span: f64) -> (usize, usize) {
    let noise = round_even(tokens as f64 * noise_density).min(tokens);
    let spans = round_even(noise as f64 / mean_span);
    (tokens - noise + spans + 1, noise + spans + 1)
}

/// Checks a span denoiser's parameters: density in `[0, 1)` (`allow_zero`) or `(0, 1)`, and
/// a finite mean span length of at least 1.
pub fn check_span_params(noise_density: f64, mean_span: f64, allow_zero: bool) -> Result<()> {
    let low_ok = if allow_zero {
        noise_density >= 0.0
    } else {
        noise_density > 0.0
    };
    if !(noise_density.is_finite() && low_ok && noise_density < 1.0) {
        let range = if allow_zero { "[0, 1)" } else { "(0, 1)" };
        return Err(CoreError::invalid(
            "noise_density",
            format!("must be in {range}, got {noise_density}"),
        ));
    }
    if !(mean_span.is_finite() && mean_span >= 1.0) {
        return Err(CoreError::invalid(
            "mean_noise_span_length",
            format!("must be a finite number >= 1, got {mean_span}"),
        ));
    }
    Ok(())
}

/// T5's `random_spans_helper(inputs_length, d, μ, 1, 1)` (Hugging Face's
/// `compute_input_and_target_lengths`): the raw token count whose span-corrupted inputs fill
/// `inputs_length` (EOS included), and the resulting targets length.
///
/// It is the largest `n ≥ inputs_length − 1` whose inputs fit (the inputs length is
/// non-decreasing in `n`, so T5's linear search is a binary search here); at `d = 0.5`, when
/// the targets would be longer than the inputs, both shrink by one (T5's "minor hack"). At
/// `d = 0` it returns `(inputs_length − 1, 1)` as T5 does (Hugging Face's copy starts its
/// search one higher and returns `inputs_length`, whose inputs would not fit).
pub fn compute_input_and_target_lengths(
    inputs_length: usize,
    noise_density: f64,
    mean_span: f64,
) -> Result<(usize, usize)> {
    check_span_params(noise_density, mean_span, true)?;
    if inputs_length < 1 {
        return Err(CoreError::invalid(
            "inputs_length",
            "must be a positive integer",
        ));
    }
    if inputs_length >= MAX_TOKENS {
        return Err(CoreError::invalid(
            "inputs_length",
            format!(
                "{inputs_length} is over the limit of {} tokens per row",
                MAX_TOKENS - 1
            ),
        ));
    }
    let fits = |n: usize| reference_lengths(n, noise_density, mean_span).0 <= inputs_length;
    let mut lo = inputs_length - 1; // always fits: inputs(n) <= n + 1 when μ >= 1
    let mut hi = lo.max(1);
    while fits(hi) {
        lo = hi;
        if hi >= MAX_TOKENS {
            return Err(CoreError::invalid(
                "noise_density",
                format!(
                    "{noise_density} is so close to 1 that more than {MAX_TOKENS} raw tokens \
                     would be needed"
                ),
            ));
        }
        hi = (hi * 2).min(MAX_TOKENS);
    }
    // fits(lo), !fits(hi): find the last n that fits.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let (inputs, mut targets) = reference_lengths(lo, noise_density, mean_span);
    let mut tokens = lo;
    if noise_density == 0.5 && targets > inputs {
        tokens -= 1;
        targets -= 1;
    }
    Ok((tokens, targets))
}

/// The noise of one row as T5's `random_spans_noise_mask` computes it for a row of `len ≥ 1`
/// tokens: `L' = max(len, 2)`, `noise = clamp(round(L'·d), 1, L'−1)`,
/// `spans = max(1, round(noise/μ))` — capped at the non-noise count, since every noise span
/// is preceded by a non-noise one (T5 fails there; Hugging Face caps too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanCounts {
    /// `max(len, 2)`: the length the mask is drawn for (then cut to `len`).
    pub length: usize,
    pub noise: usize,
    pub clean: usize,
    pub spans: usize,
}

impl SpanCounts {
    pub fn new(len: usize, noise_density: f64, mean_span: f64) -> Self {
        let length = len.max(2);
        let noise = round_even(length as f64 * noise_density).clamp(1, length - 1);
        let clean = length - noise;
        let spans = round_even(noise as f64 / mean_span).max(1).min(clean);
        Self {
            length,
            noise,
            clean,
            spans,
        }
    }

    /// `(inputs, targets)` lengths (EOS included, no mode token) of a row of `len` tokens
    /// with an unrolled mask (it starts with non-noise and ends with noise).
    pub fn lengths(len: usize, noise_density: f64, mean_span: f64) -> (usize, usize) {
        if len == 1 {
            // T5 draws the mask for 2 tokens and keeps the first, which is never noise: the
            // inputs are the token and EOS, the targets one sentinel (for the non-noise
            // token) and EOS.
            return (2, 2);
        }
        let c = Self::new(len, noise_density, mean_span);
        (c.clean + c.spans + 1, c.noise + c.spans + 1)
    }
}

/// The raw length and targets length a collator uses for `inputs_length` (EOS included;
/// `extra_inputs` more tokens are reserved, e.g. a mode token).
///
/// It starts from [`compute_input_and_target_lengths`] and shortens the raw length while the
/// mask arithmetic ([`SpanCounts`]) needs more: T5's helper counts `round(noise/μ)` spans where
/// the mask makes at least one, which for `noise/μ < 0.5` (e.g. μ = 64 on short inputs) would
/// make every row one token too long. With `random_roll`, a span split at the row boundary
/// adds a sentinel to the inputs and one to the targets, so one more of each is reserved.
pub fn collator_lengths(
    inputs_length: usize,
    noise_density: f64,
    mean_span: f64,
    extra_inputs: usize,
    random_roll: bool,
) -> Result<(usize, usize)> {
    check_span_params(noise_density, mean_span, false)?;
    let reserve = extra_inputs + usize::from(random_roll);
    let too_short = || {
        CoreError::invalid(
            "input_length",
            format!(
                "{inputs_length} is too short for noise_density={noise_density}, \
                 mean_noise_span_length={mean_span}: no raw length of 2 or more tokens fits \
                 (each row needs at least one noise and one non-noise token, a sentinel and \
                 EOS{})",
                if reserve > 0 {
                    format!(", plus {reserve} reserved")
                } else {
                    String::new()
                }
            ),
        )
    };
    if inputs_length < reserve + 3 {
        return Err(too_short());
    }
    let budget = inputs_length - reserve;
    let (mut tokens, _) = compute_input_and_target_lengths(budget, noise_density, mean_span)?;
    while tokens >= 2 && SpanCounts::lengths(tokens, noise_density, mean_span).0 > budget {
        tokens -= 1;
    }
    if tokens < 2 {
        return Err(too_short());
    }
    let targets =
        SpanCounts::lengths(tokens, noise_density, mean_span).1 + usize::from(random_roll);
    Ok((tokens, targets))
}

/// Reusable scratch memory for drawing masks (one per thread).
#[derive(Debug, Default)]
pub struct Scratch {
    bits: Vec<u64>,
    noise_parts: Vec<u32>,
    clean_parts: Vec<u32>,
}

/// A uniformly random composition of `n` into `m` positive parts (T5's `_random_segmentation`:
/// a shuffled 0/1 vector with `m − 1` ones among `n − 1` slots). The `m − 1` part boundaries
/// are a uniform subset of `{1, …, n−1}`, drawn with Floyd's algorithm: for
/// `j = n−m, …, n−2`, `t = below(j + 1)`, take `t` unless taken, else `j` (`m − 1` draws).
fn random_composition(rng: &mut Rng, n: usize, m: usize, bits: &mut Vec<u64>, out: &mut Vec<u32>) {
    out.clear();
    debug_assert!(1 <= m && m <= n);
    let slots = n - 1;
    let k = m - 1;
    bits.clear();
    bits.resize(slots / 64 + 1, 0);
    let test = |bits: &[u64], i: usize| bits[i >> 6] >> (i & 63) & 1 == 1;
    for j in slots - k..slots {
        let t = rng.below(j as u64 + 1) as usize;
        let pick = if test(bits, t) { j } else { t };
        bits[pick >> 6] |= 1 << (pick & 63);
    }
    let mut last = 0usize; // part boundaries: slot i chosen => a part starts at item i + 1
    for (w, &word) in bits.iter().enumerate() {
        let mut word = word;
        while word != 0 {
            let i = w * 64 + word.trailing_zeros() as usize;
            out.push((i + 1 - last) as u32);
            last = i + 1;
            word &= word - 1;
        }
    }
    out.push((n - last) as u32);
}

/// A row's noise as maximal runs `(start, len)`, in position order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpanMask {
    pub runs: Vec<(u32, u32)>,
    /// The row ends with non-noise tokens (only with `random_roll`, or for 1-token rows).
    pub ends_clean: bool,
    /// Total noise tokens.
    pub noise: usize,
}

/// Draws T5's `random_spans_noise_mask` for a row of `len ≥ 1` tokens.
///
/// Stream use: the noise composition (`spans − 1` draws, Floyd sampling of the part
/// boundaries), then the non-noise composition (`spans − 1` draws), then — with
/// `random_roll` — one `below(len)` for the roll offset. The mask interleaves non-noise and noise parts
/// (`clean₀ noise₀ clean₁ noise₁ …`), so it starts with non-noise and ends with noise; it is
/// drawn for `max(len, 2)` tokens and cut to `len`; a roll by `o` moves position `i` to
/// `(i + o) mod len` and may split a run at the row boundary into two.
pub fn span_mask(
    rng: &mut Rng,
    len: usize,
    noise_density: f64,
    mean_span: f64,
    random_roll: bool,
    scratch: &mut Scratch,
    out: &mut SpanMask,
) {
    out.runs.clear();
    let c = SpanCounts::new(len, noise_density, mean_span);
    // At most one run per span, plus one that a roll splits: one allocation at most.
    out.runs.reserve(c.spans + usize::from(random_roll));
    let Scratch {
        bits,
        noise_parts,
        clean_parts,
    } = scratch;
    random_composition(rng, c.noise, c.spans, bits, noise_parts);
    random_composition(rng, c.clean, c.spans, bits, clean_parts);
    let mut pos = 0usize;
    let mut noise = 0usize;
    for (&clean, &n) in clean_parts.iter().zip(noise_parts.iter()) {
        pos += clean as usize;
        if pos >= len {
            break; // only for len == 1: the mask was drawn for 2 tokens
        }
        let n = (n as usize).min(len - pos);
        out.runs.push((pos as u32, n as u32));
        noise += n;
        pos += n;
    }
    out.noise = noise;
    if random_roll {
        let offset = rng.below(len as u64) as usize;
        if offset != 0 {
            let runs = std::mem::replace(&mut out.runs, Vec::with_capacity(c.spans + 1));
            for (s, l) in runs {
                let (s, l) = (s as usize, l as usize);
                let start = (s + offset) % len;
                if start + l > len {
                    out.runs.push((start as u32, (len - start) as u32));
                    out.runs.push((0, (start + l - len) as u32));
                } else {
                    out.runs.push((start as u32, l as u32));
                }
            }
            out.runs.sort_unstable();
        }
    }
    out.ends_clean = out
        .runs
        .last()
        .is_none_or(|&(s, l)| (s + l) as usize != len);
}

/// T5's `random_prefix_noise_mask`: the number of leading (input) tokens of a row of
/// `len ≥ 1` tokens, uniform on `[min(len−1, max(1, round((1−2d)(len−1)))), len−1]`; the rest
/// is the target. One `below` draw. `noise_density` must be in `(0, 0.5]`.
pub fn prefix_length(rng: &mut Rng, len: usize, noise_density: f64) -> usize {
    let hi = len - 1;
    let lo = hi.min(round_even((1.0 - 2.0 * noise_density) * hi as f64).max(1));
    lo + rng.below((hi - lo + 1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_table() {
        // collators.md §2.1 (recomputed from the reference formula).
        let cases = [
            (512, 0.15, 3.0, 568, 114),
            (512, 0.15, 8.0, 588, 100),
            (512, 0.5, 3.0, 766, 512),
            (512, 0.5, 8.0, 908, 512),
            (512, 0.15, 64.0, 600, 92),
            (512, 0.5, 64.0, 1006, 512),
            (512, 0.15, 32.0, 598, 94),
            (1024, 0.15, 3.0, 1137, 229),
            (1024, 0.5, 3.0, 1534, 1024),
            (2048, 0.15, 3.0, 2274, 456),
            (128, 0.15, 3.0, 141, 29),
            (114, 0.5, 8.0, 201, 113),
        ];
        for (l, d, mu, raw, tg) in cases {
            assert_eq!(
                compute_input_and_target_lengths(l, d, mu).unwrap(),
                (raw, tg),
                "{l} {d} {mu}"
            );
        }
        assert_eq!(
            compute_input_and_target_lengths(512, 0.0, 3.0).unwrap(),
            (511, 1)
        );
        assert!(compute_input_and_target_lengths(512, 1.0, 3.0).is_err());
        assert!(compute_input_and_target_lengths(512, 0.15, 0.5).is_err());
        assert!(compute_input_and_target_lengths(0, 0.15, 3.0).is_err());
    }

    #[test]
    fn linear_search_agrees_with_binary_search() {
        for l in [2usize, 3, 7, 64, 100] {
            for d in [0.05, 0.15, 0.3, 0.5, 0.8] {
                for mu in [1.0, 2.5, 3.0, 8.0] {
                    let mut n = l - 1;
                    while reference_lengths(n + 1, d, mu).0 <= l {
                        n += 1;
                    }
                    let (inputs, mut targets) = reference_lengths(n, d, mu);
                    if d == 0.5 && targets > inputs {
                        n -= 1;
                        targets -= 1;
                    }
                    assert_eq!(
                        compute_input_and_target_lengths(l, d, mu).unwrap(),
                        (n, targets)
                    );
                }
            }
        }
    }

    #[test]
    fn compositions_are_positive_and_sum() {
        let mut rng = Rng::from_seed(5);
        let (mut bits, mut out) = (Vec::new(), Vec::new());
        for (n, m) in [
            (1, 1),
            (5, 5),
            (85, 28),
            (483, 28),
            (200, 1),
            (130, 64),
            (65, 2),
        ] {
            random_composition(&mut rng, n, m, &mut bits, &mut out);
            assert_eq!(out.len(), m);
            assert!(out.iter().all(|&x| x >= 1));
            assert_eq!(out.iter().map(|&x| x as usize).sum::<usize>(), n);
        }
    }

    #[test]
    fn first_part_follows_the_uniform_composition_law() {
        // P(first part = k) = C(n−k−1, m−2) / C(n−1, m−1); n = 10, m = 3: (9 − k) / 36.
        let mut rng = Rng::from_seed(17);
        let (mut bits, mut out) = (Vec::new(), Vec::new());
        let draws = 72_000;
        let mut counts = [0f64; 9];
        for _ in 0..draws {
            random_composition(&mut rng, 10, 3, &mut bits, &mut out);
            counts[out[0] as usize] += 1.0;
        }
        let chi2: f64 = (1..=8)
            .map(|k| {
                let e = draws as f64 * (9 - k) as f64 / 36.0;
                (counts[k] - e).powi(2) / e
            })
            .sum();
        assert!(chi2 < 35.0, "chi2 = {chi2}"); // 7 dof, far tail
    }

    #[test]
    fn masks_have_t5_counts_and_shape() {
        let mut rng = Rng::from_seed(1);
        let mut scratch = Scratch::default();
        let mut m = SpanMask::default();
        for len in [1usize, 2, 3, 10, 568, 1000] {
            span_mask(&mut rng, len, 0.15, 3.0, false, &mut scratch, &mut m);
            if len == 1 {
                assert!(m.runs.is_empty() && m.ends_clean);
                continue;
            }
            let c = SpanCounts::new(len, 0.15, 3.0);
            assert_eq!(m.noise, c.noise);
            assert_eq!(m.runs.len(), c.spans);
            assert!(m.runs[0].0 > 0, "starts with non-noise");
            let (s, l) = *m.runs.last().unwrap();
            assert_eq!((s + l) as usize, len, "ends with noise");
            assert!(!m.ends_clean);
            for w in m.runs.windows(2) {
                assert!(w[0].0 + w[0].1 < w[1].0, "runs are separated");
            }
        }
    }

    #[test]
    fn rolled_masks_keep_the_noise_count() {
        let mut rng = Rng::from_seed(2);
        let mut scratch = Scratch::default();
        let mut m = SpanMask::default();
        let mut starts_noisy = 0;
        for _ in 0..500 {
            span_mask(&mut rng, 50, 0.3, 3.0, true, &mut scratch, &mut m);
            let c = SpanCounts::new(50, 0.3, 3.0);
            assert_eq!(m.runs.iter().map(|r| r.1 as usize).sum::<usize>(), c.noise);
            assert!(m.runs.len() == c.spans || m.runs.len() == c.spans + 1);
            starts_noisy += usize::from(m.runs[0].0 == 0);
        }
        assert!(starts_noisy > 50 && starts_noisy < 450);
    }

    #[test]
    fn collator_lengths_fit_the_mask() {
        // At the usual settings they are T5's numbers.
        assert_eq!(
            collator_lengths(512, 0.15, 3.0, 0, false).unwrap(),
            (568, 114)
        );
        assert_eq!(
            collator_lengths(512, 0.5, 64.0, 0, false).unwrap(),
            (1006, 512)
        );
        // μ = 64 on short inputs: the helper assumes no span, the mask has one.
        let (raw, tg) = collator_lengths(64, 0.15, 64.0, 0, false).unwrap();
        let (inp, t) = SpanCounts::lengths(raw, 0.15, 64.0);
        assert!(inp <= 64 && t == tg);
        assert!(compute_input_and_target_lengths(64, 0.15, 64.0).unwrap().0 > raw);
        assert!(collator_lengths(2, 0.15, 3.0, 0, false).is_err());
        assert!(collator_lengths(3, 0.15, 3.0, 0, false).is_ok());
        assert!(collator_lengths(4, 0.15, 3.0, 1, true).is_err());
    }

    #[test]
    fn prefix_lengths_are_uniform_on_their_range() {
        let mut rng = Rng::from_seed(4);
        let mut counts = [0u32; 10];
        for _ in 0..9000 {
            let p = prefix_length(&mut rng, 10, 0.5);
            assert!((1..=9).contains(&p));
            counts[p] += 1;
        }
        assert!(counts[1..].iter().all(|&c| (800..1200).contains(&c)));
        assert_eq!(prefix_length(&mut rng, 1, 0.5), 0);
        for _ in 0..100 {
            // d = 0.25: [round(0.5 · 9), 9] = [4, 9] (4.5 rounds to even).
            assert!((4..=9).contains(&prefix_length(&mut rng, 10, 0.25)));
        }
    }
}
