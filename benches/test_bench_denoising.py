"""Denoising: lmobjectives against its references on the same batches of the embedded corpus —
T5 span corruption against Hugging Face's Flax-example collator (per-row NumPy masks) and a
batch-vectorised NumPy version; BART noising against a NumPy port of fairseq's
``DenoisingDataset``.

Run with ``pytest benches`` (``--benchmark-disable`` runs each body once as a smoke test). Every
benchmark checks its output, so a fast but wrong contender fails. The ratios table comes from
``lmobjectives bench --objective t5`` / ``--objective bart``.
"""

from __future__ import annotations

import numpy as np
import pytest

from lmobjectives.lab.bench.denoising import (
    BART_RAW,
    T5_RAW,
    bart_contenders,
    make_denoising_workloads,
    t5_contenders,
)
from lmobjectives.lab.bench.workloads import BATCH_SIZE

SEED = 0
T5_CONTENDERS = {
    "lmobjectives": "lmobjectives np",
    "hf-flax": "HF Flax (NumPy)",
    "numpy": "NumPy vectorised",
}
BART_CONTENDERS = {"lmobjectives": "lmobjectives np", "fairseq": "fairseq (NumPy port)"}


@pytest.fixture(scope="session")
def t5_setup(corpus):
    workloads = make_denoising_workloads("t5", corpus, batch_size=BATCH_SIZE, num_batches=2)
    return {w.name: w for w in workloads}, t5_contenders(corpus, None, SEED)


@pytest.fixture(scope="session")
def bart_setup(corpus):
    (workload,) = make_denoising_workloads("bart", corpus, batch_size=BATCH_SIZE, num_batches=2)
    return workload, bart_contenders(corpus, None, SEED)


def check_t5_batch(batch, rows, sentinels, eos):
    """T5's shapes, and every row rebuilt from its inputs and targets."""
    inputs, labels = np.asarray(batch["input_ids"]), np.asarray(batch["labels"])
    assert inputs.shape == (len(rows), 512)
    assert labels.shape == (len(rows), 114)
    assert (inputs[:, -1] == eos).all()
    assert (labels[:, -1] == eos).all()
    sset = set(sentinels)
    for x, y, row in zip(inputs.tolist(), labels.tolist(), rows, strict=True):
        body, out = y[:-1], []
        for t in x[:-1]:
            if t in sset:
                j = body.index(t) + 1
                while j < len(body) and body[j] not in sset:
                    out.append(body[j])
                    j += 1
            else:
                out.append(t)
        assert out == list(row)


@pytest.mark.benchmark(group=f"t5-array-{BATCH_SIZE}x{T5_RAW}")
@pytest.mark.parametrize("contender", list(T5_CONTENDERS))
def test_t5(benchmark, t5_setup, contender):
    workloads, collators = t5_setup
    w = workloads["array"]
    collate = collators[T5_CONTENDERS[contender]]
    ours = collators["lmobjectives np"]
    out = benchmark(collate, w.batches[0])
    for i, batch in enumerate(w.batches):
        result = out if i == 0 else collate(batch)
        check_t5_batch(result, batch.tolist(), ours.sentinel_ids, ours.eos_token_id)


@pytest.mark.benchmark(group=f"bart-examples-{BATCH_SIZE}x{BART_RAW + 2}")
@pytest.mark.parametrize("contender", list(BART_CONTENDERS))
def test_bart(benchmark, bart_setup, contender):
    w, collators = bart_setup
    collate = collators[BART_CONTENDERS[contender]]
    ours = collators["lmobjectives np"]
    bos, eos, mask = ours.bos_token_id, ours.eos_token_id, ours.mask_token_id
    out = benchmark(collate, w.batches[0])
    masked = words = 0
    for i, batch in enumerate(w.batches):
        result = out if i == 0 else collate(batch)
        labels = np.asarray(result["labels"])
        inputs, attention = np.asarray(result["input_ids"]), np.asarray(result["attention_mask"])
        for r, ex in enumerate(batch):
            assert labels[r].tolist() == [bos, *ex["input_ids"].tolist(), eos]
            row = inputs[r][attention[r] == 1]
            assert row[0] == bos
            assert row[-1] == eos
            masked += int((row == mask).sum())
            words += int(ours.word_starts[ex["input_ids"]].sum())
    # About one mask per Poisson(3) span of 30% of the words: well above 5% of the words.
    assert 0.05 * words < masked < 0.3 * words
