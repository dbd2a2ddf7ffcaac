"""The embedded corpus: :meth:`TokenCorpus.default` built from the shipped data
(:mod:`lmobjectives.corpus._embedded_data`), its cache key and directory, and
:func:`default_corpus_fingerprint`."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from lmobjectives.corpus import _embedded_data
from lmobjectives.corpus._corpus import TokenCorpus
from lmobjectives.corpus._wordpiece import wordpiece_tokenizer

__all__ = [
    "RECIPE_VERSION",
    "default_cache_dir",
    "default_corpus_fingerprint",
    "fingerprint",
    "load_default",
]

#: Version of the embedded corpus recipe (text extraction, tokenizer training and how the
#: shipped data is tokenized); part of the cache key (with the shipped data's checksum), so
#: bumping it rebuilds every cached default corpus. Version 2: the text and vocabulary are
#: shipped (extracted from CPython 3.11.7) instead of rebuilt from the running interpreter.
RECIPE_VERSION = 2
CACHE_ENV = "LMOBJECTIVES_CACHE"


def default_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: ``cache_dir``, else ``$LMOBJECTIVES_CACHE``, else ``~/.cache/lmobjectives``.

    (The default corpus lives in a versioned subdirectory of it.)
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "lmobjectives"


def load_default(
    cls: type[TokenCorpus],
    *,
    cache_dir: str | os.PathLike[str] | None,
    rebuild: bool,
    progress: bool | None,
) -> TokenCorpus:
    """:meth:`TokenCorpus.default`: the cached corpus, else built from the shipped data and
    cached (a broken or foreign cache entry is replaced)."""
    target = default_cache_dir(cache_dir) / default_corpus_name()
    broken = False
    if not rebuild and target.exists():
        try:
            return cls._load_directory(target, mmap=True, verify=True)
        except (ValueError, OSError):
            broken = True  # a broken or foreign cache entry: replace it
    corpus = build_default_corpus(progress)
    # FileExistsError: another process finished first; its corpus is identical.
    with contextlib.suppress(FileExistsError):
        corpus.save(target, overwrite=rebuild or broken)
    return cls._load_directory(target, mmap=True, verify=True)


def default_corpus_name() -> str:
    """The default corpus's cache directory name: the recipe version and the data checksum."""
    meta = _embedded_data.read_metadata()
    return f"stdlib-corpus-v{RECIPE_VERSION}-{_embedded_data.data_checksum(meta)[:16]}"


def default_corpus_source(meta: dict[str, Any]) -> str:
    return (
        f"lmobjectives embedded corpus (recipe v{RECIPE_VERSION}): pydoc topics, docstrings, "
        f"prose string literals and comments of the CPython {meta['python_version']} standard "
        f"library, shipped as lmobjectives/data/{_embedded_data.CORPUS_FILE} (sha256 "
        f"{meta['files'][_embedded_data.CORPUS_FILE]['sha256']}) with its vocabulary "
        f"{_embedded_data.VOCAB_FILE} (sha256 {meta['files'][_embedded_data.VOCAB_FILE]['sha256']})"
    )


def build_default_corpus(progress: bool | None) -> TokenCorpus:
    """Read and verify the shipped text, vocabulary and labels and tokenize the text (no
    caching)."""
    data = _embedded_data.load()
    tokenizer = wordpiece_tokenizer(data.vocab)
    return TokenCorpus.from_texts(
        data.documents,
        tokenizer,
        progress=progress,
        source=default_corpus_source(data.metadata),
        labels=data.labels,
    )


def fingerprint(corpus: TokenCorpus) -> str:
    """SHA-256 over a corpus's contents: ids, offsets (little-endian) and vocabulary in id order.

    Independent of the platform's byte order, of how ``tokenizers`` serializes its JSON and of
    the manifest's free-text ``source``.
    """
    h = hashlib.sha256(b"lmobjectives.TokenCorpus fingerprint v1\n")
    tokenizer = corpus.tokenizer
    tokens = [tokenizer.id_to_token(i) for i in range(corpus.vocab_size)]
    if None in tokens:
        raise ValueError(f"tokenizer: no token for id {tokens.index(None)}")
    vocab = "\n".join(t for t in tokens if t is not None).encode()
    for name, data in (
        ("ids", np.asarray(corpus.ids).astype(corpus.ids.dtype.newbyteorder("<")).tobytes()),
        ("sentence_offsets", np.asarray(corpus.sentence_offsets).astype("<i8").tobytes()),
        ("document_offsets", np.asarray(corpus.document_offsets).astype("<i8").tobytes()),
        ("vocab", vocab),
    ):
        h.update(f"{name} {len(data)}\n".encode())
        h.update(data)
    return h.hexdigest()


def default_corpus_fingerprint(
    corpus: TokenCorpus | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
) -> str:
    """A SHA-256 (hex) of :meth:`TokenCorpus.default`'s contents, the same on every Python.

    Hashes, in order and each preceded by its name and byte length, the token ids and both
    offset arrays (little-endian) and the vocabulary (tokens in id order, ``\\n``-separated,
    UTF-8). Two installations give the same value iff their default corpora have the same ids,
    sentence and document boundaries and vocabulary (the manifest's ``source`` and the
    tokenizer's JSON layout do not enter).

    Args:
        corpus: the corpus to fingerprint (e.g. one already returned by
            :meth:`TokenCorpus.default`); ``None`` calls :meth:`TokenCorpus.default`, which
            builds it into ``cache_dir`` if it is not cached yet.
        cache_dir, progress: passed to :meth:`TokenCorpus.default` when ``corpus`` is ``None``.
    """
    if corpus is None:
        corpus = TokenCorpus.default(cache_dir=cache_dir, progress=progress)
    elif not isinstance(corpus, TokenCorpus):
        raise TypeError(f"corpus: expected a TokenCorpus, got {type(corpus).__name__}")
    return fingerprint(corpus)
