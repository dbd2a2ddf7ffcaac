"""What the collators need from a tokenizer: a handful of ids, read once.

Accepts a Hugging Face ``tokenizers.Tokenizer`` or a ``transformers`` tokenizer (anything with
``all_special_ids``). Nothing here imports either library; kernels never see strings.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

from lmobjectives.errors import ArgumentTypeError

_MASK_NAMES = ("[MASK]", "<mask>", "<MASK>")
_PAD_NAMES = ("[PAD]", "<pad>", "<PAD>")


@dataclass(frozen=True)
class TokenizerInfo:
    """The ids a collator takes from a tokenizer."""

    vocab_size: int
    pad_token_id: int | None
    mask_token_id: int | None
    special_token_ids: tuple[int, ...]
    padding_side: str = "right"


def _first_id(tok: Any, names: tuple[str, ...]) -> int | None:
    for name in names:
        i = tok.token_to_id(name)
        if i is not None:
            return int(i)
    return None


def tokenizer_info(tokenizer: Any) -> TokenizerInfo:
    """Reads vocab size, pad/mask ids and the special ids from a tokenizer.

    Special ids are every id the tokenizer marks special (for ``transformers`` tokenizers
    ``all_special_ids``, which includes ``[UNK]`` as Hugging Face's fallback does; for
    ``tokenizers.Tokenizer`` every added token flagged ``special`` plus the pad/mask ids).
    """
    if hasattr(tokenizer, "all_special_ids") and hasattr(tokenizer, "__len__"):
        return TokenizerInfo(
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            mask_token_id=tokenizer.mask_token_id,
            special_token_ids=tuple(sorted({int(i) for i in tokenizer.all_special_ids})),
            padding_side=getattr(tokenizer, "padding_side", "right") or "right",
        )
    if hasattr(tokenizer, "get_added_tokens_decoder") and hasattr(tokenizer, "token_to_id"):
        added = tokenizer.get_added_tokens_decoder()
        specials = {int(i) for i, tok in added.items() if tok.special}
        padding = tokenizer.padding
        pad = int(padding["pad_id"]) if padding else _first_id(tokenizer, _PAD_NAMES)
        mask = _first_id(tokenizer, _MASK_NAMES)
        specials.update(i for i in (pad, mask) if i is not None)
        side = padding.get("direction", "right") if padding else "right"
        return TokenizerInfo(
            vocab_size=int(tokenizer.get_vocab_size(with_added_tokens=True)),
            pad_token_id=pad,
            mask_token_id=mask,
            special_token_ids=tuple(sorted(specials)),
            padding_side=side,
        )
    raise TypeError(
        "tokenizer: expected a tokenizers.Tokenizer or a transformers tokenizer, "
        f"got {type(tokenizer).__name__}"
    )


def resolve_ids(
    tokenizer: Any,
    *,
    required: tuple[str, ...],
    vocab_size: int | None = None,
    pad_token_id: int | None = None,
    mask_token_id: int | None = None,
    special_token_ids: Any = None,
) -> dict[str, Any]:
    """Merges explicit ids with what ``tokenizer`` provides (explicit values win).

    Returns ``vocab_size``, ``pad_token_id``, ``mask_token_id``, ``special_token_ids`` (a
    list) and ``padding_side``; raises ``ValueError`` naming any id in ``required`` that is
    still missing and ``TypeError`` for a malformed ``special_token_ids``.
    """
    info = tokenizer_info(tokenizer) if tokenizer is not None else None
    out: dict[str, Any] = {
        "vocab_size": vocab_size,
        "pad_token_id": pad_token_id,
        "mask_token_id": mask_token_id,
    }
    for name in out:
        if out[name] is None and info is not None:
            out[name] = getattr(info, name)
        if out[name] is None and name in required:
            source = "the tokenizer has none; pass it" if info else "pass it or a tokenizer"
            raise ValueError(f"{name}: required ({source})")
    if special_token_ids is None:
        special_token_ids = info.special_token_ids if info else ()
    if isinstance(special_token_ids, (str, bytes)) or not hasattr(special_token_ids, "__iter__"):
        raise ArgumentTypeError(
            f"special_token_ids: expected a sequence of ints, got {special_token_ids!r:.60}"
        )
    out["special_token_ids"] = [
        _strict_int(f"special_token_ids[{k}]", i) for k, i in enumerate(special_token_ids)
    ]
    out["padding_side"] = info.padding_side if info else "right"
    return out


def _strict_int(name: str, value: Any) -> int:
    """An id: any ``__index__`` object but a bool (never a float or a string, which ``int()``
    would silently accept)."""
    if isinstance(value, bool) or type(value).__name__ in ("bool", "bool_"):
        raise ArgumentTypeError(f"{name}: expected an int, got a bool ({value!r})")
    try:
        return operator.index(value)
    except TypeError:
        raise ArgumentTypeError(
            f"{name}: expected an int, got {type(value).__name__} ({value!r:.40})"
        ) from None
