"""Denoising objectives for encoder–decoder pretraining: :class:`T5SpanCorruptionCollator`,
:class:`BartDenoisingCollator` and :class:`UL2Collator`, plus :class:`CorpusChunks` (raw
chunks of a :class:`~lmobjectives.TokenCorpus`) and :func:`compute_input_and_target_lengths`.

Every collator turns raw token rows into a batch a ``transformers`` encoder–decoder
(``T5ForConditionalGeneration``, ``BartForConditionalGeneration``) trains on with
``model(**batch)``: ``input_ids``, ``attention_mask``, ``labels`` (``-100`` on padding),
``decoder_input_ids`` (the labels shifted right behind ``decoder_start_token_id``, as the models'
own ``shift_tokens_right``) and ``decoder_attention_mask``. Rows are noised in one Rust pass
(GIL released, rows in parallel), each from its own keyed random stream, and the outputs are
handed to NumPy without a copy.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from lmobjectives import _core
from lmobjectives._collator import Collator, Key, check_bool, check_choice, check_positive_int
from lmobjectives._inputs import ExampleBatch, Rows
from lmobjectives._tokenizer import resolve_ids
from lmobjectives._word_starts import _vocabulary, word_start_table
from lmobjectives.errors import (
    MAX_VOCAB,
    ArgumentTypeError,
    InvalidArgumentError,
    LimitError,
    LMObjectivesError,
)

__all__ = [
    "MODE_TOKENS",
    "SEQ2SEQ_KEYS",
    "UL2_DENOISERS",
    "BartDenoisingCollator",
    "CorpusChunks",
    "Denoiser",
    "T5SpanCorruptionCollator",
    "UL2Collator",
    "compute_input_and_target_lengths",
    "word_start_table",
]

#: The outputs of every denoising collator, in this order.
SEQ2SEQ_KEYS = (
    "input_ids",
    "attention_mask",
    "labels",
    "decoder_input_ids",
    "decoder_attention_mask",
)

#: T5's number of sentinel ("extra id") tokens.
T5_EXTRA_IDS = 100

_EOS_NAMES = ("</s>", "[SEP]", "<|endoftext|>", "<eos>")
_BOS_NAMES = ("<s>", "[CLS]", "<bos>", "<|startoftext|>")


# -- argument checks ---------------------------------------------------------------------------


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name}: expected a number, got {type(value).__name__}")
    if math.isnan(value):
        raise InvalidArgumentError(f"{name}: must be a number, got nan")
    return float(value)


def _check_recipe(recipe: Any, family: str) -> str:
    """The recipe's name, checked to apply to ``family`` (ValueError naming ``recipe``)."""
    if not isinstance(recipe, str):
        raise TypeError(f"recipe: expected a str, got {type(recipe).__name__}")
    return str(_core.check_recipe(recipe, family))


