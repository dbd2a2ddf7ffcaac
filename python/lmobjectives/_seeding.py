"""Seeds, epochs, batch numbering and thread counts shared by every collator.

The contract (design: §3): a row's random stream is keyed by ``(seed, epoch, key)`` where
the key is the example's ``idx`` when it has one, else ``(global batch index, row)``. Inside a
PyTorch DataLoader worker the global batch index is recovered from the worker id, since the
DataLoader hands batches to workers round-robin (worker ``w`` of ``n`` gets batches
``w, w + n, w + 2n, ...``, restarting at worker 0 with every pass), so ``num_workers`` does not
change any batch. Without an explicit seed each worker mixes in its own torch seed, so no two
workers ever share a stream.

The epoch reaches the workers through an :class:`EpochCell`: a few words of shared memory
created with the collator in the main process. Workers inherit it (fork) or receive it by
reference (spawn, forkserver: it is pickled as a reference only while a process is being
started), so ``set_epoch`` in the main process reaches persistent workers too, and a worker
that sees a new epoch restarts its batch count. The cell also keeps a table of the sample keys
made in the current epoch, so a key made twice — masks that repeat — is reported once with a
:class:`RepeatedSampleKeyWarning`.
"""

from __future__ import annotations

import multiprocessing.context
import os
import threading
import time
import warnings
from multiprocessing.sharedctypes import RawArray
from typing import Any

import numpy as np

from lmobjectives import _core
from lmobjectives._torch_bridge import worker_info

_MASK64 = (1 << 64) - 1


def mix64(*words: int) -> int:
    """SplitMix64-style hash of a sequence of integers into one 64-bit seed."""
    h = 0x9E3779B97F4A7C15
    for w in words:
        h = (h + (w & _MASK64) + 0x9E3779B97F4A7C15) & _MASK64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
        h ^= h >> 31
    return h


def check_seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected an int or None, got {type(seed).__name__}")
    if not 0 <= seed < 1 << 64:
        raise ValueError(f"seed: must be in [0, 2**64), got {seed}")
    return seed


def check_num_threads(num_threads: Any) -> int | None:
    if num_threads is None:
        return None
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 0:
        raise ValueError(f"num_threads: expected a non-negative int or None, got {num_threads!r}")
    return num_threads


def resolve_num_threads(num_threads: int | None) -> int:
    """Threads for one kernel call: explicit value, else 1 inside DataLoader workers (they
    already run in parallel), else ``LMOBJECTIVES_NUM_THREADS``, else all CPUs (0)."""
    if num_threads is not None:
        return num_threads
    if worker_info() is not None:
        return 1
    env = os.environ.get("LMOBJECTIVES_NUM_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(
                f"LMOBJECTIVES_NUM_THREADS: expected a non-negative int, got {env!r}"
            ) from None
        if n < 0:
            raise ValueError(f"LMOBJECTIVES_NUM_THREADS: expected a non-negative int, got {n}")
        return n
    return 0


class RepeatedSampleKeyWarning(UserWarning):
    """A collator made the same sample key twice in one epoch, so the two rows drew the same
    random stream: the same example got the same masks again. The message says how to fix it
    (usually: call ``set_epoch`` every epoch, or ``EpochCallback`` with ``transformers.Trainer``).
    Shown once per collator; silence it with
    ``warnings.filterwarnings("ignore", category=RepeatedSampleKeyWarning)``."""


# The words of an EpochCell: a sequence number (odd while the main process writes), the epoch,
# the first batch index, "checks paused" (evaluation), "warned"; then the key table.
_SEQ, _EPOCH, _BATCH, _PAUSED, _WARNED = range(5)
_HEADER = 8
#: Slots of the table of recently made sample keys (32 KiB per collator).
KEY_TABLE_SLOTS = 4096


def _attach_cell(raw: Any) -> EpochCell:
    return EpochCell(raw=raw)


