"""An independent restatement of ALBERT's data generation, for testing ``recipe="albert"``.

Restates ``create_pretraining_data.py`` of google-research/albert (commit b772393):
``create_instances_from_document`` with its default ``random_next_sentence=False`` (sentence
order: a chunk of one sentence still takes a random document's sentences as B and is labelled
"swapped"; otherwise A and B are swapped with probability 1/2) and
``create_masked_lm_predictions`` with its defaults (``do_whole_word_mask``, ``ngram=3``,
``favor_shorter_ngram``, no permutation): n-grams of candidate words — the candidate list runs
across the middle [SEP] — in random order, each of ``n ~ P(n) ∝ 1/n`` words shortened while it
would overshoot the budget, skipped if a word is taken; 80/10/10 per token, random words from
the whole vocabulary. Written here from reading that file, over token ids. The helpers ALBERT's
file shares line for line with Google BERT's (truncation, the random document, the candidate
list, the budget, the per-token replacement) come from :mod:`reference_google_bert`. ALBERT draws
``n`` from NumPy's global generator and everything else from ``random.Random``; so does this
restatement (``np_rng``). Nothing here imports lmobjectives.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np
from reference_google_bert import (
    Document,
    budget,
    candidate_words,
    pick_other_document,
    random_continuation,
    replacement,
    truncate_pair,
)


def document_instances(
    documents: Sequence[Document],
    index: int,
    max_seq_length: int,
    short_seq_prob: float,
    rng: random.Random,
    *,
    random_next_sentence: bool = False,
) -> list[tuple[list[int], list[int], int]]:
    """The ``(A, B, label)`` instances of document ``index``; label 1 = swapped (or, for a
    single-sentence chunk or with ``random_next_sentence``, a random next)."""
    document = documents[index]
    max_tokens = max_seq_length - 3
    target = max_tokens
    if rng.random() < short_seq_prob:
        target = rng.randint(2, max_tokens)
    out = []
    chunk: list[Sequence[int]] = []
    length = 0
    i = 0
    while i < len(document):
        chunk.append(document[i])
        length += len(document[i])
        if i == len(document) - 1 or length >= target:
            a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
            a = [t for s in chunk[:a_end] for t in s]
            rest = [t for s in chunk[a_end:] for t in s]
            if len(chunk) == 1 or (random_next_sentence and rng.random() < 0.5):
                label = 1
                other = pick_other_document(len(documents), index, rng)
                b = random_continuation(documents[other], target - len(a), rng)
                i -= len(chunk) - a_end
            elif not random_next_sentence and rng.random() < 0.5:
                label, a, b = 1, rest, a
            else:
                label, b = 0, rest
            truncate_pair(a, b, max_tokens, rng)
            out.append((a, b, label))
            chunk, length = [], 0
        i += 1
    return out


def ngram_law(max_n: int = 3, favor_shorter: bool = True) -> np.ndarray:
    """P(n) for n = 1..max_n: proportional to 1/n (reversed without ``favor_shorter``)."""
    p = 1.0 / np.arange(1, max_n + 1)
    p /= p.sum()
    return p if favor_shorter else p[::-1]


def masked_lm(
    tokens: Sequence[int],
    rng: random.Random,
    np_rng: np.random.Generator,
    *,
    cls: int,
    sep: int,
    mask: int,
    vocab_size: int,
    continues: Callable[[int], bool],
    masked_lm_prob: float = 0.15,
    max_predictions: int = 10**9,
    max_n: int = 3,
) -> tuple[list[int], list[int]]:
    """``(output tokens, sorted masked positions)`` of ALBERT's n-gram masking."""
    words = candidate_words(tokens, cls, sep, continues, whole_word=True)
    output = list(tokens)
    if masked_lm_prob == 0:
        return output, []
    k = budget(len(tokens), masked_lm_prob, max_predictions)
    law = ngram_law(max_n)
    # Start i offers the n-grams words[i : i + n] for n = 1..max_n (shorter at the end).
    starts = [[words[i : i + n] for n in range(1, max_n + 1)] for i in range(len(words))]
    rng.shuffle(starts)
    taken: set[int] = set()
    chosen: list[int] = []
    for grams in starts:
        if len(chosen) >= k:
            break
        n = int(np_rng.choice(np.arange(1, max_n + 1), p=law))
        positions = [p for word in grams[n - 1] for p in word]
        while len(chosen) + len(positions) > k and n > 1:
            n -= 1
            positions = [p for word in grams[n - 1] for p in word]
        if len(chosen) + len(positions) > k or any(p in taken for p in positions):
            continue
        for position in positions:
            taken.add(position)
            output[position] = replacement(tokens[position], mask, vocab_size, rng)
            chosen.append(position)
    return output, sorted(chosen)
