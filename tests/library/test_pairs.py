"""NSP/SOP sentence pairs: the algorithm draw for draw, the statistics, the fixed quirks, the
dataset contract and the models they feed."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from lmobjectives import MLMCollator, SentencePairDataset, TokenCorpus

import reference_streams as ref
from conftest import CLS, MASK, PAD, SEP


def synthetic_corpus(doc_sentence_lengths, tokenizer):
    """A corpus whose token at position p is p + 10: every token says where it came from."""
    lengths = [n for doc in doc_sentence_lengths for n in doc]
    so = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    do = np.concatenate([[0], np.cumsum([len(d) for d in doc_sentence_lengths])]).astype(np.int64)
    ids = (np.arange(so[-1]) + 10).astype(np.uint32)
    return TokenCorpus(ids, so, do, vocab_size=1 << 20, tokenizer=tokenizer)


@pytest.fixture(scope="module")
def corpus(small_tokenizer):
    g = np.random.default_rng(0)
    docs = [list(g.integers(1, 40, size=int(g.integers(1, 30)))) for _ in range(300)]
    return synthetic_corpus(docs, small_tokenizer)


def dataset(corpus, task="nsp", **kw):
    kw.setdefault("cls_token_id", CLS)
    kw.setdefault("sep_token_id", SEP)
    return SentencePairDataset(corpus, task, **kw)


def spans(item):
    """(A positions, B positions) of an item on the synthetic corpus."""
    ids = item["input_ids"]
    types = item["token_type_ids"]
    assert ids[0] == CLS and ids[-1] == SEP
    first_sep = int(np.argmax(types == 1)) - 1
    assert ids[first_sep] == SEP
    return ids[1:first_sep] - 10, ids[first_sep + 1 : -1] - 10


def doc_of(corpus, position):
    sentence = np.searchsorted(corpus.sentence_offsets, position, side="right") - 1
    return int(np.searchsorted(corpus.document_offsets, sentence, side="right") - 1)


@pytest.mark.parametrize("task", ["nsp", "sop"])
@pytest.mark.parametrize("max_seq_length", [32, 128])
def test_index_matches_the_documented_algorithm_exactly(corpus, task, max_seq_length):
    ds = dataset(corpus, task, max_seq_length=max_seq_length, short_seq_prob=0.3, seed=5)
    ds.set_epoch(2)
    want = ref.pair_index(
        corpus.sentence_offsets,
        corpus.document_offsets,
        task=task,
        max_seq_length=max_seq_length,
        short_seq_prob=0.3,
        random_next_prob=0.5,
        swap_prob=0.5,
        seed=5,
        epoch=2,
    )
    got = [
        (tuple(a), tuple(b), int(lab))
        for a, b, lab in zip(
            ds._index["a"].tolist(), ds._index["b"].tolist(), ds._index["label"], strict=True
        )
    ]
    assert got == want


@pytest.mark.parametrize("task", ["nsp", "sop"])
def test_every_item_is_corpus_text_in_order_and_fits(corpus, task):
    ds = dataset(corpus, task, max_seq_length=48)
    label = ds.label_name
    assert label == ("next_sentence_label" if task == "nsp" else "sentence_order_label")
    for i in range(len(ds)):
        item = ds[i]
        assert len(item["input_ids"]) <= 48
        a, b = spans(item)
        assert len(a) and len(b)
        assert (np.diff(a) == 1).all()
        assert (np.diff(b) == 1).all(), "B must be consecutive corpus tokens"
        da, db = doc_of(corpus, a[0]), doc_of(corpus, b[0])
        assert doc_of(corpus, a[-1]) == da
        assert doc_of(corpus, b[-1]) == db
        if task == "nsp" and item[label] == 1:
            assert db != da, "a random B must come from another document"
        elif task == "nsp":
            assert b[0] >= a[-1] + 1 and da == db
        elif item[label] == 1:  # SOP swapped: B precedes A in the document
            assert b[-1] < a[0] and da == db
        else:
            assert a[-1] < b[0] and da == db


def test_random_next_decision_is_a_fair_coin(small_tokenizer):
    """Documents of two 10-token sentences with target 20 make one chunk each: an actual-next
    pair (one instance) or a random B, after which the put-back second sentence becomes a
    single-sentence chunk, always random (two instances). So the documents whose first
    sentence opens a label-1 pair count the coin's heads: Binomial(D, 1/2)."""
    docs = [[10, 10]] * 4000
    c = synthetic_corpus(docs, small_tokenizer)

    def heads(p):
        ds = dataset(c, max_seq_length=23, short_seq_prob=0.0, random_next_prob=p, seed=1)
        starts = set(c.sentence_offsets[c.document_offsets[:-1]].tolist())
        count = 0
        for i in range(len(ds)):
            a, _ = spans(ds[i])
            if int(a[0]) in starts and ds[i]["next_sentence_label"] == 1:
                count += 1
        return count

    n = len(docs)
    z = (heads(0.5) - n / 2) / math.sqrt(n / 4)
    assert abs(z) < 5
    control = (heads(0.56) - n / 2) / math.sqrt(n / 4)  # a biased coin must be caught
    assert abs(control) > 5