class EpochCell:
    """The epoch and first batch index of a collator or dataset in shared memory, so that a
    ``set_epoch`` in the main process reaches every DataLoader worker — fork, spawn,
    forkserver, persistent or not — plus a table of the sample keys made in the current epoch.

    Pickled while a process is being started (how DataLoader workers receive their collator
    under spawn and forkserver) it travels as a reference to the same memory; any other pickle
    (``copy.deepcopy``, saving to disk, a queue) carries a snapshot that gets its own cell.
    Writes come from the process that owns the object (under its lock) between epochs; readers
    retry while a write is in progress (a sequence lock).
    """

    __slots__ = ("_raw", "_shift", "_slots", "_table", "_words")

    def __init__(
        self,
        epoch: int = 0,
        batch_index: int = 0,
        slots: int = KEY_TABLE_SLOTS,
        *,
        raw: Any = None,
    ) -> None:
        fresh = raw is None
        if fresh:
            raw = RawArray("Q", _HEADER + slots)  # zero-filled
        self._raw = raw
        self._words = np.frombuffer(raw, dtype=np.uint64)
        self._table = self._words[_HEADER:]
        self._slots = memoryview(raw).cast("B").cast("Q")[_HEADER:]  # fast scalar access
        size = len(self._table)
        if size & (size - 1):
            raise ValueError(f"slots: must be a power of two or 0, got {size}")
        self._shift = 64 - max(size.bit_length() - 1, 0)
        if fresh:
            self._words[_EPOCH] = epoch
            self._words[_BATCH] = batch_index

    def read(self) -> tuple[int, int, int]:
        """``(sequence number, epoch, first batch index)``, consistent with one another."""
        w = self._words
        while True:
            seq = int(w[_SEQ])
            epoch, batch_index = int(w[_EPOCH]), int(w[_BATCH])
            if not seq & 1 and int(w[_SEQ]) == seq:
                return seq, epoch, batch_index
            time.sleep(0)  # a write is in progress in another process

    def write(self, epoch: int, batch_index: int) -> None:
        """Starts a new epoch: new values, a new sequence number, an empty key table, checks
        resumed."""
        w = self._words
        seq = int(w[_SEQ])
        w[_SEQ] = seq + 1
        w[_EPOCH] = epoch
        w[_BATCH] = batch_index
        self._table[:] = 0
        w[_PAUSED] = 0
        w[_SEQ] = seq + 2

    @property
    def paused(self) -> bool:
        """Whether the repeat checks are off (evaluation in the middle of an epoch)."""
        return bool(self._words[_PAUSED])

    @paused.setter
    def paused(self, value: bool) -> None:
        self._words[_PAUSED] = int(value)

    def first_warning(self) -> bool:
        """True the first time it is asked, in any process sharing the cell."""
        if self._words[_WARNED]:
            return False
        self._words[_WARNED] = 1
        return True

    def repeated(self, fingerprint: int) -> bool:
        """Records one nonzero 64-bit ``fingerprint``; True when it was already recorded in
        this epoch. The table is direct-mapped: a slot taken by another key is not
        overwritten, so a full table still catches repeats of the keys it holds (every key of
        a repeated pass comes again)."""
        if not fingerprint or not len(self._slots) or self._words[_PAUSED]:
            return False
        slot = ((fingerprint * 0x9E3779B97F4A7C15) & _MASK64) >> self._shift
        current = self._slots[slot]
        if current == fingerprint:
            return True
        if current == 0:
            self._slots[slot] = fingerprint
        return False

    def repeated_keys(self, keys: np.ndarray) -> int | None:
        """Records a batch's sample keys (uint64; fingerprints ``2·key + 1`` in the same table,
        by the kernel ``note_keys``); returns one already recorded in this epoch or twice in
        the batch, or None."""
        if not len(self._table) or self._words[_PAUSED]:
            return None
        found = _core.note_keys(self._table, keys)
        return None if found is None else int(found)

    def __reduce__(self) -> tuple[Any, ...]:
        if multiprocessing.context.get_spawning_popen() is not None:
            return (_attach_cell, (self._raw,))
        _, epoch, batch_index = self.read()
        return (EpochCell, (epoch, batch_index, len(self._table)))


