"""What every collator shares: seeding and epochs, resumable state, padding knobs, output
conversion. An objective subclasses :class:`Collator` and implements :meth:`Collator._make`.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Literal, cast

import numpy as np

from lmobjectives import _torch_bridge
from lmobjectives._inputs import Rows, normalize
from lmobjectives._seeding import (
    StreamState,
    check_num_threads,
    check_seed,
    resolve_num_threads,
)
from lmobjectives.errors import MAX_ELEMENTS, ArgumentTypeError, InvalidArgumentError, LimitError

Dtype = Literal["int64", "int32"]
RETURN_TENSORS = ("np", "pt")
DTYPES = ("int64", "int32")
PADDING = ("longest", "max_length")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InvalidArgumentError(f"{name}: must be one of {list(choices)}, got {value!r}")
    return str(value)


def check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """An integer argument (any ``__index__`` object but a bool) in ``[lo, hi]``: an
    :class:`~lmobjectives.errors.ArgumentTypeError` or
    :class:`~lmobjectives.errors.InvalidArgumentError` naming ``name`` otherwise."""
    if isinstance(value, (bool, np.bool_)):
        raise ArgumentTypeError(f"{name}: expected an int, got a bool ({value!r})")
    try:
        v = operator.index(value)
    except TypeError:
        raise ArgumentTypeError(
            f"{name}: expected an int, got {type(value).__name__} ({value!r:.40})"
        ) from None
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        low = "-inf" if lo is None else lo
        high = "inf" if hi is None else hi
        raise InvalidArgumentError(f"{name}: must be an integer in [{low}, {high}], got {v}")
    return v


def check_positive_int(name: str, value: Any) -> int | None:
    """``None`` or an int in ``[1, MAX_ELEMENTS]`` (sizes: larger ones could not be
    allocated; see :data:`lmobjectives.errors.MAX_ELEMENTS`)."""
    if value is None:
        return None
    v = check_int(name, value, 1)
    if v > MAX_ELEMENTS:
        raise LimitError(f"{name}: {v} is over the limit of {MAX_ELEMENTS} elements")
    return v


def check_float(name: str, value: Any, lo: float | None = None, hi: float | None = None) -> float:
    """A real number (not a bool, never NaN) in ``[lo, hi]``."""
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise ArgumentTypeError(f"{name}: expected a number, got {type(value).__name__}")
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ArgumentTypeError(
            f"{name}: expected a number, got {type(value).__name__} ({value!r:.40})"
        ) from None
    if math.isnan(v):
        raise InvalidArgumentError(f"{name}: must be a number, got nan")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise InvalidArgumentError(f"{name}: must be in [{lo}, {hi}], got {v}")
    return v


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ArgumentTypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return value


class Key:
    """Where one batch's random streams come from (pass to the kernel as keyword args)."""

    __slots__ = ("batch_index", "epoch", "sample_ids", "seed")

    def __init__(self, seed: int, epoch: int, batch_index: int, sample_ids: Any) -> None:
        self.seed = seed
        self.epoch = epoch
        self.batch_index = batch_index
        self.sample_ids = sample_ids

    def kwargs(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "batch_index": self.batch_index,
            "sample_ids": self.sample_ids,
        }


