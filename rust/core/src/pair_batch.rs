//! Masked sentence-pair batches in one pass: `[CLS] A [SEP] B [SEP]` of each instance of a
//! [`crate::pairs`] index, written straight into the padded outputs a BERT/ALBERT pretraining
//! step takes — `input_ids` (masked), `attention_mask`, `labels`, `token_type_ids` and the
//! pair labels — with no ragged intermediate: each row's tokens are gathered from the corpus
//! once (into a small per-thread scratch row, in cache), copied into the output row, and
//! masked there by [`crate::masking::mask_written_row`].
//!
//! The batch is the one that materialising the instances ([`crate::pairs::materialize`]),
//! masking the rows ([`crate::masking::MlmJob`], sample keys as the row keys) and padding the
//! token types ([`crate::batch::pad`]) give, bit for bit: same width and padding side, same
//! truncation, same draws (token masking only; word, span and n-gram units need the ragged
//! rows and take the composed path).

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::batch::{OutId, PadSpec, Ragged, TokenId, fill_rows, fill_rows_into};
use crate::ids::{IGNORE_INDEX, check_row_ids};
use crate::masking::{MlmConfig, mask_written_row};
use crate::parallel::threads_for;
use crate::rng::{RowKeys, Streams};
use crate::{CoreError, Result};

/// Tokens per thread below which more threads do not pay for the hand-off (as masking).
const GRAIN_TOKENS: usize = 32 * 1024;

/// A masked, padded pair batch: four `rows × width` row-major buffers and one pair label per
/// row.
#[derive(Debug, Clone, PartialEq)]
pub struct PairMlmBatch<O> {
    pub rows: usize,
    pub width: usize,
    pub input_ids: Vec<O>,
    pub attention_mask: Vec<O>,
    pub labels: Vec<O>,
    pub token_type_ids: Vec<O>,
    pub pair_labels: Vec<i64>,
}

/// The instances of a pair index (token ranges of A and B, the label), as [`crate::pairs`]
/// stores them.
#[derive(Debug, Clone, Copy)]
pub struct PairIndexRef<'a> {
    pub a: &'a [[u64; 2]],
    pub b: &'a [[u64; 2]],
    pub label: &'a [u8],
}

/// A validated masked pair batch: every check is done at construction (instances in range and
/// in the corpus, ids in the vocabulary, row lengths against the padding), so running it
/// cannot fail (but for a thread pool that cannot start) and the width is known up front.
#[derive(Debug, Clone, Copy)]
pub struct PairMlmJob<'a, T> {
    ids: &'a [T],
    index: PairIndexRef<'a>,
    items: &'a [u64],
    cls: u32,
    sep: u32,
    cfg: &'a MlmConfig,
    pad: &'a PadSpec,
    streams: &'a Streams,
    keys: &'a [u64],
    width: usize,
    tokens: usize,
}

