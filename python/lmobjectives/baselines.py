"""The baselines :class:`~lmobjectives.MLMCollator` is measured and checked against.

- :class:`NumpyMLMCollator`: the same masking written the way a competent person would by hand
  with NumPy — pad into a 2-D array, compute the eligible positions as boolean masks, draw all
  random numbers for the batch at once. Same knobs and same output as ``MLMCollator``, with its
  own ``numpy.random.Generator`` (statistically equivalent, not bit-identical).
- :func:`hf_tokenizer` and :func:`hf_mlm_collator`: Hugging Face's
  ``DataCollatorForLanguageModeling`` (what ``run_mlm.py`` uses) over a ``tokenizers.Tokenizer``.
- :func:`google_pair_instances`: Google BERT's NSP instance builder (and its masking) in pure
  Python, as ``create_pretraining_data.py`` runs it.
- :class:`HFT5MLMCollator`: the T5 span-corruption collator of Hugging Face's Flax example
  (per-row NumPy masks), re-implemented faithfully; :class:`NumpyT5Collator`: the same
  vectorised over the batch.
- :class:`FairseqBartNoiser`: fairseq's ``DenoisingDataset`` noising ported from torch to
  NumPy (fairseq itself is not installable here).

``transformers`` and ``torch`` are imported only when an HF baseline or ``"pt"`` output is asked
for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import chain
from typing import Any, Literal

import numpy as np

from lmobjectives._optional import require
from lmobjectives._tokenizer import tokenizer_info

__all__ = [
    "IGNORE_INDEX",
    "FairseqBartNoiser",
    "HFT5MLMCollator",
    "NumpyMLMCollator",
    "NumpyRandom",
    "NumpyT5Collator",
    "google_pair_instances",
    "hf_mlm_collator",
    "hf_tokenizer",
    "shift_tokens_right",
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


def hf_tokenizer(tokenizer: Any) -> Any:
    """A ``tokenizers.Tokenizer`` with BERT's special tokens as a ``transformers`` fast
    tokenizer (what ``DataCollatorForLanguageModeling`` needs); a ``transformers`` tokenizer is
    returned as is."""
    if hasattr(tokenizer, "all_special_ids"):
        return tokenizer
    transformers = require("transformers", "a transformers tokenizer (hf_tokenizer)")
    return transformers.PreTrainedTokenizerFast(
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
    transformers = require("transformers", "Hugging Face's DataCollatorForLanguageModeling")
    if return_tensors == "pt":
        require("torch", 'return_tensors="pt"')
    return transformers.DataCollatorForLanguageModeling(
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


# -- denoising baselines -----------------------------------------------------------------------


def shift_tokens_right(labels: np.ndarray, pad_token_id: int, start_token_id: int) -> np.ndarray:
    """Hugging Face's ``shift_tokens_right``: ``[start, labels[:-1]]`` with ``-100`` read as pad."""
    shifted = np.zeros_like(labels)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = start_token_id
    return np.where(shifted == IGNORE_INDEX, pad_token_id, shifted)


