"""Shared data for the recipe tests: the embedded corpus as the references read it (documents
of sentences of ids), pair rows, and how a collator's units and treatments are observed."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from lmobjectives import IGNORE_INDEX, SentencePairDataset, TokenCorpus

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4


@functools.cache
def corpus() -> TokenCorpus:
    return TokenCorpus.default()


@functools.cache
def _documents() -> list[list[list[int]]]:
    c = corpus()
    ids = np.asarray(c.ids).tolist()
    so = c.sentence_offsets.tolist()
    do = c.document_offsets.tolist()
    return [
        [ids[so[s] : so[s + 1]] for s in range(do[d], do[d + 1])] for d in range(c.num_documents)
    ]


@functools.cache
def continuation_ids() -> frozenset[int]:
    """The ids whose piece starts with ``##`` (read from the vocabulary's strings, as the
    references do, not from the library's word-start table)."""
    vocab = corpus().tokenizer.get_vocab()
    return frozenset(i for piece, i in vocab.items() if piece.startswith("##"))


def continues(token: int) -> bool:
    return token in continuation_ids()


def documents(c: TokenCorpus) -> list[list[list[int]]]:
    """Every document of ``c`` as a list of sentences of ids."""
    if c is corpus():
        return _documents()
    ids = np.asarray(c.ids).tolist()
    so = c.sentence_offsets.tolist()
    do = c.document_offsets.tolist()
    return [
        [ids[so[s] : so[s + 1]] for s in range(do[d], do[d + 1])] for d in range(c.num_documents)
    ]


def corpus_of(docs: Sequence[Sequence[Sequence[int]]]) -> TokenCorpus:
    """A corpus of ``docs`` (lists of sentences of ids) with the embedded tokenizer."""
    sentences = [s for d in docs for s in d]
    ids = np.asarray([t for s in sentences for t in s], dtype=np.uint16)
    so = np.cumsum([0] + [len(s) for s in sentences]).astype(np.int64)
    do = np.cumsum([0] + [len(d) for d in docs]).astype(np.int64)
    return TokenCorpus(ids, so, do, corpus().vocab_size, corpus().tokenizer)


def short_documents(count: int, max_sentences: int = 40) -> list[list[list[int]]]:
    """The first ``count`` documents of the embedded corpus with at most ``max_sentences``
    sentences: pair statistics are then sums over many similar documents, not dominated by
    the few long ones (which make a pass's instances strongly dependent on each other)."""
    docs = [d for d in documents(corpus()) if 2 <= len(d) <= max_sentences]
    assert len(docs) >= count
    return docs[:count]


def pair_rows(task: str, n: int, *, recipe: str, max_seq_length: int = 128) -> list[list[int]]:
    """``n`` instances ``[CLS] A [SEP] B [SEP]`` of the embedded corpus."""
    ds = SentencePairDataset(corpus(), task, max_seq_length=max_seq_length, seed=1, recipe=recipe)
    assert len(ds) >= n
    return [ds[i]["input_ids"].tolist() for i in range(n)]


def word_rows(n: int, *, seed: int = 0, continuation: float = 0.35) -> list[list[int]]:
    """``n`` rows ``[CLS] A [SEP] B [SEP]`` (at most 128 tokens) of vocabulary pieces where a
    piece continues a word with probability ``continuation`` — B too may start inside a word,
    as it does after Google's truncation from the front. The embedded corpus's own vocabulary
    was trained on it, so its words are rarely split; these rows exercise the word rules."""
    g = np.random.default_rng(seed)
    cont = np.array(sorted(continuation_ids()))
    start = np.setdiff1d(np.arange(5, corpus().vocab_size), cont)
    rows = []
    for _ in range(n):
        la, lb = g.integers(8, 62, size=2)

        def side(k: int) -> list[int]:
            pieces = g.random(k) < continuation
            return np.where(pieces, g.choice(cont, k), g.choice(start, k)).tolist()

        rows.append([CLS, *side(la), SEP, *side(lb), SEP])
    return rows


def selected(batch: dict[str, Any], rows: Sequence[Sequence[int]]) -> list[list[int]]:
    """The labelled positions of each row."""
    labels = np.asarray(batch["labels"])
    return [
        np.flatnonzero(labels[i, : len(r)] != IGNORE_INDEX).tolist() for i, r in enumerate(rows)
    ]


def observed_units(collate: Any, rows: Sequence[Sequence[int]], epochs: int = 48) -> list[set]:
    """The units a collator masks, observed: with every candidate selected and one decision per
    unit (all [MASK] or all kept, probability 1/2 each), two positions are in the same unit iff
    they agree in every epoch (different units agree ``epochs`` times with probability
    ``2**-epochs``). Returns each row's units as a set of position tuples."""
    marks = []
    for epoch in range(epochs):
        collate.set_epoch(epoch)
        b = collate(rows)
        marks.append((np.asarray(b["input_ids"]) == MASK) & (np.asarray(b["labels"]) != -100))
    signature = np.zeros(marks[0].shape, dtype=np.uint64)
    for m in marks:
        signature = (signature << np.uint64(1)) | m.astype(np.uint64)
    labels = np.asarray(b["labels"])
    out = []
    for i, r in enumerate(rows):
        groups: dict[int, list[int]] = {}
        for t in np.flatnonzero(labels[i, : len(r)] != -100).tolist():
            groups.setdefault(int(signature[i, t]), []).append(t)
        out.append({tuple(g) for g in groups.values()})
    return out


def treatments(row: Sequence[int], output: Sequence[int], positions: Sequence[int]) -> list[str]:
    """What happened to each masked position: "mask", "keep" or "random"."""
    return [
        "mask" if output[t] == MASK else "keep" if output[t] == row[t] else "random"
        for t in positions
    ]


def mixed_share(
    rows: Sequence[Sequence[int]],
    outputs: Sequence[Sequence[int]],
    chosen: Sequence[Sequence[int]],
    words: Sequence[Sequence[Sequence[int]]],
) -> tuple[int, int]:
    """``(mixed, total)``: of the selected multi-token words, how many got more than one
    treatment."""
    mixed = total = 0
    for row, out, sel, row_words in zip(rows, outputs, chosen, words, strict=True):
        picked = set(sel)
        for word in row_words:
            if len(word) > 1 and word[0] in picked:
                total += 1
                mixed += len(set(treatments(row, out, word))) > 1
    return mixed, total
