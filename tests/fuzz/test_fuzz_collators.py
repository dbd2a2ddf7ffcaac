"""Fuzzing the collators and their units (issue 15): every case returns a batch that keeps
the objective's invariants, or raises a clean, typed error."""

from __future__ import annotations

import numpy as np
import pytest
from fuzz_harness import budget, run
from hypothesis import given
from hypothesis import strategies as st
from strategies import (
    EOS,
    MASK,
    PAD,
    SPECIALS,
    V,
    hostile_float,
    hostile_int,
    plain_rows,
    token_rows,
)

import lmobjectives as L

IGNORE = -100


def padding_kwargs():
    return st.fixed_dictionaries(
        {},
        optional={
            "pad_to_multiple_of": hostile_int(1, 16),
            "dtype": st.sampled_from(["int64", "int32", "int64", "int32", "int16"]),
        },
    )


# -- MLM -------------------------------------------------------------------------------------


def check_mlm(rows, b):
    ids, labels, att = b["input_ids"], b["labels"], b["attention_mask"]
    assert ids.shape == labels.shape == att.shape
    assert ((ids >= 0) & (ids < V)).all()
    assert ((labels == IGNORE) | ((labels >= 0) & (labels < V))).all()
    for r, row in enumerate(rows):
        n = len(row)
        assert att[r, :n].all() and not att[r, n:].any()
        sel = labels[r] != IGNORE
        assert not sel[n:].any(), "padding selected"
        orig = np.array(row + [PAD] * (ids.shape[1] - n))
        assert (labels[r][sel] == orig[sel]).all(), "labels are the original tokens"
        special = np.isin(orig, [PAD, MASK, *SPECIALS])
        assert not (sel & special).any(), "a special token selected"
        assert (ids[r][~sel] == orig[~sel]).all(), "unselected tokens unchanged"


@budget(900)
@given(
    rows=token_rows(),
    p=hostile_float(),
    unit=st.just("token"),
    extra=padding_kwargs(),
)
def test_mlm_collator(rows, p, unit, extra):
    def call():
        c = L.MLMCollator(
            vocab_size=V,
            mask_token_id=MASK,
            pad_token_id=PAD,
            special_token_ids=list(SPECIALS),
            mlm_probability=p,
            unit=unit,
            seed=3,
            **extra,
        )
        return c(rows)

    run("MLMCollator", call, lambda b: check_mlm(plain_rows(rows), b))


# Word starts for the unit tests: every id divisible by 3 (and every special) begins a word.
WORD_STARTS = [i % 3 == 0 or i < 5 for i in range(V)]


def check_whole_words(rows, b):
    """Word, span and n-gram units select whole words: a selected continuation token's word
    began at the selected token before it, and a selected word start's continuation tokens
    are selected too (a word never crosses a special token or the end of the row)."""
    labels = b["labels"]
    for r, row in enumerate(rows):
        sel = labels[r, : len(row)] != IGNORE
        for j in range(1, len(row)):
            inside = not WORD_STARTS[row[j]] and row[j - 1] not in (PAD, MASK, *SPECIALS)
            if inside:
                assert sel[j] == sel[j - 1], f"row {r}: the word at {j - 1}..{j} is split"


@budget(600)
@given(
    rows=token_rows(),
    p=hostile_float(),
    unit=st.sampled_from(["word", "span", "ngram"]),
    kw=st.fixed_dictionaries(
        {},
        optional={
            "replace_by": st.sampled_from(["unit", "token", "run", "other"]),
            "exact_budget": st.booleans(),
            "span_lower": hostile_int(1, 4),
            "span_upper": hostile_int(1, 12),
            "geometric_p": hostile_float(0.05, 0.95),
            "ngram": hostile_int(1, 4),
            "max_predictions": hostile_int(1, 20),
        },
    ),
)
def test_mlm_collator_units(rows, p, unit, kw):
    """The whole-word units (Google BERT's words, SpanBERT's spans, ALBERT's n-grams) under
    hostile options: MLM's invariants, and no word is ever split."""

    def call():
        c = L.MLMCollator(
            vocab_size=V,
            mask_token_id=MASK,
            pad_token_id=PAD,
            special_token_ids=list(SPECIALS),
            mlm_probability=p,
            unit=unit,
            word_starts=WORD_STARTS,
            seed=4,
            **kw,
        )
        return c(rows)

    def check(b):
        check_mlm(plain_rows(rows), b)
        check_whole_words(plain_rows(rows), b)

    run(f"MLMCollator(unit={unit!r})", call, check)


