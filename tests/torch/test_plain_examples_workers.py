"""Plain example dicts (the ``run_mlm.py`` shape, read by ``MlmMasker.mask_examples``) through
a ``DataLoader`` with worker processes: the same batches as in the main process, written
straight into shared memory (the collator's allocator)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from lmobjectives import MLMCollator

from conftest import CLS, MASK, PAD, SEP, VOCAB


def _examples(n: int) -> list[dict[str, Any]]:
    g = np.random.default_rng(0)
    out = []
    for _ in range(n):
        row = [CLS, *g.integers(5, VOCAB, size=int(g.integers(3, 30))).tolist(), SEP]
        out.append(
            {
                "input_ids": row,
                "attention_mask": [1] * len(row),
                "special_tokens_mask": [1] + [0] * (len(row) - 2) + [1],
            }
        )
    return out


def _collator() -> MLMCollator:
    return MLMCollator(
        vocab_size=VOCAB, mask_token_id=MASK, pad_token_id=PAD, special_token_ids=[CLS, SEP],
        unit="word", word_starts=np.arange(VOCAB) % 3 == 0, seed=3, return_tensors="pt",
    )  # fmt: skip


def test_plain_examples_in_workers_equal_the_main_process() -> None:
    examples = _examples(48)
    main = list(DataLoader(examples, batch_size=8, collate_fn=_collator()))
    workers = list(DataLoader(examples, batch_size=8, collate_fn=_collator(), num_workers=2))
    assert len(main) == len(workers) == 6
    for a, b in zip(main, workers, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k
    assert all(b["input_ids"].is_shared() for b in workers)  # written into shared memory
    assert not main[0]["input_ids"].is_shared()  # control: the main process's are not
    assert not torch.equal(main[0]["labels"], main[1]["labels"])  # batches differ
