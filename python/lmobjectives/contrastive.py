"""Contrastive pairs for language models: :class:`ContrastivePairCollator`, :class:`Augmentation`
and :func:`neighbour_pairs`.

The collator turns a batch of token rows into an *anchor* batch and a *positive* batch for an
InfoNCE loss (:func:`lmobjectives.torch.info_nce_loss`): each view is the row put through seeded
token-level augmentations in Rust (crop, span deletion, token deletion, span reordering,
substitution, insertion — CLEAR's and SimCSE's discrete augmentations), or, for examples that
carry a ``positive_input_ids`` row (e.g. the neighbouring sentence, as DeCLUTR pairs spans of
one document), that row augmented. It also returns ``duplicate_ids`` so that identical anchors
in a batch are not treated as each other's negatives (``info_nce_loss(..., duplicates=...)``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from lmobjectives import _core
from lmobjectives._collator import Collator, Key, PaddingOptions
from lmobjectives._inputs import Rows, normalize
from lmobjectives._tokenizer import resolve_ids
from lmobjectives.errors import InvalidArgumentError, ShapeError

__all__ = ["Augmentation", "ContrastivePairCollator", "neighbour_pairs"]

POSITIVE_KEY = "positive_input_ids"


@dataclass(frozen=True)
class Augmentation:
    """Token-level augmentations of one view (all off by default; special tokens are never
    touched). Applied to each run of non-special tokens, in this order:

    Attributes:
        crop: drop this fraction of the tokens by keeping one contiguous window (SimCSE's
            "crop"); in ``[0, 1)``.
        span_deletion: delete one contiguous span of this fraction (CLEAR); in ``[0, 1)``.
        token_deletion: delete each token with this probability (CLEAR "word deletion",
            TSDAE uses 0.6); at least one token of a run survives.
        reorder: swap two spans covering this fraction of the run (CLEAR "reordering").
        substitution: replace each token with this probability by a random non-special token
            (uniform, or by the collator's ``unigram`` weights).
        insertion: insert a random token after each token with this probability.
    """

    crop: float = 0.0
    span_deletion: float = 0.0
    token_deletion: float = 0.0
    reorder: float = 0.0
    substitution: float = 0.0
    insertion: float = 0.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name}: expected a number, got {type(value).__name__}")


#: The positive view by default: CLEAR's best single augmentation on STS, word deletion.
DEFAULT_POSITIVE = Augmentation(token_deletion=0.1)


def _unigram(unigram: Any, vocab_size: int) -> list[float] | None:
    if unigram is None:
        return None
    if hasattr(unigram, "ids") and hasattr(unigram, "num_tokens"):  # a TokenCorpus
        counts = np.bincount(np.asarray(unigram.ids, dtype=np.int64), minlength=vocab_size)
        if counts.shape[0] > vocab_size:
            raise ValueError(f"unigram: the corpus has ids >= vocab_size {vocab_size}")
        return counts.astype(np.float64).tolist()
    weights = np.asarray(unigram, dtype=np.float64)
    if weights.ndim != 1:
        raise ValueError(f"unigram: expected 1-D weights over the vocabulary, got {weights.shape}")
    return weights.tolist()


class ContrastivePairCollator(Collator):
    """Anchor/positive batches for contrastive training, usable as ``DataLoader(collate_fn=...)``.

    Examples are what :class:`~lmobjectives.MLMCollator` accepts (rows, mappings with
    ``input_ids`` and optionally ``idx``), and mappings may add ``positive_input_ids``: the
    positive's own tokens (otherwise the positive is a second view of ``input_ids``). Returns
    ``anchor_input_ids``, ``anchor_attention_mask``, ``positive_input_ids``,
    ``positive_attention_mask`` (each view padded to its own longest row, or as the padding
    options say) and ``duplicate_ids`` (int64 ``[B]``:
    the first row with the same anchor tokens).

    Randomness: the two views of a row use independent keyed streams — ``(seed, epoch, view,
    idx)`` or ``(seed, epoch, view, batch index, row)`` — so batches are the same for any thread
    count and DataLoader ``num_workers``; call :meth:`set_epoch` each epoch.

    Args:
        tokenizer: a ``tokenizers.Tokenizer`` or transformers tokenizer to read ``vocab_size``,
            ``pad_token_id`` and the special ids from; explicit arguments override it.
        anchor: augmentations of the anchor view (default: none).
        positive: augmentations of the positive view (default: ``token_deletion=0.1``).
        unigram: weights of random tokens over the vocabulary (an array, or a
            :class:`~lmobjectives.TokenCorpus` to count); default uniform.
        max_length, truncation, padding, pad_to_multiple_of, padding_side: as
            :class:`~lmobjectives.MLMCollator` (applied to both views).
        seed, return_tensors, dtype, num_threads, pin_memory: as
            :class:`~lmobjectives.MLMCollator`.

    Example:
        >>> from lmobjectives import ContrastivePairCollator, Augmentation
        >>> collate = ContrastivePairCollator(vocab_size=100, pad_token_id=0,
        ...                                   special_token_ids=[1, 2, 3], seed=0,
        ...                                   positive=Augmentation(token_deletion=0.3))
        >>> batch = collate([[2, 10, 11, 12, 13, 3], [2, 20, 21, 3], [2, 10, 11, 12, 13, 3]])
        >>> batch["anchor_input_ids"].tolist()[1], batch["duplicate_ids"].tolist()
        ([2, 20, 21, 3, 0, 0], [0, 1, 0])
    """

    # long: the public signature, each argument checked and forwarded to the kernel
    def __init__(
        self,
        tokenizer: Any = None,
        *,
        vocab_size: int | None = None,
        pad_token_id: int | None = None,
        special_token_ids: Any = None,
        anchor: Augmentation | None = None,
        positive: Augmentation | None = DEFAULT_POSITIVE,
        unigram: Any = None,
        max_length: int | None = None,
        truncation: bool = False,
        padding: Literal["longest", "max_length"] = "longest",
        pad_to_multiple_of: int | None = None,
        padding_side: Literal["right", "left"] | None = None,
        seed: int | None = None,
        return_tensors: Literal["np", "pt"] = "np",
        dtype: Literal["int64", "int32"] = "int64",
        num_threads: int | None = None,
        pin_memory: bool = False,
    ) -> None:
        ids = resolve_ids(
            tokenizer,
            required=("vocab_size", "pad_token_id"),
            vocab_size=vocab_size,
            pad_token_id=pad_token_id,
            special_token_ids=special_token_ids,
        )
        super().__init__(
            seed=seed,
            return_tensors=return_tensors,
            dtype=dtype,
            num_threads=num_threads,
            pin_memory=pin_memory,
        )
        for name, aug in (("anchor", anchor), ("positive", positive)):
            if aug is not None and not isinstance(aug, Augmentation):
                raise TypeError(
                    f"{name}: expected an Augmentation or None, got {type(aug).__name__}"
                )
        self.anchor = anchor or Augmentation()
        self.positive = positive or Augmentation()
        self.pad_token_id = int(ids["pad_token_id"])
        special_set = {*ids["special_token_ids"], self.pad_token_id}
        if ids["mask_token_id"] is not None:
            special_set.add(int(ids["mask_token_id"]))
        specials = sorted(special_set)
        weights = _unigram(unigram, int(ids["vocab_size"]))
        self._augmenters = tuple(
            _core.TokenAugmenter(
                int(ids["vocab_size"]), list(specials), **asdict(a), unigram=weights
            )
            for a in (self.anchor, self.positive)
        )
        self.padding = PaddingOptions(
            max_length=max_length,
            truncation=truncation,
            padding=padding,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side if padding_side is not None else ids["padding_side"],
        )

    @property
    def vocab_size(self) -> int:
        return int(self._augmenters[0].vocab_size)

    @property
    def special_token_ids(self) -> list[int]:
        return list(self._augmenters[0].special_token_ids)

    def __call__(self, examples: Any) -> dict[str, Any]:
        examples, positives = _split_positives(examples)
        rows = normalize(examples)
        if positives is not None and len(positives) != _num_rows(rows.input_ids):
            raise ValueError(
                f"{POSITIVE_KEY}: {len(positives)} rows for {_num_rows(rows.input_ids)} examples"
            )
        seed, epoch, batch_index, ticket = self._streams.reserve()
        try:
            key = Key(seed, epoch, batch_index, rows.sample_ids)
            batch = self._finish(*self._pair(rows, positives, key))
        except BaseException:
            self._streams.cancel(ticket)
            raise
        self._record(key)
        return batch

    def _pair(self, rows: Rows, positives: Any, key: Key) -> tuple[dict[str, Any], Any]:
        common = {
            **self.padding.kwargs(),
            **key.kwargs(),
            "dtype": self.dtype,
            "pad_token_id": self.pad_token_id,
            "num_threads": self._threads(),
        }
        ids = _content_rows(rows)
        a_ids, a_mask = self._augmenters[0].augment(
            ids, view=0, rows_name=rows.rows_name.replace("{key}", "input_ids"), **common
        )
        p_src = ids if positives is None else positives
        p_name = (
            rows.rows_name.replace("{key}", "input_ids")
            if positives is None
            else "examples[{row}]['positive_input_ids']"
        )
        p_ids, p_mask = self._augmenters[1].augment(p_src, view=1, rows_name=p_name, **common)
        batch = {
            "anchor_input_ids": a_ids,
            "anchor_attention_mask": a_mask,
            "positive_input_ids": p_ids,
            "positive_attention_mask": p_mask,
            "duplicate_ids": _core.duplicate_groups(rows.input_ids),
        }
        return batch, None

    def __repr__(self) -> str:
        return (
            f"ContrastivePairCollator(vocab_size={self.vocab_size}, "
            f"pad_token_id={self.pad_token_id}, special_token_ids={self.special_token_ids}, "
            f"anchor={self.anchor}, positive={self.positive}, {self.padding!r}, "
            f"seed={self.seed}, return_tensors={self.return_tensors!r}, dtype={self.dtype!r}, "
            f"num_threads={self.num_threads})"
        )


def _row_list(x: Any) -> list[np.ndarray]:
    return [np.asarray(row) for row in (x if not isinstance(x, np.ndarray) else list(x))]


def _content_rows(rows: Rows) -> Any:
    """The token rows to augment: with an ``attention_mask``, each row's attended tokens only
    (padding is never augmented, and the output masks mark the real padding). Masks must line
    up with the rows (a ``ShapeError`` names the row otherwise) and hold one contiguous block
    of ones per row (left or right padding)."""
    ids = rows.input_ids
    name = rows.rows_name
    masks = {"attention_mask": rows.attention_mask, "special_tokens_mask": rows.special_tokens_mask}
    if all(m is None for m in masks.values()):
        return ids
    id_rows = _row_list(ids)
    for key, column in masks.items():
        if column is None:
            continue
        mask_rows = _row_list(column)
        if len(mask_rows) != len(id_rows):
            raise ShapeError(f"{key}: {len(mask_rows)} rows for {len(id_rows)} rows of input_ids")
        for r, (m, row) in enumerate(zip(mask_rows, id_rows, strict=True)):
            if m.shape != row.shape:
                raise ShapeError(
                    f"{name.format(key=key, row=r)}: {m.size} values for {row.size} tokens"
                )
    if rows.attention_mask is None:
        return ids
    kept = []
    for r, (m, row) in enumerate(zip(_row_list(rows.attention_mask), id_rows, strict=True)):
        on = np.flatnonzero(m)
        if on.size == 0:
            raise InvalidArgumentError(
                f"{name.format(key='attention_mask', row=r)}: the row has no attended token"
            )
        if on[-1] - on[0] + 1 != on.size:
            raise InvalidArgumentError(
                f"{name.format(key='attention_mask', row=r)}: padding between tokens (only "
                "left or right padding is supported)"
            )
        kept.append(row[on[0] : on[-1] + 1])
    return kept


def _num_rows(x: Any) -> int:
    return int(x.shape[0]) if isinstance(x, np.ndarray) else len(x)


def _split_positives(examples: Any) -> tuple[Any, Any]:
    """Takes ``positive_input_ids`` out of the examples (which the shared normaliser does
    not know)."""
    if isinstance(examples, Mapping) and POSITIVE_KEY in examples:
        columns = {k: v for k, v in examples.items() if k != POSITIVE_KEY}
        return columns, examples[POSITIVE_KEY]
    if (
        isinstance(examples, Sequence)
        and examples
        and isinstance(examples[0], Mapping)
        and POSITIVE_KEY in examples[0]
    ):
        positives: list[Any] = []
        rest: list[dict[str, Any]] = []
        for i, ex in enumerate(examples):
            if not isinstance(ex, Mapping) or POSITIVE_KEY not in ex:
                raise ValueError(f"examples[{i}]: missing the '{POSITIVE_KEY}' key of examples[0]")
            positives.append(ex[POSITIVE_KEY])
            rest.append({k: v for k, v in ex.items() if k != POSITIVE_KEY})
        return rest, positives
    return examples, None


def neighbour_pairs(
    corpus: Any,
    sentences: Any = None,
    *,
    cls_token_id: int | None = None,
    sep_token_id: int | None = None,
) -> list[dict[str, Any]]:
    """Anchor/positive examples from neighbouring sentences of a
    :class:`~lmobjectives.TokenCorpus` (same document; DeCLUTR's "nearby spans are positives"):
    sentence ``s`` with the next sentence of its document, or the previous one for a
    document's last sentence. Sentences alone in their document are skipped.

    Returns mappings ``{"input_ids", "positive_input_ids", "idx"}`` (``idx`` = the anchor's
    sentence id, which keys its random streams), each row ``[CLS] + sentence + [SEP]`` (ids
    from the corpus tokenizer unless given).
    """
    doc_off = np.asarray(corpus.document_offsets, dtype=np.int64)
    n_sent = int(corpus.num_sentences)
    if sentences is None:
        sentences = np.arange(n_sent)
    s = np.asarray(sentences, dtype=np.int64).reshape(-1)
    if s.size and (s.min() < 0 or s.max() >= n_sent):
        raise ValueError(f"sentences: ids must lie in [0, {n_sent})")
    doc = np.searchsorted(doc_off, s, side="right") - 1
    first, last = doc_off[doc], doc_off[doc + 1] - 1
    partner = np.where(s < last, s + 1, s - 1)
    keep = last > first
    tok = getattr(corpus, "tokenizer", None)

    def special(given: int | None, name: str) -> int:
        if given is not None:
            return int(given)
        i = tok.token_to_id(name) if tok is not None else None
        if i is None:
            raise ValueError(f"{name}: the corpus tokenizer has no {name}; pass its id")
        return int(i)

    cls, sep = special(cls_token_id, "[CLS]"), special(sep_token_id, "[SEP]")
    out = []
    for a, b in zip(s[keep].tolist(), partner[keep].tolist(), strict=True):
        out.append(
            {
                "input_ids": [cls, *corpus.sentence(a).tolist(), sep],
                POSITIVE_KEY: [cls, *corpus.sentence(b).tolist(), sep],
                "idx": a,
            }
        )
    return out
