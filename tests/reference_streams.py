"""A slow, pure-Python statement of the library's random streams and MLM algorithm.

Written from the documentation (rust/core/src/rng.rs, rust/core/src/masking.rs), used to
check the Rust kernels draw for draw.
"""

from __future__ import annotations

import itertools

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


# -- units: words, spans, n-grams (rust/core/src/units.rs) ---------------------------------


def categorical(weights: list[float]):
    """Index sampler by cumulative 64-bit thresholds (the last covers the rest)."""
    total = sum(weights)
    below, cum = [], 0.0
    for i, w in enumerate(weights):
        cum += w
        if i + 1 == len(weights):
            below.append(M64)
        else:
            below.append(min(int((cum / total) * 18446744073709551616.0), M64))

    def sample(rng: Xoshiro) -> int:
        u = rng.next_u64()
        for i, t in enumerate(below):
            if u < t:
                return i
        return len(below) - 1

    return sample


def span_weights(p: float, lower: int, upper: int) -> list[float]:
    return [p * (1.0 - p) ** (ell - 1) for ell in range(lower, upper + 1)]


def ngram_weights(max_n: int, favor_shorter: bool = True) -> list[float]:
    w = [1.0 / n for n in range(1, max_n + 1)]
    return w if favor_shorter else w[::-1]


def segment_words(n, eligible, starts, boundary=lambda t: False):
    """[(start, len, segment)] as the kernel cuts them."""
    words, seg, is_open = [], 0, False
    for t in range(n):
        if is_open and boundary(t):
            seg, is_open = seg + 1, False
        if not eligible(t):
            if is_open:
                seg, is_open = seg + 1, False
            continue
        if not is_open or starts(t):
            words.append([t, 1, seg])
            is_open = True
        else:
            words[-1][1] += 1
    return words


def shuffle(items: list, rng: Xoshiro) -> None:
    for i in range(len(items) - 1, 0, -1):
        j = rng.below(i + 1)
        items[i], items[j] = items[j], items[i]


def _room(words, i):
    seg, k = words[i][2], 0
    while i + k < len(words) and words[i + k][2] == seg:
        k += 1
    return k


def select_units(kind, words, budget, rng, *, p=0.15, exact=True, law=None, lower=1):
    """Selected (first word, count) pairs in position order."""
    if kind == "word" and not exact:
        if p <= 0:
            return []
        gap, out, n = gap_sampler(p), [], len(words)
        w = gap(rng)
        while w < n:
            out.append((w, 1))
            w += 1 + gap(rng)
        return out
    if kind == "word":
        order = list(range(len(words)))
        shuffle(order, rng)
        out, used = [], 0
        for w in order:
            if used >= budget:
                break
            if used + words[w][1] <= budget:
                used += words[w][1]
                out.append((w, 1))
        return sorted(out)
    if kind == "ngram":
        order = list(range(len(words)))
        shuffle(order, rng)
        taken, out, used = [False] * len(words), [], 0
        for i in order:
            if used >= budget:
                break
            n = min(1 + law(rng), _room(words, i))
            tokens = sum(w[1] for w in words[i : i + n])
            while n > 0 and used + tokens > budget:
                n -= 1
                tokens = sum(w[1] for w in words[i : i + n])
            if n == 0 or any(taken[i : i + n]):
                continue
            for k in range(i, i + n):
                taken[k] = True
            used += tokens
            out.append((i, n))
        return sorted(out)
    # span
    if not words:
        return []
    cum, total = [], 0
    for w in words:
        cum.append(total)
        total += w[1]
    taken, out, used = [False] * len(words), [], 0
    for _ in range(10 * len(words) + 100):
        if used >= budget:
            break
        want = lower + law(rng)
        j = rng.below(total)
        w = max(i for i, c in enumerate(cum) if c <= j)
        if taken[w]:
            continue
        room = min(_room(words, w), want)
        count = 0
        while count < room and not taken[w + count]:
            if used + words[w + count][1] > budget:
                break
            used += words[w + count][1]
            taken[w + count] = True
            count += 1
        if count:
            out.append((w, count))
    return sorted(out)