def _integer(name: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not hasattr(value, "__index__"):
        raise ArgumentTypeError(f"{name}: expected an int, got {type(value).__name__}")
    value = operator.index(value)
    if minimum is not None and value < minimum:
        raise InvalidArgumentError(f"{name}: must be at least {minimum}, got {value}")
    return int(value)


def _optional_id(name: str, value: Any) -> int | None:
    return None if value is None else _integer(name, value)


def _id_list(name: str, values: Any) -> list[int]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise TypeError(f"{name}: expected a sequence of ints, got {type(values).__name__}")
    return [_integer(f"{name}[{i}]", v) for i, v in enumerate(values)]


def compute_input_and_target_lengths(
    inputs_length: int, noise_density: float = 0.15, mean_noise_span_length: float = 3.0
) -> tuple[int, int]:
    """T5's length arithmetic for span corruption: ``(raw tokens, targets length)``.

    Exactly T5's ``random_spans_helper(inputs_length, noise_density, mean_noise_span_length,
    extra_tokens_per_span_inputs=1, extra_tokens_per_span_targets=1)`` (Hugging Face's
    ``compute_input_and_target_lengths``): a row of ``n`` raw tokens has
    ``noise = round(n·d)`` noise tokens in ``spans = round(noise/μ)`` spans, so its inputs
    have ``n − noise + spans + 1`` tokens (one sentinel per span, EOS) and its targets
    ``noise + spans + 1``. The result is the largest ``n`` whose inputs fit in
    ``inputs_length`` and its targets length — except that at ``d = 0.5``, when the targets
    would be longer than the inputs, both shrink by one (T5's adjustment). Rounding is half to
    even, as Python's ``round``.

    ``noise_density = 0`` is allowed here and gives ``(inputs_length − 1, 1)`` as T5 does
    (Hugging Face's copy returns ``inputs_length``, whose inputs would not fit).

    Example:
        >>> compute_input_and_target_lengths(512)
        (568, 114)
        >>> compute_input_and_target_lengths(512, 0.5, 3.0)
        (766, 512)
    """
    return _core.compute_input_and_target_lengths(
        _integer("inputs_length", inputs_length, 1),
        _number("noise_density", noise_density),
        _number("mean_noise_span_length", mean_noise_span_length),
    )


# -- ids from a tokenizer ----------------------------------------------------------------------


def _lookup(vocab: Mapping[str, int], names: tuple[str, ...]) -> int | None:
    for name in names:
        if name in vocab:
            return int(vocab[name])
    return None


def _tokenizer_id(tokenizer: Any, attrs: tuple[str, ...]) -> int | None:
    for attr in attrs:
        value = getattr(tokenizer, attr, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _special_id(
    name: str,
    value: int | None,
    tokenizer: Any,
    vocab: Mapping[str, int],
    attrs: tuple[str, ...],
    names: tuple[str, ...],
) -> int:
    """``value`` (already checked), else the tokenizer's id (its ``attrs``, then ``names`` in
    its vocabulary); ValueError naming ``name`` when there is none."""
    if value is None and tokenizer is not None:
        value = _tokenizer_id(tokenizer, attrs)
        value = value if value is not None else _lookup(vocab, names)
    if value is None:
        where = "the tokenizer has none; pass it" if tokenizer is not None else "pass it"
        raise ValueError(f"{name}: required ({where} or a tokenizer)")
    return value


def _extra_ids(vocab: Mapping[str, int]) -> list[int]:
    """The ids of ``<extra_id_0>``, ``<extra_id_1>``, … (T5's sentinels), in k order."""
    out: list[int] = []
    while f"<extra_id_{len(out)}>" in vocab:
        out.append(int(vocab[f"<extra_id_{len(out)}>"]))
    return out


@dataclass(frozen=True)
class _Seq2SeqIds:
    vocab_size: int
    eos: int
    pad: int
    decoder_start: int
    sentinels: list[int]
    modes: dict[str, int]


def _check_sentinel_room(num_sentinels: int, num_modes: int, total: int) -> None:
    """Raises unless ``num_sentinels`` appended sentinel ids fit a vocabulary of ``total``."""
    # Checked before the list is built: at a hostile input_length the count alone would
    # take gigabytes. Every sentinel needs an id of its own below vocab_size, beside EOS.
    if total > MAX_VOCAB:
        raise LimitError(
            f"num_sentinels: {num_sentinels} sentinels appended after the vocabulary make "
            f"vocab_size {total}, over the limit of {MAX_VOCAB} (a very long input_length "
            "needs one sentinel per span)"
        )
    if num_sentinels + num_modes + 1 > total:
        raise InvalidArgumentError(
            f"num_sentinels: {num_sentinels} sentinel ids (one per span at this "
            f"input_length, at least 100) do not fit in vocab_size {total} beside EOS "
            "(and the mode tokens); shorten input_length or enlarge the vocabulary"
        )


def _seq2seq_ids(
    tokenizer: Any,
    *,
    vocab_size: Any,
    eos_token_id: Any,
    pad_token_id: Any,
    decoder_start_token_id: Any,
    sentinel_ids: Any,
    num_sentinels: int,
    mode_names: Mapping[str, str],
    mode_token_ids: Any,
) -> _Seq2SeqIds:
    """Resolves the ids a T5/UL2 collator needs (see :class:`T5SpanCorruptionCollator`)."""
    explicit_vocab = _optional_id("vocab_size", vocab_size)
    ids = resolve_ids(
        tokenizer,
        required=(),
        vocab_size=explicit_vocab,
        pad_token_id=_optional_id("pad_token_id", pad_token_id),
    )
    vocab = _vocabulary(tokenizer) if tokenizer is not None else {}
    eos = _special_id(
        "eos_token_id",
        _optional_id("eos_token_id", eos_token_id),
        tokenizer,
        vocab,
        ("eos_token_id", "sep_token_id"),
        _EOS_NAMES,
    )
    pad = ids["pad_token_id"]
    if pad is None:
        where = "the tokenizer has none; pass it" if tokenizer is not None else "pass it"
        raise ValueError(f"pad_token_id: required ({where} or a tokenizer)")
    base = ids["vocab_size"]
    if base is None:
        raise ValueError("vocab_size: required (pass it or a tokenizer)")
    modes, append_modes = _mode_ids(mode_names, mode_token_ids, vocab)
    if sentinel_ids is not None:
        sentinels = _id_list("sentinel_ids", sentinel_ids)
        append_sentinels = False
    else:
        sentinels = _extra_ids(vocab)
        append_sentinels = not sentinels
    appended = (len(mode_names) if append_modes else 0) + (num_sentinels if append_sentinels else 0)
    total = explicit_vocab if explicit_vocab is not None else base + appended
    if append_sentinels:  # T5's layout: sentinel k is vocab_size − 1 − k (<extra_id_0> last)
        _check_sentinel_room(num_sentinels, len(mode_names), total)
        sentinels = [total - 1 - k for k in range(num_sentinels)]
    if append_modes:
        first = total - (num_sentinels if append_sentinels else 0) - len(mode_names)
        modes = {m: first + i for i, m in enumerate(mode_names)}
    start = _optional_id("decoder_start_token_id", decoder_start_token_id)
    return _Seq2SeqIds(
        vocab_size=total,
        eos=eos,
        pad=pad,
        decoder_start=pad if start is None else start,
        sentinels=sentinels,
        modes=modes,
    )


def _mode_ids(
    mode_names: Mapping[str, str], mode_token_ids: Any, vocab: Mapping[str, int]
) -> tuple[dict[str, int], bool]:
    """UL2's mode token ids: explicit, else the vocabulary's; ``({}, True)`` when they are to
    be appended after the vocabulary; ``({}, False)`` without mode tokens."""
    if not mode_names:
        return {}, False
    if mode_token_ids is not None:
        if not isinstance(mode_token_ids, Mapping):
            raise TypeError(
                "mode_token_ids: expected a mapping like {'R': id, 'X': id, 'S': id}, "
                f"got {type(mode_token_ids).__name__}"
            )
        missing = sorted(set(mode_names) - set(mode_token_ids))
        if missing:
            raise ValueError(f"mode_token_ids: no id for mode(s) {missing}")
        return {m: _integer(f"mode_token_ids[{m!r}]", mode_token_ids[m]) for m in mode_names}, False
    if all(name in vocab for name in mode_names.values()):
        return {m: int(vocab[name]) for m, name in mode_names.items()}, False
    return {}, True


# -- T5 and UL2 --------------------------------------------------------------------------------

#: UL2's mode tokens, by denoiser family: R (regular) ``[NLU]``, X (extreme) ``[NLG]``,
#: S (sequential, prefix LM) ``[S2S]``.
MODE_TOKENS: dict[str, str] = {"R": "[NLU]", "X": "[NLG]", "S": "[S2S]"}


@dataclass(frozen=True)
class Denoiser:
    """One UL2 denoiser.

    Args:
        mode: ``"R"`` or ``"X"`` (span corruption; the letter picks the mode token) or ``"S"``
            (prefix LM).
        noise_density: corrupted share of the tokens. For ``"S"``, T5's prefix-LM density
            (``0.5``: the prefix length is uniform on ``[1, L−1]``; at most 0.5).
        mean_noise_span_length: mean span length (``"R"``/``"X"`` only).
    """

    mode: Literal["R", "X", "S"]
    noise_density: float
    mean_noise_span_length: float | None = None

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, ("R", "X", "S"))
        _number("noise_density", self.noise_density)
        if self.mode == "S":
            if self.mean_noise_span_length is not None:
                raise ValueError("mean_noise_span_length: the S (prefix-LM) denoiser has none")
        elif self.mean_noise_span_length is None:
            raise ValueError(f"mean_noise_span_length: required for an {self.mode} denoiser")
        else:
            _number("mean_noise_span_length", self.mean_noise_span_length)

    def _kernel(self, mode_token: int | None) -> tuple[str, float, float, int | None]:
        if self.mode == "S":
            return ("prefix", float(self.noise_density), 0.0, mode_token)
        assert self.mean_noise_span_length is not None
        return (
            "spans",
            float(self.noise_density),
            float(self.mean_noise_span_length),
            mode_token,
        )


#: The UL2 paper's seven denoisers (as in Levanter's ``ul2_configs``): R (15%, μ=3),
#: R (15%, μ=8), X (50%, μ=3), X (50%, μ=8), X (15%, μ=64), X (50%, μ=64) and S (prefix LM).
UL2_DENOISERS: tuple[Denoiser, ...] = (
    Denoiser("R", 0.15, 3.0),
    Denoiser("R", 0.15, 8.0),
    Denoiser("X", 0.5, 3.0),
    Denoiser("X", 0.5, 8.0),
    Denoiser("X", 0.15, 64.0),
    Denoiser("X", 0.5, 64.0),
    Denoiser("S", 0.5),
)


def _check_mixture(
    denoisers: Sequence[Denoiser], weights: Sequence[float] | None
) -> tuple[tuple[Denoiser, ...], list[float]]:
    """The denoisers (at least one) and one weight each (default uniform)."""
    denoisers = tuple(denoisers)
    if not denoisers:
        raise ValueError("denoisers: needs at least one denoiser")
    for i, d in enumerate(denoisers):
        if not isinstance(d, Denoiser):
            raise TypeError(f"denoisers[{i}]: expected a Denoiser, got {type(d).__name__}")
    weights = [1.0] * len(denoisers) if weights is None else list(weights)
    if len(weights) != len(denoisers):
        raise ValueError(f"weights: has {len(weights)} entries for {len(denoisers)} denoisers")
    return denoisers, weights


class _SpanCollator(Collator):
    """What T5 and UL2 share: the kernel, the ids, padding and the call."""

    _kernel: Any
    _ids: _Seq2SeqIds

    def _setup(
        self,
        tokenizer: Any,
        *,
        denoisers: Sequence[Denoiser],
        weights: Sequence[float],
        mode_tokens: bool,
        mode_token_ids: Any,
        input_length: int,
        random_roll: bool,
        per_batch: bool,
        vocab_size: Any,
        eos_token_id: Any,
        pad_token_id: Any,
        decoder_start_token_id: Any,
        sentinel_ids: Any,
        num_sentinels: int | None,
        truncation: bool,
        padding: str,
        pad_to_multiple_of: int | None,
        purpose: str,
    ) -> None:
        self.input_length = _integer("input_length", input_length, 1)
        self.random_roll = check_bool("random_roll", random_roll)
        self.truncation = check_bool("truncation", truncation)
        self.padding = check_choice("padding", padding, ("longest", "max_length"))
        self.pad_to_multiple_of = check_positive_int("pad_to_multiple_of", pad_to_multiple_of)
        names: dict[str, str] = (
            {d.mode: MODE_TOKENS[d.mode] for d in denoisers} if mode_tokens else {}
        )
        default_sentinels = self._sentinels_needed(denoisers, mode_tokens)
        if num_sentinels is None:
            num_sentinels = default_sentinels
        num_sentinels = _integer("num_sentinels", num_sentinels, 0)
        self._ids = _seq2seq_ids(
            tokenizer,
            vocab_size=vocab_size,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            decoder_start_token_id=decoder_start_token_id,
            sentinel_ids=sentinel_ids,
            num_sentinels=num_sentinels,
            mode_names=names,
            mode_token_ids=mode_token_ids,
        )
        self._kernel = _core.SpanCorruptor(
            self._ids.vocab_size,
            self._ids.eos,
            self._ids.pad,
            self._ids.decoder_start,
            self._ids.sentinels,
            [d._kernel(self._ids.modes.get(d.mode)) for d in denoisers],
            [_number(f"weights[{i}]", w) for i, w in enumerate(weights)],
            self.input_length,
            self.random_roll,
            per_batch,
            purpose,
        )

    def _sentinels_needed(self, denoisers: Sequence[Denoiser], mode_tokens: bool) -> int:
        """T5's 100, or more if a denoiser makes more spans at this input length (mode tokens
        only matter for whether they reserve a slot)."""
        probe = [d._kernel(0 if mode_tokens else None) for d in denoisers]
        lengths = _core.denoiser_lengths(probe, self.input_length, self.random_roll)
        return max(T5_EXTRA_IDS, max(n for *_, n in lengths))

    # -- configuration ---------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Ids are in ``[0, vocab_size)``: the model's embedding table needs this many rows."""
        return int(self._kernel.vocab_size)

    @property
    def eos_token_id(self) -> int:
        return int(self._kernel.eos_token_id)

    @property
    def pad_token_id(self) -> int:
        return int(self._kernel.pad_token_id)

    @property
    def decoder_start_token_id(self) -> int:
        return int(self._kernel.decoder_start_token_id)

    @property
    def sentinel_ids(self) -> list[int]:
        """Sentinel ``k`` (``<extra_id_k>``) is ``sentinel_ids[k]``."""
        return list(self._kernel.sentinel_ids)

    @property
    def max_raw_length(self) -> int:
        """The longest raw row used: cut a corpus into chunks of this many tokens."""
        return int(max(self._kernel.raw_lengths))

    @property
    def target_length(self) -> int:
        """The longest targets (EOS included) of rows of at most the raw length."""
        return int(max(self._kernel.target_lengths))

    # -- the batch -------------------------------------------------------------------------

    def _normalize(self, examples: Any) -> Rows:
        # The common batch, a list of dicts of rows (what a map-style dataset hands a
        # DataLoader), is read by the kernel in one pass; the rows are converted (and bad ones
        # named) by `corrupt`, as any rows. Every other batch, and every batch that is not
        # exactly of that form, goes through the general normaliser, whose errors are raised
        # as the project's typed errors (same messages, naming the example and key).
        if type(examples) is list:
            columns = self._kernel.example_columns(examples)
            if columns is not None:
                input_ids, attention_mask, sample_ids = columns
                return Rows(
                    input_ids,
                    attention_mask,
                    sample_ids=sample_ids,
                    rows_name="examples[{row}]['{key}']",
                )
        try:
            return super()._normalize(examples)
        except (TypeError, ValueError) as e:
            if isinstance(e, LMObjectivesError):
                raise
            kind = ArgumentTypeError if isinstance(e, TypeError) else InvalidArgumentError
            raise kind(str(e)) from e

    def _make(self, rows: Rows, key: Key) -> tuple[dict[str, Any], Any]:
        fixed = self.padding == "max_length"
        out = self._kernel.corrupt(
            rows.input_ids,
            attention_mask=rows.attention_mask,
            truncation=self.truncation,
            input_width=self.input_length if fixed else None,
            target_width=self.target_length if fixed else None,
            pad_to_multiple_of=self.pad_to_multiple_of or 1,
            dtype=self.dtype,
            num_threads=self._threads(),
            rows_name=rows.rows_name,
            seed=key.seed,
            epoch=key.epoch,
            batch_index=key.batch_index,
            sample_ids=key.sample_ids,
        )
        return dict(zip(SEQ2SEQ_KEYS, out, strict=True)), None

    def _common_repr(self) -> str:
        return (
            f"input_length={self.input_length}, random_roll={self.random_roll}, "
            f"vocab_size={self.vocab_size}, eos_token_id={self.eos_token_id}, "
            f"pad_token_id={self.pad_token_id}, "
            f"decoder_start_token_id={self.decoder_start_token_id}, "
            f"sentinels={len(self.sentinel_ids)}, truncation={self.truncation}, "
            f"padding={self.padding!r}, pad_to_multiple_of={self.pad_to_multiple_of}, "
            f"seed={self.seed}, return_tensors={self.return_tensors!r}, dtype={self.dtype!r}, "
            f"num_threads={self.num_threads}"
        )


class T5SpanCorruptionCollator(_SpanCollator):
    """T5 span corruption (``span_corruption`` of T5, ``DataCollatorForT5MLM`` of Hugging
    Face's Flax example), usable as ``DataLoader(collate_fn=...)``.

    A row of ``L`` raw tokens gets exactly ``round(L·d)`` noise tokens (at least 1, at most
    ``L − 1``) in ``max(1, round(noise/μ))`` spans: the noise and non-noise lengths are
    uniformly random compositions, interleaved so that the row starts with non-noise and ends
    with noise (``random_roll=True`` rotates the mask by a random offset, as UL2R does). Each
    noise span becomes one sentinel in the inputs; the targets are each sentinel followed by
    its span; EOS ends both::

        row      a b c d e f g h          (noise: c d, g h)
        inputs   a b <S0> e f <S1> EOS
        labels   <S0> c d <S1> g h EOS

    Rows of exactly :attr:`raw_length` tokens (568 at the defaults) give inputs of exactly
    ``input_length`` (512) and labels of exactly :attr:`target_length` (114) tokens; shorter
    rows give shorter outputs, padded to the longest of the batch (or to those lengths with
    ``padding="max_length"``). Rows longer than :attr:`raw_length` are an error unless
    ``truncation=True``. Feed it chunks of a corpus with :class:`CorpusChunks` or any rows of
    raw token ids (without EOS). A row that would need more sentinels than exist raises
    (T5 and Hugging Face silently write ordinary vocabulary ids there); the configuration is
    checked at construction.

    Sentinels: ``sentinel_ids`` if given; else the tokenizer's ``<extra_id_0>``,
    ``<extra_id_1>``, …; else ``num_sentinels`` ids counted down from the end of the
    vocabulary (``<extra_id_0>`` = ``vocab_size − 1``, as T5). With a tokenizer that has no
    extra ids, they are appended after its vocabulary (seqio's ``extra_ids``), so
    :attr:`vocab_size` is the tokenizer's size plus ``num_sentinels``: build the model with
    it.

    Randomness: row streams are keyed by ``(seed, epoch, idx)`` when examples carry an
    ``idx`` (as :class:`CorpusChunks` items do) and by ``(seed, epoch, batch index, row)``
    otherwise, so batches are the same for any thread count and DataLoader ``num_workers``.

    Args:
        tokenizer: a ``tokenizers.Tokenizer`` or ``transformers`` tokenizer to read the
            vocabulary size, EOS, pad and extra ids from (explicit arguments win).
        noise_density: share of noise tokens, in (0, 1) (default 0.15).
        mean_noise_span_length: mean noise span length, at least 1 (default 3).
        input_length: inputs length (EOS included) the raw length is computed for (512).
        random_roll: rotate each mask by a random offset (UL2R); a span split at the row
            boundary costs one more sentinel, for which the raw length leaves room.
        vocab_size, eos_token_id, pad_token_id: ids (default: from the tokenizer; EOS falls
            back to ``[SEP]`` for BERT vocabularies).
        decoder_start_token_id: first decoder input (default: ``pad_token_id``, as T5).
        sentinel_ids, num_sentinels: see above (default 100, T5's extra ids).
        truncation: cut rows longer than :attr:`raw_length`.
        padding: ``"longest"`` or ``"max_length"`` (pad to ``input_length`` /
            :attr:`target_length`).
        pad_to_multiple_of: round padded widths up to a multiple of this.
        seed, return_tensors, dtype, num_threads, pin_memory: as
            :class:`~lmobjectives.MLMCollator`.
        recipe: ``"lmobjectives"`` (default), ``"t5"`` or ``"huggingface"``: the same rules
            (T5's arithmetic and sentinels are reproduced exactly by all three); other recipes
            raise ``ValueError`` naming ``recipe``.

    Examples may carry an ``attention_mask`` (padding is removed first; left or right
    padding only); ``special_tokens_mask`` and ``token_type_ids`` are ignored.

    Example:
        >>> import numpy as np
        >>> collate = T5SpanCorruptionCollator(vocab_size=32100, eos_token_id=1,
        ...                                    pad_token_id=0, seed=0)
        >>> collate.raw_length, collate.target_length
        (568, 114)
        >>> rows = np.random.default_rng(0).integers(2, 32000, size=(4, 568))
        >>> batch = collate(rows)
        >>> batch["input_ids"].shape, batch["labels"].shape
        ((4, 512), (4, 114))
        >>> int(batch["labels"][0, 0])   # every target starts with <extra_id_0>
        32099
    """

    def __init__(
        self,
        tokenizer: Any = None,
        *,
        noise_density: float = 0.15,
        mean_noise_span_length: float = 3.0,
        input_length: int = 512,
        random_roll: bool = False,
        vocab_size: int | None = None,
        eos_token_id: int | None = None,
        pad_token_id: int | None = None,
        decoder_start_token_id: int | None = None,
        sentinel_ids: Sequence[int] | None = None,
        num_sentinels: int = T5_EXTRA_IDS,
        truncation: bool = False,
        padding: Literal["longest", "max_length"] = "longest",
        pad_to_multiple_of: int | None = None,
        seed: int | None = None,
        return_tensors: Literal["np", "pt"] = "np",
        dtype: Literal["int64", "int32"] = "int64",
        num_threads: int | None = None,
        pin_memory: bool = False,
        recipe: str = "lmobjectives",
    ) -> None:
        super().__init__(
            seed=seed,
            return_tensors=return_tensors,
            dtype=dtype,
            num_threads=num_threads,
            pin_memory=pin_memory,
        )
        self.recipe = _check_recipe(recipe, "t5")
        self.noise_density = _number("noise_density", noise_density)
        self.mean_noise_span_length = _number("mean_noise_span_length", mean_noise_span_length)
        if not 0.0 < self.noise_density < 1.0:
            raise ValueError(f"noise_density: must be in (0, 1), got {noise_density}")
        self._setup(
            tokenizer,
            denoisers=[Denoiser("R", self.noise_density, self.mean_noise_span_length)],
            weights=[1.0],
            mode_tokens=False,
            mode_token_ids=None,
            input_length=input_length,
            random_roll=random_roll,
            per_batch=False,
            vocab_size=vocab_size,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            decoder_start_token_id=decoder_start_token_id,
            sentinel_ids=sentinel_ids,
            num_sentinels=_integer("num_sentinels", num_sentinels, 0),
            truncation=truncation,
            padding=padding,
            pad_to_multiple_of=pad_to_multiple_of,
            purpose="t5-span-corruption",
        )

    @property
    def raw_length(self) -> int:
        """Raw tokens per row whose outputs fill ``input_length`` (T5's "tokens length",
        Hugging Face's ``expanded_inputs_length``)."""
        return self.max_raw_length

    def __repr__(self) -> str:
        return (
            f"T5SpanCorruptionCollator(noise_density={self.noise_density}, "
            f"mean_noise_span_length={self.mean_noise_span_length}, {self._common_repr()}, "
            f"recipe={self.recipe!r})"
        )


class UL2Collator(_SpanCollator):
    """UL2's mixture of denoisers (Tay et al., 2022), usable as ``DataLoader(collate_fn=...)``.

    Each row (or, with ``per_batch=True``, each batch) draws one of ``denoisers`` with
    probabilities proportional to ``weights`` (default uniform, as the paper's code samples
    its tasks) from its keyed stream. R and X denoisers are T5 span corruption at their own
    density and mean span length; S is T5's prefix LM (the inputs are a prefix of uniformly
    random length, the targets the rest). The denoiser's mode token (``[NLU]`` for R,
    ``[NLG]`` for X, ``[S2S]`` for S) is prepended to the inputs.

    Lengths: every denoiser fills ``input_length`` (mode token and EOS included) from its own
    raw length (e.g. 568 tokens for R(15%, 3), 766 for X(50%, 3) at 512); a row is cut to the
    chosen denoiser's raw length, so feed rows of :attr:`max_raw_length` tokens (shorter
    rows work too). :attr:`target_length` is the longest targets over the denoisers.

    Ids as :class:`T5SpanCorruptionCollator`. Mode tokens: ``mode_token_ids``
    (``{"R": id, "X": id, "S": id}``), else the tokenizer's ``[NLU]``/``[NLG]``/``[S2S]``
    tokens, else three ids appended after the vocabulary (below the appended sentinels).
    ``num_sentinels`` defaults to what the denoisers need (at least T5's 100): X(50%, 3)
    makes 128 spans at 512 inputs, more than T5's 100 extra ids.

    Args:
        denoisers: :class:`Denoiser` objects (default :data:`UL2_DENOISERS`).
        weights: mixture weights, one per denoiser (default uniform).
        per_batch: one denoiser per batch instead of per row.
        mode_tokens: prepend mode tokens (default True).
        mode_token_ids: explicit mode token ids.
        recipe: ``"lmobjectives"`` (default) or ``"ul2"`` (the same rules); other recipes
            raise ``ValueError`` naming ``recipe``.

    The other arguments are those of :class:`T5SpanCorruptionCollator`.
    """

    def __init__(
        self,
        tokenizer: Any = None,
        *,
        denoisers: Sequence[Denoiser] = UL2_DENOISERS,
        weights: Sequence[float] | None = None,
        input_length: int = 512,
        per_batch: bool = False,
        mode_tokens: bool = True,
        mode_token_ids: Mapping[str, int] | None = None,
        random_roll: bool = False,
        vocab_size: int | None = None,
        eos_token_id: int | None = None,
        pad_token_id: int | None = None,
        decoder_start_token_id: int | None = None,
        sentinel_ids: Sequence[int] | None = None,
        num_sentinels: int | None = None,
        truncation: bool = False,
        padding: Literal["longest", "max_length"] = "longest",
        pad_to_multiple_of: int | None = None,
        seed: int | None = None,
        return_tensors: Literal["np", "pt"] = "np",
        dtype: Literal["int64", "int32"] = "int64",
        num_threads: int | None = None,
        pin_memory: bool = False,
        recipe: str = "lmobjectives",
    ) -> None:
        super().__init__(
            seed=seed,
            return_tensors=return_tensors,
            dtype=dtype,
            num_threads=num_threads,
            pin_memory=pin_memory,
        )
        self.recipe = _check_recipe(recipe, "ul2")
        self.denoisers, weights = _check_mixture(denoisers, weights)
        self.per_batch = check_bool("per_batch", per_batch)
        self.mode_tokens = check_bool("mode_tokens", mode_tokens)
        self._setup(
            tokenizer,
            denoisers=self.denoisers,
            weights=weights,
            mode_tokens=self.mode_tokens,
            mode_token_ids=mode_token_ids,
            input_length=input_length,
            random_roll=random_roll,
            per_batch=self.per_batch,
            vocab_size=vocab_size,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            decoder_start_token_id=decoder_start_token_id,
            sentinel_ids=sentinel_ids,
            num_sentinels=num_sentinels,
            truncation=truncation,
            padding=padding,
            pad_to_multiple_of=pad_to_multiple_of,
            purpose="ul2",
        )

    @property
    def weights(self) -> list[float]:
        return list(self._kernel.weights)

    @property
    def mode_token_ids(self) -> dict[str, int]:
        """The mode token of each denoiser family in use (empty without mode tokens)."""
        return dict(self._ids.modes)

    @property
    def raw_lengths(self) -> list[int]:
        """Raw tokens each denoiser uses (in ``denoisers`` order)."""
        return list(self._kernel.raw_lengths)

    @property
    def target_lengths(self) -> list[int]:
        """Longest targets of each denoiser."""
        return list(self._kernel.target_lengths)

    def batch_denoiser(self, batch_index: int, epoch: int | None = None) -> int:
        """The denoiser (index into ``denoisers``) of batch ``batch_index`` with
        ``per_batch=True``."""
        return int(
            self._kernel.batch_denoiser(
                seed=self.seed,
                epoch=self.epoch if epoch is None else epoch,
                batch_index=batch_index,
            )
        )

    def __repr__(self) -> str:
        return (
            f"UL2Collator(denoisers={list(self.denoisers)}, weights={self.weights}, "
            f"per_batch={self.per_batch}, mode_token_ids={self.mode_token_ids}, "
            f"{self._common_repr()}, recipe={self.recipe!r})"
        )


# -- BART --------------------------------------------------------------------------------------


def _setting(name: str, doc: str) -> Any:
    """A read-only property reading the BART kernel's setting ``name``."""
    return property(lambda self: getattr(self._noiser, name), doc=doc)


def _bos_eos(tokenizer: Any, bos_token_id: Any, eos_token_id: Any) -> tuple[int, int]:
    """BART's BOS and EOS: explicit, else the tokenizer's (BOS falls back to ``[CLS]``, EOS to
    ``[SEP]``)."""
    vocab = _vocabulary(tokenizer) if tokenizer is not None else {}
    bos = _optional_id("bos_token_id", bos_token_id)
    eos = _optional_id("eos_token_id", eos_token_id)
    return (
        _special_id(
            "bos_token_id", bos, tokenizer, vocab, ("bos_token_id", "cls_token_id"), _BOS_NAMES
        ),
        _special_id(
            "eos_token_id", eos, tokenizer, vocab, ("eos_token_id", "sep_token_id"), _EOS_NAMES
        ),
    )


def _bart_word_starts(
    tokenizer: Any, word_starts: Any, length_mode: str, vocab_size: int
) -> list[bool] | None:
    """The word-start table: given (checked), else the tokenizer's (not needed for
    ``mask_length="subword"``), else none (every token is a word)."""
    if word_starts is not None:
        table = np.asarray(word_starts)
        if table.dtype != bool or table.ndim != 1:
            raise TypeError(
                "word_starts: expected a 1-D boolean array (one entry per id), got "
                f"{table.dtype} with shape {table.shape}"
            )
        return table.tolist()
    if tokenizer is not None and length_mode != "subword":
        return word_start_table(tokenizer, vocab_size=vocab_size).tolist()
    return None


class BartDenoisingCollator(Collator):
    """BART's denoising (Lewis et al., 2020) with fairseq's ``DenoisingDataset`` semantics and
    the BART-large recipe as defaults, usable as ``DataLoader(collate_fn=...)``.

    Each row becomes the source ``BOS tokens EOS``, which is also the target (``labels``),
    and the source is noised in fairseq's order:

    1. **Sentence permutation** (``permute_sentence_ratio``, 1.0): ``ceil(S·p)`` of the ``S``
       sentences are shuffled among their own slots. Sentences come from the examples'
       ``sentence_starts`` (1 where a sentence begins, as :class:`CorpusChunks` yields them)
       or, as fairseq does, end at ``full_stop_token_ids``; otherwise a row is one sentence.
    2. **Text infilling** (``mask_ratio``, 0.3, counted in words): span lengths from
       Poisson(``poisson_lambda`` = 3) until they cover ``ceil(words·r)`` words; each span
       starts at a random word start and covers whole words; zero-length spans insert a
       ``<mask>``. ``replace_length=1``: one ``<mask>`` per span; ``0``: the span is deleted
       (token deletion with ``mask_length="subword"``); ``-1``: every token masked. A span
       becomes random tokens instead with probability ``random_ratio`` (0.1).
       ``mask_length="word"``/``"subword"``: single words / tokens instead of spans.
    3. **Insertion** (``insert_ratio``, 0): that share of new ``<mask>`` or random tokens.
    4. **Rotation** (``rotate_ratio``, 0): rotate the row to start at a random token.

    Words: ``word_starts`` (one bool per id) if given; else computed once from the tokenizer's
    vocabulary (:func:`word_start_table`: WordPiece ``##`` continues a word, SentencePiece
    ``▁`` and byte-level ``Ġ`` start one); without either, every token is a word.

    Unlike fairseq, every random choice comes from the row's keyed stream (fairseq draws most
    of them from torch's global generator), so the noise is reproducible for any thread or
    worker count, and random tokens are drawn from the non-special ids (fairseq's can be
    ``<mask>``, EOS or padding; ``recipe="bart"`` or ``"fairseq"`` draws them as fairseq
    does, uniformly from every id but 0). The masking budget is computed in ``float32`` as
    fairseq does.

    Args:
        tokenizer: a ``tokenizers.Tokenizer`` or ``transformers`` tokenizer for the ids and
            word starts (explicit arguments win).
        add_special_tokens: wrap rows in BOS … EOS (default). ``False``: rows already start
            with BOS and end with EOS (checked).
        vocab_size, bos_token_id, eos_token_id, pad_token_id, mask_token_id, special_token_ids: ids
            (BOS falls back to ``[CLS]``, EOS to ``[SEP]``).
        decoder_start_token_id: first decoder input (default: EOS, as BART).
        pad_to_multiple_of: round padded widths up to a multiple of this.
        seed, return_tensors, dtype, num_threads, pin_memory: as
            :class:`~lmobjectives.MLMCollator`.
        recipe: ``"lmobjectives"`` (default), or ``"bart"`` / ``"fairseq"`` (random tokens as
            fairseq draws them, above); other recipes raise ``ValueError`` naming ``recipe``.
    """

    _extra_keys = ("sentence_starts",)

    # long: the public signature (25 arguments), forwarded to the kernel's noiser
    def __init__(
        self,
        tokenizer: Any = None,
        *,
        mask_ratio: float = 0.3,
        random_ratio: float = 0.1,
        insert_ratio: float = 0.0,
        rotate_ratio: float = 0.0,
        permute_sentence_ratio: float = 1.0,
        poisson_lambda: float = 3.0,
        mask_length: Literal["span-poisson", "word", "subword"] = "span-poisson",
        replace_length: Literal[-1, 0, 1] = 1,
        word_starts: Any = None,
        full_stop_token_ids: Sequence[int] | None = None,
        add_special_tokens: bool = True,
        vocab_size: int | None = None,
        bos_token_id: int | None = None,
        eos_token_id: int | None = None,
        pad_token_id: int | None = None,
        mask_token_id: int | None = None,
        special_token_ids: Sequence[int] | None = None,
        decoder_start_token_id: int | None = None,
        pad_to_multiple_of: int | None = None,
        seed: int | None = None,
        return_tensors: Literal["np", "pt"] = "np",
        dtype: Literal["int64", "int32"] = "int64",
        num_threads: int | None = None,
        pin_memory: bool = False,
        recipe: str = "lmobjectives",
    ) -> None:
        super().__init__(
            seed=seed,
            return_tensors=return_tensors,
            dtype=dtype,
            num_threads=num_threads,
            pin_memory=pin_memory,
        )
        recipe = _check_recipe(recipe, "bart")
        ids = resolve_ids(
            tokenizer,
            required=("vocab_size", "mask_token_id", "pad_token_id"),
            vocab_size=_optional_id("vocab_size", vocab_size),
            pad_token_id=_optional_id("pad_token_id", pad_token_id),
            mask_token_id=_optional_id("mask_token_id", mask_token_id),
            special_token_ids=special_token_ids,
        )
        bos, eos = _bos_eos(tokenizer, bos_token_id, eos_token_id)
        length_mode = check_choice("mask_length", mask_length, ("span-poisson", "word", "subword"))
        table = _bart_word_starts(tokenizer, word_starts, length_mode, ids["vocab_size"])
        start = _optional_id("decoder_start_token_id", decoder_start_token_id)
        self._noiser = _core.BartNoiser(
            ids["vocab_size"],
            bos,
            eos,
            ids["pad_token_id"],
            ids["mask_token_id"],
            eos if start is None else start,
            ids["special_token_ids"],
            table,
            _id_list("full_stop_token_ids", full_stop_token_ids or []),
            _number("mask_ratio", mask_ratio),
            _number("random_ratio", random_ratio),
            _number("insert_ratio", insert_ratio),
            _number("rotate_ratio", rotate_ratio),
            _number("permute_sentence_ratio", permute_sentence_ratio),
            _number("poisson_lambda", poisson_lambda),
            length_mode,
            _integer("replace_length", replace_length),
            check_bool("add_special_tokens", add_special_tokens),
            recipe=recipe,
        )
        self.pad_to_multiple_of = check_positive_int("pad_to_multiple_of", pad_to_multiple_of)

    # -- configuration ---------------------------------------------------------------------

    mask_ratio = _setting("mask_ratio", "Share of words masked (text infilling).")
    random_ratio = _setting("random_ratio", "Share of spans replaced by random tokens.")
    insert_ratio = _setting("insert_ratio", "Share of tokens inserted.")
    rotate_ratio = _setting("rotate_ratio", "Probability of rotating a row.")
    permute_sentence_ratio = _setting("permute_sentence_ratio", "Share of sentences shuffled.")
    poisson_lambda = _setting("poisson_lambda", "Mean span length (span-poisson).")
    mask_length = _setting("mask_length", "'span-poisson', 'word' or 'subword'.")
    replace_length = _setting("replace_length", "1: one mask per span; 0: delete; -1: mask all.")
    add_special_tokens = _setting("add_special_tokens", "Whether rows are wrapped in BOS … EOS.")
    vocab_size = _setting("vocab_size", "Ids are in [0, vocab_size).")
    bos_token_id = _setting("bos_token_id", "BOS id.")
    eos_token_id = _setting("eos_token_id", "EOS id.")
    pad_token_id = _setting("pad_token_id", "Padding id.")
    mask_token_id = _setting("mask_token_id", "<mask> id.")
    decoder_start_token_id = _setting("decoder_start_token_id", "First decoder input id.")
    special_token_ids = _setting("special_token_ids", "Ids never drawn as random tokens.")
    full_stop_token_ids = _setting("full_stop_token_ids", "Ids that end a sentence.")
    recipe = _setting("recipe", "The recipe whose rules the noise follows.")

    @property
    def word_starts(self) -> np.ndarray | None:
        """The word-start table in use (``None``: every token starts a word)."""
        table = self._noiser.word_starts
        return None if table is None else np.asarray(table)

    @property
    def span_length_probabilities(self) -> np.ndarray | None:
        """P(span length = k) for k = 0, 1, … (``mask_length="span-poisson"`` only)."""
        p = self._noiser.span_length_probabilities
        return None if p is None else np.asarray(p)

    # -- the batch -------------------------------------------------------------------------

    def _make(self, rows: Rows, key: Key) -> tuple[dict[str, Any], Any]:
        out_kwargs: dict[str, Any] = {"dtype": self.dtype, "num_threads": self._threads()}
        out = self._noiser.noise(
            rows.input_ids,
            attention_mask=rows.attention_mask,
            sentence_starts=rows.extra.get("sentence_starts"),
            pad_to_multiple_of=self.pad_to_multiple_of or 1,
            rows_name=rows.rows_name,
            **out_kwargs,
            **key.kwargs(),
        )
        return dict(zip(SEQ2SEQ_KEYS, out, strict=True)), None

    def __repr__(self) -> str:
        n = self._noiser
        return (
            f"BartDenoisingCollator(mask_ratio={n.mask_ratio}, random_ratio={n.random_ratio}, "
            f"insert_ratio={n.insert_ratio}, rotate_ratio={n.rotate_ratio}, "
            f"permute_sentence_ratio={n.permute_sentence_ratio}, "
            f"poisson_lambda={n.poisson_lambda}, mask_length={n.mask_length!r}, "
            f"replace_length={n.replace_length}, add_special_tokens={n.add_special_tokens}, "
            f"vocab_size={n.vocab_size}, bos_token_id={n.bos_token_id}, "
            f"eos_token_id={n.eos_token_id}, pad_token_id={n.pad_token_id}, "
            f"mask_token_id={n.mask_token_id}, "
            f"decoder_start_token_id={n.decoder_start_token_id}, "
            f"word_starts={'table' if n.word_starts is not None else None}, "
            f"pad_to_multiple_of={self.pad_to_multiple_of}, seed={self.seed}, "
            f"return_tensors={self.return_tensors!r}, dtype={self.dtype!r}, "
            f"num_threads={self.num_threads}, recipe={n.recipe!r})"
        )


# -- corpus chunks -----------------------------------------------------------------------------


class CorpusChunks:
    """Fixed-length raw chunks of a :class:`~lmobjectives.TokenCorpus`, as a map-style
    dataset: the documents are concatenated (with ``separator`` after each one) and cut into
    consecutive pieces of ``length`` tokens, as T5's pipeline does (T5: no separator; Hugging
    Face's Flax example: EOS after every text).

    Item ``i`` is ``{"input_ids": int64 array of length tokens, "idx": i}``, plus
    ``"sentence_starts"`` (uint8, 1 where a corpus sentence begins) with
    ``sentence_starts=True`` — what :class:`BartDenoisingCollator` permutes. The ``idx`` keys
    each chunk's random stream, so its noise does not depend on batching. ``DataLoader`` fetches
    whole batches through :meth:`__getitems__` (columns as arrays).

    Args:
        corpus: the corpus (pickles by path, so DataLoader workers reopen its memory map), or a
            :class:`~lmobjectives.ShardedTokenCorpus` (the same chunks as one directory).
        length: tokens per chunk, e.g. ``collator.raw_length``.
        separator: token ids appended after every document (default none).
        sentence_starts: also yield sentence starts.
        drop_last: drop the final shorter chunk (default); otherwise it is kept.

    Example:
        >>> from lmobjectives import TokenCorpus
        >>> from tokenizers import Tokenizer, models, pre_tokenizers
        >>> vocab = {"[UNK]": 0, "a": 1, "b": 2, "c": 3}
        >>> tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
        >>> tok.pre_tokenizer = pre_tokenizers.Whitespace()
        >>> corpus = TokenCorpus.from_texts([["a b", "c"], ["b"]], tok, progress=False)
        >>> chunks = CorpusChunks(corpus, 2, separator=[0])
        >>> len(chunks), [chunks[i]["input_ids"].tolist() for i in range(len(chunks))]
        (3, [[1, 2], [3, 0], [2, 0]])
    """

    def __init__(
        self,
        corpus: Any,
        length: int,
        *,
        separator: Sequence[int] = (),
        sentence_starts: bool = False,
        drop_last: bool = True,
    ) -> None:
        self.corpus = corpus
        self.length = _integer("length", length, 1)
        self.separator = np.asarray(_id_list("separator", separator), dtype=np.int64)
        if len(self.separator) and (
            self.separator.min() < 0 or self.separator.max() >= corpus.vocab_size
        ):
            raise ValueError(f"separator: ids must be in [0, {corpus.vocab_size})")
        self.sentence_starts = check_bool("sentence_starts", sentence_starts)
        self.drop_last = check_bool("drop_last", drop_last)
        sep = len(self.separator)
        doc_tokens = np.asarray(corpus.sentence_offsets)[np.asarray(corpus.document_offsets)]
        docs = len(doc_tokens) - 1
        # Where document d starts in the concatenated stream.
        self._doc_starts = doc_tokens + sep * np.arange(docs + 1, dtype=np.int64)
        self._doc_tokens = doc_tokens
        self.total = int(self._doc_starts[-1])
        count = self.total // self.length if self.drop_last else -(-self.total // self.length)
        self._len = int(count)
        self._sentence_starts: np.ndarray | None = None

    def __len__(self) -> int:
        return self._len

    def _sentences(self) -> np.ndarray:
        if self._sentence_starts is None:
            offsets = np.asarray(self.corpus.sentence_offsets)
            per_doc = np.diff(np.asarray(self.corpus.document_offsets))
            doc_of_sentence = np.repeat(np.arange(len(per_doc), dtype=np.int64), per_doc)
            self._sentence_starts = offsets[:-1] + len(self.separator) * doc_of_sentence
        return self._sentence_starts

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = operator.index(i)
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError(f"chunk index out of range (there are {self._len})")
        a = i * self.length
        b = min(a + self.length, self.total)
        out = np.empty(b - a, dtype=np.int64)
        ids = self.corpus.ids
        sep = self.separator
        d = int(np.searchsorted(self._doc_starts, a, side="right")) - 1
        pos = a
        while pos < b:
            start = int(self._doc_starts[d])
            n_doc = int(self._doc_tokens[d + 1] - self._doc_tokens[d])
            first = int(self._doc_tokens[d])
            # The document's tokens, then its separator.
            lo, hi = max(pos, start), min(b, start + n_doc)
            if lo < hi:
                out[lo - a : hi - a] = ids[first + lo - start : first + hi - start]
            lo, hi = max(pos, start + n_doc), min(b, start + n_doc + len(sep))
            if lo < hi:
                out[lo - a : hi - a] = sep[lo - start - n_doc : hi - start - n_doc]
            pos = start + n_doc + len(sep)
            d += 1
        item: dict[str, Any] = {"input_ids": out, "idx": i}
        if self.sentence_starts:
            s = self._sentences()
            starts = s[np.searchsorted(s, a) : np.searchsorted(s, b)] - a
            mask = np.zeros(b - a, dtype=np.uint8)
            mask[starts] = 1
            item["sentence_starts"] = mask
        return item

    def __getitems__(self, indices: Any) -> ExampleBatch:
        """A whole batch in one call (``DataLoader`` uses it): ``input_ids`` as one
        ``(batch, length)`` int64 array (:class:`~lmobjectives._inputs.RaggedRows` when a
        shorter last chunk is in it), ``idx`` as uint64, ``sentence_starts`` likewise — the
        form the collators read without a Python object per row. It also reads as the list
        of ``self[i]`` (so ``transformers.Trainer``'s column filter works)."""
        from lmobjectives._inputs import RaggedRows

        idx = [operator.index(i) for i in indices]
        idx = [i + self._len if i < 0 else i for i in idx]
        for i in idx:
            if not 0 <= i < self._len:
                raise IndexError(f"chunk index out of range (there are {self._len})")
        full = self.total // self.length
        keys = np.asarray(idx, dtype=np.uint64)
        if not len(self.separator) and not self.sentence_starts and all(i < full for i in idx):
            # No separator: chunk i is ids[i·length:(i + 1)·length], one gather for the batch.
            pos = np.asarray(idx, dtype=np.int64)[:, None] * self.length + np.arange(self.length)
            ids = self.corpus.ids  # (a sharded corpus's ids gather across its shards)
            rows = (np.asarray(ids)[pos] if isinstance(ids, np.ndarray) else ids[pos]).astype(
                np.int64
            )
            return ExampleBatch({"input_ids": rows, "idx": keys})
        items = [self[i] for i in idx]
        out: dict[str, Any] = {"idx": keys}
        names = ["input_ids", "sentence_starts"] if self.sentence_starts else ["input_ids"]
        for name in names:
            cols = [item[name] for item in items]
            if all(i < full for i in idx):
                out[name] = np.stack(cols) if cols else np.zeros((0, self.length), np.int64)
            else:
                offsets = np.zeros(len(cols) + 1, dtype=np.int64)
                np.cumsum([len(c) for c in cols], out=offsets[1:])
                out[name] = RaggedRows(np.concatenate(cols), offsets)
        return ExampleBatch(out)

    def __repr__(self) -> str:
        return (
            f"CorpusChunks(corpus={self.corpus!r}, length={self.length}, "
            f"separator={self.separator.tolist()}, sentence_starts={self.sentence_starts}, "
            f"drop_last={self.drop_last}, chunks={self._len})"
        )
