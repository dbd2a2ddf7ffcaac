"""The baselines :class:`~lmobjectives.MLMCollator` is measured and checked against.

- :class:`NumpyMLMCollator`: the same masking written the way a competent person would by hand
  with NumPy — pad into a 2-D array, compute the eligible positions as boolean masks, draw all
  random numbers for the batch at once. Same knobs and same output as ``MLMCollator``, with its
  own ``numpy.random.Generator`` (statistically equivalent, not bit-identical).
- :func:`hf_tokenizer` and :func:`hf_mlm_collator`: Hugging Face's
  ``DataCollatorForLanguageModeling`` (what ``run_mlm.py`` uses) over a ``tokenizers.Tokenizer``.
- :func:`google_pair_instances`: Google BERT's NSP instance builder (and its masking) in pure
  Python, as ``create_pretraining_data.py`` runs it.

``transformers`` and ``torch`` are imported only when an HF baseline or ``"pt"`` output is asked
for.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import chain
from typing import Any, Literal

import numpy as np

from lmobjectives._tokenizer import tokenizer_info

__all__ = [
    "IGNORE_INDEX",
    "NumpyMLMCollator",
    "google_pair_instances",
    "hf_mlm_collator",
    "hf_tokenizer",
]

IGNORE_INDEX = -100


def _check_probability(name: str, value: Any) -> float:
    p = float(value)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}: must be in [0, 1], got {value!r}")
    return p


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
            import torch

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


def hf_tokenizer(tokenizer: Any) -> Any:
    """A ``tokenizers.Tokenizer`` with BERT's special tokens as a ``transformers`` fast
    tokenizer (what ``DataCollatorForLanguageModeling`` needs); a ``transformers`` tokenizer is
    returned as is."""
    if hasattr(tokenizer, "all_special_ids"):
        return tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def hf_mlm_collator(
    tokenizer: Any,
    *,
    seed: int | None = None,
    mlm_probability: float = 0.15,
    return_tensors: Literal["pt", "np"] = "pt",
) -> Any:
    """Hugging Face's ``DataCollatorForLanguageModeling`` (80/10/10, i.i.d. Bernoulli) over
    ``tokenizer`` (a ``tokenizers.Tokenizer`` is wrapped with :func:`hf_tokenizer`)."""
    from transformers import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(
        tokenizer=hf_tokenizer(tokenizer),
        mlm=True,
        mlm_probability=mlm_probability,
        return_tensors=return_tensors,
        seed=seed,
    )


# -- Google BERT's NSP instance builder, in pure Python ---------------------------------------


def google_pair_instances(
    documents: list[list[list[int]]],
    *,
    rng: Any,
    max_seq_length: int = 128,
    short_seq_prob: float = 0.1,
    cls_token_id: int = 2,
    sep_token_id: int = 3,
    mask_token_id: int = 4,
    vocab_size: int = 30522,
    masked_lm_prob: float = 0.15,
    max_predictions_per_seq: int = 20,
    masking: bool = True,
) -> list[dict[str, Any]]:
    """One pass of Google BERT's ``create_instances_from_document`` (and, with ``masking``,
    ``create_masked_lm_predictions``) over ``documents`` (lists of sentences of token ids), as
    its pure-Python code does it: one ``random.Random`` for everything, the reference's quirks
    included (the random document is retried up to ten times; with one document it pairs with
    itself). This is the baseline the Rust builder is measured against."""
    out: list[dict[str, Any]] = []
    max_num_tokens = max_seq_length - 3
    for d, document in enumerate(documents):
        target = max_num_tokens
        if rng.random() < short_seq_prob:
            target = rng.randint(2, max_num_tokens)
        chunk: list[list[int]] = []
        chunk_len = 0
        i = 0
        while i < len(document):
            chunk.append(document[i])
            chunk_len += len(document[i])
            if i == len(document) - 1 or chunk_len >= target:
                if chunk:
                    a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                    tokens_a = [t for s in chunk[:a_end] for t in s]
                    tokens_b: list[int] = []
                    if len(chunk) == 1 or rng.random() < 0.5:
                        is_random = True
                        target_b = target - len(tokens_a)
                        r = d
                        for _ in range(10):
                            r = rng.randint(0, len(documents) - 1)
                            if r != d:
                                break
                        random_doc = documents[r]
                        start = rng.randint(0, len(random_doc) - 1)
                        for j in range(start, len(random_doc)):
                            tokens_b.extend(random_doc[j])
                            if len(tokens_b) >= target_b:
                                break
                        i -= len(chunk) - a_end
                    else:
                        is_random = False
                        tokens_b = [t for s in chunk[a_end:] for t in s]
                    while len(tokens_a) + len(tokens_b) > max_num_tokens:
                        trunc = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
                        if rng.random() < 0.5:
                            del trunc[0]
                        else:
                            trunc.pop()
                    tokens = [cls_token_id, *tokens_a, sep_token_id, *tokens_b, sep_token_id]
                    segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
                    instance: dict[str, Any] = {
                        "tokens": tokens,
                        "segment_ids": segment_ids,
                        "is_random_next": is_random,
                    }
                    if masking:
                        instance.update(
                            _google_masking(
                                tokens,
                                rng,
                                cls_token_id,
                                sep_token_id,
                                mask_token_id,
                                vocab_size,
                                masked_lm_prob,
                                max_predictions_per_seq,
                            )
                        )
                    out.append(instance)
                chunk = []
                chunk_len = 0
            i += 1
    rng.shuffle(out)
    return out


def _google_masking(
    tokens: list[int],
    rng: Any,
    cls: int,
    sep: int,
    mask: int,
    vocab_size: int,
    p: float,
    max_predictions: int,
) -> dict[str, Any]:
    candidates = [i for i, t in enumerate(tokens) if t not in (cls, sep)]
    rng.shuffle(candidates)
    output = list(tokens)
    num_to_predict = min(max_predictions, max(1, round(len(tokens) * p)))
    positions: list[int] = []
    for index in candidates:
        if len(positions) >= num_to_predict:
            break
        if rng.random() < 0.8:
            output[index] = mask
        elif rng.random() < 0.5:
            output[index] = tokens[index]
        else:
            output[index] = rng.randint(0, vocab_size - 1)
        positions.append(index)
    positions.sort()
    return {
        "masked_tokens": output,
        "masked_lm_positions": positions,
        "masked_lm_labels": [tokens[i] for i in positions],
    }
