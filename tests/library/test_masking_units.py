"""Whole-word, span and n-gram masking: boundaries, budgets, laws, decisions, parity."""

from __future__ import annotations

import math

import numpy as np
import pytest

import lmobjectives
from lmobjectives import MLMCollator, _core
from lmobjectives._word_starts import word_start_table

import reference_streams as ref
from conftest import CLS, MASK, PAD, SEP, UNK, VOCAB

SPECIAL_IDS = [PAD, UNK, CLS, SEP, MASK]
# ids 5..599 begin a word; 600..999 continue one (like WordPiece "##" pieces).
STARTS = np.arange(VOCAB) < 600


def make_word_rows(n_rows: int, lo: int, hi: int, seed: int = 0) -> list[list[int]]:
    """Rows `[CLS] words.. [SEP]`; each word is a start id and 0-3 continuation ids."""
    g = np.random.default_rng(seed)
    rows = []
    for n_words in g.integers(lo, hi + 1, size=n_rows):
        row = [CLS]
        for _ in range(n_words):
            row.append(int(g.integers(5, 600)))
            row.extend(int(x) for x in g.integers(600, VOCAB, size=int(g.integers(0, 4))))
        rows.append([*row, SEP])
    return rows


def words_of(row: list[int]) -> list[range]:
    out, start = [], None
    for t, x in enumerate(row):
        if x in SPECIAL_IDS:
            if start is not None:
                out.append(range(start, t))
            start = None
        elif STARTS[x] or start is None:
            if start is not None:
                out.append(range(start, t))
            start = t
    if start is not None:
        out.append(range(start, len(row)))
    return out


def collator(**kw) -> MLMCollator:
    base = {
        "vocab_size": VOCAB,
        "mask_token_id": MASK,
        "pad_token_id": PAD,
        "special_token_ids": SPECIAL_IDS,
        "word_starts": STARTS,
        "seed": 7,
    }
    base.update(kw)
    return MLMCollator(**base)


def budget(n: int, p: float = 0.15) -> int:
    return 0 if n == 0 or p == 0 else min(n, max(1, round(p * n)))


# -- word boundaries ------------------------------------------------------------------------


def test_word_table_from_wordpiece_sentencepiece_and_byte_bpe():
    from tokenizers import Tokenizer, models

    wp = Tokenizer(models.WordPiece({"[UNK]": 0, "play": 1, "##ing": 2, ",": 3}, unk_token="[UNK]"))
    wp.add_special_tokens(["[UNK]"])
    assert word_start_table(wp).tolist() == [True, True, False, True]

    pieces = ["<unk>", "▁play", "ing", "12", "€", "ü", "ab", "-", "▁x", "日本"]
    sp = Tokenizer(models.Unigram([(p, -1.0) for p in pieces], unk_id=0))
    sp.add_special_tokens(["<unk>"])
    table = word_start_table(sp, sentencepiece_rule="albert")
    # ALBERT's rule: ▁ or < starts; lone ASCII punctuation, € and £ start; any character that
    # is not an English letter or punctuation (digits, ü, CJK) starts; plain letters continue.
    want = {
        "▁play": True,
        "ing": False,
        "12": True,
        "€": True,
        "ü": True,
        "ab": False,
        "-": True,
        "▁x": True,
        "日本": True,
    }
    for piece, start in want.items():
        assert table[sp.token_to_id(piece)] == start, piece

    bpe = Tokenizer(models.BPE({"<s>": 0, "Ġhello": 1, "world": 2, "Ġthe": 3, ",": 4}, []))
    bpe.add_special_tokens(["<s>"])
    assert word_start_table(bpe).tolist() == [True, True, False, True, False]

    unknown = Tokenizer(models.WordLevel({"a": 0, "b": 1}, unk_token="a"))
    with pytest.raises(ValueError, match="word starts"):
        word_start_table(unknown)


