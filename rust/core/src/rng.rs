//! Keyed, portable random streams.
//!
//! Every random decision in the library is drawn from a [`Rng`] whose seed is a hash of
//! `(seed, epoch, purpose, key...)`. A row's stream therefore depends only on *which* row it is
//! (its sample index, or its batch index and position), never on thread scheduling, the number
//! of threads or the number of DataLoader workers.
//!
//! The generator is **xoshiro256++** (Blackman & Vigna, 2019), seeded through **SplitMix64**.
//! Both are fully specified named algorithms, so streams are identical on every platform and
//! every version of this library that keeps [`STREAM_VERSION`]; a golden test pins them.

/// Bumped whenever a change would alter any stream for the same inputs.
pub const STREAM_VERSION: u32 = 1;

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function (Stafford's "Mix13" variant used by SplitMix64).
#[inline]
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// SplitMix64 (Steele, Lea & Flood, 2014): used to expand one 64-bit seed into a full state.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }
}

/// Hashes a sequence of 64-bit words into one seed. Order matters; different lengths give
/// unrelated results because the length is mixed in first.
#[inline]
pub fn hash_words(words: &[u64]) -> u64 {
    let mut h = mix64(0x6A09_E667_F3BC_C909 ^ words.len() as u64);
    for &w in words {
        h = mix64(h.wrapping_add(GOLDEN_GAMMA) ^ w);
    }
    h
}

/// A 64-bit tag derived from a short ASCII name, used to separate the streams of different
/// objectives (e.g. `purpose("mlm")`), so two objectives keyed by the same sample never share
/// random numbers.
pub const fn purpose(name: &str) -> u64 {
    // FNV-1a, then mixed: a compile-time constant per objective.
    let bytes = name.as_bytes();
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
        i += 1;
    }
    mix64(h)
}

/// xoshiro256++ 1.0: 256-bit state, period 2^256 − 1, passes BigCrush; ~1 ns per draw.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// Seeds the state with four SplitMix64 outputs (the authors' recommended seeding).
    /// SplitMix64 is a bijection on its counter, so the state is never all zero.
    pub fn from_seed(seed: u64) -> Self {
        let mut sm = SplitMix64::new(seed);
        Self {
            s: [sm.next_u64(), sm.next_u64(), sm.next_u64(), sm.next_u64()],
        }
    }

    /// A generator keyed by a word sequence (see [`hash_words`]).
    pub fn from_key(words: &[u64]) -> Self {
        Self::from_seed(hash_words(words))
    }

    /// Raw state constructor, for reference test vectors.
    pub const fn from_state(s: [u64; 4]) -> Self {
        Self { s }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform on `[0, 1)` with 53 bits of resolution.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `true` with probability `p` (exactly `p` rounded to a multiple of 2^-53).
    /// `p <= 0` is never true and `p >= 1` is always true; one draw is consumed either way.
    #[inline]
    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }

    /// Uniform integer in `[0, n)` without modulo bias (Lemire's multiply-and-reject).
    /// `n == 0` returns 0.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let mut m = (self.next_u64() as u128) * (n as u128);
        let mut low = m as u64;
        if low < n {
            let threshold = n.wrapping_neg() % n;
            while low < threshold {
                m = (self.next_u64() as u128) * (n as u128);
                low = m as u64;
            }
        }
        (m >> 64) as u64
    }
}

/// A probability as an integer threshold: `chance(p).hit(x)` for a uniform 64-bit `x` is true
/// with probability `floor(p·2^64)/2^64` (exactly 1 for `p >= 1`, 0 for `p <= 0`). One
/// comparison per trial, no float conversion on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chance {
    below: u64,
    always: bool,
}

impl Chance {
    pub fn new(p: f64) -> Self {
        if p >= 1.0 {
            Chance {
                below: u64::MAX,
                always: true,
            }
        } else if p > 0.0 {
            // p·2^64 is exact in f64 (scaling by a power of two); `as` truncates: the floor.
            Chance {
                below: (p * 18_446_744_073_709_551_616.0) as u64,
                always: false,
            }
        } else {
            Chance {
                below: 0,
                always: false,
            }
        }
    }

    #[inline]
    pub fn hit(self, x: u64) -> bool {
        x < self.below || self.always
    }

