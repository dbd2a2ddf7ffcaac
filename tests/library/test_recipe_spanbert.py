"""``recipe="spanbert"`` against :mod:`reference_spanbert` (SpanBERT's
``pretraining/fairseq/data/masking.py``): the budget exactly, spans, runs, decisions and random
replacements in distribution; each test is paired with a control (our own span masking) that the
same test rejects."""

from __future__ import annotations

import math

import numpy as np
import pytest
import reference_spanbert as ref
from recipe_rows import CLS, MASK, SEP, continuation_ids, continues, corpus, selected
from recipe_stats import same_categories, same_proportion

from lmobjectives import MLMCollator

ROWS = 1500


def blocks(kind: str, n: int = ROWS, seed: int = 0) -> list[list[int]]:
    """Blocks of 20–510 tokens: runs of the embedded corpus, or pieces of which 35 % continue a
    word (the corpus's own vocabulary rarely splits its words)."""
    g = np.random.default_rng(seed)
    lengths = g.integers(20, 511, size=n)
    if kind == "corpus":
        ids = np.asarray(corpus().ids)
        starts = g.integers(0, len(ids) - 511, size=n)
        return [ids[s : s + k].tolist() for s, k in zip(starts, lengths, strict=True)]
    cont = np.array(sorted(continuation_ids()))
    start = np.setdiff1d(np.arange(5, corpus().vocab_size), cont)
    return [
        np.where(g.random(k) < 0.35, g.choice(cont, k), g.choice(start, k)).tolist()
        for k in lengths
    ]


def rows_of(bs: list[list[int]]) -> list[list[int]]:
    return [[CLS, *b, SEP] for b in bs]


def spanbert(**kw) -> MLMCollator:
    return MLMCollator(corpus().tokenizer, recipe="spanbert", token_counts=corpus(), seed=5, **kw)


def ours(**kw) -> MLMCollator:
    return MLMCollator(corpus().tokenizer, unit="span", replace_by="run", seed=5, **kw)


def masked_positions(collate: MLMCollator, bs: list[list[int]]) -> list[list[int]]:
    """Masked positions in block coordinates."""
    return [[t - 1 for t in s] for s in selected(collate(rows_of(bs)), rows_of(bs))]


def reference_positions(bs, seed: int = 0) -> list[list[int]]:
    g = np.random.default_rng(seed)
    return [sorted(ref.span_mask(b, continues, g)[0]) for b in bs]


def runs(positions: list[int]) -> list[tuple[int, int]]:
    """Maximal runs ``[first, last]`` of consecutive positions."""
    out: list[list[int]] = []
    for t in positions:
        if out and out[-1][1] == t - 1:
            out[-1][1] = t
        else:
            out.append([t, t])
    return [(a, b) for a, b in out]


def run_stats(bs, masked) -> dict[str, list[int]]:
    """Run lengths, runs per block, and whether each run cuts a word at its end."""
    lengths, per_block, cut = [], [], []
    for b, pos in zip(bs, masked, strict=True):
        rs = runs(pos)
        per_block.append(len(rs))
        for first, last in rs:
            lengths.append(min(last - first + 1, 40))
            cut.append(int(last + 1 < len(b) and continues(b[last + 1])))
    return {"lengths": lengths, "per_block": per_block, "cut": cut}


@pytest.fixture(scope="module", params=["corpus", "split words"])
def sample(request):
    bs = blocks(request.param)
    return bs, reference_positions(bs) + reference_positions(bs, seed=1)


def two_passes(collate, bs):
    out = []
    for epoch in range(2):
        collate.set_epoch(epoch)
        out += masked_positions(collate, bs)
    return out


# -- exact --------------------------------------------------------------------------------------


def test_budget_is_ceil_and_always_met(sample):
    bs, _ = sample
    want = [math.ceil(len(b) * 0.15) for b in bs]
    assert [len(p) for p in masked_positions(spanbert(), bs)] == want
    # Control: our budget rounds half to even and stops at whole words.
    control = [len(p) for p in masked_positions(ours(), bs)]
    assert np.mean([c != w for c, w in zip(control, want, strict=True)]) > 0.3