def mlm_units_row(
    row,
    rng,
    *,
    vocab_size,
    mask_id,
    specials,
    starts,
    kind,
    p,
    mask_p,
    rand_p,
    exact=True,
    max_predictions=None,
    law=None,
    lower=1,
    replace_by_unit=True,
):
    """Unit masking of one row exactly as the kernel does; returns (ids, labels)."""
    specials = set(specials)
    pool = [i for i in range(vocab_size) if i not in specials]
    ids, labels = list(row), [-100] * len(row)
    words = segment_words(len(row), lambda t: row[t] not in specials, lambda t: starts(t))
    n = sum(w[1] for w in words)
    budget = 0 if n == 0 or p == 0 else min(n, max(1, round(p * n)))
    if max_predictions is not None:
        budget = min(budget, max_predictions)
    units = select_units(kind, words, budget, rng, p=p, exact=exact, law=law, lower=lower)
    to_mask = chance(mask_p)
    total = mask_p + rand_p
    to_mask_or_random = chance(1.0 if total >= 1.0 - 1e-12 else total)
    for first, count in units:
        start = words[first][0]
        last = words[first + count - 1]
        span = range(start, last[0] + last[1])
        if replace_by_unit:
            u = rng.next_u64()
            for t in span:
                labels[t] = row[t]
                if to_mask(u):
                    ids[t] = mask_id
                elif to_mask_or_random(u):
                    ids[t] = pool[rng.below(len(pool))]
        else:
            for t in span:
                labels[t] = row[t]
                u = rng.next_u64()
                if to_mask(u):
                    ids[t] = mask_id
                elif to_mask_or_random(u):
                    ids[t] = pool[rng.below(len(pool))]
    return ids, labels


# -- sentence pairs (rust/core/src/pairs.rs) --------------------------------------------------


def pair_index(
    sentence_offsets,
    document_offsets,
    *,
    task,
    max_seq_length,
    short_seq_prob,
    random_next_prob,
    swap_prob,
    seed,
    epoch,
):
    """Every instance [(a_lo, a_hi), (b_lo, b_hi), label] of one pass, shuffled, exactly as
    the kernel builds them."""
    so, do = [int(x) for x in sentence_offsets], [int(x) for x in document_offsets]
    n_docs = len(do) - 1
    max_tokens = max_seq_length - 3
    short, half_random, swap = chance(short_seq_prob), chance(random_next_prob), chance(swap_prob)
    out = []
    for d in range(n_docs):
        rng = Xoshiro(hash_words([seed, epoch, purpose("pairs"), TAG_SAMPLE, d]))
        first, n = do[d], do[d + 1] - do[d]
        target = max_tokens
        if short(rng.next_u64()):
            target = 2 + rng.below(max_tokens - 1)
        chunk_start = chunk_sents = chunk_len = 0
        i = 0
        while i < n:
            if chunk_sents == 0:
                chunk_start = i
            chunk_sents += 1
            chunk_len += so[first + i + 1] - so[first + i]
            if i + 1 == n or chunk_len >= target:
                a_end = 1 + rng.below(chunk_sents - 1) if chunk_sents >= 2 else 1
                a = [so[first + chunk_start], so[first + chunk_start + a_end]]
                pair = None
                if task == "nsp":
                    want_random = chunk_sents == 1 or half_random(rng.next_u64())
                    if want_random and n_docs > 1:
                        target_b = max(0, target - (a[1] - a[0]))
                        r = rng.below(n_docs - 1)
                        if r >= d:
                            r += 1
                        lo, hi = do[r], do[r + 1]
                        if hi > lo:
                            start = lo + rng.below(hi - lo)
                            end, length = start, 0
                            while end < hi and (end == start or length < target_b):
                                length += so[end + 1] - so[end]
                                end += 1
                            i -= chunk_sents - a_end
                            pair = (a, [so[start], so[end]], 1)
                    elif chunk_sents >= 2:
                        pair = (a, [so[first + chunk_start + a_end], so[first + i + 1]], 0)
                elif chunk_sents >= 2:
                    b = [so[first + chunk_start + a_end], so[first + i + 1]]
                    pair = (b, a, 1) if swap(rng.next_u64()) else (a, b, 0)
                if pair is not None and pair[0][1] > pair[0][0] and pair[1][1] > pair[1][0]:
                    a, b, label = [list(pair[0]), list(pair[1]), pair[2]]
                    _truncate(a, b, max_tokens, rng)
                    out.append((tuple(a), tuple(b), label))
                chunk_sents = chunk_len = 0
            i += 1
    order = list(range(len(out)))
    rng = Xoshiro(hash_words([seed, epoch, purpose("pairs-order")]))
    for i in range(len(order) - 1, 0, -1):
        j = rng.below(i + 1)
        order[i], order[j] = order[j], order[i]
    return [out[k] for k in order]