    pub fn never(self) -> bool {
        self.below == 0 && !self.always
    }
}

/// Gaps between successes of independent Bernoulli(`p`) trials, i.e. Geometric(`p`) on
/// `{0, 1, 2, …}` (the number of failures before the next success).
///
/// Selecting each of `n` positions independently with probability `p` is the same as
/// jumping from success to success by such gaps, which costs one draw per *success*
/// instead of one per position. Sampling is by inverse CDF over a survival table
/// `T_k = floor((1−p)^k · 2^64)` (built by repeated IEEE multiplication, so identical on
/// every platform): the gap is the number of `k ≥ 1` with `u < T_k` for a uniform 64-bit
/// `u`, found by binary search. Gaps of `K` (the table length) or more continue with a
/// fresh draw, which is exact because the geometric distribution is memoryless.
///
/// The search is accelerated by an index over the top 12 bits of `u`: bucket `b` stores the
/// gap of the largest `u` in it (the smallest gap of the bucket), and a short scan from there
/// finishes the job — usually zero steps, since only long gaps share a bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct GeometricGaps {
    p: f64,
    /// `T_1, …, T_K`, strictly decreasing and non-zero.
    survival: Vec<u64>,
    /// `start[b]` = gap of `u = (b + 1)·2^52 − 1`.
    start: Vec<u32>,
}

impl GeometricGaps {
    /// Longest table kept (32 KiB); rarer gaps use the memoryless continuation.
    const MAX_TABLE: usize = 4096;

    const INDEX_BITS: u32 = 12;

    pub fn new(p: f64) -> Self {
        let mut survival = Vec::new();
        if p > 0.0 && p < 1.0 {
            let q = 1.0 - p;
            let mut s = q;
            while survival.len() < Self::MAX_TABLE {
                let t = (s * 18_446_744_073_709_551_616.0) as u64;
                if t == 0 {
                    break;
                }
                survival.push(t);
                s *= q;
            }
        }
        let shift = 64 - Self::INDEX_BITS;
        let start = (0..1u64 << Self::INDEX_BITS)
            .map(|b| {
                let hi = ((b + 1) << shift).wrapping_sub(1);
                survival.partition_point(|&t| hi < t) as u32
            })
            .collect();
        Self { p, survival, start }
    }

    /// `#{k ≥ 1 : u < T_k}` (capped at the table length).
    #[inline]
    fn gap_of(&self, u: u64) -> u64 {
        let mut g = self.start[(u >> (64 - Self::INDEX_BITS)) as usize] as usize;
        while g < self.survival.len() && u < self.survival[g] {
            g += 1;
        }
        g as u64
    }

    /// Always selects (`p >= 1`): every gap is 0.
    pub fn always(&self) -> bool {
        self.p >= 1.0
    }

    /// Never selects (`p <= 0`): callers must not sample.
    pub fn never(&self) -> bool {
        self.p <= 0.0
    }

    /// One gap, or `limit` if the gap is `limit` or more (callers only need to know that
    /// the next success lies beyond what is left). Consumes one draw, more only while the
    /// running total stays below `limit` past whole tables — so it always terminates, even
    /// when `1 − p` rounds to 1.
    #[inline]
    pub fn sample(&self, rng: &mut Rng, limit: u64) -> u64 {
        if self.always() {
            return 0;
        }
        let k = self.survival.len() as u64;
        let mut total = 0u64;
        loop {
            let gap = self.gap_of(rng.next_u64());
            if gap < k || k == 0 {
                return (total + gap).min(limit);
            }
            total += k;
            if total >= limit {
                return limit;
            }
        }
    }
}

/// A discrete distribution over `0..weights.len()` sampled with one draw: index `i` is
/// chosen with probability `weights[i] / Σ weights` (to within 2^-64), by comparing a uniform
/// 64-bit value against precomputed integer thresholds — portable and exact to the bit.
#[derive(Debug, Clone, PartialEq)]
pub struct Categorical {
    /// Cumulative thresholds; the last is `u64::MAX` (everything left).
    below: Vec<u64>,
}

