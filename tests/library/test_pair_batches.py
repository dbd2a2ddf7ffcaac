"""Masked sentence-pair batches made in one pass (``SentencePairDataset.__getitems__`` then an
``MLMCollator`` with token masking): the same arrays, bit for bit, as masking the materialised
rows, for every padding, budget, dtype and task, with a control that differs."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from lmobjectives import MLMCollator, SentencePairDataset, TokenCorpus
from lmobjectives._inputs import ExampleBatch
from lmobjectives.pairs import PairBatch

from conftest import CLS, MASK, PAD, SEP, UNK

KEYS = ["input_ids", "attention_mask", "labels", "next_sentence_label", "token_type_ids"]


@pytest.fixture(scope="module")
def corpus(small_tokenizer):
    g = np.random.default_rng(1)
    lengths = [list(g.integers(1, 25, size=int(g.integers(1, 20)))) for _ in range(120)]
    flat = [n for doc in lengths for n in doc]
    so = np.concatenate([[0], np.cumsum(flat)]).astype(np.int64)
    do = np.concatenate([[0], np.cumsum([len(d) for d in lengths])]).astype(np.int64)
    # Ids 0..59, specials included: [UNK], [PAD] and [MASK] inside the text are never selected.
    ids = g.integers(0, 60, size=int(so[-1])).astype(np.uint16)
    ids[g.random(ids.size) < 0.03] = UNK
    return TokenCorpus(ids, so, do, vocab_size=60, tokenizer=small_tokenizer)


def collator(seed, **kw):
    return MLMCollator(
        vocab_size=60,
        mask_token_id=MASK,
        pad_token_id=kw.pop("pad_token_id", PAD),
        special_token_ids=[CLS, SEP, UNK],
        seed=seed,
        **kw,
    )


def composed(ds, masker, indices):
    """The reference: the items one by one (``dataset[i]``), collated as a list of dicts."""
    return masker([ds[i] for i in indices])


CONFIGS = [
    {},
    {"exact_budget": True, "max_predictions": 5},
    {"exact_budget": True, "mlm_probability": 0.4, "dtype": "int32"},
    {"exact_budget": True, "position_sampling": "with_replacement", "random_replace_prob": 0.2},
    {"max_length": 40, "truncation": True, "pad_to_multiple_of": 8, "padding_side": "left"},
    {"max_length": 80, "padding": "max_length", "pad_token_id": 1, "exact_budget": True},
    {"recipe": "google-bert", "max_predictions": 7},
]


@pytest.mark.parametrize("task", ["nsp", "sop"])
@pytest.mark.parametrize("config", range(len(CONFIGS)))
def test_one_pass_equals_masking_the_rows(corpus, task, config):
    ds = SentencePairDataset(
        corpus, task, max_seq_length=64, seed=config, cls_token_id=CLS, sep_token_id=SEP
    )
    g = np.random.default_rng(config)
    for seed in range(4):
        ds.set_epoch(seed)
        # Distinct items (a repeated key warns), some counted from the end.
        chosen = g.choice(len(ds), size=int(g.integers(1, 40)), replace=False)
        indices = [int(i) - len(ds) * int(g.integers(0, 2)) for i in chosen]
        fast, slow = collator(seed, **CONFIGS[config]), collator(seed, **CONFIGS[config])
        batch = ds.__getitems__(indices)
        assert isinstance(batch, PairBatch) and not batch.materialised
        got = fast(batch)
        assert not batch.materialised  # built in one pass, never as ragged rows
        want = composed(ds, slow, indices)
        label = ds.label_name
        assert list(got) == [k.replace("next_sentence_label", label) for k in KEYS]
        for k in got:
            assert got[k].dtype == want[k].dtype, k
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)
        # Control: another collator seed masks other positions.
        other = collator(seed + 100, **CONFIGS[config])(ds.__getitems__(indices))
        assert not np.array_equal(other["labels"], got["labels"])
        np.testing.assert_array_equal(other["token_type_ids"], got["token_type_ids"])


def test_read_batches_and_other_units_take_the_rows(corpus):
    ds = SentencePairDataset(corpus, seed=2, cls_token_id=CLS, sep_token_id=SEP)
    batch = ds.__getitems__([5, 0, 9])
    assert len(batch) == 3 and set(batch.keys()) == {
        "input_ids",
        "token_type_ids",
        "next_sentence_label",
        "idx",
    }
    first = batch[0]  # reading it materialises the rows, as an ExampleBatch holds them
    assert batch.materialised
    np.testing.assert_array_equal(first["input_ids"], ds[5]["input_ids"])
    assert first["idx"] == ds[5]["idx"]
    got = collator(0)(batch)
    want = composed(ds, collator(0), [5, 0, 9])
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    clone = pickle.loads(pickle.dumps(ds.__getitems__([1, 2])))
    assert type(clone) is ExampleBatch
    np.testing.assert_array_equal(clone[1]["input_ids"], ds[2]["input_ids"])
    # A batch keeps its pass: a later set_epoch does not change it.
    kept = ds.__getitems__([4])
    before = ds[4]["input_ids"]
    ds.set_epoch(3)
    np.testing.assert_array_equal(kept[0]["input_ids"], before)


def test_word_units_and_the_allocator(corpus):
    tok_corpus = TokenCorpus.default()
    ds = SentencePairDataset(tok_corpus, max_seq_length=64, seed=0)
    masker = MLMCollator(tok_corpus.tokenizer, unit="word", seed=1)
    got = masker(ds.__getitems__(range(6)))
    want = composed(ds, MLMCollator(tok_corpus.tokenizer, unit="word", seed=1), range(6))
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    # The kernel writes into memory the caller gives (shared or pinned tensors).
    small = SentencePairDataset(corpus, seed=1, cls_token_id=CLS, sep_token_id=SEP)
    batch = small.__getitems__([0, 1, 2])
    masker = collator(0)._masker
    plain = batch.mlm_arrays(masker, seed=0)
    given = []

    def allocate(shape, dtype):
        given.append(np.full(shape, 7, dtype=dtype))
        return given[-1]

    into = batch.mlm_arrays(masker, seed=0, allocate=allocate)
    for a, b in zip(plain, into, strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.shares_memory(into[0], given[0])
    with pytest.raises(ValueError, match="allocate"):
        batch.mlm_arrays(masker, seed=0, allocate=lambda shape, dtype: np.zeros((3, 1, 1), dtype))


def test_bad_indices_and_ids_are_errors(corpus, small_tokenizer):
    ds = SentencePairDataset(corpus, seed=2, cls_token_id=CLS, sep_token_id=SEP)
    with pytest.raises(IndexError):
        ds.__getitems__([0, len(ds)])
    with pytest.raises(TypeError):
        ds.__getitems__([0.5])
    # An id outside the collator's vocabulary is named by row, as masking the rows names it.
    small = MLMCollator(vocab_size=30, mask_token_id=MASK, pad_token_id=PAD, seed=0)
    with pytest.raises(ValueError, match=r"input_ids.*row \d+"):
        small(ds.__getitems__(list(range(20))))


def test_ranges_read_as_their_items(corpus):
    """A ``range`` (read as one uint64 array) gives the instances of the same indices as a
    list, descending and stepped ranges included; a range reaching below 0 counts from the end,
    as a list does."""
    ds = SentencePairDataset(corpus, seed=4, cls_token_id=CLS, sep_token_id=SEP)
    n = len(ds)
    for r in [range(5), range(3, 40, 3), range(20, -1, -1), range(n - 1, n - 30, -7)]:
        got = ds.__getitems__(r)
        assert got.items.tolist() == ds.__getitems__(list(r)).items.tolist() == list(r)
    assert ds.__getitems__(range(2, -3, -1)).items.tolist() == [2, 1, 0, n - 1, n - 2]
    # Control: another range gives other instances.
    assert ds.__getitems__(range(1, 6)).items.tolist() != list(range(5))


def test_all_cpus_give_the_one_thread_batch(corpus):
    """``num_threads=0`` (all CPUs, a count read once per process) gives the index and the
    masked batches of one thread, call after call; another seed (control) does not."""
    kw = {"seed": 6, "cls_token_id": CLS, "sep_token_id": SEP}
    one = SentencePairDataset(corpus, num_threads=1, **kw)
    every = SentencePairDataset(corpus, num_threads=0, **kw)
    for name in ("a", "b", "label"):
        np.testing.assert_array_equal(one._index[name], every._index[name])
    indices = range(len(one))
    want = collator(3, num_threads=1)(one.__getitems__(indices))
    masker = collator(3, num_threads=0)
    for epoch in range(3):
        masker.set_epoch(0)
        got = masker(every.__getitems__(indices))
        for k in KEYS:
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"{k}, call {epoch}")
    other = collator(4, num_threads=0)(every.__getitems__(indices))
    assert not np.array_equal(other["input_ids"], want["input_ids"])
