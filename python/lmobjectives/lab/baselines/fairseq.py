"""fairseq's ``DenoisingDataset`` noising ported from torch to NumPy (fairseq itself is not
installable here): :class:`FairseqBartNoiser`, its random calls in :class:`NumpyRandom`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from lmobjectives import IGNORE_INDEX

__all__ = ["FairseqBartNoiser", "NumpyRandom"]


class NumpyRandom:
    """The random calls of :class:`FairseqBartNoiser`, over a ``numpy.random.Generator``
    (fairseq makes them with torch's global generator and, for rotation, NumPy's). Tests
    substitute an object with the same methods that replays recorded decisions."""

    def __init__(self, seed: int | None = None) -> None:
        self.g = np.random.default_rng(seed)

    def categorical(self, probs: np.ndarray, size: int) -> np.ndarray:
        return self.g.choice(len(probs), size=size, p=probs)

    def randperm(self, n: int) -> np.ndarray:
        return self.g.permutation(n)

    def uniform(self, size: int) -> np.ndarray:
        return self.g.random(size)

    def randint(self, low: int, high: int, size: int) -> np.ndarray:
        return self.g.integers(low, high, size=size)

    def random(self) -> float:
        return float(self.g.random())

    def randint_scalar(self, low: int, high: int) -> int:
        return int(self.g.integers(low, high))


class FairseqBartNoiser:
    """fairseq's ``DenoisingDataset`` noising (``fairseq/data/denoising_dataset.py``) ported
    line for line from torch to NumPy: ``permute_sentences``, ``add_whole_word_mask``
    (span-poisson / word / subword; ``replace_length`` −1, 0, 1), ``add_insertion_noise`` and
    ``add_rolling_noise``, applied per row in ``__getitem__``'s order, then a collate that pads
    on the right. Random calls go through ``rng`` (:class:`NumpyRandom` by default).

    A row is the source ``[BOS] tokens [EOS]`` (built from raw rows); ``word_starts`` is the
    per-id table (``None``: subword level); sentences end at ``full_stop_token_ids`` (fairseq's
    ``full_stop_index``, with the token before EOS forced to end one). Output as the
    lmobjectives collators: ``input_ids``, ``attention_mask``, ``labels`` (-100 on padding),
    ``decoder_input_ids`` (fairseq's ``prev_output_tokens``: the target with EOS moved to the
    front) and ``decoder_attention_mask``. fairseq also re-sorts a batch by source length; this
    port keeps the order.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        bos_token_id: int,
        eos_token_id: int,
        pad_token_id: int,
        mask_token_id: int,
        word_starts: np.ndarray | None = None,
        full_stop_token_ids: Any = (),
        mask_ratio: float = 0.3,
        random_ratio: float = 0.1,
        insert_ratio: float = 0.0,
        rotate_ratio: float = 0.0,
        permute_sentence_ratio: float = 1.0,
        poisson_lambda: float = 3.0,
        mask_length: str = "span-poisson",
        replace_length: int = 1,
        rng: Any = None,
        seed: int | None = None,
    ) -> None:
        self.vocab_size = vocab_size
        self.bos, self.eos, self.pad, self.mask_idx = (
            bos_token_id,
            eos_token_id,
            pad_token_id,
            mask_token_id,
        )
        self.full_stops = np.zeros(vocab_size, dtype=bool)
        self.full_stops[list(full_stop_token_ids)] = True
        self.mask_ratio = mask_ratio
        self.random_ratio = random_ratio
        self.insert_ratio = insert_ratio
        self.rotate_ratio = rotate_ratio
        self.permute_sentence_ratio = permute_sentence_ratio
        self.replace_length = replace_length
        if mask_length not in ("subword", "word", "span-poisson"):
            raise ValueError(f"mask_length: invalid {mask_length!r}")
        if mask_length == "subword" and replace_length not in (0, 1):
            raise ValueError("if using subwords, use replace-length=1 or 0")
        self.mask_whole_word = None if mask_length == "subword" else word_starts
        self.mask_span_distribution = None
        if mask_length == "span-poisson":
            lambda_to_the_k, e_to_the_minus_lambda, k_factorial = 1.0, math.exp(-poisson_lambda), 1
            ps = []
            for k in range(0, 128):
                ps.append(e_to_the_minus_lambda * lambda_to_the_k / k_factorial)
                lambda_to_the_k *= poisson_lambda
                k_factorial *= k + 1
                if ps[-1] < 0.0000001:
                    break
            probs = np.asarray(ps, dtype=np.float64)
            self.mask_span_distribution = probs / probs.sum()
        self.rng = rng if rng is not None else NumpyRandom(seed)

    # -- fairseq's methods (torch → NumPy) -------------------------------------------------

    def word_starts(self, source: np.ndarray) -> np.ndarray:
        if self.mask_whole_word is not None:
            is_word_start = self.mask_whole_word[source].astype(np.int64)
        else:
            is_word_start = np.ones(source.shape, dtype=np.int64)
        is_word_start[0] = 0
        is_word_start[-1] = 0
        return is_word_start

    def permute_sentences(self, source: np.ndarray, p: float = 1.0) -> np.ndarray:
        full_stops = self.full_stops[source].copy()
        full_stops[-2] = True
        sentence_ends = np.flatnonzero(full_stops[1:] & ~full_stops[:-1]) + 2
        result = source.copy()
        num_sentences = sentence_ends.shape[0]
        num_to_permute = math.ceil((num_sentences * 2 * p) / 2.0)
        substitutions = self.rng.randperm(num_sentences)[:num_to_permute]
        ordering = np.arange(0, num_sentences)
        ordering[substitutions] = substitutions[self.rng.randperm(num_to_permute)]
        index = 1
        for i in ordering:
            sentence = source[(sentence_ends[i - 1] if i > 0 else 1) : sentence_ends[i]]
            result[index : index + sentence.shape[0]] = sentence
            index += sentence.shape[0]
        return result

    # long: fairseq's add_whole_word_mask ported line for line; kept whole to diff against it
    def add_whole_word_mask(self, source: np.ndarray, p: float) -> np.ndarray:
        is_word_start = self.word_starts(source)
        # fairseq: math.ceil(is_word_start.float().sum() * p) — a float32 product.
        num_to_mask = math.ceil(np.float32(is_word_start.sum()) * np.float32(p))
        num_inserts = 0
        if num_to_mask == 0:
            return source
        if self.mask_span_distribution is not None:
            probs = self.mask_span_distribution
            lengths = self.rng.categorical(probs, num_to_mask)
            cum_length = np.cumsum(lengths)
            while cum_length[-1] < num_to_mask:
                lengths = np.concatenate([lengths, self.rng.categorical(probs, num_to_mask)])
                cum_length = np.cumsum(lengths)
            i = 0
            while cum_length[i] < num_to_mask:
                i += 1
            lengths[i] = num_to_mask - (0 if i == 0 else cum_length[i - 1])
            num_to_mask = i + 1
            lengths = lengths[:num_to_mask]
            lengths = lengths[lengths > 0]
            num_inserts = num_to_mask - lengths.shape[0]
            num_to_mask -= num_inserts
            if num_to_mask == 0:
                return self.add_insertion_noise(source, num_inserts / source.shape[0])
        else:
            lengths = np.ones((num_to_mask,), dtype=np.int64)
        word_starts = np.flatnonzero(is_word_start)
        indices = word_starts[self.rng.randperm(word_starts.shape[0])[:num_to_mask]]
        mask_random = self.rng.uniform(num_to_mask) < self.random_ratio
        source = source.copy()
        source_length = source.shape[0]
        to_keep = np.ones(source_length, dtype=bool)
        is_word_start[-1] = 255  # acts as a long length, so spans don't go over the end
        if self.replace_length == 0:
            to_keep[indices] = False
        else:
            source[indices] = self.mask_idx
            source[indices[mask_random]] = self.rng.randint(
                1, self.vocab_size, int(mask_random.sum())
            )
        if self.mask_span_distribution is not None:
            lengths = lengths - 1
            while indices.shape[0] > 0:
                lengths = lengths - is_word_start[indices + 1]
                uncompleted = lengths >= 0
                indices = indices[uncompleted] + 1
                mask_random = mask_random[uncompleted]
                lengths = lengths[uncompleted]
                if self.replace_length != -1:
                    to_keep[indices] = False
                else:
                    source[indices] = self.mask_idx
                    source[indices[mask_random]] = self.rng.randint(
                        1, self.vocab_size, int(mask_random.sum())
                    )
        else:
            while indices.shape[0] > 0:
                uncompleted = is_word_start[indices + 1] == 0
                indices = indices[uncompleted] + 1
                mask_random = mask_random[uncompleted]
                if self.replace_length != -1:
                    to_keep[indices] = False
                else:
                    source[indices] = self.mask_idx
                    source[indices[mask_random]] = self.rng.randint(
                        1, self.vocab_size, int(mask_random.sum())
                    )
        source = source[to_keep]
        if num_inserts > 0:
            source = self.add_insertion_noise(source, num_inserts / source.shape[0])
        return source

    def add_insertion_noise(self, tokens: np.ndarray, p: float) -> np.ndarray:
        if p == 0.0:
            return tokens
        num_tokens = len(tokens)
        n = math.ceil(num_tokens * p)
        noise_indices = self.rng.randperm(num_tokens + n - 2)[:n] + 1
        noise_mask = np.zeros(num_tokens + n, dtype=bool)
        noise_mask[noise_indices] = True
        result = np.full(n + len(tokens), -1, dtype=np.int64)
        num_random = math.ceil(n * self.random_ratio)
        result[noise_indices[num_random:]] = self.mask_idx
        result[noise_indices[:num_random]] = self.rng.randint(1, self.vocab_size, num_random)
        result[~noise_mask] = tokens
        assert (result >= 0).all()
        return result

    def add_rolling_noise(self, tokens: np.ndarray) -> np.ndarray:
        offset = self.rng.randint_scalar(1, max(1, tokens.shape[-1] - 1) + 1)
        return np.concatenate(
            (tokens[0:1], tokens[offset:-1], tokens[1:offset], tokens[-1:]), axis=0
        )

    def noise(self, source: np.ndarray) -> np.ndarray:
        """``__getitem__``'s noising of one source ``[BOS] … [EOS]``."""
        if self.permute_sentence_ratio > 0.0:
            source = self.permute_sentences(source, self.permute_sentence_ratio)
        if self.mask_ratio > 0:
            source = self.add_whole_word_mask(source, self.mask_ratio)
        if self.insert_ratio > 0:
            source = self.add_insertion_noise(source, self.insert_ratio)
        if self.rotate_ratio > 0.0 and self.rng.random() < self.rotate_ratio:
            source = self.add_rolling_noise(source)
        return source

    def __call__(self, examples: Any) -> dict[str, np.ndarray]:
        if isinstance(examples, np.ndarray):
            rows = list(examples)
        else:
            rows = [ex["input_ids"] if isinstance(ex, Mapping) else ex for ex in examples]
        targets = [
            np.concatenate([[self.bos], np.asarray(r, dtype=np.int64), [self.eos]]) for r in rows
        ]
        sources = [self.noise(t) for t in targets]
        b = len(rows)
        wi, wt = max(map(len, sources)), max(map(len, targets))
        input_ids = np.full((b, wi), self.pad, dtype=np.int64)
        attention = np.zeros((b, wi), dtype=np.int64)
        labels = np.full((b, wt), IGNORE_INDEX, dtype=np.int64)
        prev = np.full((b, wt), self.pad, dtype=np.int64)
        decoder_attention = np.zeros((b, wt), dtype=np.int64)
        for i, (s, t) in enumerate(zip(sources, targets, strict=True)):
            input_ids[i, : len(s)] = s
            attention[i, : len(s)] = 1
            labels[i, : len(t)] = t
            prev[i, 0] = t[-1]  # move_eos_to_beginning
            prev[i, 1 : len(t)] = t[:-1]
            decoder_attention[i, : len(t)] = 1
        return {
            "input_ids": input_ids,
            "attention_mask": attention,
            "labels": labels,
            "decoder_input_ids": prev,
            "decoder_attention_mask": decoder_attention,
        }
