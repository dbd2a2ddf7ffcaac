"""Argument checks of the torch losses that never synchronise with a device.

Scalar and shape checks look only at Python numbers and tensor metadata. Checks of tensor
*values* (token ids in range) read the data, which for a tensor on an accelerator would be a
host synchronisation (the device must finish before the host can look): they run on CPU
tensors only, and not while ``torch.compile`` traces. On CUDA the cross-entropy kernels
themselves assert ``0 <= target < vocab`` on the device (a device-side assertion, fatal to
the CUDA context), so a bad id still never passes silently.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from lmobjectives._core import InvalidArgumentError, TokenIdError

#: The largest finite float32: a scale above it becomes ``inf`` in float32 logits.
FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def reads_values(t: torch.Tensor) -> bool:
    """Whether value checks of ``t`` are free of host synchronisation: CPU tensors outside of
    ``torch.compile`` tracing."""
    return t.device.type == "cpu" and not torch.compiler.is_compiling()


def check_positive_scale(value: Any, name: str) -> float:
    """``value`` as a finite float in ``(0, FLOAT32_MAX]``, else :class:`InvalidArgumentError`
    naming ``name``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name}: expected a number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise InvalidArgumentError(f"{name}: must be > 0 and finite, got {value!r}")
    if v > FLOAT32_MAX:
        raise InvalidArgumentError(f"{name}: {value!r} overflows float32 (max {FLOAT32_MAX:.4g})")
    return v


def scale_from_temperature(temperature: Any) -> float:
    """``1 / temperature``, checked: finite, positive, and a reciprocal that fits float32
    (``temperature=1e-45`` would give an infinite scale and a NaN loss)."""
    t = check_positive_scale(temperature, "temperature")
    s = 1.0 / t
    if not math.isfinite(s) or s > FLOAT32_MAX:
        raise InvalidArgumentError(
            f"temperature: {temperature!r} is too small, its reciprocal overflows float32 "
            f"(needs temperature >= {1.0 / FLOAT32_MAX:.4g})"
        )
    return s


def check_token_ids(
    labels: torch.Tensor, vocab: int, name: str, ignore_index: int | None = None
) -> None:
    """Every entry of ``labels`` is ``ignore_index`` or in ``[0, vocab)``, else
    :class:`TokenIdError` naming ``name`` and the first bad position (row-major). Only on CPU
    tensors outside of tracing (see the module docstring)."""
    if not reads_values(labels) or labels.numel() == 0:
        return
    flat = labels.reshape(-1)
    bad = (flat < 0) | (flat >= vocab)
    if ignore_index is not None:
        bad &= flat != ignore_index
    if not bool(bad.any()):
        return
    first = int(bad.to(torch.uint8).argmax())
    position = tuple(int(i) for i in torch.unravel_index(torch.tensor(first), labels.shape))
    unless = "" if ignore_index is None else f" and not the ignore index {ignore_index}"
    raise TokenIdError(
        f"{name}: id {int(flat[first])} at position {position} is outside [0, {vocab}){unless}"
    )