thread_local! {
    /// A row's tokens and the masking's candidate positions, reused between rows.
    static SCRATCH: RefCell<(Vec<u32>, Vec<u32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

impl<'a, T: TokenId> PairMlmJob<'a, T> {
    /// Validates instances `items` of `index` over the corpus `ids` (each row
    /// `[cls] A [sep] B [sep]`), masked by `cfg` with the streams of `streams` keyed by `keys`
    /// (one sample key per item), padded by `pad`.
    // long: one check after another, each with its own error
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ids: &'a [T],
        index: PairIndexRef<'a>,
        items: &'a [u64],
        (cls, sep): (i64, i64),
        cfg: &'a MlmConfig,
        pad: &'a PadSpec,
        streams: &'a Streams,
        keys: &'a [u64],
    ) -> Result<Self> {
        let n = index.label.len();
        if index.a.len() != n || index.b.len() != n {
            return Err(CoreError::shape(
                "index",
                "a, b and label must have one entry each",
            ));
        }
        if keys.len() != items.len() {
            return Err(CoreError::shape(
                "sample_ids",
                format!("has {} entries for {} rows", keys.len(), items.len()),
            ));
        }
        if cfg.needs_words() {
            return Err(CoreError::invalid(
                "unit",
                "one-pass pair batches mask tokens only (word, span and n-gram units read the \
                 materialised rows)",
            ));
        }
        let vocab = i64::from(cfg.vocab_size());
        for (arg, id) in [("cls_token_id", cls), ("sep_token_id", sep)] {
            if !(0..vocab).contains(&id) {
                return Err(CoreError::invalid(
                    arg,
                    format!("must be in [0, vocab_size={vocab}), got {id}"),
                ));
            }
        }
        let mut offsets = Vec::with_capacity(items.len() + 1);
        offsets.push(0usize);
        let mut total = 0usize;
        for (k, &item) in items.iter().enumerate() {
            let i = usize::try_from(item).unwrap_or(usize::MAX);
            if i >= n {
                return Err(CoreError::invalid(
                    "indices",
                    format!("indices[{k}] = {item} is out of range for {n} instances"),
                ));
            }
            let (ra, rb) = (index.a[i], index.b[i]);
            if [ra, rb]
                .iter()
                .any(|&[lo, hi]| hi < lo || hi > ids.len() as u64)
            {
                return Err(CoreError::shape(
                    "index",
                    format!("instance {i} is out of the corpus"),
                ));
            }
            let len = (ra[1] - ra[0] + rb[1] - rb[0]) as usize + 3;
            total = crate::limits::sum("input_ids", total, len)?;
            offsets.push(total);
        }
        // The width exactly as masking computes it from the rows (`()`: no memory).
        let units = vec![(); total];
        let rows = Ragged::new("input_ids", &units[..], &offsets)?;
        let width = pad.width("input_ids", &rows)?;
        Ok(Self {
            ids,
            index,
            items,
            cls: cls as u32,
            sep: sep as u32,
            cfg,
            pad,
            streams,
            keys,
            width,
            tokens: total,
        })
    }

    pub fn rows(&self) -> usize {
        self.items.len()
    }

    /// The padded row length of the batch.
    pub fn width(&self) -> usize {
        self.width
    }

    fn threads(&self, requested: usize) -> usize {
        threads_for(requested, self.tokens, GRAIN_TOKENS)
    }

    fn pair_labels(&self) -> Vec<i64> {
        self.items
            .iter()
            .map(|&i| i64::from(self.index.label[i as usize]))
            .collect()
    }

    /// The first row with a token outside the vocabulary, as an error (the rows check their
    /// tokens as they gather them, and only a failed batch looks for which).
    fn vocabulary_error(&self) -> CoreError {
        for (r, &i) in self.items.iter().enumerate() {
            let i = i as usize;
            let mut row = vec![i64::from(self.cls)];
            row.extend(span(self.ids, self.index.a[i]).iter().map(|x| x.to_i64()));
            row.push(i64::from(self.sep));
            row.extend(span(self.ids, self.index.b[i]).iter().map(|x| x.to_i64()));
            row.push(i64::from(self.sep));
            if let Err(e) = check_row_ids("input_ids", r, &row, self.cfg.vocab_size()) {
                return e;
            }
        }
        CoreError::Internal("a token outside the vocabulary was not found again".into())
    }

    /// The batch in new (recycled) buffers.
    pub fn run<O: OutId>(&self, threads: usize) -> Result<PairMlmBatch<O>> {
        let threads = self.threads(threads);
        let bad = AtomicBool::new(false);
        let [input_ids, attention_mask, labels, token_type_ids] =
            fill_rows(threads, self.rows(), self.width, |r, row| {
                self.fill_row(r, row, &bad)
            })?;
        if bad.load(Ordering::Relaxed) {
            return Err(self.vocabulary_error());
        }
        Ok(PairMlmBatch {
            rows: self.rows(),
            width: self.width,
            input_ids,
            attention_mask,
            labels,
            token_type_ids,
            pair_labels: self.pair_labels(),
        })
    }

    /// The batch with `[input_ids, attention_mask, labels]` written into `out` (each
    /// `rows × width`; prior content is overwritten); returns `(token_type_ids, pair labels)`.
    pub fn run_into<O: OutId>(
        &self,
        threads: usize,
        out: [&mut [O]; 3],
    ) -> Result<(Vec<O>, Vec<i64>)> {
        let n = self.rows() * self.width;
        if out.iter().any(|b| b.len() != n) {
            return Err(CoreError::shape(
                "out",
                format!(
                    "each output must hold {} × {} values",
                    self.rows(),
                    self.width
                ),
            ));
        }
        let mut types = O::pool().take(n);
        types.resize(n, O::default());
        let [ids, attention, labels] = out;
        let bad = AtomicBool::new(false);
        fill_rows_into(
            self.threads(threads),
            self.width,
            [ids, attention, labels, &mut types[..]],
            |r, row| self.fill_row(r, row, &bad),
        )?;
        if bad.load(Ordering::Relaxed) {
            return Err(self.vocabulary_error());
        }
        Ok((types, self.pair_labels()))
    }

    /// Writes row `r` into zeroed `[ids, attention, labels, token types]` rows; sets `bad`
    /// (and leaves the row unmasked) when one of its tokens is outside the vocabulary.
    fn fill_row<O: OutId>(
        &self,
        r: usize,
        [ids, attention, labels, types]: [&mut [O]; 4],
        bad: &AtomicBool,
    ) {
        let i = self.items[r] as usize;
        let (a, b) = (
            span(self.ids, self.index.a[i]),
            span(self.ids, self.index.b[i]),
        );
        SCRATCH.with_borrow_mut(|(src, candidates)| {
            src.clear();
            src.push(self.cls);
            src.extend(a.iter().map(|&x| id32(x)));
            src.push(self.sep);
            src.extend(b.iter().map(|&x| id32(x)));
            src.push(self.sep);
            if src
                .iter()
                .max()
                .is_some_and(|&m| m >= self.cfg.vocab_size())
            {
                bad.store(true, Ordering::Relaxed);
                return;
            }
            let kept = self.pad.kept(src.len());
            let start = self.pad.start(kept, self.width);
            let region = start..start + kept;
            let src = &src[..kept];
            let pad_id = self.cfg.pad_token_id();
            if pad_id != 0 {
                let pad_id = O::from_i64(i64::from(pad_id));
                ids[..start].fill(pad_id);
                ids[start + kept..].fill(pad_id);
            }
            for (d, &x) in ids[region.clone()].iter_mut().zip(src) {
                *d = O::from_i64(i64::from(x));
            }
            attention[region.clone()].fill(O::from_i64(1));
            // Segment B starts after the first [SEP].
            types[start + (a.len() + 2).min(kept)..start + kept].fill(O::from_i64(1));
            labels.fill(O::from_i64(IGNORE_INDEX));
            let rng = self.streams.row(&RowKeys::Samples(self.keys), r);
            mask_written_row(
                self.cfg,
                rng,
                src,
                (&mut ids[region.clone()], &mut labels[region]),
                candidates,
            );
        });
    }
}

/// The tokens of range `[lo, hi)` (checked to lie in the corpus).
#[inline]
fn span<T>(ids: &[T], [lo, hi]: [u64; 2]) -> &[T] {
    &ids[lo as usize..hi as usize]
}

/// An id as `u32`; negative ones and those past `u32::MAX` become `u32::MAX`, which no
/// vocabulary holds (vocabularies are at most 2²⁴).
#[inline(always)]
fn id32<T: TokenId>(x: T) -> u32 {
    let v = x.to_i64();
    if v as u64 > u64::from(u32::MAX) {
        u32::MAX
    } else {
        v as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Side, pad};
    use crate::masking::{Budget, MlmJob, MlmParams, PURPOSE, TokenMasks};
    use crate::pairs::materialize;
    use crate::rng::Rng;

    /// The composition the one-pass batch replaces: materialise, mask, pad the token types.
    fn composed(
        ids: &[u16],
        index: PairIndexRef<'_>,
        items: &[u64],
        cfg: &MlmConfig,
        spec: &PadSpec,
        streams: &Streams,
        keys: &[u64],
    ) -> Result<PairMlmBatch<i64>> {
        let rows = materialize(ids, (index.a, index.b, index.label), items, 2, 3)?;
        let r = Ragged::new("input_ids", &rows.ids, &rows.offsets)?;
        let masks = TokenMasks::default();
        let rk = RowKeys::Samples(keys);
        let out = MlmJob::new(cfg, &r, &masks, spec, streams, &rk)?.run::<i64>(1)?;
        let t = Ragged::new("token_type_ids", &rows.token_type_ids, &rows.offsets)?;
        let (_, types) = pad::<i64, i64>("token_type_ids", &t, spec, 0)?;
        Ok(PairMlmBatch {
            rows: out.rows,
            width: out.width,
            input_ids: out.input_ids,
            attention_mask: out.attention_mask,
            labels: out.labels,
            token_type_ids: types,
            pair_labels: rows.labels,
        })
    }

    // long: the grid of configurations, paddings and seeds, then the control
    #[test]
    fn one_pass_equals_the_composition() {
        let mut g = Rng::from_seed(11);
        // Ids 0..40 with specials 0 (pad), 1 ([MASK]), 2, 3 ([CLS], [SEP]) and 4 inside the text.
        let ids: Vec<u16> = (0..4000).map(|_| g.below(40) as u16).collect();
        let n = 300;
        let (mut a, mut b, mut label) = (vec![], vec![], vec![]);
        for _ in 0..n {
            let (la, lb) = (1 + g.below(40), 1 + g.below(40));
            let (sa, sb) = (g.below(3900), g.below(3900));
            a.push([sa, sa + la]);
            b.push([sb, sb + lb]);
            label.push(g.below(2) as u8);
        }
        let index = PairIndexRef {
            a: &a,
            b: &b,
            label: &label,
        };
        let specials = [0i64, 1, 2, 3, 4];
        let specs = [
            PadSpec::default(),
            PadSpec {
                max_length: Some(30),
                truncation: true,
                multiple_of: 8,
                side: Side::Left,
                ..PadSpec::default()
            },
            PadSpec {
                max_length: Some(100),
                pad_to_max_length: true,
                ..PadSpec::default()
            },
        ];
        let counts: Vec<i64> = (0..40).map(|i| (i * 7) % 5).collect();
        for (case, (budget, with_replacement, weighted)) in [
            (Budget::new(true, Some(5)).unwrap(), false, false),
            (Budget::new(true, None).unwrap(), false, true),
            (Budget::new(true, Some(6)).unwrap(), true, false),
            (Budget::Bernoulli, false, false),
        ]
        .into_iter()
        .enumerate()
        {
            let cfg = MlmConfig::new(&MlmParams {
                budget,
                with_replacement,
                token_counts: weighted.then_some(&counts[..]),
                ..MlmParams::new(40, 1, 0, &specials)
            })
            .unwrap();
            for (s, spec) in specs.iter().enumerate() {
                for seed in 0..4u64 {
                    let items: Vec<u64> = (0..50).map(|_| g.below(n as u64)).collect();
                    let keys: Vec<u64> = items.iter().map(|&i| (seed << 40) | i).collect();
                    let streams = Streams::new(seed, case as u64, PURPOSE);
                    let want = composed(&ids, index, &items, &cfg, spec, &streams, &keys).unwrap();
                    let job =
                        PairMlmJob::new(&ids, index, &items, (2, 3), &cfg, spec, &streams, &keys)
                            .unwrap();
                    for threads in [1, 3] {
                        let got = job.run::<i64>(threads).unwrap();
                        assert_eq!(got, want, "budget {case}, spec {s}, seed {seed}");
                    }
                    // Control: other keys give another batch.
                    let other: Vec<u64> = keys.iter().map(|k| k + 1).collect();
                    let moved =
                        PairMlmJob::new(&ids, index, &items, (2, 3), &cfg, spec, &streams, &other)
                            .unwrap()
                            .run::<i64>(1)
                            .unwrap();
                    assert_ne!(moved.input_ids, want.input_ids);
                }
            }
        }
    }

    /// Recycled buffers hold old values (taken as they are on several threads) and none of them
    /// shows: with the pool stocked with garbage-filled buffers of the batch's size, the batch
    /// is still the composition's (every dtype, one and several threads, into given buffers).
    // long: the batch, the stocked pool, then each way of running it
    #[test]
    fn recycled_buffers_are_overwritten() {
        let mut g = Rng::from_seed(5);
        let ids: Vec<u16> = (0..8000).map(|_| 5 + g.below(35) as u16).collect();
        let n = 400;
        let (mut a, mut b, mut label) = (vec![], vec![], vec![]);
        for _ in 0..n {
            let (la, lb) = (1 + g.below(60), 1 + g.below(60));
            let (sa, sb) = (g.below(7900), g.below(7900));
            a.push([sa, sa + la]);
            b.push([sb, sb + lb]);
            label.push(g.below(2) as u8);
        }
        let index = PairIndexRef {
            a: &a,
            b: &b,
            label: &label,
        };
        let specials = [0i64, 1, 2, 3];
        let cfg = MlmConfig::new(&MlmParams::new(40, 1, 0, &specials)).unwrap();
        let streams = Streams::new(3, 1, PURPOSE);
        let items: Vec<u64> = (0..n as u64).rev().collect();
        let keys: Vec<u64> = items.iter().map(|&i| (1 << 40) | i).collect();
        for spec in [
            PadSpec {
                max_length: Some(128),
                pad_to_max_length: true,
                truncation: true,
                ..PadSpec::default()
            },
            PadSpec {
                max_length: Some(128),
                pad_to_max_length: true,
                truncation: true,
                side: Side::Left,
                ..PadSpec::default()
            },
        ] {
            let want = composed(&ids, index, &items, &cfg, &spec, &streams, &keys).unwrap();
            let job =
                PairMlmJob::new(&ids, index, &items, (2, 3), &cfg, &spec, &streams, &keys).unwrap();
            let size = job.rows() * job.width();
            assert!(
                size * 4 >= crate::batch::POOL_MIN_BYTES,
                "buffers too small to be pooled"
            );
            for threads in [1, 2, 3] {
                for _ in 0..4 {
                    i64::pool().give(vec![-7; size]);
                    i32::pool().give(vec![-7; size]);
                }
                assert_eq!(job.run::<i64>(threads).unwrap(), want, "{threads} threads");
                let got = job.run::<i32>(threads).unwrap();
                let wide = |v: &[i32]| v.iter().map(|&x| i64::from(x)).collect::<Vec<_>>();
                assert_eq!(wide(&got.input_ids), want.input_ids);
                assert_eq!(wide(&got.attention_mask), want.attention_mask);
                assert_eq!(wide(&got.labels), want.labels);
                assert_eq!(wide(&got.token_type_ids), want.token_type_ids);
                let mut out = [vec![-9i64; size], vec![-9; size], vec![-9; size]];
                let [x, y, z] = &mut out;
                let (types, pairs) = job.run_into::<i64>(threads, [x, y, z]).unwrap();
                assert_eq!(out[0], want.input_ids);
                assert_eq!(out[1], want.attention_mask);
                assert_eq!(out[2], want.labels);
                assert_eq!(
                    (types, pairs),
                    (want.token_type_ids.clone(), want.pair_labels.clone())
                );
            }
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        let ids = [10u16, 11, 12, 99, 14];
        let (a, b, label) = ([[0u64, 2]], [[2u64, 5]], [1u8]);
        let index = PairIndexRef {
            a: &a,
            b: &b,
            label: &label,
        };
        let specials = [0i64, 1, 2, 3];
        let cfg = MlmConfig::new(&MlmParams::new(50, 1, 0, &specials)).unwrap();
        let (spec, streams) = (PadSpec::default(), Streams::new(0, 0, PURPOSE));
        let job = |items: &[u64], keys: &[u64], cls: i64| {
            PairMlmJob::new(&ids, index, items, (cls, 3), &cfg, &spec, &streams, keys)
                .and_then(|job| job.run::<i64>(1))
                .map(|_| ())
        };
        // Id 99 is outside the vocabulary: named by row and position ([CLS] a a [SEP] b b).
        let e = job(&[0], &[0], 2).unwrap_err().to_string();
        assert!(e.contains("input_ids") && e.contains("99"), "{e}");
        assert!(job(&[1], &[0], 2).is_err());
        assert!(job(&[0], &[0, 1], 2).is_err());
        assert!(job(&[0], &[0], 50).is_err());
    }
}
