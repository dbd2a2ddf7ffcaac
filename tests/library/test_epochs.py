"""The epoch in the setups users train with: set in the main process, read by the collator in
whichever process runs it (persistent DataLoader workers, fork and spawn); the warning when a
key comes twice in one epoch; global sample keys for shards; batches that read as lists of
examples (Trainer's column filter); word ids with -1 and NaN; RoBERTa-style positions."""

from __future__ import annotations

import copy
import pickle
import warnings

import numpy as np
import pytest
import torch

from lmobjectives import (
    CorpusChunks,
    MLMCollator,
    PackingCollator,
    RepeatedSampleKeyWarning,
    SentencePairDataset,
    TokenCorpus,
)
from lmobjectives._inputs import ExampleBatch

from conftest import CLS, MASK, PAD, SEP, VOCAB, make_rows

DataLoader = torch.utils.data.DataLoader

ROWS = make_rows(99, 12, 60, seed=5)
PLAIN = [{"input_ids": r} for r in ROWS]
KEYED = [{"input_ids": r, "idx": i} for i, r in enumerate(ROWS)]
BATCH = 9  # 11 batches: two workers get unequal shares, so a count carried over would show


def collator(**kw) -> MLMCollator:
    base = {"vocab_size": VOCAB, "mask_token_id": MASK, "pad_token_id": PAD, "seed": 11}
    base.update(kw)
    return MLMCollator(**base)


def epochs(loader, collate, n: int) -> list[list[np.ndarray]]:
    """Labels of every batch of ``n`` epochs, ``set_epoch`` called in the main process."""
    out = []
    for e in range(n):
        collate.set_epoch(e)
        out.append([np.asarray(b["labels"]) for b in loader])
    return out


def reference(data, n: int) -> list[list[np.ndarray]]:
    c = collator()
    return epochs(DataLoader(data, batch_size=BATCH, collate_fn=c), c, n)