class HFT5MLMCollator:
    """The T5 span-corruption collator of Hugging Face's Flax example
    (``examples/flax/language-modeling/run_t5_mlm_flax.py``, ``FlaxDataCollatorForT5MLM``),
    re-implemented faithfully in NumPy: one ``random_spans_noise_mask`` per row in a Python
    loop (the example's per-row reference), then ``create_sentinel_ids`` and
    ``filter_input_ids`` over the batch, EOS appended, ``decoder_input_ids`` by
    ``shift_tokens_right``. The only change: the shuffles draw from this object's
    ``numpy.random.Generator`` instead of NumPy's global one.

    ``vocab_len`` plays ``len(tokenizer)``: sentinel ``k`` is ``vocab_len − 1 − k``. Input: a
    list of ``{"input_ids": row}`` or a 2-D array of rows of exactly the expanded inputs length
    (the example's requirement); output ``input_ids``, ``labels``, ``decoder_input_ids``.
    """

    def __init__(
        self,
        *,
        vocab_len: int,
        eos_token_id: int,
        pad_token_id: int,
        decoder_start_token_id: int,
        noise_density: float = 0.15,
        mean_noise_span_length: float = 3.0,
        input_length: int | None = None,
        target_length: int | None = None,
        seed: int | None = None,
    ) -> None:
        self.vocab_len = vocab_len
        self.eos_token_id = eos_token_id
        self.pad_token_id = pad_token_id
        self.decoder_start_token_id = decoder_start_token_id
        self.noise_density = noise_density
        self.mean_noise_span_length = mean_noise_span_length
        self.input_length = input_length
        self.target_length = target_length
        self.rng = np.random.default_rng(seed)

    def __call__(self, examples: Any) -> dict[str, np.ndarray]:
        if isinstance(examples, np.ndarray):
            input_ids = examples
        else:
            input_ids = np.array([ex["input_ids"] for ex in examples])
        batch_size, expanded_input_length = input_ids.shape
        mask_indices = np.asarray(
            [self.random_spans_noise_mask(expanded_input_length) for _ in range(batch_size)]
        )
        labels_mask = ~mask_indices
        input_ids_sentinel = self.create_sentinel_ids(mask_indices.astype(np.int8))
        labels_sentinel = self.create_sentinel_ids(labels_mask.astype(np.int8))
        batch = {
            "input_ids": self.filter_input_ids(input_ids, input_ids_sentinel),
            "labels": self.filter_input_ids(input_ids, labels_sentinel),
        }
        if self.input_length is not None and batch["input_ids"].shape[-1] != self.input_length:
            raise ValueError(
                f"`input_ids` are incorrectly preprocessed: {batch['input_ids'].shape[-1]} "
                f"instead of {self.input_length}"
            )
        if self.target_length is not None and batch["labels"].shape[-1] != self.target_length:
            raise ValueError(
                f"`labels` are incorrectly preprocessed: {batch['labels'].shape[-1]} instead "
                f"of {self.target_length}"
            )
        batch["decoder_input_ids"] = shift_tokens_right(
            batch["labels"], self.pad_token_id, self.decoder_start_token_id
        )
        return batch

    def create_sentinel_ids(self, mask_indices: np.ndarray) -> np.ndarray:
        """Sentinel ids at span starts (counting down from ``vocab_len − 1``), −1 on the rest
        of each span, 0 elsewhere."""
        start_indices = mask_indices - np.roll(mask_indices, 1, axis=-1) * mask_indices
        start_indices[:, 0] = mask_indices[:, 0]
        sentinel_ids = np.where(
            start_indices != 0, np.cumsum(start_indices, axis=-1), start_indices
        )
        sentinel_ids = np.where(sentinel_ids != 0, (self.vocab_len - sentinel_ids), 0)
        sentinel_ids -= mask_indices - start_indices
        return sentinel_ids

    def filter_input_ids(self, input_ids: np.ndarray, sentinel_ids: np.ndarray) -> np.ndarray:
        """Puts the sentinels in, drops the rest of each span, appends EOS."""
        batch_size = input_ids.shape[0]
        input_ids_full = np.where(sentinel_ids != 0, sentinel_ids, input_ids)
        input_ids = input_ids_full[input_ids_full >= 0].reshape((batch_size, -1))
        return np.concatenate(
            [input_ids, np.full((batch_size, 1), self.eos_token_id, dtype=np.int32)], axis=-1
        )

    def random_spans_noise_mask(self, length: int) -> np.ndarray:
        """T5's noise mask (the example's version, with PR #22938's span cap)."""
        orig_length = length
        num_noise_tokens = int(np.round(length * self.noise_density))
        num_nonnoise_tokens = length - num_noise_tokens
        num_noise_tokens = min(max(num_noise_tokens, 1), length - 1)
        num_noise_spans = int(
            np.round(min(num_noise_tokens, num_nonnoise_tokens) / self.mean_noise_span_length)
        )
        num_noise_spans = max(num_noise_spans, 1)

        def _random_segmentation(num_items: int, num_segments: int) -> np.ndarray:
            mask_indices = np.arange(num_items - 1) < (num_segments - 1)
            self.rng.shuffle(mask_indices)
            first_in_segment = np.pad(mask_indices, [[1, 0]])
            segment_id = np.cumsum(first_in_segment)
            _, segment_length = np.unique(segment_id, return_counts=True)
            return segment_length

        noise_span_lengths = _random_segmentation(num_noise_tokens, num_noise_spans)
        nonnoise_span_lengths = _random_segmentation(num_nonnoise_tokens, num_noise_spans)
        interleaved_span_lengths = np.reshape(
            np.stack([nonnoise_span_lengths, noise_span_lengths], axis=1), [num_noise_spans * 2]
        )
        span_starts = np.cumsum(interleaved_span_lengths)[:-1]
        span_start_indicator = np.zeros((length,), dtype=np.int8)
        span_start_indicator[span_starts] = True
        span_num = np.cumsum(span_start_indicator)
        is_noise = np.equal(span_num % 2, 1)
        return is_noise[:orig_length]


