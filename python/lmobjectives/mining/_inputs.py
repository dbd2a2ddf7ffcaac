"""Mining's inputs: embeddings, positives, per-query ids and the argument checks.

Embeddings come as NumPy arrays, ``.npy`` paths (memory-mapped) or CPU tensors and are read
in place whenever they already are C-contiguous float32 or float16 (float16 travels as its
uint16 bits, which the Rust kernels widen themselves).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from lmobjectives._torch_bridge import is_tensor
from lmobjectives.errors import ArgumentTypeError, InvalidArgumentError

__all__ = [
    "Embeddings",
    "as_embeddings",
    "as_matrix",
    "check_float",
    "check_int",
    "choice",
    "ids_vector",
    "positives_csr",
]


class Embeddings(NamedTuple):
    """Embeddings as the NumPy backends read them (what :func:`as_embeddings` returns).

    ``array`` is a C-contiguous 2-D float32 array, or the uint16 bits of a float16 one when
    ``float16`` is true (:meth:`values` views them as float16 again).
    """

    array: np.ndarray
    float16: bool

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    def values(self) -> np.ndarray:
        """The embeddings with their real dtype (float32 or float16), without a copy."""
        return self.array.view(np.float16) if self.float16 else self.array


def as_embeddings(x: Any, name: str) -> Embeddings:
    """:func:`as_matrix` as :class:`Embeddings`: the NumPy backends' ``prepare``."""
    return Embeddings(*as_matrix(x, name))


def as_matrix(x: Any, name: str) -> tuple[np.ndarray, bool]:
    """A C-contiguous 2-D float32 array, or float16 seen as its uint16 bits (read in place
    whenever the input already is one of those). Returns ``(array, is_float16)``."""
    if isinstance(x, (str, os.PathLike)):
        try:
            x = np.load(os.fspath(x), mmap_mode="r")
        except (OSError, ValueError) as e:
            raise ValueError(f"{name}: could not load {os.fspath(x)!r} as a .npy file: {e}") from e
    if is_tensor(x):
        if x.device.type != "cpu":
            raise ValueError(f"{name}: a {x.device.type} tensor needs backend='torch' or 'auto'")
        x = x.detach().numpy()
    if not isinstance(x, np.ndarray):
        if isinstance(x, (list, tuple)):
            x = np.asarray(x, dtype=np.float32)
        else:
            raise TypeError(
                f"{name}: expected a 2-D float array, a .npy path or a tensor, "
                f"got {type(x).__name__}"
            )
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (rows × dim), got shape {x.shape}")
    if x.dtype == np.float16:
        return np.ascontiguousarray(x).view(np.uint16), True
    if x.dtype == np.float32:
        return np.ascontiguousarray(x), False
    if x.dtype.kind in "fiu":
        return np.ascontiguousarray(x, dtype=np.float32), False
    raise TypeError(f"{name}: expected float32 or float16 values, got {x.dtype}")


# long: the four accepted forms of positives, each checked strictly (no float or str ids)
def positives_csr(positives: Any, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Positives as CSR ``(values int64, offsets int64 [rows + 1])``."""
    if (
        isinstance(positives, tuple)
        and len(positives) == 2
        and all(isinstance(p, np.ndarray) or is_tensor(p) for p in positives)
    ):
        # CSR is two integer arrays; a tuple of two lists is two queries' rows.
        values, offsets = (
            _int_array(f"positives[{i}]", p.cpu() if is_tensor(p) else p, 1)
            for i, p in enumerate(positives)
        )
    elif isinstance(positives, np.ndarray) or is_tensor(positives):
        arr = np.asarray(positives.cpu() if is_tensor(positives) else positives)
        if arr.dtype.kind not in "iu":
            raise ArgumentTypeError(
                f"positives: expected integer corpus ids, got dtype {arr.dtype}"
            )
        _fits_int64("positives", arr)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise ValueError(f"positives: expected 1-D or 2-D ids, got shape {arr.shape}")
        values = np.ascontiguousarray(arr, dtype=np.int64).reshape(-1)
        offsets = np.arange(arr.shape[0] + 1, dtype=np.int64) * arr.shape[1]
    elif isinstance(positives, Sequence):
        lengths = np.empty(len(positives), dtype=np.int64)
        flat: list[int] = []
        for i, row in enumerate(positives):
            if _is_int(row):
                row = [row]
            if isinstance(row, (str, bytes)) or not isinstance(row, Iterable):
                raise ArgumentTypeError(
                    f"positives[{i}]: expected a corpus id or a list of them, got {row!r:.40}"
                )
            ids = []
            for j, v in enumerate(row):
                if not _is_int(v):
                    raise ArgumentTypeError(
                        f"positives[{i}][{j}]: expected an integer corpus id, got "
                        f"{type(v).__name__} ({v!r:.40})"
                    )
                if not -(2**63) <= int(v) < 2**63:
                    raise InvalidArgumentError(
                        f"positives[{i}][{j}]: {int(v)} does not fit in int64"
                    )
                ids.append(int(v))
            lengths[i] = len(ids)
            flat.extend(ids)
        values = np.asarray(flat, dtype=np.int64)
        offsets = np.zeros(len(positives) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
    else:
        raise TypeError(
            "positives: expected a list of id lists, an int array, or (values, offsets), "
            f"got {type(positives).__name__}"
        )
    if offsets.shape[0] != rows + 1:
        raise ValueError(f"positives: has {offsets.shape[0] - 1} rows for {rows} queries")
    if offsets[0] != 0 or offsets[-1] != values.shape[0] or (np.diff(offsets) < 0).any():
        raise ValueError("positives: offsets must start at 0, not decrease, and end at len(values)")
    return values, offsets


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _fits_int64(name: str, arr: np.ndarray) -> None:
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise InvalidArgumentError(f"{name}: ids must fit in int64, got {int(arr.max())}")


def _int_array(name: str, x: Any, ndim: int) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "iu":
        raise ArgumentTypeError(f"{name}: expected an integer array, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise InvalidArgumentError(f"{name}: expected a {ndim}-D array, got shape {arr.shape}")
    _fits_int64(name, arr)
    return np.ascontiguousarray(arr, dtype=np.int64)


def ids_vector(name: str, ids: Any, rows: int, lowest: int) -> np.ndarray:
    """One integer id per query (int64 ``[rows]``), each ``>= lowest``."""
    arr = np.asarray(ids.cpu() if is_tensor(ids) else ids)
    if arr.dtype.kind not in "iu" or arr.shape != (rows,):
        raise ValueError(
            f"{name}: expected {rows} integer ids, got shape {arr.shape} dtype {arr.dtype}"
        )
    if arr.dtype == np.uint64 and rows and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name}: ids must fit in int64, got {int(arr.max())}")
    out = arr.astype(np.int64)
    if rows and int(out.min()) < lowest:
        bad = int(np.argmax(out < lowest))
        raise ValueError(f"{name}[{bad}]: ids must be >= {lowest}, got {int(out[bad])}")
    return out


def check_int(name: str, v: Any, lo: int, none: bool = False) -> Any:
    if v is None and none:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name}: expected an int >= {lo}{' or None' if none else ''}, got {v!r}")
    return int(v)


def check_float(name: str, v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name}: expected a number or None, got {type(v).__name__}")
    if not np.isfinite(v):
        raise ValueError(f"{name}: must be finite, got {v}")
    return float(v)


def choice(name: str, v: Any, choices: tuple[str, ...]) -> Any:
    if v not in choices:
        raise ValueError(f"{name}: must be one of {list(choices)}, got {v!r}")
    return str(v)