def _truncate(a, b, max_tokens, rng):
    """Google's truncate_seq_pair: side counts in closed form, front counts as popcounts."""
    la, lb = a[1] - a[0], b[1] - b[0]
    excess = max(0, la + lb - max_tokens)
    if excess == 0:
        return
    ka = kb = 0
    if la > lb:
        d = min(excess, la - lb)
        ka, excess = d, excess - d
    elif lb > la:
        d = min(excess, lb - la)
        kb, excess = d, excess - d
    kb += (excess + 1) // 2
    ka += excess // 2
    for side, k in ((a, ka), (b, kb)):
        heads, left = 0, k
        while left >= 64:
            heads += bin(rng.next_u64()).count("1")
            left -= 64
        if left:
            heads += bin(rng.next_u64() & ((1 << left) - 1)).count("1")
        side[0] += heads
        side[1] -= k - heads


# -- denoising (rust/core/src/denoise) -------------------------------------------------------------


def _round(x: float) -> int:
    return round(x)  # Python rounds half to even, as the kernel


def t5_counts(length: int, d: float, mu: float) -> tuple[int, int, int]:
    """(noise, clean, spans) of T5's mask for a row of ``length`` tokens (drawn for
    max(length, 2), spans capped at the non-noise count)."""
    n = max(length, 2)
    noise = min(max(_round(n * d), 1), n - 1)
    clean = n - noise
    return noise, clean, min(max(1, _round(noise / mu)), clean)


def composition(rng: Xoshiro, n: int, m: int) -> list[int]:
    """Floyd's sample of m − 1 boundaries among the n − 1 slots → part lengths."""
    slots, k = n - 1, m - 1
    chosen: set[int] = set()
    for j in range(slots - k, slots):
        t = rng.below(j + 1)
        chosen.add(j if t in chosen else t)
    cuts = [0] + [c + 1 for c in sorted(chosen)] + [n]
    return [b - a for a, b in itertools.pairwise(cuts)]


def t5_runs(rng: Xoshiro, length: int, d: float, mu: float, roll: bool) -> list[tuple[int, int]]:
    """The noise runs (start, len) of one row, drawn as the kernel draws them."""
    noise, clean, spans = t5_counts(length, d, mu)
    noise_parts = composition(rng, noise, spans)
    clean_parts = composition(rng, clean, spans)
    runs, pos = [], 0
    for c, n in zip(clean_parts, noise_parts, strict=False):
        pos += c
        if pos >= length:
            break
        n = min(n, length - pos)
        runs.append((pos, n))
        pos += n
    if roll:
        offset = rng.below(length)
        if offset:
            rolled = []
            for s, n in runs:
                start = (s + offset) % length
                if start + n > length:
                    rolled += [(start, length - start), (0, start + n - length)]
                else:
                    rolled.append((start, n))
            runs = sorted(rolled)
    return runs


def t5_row(row, runs, sentinels, eos, mode=None):
    """(inputs, targets) of a row with noise ``runs``: sentinel k in front of span k."""
    inputs = [] if mode is None else [mode]
    targets = []
    pos = 0
    for k, (s, n) in enumerate(runs):
        inputs += [*list(row[pos:s]), sentinels[k]]
        targets += [sentinels[k], *row[s : s + n]]
        pos = s + n
    inputs += list(row[pos:])
    if not runs or runs[-1][0] + runs[-1][1] != len(row):
        targets.append(sentinels[len(runs)])
    return [*inputs, eos], [*targets, eos]


def mixture_pick(u: int, weights: list[float]) -> int:
    total, acc, thresholds = sum(weights), 0.0, []
    for w in weights:
        acc += w
        p = acc / total
        thresholds.append((1 << 64) - 1 if p >= 1.0 else int(p * 18446744073709551616.0))
    last = max(i for i, w in enumerate(weights) if w > 0)
    for i in range(last):
        if u < thresholds[i]:
            return i
    return last


def prefix_length(rng: Xoshiro, length: int, d: float) -> int:
    hi = length - 1
    lo = min(hi, max(1, _round((1 - 2 * d) * hi)))
    return lo + rng.below(hi - lo + 1)


