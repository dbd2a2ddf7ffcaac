"""Seeds, epochs, batch numbering and thread counts shared by every collator.

The contract (design: §3): a row's random stream is keyed by ``(seed, epoch, key)`` where
the key is the example's ``idx`` when it has one, else ``(global batch index, row)``. Inside a
PyTorch DataLoader worker the global batch index is recovered from the worker id, since the
DataLoader hands batches to workers round-robin (worker ``w`` of ``n`` gets batches
``w, w + n, w + 2n, ...``), so ``num_workers`` does not change any batch. Without an explicit
seed each worker mixes in its own torch seed, so no two workers ever share a stream.
"""

from __future__ import annotations

import os
import threading
from typing import Any

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


class StreamState:
    """Seed, epoch and batch counter of one collator (picklable, resumable)."""

    __slots__ = (
        "_local_calls",
        "_lock",
        "_origin_pid",
        "_pid",
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
                index = self.batch_index
                self.batch_index += 1
            else:
                if self._pid != os.getpid():  # a fresh copy in a new worker process
                    self._pid = os.getpid()
                    self._local_calls = 0
                ticket = (True, self._local_calls)
                index = self.batch_index + self._local_calls * info.num_workers + info.id
                self._local_calls += 1
        if info is not None:
            seed = self.seed if self.explicit else mix64(self.seed, info.seed)
        elif not self.explicit and os.getpid() != self._origin_pid:
            # An unseeded copy in another process (multiprocessing, spawn): never share the
            # parent's stream.
            seed = mix64(self.seed, os.getpid())
        else:
            seed = self.seed
        return seed, self.epoch, index, ticket

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
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.seed = state["seed"]
        self.explicit = state["explicit"]
        self.epoch = state["epoch"]
        self.batch_index = state["batch_index"]
        self._origin_pid = state["origin_pid"]
        self._pid = -1  # forces a reset of the local worker count on first use
        self._local_calls = 0
        self._lock = threading.Lock()
