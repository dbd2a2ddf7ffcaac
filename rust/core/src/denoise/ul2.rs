//! UL2's mixture of denoisers (Tay et al., 2022): span-corruption denoisers (R and X) and the
//! prefix-LM denoiser (S), each with a mode token, mixed with configurable weights.
//!
//! T5 span corruption is the one-denoiser case without a mode token.

use super::t5;
use crate::rng::Rng;
use crate::{CoreError, Result};

/// What a denoiser does to a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DenoiserKind {
    /// T5 span corruption with `noise_density` and mean span length `mean_span`.
    Spans { noise_density: f64, mean_span: f64 },
    /// Prefix LM (T5's `random_prefix_noise_mask`): the inputs are a prefix whose length is
    /// uniform on `[max(1, round((1−2d)(L−1))), L−1]`, the targets the rest (no sentinels).
    Prefix { noise_density: f64 },
}

/// One denoiser as configured by the caller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DenoiserParams {
    pub kind: DenoiserKind,
    /// Prepended to the inputs (UL2's `[NLU]` / `[NLG]` / `[S2S]`), if any.
    pub mode_token: Option<i64>,
}

impl DenoiserParams {
    /// A denoiser as the Python API describes it: `kind` `"spans"` (with `noise_density` and
    /// `mean_span`) or `"prefix"` (with `noise_density`), and an optional mode token.
    pub fn parse(
        arg: &str,
        kind: &str,
        noise_density: f64,
        mean_span: f64,
        mode_token: Option<i64>,
    ) -> Result<Self> {
        let kind = match kind {
            "spans" => DenoiserKind::Spans {
                noise_density,
                mean_span,
            },
            "prefix" => DenoiserKind::Prefix { noise_density },
            other => {
                return Err(CoreError::invalid(
                    arg,
                    format!("kind must be 'spans' or 'prefix', got {other:?}"),
                ));
            }
        };
        Ok(Self { kind, mode_token })
    }
}

/// A validated denoiser with the lengths it works at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Denoiser {
    pub kind: DenoiserKind,
    pub mode_token: Option<u32>,
    /// Raw tokens a row is cut to before noising.
    pub raw_length: usize,
    /// Inputs length at `raw_length` (mode token and EOS included; the maximum over rows of
    /// at most `raw_length` tokens).
    pub input_length: usize,
    /// Targets length at `raw_length` (EOS included; the maximum likewise).
    pub target_length: usize,
    /// Sentinels a row may need (0 for the prefix LM).
    pub max_sentinels: usize,
}

impl Denoiser {
    /// Validates `p` and computes its lengths for inputs of `input_length` tokens (mode token
    /// and EOS included).
    pub fn new(
        p: &DenoiserParams,
        input_length: usize,
        random_roll: bool,
        vocab_size: i64,
    ) -> Result<Self> {
        let mode_token = p
            .mode_token
            .map(|id| crate::ids::check_id("mode_token_ids", id, vocab_size))
            .transpose()?;
        let mode = usize::from(mode_token.is_some());
        let (raw, inputs, targets, sentinels) = match p.kind {
            DenoiserKind::Spans {
                noise_density,
                mean_span,
            } => span_lengths(input_length, noise_density, mean_span, mode, random_roll)?,
            DenoiserKind::Prefix { noise_density } => {
                prefix_lengths(input_length, noise_density, mode)?
            }
        };
        Ok(Self {
            kind: p.kind,
            mode_token,
            raw_length: raw,
            input_length: inputs,
            target_length: targets,
            max_sentinels: sentinels,
        })
    }
}

/// `(raw, inputs, targets, sentinels)` lengths of a span-corruption denoiser.
fn span_lengths(
    input_length: usize,
    noise_density: f64,
    mean_span: f64,
    mode: usize,
    random_roll: bool,
) -> Result<(usize, usize, usize, usize)> {
    let (raw, targets) =
        t5::collator_lengths(input_length, noise_density, mean_span, mode, random_roll)?;
    let (inputs, _) = t5::SpanCounts::lengths(raw, noise_density, mean_span);
    let spans = t5::SpanCounts::new(raw, noise_density, mean_span).spans;
    let roll = usize::from(random_roll);
    Ok((raw, inputs + mode + roll, targets, spans + roll))
}

/// `(raw, inputs, targets, sentinels)` lengths of the prefix-LM denoiser.
fn prefix_lengths(
    input_length: usize,
    noise_density: f64,
    mode: usize,
) -> Result<(usize, usize, usize, usize)> {
    if !(noise_density.is_finite() && noise_density > 0.0 && noise_density <= 0.5) {
        return Err(CoreError::invalid(
            "noise_density",
            format!("the prefix-LM denoiser needs a density in (0, 0.5], got {noise_density}"),
        ));
    }
    // As T5's prefix_lm: raw chunks of inputs_length − 1 tokens (room for EOS). The prefix
    // has 1 to raw − 1 tokens, so inputs (mode, prefix, EOS) have at most mode + raw tokens
    // and targets (rest, EOS) at most raw.
    if input_length < mode + 3 {
        return Err(CoreError::invalid(
            "input_length",
            format!(
                "{input_length} is too short for the prefix-LM denoiser (it needs at least {} \
                 tokens)",
                mode + 3
            ),
        ));
    }
    let raw = input_length - mode - 1;
    Ok((raw, mode + raw, raw, 0))
}