def test_real_tokenizer_word_ids_and_vocabulary_table_agree():
    """On WordPiece text, a fast tokenizer's word_ids() and the ## table cut the same words,
    so the masks are identical."""
    from lmobjectives.lab.baselines.huggingface import hf_tokenizer

    corpus = lmobjectives.TokenCorpus.default()
    fast = hf_tokenizer(corpus.tokenizer)
    texts = [corpus.tokenizer.decode(corpus.sentence(s).tolist()) for s in range(200, 232)]
    enc = fast(texts)
    with_ids = [
        {"input_ids": ids, "word_ids": enc.word_ids(i)} for i, ids in enumerate(enc["input_ids"])
    ]
    plain = [{"input_ids": ids} for ids in enc["input_ids"]]
    for unit in ("word", "span", "ngram"):
        a = MLMCollator(fast, unit=unit, seed=3)(with_ids)
        b = MLMCollator(fast, unit=unit, seed=3)(plain)
        np.testing.assert_array_equal(a["labels"], b["labels"])
        np.testing.assert_array_equal(a["input_ids"], b["input_ids"])


def test_word_ids_override_the_vocabulary():
    # Every token its own word by the table, but word_ids group pairs.
    row = [CLS, 10, 11, 12, 13, SEP]
    wid = [None, 0, 0, 1, 1, None]
    c = collator(unit="word", mlm_probability=0.5, word_starts=np.ones(VOCAB, dtype=bool))
    for seed in range(30):
        c.set_epoch(seed)
        lab = c([{"input_ids": row, "word_ids": wid}])["labels"][0]
        sel = (lab != -100).tolist()
        assert sel[1] == sel[2]
        assert sel[3] == sel[4]


# -- invariants and budgets -------------------------------------------------------------------


@pytest.mark.parametrize("unit", ["word", "span", "ngram"])
def test_words_are_masked_whole_and_within_budget(unit):
    rows = make_word_rows(64, 10, 120, seed=1)
    b = collator(unit=unit, mlm_probability=0.2)(rows)
    for i, row in enumerate(rows):
        lab = b["labels"][i, : len(row)]
        sel = lab != -100
        for w in words_of(row):
            assert len(set(sel[w].tolist())) == 1, f"word {w} split in row {i}"
        n = sum(x not in SPECIAL_IDS for x in row)
        used = int(sel.sum())
        assert used <= budget(n, 0.2)
        np.testing.assert_array_equal(lab[sel], np.asarray(row)[sel])
        assert not np.isin(np.asarray(row)[sel], SPECIAL_IDS).any()


def test_word_budget_is_greedy_in_random_order():
    rows = make_word_rows(200, 5, 60, seed=2)
    b = collator(unit="word", mlm_probability=0.3)(rows)
    for i, row in enumerate(rows):
        sel = b["labels"][i, : len(row)] != -100
        n = sum(x not in SPECIAL_IDS for x in row)
        used, k = int(sel.sum()), budget(n, 0.3)
        left = [len(w) for w in words_of(row) if not sel[w.start]]
        # Google's rule: a word that would overshoot is skipped, so whatever is left over is
        # smaller than every word not taken.
        assert used == k or all(used + n_w > k for n_w in left)


def test_span_and_ngram_fill_most_of_the_budget():
    rows = make_word_rows(200, 60, 120, seed=3)
    for unit in ("span", "ngram"):
        b = collator(unit=unit)(rows)
        used = (b["labels"] != -100).sum()
        want = sum(budget(sum(x not in SPECIAL_IDS for x in r)) for r in rows)
        assert 0.95 * want <= used <= want, (unit, used, want)


def test_max_predictions_caps_every_unit():
    rows = make_word_rows(50, 100, 150, seed=4)
    for unit in ("word", "span", "ngram"):
        b = collator(unit=unit, max_predictions=10)(rows)
        assert ((b["labels"] != -100).sum(axis=1) <= 10).all()


def test_ragged_batches_left_padding_and_pre_padded_arrays_work():
    rows = make_word_rows(16, 3, 40, seed=5)
    right = collator(unit="word")(rows)
    left = collator(unit="word", padding_side="left")(rows)
    for i, r in enumerate(rows):
        n = len(r)
        np.testing.assert_array_equal(left["labels"][i, -n:], right["labels"][i, :n])
    arr = np.full((len(rows), 200), PAD, dtype=np.int64)
    for i, r in enumerate(rows):
        arr[i, : len(r)] = r
    pre = collator(unit="word")(arr)
    np.testing.assert_array_equal(pre["labels"][:, : right["labels"].shape[1]], right["labels"])


# -- decisions -----------------------------------------------------------------------------


