"""T5 span corruption as Hugging Face's Flax example does it.

- :class:`HFT5MLMCollator`: the collator of ``run_t5_mlm_flax.py`` (per-row NumPy masks),
  re-implemented faithfully.
- :class:`NumpyT5Collator`: the same masks vectorised over the batch.
- :func:`shift_tokens_right`: Hugging Face's decoder-input shift.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lmobjectives import IGNORE_INDEX

__all__ = ["HFT5MLMCollator", "NumpyT5Collator", "shift_tokens_right"]


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
