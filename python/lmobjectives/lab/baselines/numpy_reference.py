"""The references a competent person would write by hand in NumPy.

- :class:`NumpyMLMCollator`: the masking of :class:`~lmobjectives.MLMCollator` — pad into a 2-D
  array, compute the eligible positions as boolean masks, draw all random numbers for the batch
  at once. Same knobs and same output, with its own ``numpy.random.Generator`` (statistically
  equivalent, not bit-identical).
- :func:`numpy_topk`: exact top-k retrieval by inner product, per chunk of queries: the product,
  ``argpartition``, then a sort of the k.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from itertools import chain
from typing import Any, Literal

import numpy as np

from lmobjectives import IGNORE_INDEX
from lmobjectives._optional import require
from lmobjectives._tokenizer import tokenizer_info

__all__ = ["NUMPY_CHUNK", "NumpyMLMCollator", "numpy_topk"]

#: Queries per chunk of :func:`numpy_topk`.
NUMPY_CHUNK = 1024


def _check_probability(name: str, value: Any) -> float:
    p = float(value)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}: must be in [0, 1], got {value!r}")
    return p


def _vocabulary(
    tokenizer: Any,
    vocab_size: int | None,
    mask_token_id: int | None,
    pad_token_id: int | None,
    special_token_ids: Any,
) -> tuple[int, int, int, list[int]]:
    """``(vocab_size, mask_token_id, pad_token_id, special ids)``: the given values, else the
    tokenizer's; the special ids include mask and pad and are checked against the vocabulary."""
    info = tokenizer_info(tokenizer) if tokenizer is not None else None
    if info is not None:
        vocab_size = info.vocab_size if vocab_size is None else vocab_size
        mask_token_id = info.mask_token_id if mask_token_id is None else mask_token_id
        pad_token_id = info.pad_token_id if pad_token_id is None else pad_token_id
        if special_token_ids is None:
            special_token_ids = info.special_token_ids
    for name, value in (
        ("vocab_size", vocab_size),
        ("mask_token_id", mask_token_id),
        ("pad_token_id", pad_token_id),
    ):
        if value is None:
            raise ValueError(f"{name}: required (pass it or a tokenizer)")
    vocab_size, mask_token_id, pad_token_id = (
        int(vocab_size),  # type: ignore[arg-type]
        int(mask_token_id),  # type: ignore[arg-type]
        int(pad_token_id),  # type: ignore[arg-type]
    )
    if vocab_size < 1:
        raise ValueError(f"vocab_size: must be positive, got {vocab_size}")
    specials = [int(i) for i in (special_token_ids or ())] + [mask_token_id, pad_token_id]
    for i in specials:
        if not 0 <= i < vocab_size:
            raise ValueError(f"special_token_ids: id {i} is not in [0, {vocab_size})")
    return vocab_size, mask_token_id, pad_token_id, specials


