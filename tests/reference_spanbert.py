"""An independent restatement of SpanBERT's span masking, for testing ``recipe="spanbert"``.

Restates ``pretraining/fairseq/data/masking.py`` of facebookresearch/SpanBERT (commit 0670d8b)
as the paper's run uses it (``--schemes ["pair_span"] --span-lower 1 --span-upper 10
--geometric-p 0.2 --mask-ratio 0.15 --replacement-method span``, ``--tagged-anchor-prob 0``):
``PairWithSpanMaskingScheme.mask`` (budget ``ceil(len · ratio)``; repeat: a span length from the
truncated geometric law, an anchor position uniformly at random — redrawn, length included, when
already masked — then the anchor's whole word and the following words up to the span length,
counting and running through words already masked, each token added until the budget is
reached, mid-word if need be), ``merge_intervals`` (touching spans merge) and ``span_masking``
(one 80/10/10 draw per merged span; a random replacement is a uniformly random token of the
training corpus, i.e. drawn by corpus frequency). Words follow ``BertDictionary.is_start_word``
(a piece starting with ``##`` continues a word). The masked sentence is the block without
[CLS]/[SEP] (``NoNSPSpanBertDataset``). Written here from reading those files; NumPy's
generator draws everything, as the reference's global ``np.random`` does. Nothing here imports
lmobjectives.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np


def length_law(p: float = 0.2, lower: int = 1, upper: int = 10) -> tuple[list[int], np.ndarray]:
    """Span lengths ``lower..upper`` (in words) with ``P(ℓ) ∝ p (1 − p)^(ℓ − lower)``."""
    lengths = list(range(lower, upper + 1))
    weights = np.array([p * (1 - p) ** (ell - lower) for ell in lengths])
    return lengths, weights / weights.sum()


def word_end(starts: Sequence[bool], position: int) -> int:
    """The position after the word that contains ``position`` (the next word start)."""
    end = position + 1
    while end < len(starts) and not starts[end]:
        end += 1
    return end


def word_start(starts: Sequence[bool], position: int) -> int:
    while position > 0 and not starts[position]:
        position -= 1
    return position


def span_mask(
    sentence: Sequence[int],
    continues: Callable[[int], bool],
    g: np.random.Generator,
    *,
    mask_ratio: float = 0.15,
    law: tuple[list[int], np.ndarray] | None = None,
) -> tuple[set[int], list[list[int]]]:
    """The masked positions of ``sentence`` and the spans ``[first, last]`` as recorded."""
    lengths, probs = law if law is not None else length_law()
    starts = [not continues(t) for t in sentence]
    n = len(sentence)
    k = math.ceil(n * mask_ratio)
    masked: set[int] = set()
    spans: list[list[int]] = []
    while len(masked) < k:
        want = int(g.choice(lengths, p=probs))
        anchor = int(g.integers(n))
        if anchor in masked:
            continue
        left = word_start(starts, anchor)
        right = word_end(starts, anchor)
        spans.append([left, left])
        for i in range(left, right):
            if len(masked) >= k:
                break
            masked.add(i)
            spans[-1][1] = i
        words = 1
        while words < want and right < n and len(masked) < k:
            left, right = right, word_end(starts, right)
            words += 1
            for i in range(left, right):
                if len(masked) >= k:
                    break
                masked.add(i)
                spans[-1][1] = i
    return masked, spans


def merge(spans: Sequence[Sequence[int]]) -> list[list[int]]:
    """Touching or overlapping ``[first, last]`` spans merged, in order."""
    merged: list[list[int]] = []
    for first, last in sorted(spans, key=lambda s: s[0]):
        if merged and merged[-1][1] + 1 >= first:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return merged


def replace_spans(
    sentence: Sequence[int],
    spans: Sequence[Sequence[int]],
    corpus_tokens: np.ndarray,
    mask: int,
    g: np.random.Generator,
) -> list[int]:
    """One draw per merged span: < 0.8 every token [MASK], < 0.9 every token a random corpus
    token (one draw each), else kept."""
    out = list(sentence)
    for first, last in merge(spans):
        u = g.random()
        for i in range(first, last + 1):
            if u < 0.8:
                out[i] = mask
            elif u < 0.9:
                out[i] = int(corpus_tokens[g.integers(len(corpus_tokens))])
    return out


def masked_block(
    block: Sequence[int],
    continues: Callable[[int], bool],
    corpus_tokens: np.ndarray,
    mask: int,
    g: np.random.Generator,
    mask_ratio: float = 0.15,
) -> tuple[list[int], list[int]]:
    """``(output, sorted masked positions)`` of one block."""
    masked, spans = span_mask(block, continues, g, mask_ratio=mask_ratio)
    return replace_spans(block, spans, corpus_tokens, mask, g), sorted(masked)