def test_short_targets_follow_short_seq_prob(small_tokenizer):
    """With 1-token sentences a chunk closes exactly at its target length, so a document's
    instances are short ones only if its target was drawn short: P = short_seq_prob."""
    docs = [[1] * 125] * 3000
    c = synthetic_corpus(docs, small_tokenizer)
    for p in (0.1, 0.3):
        ds = dataset(c, "sop", max_seq_length=128, short_seq_prob=p, seed=2)
        full = 125
        short_docs = set()
        for i in range(len(ds)):
            a, b = spans(ds[i])
            if len(a) + len(b) < full:
                short_docs.add(doc_of(c, a[0]))
        k, n = len(short_docs), len(docs)
        # A short target of exactly 125 (prob 1/124 among short) looks full: tolerate it.
        expected = n * p * (1 - 1 / 124)
        assert abs(k - expected) / math.sqrt(n * p * (1 - p)) < 5, (p, k, expected)


def test_quirks_are_fixed(small_tokenizer):
    one_doc = synthetic_corpus([[5] * 40], small_tokenizer)
    nsp = dataset(one_doc, max_seq_length=32, seed=3)
    assert len(nsp) > 0
    # No other document: no "random" pair made of the document itself.
    assert all(nsp[i]["next_sentence_label"] == 0 for i in range(len(nsp)))
    single_sentences = synthetic_corpus([[7]] * 50, small_tokenizer)
    assert len(dataset(single_sentences, "sop", seed=3)) == 0  # ALBERT would leak NSP pairs
    assert len(dataset(single_sentences, "nsp", seed=3)) == 50  # NSP: always a random B
    long_sentences = synthetic_corpus([[400, 300, 500]] * 10, small_tokenizer)
    ds = dataset(long_sentences, max_seq_length=64, seed=3)
    assert all(len(ds[i]["input_ids"]) <= 64 for i in range(len(ds)))


def test_items_are_pure_functions_of_seed_epoch_and_index(corpus):
    a = dataset(corpus, seed=9)
    b = dataset(corpus, seed=9, num_threads=4)
    for i in (0, 7, len(a) - 1):
        np.testing.assert_array_equal(a[i]["input_ids"], b[i]["input_ids"])
    a.set_epoch(1)
    assert a[0]["idx"] != b[0]["idx"]
    differs = any(
        not np.array_equal(a[i]["input_ids"], b[i]["input_ids"]) for i in range(min(20, len(a)))
    )
    assert differs
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a[3]["input_ids"], b[3]["input_ids"])
    clone = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(clone[3]["input_ids"], a[3]["input_ids"])


def test_shards_are_disjoint_and_cover_everything(corpus):
    ds = dataset(corpus, seed=4)
    whole = {ds[i]["idx"] for i in range(len(ds))}
    parts = [ds.shard(r, 3) for r in range(3)]
    seen = []
    for p in parts:
        seen += [tuple(p[i]["input_ids"].tolist()) for i in range(len(p))]
    assert sum(len(p) for p in parts) == len(ds) == len(whole)
    assert sorted(seen) == sorted(tuple(ds[i]["input_ids"].tolist()) for i in range(len(ds)))
    with pytest.raises(ValueError, match="rank"):
        ds.shard(3, 3)


