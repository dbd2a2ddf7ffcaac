"""``pin_memory`` on the collators (issue 19) where no CUDA device is present: the option's
checks, the fallback to ordinary memory with identical tensors, the allocator that writes a
kernel's output in place, and what happens in DataLoader workers. The pinned path itself is
checked on a GPU by ``tests/torch/test_cuda.py``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmobjectives import MLMCollator, PackingCollator
from lmobjectives import _torch_bridge as bridge

from conftest import make_rows


def _examples() -> list[dict[str, list[int]]]:
    return [{"input_ids": r} for r in make_rows(8, 10, 40, seed=3)]


def test_pin_memory_option_is_checked(small_tokenizer) -> None:
    c = MLMCollator(small_tokenizer, seed=0, return_tensors="pt")
    assert c.pin_memory is False and c.pins is False
    with pytest.raises(TypeError, match="pin_memory"):
        c.pin_memory = 1  # type: ignore[assignment]
    numpy_out = MLMCollator(small_tokenizer, seed=0)
    with pytest.raises(ValueError, match="pin_memory"):
        numpy_out.pin_memory = True
    numpy_out.pin_memory = False  # turning it off is always fine


@pytest.mark.parametrize("kind", ["mlm", "packing"])
def test_without_cuda_pin_memory_falls_back_to_identical_tensors(
    small_tokenizer, monkeypatch, kind: str
) -> None:
    monkeypatch.setattr(bridge, "pinning_available", lambda: False)

    def make() -> object:
        if kind == "mlm":
            return MLMCollator(small_tokenizer, seed=0, return_tensors="pt")
        return PackingCollator(max_length=64, pad_token_id=0, return_tensors="pt")

    plain = make()(_examples())  # type: ignore[operator]
    collator = make()
    collator.pin_memory = True  # type: ignore[attr-defined]
    assert collator.pins is False  # type: ignore[attr-defined]
    out = collator(_examples())  # type: ignore[operator]
    assert out.keys() == plain.keys()
    for k in out:
        assert out[k].dtype == plain[k].dtype and torch.equal(out[k], plain[k]), k


def test_pinning_path_writes_the_batch_in_place(small_tokenizer, monkeypatch) -> None:
    # With pinning "available", the MLM kernel writes into the allocator's one buffer: the
    # batch tensors are views of it (no copy). pin=False stands in for page-locked memory,
    # which needs a CUDA driver; the code path is the same.
    made: list[bridge.PinnedMemoryAllocator] = []

    class Recording(bridge.PinnedMemoryAllocator):
        def __init__(self, names: tuple[str, ...] = (), *, pin: bool = True) -> None:
            super().__init__(names, pin=False)
            made.append(self)

    monkeypatch.setattr(bridge, "pinning_available", lambda: True)
    monkeypatch.setattr(bridge, "PinnedMemoryAllocator", Recording)
    monkeypatch.setattr(bridge, "pin", lambda batch: batch)  # is_pinned() needs CUDA
    plain = MLMCollator(small_tokenizer, seed=0, return_tensors="pt")(_examples())
    collator = MLMCollator(small_tokenizer, seed=0, return_tensors="pt")
    collator.pin_memory = True
    out = collator(_examples())
    assert len(made) == 1 and made[0].tensor is not None
    base = made[0].tensor.untyped_storage().data_ptr()
    for k in ("input_ids", "attention_mask", "labels"):
        assert out[k].untyped_storage().data_ptr() == base, k
        assert torch.equal(out[k], plain[k]), k


def test_the_allocator_lays_out_rows_like_numpy() -> None:
    a = bridge.PinnedMemoryAllocator(("x", "y"), pin=False)
    view = a((2, 3, 4), "int64")
    view[...] = np.arange(24).reshape(2, 3, 4)
    assert a.tensor is not None and a.tensor.shape == (2, 3, 4)
    assert torch.equal(a.tensor, torch.arange(24).reshape(2, 3, 4))


def test_in_dataloader_workers_batches_stay_in_shared_memory(small_tokenizer) -> None:
    # Pinned memory cannot cross processes: in a worker the collator keeps writing shared
    # memory, and the DataLoader's own pin_memory thread pins in the main process.
    from torch.utils.data import DataLoader

    collator = MLMCollator(small_tokenizer, seed=0, return_tensors="pt")
    collator.pin_memory = True
    examples = _examples()
    loader = DataLoader(examples, batch_size=4, collate_fn=collator, num_workers=1)
    batches = list(loader)
    assert len(batches) == 2
    reference = MLMCollator(small_tokenizer, seed=0, return_tensors="pt")
    for i, batch in enumerate(batches):
        want = reference(examples[4 * i : 4 * i + 4])
        for k in want:
            assert torch.equal(batch[k], want[k]), k
        assert batch["input_ids"].is_shared()
