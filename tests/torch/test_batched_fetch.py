"""Which dataset method the training stacks call: ``DataLoader`` (with and without workers),
``accelerate`` and ``transformers.Trainer`` fetch our datasets' batches through
``__getitems__`` (one call per batch, rows stored flat) and never item by item through
``__getitem__`` — observed by counting the calls, so a library upgrade that changes the path
fails here. Tiny corpora; the Trainer case builds its DataLoader without training."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from lmobjectives import CorpusChunks, MLMCollator, SentencePairDataset, TokenCorpus

from conftest import VOCAB

BATCH = 8


def _corpus(tokenizer) -> TokenCorpus:
    g = np.random.default_rng(5)
    docs = [list(g.integers(3, 20, size=int(g.integers(2, 8)))) for _ in range(30)]
    lengths = [n for d in docs for n in d]
    so = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    do = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
    ids = g.integers(5, VOCAB, size=int(so[-1])).astype(np.uint16)
    return TokenCorpus(ids, so, do, vocab_size=VOCAB, tokenizer=tokenizer)


class _Counted:
    """Counts ``__getitem__`` and ``__getitems__`` calls in shared memory (so calls made in
    DataLoader worker processes are counted too)."""

    def _init_counts(self) -> None:
        self.counts = multiprocessing.get_context("fork").Array("q", 2)

    def __getitem__(self, i):
        with self.counts.get_lock():
            self.counts[0] += 1
        return super().__getitem__(i)

    def __getitems__(self, indices):
        with self.counts.get_lock():
            self.counts[1] += 1
        return super().__getitems__(indices)

    def calls(self) -> tuple[int, int]:
        """``(__getitem__ calls, __getitems__ calls)``."""
        return int(self.counts[0]), int(self.counts[1])


class CountedPairs(_Counted, SentencePairDataset):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_counts()


class CountedChunks(_Counted, CorpusChunks):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_counts()


@pytest.fixture(params=["pairs", "chunks"])
def dataset(request, small_tokenizer):
    corpus = _corpus(small_tokenizer)
    if request.param == "pairs":
        return CountedPairs(corpus, "nsp", max_seq_length=32, seed=1)
    return CountedChunks(corpus, 16)


def _collate(tokenizer):
    return MLMCollator(tokenizer, seed=3, return_tensors="pt", num_threads=1)


def _expected_batches(n: int) -> int:
    return -(-n // BATCH)


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_fetches_whole_batches(dataset, small_tokenizer, workers):
    loader = DataLoader(
        dataset,
        batch_size=BATCH,
        collate_fn=_collate(small_tokenizer),
        num_workers=workers,
        multiprocessing_context="fork" if workers else None,
    )
    batches = list(loader)
    assert len(batches) == _expected_batches(len(dataset))
    assert dataset.calls() == (0, len(batches))
    # The control: the counter does see item-by-item access.
    dataset[0]
    assert dataset.calls()[0] == 1


def test_accelerate_fetches_whole_batches(dataset, small_tokenizer):
    accelerate = pytest.importorskip("accelerate")
    loader = accelerate.Accelerator(cpu=True).prepare(
        DataLoader(dataset, batch_size=BATCH, collate_fn=_collate(small_tokenizer))
    )
    batches = list(loader)
    assert len(batches) == _expected_batches(len(dataset))
    assert all(isinstance(b["input_ids"], torch.Tensor) for b in batches)
    assert dataset.calls() == (0, len(batches))


def test_trainer_fetches_whole_batches(dataset, small_tokenizer, tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    trainer = transformers.Trainer(  # remove_unused_columns=True: Trainer's default
        model=transformers.BertForPreTraining(config),
        args=transformers.TrainingArguments(
            output_dir=str(tmp_path),
            per_device_train_batch_size=BATCH,
            report_to=[],
            use_cpu=True,
            disable_tqdm=True,
        ),
        train_dataset=dataset,
        data_collator=_collate(small_tokenizer),
    )
    batches = list(trainer.get_train_dataloader())
    assert len(batches) == _expected_batches(len(dataset))
    assert all("labels" in b for b in batches)
    assert dataset.calls() == (0, len(batches))