def test_batches_through_the_collator_match_single_items(corpus):
    ds = dataset(corpus, seed=6)
    masker = MLMCollator(
        vocab_size=1 << 20, mask_token_id=MASK, pad_token_id=PAD, special_token_ids=[CLS, SEP]
    )
    batch = masker(ds.__getitems__([3, 1, 4]))
    for row, i in enumerate((3, 1, 4)):
        item = ds[i]
        n = len(item["input_ids"])
        np.testing.assert_array_equal(batch["token_type_ids"][row, :n], item["token_type_ids"])
        sel = batch["labels"][row, :n] != -100
        np.testing.assert_array_equal(batch["labels"][row, :n][sel], item["input_ids"][sel])
        assert batch["next_sentence_label"][row] == item["next_sentence_label"]
    # Masks are keyed by the sample key, so any batching gives the same masks (in a new pass
    # over the same epoch: the same key twice in one pass warns that masks repeat).
    masker.set_epoch(0)
    single = masker(ds.__getitems__([4]))
    n = len(ds[4]["input_ids"])
    np.testing.assert_array_equal(single["labels"][0, :n], batch["labels"][2, :n])


@pytest.mark.slow
def test_dataloader_workers_give_the_same_batches(corpus):
    from torch.utils.data import DataLoader

    def run(workers, context=None):
        masker = MLMCollator(
            vocab_size=1 << 20,
            mask_token_id=MASK,
            pad_token_id=PAD,
            special_token_ids=[CLS, SEP],
            seed=0,
            return_tensors="pt",
        )
        loader = DataLoader(
            dataset(corpus, seed=8),
            batch_size=16,
            collate_fn=masker,
            num_workers=workers,
            multiprocessing_context=context,
        )
        return [b["labels"].numpy() for b in loader]

    ref_batches = run(0)
    for got in (run(2), run(2, "spawn")):
        assert len(got) == len(ref_batches)
        for a, b in zip(ref_batches, got, strict=True):
            np.testing.assert_array_equal(a, b)


def test_bert_and_albert_pretraining_models_take_the_batches():
    import torch
    import transformers

    corpus = TokenCorpus.default()
    tok = corpus.tokenizer
    for task, model_cls, cfg_cls in (
        ("nsp", transformers.BertForPreTraining, transformers.BertConfig),
        ("sop", transformers.AlbertForPreTraining, transformers.AlbertConfig),
    ):
        ds = SentencePairDataset(corpus, task, max_seq_length=64, seed=0)
        masker = MLMCollator(tok, unit="word" if task == "nsp" else "ngram", return_tensors="pt")
        batch = masker(ds.__getitems__(list(range(8))))
        cfg = cfg_cls(
            vocab_size=corpus.vocab_size,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            **({"embedding_size": 16} if task == "sop" else {}),
        )
        torch.manual_seed(0)
        out = model_cls(cfg)(**batch)
        assert torch.isfinite(out.loss)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"task": "mlm"}, ValueError, "task"),
        ({"max_seq_length": 4}, ValueError, "max_seq_length"),
        ({"max_seq_length": "64"}, TypeError, "max_seq_length"),
        ({"short_seq_prob": 1.5}, ValueError, "short_seq_prob"),
        ({"random_next_prob": -0.1}, ValueError, "random_next_prob"),
        ({"label_name": "label"}, ValueError, "label_name"),
        ({"seed": -1}, ValueError, "seed"),
        ({"epoch": -1}, ValueError, "epoch"),
    ],
)
def test_bad_arguments(corpus, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        dataset(corpus, **kwargs)


def test_bad_corpus_and_indices(corpus):
    with pytest.raises(TypeError, match="corpus"):
        SentencePairDataset([1, 2, 3])
    ds = dataset(corpus)
    with pytest.raises(IndexError):
        ds[len(ds)]
    with pytest.raises(TypeError, match="index"):
        ds["a"]