def test_unit_decisions_are_shared_by_the_whole_word():
    rows = make_word_rows(300, 40, 80, seed=6)
    b = collator(unit="word")(rows)
    masked_words = total_words = 0
    for i, row in enumerate(rows):
        ids = b["input_ids"][i]
        sel = b["labels"][i] != -100
        for w in words_of(row):
            if not sel[w.start]:
                continue
            total_words += 1
            is_mask = ids[w] == MASK
            assert is_mask.all() or not is_mask.any()
            masked_words += int(is_mask.all())
    z = (masked_words - 0.8 * total_words) / math.sqrt(total_words * 0.8 * 0.2)
    assert abs(z) < 5


def test_token_decisions_and_all_mask_option():
    rows = make_word_rows(300, 40, 80, seed=7)
    b = collator(unit="word", replace_by="token")(rows)
    sel = b["labels"] != -100
    k, m = int(sel.sum()), int((b["input_ids"][sel] == MASK).sum())
    assert abs((m - 0.8 * k) / math.sqrt(k * 0.16)) < 5
    # Hugging Face 5.x behaviour as an option: every chosen token becomes [MASK].
    hf = collator(unit="word", mask_replace_prob=1.0, random_replace_prob=0.0)(rows)
    assert (hf["input_ids"][hf["labels"] != -100] == MASK).all()


def test_per_word_bernoulli_selects_words_at_rate_p():
    rows = make_word_rows(300, 40, 80, seed=8)
    b = collator(unit="word", exact_budget=False, mlm_probability=0.15)(rows)
    chosen = total = 0
    for i, row in enumerate(rows):
        sel = b["labels"][i] != -100
        ws = words_of(row)
        total += len(ws)
        chosen += sum(bool(sel[w.start]) for w in ws)
    assert abs((chosen - 0.15 * total) / math.sqrt(total * 0.15 * 0.85)) < 5


# -- length laws ---------------------------------------------------------------------------


def chi2(counts: np.ndarray, probs: np.ndarray) -> float:
    expected = counts.sum() * probs
    return float(((counts - expected) ** 2 / expected).sum())


def chi2_critical(dof: int, z: float = 4.9) -> float:
    a = 2.0 / (9.0 * dof)
    return dof * (1 - a + z * math.sqrt(a)) ** 3


def test_span_length_law_is_the_renormalised_truncated_geometric():
    draws = _core._length_samples("span", 200_000, seed=1)
    counts = np.bincount(draws, minlength=11)[1:]
    ell = np.arange(1, 11)
    spanbert = 0.2 * 0.8 ** (ell - 1)
    spanbert /= spanbert.sum()
    assert chi2(counts, spanbert) < chi2_critical(9)
    assert abs(draws.mean() - 3.80) < 5 * draws.std() / math.sqrt(len(draws))
    # Control: Megatron's clipped (not renormalised) law must be rejected by the same test.
    megatron = 0.2 * 0.8 ** (ell - 1)
    megatron[-1] = 0.8**9
    assert chi2(counts, megatron) > chi2_critical(9)


def test_ngram_law_is_one_over_n():
    draws = _core._length_samples("ngram", 100_000, seed=2)
    counts = np.bincount(draws, minlength=4)[1:]
    albert = np.array([1, 1 / 2, 1 / 3])
    assert chi2(counts, albert / albert.sum()) < chi2_critical(2)
    assert chi2(counts, np.full(3, 1 / 3)) > chi2_critical(2)  # control: uniform is rejected
    longer = _core._length_samples("ngram", 100_000, seed=2, favor_shorter_ngram=False)
    counts = np.bincount(longer, minlength=4)[1:]
    assert chi2(counts, albert[::-1] / albert.sum()) < chi2_critical(2)


# -- exactness and determinism ------------------------------------------------------------------


CASES = [
    ("word", True, "unit"),
    ("word", False, "unit"),
    ("word", True, "token"),
    ("span", True, "unit"),
    ("ngram", True, "unit"),
    ("ngram", True, "token"),
]