/// Mixture weights as integer thresholds on a uniform 64-bit draw: denoiser `i` is chosen when
/// `u < cumulative[i]` and not for an earlier one; the last denoiser with positive weight
/// takes the remainder, so rounding never leaves a gap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mixture {
    cumulative: Vec<u64>,
    last: usize,
}

impl Mixture {
    pub fn new(weights: &[f64], count: usize) -> Result<Self> {
        if weights.len() != count {
            return Err(CoreError::invalid(
                "weights",
                format!("has {} entries for {count} denoisers", weights.len()),
            ));
        }
        if let Some(w) = weights.iter().find(|w| !(w.is_finite() && **w >= 0.0)) {
            return Err(CoreError::invalid(
                "weights",
                format!("must be finite and non-negative, got {w}"),
            ));
        }
        let total: f64 = weights.iter().sum();
        if !(total > 0.0 && total.is_finite()) {
            return Err(CoreError::invalid(
                "weights",
                "must have a positive, finite sum",
            ));
        }
        let mut acc = 0.0;
        let cumulative = weights
            .iter()
            .map(|w| {
                acc += w;
                let p = acc / total;
                if p >= 1.0 {
                    u64::MAX
                } else {
                    (p * 18_446_744_073_709_551_616.0) as u64
                }
            })
            .collect();
        let last = weights.iter().rposition(|&w| w > 0.0).unwrap_or(0);
        Ok(Self { cumulative, last })
    }

    /// The denoiser of a uniform 64-bit draw `u`.
    #[inline]
    pub fn pick(&self, u: u64) -> usize {
        self.cumulative[..self.last]
            .iter()
            .position(|&c| u < c)
            .unwrap_or(self.last)
    }

    /// One draw from `rng`.
    #[inline]
    pub fn choose(&self, rng: &mut Rng) -> usize {
        if self.last == 0 {
            return 0; // a single denoiser (T5): no draw
        }
        self.pick(rng.next_u64())
    }

    pub fn len(&self) -> usize {
        self.cumulative.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cumulative.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(d: f64, mu: f64, mode: Option<i64>) -> DenoiserParams {
        DenoiserParams {
            kind: DenoiserKind::Spans {
                noise_density: d,
                mean_span: mu,
            },
            mode_token: mode,
        }
    }

    #[test]
    fn ul2_lengths_at_512() {
        let d = Denoiser::new(&spans(0.5, 3.0, None), 512, false, 40_000).unwrap();
        assert_eq!(
            (d.raw_length, d.target_length, d.max_sentinels),
            (766, 512, 128)
        );
        assert_eq!(d.input_length, 512);
        // With a mode token the raw length is computed for 511 inputs.
        let d = Denoiser::new(&spans(0.15, 3.0, Some(7)), 512, false, 40_000).unwrap();
        assert_eq!(d.input_length, 512);
        assert_eq!(
            d.raw_length,
            t5::compute_input_and_target_lengths(511, 0.15, 3.0)
                .unwrap()
                .0
        );
        let s = Denoiser::new(
            &DenoiserParams {
                kind: DenoiserKind::Prefix { noise_density: 0.5 },
                mode_token: Some(9),
            },
            512,
            false,
            40_000,
        )
        .unwrap();
        assert_eq!(
            (s.raw_length, s.input_length, s.target_length),
            (510, 511, 510)
        );
        assert!(Denoiser::new(&spans(0.15, 3.0, Some(40_000)), 512, false, 40_000).is_err());
        let bad = DenoiserParams {
            kind: DenoiserKind::Prefix { noise_density: 0.6 },
            mode_token: None,
        };
        assert!(Denoiser::new(&bad, 512, false, 100).is_err());
    }

    #[test]
    fn mixture_frequencies() {
        let m = Mixture::new(&[1.0, 0.0, 3.0, 0.0], 4).unwrap();
        assert_eq!(m.pick(0), 0);
        assert_eq!(m.pick(u64::MAX), 2);
        let mut rng = Rng::from_seed(3);
        let mut counts = [0u32; 4];
        for _ in 0..40_000 {
            counts[m.choose(&mut rng)] += 1;
        }
        assert_eq!(counts[1] + counts[3], 0);
        assert!((9_500..10_500).contains(&counts[0]), "{counts:?}");
        assert!(Mixture::new(&[0.0, 0.0], 2).is_err());
        assert!(Mixture::new(&[1.0, -1.0], 2).is_err());
        assert!(Mixture::new(&[1.0], 2).is_err());
        assert!(Mixture::new(&[f64::NAN], 1).is_err());
        let single = Mixture::new(&[1.0], 1).unwrap();
        let mut r1 = Rng::from_seed(1);
        assert_eq!(single.choose(&mut r1), 0);
        assert_eq!(
            r1.next_u64(),
            Rng::from_seed(1).next_u64(),
            "no draw for one denoiser"
        );
    }
}