class NumpyMLMCollator:
    """MLM masking in plain NumPy: the reference a user would write without lmobjectives.

    It makes the same decisions as :class:`~lmobjectives.MLMCollator`:

    1. pad the rows on the right (or left) with ``pad_token_id``; padding gets attention 0,
       every given token attention 1 (or the example's own ``attention_mask``);
    2. *eligible* positions are given tokens whose id is not special (``special_token_ids``
       plus pad and mask), whose ``special_tokens_mask`` is 0 and whose attention is 1;
    3. select each eligible position with probability ``mlm_probability`` — or, with
       ``exact_budget=True``, exactly ``round_half_even(p·n)`` of a row's ``n`` eligible
       positions (at least 1, at most ``max_predictions``), uniformly without replacement;
    4. a selected position is labelled with its id and becomes ``mask_token_id`` with
       probability ``mask_replace_prob``, a uniform *non-special* id with
       ``random_replace_prob``, and is kept otherwise; other labels are ``-100``.

    Input: a list of mappings with ``input_ids`` (and optionally ``special_tokens_mask``,
    ``attention_mask``), a list of rows, or a 2-D integer array. Output: ``input_ids``,
    ``attention_mask`` and ``labels``, int64 NumPy arrays (or tensors with
    ``return_tensors="pt"``).

    Example:
        >>> collate = NumpyMLMCollator(vocab_size=100, mask_token_id=4, pad_token_id=0,
        ...                            special_token_ids=[1, 2, 3], seed=0)
        >>> batch = collate([[2, 17, 18, 19, 3], [2, 20, 3]])
        >>> batch["attention_mask"].tolist()
        [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    """

    def __init__(
        self,
        tokenizer: Any = None,
        *,
        vocab_size: int | None = None,
        mask_token_id: int | None = None,
        pad_token_id: int | None = None,
        special_token_ids: Any = None,
        mlm_probability: float = 0.15,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        exact_budget: bool = False,
        max_predictions: int | None = None,
        padding_side: Literal["right", "left"] = "right",
        seed: int | None = None,
        return_tensors: Literal["np", "pt"] = "np",
    ) -> None:
        vocab_size, mask_token_id, pad_token_id, specials = _vocabulary(
            tokenizer, vocab_size, mask_token_id, pad_token_id, special_token_ids
        )
        self.vocab_size = int(vocab_size)
        self.mask_token_id = int(mask_token_id)
        self.pad_token_id = int(pad_token_id)
        self.mlm_probability = _check_probability("mlm_probability", mlm_probability)
        self.mask_replace_prob = _check_probability("mask_replace_prob", mask_replace_prob)
        self.random_replace_prob = _check_probability("random_replace_prob", random_replace_prob)
        if self.mask_replace_prob + self.random_replace_prob > 1.0 + 1e-12:
            raise ValueError("random_replace_prob: mask_replace_prob + random_replace_prob > 1")
        if max_predictions is not None and (not exact_budget or max_predictions < 1):
            raise ValueError("max_predictions: needs exact_budget=True and a positive int")
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side: must be 'right' or 'left', got {padding_side!r}")
        if return_tensors not in ("np", "pt"):
            raise ValueError(f"return_tensors: must be 'np' or 'pt', got {return_tensors!r}")
        if return_tensors == "pt":  # fail here, not on the first batch
            require("torch", 'return_tensors="pt"')
        self.exact_budget = bool(exact_budget)
        self.max_predictions = max_predictions
        self.padding_side = padding_side
        self.return_tensors = return_tensors
        # A lookup table over the vocabulary and the ids random replacement draws from.
        self.is_special = np.zeros(self.vocab_size, dtype=bool)
        self.is_special[specials] = True
        self.special_token_ids = sorted(set(specials))
        self.replacement_pool = np.flatnonzero(~self.is_special)
        self.rng = np.random.default_rng(seed)

    # -- input -----------------------------------------------------------------------------

    @staticmethod
    def _columns(examples: Any) -> tuple[Any, list[Any] | None, list[Any] | None]:
        """(input_ids as a 2-D array or a list of rows, special_tokens_mask rows or None,
        attention_mask rows or None)."""
        if isinstance(examples, np.ndarray) or hasattr(examples, "__array__"):
            array = np.asarray(examples)
            if array.ndim != 2:
                raise ValueError(f"examples: expected a 2-D array, got {array.ndim}-D")
            return array, None, None
        if not isinstance(examples, (list, tuple)) or len(examples) == 0:
            raise TypeError("examples: expected a non-empty list of examples or rows")
        if isinstance(examples[0], Mapping):
            ids = [ex["input_ids"] for ex in examples]
            special = attention = None
            if "special_tokens_mask" in examples[0]:
                special = [ex["special_tokens_mask"] for ex in examples]
            if "attention_mask" in examples[0]:
                attention = [ex["attention_mask"] for ex in examples]
            return ids, special, attention
        return list(examples), None, None

    def _pad(self, rows: list[Any], fill: int, lengths: np.ndarray, width: int) -> np.ndarray:
        """Rows → a (B, width) int64 array, ``fill`` where there is no token."""
        out = np.full((len(rows), width), fill, dtype=np.int64)
        if isinstance(rows[0], (list, tuple)):
            flat = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
        else:  # 1-D arrays or tensors
            flat = np.concatenate([np.asarray(r) for r in rows])
        out[self._valid(lengths, width)] = flat
        return out

    def _valid(self, lengths: np.ndarray, width: int) -> np.ndarray:
        positions = np.arange(width)
        if self.padding_side == "right":
            return positions < lengths[:, None]
        return positions >= (width - lengths)[:, None]

    # -- the batch -------------------------------------------------------------------------

    def __call__(self, examples: Any) -> dict[str, Any]:
        rows, special_rows, attention_rows = self._columns(examples)
        if isinstance(rows, np.ndarray):  # already padded: every position is a given token
            input_ids = rows.astype(np.int64)  # a copy: inputs are never modified
            valid = np.ones(input_ids.shape, dtype=bool)
        else:
            lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
            width = int(lengths.max())
            input_ids = self._pad(rows, self.pad_token_id, lengths, width)
            valid = self._valid(lengths, width)
        if input_ids.size and (input_ids.min() < 0 or input_ids.max() >= self.vocab_size):
            raise ValueError(f"input_ids: ids must be in [0, {self.vocab_size})")

        attention = valid
        if attention_rows is not None:
            attention = valid & (self._pad(attention_rows, 0, lengths, width) != 0)
        eligible = attention & ~self.is_special[input_ids]
        if special_rows is not None:
            eligible &= self._pad(special_rows, 1, lengths, width) == 0

        selected = self._select(eligible)

        labels = np.full(input_ids.shape, IGNORE_INDEX, dtype=np.int64)
        labels[selected] = input_ids[selected]
        # The 80/10/10 split, one uniform draw per selected position.
        rows_sel, cols_sel = np.nonzero(selected)
        u = self.rng.random(len(rows_sel))
        to_mask = u < self.mask_replace_prob
        input_ids[rows_sel[to_mask], cols_sel[to_mask]] = self.mask_token_id
        to_random = ~to_mask & (u < self.mask_replace_prob + self.random_replace_prob)
        n_random = int(to_random.sum())
        if n_random:
            picks = self.replacement_pool[
                self.rng.integers(len(self.replacement_pool), size=n_random)
            ]
            input_ids[rows_sel[to_random], cols_sel[to_random]] = picks

        batch = {
            "input_ids": input_ids,
            "attention_mask": attention.astype(np.int64),
            "labels": labels,
        }
        if self.return_tensors == "pt":
            torch = require("torch", 'return_tensors="pt"')
            return {k: torch.from_numpy(v) for k, v in batch.items()}
        return batch

    def _select(self, eligible: np.ndarray) -> np.ndarray:
        """The selected positions: i.i.d. Bernoulli, or an exact per-row budget."""
        if not self.exact_budget:
            return eligible & (self.rng.random(eligible.shape) < self.mlm_probability)
        n = eligible.sum(axis=1)
        k = self.exact_counts(n)
        # A uniform k-subset of each row's eligible positions: the k smallest of i.i.d. uniform
        # keys (ineligible positions get key 2, above every real key).
        keys = np.where(eligible, self.rng.random(eligible.shape), 2.0)
        rank = np.argsort(np.argsort(keys, axis=1, kind="stable"), axis=1, kind="stable")
        return eligible & (rank < k[:, None])

    def exact_counts(self, n: np.ndarray) -> np.ndarray:
        """Positions the exact budget selects among ``n`` eligible ones, per row."""
        n = np.asarray(n, dtype=np.int64)
        if self.mlm_probability == 0.0:
            return np.zeros_like(n)
        k = np.rint(self.mlm_probability * n).astype(np.int64)  # rint: round half to even
        k = np.minimum(np.maximum(k, 1), n)
        if self.max_predictions is not None:
            k = np.minimum(k, self.max_predictions)
        return k

    def __repr__(self) -> str:
        return (
            f"NumpyMLMCollator(vocab_size={self.vocab_size}, mask_token_id={self.mask_token_id}, "
            f"pad_token_id={self.pad_token_id}, special_token_ids={self.special_token_ids}, "
            f"mlm_probability={self.mlm_probability}, "
            f"mask_replace_prob={self.mask_replace_prob}, "
            f"random_replace_prob={self.random_replace_prob}, exact_budget={self.exact_budget})"
        )


def numpy_topk(
    queries: np.ndarray, corpus: np.ndarray, k: int, chunk: int = NUMPY_CHUNK
) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    """A zero-argument search returning each query's ``k`` best corpus rows by inner product,
    ``(ids, scores)``, best first: per chunk of ``chunk`` queries, ``chunk @ corpus.T``,
    ``argpartition``, then a stable sort of the k."""

    def numpy_search() -> Any:
        ids = np.empty((queries.shape[0], k), dtype=np.int64)
        scores = np.empty((queries.shape[0], k), dtype=np.float32)
        for i in range(0, queries.shape[0], chunk):
            s = queries[i : i + chunk] @ corpus.T
            part = np.argpartition(-s, k - 1, axis=1)[:, :k]
            top = np.take_along_axis(s, part, 1)
            order = np.argsort(-top, axis=1, kind="stable")
            ids[i : i + chunk] = np.take_along_axis(part, order, 1)
            scores[i : i + chunk] = np.take_along_axis(top, order, 1)
        return ids, scores

    return numpy_search