class Collator:
    """Base of the collators: ``DataLoader(collate_fn=collator)``.

    Handles the contract of design: §3 once: keyed random streams (``seed``, ``epoch``,
    sample ``idx`` or batch index), :meth:`set_epoch` (reaching DataLoader workers through
    shared memory), :meth:`state_dict` / :meth:`load_state_dict`, thread-safe batch numbering
    (a failed call gives its number back), the warning for a key made twice in one epoch,
    worker-aware thread counts and shared-memory output in DataLoader workers, and
    ``return_tensors`` / ``dtype``.
    """

    #: Per-token example columns this objective reads beyond input_ids & co (see
    #: :func:`lmobjectives._inputs.normalize`).
    _extra_keys: tuple[str, ...] = ()
    #: Whether the rows' streams are keyed by the examples' ``idx`` when given (else always by
    #: batch and row).
    _sample_keyed = True
    #: See :attr:`pin_memory`.
    _pin_memory = False

    def __init__(
        self,
        *,
        seed: int | None,
        return_tensors: str,
        dtype: str,
        num_threads: int | None,
        pin_memory: bool = False,
    ) -> None:
        self.return_tensors = check_choice("return_tensors", return_tensors, RETURN_TENSORS)
        if self.return_tensors == "pt":  # fail here, not on the first batch
            _torch_bridge.require_torch('return_tensors="pt"')
        self.dtype = cast(Dtype, check_choice("dtype", dtype, DTYPES))
        self.num_threads = check_num_threads(num_threads)
        self._streams = StreamState(check_seed(seed))
        self.pin_memory = pin_memory

    # -- randomness ------------------------------------------------------------------------

    @property
    def seed(self) -> int:
        return self._streams.seed

    @property
    def epoch(self) -> int:
        return self._streams.epoch

    def set_epoch(self, epoch: int, batch_index: int = 0) -> None:
        """Starts epoch ``epoch`` (new randomness for the same samples) at batch
        ``batch_index``; call it at the start of every epoch, as with ``DistributedSampler``,
        before iterating the DataLoader. It reaches the DataLoader's workers, persistent ones
        included, whatever the start method. With ``transformers.Trainer``, use
        :class:`lmobjectives.torch.integration.EpochCallback`."""
        self._streams.set_epoch(epoch, batch_index)

    def state_dict(self) -> dict[str, Any]:
        """Seed, epoch and batch counter: enough to resume the random stream exactly."""
        return self._streams.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._streams.load_state_dict(state)

    # -- the batch -------------------------------------------------------------------------

    def __call__(self, examples: Any) -> dict[str, Any]:
        rows = self._normalize(examples)
        seed, epoch, batch_index, ticket = self._streams.reserve()
        try:
            key = Key(seed, epoch, batch_index, rows.sample_ids)
            batch = self._finish(*self._make(rows, key))
        except BaseException:
            self._streams.cancel(ticket)
            raise
        self._record(key)
        return batch

    def _normalize(self, examples: Any) -> Rows:
        """The batch as :class:`Rows` (an objective that reads some batches directly says so
        here)."""
        return normalize(examples, self._extra_keys)

    def _record(self, key: Key) -> None:
        """Notes the keys of a batch just made (warns once if one repeats in this epoch)."""
        ids = key.sample_ids if self._sample_keyed else None
        self._streams.record(type(self).__name__, key.epoch, key.batch_index, ids)

    def _make(self, rows: Rows, key: Key) -> tuple[dict[str, Any], Any]:
        """Builds the batch: returns ``(arrays by name, shared-memory allocator or None)``."""
        raise NotImplementedError

    def _threads(self) -> int:
        return resolve_num_threads(self.num_threads)

    @property
    def pin_memory(self) -> bool:
        """Batches in page-locked memory, ready for ``.to("cuda", non_blocking=True)``
        (``return_tensors="pt"`` only; pass ``pin_memory=True`` to the constructor or set
        ``collator.pin_memory = True``; a value other than a bool raises
        :class:`~lmobjectives.errors.ArgumentTypeError`, ``True`` with ``return_tensors="np"``
        :class:`~lmobjectives.errors.InvalidArgumentError`).

        - In the training process with CUDA available: kernels that take an output buffer
          write the batch straight into pinned memory (no copy); the other outputs are
          pinned with one copy each.
        - Without CUDA: ordinary memory, the tensors otherwise identical (so one config runs
          everywhere; :attr:`pins` says whether pinning happens).
        - In a DataLoader worker (``num_workers > 0``): nothing changes — pinned memory cannot
          cross processes, so batches still travel in shared memory; give the DataLoader
          ``pin_memory=True``, whose thread pins them in the main process.
        """
        return self._pin_memory

    @pin_memory.setter
    def pin_memory(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ArgumentTypeError(f"pin_memory: expected a bool, got {type(value).__name__}")
        if value and self.return_tensors != "pt":
            raise InvalidArgumentError(
                'pin_memory: needs return_tensors="pt" (NumPy arrays are not pinned)'
            )
        self._pin_memory = value

    @property
    def pins(self) -> bool:
        """Whether this process's batches are pinned now: :attr:`pin_memory`, CUDA available,
        and not in a DataLoader worker."""
        return (
            self._pin_memory
            and _torch_bridge.worker_info() is None
            and _torch_bridge.pinning_available()
        )

    def _allocator(self, names: tuple[str, ...]) -> Any:
        """In a DataLoader worker with ``return_tensors="pt"``: an allocator that puts the
        kernel's outputs (``names``, in order) in one shared-memory tensor, so handing the
        batch to the main process copies nothing. With :attr:`pins`: one in page-locked
        memory. ``None`` otherwise (the kernel's own buffers are used)."""
        if self.return_tensors == "pt" and _torch_bridge.worker_info() is not None:
            return _torch_bridge.SharedMemoryAllocator(names)
        if self.return_tensors == "pt" and self.pins:
            return _torch_bridge.PinnedMemoryAllocator(names)
        return None

    def _finish(self, batch: dict[str, Any], allocator: Any) -> dict[str, Any]:
        if self.return_tensors != "pt":
            return batch
        if allocator is not None and allocator.tensor is not None:
            # The kernel's arrays are views of this tensor: hand out tensor views of it.
            shared = allocator.tensor
            for i, name in enumerate(allocator.names):
                batch[name] = shared[i]
        tensors = _torch_bridge.to_torch(batch)
        return _torch_bridge.pin(tensors) if self.pins else tensors


class PaddingOptions:
    """The padding knobs shared by the collators that pad rows."""

    def __init__(
        self,
        *,
        max_length: int | None,
        truncation: bool,
        padding: str,
        pad_to_multiple_of: int | None,
        padding_side: str,
    ) -> None:
        self.max_length = check_positive_int("max_length", max_length)
        self.truncation = check_bool("truncation", truncation)
        self.padding = check_choice("padding", padding, PADDING)
        if self.padding == "max_length" and self.max_length is None:
            raise ValueError("padding: 'max_length' needs max_length")
        if self.truncation and self.max_length is None:
            raise ValueError("truncation: truncation=True needs max_length")
        self.pad_to_multiple_of = check_positive_int("pad_to_multiple_of", pad_to_multiple_of)
        self.padding_side = check_choice("padding_side", padding_side, ("right", "left"))

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the kernels' padding."""
        return {
            "max_length": self.max_length,
            "truncation": self.truncation,
            "pad_to_max_length": self.padding == "max_length",
            "pad_to_multiple_of": self.pad_to_multiple_of or 1,
            "padding_side": self.padding_side,
        }

    def __repr__(self) -> str:
        return (
            f"max_length={self.max_length}, truncation={self.truncation}, "
            f"padding={self.padding!r}, pad_to_multiple_of={self.pad_to_multiple_of}, "
            f"padding_side={self.padding_side!r}"
        )
