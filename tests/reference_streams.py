"""A slow, pure-Python statement of the library's random streams and MLM algorithm.

Written from the documentation (rust/core/src/rng.rs, rust/core/src/masking.rs), used to
check the Rust kernels draw for draw.
"""

from __future__ import annotations

M64 = (1 << 64) - 1
GOLDEN_GAMMA = 0x9E3779B97F4A7C15
TAG_BATCH = 0xB47C000000000001
TAG_SAMPLE = 0x5A3D000000000002


def mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def hash_words(words: list[int]) -> int:
    h = mix64(0x6A09E667F3BCC909 ^ len(words))
    for w in words:
        h = mix64(((h + GOLDEN_GAMMA) & M64) ^ w)
    return h


def purpose(name: str) -> int:
    h = 0xCBF29CE484222325
    for b in name.encode():
        h ^= b
        h = (h * 0x100000001B3) & M64
    return mix64(h)


def _rotl(x: int, k: int) -> int:
    return ((x << k) | (x >> (64 - k))) & M64


class Xoshiro:
    def __init__(self, seed: int) -> None:
        s, out = seed, []
        for _ in range(4):
            s = (s + GOLDEN_GAMMA) & M64
            out.append(mix64(s))
        self.s = out

    def next_u64(self) -> int:
        s = self.s
        result = (_rotl((s[0] + s[3]) & M64, 23) + s[0]) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 45)
        return result

    def next_f64(self) -> float:
        return (self.next_u64() >> 11) * (1.0 / (1 << 53))

    def below(self, n: int) -> int:
        m = self.next_u64() * n
        low = m & M64
        if low < n:
            threshold = (-n % (1 << 64)) % n
            while low < threshold:
                m = self.next_u64() * n
                low = m & M64
        return m >> 64


def chance(p: float):
    """`hit(x)` is true for a uniform 64-bit x with probability floor(p·2^64)/2^64."""
    if p >= 1.0:
        return lambda x: True
    below = int(p * 18446744073709551616.0) if p > 0 else 0
    return lambda x: x < below


def gap_sampler(p: float):
    """Geometric(p) gaps on {0, 1, ...} by inverse CDF over floor((1-p)^k 2^64)."""
    if p >= 1.0:
        return lambda rng: 0
    table, s = [], 1.0 - p
    while len(table) < 4096:
        t = int(s * 18446744073709551616.0)
        if t == 0:
            break
        table.append(t)
        s *= 1.0 - p
    k = len(table)

    def sample(rng: Xoshiro) -> int:
        total = 0
        while True:
            u = rng.next_u64()
            gap = sum(1 for t in table if u < t)
            if gap < k or k == 0:
                return total + gap
            total += k

    return sample


def row_rng(
    seed: int,
    epoch: int,
    name: str,
    *,
    batch: int | None = None,
    row: int = 0,
    sample: int | None = None,
) -> Xoshiro:
    if sample is not None:
        return Xoshiro(hash_words([seed, epoch, purpose(name), TAG_SAMPLE, sample]))
    return Xoshiro(hash_words([seed, epoch, purpose(name), TAG_BATCH, batch or 0, row]))


def mlm_row(
    row, rng, *, vocab_size, mask_id, specials, p, mask_p, rand_p, exact=False, max_predictions=None
):
    """Masks one row exactly as the kernel does; returns (ids, labels)."""
    specials = set(specials)
    pool = [i for i in range(vocab_size) if i not in specials]
    ids, labels = list(row), [-100] * len(row)

    to_mask = chance(mask_p)
    total = mask_p + rand_p
    to_mask_or_random = chance(1.0 if total >= 1.0 - 1e-12 else total)

    def replace(t):
        labels[t] = row[t]
        u = rng.next_u64()
        if to_mask(u):
            ids[t] = mask_id
        elif to_mask_or_random(u):
            ids[t] = pool[rng.below(len(pool))]

    eligible = [t for t, x in enumerate(row) if x not in specials]
    if not exact:
        if p <= 0:
            return ids, labels
        gap = gap_sampler(p)
        t = gap(rng)
        while t < len(row):
            if row[t] not in specials:
                replace(t)
            t += 1 + gap(rng)
        return ids, labels
    n = len(eligible)
    k = 0 if n == 0 or p == 0 else min(n, max(1, round(p * n)))
    if max_predictions is not None:
        k = min(k, max_predictions)
    cand = list(eligible)
    for i in range(k):
        j = i + rng.below(n - i)
        cand[i], cand[j] = cand[j], cand[i]
    for t in sorted(cand[:k]):
        replace(t)
    return ids, labels
