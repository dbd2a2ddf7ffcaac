"""Sequence packing: :class:`PackingCollator` and :func:`pack_sequences`.

Many short examples share a row, so a batch carries (almost) no padding, while nothing
crosses an example boundary: ``position_ids`` restart at 0 for each example, attention can be
confined to each example (``attention="block_diagonal"``, or flash-attention's ``cu_seqlens``),
causal-LM labels are −100 on each example's first token, and masking (MLM, whole word, span,
n-gram) never selects across two examples.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from lmobjectives import _core, _torch_bridge
from lmobjectives._collator import (
    Collator,
    Key,
    check_bool,
    check_choice,
    check_positive_int,
)
from lmobjectives._inputs import Rows
from lmobjectives._tokenizer import resolve_ids
from lmobjectives.masking import MLMCollator

__all__ = ["PackingCollator", "pack_sequences"]

LAYOUTS = ("rows", "flat")
STRATEGIES = ("ffd", "greedy")
OVERFLOW = ("error", "truncate", "split")
ATTENTION = ("padding", "block_diagonal")
LABELS = ("causal", "none")


class PackingCollator(Collator):
    """Packs a list of examples into as few rows as possible (a ``DataLoader`` collate_fn).

    Layouts:

    - ``"rows"`` (default): rows of ``max_length`` filled by **first-fit decreasing**
      (``strategy="ffd"``: longest example first, each into the first row with room; rows list
      their examples in input order) or **greedily** in input order (``"greedy"``). The batch
      has as many rows as needed (``rows × max_length``).
    - ``"flat"``: one padding-free row ``[1, total]`` holding every example back to back, as
      Hugging Face's ``DataCollatorWithFlattening`` makes for flash-attention models.

    Outputs (Hugging Face names): ``input_ids``; ``attention_mask`` (1 on tokens, 0 on
    padding; with ``attention="block_diagonal"`` a ``[rows, 1, width, width]`` boolean mask,
    the 4-D form transformers models accept, that lets a token see only its own example);
    ``position_ids`` (restart at ``position_offset``, 0 by default, for each example; RoBERTa
    and XLM-R number positions from ``padding_idx + 1``); ``labels`` (causal LM: the ids with
    −100 on each example's first token and on padding; or the masking collator's labels).
    Optional:
    ``sequence_ids`` (example index per token, −1 on padding); ``cu_seqlens`` (int32 segment
    boundaries over the flattened batch, each example and each row's padding tail a segment)
    and ``max_seqlen``; ``token_type_ids`` when the examples have them.

    Args:
        tokenizer: where to read ``pad_token_id`` from (or pass it).
        vocab_size: when given (or taken from ``masking``), every id must lie in
            ``[0, vocab_size)``; without it ids must still be non-negative. Values that do not
            fit ``dtype`` are an error, never wrapped.
        max_length: row length (required for ``layout="rows"``; for ``"flat"`` an optional cap
            on the total).
        layout: ``"rows"`` or ``"flat"``.
        strategy: ``"ffd"`` or ``"greedy"`` (rows layout).
        overflow: examples longer than ``max_length``: ``"error"`` (default), ``"truncate"``
            (keep the start) or ``"split"`` (consecutive pieces, each its own sequence).
        labels: ``"causal"`` (default without ``masking``) or ``"none"``.
        masking: an :class:`~lmobjectives.MLMCollator` whose masking (token, word, span,
            n-gram) is applied to the packed rows; it supplies the labels. Its random streams
            are keyed by this collator's seed, epoch and (batch, packed row).
        attention: ``"padding"`` (2-D 0/1 mask) or ``"block_diagonal"`` (4-D boolean mask).
        return_sequence_ids, return_cu_seqlens: include those outputs.
        return_flash_attn_kwargs: include ``cu_seq_lens_q``/``cu_seq_lens_k`` and
            ``max_length_q``/``max_length_k``, the names transformers' flash-attention path
            takes (as ``DataCollatorWithFlattening(return_flash_attn_kwargs=True)`` does).
        pad_to_multiple_of: round the row length up to a multiple of this.
        position_offset: the first position of every example (0). RoBERTa, XLM-R and other
            models whose position embeddings reserve ``padding_idx`` number tokens from
            ``padding_idx + 1``: pass ``config.pad_token_id + 1`` (2 for RoBERTa); padding slots
            then get ``padding_idx``, as the models' own numbering gives them.
        seed, return_tensors, dtype, num_threads, pin_memory: as for
            :class:`~lmobjectives.MLMCollator`.

    The collator records how full its rows were: :attr:`efficiency` = tokens / slots over all
    batches it made.
    """

    _sample_keyed = False  # masks in packed rows are keyed by (batch, packed row)

    # long: the public signature, each argument checked and forwarded to the kernel
    def __init__(
        self,
        tokenizer: Any = None,
        *,
        max_length: int | None = None,
        layout: Literal["rows", "flat"] = "rows",
        strategy: Literal["ffd", "greedy"] = "ffd",
        overflow: Literal["error", "truncate", "split"] = "error",
        pad_token_id: int | None = None,
        vocab_size: int | None = None,
        labels: Literal["causal", "none"] | None = None,
        masking: MLMCollator | None = None,
        attention: Literal["padding", "block_diagonal"] = "padding",
        return_sequence_ids: bool = False,
        return_cu_seqlens: bool = False,
        return_flash_attn_kwargs: bool = False,
        pad_to_multiple_of: int | None = None,
        position_offset: int = 0,
        seed: int | None = None,
        return_tensors: Literal["np", "pt"] = "np",
        dtype: Literal["int64", "int32"] = "int64",
        num_threads: int | None = None,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(
            seed=seed,
            return_tensors=return_tensors,
            dtype=dtype,
            num_threads=num_threads,
            pin_memory=pin_memory,
        )
        if masking is not None and not isinstance(masking, MLMCollator):
            raise TypeError(f"masking: expected an MLMCollator, got {type(masking).__name__}")
        if pad_token_id is None and masking is not None:
            pad_token_id = masking.pad_token_id
        ids = resolve_ids(tokenizer, required=("pad_token_id",), pad_token_id=pad_token_id)
        self.pad_token_id = int(ids["pad_token_id"])
        if vocab_size is None and masking is not None:
            vocab_size = masking.vocab_size
        self.vocab_size = check_positive_int("vocab_size", vocab_size)
        self.max_length = check_positive_int("max_length", max_length)
        self.layout = check_choice("layout", layout, LAYOUTS)
        if self.layout == "rows" and self.max_length is None:
            raise ValueError("max_length: packing into rows needs max_length")
        self.strategy = check_choice("strategy", strategy, STRATEGIES)
        self.overflow = check_choice("overflow", overflow, OVERFLOW)
        if labels is None:
            labels = "none" if masking is not None else "causal"
        self.labels = check_choice("labels", labels, LABELS)
        if masking is not None and self.labels == "causal":
            raise ValueError("labels: masking supplies the labels; leave labels unset")
        self.masking = masking
        self.attention = check_choice("attention", attention, ATTENTION)
        self.return_sequence_ids = check_bool("return_sequence_ids", return_sequence_ids)
        self.return_cu_seqlens = check_bool("return_cu_seqlens", return_cu_seqlens)
        self.return_flash_attn_kwargs = check_bool(
            "return_flash_attn_kwargs", return_flash_attn_kwargs
        )
        self.pad_to_multiple_of = check_positive_int("pad_to_multiple_of", pad_to_multiple_of)
        if isinstance(position_offset, bool) or not isinstance(position_offset, int):
            raise TypeError(f"position_offset: expected an int, got {position_offset!r}")
        self.position_offset = position_offset  # its range is checked by the kernel
        self._tokens = 0
        self._slots = 0

    @property
    def efficiency(self) -> float:
        """Tokens / slots over every batch made so far (1.0 = no padding)."""
        return self._tokens / self._slots if self._slots else 0.0

    def _make(self, rows: Rows, key: Key) -> tuple[dict[str, Any], Any]:
        if rows.attention_mask is not None and any(
            0 in np.asarray(m).ravel().tolist() for m in _iter_rows(rows.attention_mask)
        ):
            raise ValueError(
                "attention_mask: packing takes unpadded examples (an attention_mask with "
                "zeros); drop the padding first"
            )
        masker = self.masking
        packed = _core.pack(
            rows.input_ids,
            max_length=self.max_length,
            layout=self.layout,
            strategy=self.strategy,
            overflow=self.overflow,
            pad_token_id=self.pad_token_id,
            causal_labels=self.labels == "causal",
            position_offset=self.position_offset,
            pad_to_multiple_of=self.pad_to_multiple_of or 1,
            special_tokens_mask=rows.special_tokens_mask if masker is not None else None,
            word_ids=rows.word_ids if masker is not None else None,
            token_type_ids=rows.token_type_ids,
            dtype=self.dtype,
            num_threads=self._threads(),
            rows_name=rows.rows_name,
            vocab_size=self.vocab_size,
        )
        self._tokens += int(packed["num_tokens"])
        self._slots += int(packed["input_ids"].size)
        batch: dict[str, Any] = {
            "input_ids": packed["input_ids"],
            "attention_mask": packed["attention_mask"],
            "position_ids": packed["position_ids"],
        }
        if masker is not None:
            input_ids, labels = self._mask(masker, packed, key)
            batch.update(input_ids=input_ids, labels=labels)
        elif self.labels == "causal":
            batch["labels"] = packed["labels"]
        self._add_outputs(batch, packed)
        return batch, None

    def _mask(self, masker: MLMCollator, packed: dict[str, Any], key: Key) -> tuple[Any, Any]:
        """MLM masking of the packed rows, spans kept inside their sequences: ``(input_ids,
        labels)``."""
        input_ids, _, labels = masker._masker.mask(
            packed["input_ids"],
            attention_mask=packed["attention_mask"],
            special_tokens_mask=packed.get("special_tokens_mask"),
            word_ids=packed.get("word_ids"),
            boundaries=packed["boundaries"],
            seed=key.seed,
            epoch=key.epoch,
            batch_index=key.batch_index,
            dtype=self.dtype,
            num_threads=self._threads(),
        )
        return input_ids, labels

    def _add_outputs(self, batch: dict[str, Any], packed: dict[str, Any]) -> None:
        """The optional outputs: token types, the block-diagonal mask, sequence ids, cu_seqlens
        and the flash-attention keywords."""
        if "token_type_ids" in packed:
            batch["token_type_ids"] = packed["token_type_ids"]
        if self.attention == "block_diagonal":
            seq = packed["sequence_ids"]
            same = (seq[:, :, None] == seq[:, None, :]) & (seq[:, :, None] >= 0)
            batch["attention_mask"] = same[:, None, :, :]  # [rows, 1, width, width]
        if self.return_sequence_ids:
            batch["sequence_ids"] = packed["sequence_ids"]
        if self.return_cu_seqlens:
            batch["cu_seqlens"] = packed["cu_seqlens"]
            batch["max_seqlen"] = int(packed["max_seqlen"])
        if self.return_flash_attn_kwargs:  # the keyword names transformers' flash path takes
            batch["cu_seq_lens_q"] = batch["cu_seq_lens_k"] = packed["cu_seqlens"]
            batch["max_length_q"] = batch["max_length_k"] = int(packed["max_seqlen"])

    def _finish(self, batch: dict[str, Any], allocator: Any) -> dict[str, Any]:
        if self.return_tensors != "pt":
            return batch
        scalars = {k: v for k, v in batch.items() if not isinstance(v, np.ndarray)}
        out = _torch_bridge.to_torch({k: v for k, v in batch.items() if isinstance(v, np.ndarray)})
        out.update(scalars)
        return out

    def __repr__(self) -> str:
        return (
            f"PackingCollator(max_length={self.max_length}, layout={self.layout!r}, "
            f"strategy={self.strategy!r}, overflow={self.overflow!r}, "
            f"pad_token_id={self.pad_token_id}, labels={self.labels!r}, "
            f"masking={self.masking!r}, attention={self.attention!r}, "
            f"return_sequence_ids={self.return_sequence_ids}, "
            f"return_cu_seqlens={self.return_cu_seqlens}, "
            f"return_flash_attn_kwargs={self.return_flash_attn_kwargs}, "
            f"pad_to_multiple_of={self.pad_to_multiple_of}, "
            f"position_offset={self.position_offset}, seed={self.seed}, "
            f"return_tensors={self.return_tensors!r}, dtype={self.dtype!r}, "
            f"num_threads={self.num_threads})"
        )


def _iter_rows(column: Any) -> Any:
    return column if isinstance(column, list) else list(column)


def pack_sequences(examples: Any, max_length: int | None = None, **kwargs: Any) -> dict[str, Any]:
    """Packs one batch of examples: ``PackingCollator(max_length=..., **kwargs)(examples)``.

    Example:
        >>> from lmobjectives import pack_sequences
        >>> batch = pack_sequences([[5, 6, 7], [8, 9], [10, 11, 12, 13]], max_length=5)
        >>> batch["input_ids"].tolist()
        [[5, 6, 7, 8, 9], [10, 11, 12, 13, 0]]
        >>> batch["position_ids"].tolist()
        [[0, 1, 2, 0, 1], [0, 1, 2, 3, 0]]
        >>> batch["labels"].tolist()
        [[-100, 6, 7, -100, 9], [-100, 11, 12, 13, -100]]
    """
    kwargs.setdefault("pad_token_id", 0)
    return PackingCollator(max_length=max_length, **kwargs)(examples)
