"""Whole-word masking and packing: lmobjectives against Hugging Face on the same batches.

``DataCollatorForLanguageModeling(whole_word_mask=True)`` needs ``offset_mapping`` and equal
row lengths (ragged rows make it fail); ``DataCollatorWithFlattening`` is the padding-free
packing it offers. Every benchmark also checks its output.
"""

from __future__ import annotations

import numpy as np
import pytest

from lmobjectives.lab.bench.workloads import (
    BATCH_SIZE,
    MAX_LEN,
    MIN_LEN,
    PADDED_LEN,
    ragged_batches,
    wwm_batches,
)


@pytest.fixture(scope="session")
def wwm_padded(corpus):
    return wwm_batches(corpus, batch_size=BATCH_SIZE, num_batches=2, ragged=False)


@pytest.fixture(scope="session")
def fast_tokenizer(corpus):
    from lmobjectives.lab.baselines.huggingface import hf_tokenizer

    return hf_tokenizer(corpus.tokenizer)


def check_whole_words(batch, rows, starts):
    """Every word (a start token and its ## continuations) is labelled whole or not at all."""
    labels = np.asarray(batch["labels"])
    for i, row in enumerate(rows):
        sel = labels[i, : len(row)] != -100
        word = []
        for t, x in enumerate(row):
            if starts[x] and word:
                assert len(set(sel[word].tolist())) == 1
                word = []
            word.append(t)
    assert (labels != -100).any()


@pytest.mark.benchmark(group=f"wwm-padded-{BATCH_SIZE}x{PADDED_LEN}")
@pytest.mark.parametrize("contender", ["lmobjectives", "hf"])
def test_wwm_padded(benchmark, wwm_padded, fast_tokenizer, contender):
    from transformers import DataCollatorForLanguageModeling

    from lmobjectives import MLMCollator
    from lmobjectives.denoising import word_start_table

    rows = [ex["input_ids"] for ex in wwm_padded[0]]
    if contender == "hf":
        collate = DataCollatorForLanguageModeling(
            fast_tokenizer,
            whole_word_mask=True,
            mask_replace_prob=1.0,
            random_replace_prob=0.0,
            seed=0,
        )
        batch = benchmark(collate, wwm_padded[0])
    else:
        collate = MLMCollator(
            fast_tokenizer,
            unit="word",
            exact_budget=False,
            mask_replace_prob=1.0,
            random_replace_prob=0.0,
            seed=0,
        )
        batch = benchmark(collate, np.asarray(rows))
    check_whole_words(batch, rows, word_start_table(fast_tokenizer))


@pytest.mark.benchmark(group=f"pack-{BATCH_SIZE}x{MIN_LEN}-{MAX_LEN}")
@pytest.mark.parametrize("contender", ["lmobjectives", "hf"])
def test_pack_flat(benchmark, corpus, contender):
    from transformers import DataCollatorWithFlattening

    from lmobjectives import PackingCollator

    batch_in = [
        {"input_ids": ex["input_ids"]}
        for ex in ragged_batches(corpus, batch_size=BATCH_SIZE, num_batches=1)[0]
    ]
    if contender == "hf":
        collate = DataCollatorWithFlattening(return_tensors="np")
    else:
        collate = PackingCollator(layout="flat", pad_token_id=0)
    out = benchmark(collate, batch_in)
    flat = [t for ex in batch_in for t in ex["input_ids"]]
    assert np.asarray(out["input_ids"]).ravel().tolist() == flat
    positions = np.asarray(out["position_ids"]).ravel()
    assert int((positions == 0).sum()) == len(batch_in)
    assert int((np.asarray(out["labels"]) == -100).sum()) == len(batch_in)