def assert_same(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert len(x) == len(y)
        for p, q in zip(x, y, strict=True):
            np.testing.assert_array_equal(p, q)


# -- the epoch reaches every worker ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_persistent_workers_follow_set_epoch(context):
    data = PLAIN if context == "spawn" else KEYED  # spawn: the batch-keyed (harder) case
    ref = reference(data, 3)
    c = collator()
    loader = DataLoader(
        data,
        batch_size=BATCH,
        collate_fn=c,
        num_workers=2,
        persistent_workers=True,
        multiprocessing_context=context,
    )
    got = epochs(loader, c, 3)
    assert_same(got, ref)
    # New masks every epoch, in every batch.
    for e in (1, 2):
        assert not any(np.array_equal(a, b) for a, b in zip(got[0], got[e], strict=True))


@pytest.mark.slow
def test_fork_workers_without_idx_match_and_resume_mid_epoch():
    ref = reference(PLAIN, 2)
    c = collator()
    loader = DataLoader(
        PLAIN, batch_size=BATCH, collate_fn=c, num_workers=2, persistent_workers=True
    )
    assert_same(epochs(loader, c, 2), ref)
    # Resuming epoch 1 at batch 4: the sampler skips 4 batches, set_epoch says where it starts.
    c.set_epoch(1, batch_index=4)
    rest = DataLoader(PLAIN[4 * BATCH :], batch_size=BATCH, collate_fn=c, num_workers=2)
    assert_same([[np.asarray(b["labels"]) for b in rest]], [ref[1][4:]])


@pytest.mark.slow
def test_sentence_pair_epochs_reach_persistent_workers(pair_corpus):
    def run(workers: int) -> list[list[np.ndarray]]:
        ds = pairs(pair_corpus)
        c = collator(vocab_size=1 << 20, special_token_ids=[CLS, SEP])
        kw = {"num_workers": workers, "persistent_workers": workers > 0}
        loader = DataLoader(ds, batch_size=16, collate_fn=c, **kw)
        out = []
        for e in range(3):
            ds.set_epoch(e)
            c.set_epoch(e)
            out.append([np.asarray(b["input_ids"]) for b in loader])
        return out

    ref = run(0)
    assert_same(run(2), ref)
    assert not np.array_equal(ref[0][0], ref[1][0])  # a new pass of pairs each epoch


# -- the warning ---------------------------------------------------------------------------


def test_a_key_made_twice_in_one_epoch_warns_once():
    c = collator()
    c(KEYED[:8])
    with pytest.warns(RepeatedSampleKeyWarning, match=r"idx=3 came twice in epoch 0") as w:
        c(KEYED[3:10])
    message = str(w[0].message)
    assert "set_epoch(epoch)" in message and "EpochCallback" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c(KEYED[:8])  # shown once per collator


def test_fresh_keys_never_warn():
    c = collator()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for e in range(3):
            c.set_epoch(e)
            for start in range(0, len(KEYED), 8):
                c(KEYED[start : start + 8])
                c(ROWS[start : start + 8])  # batch keys count up
        c.set_epoch(3)
        c(KEYED[:8])
        c.set_epoch(3)  # a second pass over the same epoch starts afresh too
        c(KEYED[:8])


def test_a_key_twice_in_one_batch_warns():
    with pytest.warns(RepeatedSampleKeyWarning, match=r"idx=5 came twice"):
        collator()([KEYED[5], KEYED[6], KEYED[5]])


def test_evaluation_pauses_the_check_and_keeps_the_batch_count():
    train = collator()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train(ROWS[:8])
        train._streams.begin_evaluation()
        train(KEYED[:8])
        train(KEYED[:8])  # evaluation repeats its keys: no warning
        train(ROWS[8:16])
        train._streams.end_evaluation()
        second = train(ROWS[8:16])  # batch 1, as if evaluation had not happened
    alone = collator()
    alone(ROWS[:8])
    np.testing.assert_array_equal(second["labels"], alone(ROWS[8:16])["labels"])
    train(KEYED[:8])
    with pytest.warns(RepeatedSampleKeyWarning):
        train(KEYED[:8])  # checks are back on


@pytest.mark.slow
def test_a_repeated_pass_in_fresh_workers_is_caught():
    # Workers started for a second pass without set_epoch make batches 0, 1, ... again: the
    # key table lives in shared memory, so the new workers see the old pass's keys.
    c = collator()
    loader = DataLoader(PLAIN, batch_size=BATCH, collate_fn=c, num_workers=2)
    list(loader)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RepeatedSampleKeyWarning)  # forked workers inherit it
        with pytest.raises(RepeatedSampleKeyWarning, match=r"batch \d+ was made twice in epoch 0"):
            list(loader)
    c.set_epoch(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        list(loader)


# -- the shared cell -------------------------------------------------------------------------


def test_pickles_outside_a_process_start_are_snapshots():
    c = collator()
    c.set_epoch(4, batch_index=2)
    for twin in (pickle.loads(pickle.dumps(c)), copy.deepcopy(c)):
        assert twin.state_dict() == c.state_dict()
        np.testing.assert_array_equal(
            twin(ROWS[:4])["labels"], collator_at(4, 2)(ROWS[:4])["labels"]
        )
        twin.set_epoch(9)
        assert c.epoch == 4  # independent: its own cell
        assert c._streams._cell.read()[1] == 4


def collator_at(epoch: int, batch_index: int) -> MLMCollator:
    c = collator()
    c.set_epoch(epoch, batch_index)
    return c


# -- sentence pairs: global keys, batches as examples ----------------------------------------


@pytest.fixture(scope="module")
def pair_corpus(small_tokenizer):
    g = np.random.default_rng(1)
    docs = [list(g.integers(2, 30, size=int(g.integers(2, 12)))) for _ in range(120)]
    lengths = [n for d in docs for n in d]
    so = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    do = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
    ids = (np.arange(so[-1]) % 900 + 10).astype(np.uint32)
    return TokenCorpus(ids, so, do, vocab_size=1 << 20, tokenizer=small_tokenizer)


def pairs(corpus, **kw) -> SentencePairDataset:
    return SentencePairDataset(corpus, "nsp", cls_token_id=CLS, sep_token_id=SEP, seed=3, **kw)


@pytest.mark.parametrize("world", [2, 3])
def test_shards_keep_global_keys_and_masks(pair_corpus, world):
    whole = pairs(pair_corpus, epoch=2)
    c = collator(vocab_size=1 << 20, special_token_ids=[CLS, SEP])
    ref = {}
    for start in range(0, len(whole), 32):
        items = list(range(start, min(len(whole), start + 32)))
        batch = c(whole.__getitems__(items))
        for row, i in enumerate(items):
            ref[i] = (whole[i]["idx"], batch["labels"][row, : len(whole[i]["input_ids"])])
    seen = []
    for rank in range(world):
        shard = whole.shard(rank, world)
        c.set_epoch(0)
        batch = c(shard.__getitems__(range(len(shard))))
        for j in range(len(shard)):
            instance = j * world + rank
            key, labels = ref[instance]
            assert shard[j]["idx"] == key == (2 << 40) | instance
            np.testing.assert_array_equal(batch["labels"][j, : len(labels)], labels)
            seen.append(instance)
    assert sorted(seen) == list(range(len(whole)))


def test_dataset_batches_read_as_lists_of_items(pair_corpus):
    ds = pairs(pair_corpus)
    chunks = CorpusChunks(pair_corpus, 25, drop_last=False)
    for source in (ds, chunks):
        indices = [4, 0, len(source) - 1]
        batch = source.__getitems__(indices)
        assert isinstance(batch, ExampleBatch) and len(batch) == 3
        for got, i in zip(batch, indices, strict=True):
            want = source[i]
            assert got.keys() == want.keys()
            for k, v in want.items():
                assert type(got[k]) is type(v)
                np.testing.assert_array_equal(got[k], v)
        assert batch[-1]["idx"] == source[indices[-1]]["idx"]
        assert [b["idx"] for b in batch[1:]] == [source[i]["idx"] for i in indices[1:]]
        with pytest.raises(IndexError):
            batch[3]
    # Trainer's column filter (remove_unused_columns=True) iterates the batch and keeps the
    # model's columns: the collator gets a list of examples without idx.
    c = collator(vocab_size=1 << 20, special_token_ids=[CLS, SEP])
    kept = [{k: v for k, v in ex.items() if k != "idx"} for ex in ds.__getitems__(range(8))]
    filtered = c(kept)
    assert sorted(filtered) == [
        "attention_mask",
        "input_ids",
        "labels",
        "next_sentence_label",
        "token_type_ids",
    ]
    columns = collator(vocab_size=1 << 20, special_token_ids=[CLS, SEP])(
        ExampleBatch({k: v for k, v in ds.__getitems__(range(8)).columns.items() if k != "idx"})
    )
    for k in filtered:
        np.testing.assert_array_equal(filtered[k], columns[k])


# -- word ids ----------------------------------------------------------------------------------


def test_word_ids_take_minus_one_and_nan_for_none():
    ids = [CLS, 10, 11, 12, 13, 14, SEP]
    words = [None, 0, 0, 1, 2, 2, None]
    c = collator(unit="word", mlm_probability=0.4)

    def labels(word_ids):
        c.set_epoch(0)
        return c([{"input_ids": ids, "word_ids": word_ids, "idx": 1}])["labels"]

    want = labels(words)
    nan = np.array([np.nan if w is None else w for w in words])
    for form in (
        [-1 if w is None else w for w in words],
        nan,
        nan.astype(np.float32),
        torch.tensor(nan, dtype=torch.float32),
        [float("nan") if w is None else float(w) for w in words],
    ):
        np.testing.assert_array_equal(labels(form), want)
    c.set_epoch(0)
    dense = c({"input_ids": np.array([ids]), "word_ids": nan[None], "idx": [1]})["labels"]
    np.testing.assert_array_equal(dense, want)
    for bad, where in ((nan + 0.5, r"\[1\]"), (np.where(np.isnan(nan), np.inf, nan), r"\[0\]")):
        with pytest.raises(TypeError, match=rf"word_ids'\]{where}: expected an integer"):
            c([{"input_ids": ids, "word_ids": bad}])


@pytest.mark.slow  # importing datasets takes seconds
def test_word_ids_from_datasets_formats():
    datasets = pytest.importorskip("datasets")
    rows = {
        "input_ids": [[CLS, 10, 11, 12, SEP], [CLS, 20, 21, 22, 23, 24, SEP]],
        "word_ids": [[None, 0, 0, 1, None], [None, 0, 1, 1, 2, 2, None]],
        "idx": [0, 1],
    }
    ds = datasets.Dataset.from_dict(rows)
    c = collator(unit="word", mlm_probability=0.5)
    want = c([ds[i] for i in range(2)])["labels"]
    for fmt in ("numpy", "torch"):
        c.set_epoch(0)
        formatted = ds.with_format(fmt)
        got = c([formatted[i] for i in range(2)])["labels"]
        np.testing.assert_array_equal(got, want)


# -- positions from an offset (RoBERTa, XLM-R) -----------------------------------------------


def test_packing_positions_start_at_an_offset():
    examples = [[5, 6, 7], [8, 9], [10, 11, 12, 13]]
    batch = PackingCollator(max_length=6, strategy="greedy", pad_token_id=1, position_offset=2)(
        examples
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 1], [10, 11, 12, 13, 1, 1]]
    # Tokens from padding_idx + 1 = 2, padding at padding_idx = 1, as RoBERTa numbers them.
    assert batch["position_ids"].tolist() == [[2, 3, 4, 2, 3, 1], [2, 3, 4, 5, 1, 1]]
    flat = PackingCollator(layout="flat", pad_token_id=1, position_offset=2)(examples)
    assert flat["position_ids"].tolist() == [[2, 3, 4, 2, 3, 2, 3, 4, 5]]
    for bad in (-1, 1 << 31):
        with pytest.raises(ValueError, match="position_offset"):
            PackingCollator(max_length=6, pad_token_id=1, position_offset=bad)(examples)
    with pytest.raises(TypeError, match="position_offset"):
        PackingCollator(max_length=6, pad_token_id=1, position_offset=2.0)
