"""The ``tokenizers`` dependency of the corpus (the ``corpus`` extra): imported on use, and the
tokenizer objects a corpus accepts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lmobjectives._optional import require

if TYPE_CHECKING:
    from tokenizers import Tokenizer


def tokenizers_module(purpose: str) -> Any:
    """The ``tokenizers`` module, or MissingDependencyError naming the ``corpus`` extra."""
    return require("tokenizers", purpose=purpose)


def as_backend_tokenizer(tokenizer: Any) -> Tokenizer:
    """A ``tokenizers.Tokenizer`` from itself or a transformers fast tokenizer; else TypeError."""
    tokenizer_type = tokenizers_module("tokenizing a corpus").Tokenizer
    if isinstance(tokenizer, tokenizer_type):
        return tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if isinstance(backend, tokenizer_type):
        return backend
    raise TypeError(
        "tokenizer: expected a tokenizers.Tokenizer or a transformers fast tokenizer "
        f"(with .backend_tokenizer), got {type(tokenizer).__name__}"
    )


def private_tokenizer(tokenizer: Any) -> Tokenizer:
    """The backend tokenizer, copied without padding/truncation if either is enabled."""
    tok = as_backend_tokenizer(tokenizer)
    if tok.padding is not None or tok.truncation is not None:
        tok = tokenizers_module("tokenizing a corpus").Tokenizer.from_str(tok.to_str())
        tok.no_padding()
        tok.no_truncation()
    return tok