class NumpyT5Collator(HFT5MLMCollator):
    """T5 span corruption vectorised over the batch in NumPy: the same masks as
    :class:`HFT5MLMCollator` (T5's counts, uniform compositions, starts non-noise, ends
    noise), but drawn for all rows at once — the boundaries of each composition are the
    ``m − 1`` smallest of ``n − 1`` uniform keys per row (``argpartition``) — and outputs with
    attention masks, as a competent hand-vectorised implementation would. Rows must share one
    length."""

    def __call__(self, examples: Any) -> dict[str, np.ndarray]:
        if isinstance(examples, np.ndarray):
            input_ids = examples
        else:
            input_ids = np.array([ex["input_ids"] for ex in examples])
        mask = self.batch_noise_mask(*input_ids.shape)
        inputs = self.filter_input_ids(input_ids, self.create_sentinel_ids(mask.astype(np.int8)))
        labels = self.filter_input_ids(input_ids, self.create_sentinel_ids((~mask).astype(np.int8)))
        return {
            "input_ids": inputs,
            "attention_mask": np.ones_like(inputs),
            "labels": labels,
            "decoder_input_ids": shift_tokens_right(
                labels, self.pad_token_id, self.decoder_start_token_id
            ),
            "decoder_attention_mask": np.ones_like(labels),
        }

    def _compositions(self, rows: int, n: int, m: int) -> np.ndarray:
        """``rows`` uniform compositions of ``n`` into ``m`` positive parts, ``(rows, m)``."""
        if m == 1:
            return np.full((rows, 1), n, dtype=np.int64)
        keys = self.rng.random((rows, n - 1))
        cuts = np.sort(np.argpartition(keys, m - 2, axis=1)[:, : m - 1], axis=1) + 1
        bounds = np.concatenate(
            [np.zeros((rows, 1), np.int64), cuts, np.full((rows, 1), n, np.int64)], axis=1
        )
        return np.diff(bounds, axis=1)

    def batch_noise_mask(self, rows: int, length: int) -> np.ndarray:
        num_noise = min(max(int(np.round(length * self.noise_density)), 1), length - 1)
        num_clean = length - num_noise
        spans = max(int(np.round(min(num_noise, num_clean) / self.mean_noise_span_length)), 1)
        noise = self._compositions(rows, num_noise, spans)
        clean = self._compositions(rows, num_clean, spans)
        interleaved = np.stack([clean, noise], axis=2).reshape(rows, 2 * spans)
        starts = np.cumsum(interleaved, axis=1)[:, :-1]
        indicator = np.zeros((rows, length), dtype=np.int8)
        np.put_along_axis(indicator, starts, 1, axis=1)
        return np.cumsum(indicator, axis=1) % 2 == 1