impl Categorical {
    /// `None` unless the weights are finite, non-negative and not all zero.
    pub fn new(weights: &[f64]) -> Option<Self> {
        let total: f64 = weights.iter().sum();
        if weights.is_empty()
            || !total.is_finite()
            || total <= 0.0
            || weights.iter().any(|w| !w.is_finite() || *w < 0.0)
        {
            return None;
        }
        let mut below = Vec::with_capacity(weights.len());
        let mut cum = 0.0;
        for (i, w) in weights.iter().enumerate() {
            cum += w;
            let t = if i + 1 == weights.len() {
                u64::MAX
            } else {
                ((cum / total) * 18_446_744_073_709_551_616.0).min(u64::MAX as f64) as u64
            };
            below.push(t);
        }
        Some(Self { below })
    }

    pub fn len(&self) -> usize {
        self.below.len()
    }

    pub fn is_empty(&self) -> bool {
        self.below.is_empty()
    }

    /// One index; consumes one draw.
    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.next_u64();
        self.below
            .iter()
            .position(|&t| u < t)
            .unwrap_or(self.below.len() - 1)
    }
}

/// Where a batch's rows take their random streams from.
#[derive(Debug, Clone, Copy)]
pub enum RowKeys<'a> {
    /// Row `r` of batch number `index`: stream `(…, index, r)`.
    Batch { index: u64 },
    /// Row `r` is sample `ids[r]`: stream `(…, ids[r])`, independent of batching.
    Samples(&'a [u64]),
}

const TAG_BATCH: u64 = 0xB47C_0000_0000_0001;
const TAG_SAMPLE: u64 = 0x5A3D_0000_0000_0002;

/// The fixed part of a stream key: user seed, epoch and the objective's purpose tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streams {
    pub seed: u64,
    pub epoch: u64,
    pub purpose: u64,
}

impl Streams {
    pub const fn new(seed: u64, epoch: u64, purpose: u64) -> Self {
        Self {
            seed,
            epoch,
            purpose,
        }
    }

    /// The generator of row `row` under `keys`.
    #[inline]
    pub fn row(&self, keys: &RowKeys<'_>, row: usize) -> Rng {
        match *keys {
            RowKeys::Batch { index } => Rng::from_key(&[
                self.seed,
                self.epoch,
                self.purpose,
                TAG_BATCH,
                index,
                row as u64,
            ]),
            RowKeys::Samples(ids) => {
                Rng::from_key(&[self.seed, self.epoch, self.purpose, TAG_SAMPLE, ids[row]])
            }
        }
    }
}

impl RowKeys<'_> {
    /// Checks that sample keys (if any) cover `rows` rows.
    pub fn check_rows(&self, rows: usize) -> crate::Result<()> {
        match self {
            RowKeys::Samples(ids) if ids.len() != rows => Err(crate::CoreError::shape(
                "sample_ids",
                format!("has {} entries for {} rows", ids.len(), rows),
            )),
            _ => Ok(()),
        }
    }
}