def test_the_whole_word_check_catches_split_words():
    """Control: token-level masking of the same rows splits words, and the check says so."""
    rng = np.random.default_rng(0)
    rows = [rng.integers(5, V, size=40).tolist() for _ in range(8)]
    kw = {"vocab_size": V, "mask_token_id": MASK, "pad_token_id": PAD, "seed": 4}
    kw |= {"word_starts": WORD_STARTS, "mlm_probability": 0.3}
    check_whole_words(rows, L.MLMCollator(unit="word", **kw)(rows))
    with pytest.raises(AssertionError, match="is split"):
        check_whole_words(rows, L.MLMCollator(unit="token", **kw)(rows))


@budget(500)
@given(
    kw=st.fixed_dictionaries(
        {},
        optional={
            "vocab_size": hostile_int(1, 2000),
            "mask_token_id": hostile_int(0, 10),
            "pad_token_id": hostile_int(0, 10),
            "max_length": hostile_int(1, 64),
            "span_lower": hostile_int(0, 5),
            "span_upper": hostile_int(0, 12),
            "max_predictions": hostile_int(0, 20),
            "mlm_probability": hostile_float(),
            "special_token_ids": st.lists(hostile_int(0, 20), max_size=3),
        },
    ),
)
def test_mlm_constructor(kw):
    base = {"vocab_size": V, "mask_token_id": MASK, "pad_token_id": PAD, "seed": 1}
    run("MLMCollator(...)", lambda: L.MLMCollator(**{**base, **kw})([[5, 6, 7, 8]]))


# -- T5 / UL2 / BART ----------------------------------------------------------------------------


def reconstruct(inputs, targets, sentinels):
    sset = set(sentinels)
    body = targets[:-1]
    out = []
    for x in inputs[:-1]:
        if x in sset:
            j = body.index(x) + 1
            while j < len(body) and body[j] not in sset:
                out.append(body[j])
                j += 1
        else:
            out.append(x)
    return out


def valid(b, i, key, mask):
    row = np.asarray(b[key][i])
    if key == "labels":
        return row[row != IGNORE].tolist()
    return row[np.asarray(b[mask][i]) == 1].tolist()


def check_span(rows, c, b):
    assert ((b["input_ids"] >= 0) & (b["input_ids"] < V)).all()
    for i, row in enumerate(rows):
        inputs = valid(b, i, "input_ids", "attention_mask")
        labels = valid(b, i, "labels", "decoder_attention_mask")
        assert (
            reconstruct(inputs, labels, c.sentinel_ids)
            == row[: len(reconstruct(inputs, labels, c.sentinel_ids))]
        )
        assert inputs[-1] == EOS and labels[-1] == EOS


@budget(700)
@given(
    rows=token_rows(vocab=800, min_len=1),
    density=hostile_float(0.01, 0.9),
    span=hostile_float(1.0, 6.0),
    extra=padding_kwargs(),
)
def test_t5_collator(rows, density, span, extra):
    def call():
        c = L.T5SpanCorruptionCollator(
            vocab_size=V,
            eos_token_id=EOS,
            pad_token_id=PAD,
            noise_density=density,
            mean_noise_span_length=span,
            seed=5,
            **extra,
        )
        return c, c(rows)

    def check(out):
        c, b = out
        check_span(plain_rows(rows), c, b)

    run("T5SpanCorruptionCollator", call, check)