class NumpyRandom:
    """The random calls of :class:`FairseqBartNoiser`, over a ``numpy.random.Generator``
    (fairseq makes them with torch's global generator and, for rotation, NumPy's). Tests
    substitute an object with the same methods that replays recorded decisions."""

    def __init__(self, seed: int | None = None) -> None:
        self.g = np.random.default_rng(seed)

    def categorical(self, probs: np.ndarray, size: int) -> np.ndarray:
        return self.g.choice(len(probs), size=size, p=probs)

    def randperm(self, n: int) -> np.ndarray:
        return self.g.permutation(n)

    def uniform(self, size: int) -> np.ndarray:
        return self.g.random(size)

    def randint(self, low: int, high: int, size: int) -> np.ndarray:
        return self.g.integers(low, high, size=size)

    def random(self) -> float:
        return float(self.g.random())

    def randint_scalar(self, low: int, high: int) -> int:
        return int(self.g.integers(low, high))


class FairseqBartNoiser:
    """fairseq's ``DenoisingDataset`` noising (``fairseq/data/denoising_dataset.py``) ported
    line for line from torch to NumPy: ``permute_sentences``, ``add_whole_word_mask``
    (span-poisson / word / subword; ``replace_length`` −1, 0, 1), ``add_insertion_noise`` and
    ``add_rolling_noise``, applied per row in ``__getitem__``'s order, then a collate that pads
    on the right. Random calls go through ``rng`` (:class:`NumpyRandom` by default).

    A row is the source ``[BOS] tokens [EOS]`` (built from raw rows); ``word_starts`` is the
    per-id table (``None``: subword level); sentences end at ``full_stop_token_ids`` (fairseq's
    ``full_stop_index``, with the token before EOS forced to end one). Output as the
    lmobjectives collators: ``input_ids``, ``attention_mask``, ``labels`` (-100 on padding),
    ``decoder_input_ids`` (fairseq's ``prev_output_tokens``: the target with EOS moved to the
    front) and ``decoder_attention_mask``. fairseq also re-sorts a batch by source length; this
    port keeps the order.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        bos_token_id: int,
        eos_token_id: int,
        pad_token_id: int,
        mask_token_id: int,
        word_starts: np.ndarray | None = None,
        full_stop_token_ids: Any = (),
        mask_ratio: float = 0.3,
        random_ratio: float = 0.1,
        insert_ratio: float = 0.0,
        rotate_ratio: float = 0.0,
        permute_sentence_ratio: float = 1.0,
        poisson_lambda: float = 3.0,
        mask_length: str = "span-poisson",
        replace_length: int = 1,
        rng: Any = None,
        seed: int | None = None,
    ) -> None:
        self.vocab_size = vocab_size
        self.bos, self.eos, self.pad, self.mask_idx = (
            bos_token_id,
            eos_token_id,
            pad_token_id,
            mask_token_id,
        )
        self.full_stops = np.zeros(vocab_size, dtype=bool)
        self.full_stops[list(full_stop_token_ids)] = True
        self.mask_ratio = mask_ratio
        self.random_ratio = random_ratio
        self.insert_ratio = insert_ratio
        self.rotate_ratio = rotate_ratio
        self.permute_sentence_ratio = permute_sentence_ratio
        self.replace_length = replace_length
        if mask_length not in ("subword", "word", "span-poisson"):
            raise ValueError(f"mask_length: invalid {mask_length!r}")
        if mask_length == "subword" and replace_length not in (0, 1):
            raise ValueError("if using subwords, use replace-length=1 or 0")
        self.mask_whole_word = None if mask_length == "subword" else word_starts
        self.mask_span_distribution = None
        if mask_length == "span-poisson":
            lambda_to_the_k, e_to_the_minus_lambda, k_factorial = 1.0, math.exp(-poisson_lambda), 1
            ps = []
            for k in range(0, 128):
                ps.append(e_to_the_minus_lambda * lambda_to_the_k / k_factorial)
                lambda_to_the_k *= poisson_lambda
                k_factorial *= k + 1
                if ps[-1] < 0.0000001:
                    break
            probs = np.asarray(ps, dtype=np.float64)
            self.mask_span_distribution = probs / probs.sum()
        self.rng = rng if rng is not None else NumpyRandom(seed)

    # -- fairseq's methods (torch → NumPy) -------------------------------------------------

    def word_starts(self, source: np.ndarray) -> np.ndarray:
        if self.mask_whole_word is not None:
            is_word_start = self.mask_whole_word[source].astype(np.int64)
        else:
            is_word_start = np.ones(source.shape, dtype=np.int64)
        is_word_start[0] = 0
        is_word_start[-1] = 0
        return is_word_start

    def permute_sentences(self, source: np.ndarray, p: float = 1.0) -> np.ndarray:
        full_stops = self.full_stops[source].copy()
        full_stops[-2] = True
        sentence_ends = np.flatnonzero(full_stops[1:] & ~full_stops[:-1]) + 2
        result = source.copy()
        num_sentences = sentence_ends.shape[0]
        num_to_permute = math.ceil((num_sentences * 2 * p) / 2.0)
        substitutions = self.rng.randperm(num_sentences)[:num_to_permute]
        ordering = np.arange(0, num_sentences)
        ordering[substitutions] = substitutions[self.rng.randperm(num_to_permute)]
        index = 1
        for i in ordering:
            sentence = source[(sentence_ends[i - 1] if i > 0 else 1) : sentence_ends[i]]
            result[index : index + sentence.shape[0]] = sentence
            index += sentence.shape[0]
        return result

    def add_whole_word_mask(self, source: np.ndarray, p: float) -> np.ndarray:
        is_word_start = self.word_starts(source)
        # fairseq: math.ceil(is_word_start.float().sum() * p) — a float32 product.
        num_to_mask = math.ceil(np.float32(is_word_start.sum()) * np.float32(p))
        num_inserts = 0
        if num_to_mask == 0:
            return source
        if self.mask_span_distribution is not None:
            probs = self.mask_span_distribution
            lengths = self.rng.categorical(probs, num_to_mask)
            cum_length = np.cumsum(lengths)
            while cum_length[-1] < num_to_mask:
                lengths = np.concatenate([lengths, self.rng.categorical(probs, num_to_mask)])
                cum_length = np.cumsum(lengths)
            i = 0
            while cum_length[i] < num_to_mask:
                i += 1
            lengths[i] = num_to_mask - (0 if i == 0 else cum_length[i - 1])
            num_to_mask = i + 1
            lengths = lengths[:num_to_mask]
            lengths = lengths[lengths > 0]
            num_inserts = num_to_mask - lengths.shape[0]
            num_to_mask -= num_inserts
            if num_to_mask == 0:
                return self.add_insertion_noise(source, num_inserts / source.shape[0])
        else:
            lengths = np.ones((num_to_mask,), dtype=np.int64)
        word_starts = np.flatnonzero(is_word_start)
        indices = word_starts[self.rng.randperm(word_starts.shape[0])[:num_to_mask]]
        mask_random = self.rng.uniform(num_to_mask) < self.random_ratio
        source = source.copy()
        source_length = source.shape[0]
        to_keep = np.ones(source_length, dtype=bool)
        is_word_start[-1] = 255  # acts as a long length, so spans don't go over the end
        if self.replace_length == 0:
            to_keep[indices] = False
        else:
            source[indices] = self.mask_idx
            source[indices[mask_random]] = self.rng.randint(
                1, self.vocab_size, int(mask_random.sum())
            )
        if self.mask_span_distribution is not None:
            lengths = lengths - 1
            while indices.shape[0] > 0:
                lengths = lengths - is_word_start[indices + 1]
                uncompleted = lengths >= 0
                indices = indices[uncompleted] + 1
                mask_random = mask_random[uncompleted]
                lengths = lengths[uncompleted]
                if self.replace_length != -1:
                    to_keep[indices] = False
                else:
                    source[indices] = self.mask_idx
                    source[indices[mask_random]] = self.rng.randint(
                        1, self.vocab_size, int(mask_random.sum())
                    )
        else:
            while indices.shape[0] > 0:
                uncompleted = is_word_start[indices + 1] == 0
                indices = indices[uncompleted] + 1
                mask_random = mask_random[uncompleted]
                if self.replace_length != -1:
                    to_keep[indices] = False
                else:
                    source[indices] = self.mask_idx
                    source[indices[mask_random]] = self.rng.randint(
                        1, self.vocab_size, int(mask_random.sum())
                    )
        source = source[to_keep]
        if num_inserts > 0:
            source = self.add_insertion_noise(source, num_inserts / source.shape[0])
        return source

    def add_insertion_noise(self, tokens: np.ndarray, p: float) -> np.ndarray:
        if p == 0.0:
            return tokens
        num_tokens = len(tokens)
        n = math.ceil(num_tokens * p)
        noise_indices = self.rng.randperm(num_tokens + n - 2)[:n] + 1
        noise_mask = np.zeros(num_tokens + n, dtype=bool)
        noise_mask[noise_indices] = True
        result = np.full(n + len(tokens), -1, dtype=np.int64)
        num_random = math.ceil(n * self.random_ratio)
        result[noise_indices[num_random:]] = self.mask_idx
        result[noise_indices[:num_random]] = self.rng.randint(1, self.vocab_size, num_random)
        result[~noise_mask] = tokens
        assert (result >= 0).all()
        return result

    def add_rolling_noise(self, tokens: np.ndarray) -> np.ndarray:
        offset = self.rng.randint_scalar(1, max(1, tokens.shape[-1] - 1) + 1)
        return np.concatenate(
            (tokens[0:1], tokens[offset:-1], tokens[1:offset], tokens[-1:]), axis=0
        )

    def noise(self, source: np.ndarray) -> np.ndarray:
        """``__getitem__``'s noising of one source ``[BOS] … [EOS]``."""
        if self.permute_sentence_ratio > 0.0:
            source = self.permute_sentences(source, self.permute_sentence_ratio)
        if self.mask_ratio > 0:
            source = self.add_whole_word_mask(source, self.mask_ratio)
        if self.insert_ratio > 0:
            source = self.add_insertion_noise(source, self.insert_ratio)
        if self.rotate_ratio > 0.0 and self.rng.random() < self.rotate_ratio:
            source = self.add_rolling_noise(source)
        return source

    def __call__(self, examples: Any) -> dict[str, np.ndarray]:
        if isinstance(examples, np.ndarray):
            rows = list(examples)
        else:
            rows = [ex["input_ids"] if isinstance(ex, Mapping) else ex for ex in examples]
        targets = [
            np.concatenate([[self.bos], np.asarray(r, dtype=np.int64), [self.eos]]) for r in rows
        ]
        sources = [self.noise(t) for t in targets]
        b = len(rows)
        wi, wt = max(map(len, sources)), max(map(len, targets))
        input_ids = np.full((b, wi), self.pad, dtype=np.int64)
        attention = np.zeros((b, wi), dtype=np.int64)
        labels = np.full((b, wt), IGNORE_INDEX, dtype=np.int64)
        prev = np.full((b, wt), self.pad, dtype=np.int64)
        decoder_attention = np.zeros((b, wt), dtype=np.int64)
        for i, (s, t) in enumerate(zip(sources, targets, strict=True)):
            input_ids[i, : len(s)] = s
            attention[i, : len(s)] = 1
            labels[i, : len(t)] = t
            prev[i, 0] = t[-1]  # move_eos_to_beginning
            prev[i, 1 : len(t)] = t[:-1]
            decoder_attention[i, : len(t)] = 1
        return {
            "input_ids": input_ids,
            "attention_mask": attention,
            "labels": labels,
            "decoder_input_ids": prev,
            "decoder_attention_mask": decoder_attention,
        }