class BartReference:
    """The BART kernel (rust/core/src/denoise/bart.rs) in Python, draw for draw; records its
    decisions (``self.log``) so they can be replayed into the fairseq port."""

    def __init__(
        self,
        *,
        vocab_size,
        bos,
        eos,
        pad,
        mask,
        specials=(),
        word_starts=None,
        full_stops=(),
        mask_ratio=0.3,
        random_ratio=0.1,
        insert_ratio=0.0,
        rotate_ratio=0.0,
        permute_ratio=1.0,
        poisson_lambda=3.0,
        mask_length="span-poisson",
        replace_length=1,
    ):
        import math

        import numpy as np

        self.math, self.np = math, np
        self.bos, self.eos, self.mask = bos, eos, mask
        special = {bos, eos, pad, mask, *specials}
        self.pool = [i for i in range(vocab_size) if i not in special]
        self.word_starts = None if mask_length == "subword" else word_starts
        self.full_stops = set(full_stops)
        self.mask_ratio, self.random_ratio = mask_ratio, random_ratio
        self.insert_ratio, self.rotate_ratio, self.permute_ratio = (
            insert_ratio,
            rotate_ratio,
            permute_ratio,
        )
        self.mask_length, self.replace_length = mask_length, replace_length
        self.random = chance(random_ratio)
        self.rotate = chance(rotate_ratio)
        pmf, term, k = [math.exp(-poisson_lambda)], math.exp(-poisson_lambda), 0.0
        while not (term < 1e-7 and k >= poisson_lambda):
            k += 1.0
            term *= poisson_lambda / k
            pmf.append(term)
        total, acc, self.cumulative = sum(pmf), 0.0, []
        for p in pmf:
            acc += p / total
            self.cumulative.append(
                (1 << 64) - 1 if acc >= 1.0 else int(acc * 18446744073709551616.0)
            )
        self.cumulative[-1] = (1 << 64) - 1
        self.log: dict = {}

    def _span_length(self, rng):
        u = rng.next_u64()
        for i, c in enumerate(self.cumulative[:-1]):
            if u < c:
                return i
        return len(self.cumulative) - 1

    def _random_id(self, rng):
        return self.pool[rng.below(len(self.pool))]

    def _ws(self, src, i):
        if i == 0 or i == len(src) - 1:
            return False
        return True if self.word_starts is None else bool(self.word_starts[src[i]])

    def noise(self, src, rng, sentence_starts=None):
        """Noises ``src`` (BOS … EOS, a list); ``sentence_starts`` aligned with src[1:-1]."""
        self.log = {"perms": [], "lengths": []}
        src = list(src)
        if self.permute_ratio > 0:
            src = self._permute(src, rng, sentence_starts)
        if self.mask_ratio > 0:
            src = self._mask(src, rng)
        if self.insert_ratio > 0:
            src = self._insert(src, self.insert_ratio, rng)
        if self.rotate_ratio > 0:
            hit = self.rotate(rng.next_u64())
            self.log["rotate"] = hit
            if hit:
                n = len(src)
                offset = 1 + rng.below(max(1, n - 1))
                self.log["offset"] = offset
                src = [src[0], *src[offset:-1], *src[1:offset], src[-1]]
        return src

    def _permute(self, src, rng, starts):
        n = len(src)
        ends = []
        if starts is not None:
            ends = [i + 1 for i, s in enumerate(starts) if s and 1 < i + 1 < n - 1] + [n - 1]
        elif self.full_stops:
            fs = [i == n - 2 or src[i] in self.full_stops for i in range(n)]
            ends = [j + 2 for j in range(n - 1) if fs[j + 1] and not fs[j]]
        else:
            ends = [n - 1]
        s = len(ends)
        k = min(s, self.math.ceil((s * 2 * self.permute_ratio) / 2.0))
        if s < 2:  # nothing to shuffle (fairseq's permutations are then trivial too)
            self.log["perms"] += [list(range(s)), list(range(k))]
            return src
        idx = list(range(s))
        for i in range(k):
            j = i + rng.below(s - i)
            idx[i], idx[j] = idx[j], idx[i]
        perm = list(range(k))
        for i in range(k - 1, 0, -1):
            j = rng.below(i + 1)
            perm[i], perm[j] = perm[j], perm[i]
        self.log["perms"] += [idx, perm]
        ordering = list(range(s))
        for i in range(k):
            ordering[idx[i]] = idx[perm[i]]
        out, at = list(src), 1
        for i in ordering:
            piece = src[(ends[i - 1] if i > 0 else 1) : ends[i]]
            out[at : at + len(piece)] = piece
            at += len(piece)
        return out

    def _mask(self, src, rng):
        np = self.np
        n = len(src)
        positions = [i for i in range(n) if self._ws(src, i)]
        budget = self.math.ceil(float(np.float32(len(positions)) * np.float32(self.mask_ratio)))
        if budget == 0:
            return src
        num_inserts = 0
        if self.mask_length == "span-poisson":
            lengths, total = [], 0
            while total < budget:
                ln = self._span_length(rng)
                lengths.append(ln)
                total += ln
            self.log["lengths"] = list(lengths)  # as drawn, before the last is cut
            lengths[-1] -= total - budget
            num_inserts = sum(1 for ln in lengths if ln == 0)
            lengths = [ln for ln in lengths if ln > 0]
            if not lengths:
                return self._insert(src, num_inserts / n, rng)
        else:
            lengths = [1] * budget
        m = min(len(lengths), len(positions))
        idx = list(range(len(positions)))
        for i in range(m):
            j = i + rng.below(len(idx) - i)
            idx[i], idx[j] = idx[j], idx[i]
        self.log["perms"].append(list(idx))
        starts = [positions[i] for i in idx[:m]]
        flags = (
            [self.random(rng.next_u64()) for _ in range(m)]
            if self.random_ratio > 0
            else [False] * m
        )
        self.log["flags"] = flags
        out, keep = list(src), [True] * n
        for j in sorted(range(m), key=lambda j: -starts[j]):
            s, flag = starts[j], flags[j]

            def replace(q, flag=flag):
                out[q] = self._random_id(rng) if flag else self.mask

            if self.replace_length == 0:
                keep[s] = False
            else:
                replace(s)
            q, remaining = s + 1, lengths[j] - 1
            while True:
                if self.mask_length == "span-poisson":
                    remaining -= 255 if q == n - 1 else int(self._ws(src, q))
                    more = remaining >= 0
                else:
                    more = q != n - 1 and not self._ws(src, q)
                if not more:
                    break
                if self.replace_length == -1:
                    replace(q)
                else:
                    keep[q] = False
                q += 1
        out = [x for x, k in zip(out, keep, strict=False) if k]
        if num_inserts:
            out = self._insert(out, num_inserts / len(out), rng)
        return out

    def _insert(self, tokens, p, rng):
        if p == 0:
            return tokens
        nt = len(tokens)
        n = self.math.ceil(nt * p)
        slots = nt + n - 2
        idx = list(range(slots))
        for i in range(n):
            j = i + rng.below(slots - i)
            idx[i], idx[j] = idx[j], idx[i]
        self.log["perms"].append(list(idx))
        num_random = self.math.ceil(n * self.random_ratio)
        out = [None] * (nt + n)
        for i, pos in enumerate(idx[:n]):
            out[pos + 1] = self._random_id(rng) if i < num_random else self.mask
        it = iter(tokens)
        return [next(it) if x is None else x for x in out]


