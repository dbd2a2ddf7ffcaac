"""Which vocabulary ids begin a word: a table computed once from a tokenizer's vocabulary.

Word-level objectives (BART's text infilling, whole-word masking) look a token's id up in this
table instead of re-tokenising text. The rule depends on how the vocabulary marks words:

- WordPiece (BERT): a piece with the continuation prefix (``##``) continues a word; every other
  piece starts one.
- SentencePiece (T5, ALBERT, XLNet, mBART): a piece starting with ``▁`` (U+2581) starts a word
  (fairseq's rule); ALBERT's variant (``sentencepiece_rule="albert"``, what its whole-word and
  n-gram masking use) also starts a word at ``<``, at a lone ASCII punctuation mark, ``€``,
  ``£``, and at any piece with a character that is neither an English letter nor punctuation
  (digits, non-Latin text).
- Byte-level BPE (GPT-2, RoBERTa, BART): a piece starting with ``Ġ`` (an encoded space) does.

These are fairseq's rules (``BertBPE``/``SentencepieceBPE``/``GPT2BPE.is_beginning_of_word``).
Special and added tokens always count as word starts, as in fairseq. Nothing here imports
``tokenizers`` or ``transformers``; any object with the usual vocabulary methods works.
"""

from __future__ import annotations

import string
import unicodedata
from typing import Any

import numpy as np

__all__ = ["SCHEMES", "word_start_table"]

#: The recognised vocabulary conventions and their word marks.
SCHEMES = ("wordpiece", "sentencepiece", "byte-level")

_SENTENCEPIECE_MARK = "\u2581"
_BYTE_LEVEL_MARK = "\u0120"


def _backend(tokenizer: Any) -> Any:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return backend if backend is not None else tokenizer


def _vocabulary(tokenizer: Any) -> dict[str, int]:
    backend = _backend(tokenizer)
    if hasattr(backend, "get_vocab"):
        try:
            return dict(backend.get_vocab(with_added_tokens=True))
        except TypeError:  # transformers slow tokenizers: get_vocab() takes no arguments
            return dict(backend.get_vocab())
    raise TypeError(
        "tokenizer: expected a tokenizers.Tokenizer or a transformers tokenizer (with "
        f"get_vocab), got {type(tokenizer).__name__}"
    )


def _special_ids(tokenizer: Any) -> set[int]:
    ids = {int(i) for i in getattr(tokenizer, "all_special_ids", ())}
    backend = _backend(tokenizer)
    if hasattr(backend, "get_added_tokens_decoder"):
        ids.update(int(i) for i in backend.get_added_tokens_decoder())
    return ids


def _detect(tokenizer: Any, vocab: dict[str, int]) -> tuple[str, str]:
    """``(scheme, mark)`` from the model type where it tells, else from the vocabulary."""
    model = getattr(_backend(tokenizer), "model", None)
    if type(model).__name__ == "WordPiece":
        return "wordpiece", getattr(model, "continuing_subword_prefix", None) or "##"
    counts = {
        "wordpiece": sum(t.startswith("##") for t in vocab),
        "sentencepiece": sum(t.startswith(_SENTENCEPIECE_MARK) for t in vocab),
        "byte-level": sum(t.startswith(_BYTE_LEVEL_MARK) for t in vocab),
    }
    scheme = max(counts, key=lambda k: counts[k])
    if counts[scheme] == 0:
        raise ValueError(
            "tokenizer: cannot tell word starts from this vocabulary (no '##', '\u2581' or "
            "'\u0120' pieces); pass an explicit word_starts table (one bool per id) or use "
            "subword-level masking"
        )
    mark = {"wordpiece": "##", "sentencepiece": _SENTENCEPIECE_MARK}.get(scheme, _BYTE_LEVEL_MARK)
    return scheme, mark


_ASCII_PUNCT = frozenset(string.punctuation)


def albert_starts_word(piece: str) -> bool:
    """ALBERT's ``_is_start_piece_sp`` (see the module docstring)."""
    if piece.startswith((_SENTENCEPIECE_MARK, "<")) or piece in _ASCII_PUNCT or piece in "€£":
        return True
    return any(
        ch not in string.ascii_letters and not unicodedata.category(ch).startswith("P")
        for ch in piece
    )


def word_start_table(
    tokenizer: Any,
    *,
    vocab_size: int | None = None,
    scheme: str | None = None,
    sentencepiece_rule: str = "fairseq",
) -> np.ndarray:
    """A boolean table ``starts[id]``: does token ``id`` begin a word?

    Args:
        tokenizer: a ``tokenizers.Tokenizer`` or ``transformers`` tokenizer.
        vocab_size: table length (default: the largest id + 1); ids the vocabulary lacks
            (e.g. sentinels appended after it) count as word starts.
        scheme: ``"wordpiece"``, ``"sentencepiece"`` or ``"byte-level"`` (default: detected
            from the tokenizer's model, else from which word mark its vocabulary uses most).
        sentencepiece_rule: ``"fairseq"`` (only ``▁`` starts a word) or ``"albert"``.

    Raises ``ValueError`` when the scheme cannot be recognised.

    Example:
        >>> from tokenizers import Tokenizer, models
        >>> vocab = {"[UNK]": 0, "play": 1, "##ing": 2, "the": 3}
        >>> word_start_table(Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))).tolist()
        [True, True, False, True]
    """
    vocab = _vocabulary(tokenizer)
    scheme, mark = _scheme_and_mark(tokenizer, vocab, scheme)
    size = max(vocab.values(), default=-1) + 1
    if vocab_size is not None:
        if vocab_size < size:
            raise ValueError(
                f"vocab_size: {vocab_size} is smaller than the tokenizer's vocabulary ({size})"
            )
        size = vocab_size
    if sentencepiece_rule not in ("fairseq", "albert"):
        raise ValueError(
            f"sentencepiece_rule: must be 'fairseq' or 'albert', got {sentencepiece_rule!r}"
        )
    albert = scheme == "sentencepiece" and sentencepiece_rule == "albert"
    table = np.ones(size, dtype=bool)
    for token, i in vocab.items():
        if scheme == "wordpiece":
            starts = not token.startswith(mark)
        elif albert:
            starts = albert_starts_word(token)
        else:
            starts = token.startswith(mark)
        table[i] = starts
    for i in _special_ids(tokenizer):
        if 0 <= i < size:
            table[i] = True
    return table


def _scheme_and_mark(tokenizer: Any, vocab: dict[str, int], scheme: str | None) -> tuple[str, str]:
    """The scheme (given or detected) and the word mark its vocabulary uses."""
    if scheme is None:
        return _detect(tokenizer, vocab)
    if scheme not in SCHEMES:
        raise ValueError(f"scheme: must be one of {list(SCHEMES)} or None, got {scheme!r}")
    mark = {"wordpiece": "##", "sentencepiece": _SENTENCEPIECE_MARK}.get(scheme, _BYTE_LEVEL_MARK)
    model = getattr(_backend(tokenizer), "model", None)
    prefix = getattr(model, "continuing_subword_prefix", None)
    if scheme == "wordpiece" and prefix:
        mark = str(prefix)
    return scheme, mark