@pytest.mark.parametrize(("unit", "exact", "replace_by"), CASES)
def test_kernel_matches_the_documented_algorithm_draw_for_draw(unit, exact, replace_by):
    rows = make_word_rows(6, 5, 40, seed=9)
    kw = {"mlm_probability": 0.3, "mask_replace_prob": 0.6, "random_replace_prob": 0.25}
    c = collator(unit=unit, exact_budget=exact, replace_by=replace_by, seed=11, **kw)
    c.set_epoch(2, batch_index=4)
    got = c(rows)
    law = None
    if unit == "span":
        law = ref.categorical(ref.span_weights(0.2, 1, 10))
    elif unit == "ngram":
        law = ref.categorical(ref.ngram_weights(3))
    for i, r in enumerate(rows):
        rng = ref.row_rng(11, 2, "mlm", batch=4, row=i)
        ids, labels = ref.mlm_units_row(
            r,
            rng,
            vocab_size=VOCAB,
            mask_id=MASK,
            specials=SPECIAL_IDS,
            starts=lambda t, r=r: bool(STARTS[r[t]]),
            kind=unit,
            p=0.3,
            mask_p=0.6,
            rand_p=0.25,
            exact=exact,
            law=law,
            replace_by_unit=replace_by == "unit",
        )
        assert got["labels"][i, : len(r)].tolist() == labels
        assert got["input_ids"][i, : len(r)].tolist() == ids


@pytest.mark.parametrize("unit", ["word", "span", "ngram"])
def test_same_batches_for_any_thread_count(unit):
    rows = make_word_rows(400, 100, 150, seed=10)  # ~190k tokens: 4 threads really run
    ref_batch = collator(unit=unit, num_threads=1)(rows)
    for threads in (2, 4):
        got = collator(unit=unit, num_threads=threads)(rows)
        np.testing.assert_array_equal(got["labels"], ref_batch["labels"])
        np.testing.assert_array_equal(got["input_ids"], ref_batch["input_ids"])


def test_units_pickle_and_train_a_transformers_model():
    import pickle

    import torch
    import transformers

    c = collator(unit="span", return_tensors="pt", geometric_p=0.3, span_upper=6)
    clone = pickle.loads(pickle.dumps(c))
    assert repr(clone) == repr(c)
    rows = make_word_rows(4, 10, 30, seed=11)
    batch = clone(rows)
    torch.testing.assert_close(batch["labels"], c(rows)["labels"], rtol=0, atol=0)
    cfg = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
    )
    torch.manual_seed(0)
    assert torch.isfinite(transformers.BertForMaskedLM(cfg)(**batch).loss)


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"unit": "sentence"}, ValueError, "unit"),
        ({"unit": "span", "exact_budget": False}, ValueError, "exact_budget"),
        ({"unit": "ngram", "exact_budget": False}, ValueError, "exact_budget"),
        ({"unit": "span", "geometric_p": 0.0}, ValueError, "geometric_p"),
        ({"unit": "span", "geometric_p": 1.5}, ValueError, "geometric_p"),
        ({"unit": "span", "span_lower": 5, "span_upper": 2}, ValueError, "span_lower"),
        ({"unit": "span", "span_lower": 0}, ValueError, "span_lower"),
        ({"unit": "ngram", "ngram": 0}, ValueError, "ngram"),
        ({"unit": "word", "replace_by": "word"}, ValueError, "replace_by"),
        ({"unit": "word", "word_starts": np.ones(10, dtype=bool)}, ValueError, "word_starts"),
        ({"unit": "word", "word_starts": np.ones(VOCAB)}, TypeError, "word_starts"),
        ({"unit": "word", "favor_shorter_ngram": 1}, TypeError, "favor_shorter_ngram"),
    ],
)
def test_bad_unit_configuration(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        collator(**kwargs)


def test_words_need_boundaries():
    c = MLMCollator(vocab_size=VOCAB, mask_token_id=MASK, pad_token_id=PAD, unit="word", seed=0)
    with pytest.raises(ValueError, match="word boundaries"):
        c([[CLS, 10, 11, SEP]])
    # word_ids in the examples are enough.
    b = c([{"input_ids": [CLS, 10, 11, SEP], "word_ids": [None, 0, 0, None]}])
    assert b["labels"].shape == (1, 4)


@pytest.mark.parametrize(
    ("examples", "exc", "match"),
    [
        ([{"input_ids": [CLS, 10, SEP], "word_ids": [None, 0]}], ValueError, "word_ids"),
        ([{"input_ids": [CLS, 10, SEP], "word_ids": []}], ValueError, "word_ids"),
        ([{"input_ids": [CLS, 10, SEP], "word_ids": [None, "a", None]}], TypeError, "word_ids"),
        ([{"input_ids": [CLS, 10, SEP], "word_ids": [None, 0.5, None]}], TypeError, "word_ids"),
    ],
)
def test_bad_word_ids(examples, exc, match):
    with pytest.raises(exc, match=match):
        collator(unit="word")(examples)