class ReplayRandom:
    """The random calls of ``lab.baselines.fairseq.FairseqBartNoiser``, answered from a
    :class:`BartReference` log: the same decisions, in fairseq's call order (random ids are
    not replayed: use ``random_ratio=0``)."""

    def __init__(self, log: dict) -> None:
        import numpy as np

        self.np = np
        self.perms = list(log["perms"])
        self.lengths = list(log["lengths"])
        self.flags = list(log.get("flags", []))
        self.rotate = log.get("rotate")
        self.offset = log.get("offset")

    def categorical(self, probs, size):
        out = [self.lengths.pop(0) if self.lengths else 1 for _ in range(size)]
        return self.np.asarray(out, dtype=self.np.int64)

    def randperm(self, n):
        perm = self.perms.pop(0)
        assert len(perm) == n, (len(perm), n)
        return self.np.asarray(perm, dtype=self.np.int64)

    def uniform(self, size):
        flags, self.flags = self.flags[:size], self.flags[size:]
        assert len(flags) == size
        return self.np.asarray([0.0 if f else 1.0 for f in flags])

    def randint(self, low, high, size):
        assert size == 0, "random ids are not replayed"
        return self.np.zeros(0, dtype=self.np.int64)

    def random(self):
        return 0.0 if self.rotate else 1.0

    def randint_scalar(self, low, high):
        assert self.offset is not None
        assert low <= self.offset < high
        return self.offset

    def exhausted(self) -> bool:
        return not self.perms and not self.flags


