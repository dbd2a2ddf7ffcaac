"""MLM masking: lmobjectives against Hugging Face's DataCollatorForLanguageModeling and the
NumPy reference, on the same batches of the embedded corpus.

Run the benchmarks with ``pytest benches`` (add ``--benchmark-disable`` to execute each body
once as a smoke test, as the normal test run does). Every benchmark also checks its output, so
a fast but wrong collator fails here. The ratios table comes from ``lmobjectives bench``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lmobjectives.lab.bench.workloads import BATCH_SIZE, MAX_LEN, MIN_LEN, PADDED_LEN

CONTENDERS = ["lmobjectives", "hf", "numpy"]


def check_mlm_batch(batch, original, special_ids, *, unk_eligible=False, p=0.15):
    """Shape, dtype, labels and selection of one masked batch against its padded original."""
    ids = np.asarray(batch["input_ids"])
    labels = np.asarray(batch["labels"])
    assert ids.shape == labels.shape == original.shape
    assert labels.dtype == np.int64
    assert int(ids.min()) >= 0
    selected = labels != -100
    np.testing.assert_array_equal(labels[selected], original[selected])
    np.testing.assert_array_equal(ids[~selected], original[~selected])
    never = [special_ids[t] for t in ("[PAD]", "[CLS]", "[SEP]", "[MASK]")]
    if not unk_eligible:
        never.append(special_ids["[UNK]"])
    assert not np.isin(original[selected], never).any(), "a special token was selected"
    # Roughly p of the eligible tokens are selected (|z| < 5 on ~10k tokens), most as [MASK].
    n, k = int((~np.isin(original, never)).sum()), int(selected.sum())
    assert abs(k - n * p) / math.sqrt(n * p * (1 - p)) < 5, (k, n)
    masked = int((selected & (ids == special_ids["[MASK]"])).sum())
    assert abs(masked - 0.8 * k) / math.sqrt(k * 0.8 * 0.2) < 5, (masked, k)
    if "attention_mask" in batch:
        attention = np.asarray(batch["attention_mask"])
        np.testing.assert_array_equal(attention == 0, original == special_ids["[PAD]"])


def run(benchmark, workloads, originals, collators, special_ids, workload, contender):
    w = workloads[workload]
    batches = w.hf_batches if contender == "hf" else w.batches
    collate = collators[contender]
    out = benchmark(collate, batches[0])
    # HF is given run_mlm.py's special_tokens_mask on ragged rows, which marks only [CLS] and
    # [SEP]: it may select [UNK]. Everywhere else every special id is excluded.
    unk_eligible = contender == "hf" and workload == "ragged"
    for i, batch in enumerate(batches):
        result = out if i == 0 else collate(batch)
        check_mlm_batch(result, originals[workload][i], special_ids, unk_eligible=unk_eligible)


@pytest.mark.benchmark(group=f"mlm-ragged-{BATCH_SIZE}x{MIN_LEN}-{MAX_LEN}")
@pytest.mark.parametrize("contender", CONTENDERS)
def test_mlm_ragged(benchmark, workloads, originals, collators, special_ids, contender):
    run(benchmark, workloads, originals, collators, special_ids, "ragged", contender)


@pytest.mark.benchmark(group=f"mlm-padded-{BATCH_SIZE}x{PADDED_LEN}")
@pytest.mark.parametrize("contender", CONTENDERS)
def test_mlm_padded(benchmark, workloads, originals, collators, special_ids, contender):
    run(benchmark, workloads, originals, collators, special_ids, "padded", contender)