def test_one_decision_per_merged_run(sample):
    bs, _ = sample
    rows = rows_of(bs)
    b = spanbert()(rows)
    all_mask = total = 0
    for i, pos in enumerate(selected(b, rows)):
        ids = b["input_ids"][i]
        for first, last in runs(pos):
            masks = ids[first : last + 1] == MASK
            assert masks.all() or not masks.any()
            total += 1
            all_mask += int(masks.all())
    assert abs(all_mask - 0.8 * total) < 4.9 * math.sqrt(total * 0.8 * 0.2)
    # Control: per-token decisions mix the treatments inside runs.
    b = spanbert(replace_by="token")(rows)
    mixed = sum(
        0 < (b["input_ids"][i][first : last + 1] == MASK).sum() < last - first + 1
        for i, pos in enumerate(selected(b, rows))
        for first, last in runs(pos)
    )
    assert mixed > 100


# -- in distribution ----------------------------------------------------------------------------


@pytest.mark.parametrize("stat", ["lengths", "per_block"])
def test_runs_follow_the_reference(sample, stat):
    """Merged runs: their lengths in tokens (spans run on through masked words and the last is
    cut mid-word; touching spans merge) and how many a block has. Control: the span-length law
    of SpanBERT's own command-line default (``--geometric-p 0.3``) instead of the paper's
    0.2."""
    bs, want = sample
    reference = run_stats(bs + bs, want)[stat]
    assert same_categories(run_stats(bs + bs, two_passes(spanbert(), bs))[stat], reference)
    wrong = spanbert(geometric_p=0.3)
    assert not same_categories(run_stats(bs + bs, two_passes(wrong, bs))[stat], reference)


def test_run_lengths_differ_from_whole_word_spans():
    """Where words are often split, our whole-word spans (which stop at taken words and never
    cut one) give other run lengths: the same test rejects them. (On the corpus's own text,
    whose words are rarely split, the two laws are close; there the budget tells them apart.)"""
    bs = blocks("split words")
    reference = run_stats(bs + bs, reference_positions(bs) + reference_positions(bs, 1))
    control = run_stats(bs + bs, two_passes(ours(), bs))
    assert not same_categories(control["lengths"], reference["lengths"])


def test_runs_cut_words_as_the_reference_does(sample):
    bs, want = sample
    reference = run_stats(bs + bs, want)["cut"]
    got = run_stats(bs + bs, two_passes(spanbert(), bs))["cut"]
    assert same_proportion(sum(got), len(got), sum(reference), len(reference))
    control = run_stats(bs + bs, two_passes(ours(), bs))["cut"]
    assert sum(control) == 0
    if sum(reference) > 50:  # words are split often enough for the control to show
        assert not same_proportion(0, len(control), sum(reference), len(reference))


def test_random_replacements_follow_corpus_frequency():
    """A random replacement is a uniformly random token of the corpus (the reference's
    ``np.random.choice(tokens)``): ids in proportion to their counts."""
    bs = blocks("corpus", 300, seed=3)
    kw = {"mask_replace_prob": 0.0, "random_replace_prob": 1.0, "mlm_probability": 0.5}
    rows = rows_of(bs)

    def drawn(collate):
        b = collate(rows)
        return np.asarray(b["input_ids"])[np.asarray(b["labels"]) != -100]

    got = drawn(spanbert(**kw))
    ids = np.asarray(corpus().ids)
    want = ids[np.random.default_rng(0).integers(len(ids), size=len(got))]
    top = np.argsort(corpus().token_counts())[::-1][:200]

    def binned(x):
        return np.where(np.isin(x, top), x.astype(np.int64), -1).tolist()

    assert same_categories(binned(got), binned(want))
    control = drawn(MLMCollator(corpus().tokenizer, unit="span", replace_by="run", seed=5, **kw))
    assert not same_categories(binned(control), binned(want))
