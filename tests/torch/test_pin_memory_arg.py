"""``pin_memory=`` as a constructor argument of every collator (issue 19): the same option as
the ``collator.pin_memory`` attribute, checked when the collator is made. Without CUDA (or with
pinning reported unavailable) batches fall back to ordinary memory, identical to those of a
collator without the option, and :attr:`pins` says so."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from lmobjectives import (
    ArgumentTypeError,
    BartDenoisingCollator,
    ContrastivePairCollator,
    InvalidArgumentError,
    MLMCollator,
    PackingCollator,
    T5SpanCorruptionCollator,
    UL2Collator,
)
from lmobjectives import _torch_bridge as bridge

from conftest import make_rows

VOCAB = 1000


def _make(kind: str, **kw: Any) -> Any:
    if kind == "mlm":
        return MLMCollator(vocab_size=VOCAB, mask_token_id=4, pad_token_id=0, seed=0, **kw)
    if kind == "packing":
        return PackingCollator(max_length=64, pad_token_id=0, seed=0, **kw)
    if kind == "contrastive":
        return ContrastivePairCollator(vocab_size=VOCAB, pad_token_id=0, seed=0, **kw)
    seq2seq: dict[str, Any] = {
        "vocab_size": VOCAB + 200,
        "eos_token_id": 1,
        "pad_token_id": 0,
        "decoder_start_token_id": 0,
        "seed": 0,
    }
    if kind == "t5":
        return T5SpanCorruptionCollator(input_length=32, **seq2seq, **kw)
    if kind == "ul2":
        return UL2Collator(input_length=32, **seq2seq, **kw)
    assert kind == "bart"
    return BartDenoisingCollator(
        vocab_size=VOCAB, bos_token_id=2, eos_token_id=3, pad_token_id=0, mask_token_id=4,
        seed=0, **kw,
    )  # fmt: skip


KINDS = ["mlm", "packing", "contrastive", "t5", "ul2", "bart"]


def _examples() -> list[dict[str, list[int]]]:
    return [{"input_ids": r} for r in make_rows(6, 10, 28, seed=5)]


@pytest.mark.parametrize("kind", KINDS)
def test_constructor_pin_memory_falls_back_without_cuda(kind: str, monkeypatch) -> None:
    monkeypatch.setattr(bridge, "pinning_available", lambda: False)
    plain = _make(kind, return_tensors="pt")
    assert plain.pin_memory is False and plain.pins is False  # the default
    pinned = _make(kind, return_tensors="pt", pin_memory=True)
    assert pinned.pin_memory is True and pinned.pins is False
    a, b = plain(_examples()), pinned(_examples())
    assert a.keys() == b.keys()
    for k in a:
        assert isinstance(b[k], torch.Tensor) and not b[k].is_pinned(), k
        assert b[k].dtype == a[k].dtype and torch.equal(a[k], b[k]), k
    # The attribute still works, both ways.
    pinned.pin_memory = False
    assert pinned.pin_memory is False
    pinned.pin_memory = True
    assert pinned.pin_memory is True


@pytest.mark.parametrize("kind", KINDS)
def test_constructor_pin_memory_says_whether_it_pins(kind: str, monkeypatch) -> None:
    monkeypatch.setattr(bridge, "pinning_available", lambda: True)
    assert _make(kind, return_tensors="pt", pin_memory=True).pins is True
    assert _make(kind, return_tensors="pt").pins is False


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad", [1, 0, "yes", None, np.bool_(True), 1.0])
def test_constructor_pin_memory_must_be_a_bool(kind: str, bad: Any) -> None:
    with pytest.raises(ArgumentTypeError, match="pin_memory: expected a bool"):
        _make(kind, return_tensors="pt", pin_memory=bad)
    with pytest.raises(TypeError, match="pin_memory"):  # ArgumentTypeError is a TypeError
        _make(kind, return_tensors="pt").pin_memory = bad


@pytest.mark.parametrize("kind", KINDS)
def test_constructor_pin_memory_needs_torch_tensors(kind: str) -> None:
    with pytest.raises(InvalidArgumentError, match='pin_memory: needs return_tensors="pt"'):
        _make(kind, pin_memory=True)
    with pytest.raises(ValueError, match="pin_memory"):
        _make(kind).pin_memory = True
    numpy_out: Callable[[Any], Any] = _make(kind, pin_memory=False)
    assert numpy_out.pin_memory is False  # type: ignore[attr-defined]