@budget(400)
@given(rows=token_rows(vocab=800, min_len=1), extra=padding_kwargs(), length=hostile_int(8, 80))
def test_ul2_collator(rows, extra, length):
    def call():
        c = L.UL2Collator(
            vocab_size=V, eos_token_id=EOS, pad_token_id=PAD, input_length=length, seed=2, **extra
        )
        return c(rows)

    def check(b):
        assert ((b["input_ids"] >= 0) & (b["input_ids"] < V)).all()
        assert ((b["labels"] == IGNORE) | ((b["labels"] >= 0) & (b["labels"] < V))).all()

    run("UL2Collator", call, check)


@budget(600)
@given(
    rows=token_rows(min_len=1),
    mask_ratio=hostile_float(),
    extra=padding_kwargs(),
)
def test_bart_collator(rows, mask_ratio, extra):
    def call():
        c = L.BartDenoisingCollator(
            vocab_size=V,
            bos_token_id=0,
            eos_token_id=2,
            pad_token_id=1,
            mask_token_id=3,
            mask_ratio=mask_ratio,
            seed=4,
            **extra,
        )
        return c(rows)

    def check(b):
        assert ((b["input_ids"] >= 0) & (b["input_ids"] < V)).all()
        for i, row in enumerate(plain_rows(rows)):
            labels = b["labels"][i][b["labels"][i] != IGNORE].tolist()
            assert labels[1:-1] == row[: len(labels) - 2], "labels are the clean sequence"

    run("BartDenoisingCollator", call, check)


# -- contrastive --------------------------------------------------------------------------------


@st.composite
def padded_examples(draw):
    n = draw(st.integers(1, 4))
    width = draw(st.integers(1, 12))
    out = []
    for _ in range(n):
        k = draw(st.integers(0, width))
        ids = draw(st.lists(st.integers(5, 99), min_size=k, max_size=k)) + [PAD] * (width - k)
        mask = [1] * k + [0] * (width - k)
        ex = {"input_ids": ids, "attention_mask": mask}
        if draw(st.integers(0, 5)) == 0:
            ex["special_tokens_mask"] = [0] * draw(st.integers(0, width + 1))
        out.append(ex)
    return out


@budget(600)
@given(examples=padded_examples(), extra=padding_kwargs())
def test_contrastive_collator(examples, extra):
    def call():
        aug = L.Augmentation(token_deletion=0.2, substitution=0.3)
        c = L.ContrastivePairCollator(
            vocab_size=100, pad_token_id=PAD, anchor=aug, positive=aug, seed=9, **extra
        )
        return c(examples)

    def check(b):
        for view in ("anchor", "positive"):
            ids, mask = b[f"{view}_input_ids"], b[f"{view}_attention_mask"]
            for r, ex in enumerate(examples):
                real = sum(ex["attention_mask"])
                assert mask[r].sum() <= real, "padding augmented as content"
                assert (ids[r][mask[r] == 0] == PAD).all()

    run("ContrastivePairCollator", call, check)


# -- packing ------------------------------------------------------------------------------------


@budget(900)
@given(
    rows=token_rows(min_len=0),
    max_length=hostile_int(1, 64),
    layout=st.sampled_from(["rows", "flat"]),
    overflow=st.sampled_from(["error", "truncate", "split"]),
    dtype=st.sampled_from(["int64", "int32"]),
    vocab=st.sampled_from([None, V, 50]),
)
def test_pack_sequences(rows, max_length, layout, overflow, dtype, vocab):
    def call():
        return L.pack_sequences(
            rows,
            max_length=max_length,
            layout=layout,
            overflow=overflow,
            dtype=dtype,
            vocab_size=vocab,
        )

    def check(b):
        ids = b["input_ids"]
        if max_length is not None:  # (None: no limit, accepted)
            assert ids.shape[1] <= max_length, "a packed row is longer than max_length"
        assert (ids >= 0).all()
        if vocab is not None:
            assert (ids < vocab).all()
        tokens = sorted(x for r in plain_rows(rows) for x in r)
        packed = sorted(ids[b["attention_mask"] == 1].tolist())
        if overflow == "error":
            assert packed == tokens, "packing lost or invented tokens"
        else:
            assert set(packed) <= set(tokens)

    run("pack_sequences", call, check)
