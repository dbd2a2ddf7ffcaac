"""The library's one door to PyTorch (design: §1).

The library is NumPy-only: no module of it imports ``torch`` or :mod:`lmobjectives.torch`
except this one, and this one only lazily, inside functions, through
:func:`lmobjectives._optional.require` (so a missing torch raises
:class:`~lmobjectives._optional.MissingDependencyError` naming the ``torch`` extra).
``tests/test_layers.py`` enforces that. What goes through here:

- :func:`is_tensor` and :func:`worker_info`: questions about torch that never import it (a
  tensor or a DataLoader worker can only exist once torch is imported);
- :func:`from_numpy`, :func:`to_torch`: NumPy arrays as tensors sharing their memory
  (``return_tensors="pt"``, tensor results of :mod:`lmobjectives.rl`);
- :class:`SharedMemoryAllocator`: kernel outputs written straight into shared memory in
  DataLoader workers; :class:`PinnedMemoryAllocator` and :func:`pin`: into page-locked
  memory in the training process (``pin_memory=True`` on a collator);
- :func:`load_torch_package`: imports :mod:`lmobjectives.torch`, e.g. so that its mining
  backend registers itself (:func:`lmobjectives.mining.register_backend`).

:mod:`lmobjectives.torch` re-exports :func:`to_torch` and :class:`SharedMemoryAllocator`.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from lmobjectives._optional import require

if TYPE_CHECKING:
    import torch

__all__ = [
    "PinnedMemoryAllocator",
    "SharedMemoryAllocator",
    "from_numpy",
    "is_tensor",
    "load_torch_package",
    "pin",
    "pinning_available",
    "require_torch",
    "to_torch",
    "worker_info",
]


def require_torch(purpose: str | None = None) -> ModuleType:
    """The ``torch`` module; :class:`MissingDependencyError` naming ``purpose`` without it."""
    return require("torch", purpose)


def _torch(purpose: str | None) -> Any:
    """:func:`require_torch` for the per-batch paths: once torch is imported, its entry in
    ``sys.modules`` (a dictionary lookup instead of the import machinery)."""
    module = sys.modules.get("torch")
    return module if module is not None else require("torch", purpose)


def load_torch_package(purpose: str | None = None) -> ModuleType:
    """Imports :mod:`lmobjectives.torch` (after checking torch, so a missing torch names
    ``purpose``); importing it registers its mining backend."""
    require("torch", purpose)
    return importlib.import_module("lmobjectives.torch")


def is_tensor(x: Any) -> bool:
    """Whether ``x`` is a ``torch.Tensor`` (a ``Parameter`` included). Never imports torch:
    without torch imported nothing can be a tensor."""
    tensor_type = getattr(sys.modules.get("torch"), "Tensor", None)
    return isinstance(tensor_type, type) and isinstance(x, tensor_type)


def worker_info() -> Any:
    """The current torch DataLoader worker's info, or None (never imports torch)."""
    th = sys.modules.get("torch")
    if th is None:
        return None
    try:
        return th.utils.data.get_worker_info()
    except AttributeError:  # a partially imported or stub torch
        return None


def from_numpy(x: np.ndarray, purpose: str | None = None) -> Any:
    """``torch.from_numpy`` without a copy, also for read-only arrays (memory-mapped corpora;
    torch warns about them, but nothing here writes to the tensor)."""
    th = _torch(purpose)
    if x.flags.writeable:
        return th.from_numpy(x)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return th.from_numpy(x)


def to_torch(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """``torch.from_numpy`` on every array of a batch: no copy, the tensors share memory."""
    th = _torch("to_torch")
    out: dict[str, torch.Tensor] = {}
    for k, v in batch.items():
        if isinstance(v, np.ndarray):
            out[k] = th.from_numpy(v)
        elif isinstance(v, th.Tensor):
            out[k] = v
        else:
            raise TypeError(f"batch[{k!r}]: expected a NumPy array, got {type(v).__name__}")
    return out


class SharedMemoryAllocator:
    """Output memory for a kernel, allocated directly in shared memory.

    In a DataLoader worker, tensors are moved to shared memory before they travel to the
    main process (one segment and one copy per tensor). Kernels that write their batch into
    one shared buffer instead skip both the copies and two of the three segments — the same
    trick ``default_collate`` plays in workers. ``allocator(shape, dtype)`` returns a writable
    NumPy view for the kernel; :attr:`tensor` keeps the tensor that owns it, and ``names``
    says which output each leading index holds.
    """

    def __init__(self, names: tuple[str, ...] = ()) -> None:
        self.names = names
        self.tensor: torch.Tensor | None = None

    def __call__(self, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        th = _torch("SharedMemoryAllocator")
        dtypes = {"int64": th.int64, "int32": th.int32}
        if dtype not in dtypes:
            raise ValueError(f"dtype: unsupported {dtype!r}")
        torch_dtype = dtypes[dtype]
        numel = 1
        for d in shape:
            numel *= d
        itemsize = th.empty(0, dtype=torch_dtype).element_size()
        storage = self._storage(th, numel * itemsize)
        strides, step = [], 1
        for d in reversed(shape):
            strides.append(step)
            step *= d
        tensor = th.empty(0, dtype=torch_dtype).set_(storage, 0, list(shape), strides[::-1])
        self.tensor = tensor
        return tensor.numpy()

    def _storage(self, th: Any, nbytes: int) -> Any:
        return th.UntypedStorage._new_shared(nbytes)


class PinnedMemoryAllocator(SharedMemoryAllocator):
    """Output memory for a kernel, allocated directly in page-locked (pinned) host memory:
    the batch then goes to the GPU with ``.to(device, non_blocking=True)`` as one
    asynchronous DMA, with no staging copy on the way. ``pin=False`` allocates ordinary
    memory the same way (the CPU fallback)."""

    def __init__(self, names: tuple[str, ...] = (), *, pin: bool = True) -> None:
        super().__init__(names)
        self.pin = pin

    def _storage(self, th: Any, nbytes: int) -> Any:
        return th.empty(nbytes, dtype=th.uint8, pin_memory=self.pin).untyped_storage()


def pinning_available() -> bool:
    """Whether page-locked memory can be had: torch imported and a CUDA device present."""
    th = sys.modules.get("torch")
    return th is not None and bool(th.cuda.is_available())


def pin(batch: dict[str, Any]) -> dict[str, Any]:
    """The tensors of ``batch`` in page-locked memory (one copy each; those already pinned,
    e.g. written by a :class:`PinnedMemoryAllocator`, are kept as they are)."""
    return {k: v if not is_tensor(v) or v.is_pinned() else v.pin_memory() for k, v in batch.items()}