/// Records the sample keys of one batch in `table`, a direct-mapped table of the keys made in
/// the current epoch (fingerprint `2·key + 1`; 0 is an empty slot; even fingerprints are left
/// to batch indices), and returns the first key that was already there — made before in this
/// epoch, or twice in this batch: its row drew the same stream again. A slot taken by another
/// key is left alone, so a full table still catches repeats of the keys it holds (every key of
/// a repeated pass comes again). Every key is recorded, repeated or not.
pub fn note_keys(table: &mut [u64], keys: &[u64]) -> crate::Result<Option<u64>> {
    let n = table.len();
    if n == 0 {
        return Ok(None);
    }
    if !n.is_power_of_two() {
        return Err(crate::CoreError::invalid(
            "table",
            format!("its length must be a power of two, got {n}"),
        ));
    }
    let shift = 64 - n.trailing_zeros();
    let mut repeat = None;
    for &key in keys {
        let fingerprint = key.wrapping_mul(2).wrapping_add(1);
        let slot = fingerprint
            .wrapping_mul(GOLDEN_GAMMA)
            .checked_shr(shift)
            .unwrap_or(0) as usize;
        if table[slot] == fingerprint {
            repeat = repeat.or(Some(key));
        } else if table[slot] == 0 {
            table[slot] = fingerprint;
        }
    }
    Ok(repeat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noted_keys_catch_repeats() {
        let mut table = vec![0u64; 64];
        assert_eq!(note_keys(&mut table, &[3, 9, 1 << 40]).unwrap(), None);
        assert_eq!(note_keys(&mut table, &[4, 5]).unwrap(), None);
        assert_eq!(note_keys(&mut table, &[6, 9, 3]).unwrap(), Some(9)); // made before
        assert_eq!(note_keys(&mut table, &[7, 8, 7]).unwrap(), Some(7)); // twice in a batch
        assert_eq!(table.iter().filter(|&&f| f != 0).count(), 8);
        assert!(table.iter().all(|&f| f == 0 || f % 2 == 1));
        // A full table keeps what it holds: a whole repeated pass is still caught.
        let mut small = vec![0u64; 4];
        let pass: Vec<u64> = (0..100).collect();
        assert_eq!(note_keys(&mut small, &pass).unwrap(), None);
        assert!(note_keys(&mut small, &pass).unwrap().is_some());
        assert_eq!(note_keys(&mut [], &pass).unwrap(), None);
        assert!(note_keys(&mut [0; 3], &[1]).is_err());
    }

    #[test]
    fn xoshiro256pp_reference_vector() {
        // Reference implementation (xoshiro256plusplus.c) from state {1, 2, 3, 4}.
        let mut r = Rng::from_state([1, 2, 3, 4]);
        let got: Vec<u64> = (0..6).map(|_| r.next_u64()).collect();
        assert_eq!(
            got,
            [
                41_943_041,
                58_720_359,
                3_588_806_011_781_223,
                3_591_011_842_654_386,
                9_228_616_714_210_784_205,
                9_973_669_472_204_895_162,
            ]
        );
    }

    #[test]
    fn splitmix64_reference_vector() {
        // SplitMix64 from seed 1234567 (values of the reference splitmix64.c).
        let mut sm = SplitMix64::new(1_234_567);
        let got: Vec<u64> = (0..3).map(|_| sm.next_u64()).collect();
        assert_eq!(
            got,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423,
            ]
        );
    }

    #[test]
    fn golden_keyed_stream() {
        // Pins the keyed streams: a change here changes every mask the library makes.
        let s = Streams::new(42, 0, purpose("mlm"));
        let mut r = s.row(&RowKeys::Batch { index: 0 }, 0);
        let a = r.next_u64();
        let mut r2 = s.row(&RowKeys::Batch { index: 0 }, 0);
        assert_eq!(a, r2.next_u64());
        let mut r3 = s.row(&RowKeys::Batch { index: 0 }, 1);
        assert_ne!(a, r3.next_u64());
        let mut r4 = s.row(&RowKeys::Samples(&[0]), 0);
        assert_ne!(a, r4.next_u64());
        assert_eq!(hash_words(&[]), mix64(0x6A09_E667_F3BC_C909));
    }

    #[test]
    fn below_is_in_range_and_unbiased_enough() {
        let mut r = Rng::from_seed(7);
        let n = 7u64;
        let mut counts = [0u64; 7];
        let draws = 70_000;
        for _ in 0..draws {
            let x = r.below(n);
            assert!(x < n);
            counts[x as usize] += 1;
        }
        // Chi-square with 6 dof; 99.99th percentile is about 27.9.
        let e = draws as f64 / n as f64;
        let chi2: f64 = counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum();
        assert!(chi2 < 27.9, "chi2 = {chi2}");
        assert_eq!(r.below(0), 0);
        assert_eq!(r.below(1), 0);
    }

    #[test]
    fn f64_in_unit_interval_and_bernoulli_edges() {
        let mut r = Rng::from_seed(9);
        for _ in 0..10_000 {
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x));
        }
        assert!((0..1000).all(|_| r.bernoulli(1.0)));
        assert!((0..1000).all(|_| !r.bernoulli(0.0)));
    }

    #[test]
    fn chance_thresholds() {
        assert!(Chance::new(1.0).hit(u64::MAX));
        assert!(!Chance::new(0.0).hit(0));
        assert!(Chance::new(0.0).never());
        let half = Chance::new(0.5);
        assert!(half.hit((1 << 63) - 1));
        assert!(!half.hit(1 << 63));
        let mut r = Rng::from_seed(3);
        let c = Chance::new(0.15);
        let n = 200_000;
        let k = (0..n).filter(|_| c.hit(r.next_u64())).count() as f64;
        let z = (k - 0.15 * n as f64) / (n as f64 * 0.15 * 0.85).sqrt();
        assert!(z.abs() < 5.0, "z = {z}");
    }

    #[test]
    fn geometric_gaps_match_the_distribution() {
        for &p in &[0.5, 0.15, 0.01] {
            let g = GeometricGaps::new(p);
            let mut r = Rng::from_seed(11);
            let n = 200_000;
            let mut counts = [0u64; 8];
            let mut sum = 0u64;
            for _ in 0..n {
                let x = g.sample(&mut r, u64::MAX);
                sum += x;
                if (x as usize) < counts.len() {
                    counts[x as usize] += 1;
                }
            }
            let mean = sum as f64 / n as f64;
            let want = (1.0 - p) / p;
            let sd = ((1.0 - p) / (p * p) / n as f64).sqrt();
            assert!(
                ((mean - want) / sd).abs() < 5.0,
                "p={p}: mean {mean} vs {want}"
            );
            for (k, &c) in counts.iter().enumerate() {
                let q = p * (1.0 - p).powi(k as i32);
                let z = (c as f64 - n as f64 * q) / (n as f64 * q * (1.0 - q)).sqrt();
                assert!(z.abs() < 5.0, "p={p}, k={k}: {c} vs {}", n as f64 * q);
            }
        }
        // The indexed search equals a plain binary search everywhere.
        let g = GeometricGaps::new(0.15);
        let mut r = Rng::from_seed(5);
        for _ in 0..100_000 {
            let u = r.next_u64();
            assert_eq!(g.gap_of(u), g.survival.partition_point(|&t| u < t) as u64);
        }
        for u in [
            0,
            1,
            u64::MAX,
            g.survival[0],
            g.survival[0] - 1,
            *g.survival.last().unwrap(),
        ] {
            assert_eq!(g.gap_of(u), g.survival.partition_point(|&t| u < t) as u64);
        }
        let mut r = Rng::from_seed(1);
        assert_eq!(GeometricGaps::new(1.0).sample(&mut r, 10), 0);
        assert!(GeometricGaps::new(0.0).never());
        // A tiny p exercises the memoryless continuation past the table.
        let tiny = GeometricGaps::new(1e-5);
        assert_eq!(tiny.survival.len(), GeometricGaps::MAX_TABLE);
        let m = (0..2000)
            .map(|_| tiny.sample(&mut r, u64::MAX) as f64)
            .sum::<f64>()
            / 2000.0;
        assert!((m - 1e5).abs() < 5.0 * 1e5 / (2000f64).sqrt(), "mean {m}");
        // 1 − p rounds to 1: the table saturates, and the limit still ends the search.
        let nil = GeometricGaps::new(1e-300);
        assert_eq!(nil.sample(&mut r, 512), 512);
        assert_eq!(tiny.sample(&mut r, 3), tiny.sample(&mut r, 3).min(3));
    }

    #[test]
    fn categorical_matches_its_weights() {
        assert!(Categorical::new(&[]).is_none());
        assert!(Categorical::new(&[0.0, 0.0]).is_none());
        assert!(Categorical::new(&[1.0, -1.0]).is_none());
        let w = [0.5, 0.25, 0.0, 0.25];
        let c = Categorical::new(&w).unwrap();
        let mut r = Rng::from_seed(2);
        let n = 100_000;
        let mut counts = [0u64; 4];
        for _ in 0..n {
            counts[c.sample(&mut r)] += 1;
        }
        assert_eq!(counts[2], 0);
        for (k, &q) in w.iter().enumerate().filter(|(_, q)| **q > 0.0) {
            let z = (counts[k] as f64 - n as f64 * q) / (n as f64 * q * (1.0 - q)).sqrt();
            assert!(z.abs() < 5.0, "k={k}: {} vs {}", counts[k], n as f64 * q);
        }
        let one = Categorical::new(&[3.0]).unwrap();
        assert_eq!(one.sample(&mut r), 0);
    }

    #[test]
    fn purposes_differ() {
        assert_ne!(purpose("mlm"), purpose("t5"));
        assert_eq!(purpose("mlm"), purpose("mlm"));
    }
}
