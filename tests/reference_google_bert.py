"""An independent restatement of Google BERT's data generation, for testing
``recipe="google-bert"``.

Restates ``create_pretraining_data.py`` of google-research/bert (commit eedf571):
``create_instances_from_document`` (target length, chunks of sentences, the split point, the
random next with its ten document draws and the unused sentences put back, ``truncate_seq_pair``)
and ``create_masked_lm_predictions`` (candidate list, whole-word grouping, the budget, the
80/10/10 draws per token, random words from the whole vocabulary). Written here from reading
that file, over token ids instead of strings; one ``random.Random`` draws everything, in the
reference's order. Nothing here imports lmobjectives.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

Document = Sequence[Sequence[int]]


def truncate_pair(a: list[int], b: list[int], max_tokens: int, rng: random.Random) -> None:
    """Trims the longer side (ties: B), one token at a time, from the front or the back with
    probability 1/2 each, until both fit in ``max_tokens``."""
    while len(a) + len(b) > max_tokens:
        side = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del side[0]
        else:
            side.pop()


def pick_other_document(n_docs: int, current: int, rng: random.Random) -> int:
    """Up to ten uniform draws among all documents; the last draw stands."""
    choice = current
    for _ in range(10):
        choice = rng.randint(0, n_docs - 1)
        if choice != current:
            break
    return choice


def random_continuation(document: Document, target: int, rng: random.Random) -> list[int]:
    """Sentences from a random one of ``document`` until ``target`` tokens are reached."""
    out: list[int] = []
    for sentence in document[rng.randint(0, len(document) - 1) :]:
        out.extend(sentence)
        if len(out) >= target:
            break
    return out


def document_instances(
    documents: Sequence[Document],
    index: int,
    max_seq_length: int,
    short_seq_prob: float,
    rng: random.Random,
) -> list[tuple[list[int], list[int], int]]:
    """The NSP instances ``(A, B, label)`` of document ``index`` (label 1 = B is a random
    next), drawn in the reference's order."""
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
            if len(chunk) == 1 or rng.random() < 0.5:
                label = 1
                other = pick_other_document(len(documents), index, rng)
                b = random_continuation(documents[other], target - len(a), rng)
                i -= len(chunk) - a_end  # the unused sentences start the next chunk
            else:
                label, b = 0, [t for s in chunk[a_end:] for t in s]
            truncate_pair(a, b, max_tokens, rng)
            out.append((a, b, label))
            chunk, length = [], 0
        i += 1
    return out


def chunk_boundaries(document: Document, target: int) -> list[tuple[int, int]]:
    """The sentence ranges ``[first, end)`` of a document's chunks when no chunk is ever put
    back (SOP, and NSP without random nexts): deterministic given the target length."""
    out, first, length = [], 0, 0
    for i, sentence in enumerate(document):
        length += len(sentence)
        if i == len(document) - 1 or length >= target:
            out.append((first, i + 1))
            first, length = i + 1, 0
    return out


def candidate_words(
    tokens: Sequence[int], cls: int, sep: int, continues: Callable[[int], bool], whole_word: bool
) -> list[list[int]]:
    """The candidate list: every position but [CLS]/[SEP], a continuation piece appended to the
    last candidate word (even across [SEP]) when whole-word masking is on."""
    words: list[list[int]] = []
    for position, token in enumerate(tokens):
        if token in (cls, sep):
            continue
        if whole_word and words and continues(token):
            words[-1].append(position)
        else:
            words.append([position])
    return words


def budget(n_tokens: int, masked_lm_prob: float, max_predictions: int) -> int:
    """``num_to_predict``: Python 3's ``round`` of ``p · len(tokens)``, at least 1, capped."""
    return min(max_predictions, max(1, round(n_tokens * masked_lm_prob)))


def replacement(token: int, mask: int, vocab_size: int, rng: random.Random) -> int:
    """80 % [MASK]; else half the time the token itself, half a uniformly random vocabulary
    word (special tokens included)."""
    if rng.random() < 0.8:
        return mask
    if rng.random() < 0.5:
        return token
    return rng.randint(0, vocab_size - 1)


def masked_lm(
    tokens: Sequence[int],
    rng: random.Random,
    *,
    cls: int,
    sep: int,
    mask: int,
    vocab_size: int,
    continues: Callable[[int], bool],
    whole_word: bool = False,
    masked_lm_prob: float = 0.15,
    max_predictions: int = 10**9,
) -> tuple[list[int], list[int]]:
    """``(output tokens, sorted masked positions)`` of ``create_masked_lm_predictions``."""
    words = candidate_words(tokens, cls, sep, continues, whole_word)
    rng.shuffle(words)
    output = list(tokens)
    k = budget(len(tokens), masked_lm_prob, max_predictions)
    chosen: list[int] = []
    for word in words:
        if len(chosen) >= k:
            break
        if len(chosen) + len(word) > k:
            continue
        for position in word:
            output[position] = replacement(tokens[position], mask, vocab_size, rng)
            chosen.append(position)
    return output, sorted(chosen)