# -- hard-negative mining (rust/core/src/mining.rs) ---------------------------------------------

MINING = purpose("mining")


def mining_sample(seed: int, key: int, window: int, k: int) -> list[int]:
    """Window positions drawn for a query with stream key ``key``: a partial Fisher–Yates
    shuffle of ``0..window`` with one ``below`` draw per pick, the picks sorted."""
    if window <= k:
        return list(range(window))
    rng = Xoshiro(hash_words([seed, 0, MINING, TAG_SAMPLE, key]))
    order = list(range(window))
    for i in range(k):
        j = i + rng.below(window - i)
        order[i], order[j] = order[j], order[i]
    return sorted(order[:k])


# -- contrastive augmentations (rust/core/src/contrastive.rs) -----------------------------------

AUGMENT = purpose("contrastive-augment")


def view_purpose(view: int) -> int:
    return hash_words([AUGMENT, view])


def alias_table(weights: list[float]) -> tuple[list[float], list[int]]:
    """Walker's alias table, built exactly as the Rust one (same float64 operations)."""
    n = len(weights)
    total = 0.0
    for w in weights:
        total += w
    prob = [w * n / total for w in weights]
    alias = [0] * n
    small = [i for i in range(n) if prob[i] < 1.0]
    large = [i for i in range(n) if not prob[i] < 1.0]
    while small and large:
        s = small.pop()
        big = large[-1]
        alias[s] = big
        prob[big] -= 1.0 - prob[s]
        if prob[big] < 1.0:
            large.pop()
            small.append(big)
    for i in large + small:
        prob[i] = 1.0
    return prob, alias


def augment_row(
    row,
    rng,
    *,
    vocab_size,
    specials,
    crop=0.0,
    span_deletion=0.0,
    token_deletion=0.0,
    reorder=0.0,
    substitution=0.0,
    insertion=0.0,
    unigram=None,
):
    """One augmented row, draw for draw (see the module documentation of contrastive.rs)."""
    specials = sorted(set(specials))
    table = None
    if unigram is not None:
        w = list(unigram)
        for s in specials:
            w[s] = 0.0
        table = alias_table(w)
    deletion, subst, insert = chance(token_deletion), chance(substitution), chance(insertion)

    def random_token():
        if table is not None:
            i = rng.below(len(table[0]))
            return i if rng.next_f64() < table[0][i] else table[1][i]
        t = rng.below(vocab_size - len(specials))
        for s in specials:
            if s <= t:
                t += 1
            else:
                break
        return t

    def segment(seg):
        n = len(seg)
        if crop > 0 and n > 1:
            keep = max(n - int(crop * n), 1)
            start = rng.below(n - keep + 1)
            seg = seg[start : start + keep]
        n = len(seg)
        if span_deletion > 0:
            d = min(int(span_deletion * n), max(n - 1, 0))
            if d > 0:
                start = rng.below(n - d + 1)
                seg = seg[:start] + seg[start + d :]
        if token_deletion > 0:
            n = len(seg)
            kept = [t for t in seg if not deletion(rng.next_u64())]
            if not kept and n > 0:
                kept = [seg[rng.below(n)]]
            seg = kept
        if reorder > 0:
            n = len(seg)
            span = int(reorder * n / 2.0)
            if span > 0 and 2 * span <= n:
                free = n - 2 * span
                i = rng.below(free + 2)
                j = rng.below(free + 1)
                if j >= i:
                    j += 1
                i, j = min(i, j), max(i, j)
                a, b = i, j + span - 1
                seg = list(seg)
                seg[a : a + span], seg[b : b + span] = seg[b : b + span], seg[a : a + span]
        if substitution > 0:
            seg = [random_token() if subst(rng.next_u64()) else t for t in seg]
        if insertion > 0:
            out = []
            for t in seg:
                out.append(t)
                if insert(rng.next_u64()):
                    out.append(random_token())
            seg = out
        return list(seg)

    out, i = [], 0
    while i < len(row):
        if row[i] in specials:
            out.append(row[i])
            i += 1
            continue
        j = i
        while j < len(row) and row[j] not in specials:
            j += 1
        out += segment(list(row[i:j]))
        i = j
    return out
