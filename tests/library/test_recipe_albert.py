"""``recipe="albert"`` against :mod:`reference_albert` (ALBERT's ``create_pretraining_data.py``):
exactly where the reference is deterministic (candidate words, which SOP instances exist at
``short_seq_prob = 0``), in distribution where it is random; each test is paired with a control
(our own recipe) that the same test rejects."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
import reference_albert as ref
from recipe_rows import (
    CLS,
    MASK,
    PAD,
    SEP,
    continues,
    corpus,
    corpus_of,
    documents,
    observed_units,
    pair_rows,
    selected,
    short_documents,
    word_rows,
)
from recipe_stats import same_categories, same_distribution, same_proportion
from reference_google_bert import candidate_words, chunk_boundaries

from lmobjectives import MLMCollator, SentencePairDataset, _core

ROWS = 3000
SPECIALS = [PAD, CLS, SEP, MASK]  # ALBERT's candidates include [UNK], as Google's do


@pytest.fixture(scope="module")
def rows() -> list[list[int]]:
    """SOP instances of the embedded corpus."""
    return pair_rows("sop", ROWS, recipe="albert")


def albert(**kw) -> MLMCollator:
    return MLMCollator(
        corpus().tokenizer, recipe="albert", special_token_ids=SPECIALS, seed=4, **kw
    )


def reference_masks(rows, seed: int = 0):
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    return [
        ref.masked_lm(
            r,
            rng,
            np_rng,
            cls=CLS,
            sep=SEP,
            mask=MASK,
            vocab_size=corpus().vocab_size,
            continues=continues,
        )[1]
        for r in rows
    ]


def over_passes(collate, rows, passes: int = 3) -> list[list[int]]:
    out = []
    for epoch in range(passes):
        collate.set_epoch(epoch)
        out += selected(collate(rows), rows)
    return out


# -- masking ------------------------------------------------------------------------------------


def test_defaults_are_albert_flags():
    c = albert()
    assert (c.unit, c.exact_budget, c.replace_by) == ("ngram", True, "token")


def test_candidate_words_are_the_reference_list():
    rows = word_rows(600, seed=1)
    kw = {"mlm_probability": 1.0, "mask_replace_prob": 0.5, "random_replace_prob": 0.0}
    got = observed_units(albert(unit="word", replace_by="unit", **kw), rows)
    want = [{tuple(w) for w in candidate_words(r, CLS, SEP, continues, True)} for r in rows]
    assert got == want
    ours = MLMCollator(corpus().tokenizer, unit="word", special_token_ids=SPECIALS, **kw)
    assert observed_units(ours, rows) != want


def across_sep(rows, chosen) -> int:
    """Rows whose last token of A and first token of B are both masked (an n-gram across the
    middle [SEP], or two units side by side)."""
    count = 0
    for r, sel in zip(rows, chosen, strict=True):
        s = r.index(SEP)
        picked = set(sel)
        count += s - 1 in picked and s + 1 in picked
    return count


def test_ngrams_run_across_the_middle_sep(rows):
    want = reference_masks(rows) + reference_masks(rows, seed=1)
    got = over_passes(albert(), rows, 2)
    k_ref = across_sep(rows + rows, want)
    assert same_proportion(across_sep(rows + rows, got), len(got), k_ref, len(want))
    # Control: our n-grams stop at [SEP], so the two sides are masked together less often.
    ours = MLMCollator(corpus().tokenizer, unit="ngram", replace_by="token", seed=4)
    control = over_passes(ours, rows, 2)
    assert not same_proportion(across_sep(rows + rows, control), len(control), k_ref, len(want))


@pytest.mark.parametrize("kind", ["corpus", "split words"])
def test_predictions_per_row_follow_the_reference(rows, kind):
    """How far each row falls short of the budget ``round(0.15 · len(tokens))`` (n-grams are
    shortened, then skipped, near it) follows the reference's law; on these rows both almost
    always fill it exactly. Our own recipe counts the budget without [CLS]/[SEP] and keeps words
    whole, so it falls one short on many rows."""
    rows = rows if kind == "corpus" else word_rows(ROWS, seed=2)
    budgets = [max(1, round(0.15 * len(r))) for r in rows] * 3
    want = [len(p) for seed in range(3) for p in reference_masks(rows, seed)]

    def shortfall(collate):
        return [k - len(s) for k, s in zip(budgets, over_passes(collate, rows), strict=True)]

    reference = [k - n for k, n in zip(budgets, want, strict=True)]
    assert same_categories(shortfall(albert()), reference)
    ours = MLMCollator(corpus().tokenizer, unit="ngram", replace_by="token", seed=4)
    assert not same_categories(shortfall(ours), reference)


# -- SOP ----------------------------------------------------------------------------------------


def index_of(sub, recipe: str, short_seq_prob: float, epoch: int = 0) -> dict:
    return _core.build_pair_index(
        np.asarray(sub.ids),
        sub.sentence_offsets,
        sub.document_offsets,
        task="sop",
        max_seq_length=128,
        short_seq_prob=short_seq_prob,
        seed=9,
        epoch=epoch,
        recipe=recipe,
    )


def reference_chunks(sub, docs) -> list[tuple[int, int, int]]:
    """The reference's chunks as ``(document, first sentence, end sentence)`` (corpus
    sentence numbers), at the full target of 125 tokens."""
    do = sub.document_offsets
    return [
        (d, int(do[d]) + first, int(do[d]) + end)
        for d, doc in enumerate(docs)
        for first, end in chunk_boundaries(doc, 125)
    ]


def chunk_of_each_instance(sub, index: dict, chunks) -> Counter:
    """The chunk each instance was made from: the one holding the first token of the part of
    the pair that comes from the current document (A, or B when A and B were swapped)."""
    so, do = sub.sentence_offsets, sub.document_offsets

    def doc_of(token):
        return np.searchsorted(do, np.searchsorted(so, token, side="right") - 1, "right") - 1

    a, b = index["a"][:, 0], index["b"][:, 0]
    swapped = (index["label"] == 1) & (doc_of(a) == doc_of(b))
    token = np.where(swapped, b, a)
    sentence = np.searchsorted(so, token, side="right") - 1
    starts = np.array([first for _, first, _ in chunks])
    which = np.searchsorted(starts, sentence, side="right") - 1
    return Counter(chunks[i] for i in which.tolist())


def test_sop_instances_are_the_reference_chunks():
    """At ``short_seq_prob = 0`` nothing in SOP's chunking is random: the instances are exactly
    the reference's chunks, one each — single-sentence chunks (B from a random document)
    included. Our own recipe drops those."""
    sub = corpus().documents(0, 400)
    chunks = reference_chunks(sub, documents(sub))
    singles = sum(end == first + 1 for _, first, end in chunks)
    assert singles > 50
    index = index_of(sub, "albert", 0.0)
    assert chunk_of_each_instance(sub, index, chunks) == Counter(chunks)
    ours = index_of(sub, "lmobjectives", 0.0)
    assert len(ours["label"]) == len(chunks) - singles
    assert chunk_of_each_instance(sub, ours, chunks) != Counter(chunks)


def test_sop_instances_follow_the_reference_in_distribution():
    """At ``short_seq_prob = 0.1``: instances per pass, the swapped share and the lengths of A
    and B follow ALBERT's (9.7 % or so of its instances are single-sentence chunks)."""
    docs = short_documents(400)
    sub = corpus_of(docs)
    passes = 10
    rng = random.Random(0)
    want = [
        [x for d in range(len(docs)) for x in ref.document_instances(docs, d, 128, 0.1, rng)]
        for _ in range(passes)
    ]

    def ours(recipe):
        out = []
        ds = SentencePairDataset(sub, "sop", recipe=recipe, seed=6)
        for epoch in range(passes):
            ds.set_epoch(epoch)
            out.append(
                [
                    (
                        item["input_ids"][item["token_type_ids"] == 0][1:-1].tolist(),
                        item["input_ids"][item["token_type_ids"] == 1][:-1].tolist(),
                        int(item["sentence_order_label"]),
                    )
                    for item in (ds[i] for i in range(len(ds)))
                ]
            )
        return out

    assert compatible(ours("albert"), want)
    assert not compatible(ours("lmobjectives"), want)


def compatible(got_passes, want_passes) -> bool:
    n_got = np.array([len(p) for p in got_passes], dtype=float)
    n_want = np.array([len(p) for p in want_passes], dtype=float)
    se = np.sqrt(n_got.var(ddof=1) / len(n_got) + n_want.var(ddof=1) / len(n_want)) + 1e-9
    got = [x for p in got_passes for x in p]
    want = [x for p in want_passes for x in p]
    return (
        abs(n_got.mean() - n_want.mean()) / se < 5
        and same_proportion(sum(x[2] for x in got), len(got), sum(x[2] for x in want), len(want))
        and same_distribution([len(x[0]) for x in got], [len(x[0]) for x in want])
        and same_distribution([len(x[1]) for x in got], [len(x[1]) for x in want])
    )
