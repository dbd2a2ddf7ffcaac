"""Normalises what a DataLoader hands a collator into rows the Rust kernels read.

Accepted forms (design: §3):
- a list of examples, each a mapping with ``input_ids`` (list of ints or 1-D integer array)
  and optionally ``attention_mask``, ``special_tokens_mask``, ``token_type_ids``,
  ``word_ids`` (a fast tokenizer's ``word_ids()``, ``None`` for special tokens), ``idx``;
- a list of sequences (lists of ints or 1-D integer arrays / tensors);
- a 2-D integer array (or tensor), e.g. already padded rows;
- a mapping of such arrays (a pre-collated batch, e.g. ``{"input_ids": 2-D, ...}``), whose
  columns may also be :class:`RaggedRows` (rows stored flat, as our datasets return them);
- an :class:`ExampleBatch` (what our datasets' ``__getitems__`` return): read by its columns.

``word_ids`` may hold ``None`` or ``-1`` (no word: a special token), or be a float array whose
``NaN`` stands for ``None`` (what ``datasets``' NumPy and torch formats make of it).

Per-example labels (``next_sentence_label``, ``sentence_order_label``) pass through as int64
arrays of one value per row.

Rows are not copied here: Python lists and 1-D arrays are gathered by the Rust layer, 2-D
arrays are read in place when C-contiguous.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np

TOKEN_KEYS = (
    "input_ids",
    "attention_mask",
    "special_tokens_mask",
    "token_type_ids",
    "word_ids",
)
SAMPLE_KEY = "idx"
LABEL_KEYS = ("next_sentence_label", "sentence_order_label")
ACCEPTED_KEYS = frozenset((*TOKEN_KEYS, SAMPLE_KEY, *LABEL_KEYS))


class RaggedRows:
    """Rows stored flat: row ``r`` is ``values[offsets[r]:offsets[r + 1]]``.

    A batch column in this form reaches the kernels without a Python object per row or per
    token (our datasets' ``__getitems__`` return it).
    """

    __slots__ = ("offsets", "values")

    def __init__(self, values: np.ndarray, offsets: np.ndarray) -> None:
        self.values = np.ascontiguousarray(values)
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        if self.values.ndim != 1 or self.offsets.ndim != 1 or len(self.offsets) == 0:
            raise ValueError("RaggedRows: values and offsets must be 1-D, offsets non-empty")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, r: int) -> np.ndarray:
        return self.values[self.offsets[r] : self.offsets[r + 1]]

    def __repr__(self) -> str:
        return f"RaggedRows({len(self)} rows, {len(self.values)} values)"


class ExampleBatch(Sequence[dict[str, Any]]):
    """A batch of examples stored by columns, what our datasets' ``__getitems__`` return.

    The collators read the columns directly (``input_ids`` as :class:`RaggedRows`: no Python
    object per row). Everything else sees the list of examples that ``__getitem__`` would have
    given — ``batch[i]`` is example ``i`` as a dict, iteration yields them — so code written
    for lists of examples works unchanged: ``transformers.Trainer``'s column filter
    (``remove_unused_columns=True``), ``default_collate``. ``batch["input_ids"]`` is a column.
    """

    __slots__ = ("columns",)

    def __init__(self, columns: dict[str, Any]) -> None:
        self.columns = columns

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...
    @overload
    def __getitem__(self, i: str) -> Any: ...
    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, str):
            return self.columns[i]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        j = operator.index(i)
        if not -n <= j < n:
            raise IndexError(f"index {i} out of range for a batch of {n}")
        j %= n
        return {k: _cell(v, j) for k, v in self.columns.items()}

    def keys(self) -> Any:
        """The column names."""
        return self.columns.keys()

    def __repr__(self) -> str:
        return f"ExampleBatch({len(self)} examples, columns {list(self.columns)})"


def _cell(column: Any, j: int) -> Any:
    """Example ``j``'s value in a column: a row (array) or, for 1-D columns, a Python int."""
    if isinstance(column, RaggedRows):
        return column[j]
    value = column[j]
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass
class Rows:
    """One batch's columns, each a 2-D array or a list of rows (``None`` when absent)."""

    input_ids: Any
    attention_mask: Any = None
    special_tokens_mask: Any = None
    token_type_ids: Any = None
    word_ids: Any = None
    sample_ids: Any = None  # uint64 array of sample keys
    # Per-example labels that travel with the batch (name -> int64 array, one per row).
    labels: dict[str, np.ndarray] | None = None
    # How row `{row}` of column `{key}` is named in error messages.
    rows_name: str = "{key}[{row}]"
    # Columns an objective asked for beyond TOKEN_KEYS (see ``normalize(extra_keys=...)``).
    extra: dict[str, Any] = field(default_factory=dict)


def _as_array_like(x: Any) -> Any:
    """Lists, tuples and ndarrays pass through; tensors and other array-likes become ndarrays
    (zero-copy for CPU tensors)."""
    if isinstance(x, (list, tuple, np.ndarray)):
        return x
    if hasattr(x, "__array__") or hasattr(x, "__array_interface__"):
        if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor: never keep autograd
            x = x.detach().cpu()
        return np.asarray(x)
    return x


_ROW_TYPES = (list, tuple, np.ndarray)


def _rows(values: list[Any]) -> list[Any]:
    """Rows as the Rust layer reads them; only unusual rows (tensors, array-likes) are
    converted, so the common list-of-lists batch costs one pass of type checks."""
    if all(type(r) in _ROW_TYPES for r in values):
        return values
    return [_as_array_like(r) for r in values]


def _column(x: Any, name: str) -> Any:
    if isinstance(x, RaggedRows):
        return x
    x = _as_array_like(x)
    if isinstance(x, np.ndarray):
        if x.ndim == 1 and x.dtype != object:
            raise ValueError(
                f"{name}: a 1-D array is a single row; pass a list of rows or a 2-D array"
            )
        if x.ndim == 2:
            return np.ascontiguousarray(x)
        if x.dtype == object:
            raise TypeError(
                f"{name}: got an object array (ragged rows?); pass a list of rows instead"
            )
        raise ValueError(f"{name}: expected 2-D data, got a {x.ndim}-D array")
    if isinstance(x, (list, tuple)):
        return _rows(list(x))
    raise TypeError(f"{name}: expected a list of rows or a 2-D array, got {type(x).__name__}")


def _sample_ids(values: Any, name: str) -> Any:
    """Sample keys as a uint64 array (validated; vectorised for integer arrays)."""
    if isinstance(values, np.ndarray) and np.issubdtype(values.dtype, np.integer):
        values = values.ravel()
        if values.size and np.issubdtype(values.dtype, np.signedinteger) and values.min() < 0:
            i = int(np.argmax(values < 0))
            raise ValueError(f"{name}[{i}]: sample index must be in [0, 2**64), got {values[i]}")
        return values.astype(np.uint64)
    if type(values) is list and values and all(type(v) is int for v in values):
        # The common case, plain ints (e.g. a map-style dataset's "idx"): one conversion;
        # anything out of range falls through to the loop below, which names it.
        try:
            arr = np.array(values, dtype=np.int64)
        except OverflowError:
            pass
        else:
            if arr.min() >= 0:
                return arr.astype(np.uint64)
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not hasattr(v, "__index__"):
            raise TypeError(f"{name}[{i}]: expected an int sample index, got {type(v).__name__}")
        v = operator.index(v)
        if not 0 <= v < 1 << 64:
            raise ValueError(f"{name}[{i}]: sample index must be in [0, 2**64), got {v}")
        out.append(v)
    return np.asarray(out, dtype=np.uint64)


def _labels(values: Any, name: str) -> np.ndarray:
    """One integer label per example, as int64."""
    arr = np.asarray(values)
    if arr.dtype == object or arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        if arr.dtype == np.bool_ and arr.ndim == 1:
            return arr.astype(np.int64)
        raise TypeError(f"{name}: expected one integer label per example, got {values!r}")
    return arr.astype(np.int64)


def _check_keys(keys: Any, where: str, extra_keys: tuple[str, ...] = ()) -> None:
    if "input_ids" not in keys:
        raise ValueError(
            f"{where}: missing the 'input_ids' key (got keys {sorted(map(str, keys))})"
        )
    accepted = ACCEPTED_KEYS.union(extra_keys)
    unknown = set(keys) - accepted
    if unknown:
        raise ValueError(
            f"{where}: unexpected keys {sorted(map(str, unknown))}; accepted keys are "
            f"{sorted(accepted)} (remove other columns, e.g. with "
            "dataset.remove_columns or Trainer's remove_unused_columns)"
        )


def _check_examples(examples: Sequence[Any], keys: Any) -> None:
    """Every example is a mapping with the keys of the first. One pass of cheap checks for the
    common batch (plain dicts with those keys in the same order); the loop finds and names
    whatever else there is."""
    order = list(keys)
    if all(type(ex) is dict and list(ex) == order for ex in examples):
        return
    for i, ex in enumerate(examples):
        if type(ex) is not dict and not isinstance(ex, Mapping):
            raise TypeError(
                f"examples[{i}]: expected a mapping like examples[0], got {type(ex).__name__}"
            )
        if ex.keys() != keys:
            raise ValueError(
                f"examples[{i}]: keys {sorted(ex.keys())} differ from examples[0]'s {sorted(keys)}"
            )


def normalize(examples: Any, extra_keys: tuple[str, ...] = ()) -> Rows:
    """Turns a batch in any accepted form into :class:`Rows`; raises TypeError/ValueError
    naming ``examples`` (and the offending index/key) for anything else.

    ``extra_keys`` names further per-token columns an objective reads (e.g. BART's
    ``sentence_starts``); they are accepted and returned in :attr:`Rows.extra`.
    """
    examples = examples.columns if isinstance(examples, ExampleBatch) else examples
    if isinstance(examples, Mapping):
        _check_keys(examples.keys(), "examples", extra_keys)
        cols = {k: _column(examples[k], k) for k in TOKEN_KEYS if examples.get(k) is not None}
        extra = {k: _column(examples[k], k) for k in extra_keys if examples.get(k) is not None}
        idx = examples.get(SAMPLE_KEY)
        sample_ids = None
        if idx is not None:
            arr = np.asarray(idx)
            sample_ids = _sample_ids(arr if arr.dtype != object else arr.ravel(), SAMPLE_KEY)
        labels = {k: _labels(examples[k], k) for k in LABEL_KEYS if examples.get(k) is not None}
        return Rows(**cols, sample_ids=sample_ids, labels=labels or None, extra=extra)

    examples = _as_array_like(examples)
    if isinstance(examples, np.ndarray):
        return Rows(input_ids=_column(examples, "examples"))
    if not isinstance(examples, (list, tuple)):
        raise TypeError(
            "examples: expected a list of examples, a list of rows, a 2-D array or a mapping, "
            f"got {type(examples).__name__}"
        )
    if len(examples) == 0:
        raise ValueError("examples: the batch is empty")

    first = examples[0]
    if not isinstance(first, Mapping):
        # A mapping among plain rows is reported by the Rust layer as examples[i].
        return Rows(input_ids=_rows(list(examples)), rows_name="examples[{row}]")

    keys = first.keys()
    _check_keys(keys, "examples[0]", extra_keys)
    _check_examples(examples, keys)
    cols = {k: _rows([ex[k] for ex in examples]) for k in TOKEN_KEYS if k in keys}
    extra = {k: _rows([ex[k] for ex in examples]) for k in extra_keys if k in keys}
    sample_ids = (
        _sample_ids([ex[SAMPLE_KEY] for ex in examples], "idx") if SAMPLE_KEY in keys else None
    )
    labels = {k: _labels([ex[k] for ex in examples], k) for k in LABEL_KEYS if k in keys}
    return Rows(
        **cols,
        sample_ids=sample_ids,
        labels=labels or None,
        rows_name="examples[{row}]['{key}']",
        extra=extra,
    )