class StreamState:
    """Seed, epoch and batch counter of one collator (picklable, resumable)."""

    __slots__ = (
        "_cell",
        "_local_calls",
        "_lock",
        "_origin_pid",
        "_pid",
        "_saved_batch_index",
        "_seen_seq",
        "batch_index",
        "epoch",
        "explicit",
        "seed",
    )

    def __init__(self, seed: int | None) -> None:
        self.explicit = seed is not None
        self.seed = seed if seed is not None else int.from_bytes(os.urandom(8), "little")
        self.epoch = 0
        self.batch_index = 0  # next global batch index in this process
        self._origin_pid = os.getpid()  # where the (unseeded) seed was drawn
        self._pid = os.getpid()
        self._local_calls = 0  # batches made by this copy inside a DataLoader worker
        self._seen_seq = -1  # the cell's sequence number those calls belong to
        self._saved_batch_index: int | None = None
        self._cell = EpochCell()
        self._lock = threading.Lock()

    def reserve(self) -> tuple[int, int, int, tuple[bool, int]]:
        """Takes the next batch: ``(seed, epoch, global batch index, ticket)``.

        Thread-safe: concurrent calls get distinct batch indices. Pass the ticket to
        :meth:`cancel` if making the batch fails, so a failed call leaves the stream where it
        was (when no other batch was reserved since).
        """
        info = worker_info()
        with self._lock:
            if info is None:
                ticket = (False, self.batch_index)
                epoch, index = self.epoch, self.batch_index
                self.batch_index += 1
            else:
                # The epoch set in the main process; a new one (or a fresh copy in a new
                # worker process) restarts this worker's count, as the DataLoader restarts
                # its round-robin with every pass.
                seq, epoch, first = self._cell.read()
                if self._pid != os.getpid() or seq != self._seen_seq:
                    self._pid = os.getpid()
                    self._seen_seq = seq
                    self._local_calls = 0
                ticket = (True, self._local_calls)
                index = first + self._local_calls * info.num_workers + info.id
                self._local_calls += 1
        if info is not None:
            seed = self.seed if self.explicit else mix64(self.seed, info.seed)
        elif not self.explicit and os.getpid() != self._origin_pid:
            # An unseeded copy in another process (multiprocessing, spawn): never share the
            # parent's stream.
            seed = mix64(self.seed, os.getpid())
        else:
            seed = self.seed
        return seed, epoch, index, ticket

    def cancel(self, ticket: tuple[bool, int]) -> None:
        """Gives back a reserved batch if it is still the latest one."""
        in_worker, value = ticket
        with self._lock:
            if in_worker and self._local_calls == value + 1:
                self._local_calls = value
            elif not in_worker and self.batch_index == value + 1:
                self.batch_index = value

    def set_epoch(self, epoch: int, batch_index: int = 0) -> None:
        for name, v in (("epoch", epoch), ("batch_index", batch_index)):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 1 << 64:
                raise ValueError(f"{name}: expected an int in [0, 2**64), got {v!r}")
        with self._lock:
            self.epoch = epoch
            self.batch_index = batch_index
            self._local_calls = 0
            self._saved_batch_index = None
            self._cell.write(epoch, batch_index)

    # -- repeated keys and evaluation --------------------------------------------------------

    def record(self, who: str, epoch: int, batch_index: int, sample_ids: Any) -> None:
        """After a batch was made: notes its keys (``sample_ids``, else the batch index) and
        warns, once per collator, when one was already made in this epoch (the same stream
        again: repeated masks)."""
        if worker_info() is not None and not self.explicit:
            return  # unseeded workers draw their own streams: nothing can repeat
        repeat: int | None = None
        if sample_ids is not None:  # odd fingerprints: sample keys
            key = self._cell.repeated_keys(np.asarray(sample_ids, dtype=np.uint64))
            repeat = None if key is None else (key * 2 + 1) & _MASK64
        else:  # even fingerprints: batch indices
            fingerprint = (batch_index * 2 + 2) & _MASK64
            repeat = fingerprint if self._cell.repeated(fingerprint) else None
        if repeat is not None and self._cell.first_warning():
            warnings.warn(_repeat_message(who, epoch, repeat), RepeatedSampleKeyWarning, 4)

    def begin_evaluation(self) -> None:
        """Evaluation batches are about to be made with this collator in the middle of an
        epoch: stop the repeat checks and remember the batch counter (restored by
        :meth:`end_evaluation`, so evaluation does not shift the training batches' keys)."""
        with self._lock:
            if self._saved_batch_index is None:
                self._saved_batch_index = self.batch_index
            self._cell.paused = True

    def end_evaluation(self) -> None:
        with self._lock:
            if self._saved_batch_index is not None:
                self.batch_index = self._saved_batch_index
                self._saved_batch_index = None
            self._cell.paused = False

    def state_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "explicit_seed": self.explicit,
            "epoch": self.epoch,
            "batch_index": self.batch_index,
            "stream_version": _core.STREAM_VERSION,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict):
            raise TypeError(f"state: expected a dict, got {type(state).__name__}")
        missing = {"seed", "epoch", "batch_index"} - state.keys()
        if missing:
            raise ValueError(f"state: missing keys {sorted(missing)}")
        version = state.get("stream_version", _core.STREAM_VERSION)
        if version != _core.STREAM_VERSION:
            raise ValueError(
                f"state: saved with random-stream version {version}, this build uses "
                f"{_core.STREAM_VERSION}; batches would not match"
            )
        seed = check_seed(state["seed"])
        if seed is None:
            raise ValueError("state: seed must be an int")
        self.seed = seed
        self.explicit = bool(state.get("explicit_seed", True))
        self.set_epoch(state["epoch"], state["batch_index"])

    def __getstate__(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "explicit": self.explicit,
            "epoch": self.epoch,
            "batch_index": self.batch_index,
            "origin_pid": self._origin_pid,
            "cell": self._cell,  # by reference into a starting process, else a snapshot
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.seed = state["seed"]
        self.explicit = state["explicit"]
        self.epoch = state["epoch"]
        self.batch_index = state["batch_index"]
        self._origin_pid = state["origin_pid"]
        self._pid = -1  # forces a reset of the local worker count on first use
        self._local_calls = 0
        self._seen_seq = -1
        self._saved_batch_index = None
        cell = state.get("cell")
        self._cell = cell if cell is not None else EpochCell(self.epoch, self.batch_index)
        self._lock = threading.Lock()


def _repeat_message(who: str, epoch: int, fingerprint: int) -> str:
    """The warning for a key made twice in one epoch: which key, and how to fix it."""
    if fingerprint & 1:
        what = (
            f"sample key idx={fingerprint >> 1} came twice in epoch {epoch}, so both rows drew "
            "the same random stream"
        )
    else:
        what = (
            f"batch {(fingerprint >> 1) - 1} was made twice in epoch {epoch} (examples without "
            "an 'idx' are keyed by batch and row), so its rows drew the same random streams "
            "as before"
        )
    return (
        f"{who}: {what} — masks repeat. Start every epoch with collator.set_epoch(epoch) "
        "(it reaches DataLoader workers, persistent ones included); with transformers.Trainer "
        "add callbacks=[lmobjectives.torch.integration.EpochCallback()], which also covers "
        "evaluation with the training collator. Give the examples of one epoch distinct "
        "'idx' values. Shown once per collator (see docs/guide/training.md)."
    )
