"""Masked-language-model masking: :class:`MLMCollator`.

The collator turns a list of examples into a padded, masked batch in one Rust pass (GIL
released, rows in parallel) and hands the buffers to NumPy without a copy.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from lmobjectives import _core
from lmobjectives._collator import (
    Collator,
    Key,
    PaddingOptions,
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_positive_int,
)
from lmobjectives._inputs import Rows
from lmobjectives._tokenizer import resolve_ids
from lmobjectives._word_starts import word_start_table
from lmobjectives.errors import MAX_ELEMENTS

UNITS = ("token", "word", "span", "ngram")
#: The key under which :meth:`MLMCollator._normalize` passes a sentence-pair batch on.
PAIRS = "sentence pairs"
#: The key under which :meth:`MLMCollator._normalize` passes a list of plain examples on.
EXAMPLES = "examples"
#: The keys of a plain example (what a tokenizer returns for MLM), read by the kernel itself.
PLAIN_KEYS = frozenset(("input_ids", "attention_mask", "special_tokens_mask"))

__all__ = ["MLMCollator"]


class MLMCollator(Collator):
    """Dynamic MLM masking (BERT / RoBERTa, whole words, SpanBERT spans, ALBERT n-grams),
    usable as ``DataLoader(collate_fn=...)``.

    Each eligible token (a real token that is not special) is selected with probability
    ``mlm_probability`` — or, with ``exact_budget=True``, exactly ``round(p·n)`` of the ``n``
    eligible tokens of a row are (at least one, as Google BERT does; capped by
    ``max_predictions``). A selected token keeps its id as label and becomes ``[MASK]`` with
    probability ``mask_replace_prob``, a random *non-special* id with ``random_replace_prob``,
    and stays unchanged otherwise. Unselected positions are labelled ``-100``.

    With ``unit="word"`` / ``"span"`` / ``"ngram"`` whole words are selected together:

    - ``"word"``: Google BERT whole-word masking — words in random order, each taken if it
      fits the token budget ``round(p·n)`` and skipped if it would overshoot
      (``exact_budget=False`` instead selects each word with probability ``p``, as Hugging Face
      5.x does);
    - ``"span"``: SpanBERT — span lengths in words ~ Geometric(``geometric_p``) truncated to
      [``span_lower``, ``span_upper``] and renormalised (mean 3.8 words at the defaults),
      anchored at a uniformly drawn token, until the token budget is filled;
    - ``"ngram"``: ALBERT/Megatron — n-grams of 1..``ngram`` words with P(n) ∝ 1/n.

    Units never cross padding, special tokens or packed-example boundaries, and never split a
    word (where SpanBERT would cut the last span mid-word to hit its budget exactly, a row can
    end up one word short). The 80/10/10 decision is made once per unit
    (``replace_by="unit"``: a word is all [MASK], all random or all kept), once per run of
    adjacent selected words (``"run"``: touching spans share it, as SpanBERT's merged spans
    do) or per token (``"token"``, as Google BERT does). Word boundaries come from
    ``word_ids`` in the examples (a fast tokenizer's ``encoding.word_ids()``), else from the
    tokenizer's vocabulary (WordPiece ``##``, SentencePiece ``▁``, byte-level BPE ``Ġ``), else
    from ``word_starts``.

    Recipes: ``recipe="google-bert"``, ``"albert"``, ``"spanbert"`` or ``"huggingface"``
    reproduces that implementation's masking — exactly where it is deterministic (budgets,
    candidate lists), in distribution where it is random — and ``"lmobjectives"`` (the
    default) is the behaviour above. A recipe fixes rules no argument expresses (what the
    budget counts and how it rounds, where random replacements come from, whether words run
    across ``[SEP]``, how SpanBERT's spans end) and sets the defaults of ``unit``,
    ``exact_budget`` and ``replace_by``, which explicit arguments override. Every difference
    and its reason: the recipes page of the guide.

    Randomness: row streams are keyed by ``(seed, epoch, idx)`` when examples carry an
    ``idx`` field and by ``(seed, epoch, batch index, row)`` otherwise, so a batch is the same
    for any thread count and any DataLoader ``num_workers``. Call :meth:`set_epoch` at the start
    of every epoch (as with ``DistributedSampler``); without a seed, every process and
    DataLoader worker draws its own stream.

    Args:
        tokenizer: a ``tokenizers.Tokenizer`` or ``transformers`` tokenizer to read
            ``vocab_size``, ``mask_token_id``, ``pad_token_id``, ``special_token_ids`` and the
            padding side from. Explicit arguments below override it.
        vocab_size: ids are in ``[0, vocab_size)``; random replacements are drawn there.
        mask_token_id, pad_token_id: the ``[MASK]`` and ``[PAD]`` ids.
        special_token_ids: ids never selected and never drawn as random replacements
            (pad and mask are always included).
        mlm_probability: selection rate (default 0.15).
        mask_replace_prob: share of selected tokens replaced by ``[MASK]`` (0.8).
        random_replace_prob: share replaced by a random non-special id (0.1); the rest keep
            their token. The two must sum to at most 1.
        exact_budget: select exactly ``round(p·n)`` tokens per row instead of i.i.d.
            Bernoulli draws. Default: the recipe's (ours: False for ``unit="token"``, True
            otherwise; span and n-gram masking are always budget-based).
        max_predictions: cap on the exact budget (needs ``exact_budget=True``); Google BERT's
            and ALBERT's ``max_predictions_per_seq`` (no recipe sets it).
        unit: ``"token"``, ``"word"``, ``"span"`` or ``"ngram"`` (default: the recipe's; ours
            is ``"token"``).
        replace_by: ``"unit"`` (one 80/10/10 decision per word/span), ``"run"`` (per run of
            adjacent selected words) or ``"token"`` (default: the recipe's; ours is
            ``"unit"``).
        recipe: ``"lmobjectives"`` (default), ``"google-bert"``, ``"albert"``, ``"spanbert"``
            or ``"huggingface"`` (others raise ``ValueError`` naming ``recipe``).
        token_counts: how often each id occurs in the corpus (a :class:`TokenCorpus`, or one
            count per id): random replacements are then drawn in proportion to them, as
            SpanBERT does. Required by ``recipe="spanbert"`` (unless
            ``random_replace_prob=0``); with another recipe it overrides its replacement ids.
        word_starts: a boolean table over the vocabulary (True where a token begins a word),
            overriding the one derived from the tokenizer.
        geometric_p, span_lower, span_upper: SpanBERT's span-length law (0.2, 1, 10).
        ngram, favor_shorter_ngram: ALBERT's longest n-gram (3) and P(n) ∝ 1/n (True) or
            reversed (False).
        position_sampling: ``"without_replacement"`` (default), or ``"with_replacement"`` —
            ELECTRA's reference draws the exact budget's positions with replacement, so
            duplicates collapse and slightly fewer positions are masked (token units only).
        max_length: longest row accepted; longer rows raise unless ``truncation=True``.
        truncation: keep the first ``max_length`` tokens of longer rows.
        padding: ``"longest"`` (pad to the longest row) or ``"max_length"``.
        pad_to_multiple_of: round the padded width up to a multiple of this.
        padding_side: ``"right"`` or ``"left"`` (default: the tokenizer's, else right).
        seed: an int for reproducible batches; ``None`` draws a fresh seed.
        return_tensors: ``"np"`` (NumPy) or ``"pt"`` (torch tensors sharing the same memory).
        dtype: ``"int64"`` (what torch embeddings and losses expect) or ``"int32"``.
        num_threads: threads per batch; default 1 inside DataLoader workers, else
            ``LMOBJECTIVES_NUM_THREADS``, else all CPUs.
        pin_memory: put ``return_tensors="pt"`` batches in page-locked memory when CUDA is
            available (default False; see :attr:`pin_memory`, and :attr:`pins` for whether
            it happens in this process). Only a bool; ``True`` needs ``return_tensors="pt"``.

    Example:
        >>> import numpy as np
        >>> from lmobjectives import MLMCollator
        >>> collate = MLMCollator(vocab_size=100, mask_token_id=4, pad_token_id=0,
        ...                       special_token_ids=[1, 2, 3], seed=0)
        >>> batch = collate([{"input_ids": [2, 17, 18, 19, 3]}, {"input_ids": [2, 20, 3]}])
        >>> sorted(batch)
        ['attention_mask', 'input_ids', 'labels']
        >>> batch["input_ids"].shape, batch["input_ids"].dtype
        ((2, 5), dtype('int64'))
        >>> batch["attention_mask"].tolist()
        [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    """

    # long: the public signature (29 arguments), forwarded to the kernel's masker
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
        exact_budget: bool | None = None,
        max_predictions: int | None = None,
        unit: Literal["token", "word", "span", "ngram"] | None = None,
        replace_by: Literal["unit", "token", "run"] | None = None,
        word_starts: Any = None,
        geometric_p: float = 0.2,
        span_lower: int = 1,
        span_upper: int = 10,
        ngram: int = 3,
        favor_shorter_ngram: bool = True,
        position_sampling: Literal["without_replacement", "with_replacement"] = (
            "without_replacement"
        ),
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
        recipe: str = "lmobjectives",
        token_counts: Any = None,
    ) -> None:
        ids = resolve_ids(
            tokenizer,
            required=("vocab_size", "mask_token_id", "pad_token_id"),
            vocab_size=vocab_size,
            pad_token_id=pad_token_id,
            mask_token_id=mask_token_id,
            special_token_ids=special_token_ids,
        )
        super().__init__(
            seed=seed,
            return_tensors=return_tensors,
            dtype=dtype,
            num_threads=num_threads,
            pin_memory=pin_memory,
        )
        if unit is not None:
            check_choice("unit", unit, UNITS)
        if exact_budget is not None:
            check_bool("exact_budget", exact_budget)
        if replace_by is not None:
            check_choice("replace_by", replace_by, ("unit", "token", "run"))
        chosen = _core.masking_recipe(
            _check_recipe(recipe), unit=unit, exact_budget=exact_budget, replace_by=replace_by
        )
        unit_name = chosen["unit"]
        if unit_name != "token" and word_starts is None and tokenizer is not None:
            word_starts = _word_starts_of(tokenizer, ids["vocab_size"])
        starts = _check_word_starts(word_starts)
        self._masker = _core.MlmMasker(
            ids["vocab_size"],
            ids["mask_token_id"],
            ids["pad_token_id"],
            ids["special_token_ids"],
            mlm_probability=mlm_probability,
            mask_replace_prob=mask_replace_prob,
            random_replace_prob=random_replace_prob,
            exact_budget=chosen["exact_budget"],
            max_predictions=check_positive_int("max_predictions", max_predictions),
            unit=unit_name,
            replace_by=chosen["replace_by"],
            word_starts=starts,
            geometric_p=geometric_p,
            span_lower=span_lower,
            span_upper=span_upper,
            ngram=ngram,
            favor_shorter_ngram=check_bool("favor_shorter_ngram", favor_shorter_ngram),
            position_sampling=position_sampling,
            recipe=chosen["recipe"],
            token_counts=_check_token_counts(token_counts),
        )
        self.padding = PaddingOptions(
            max_length=max_length,
            truncation=truncation,
            padding=padding,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side if padding_side is not None else ids["padding_side"],
        )

    @classmethod
    def electra(
        cls,
        tokenizer: Any = None,
        *,
        mask_prob: float = 0.15,
        max_seq_length: int | None = None,
        **kwargs: Any,
    ) -> MLMCollator:
        """ELECTRA's masking: exactly ``max(1, min(max_predictions, round(n·p)))`` positions
        per row among the non-special tokens, each replaced by ``[MASK]`` with probability 0.85
        and kept otherwise — **no random-token branch**. ``max_predictions`` defaults to
        ELECTRA's ``int((mask_prob + 0.005) · max_seq_length)`` when ``max_seq_length`` is
        given (19 for 128). ``mask_prob`` is 0.15 (0.25 for large models). Other keyword
        arguments are :class:`MLMCollator`'s (e.g. ``position_sampling="with_replacement"``
        for the reference's sampling)."""
        mask_prob = check_float("mask_prob", mask_prob, 0.0, 1.0)
        if max_seq_length is not None:
            max_seq_length = check_int("max_seq_length", max_seq_length, 1, MAX_ELEMENTS)
        if max_seq_length is not None and "max_predictions" not in kwargs:
            kwargs["max_predictions"] = max(1, int((mask_prob + 0.005) * max_seq_length))
        return cls(
            tokenizer,
            mlm_probability=mask_prob,
            mask_replace_prob=0.85,
            random_replace_prob=0.0,
            exact_budget=True,
            **kwargs,
        )

    # -- configuration ---------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return int(self._masker.vocab_size)

    @property
    def mask_token_id(self) -> int:
        return int(self._masker.mask_token_id)

    @property
    def pad_token_id(self) -> int:
        return int(self._masker.pad_token_id)

    @property
    def special_token_ids(self) -> list[int]:
        return list(self._masker.special_token_ids)

    @property
    def unit(self) -> str:
        return str(self._masker.unit)

    @property
    def recipe(self) -> str:
        """The recipe whose rules this collator follows."""
        return str(self._masker.recipe)

    @property
    def replace_by(self) -> str:
        return str(self._masker.replace_by)

    @property
    def exact_budget(self) -> bool:
        return bool(self._masker.exact_budget)

    # -- the batch -------------------------------------------------------------------------

    def _normalize(self, examples: Any) -> Rows:
        # A sentence-pair batch whose rows are not made yet (``PairBatch``): with token
        # masking its rows are built, masked and padded in one pass (see ``_make``).
        if (
            getattr(examples, "mlm_arrays", None) is not None
            and not examples.materialised
            and self._masker.unit == "token"
        ):
            return Rows(input_ids=None, sample_ids=examples.sample_keys, extra={PAIRS: examples})
        # The tokenizer's examples as run_mlm.py hands them over (dicts of lists, no 'idx'):
        # read in one pass by the kernel (``_make``), which hands anything unusual back to
        # the general path.
        if (
            type(examples) is list
            and examples
            and type(examples[0]) is dict
            and "input_ids" in examples[0]
            and examples[0].keys() <= PLAIN_KEYS
        ):
            return Rows(input_ids=None, extra={EXAMPLES: examples})
        return super()._normalize(examples)

    # long: the three batch forms (unbuilt sentence pairs, plain examples, rows), each to its kernel
    def _make(self, rows: Rows, key: Key) -> tuple[dict[str, Any], Any]:
        allocator = self._allocator(("input_ids", "attention_mask", "labels"))
        pad_kwargs = {**self.padding.kwargs(), "dtype": self.dtype}
        pairs = rows.extra.get(PAIRS)
        if pairs is not None:
            input_ids, attention_mask, labels, types, pair_labels = pairs.mlm_arrays(
                self._masker,
                seed=key.seed,
                epoch=key.epoch,
                num_threads=self._threads(),
                allocate=allocator,
                **pad_kwargs,
            )
            return {
                "input_ids": input_ids,
                "attention_mask": attention_mask,
                "labels": labels,
                pairs.label_name: pair_labels,
                "token_type_ids": types,
            }, allocator
        examples = rows.extra.get(EXAMPLES)
        if examples is not None:  # plain examples: one kernel pass, else the general path
            if (plain := self._mask_examples(examples, key, allocator, pad_kwargs)) is not None:
                return plain, allocator
            rows = super()._normalize(examples)  # unusual rows: checked and named there
        input_ids, attention_mask, labels = self._masker.mask(
            rows.input_ids,
            attention_mask=rows.attention_mask,
            special_tokens_mask=rows.special_tokens_mask,
            word_ids=rows.word_ids,
            num_threads=self._threads(),
            rows_name=rows.rows_name,
            allocate=allocator,
            **key.kwargs(),
            **pad_kwargs,
        )
        batch: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
        }
        if rows.labels:
            for name, values in rows.labels.items():
                if len(values) != input_ids.shape[0]:
                    raise ValueError(
                        f"{name}: {len(values)} labels for {input_ids.shape[0]} examples"
                    )
                batch[name] = values
        if rows.token_type_ids is not None:
            batch["token_type_ids"] = _core.pad(
                rows.token_type_ids,
                pad_value=0,
                name="token_type_ids",
                rows_name=rows.rows_name.replace("{key}", "token_type_ids"),
                **pad_kwargs,
            )
            if batch["token_type_ids"].shape != input_ids.shape:
                raise ValueError(
                    f"token_type_ids: rows do not match input_ids "
                    f"({batch['token_type_ids'].shape} vs {input_ids.shape})"
                )
        return batch, allocator

    def _mask_examples(
        self, examples: list[Any], key: Key, allocator: Any, pad_kwargs: dict[str, Any]
    ) -> dict[str, Any] | None:
        """A list of plain examples masked by the kernel in one pass; ``None`` when the kernel
        declines it (a form it does not read: the general path takes it)."""
        kwargs = key.kwargs()
        del kwargs["sample_ids"]  # plain examples have no 'idx'
        out = self._masker.mask_examples(
            examples, num_threads=self._threads(), allocate=allocator, **kwargs, **pad_kwargs
        )
        if out is None:
            return None
        return {"input_ids": out[0], "attention_mask": out[1], "labels": out[2]}

    def __repr__(self) -> str:
        kernel = repr(self._masker)[len("MlmMasker(") : -1]
        return (
            f"MLMCollator({kernel}, {self.padding!r}, seed={self.seed}, "
            f"return_tensors={self.return_tensors!r}, dtype={self.dtype!r}, "
            f"num_threads={self.num_threads})"
        )


def _word_starts_of(tokenizer: Any, vocab_size: int) -> np.ndarray | None:
    """The tokenizer's word-start table, with ALBERT's rule for SentencePiece (as its
    whole-word/n-gram masking does); ``None`` for an unrecognised vocabulary (then word_ids
    must come with the examples)."""
    try:
        return word_start_table(tokenizer, vocab_size=vocab_size, sentencepiece_rule="albert")
    except ValueError:
        return None


def _check_recipe(recipe: Any) -> str:
    if not isinstance(recipe, str):
        raise TypeError(f"recipe: expected a str, got {type(recipe).__name__}")
    return recipe


def _check_token_counts(token_counts: Any) -> list[int] | None:
    """``token_counts`` as a list for the kernel: a corpus's counts, or a 1-D integer array
    (its length and values are checked by the kernel)."""
    if token_counts is None:
        return None
    if hasattr(token_counts, "token_counts"):
        token_counts = token_counts.token_counts()
    counts = np.asarray(token_counts)
    if counts.ndim != 1 or not (np.issubdtype(counts.dtype, np.integer) or counts.size == 0):
        raise TypeError(
            "token_counts: expected a TokenCorpus or a 1-D integer array (one count per id), "
            f"got {counts.dtype} with shape {counts.shape}"
        )
    return counts.astype(np.int64).tolist()


def _check_word_starts(word_starts: Any) -> list[bool] | None:
    """``word_starts`` as a list for the kernel, checked to be a 1-D boolean table."""
    if word_starts is None:
        return None
    table = np.asarray(word_starts)
    if table.dtype != np.bool_ or table.ndim != 1:
        raise TypeError(
            "word_starts: expected a 1-D boolean array over the vocabulary, got "
            f"{table.dtype} with shape {table.shape}"
        )
    return table.tolist()
