"""The embedded corpus's shipped data: reading, verifying and (for the build tool) writing it.

:meth:`lmobjectives.TokenCorpus.default` is built from four files in ``lmobjectives/data/``,
produced once by ``tools/build_embedded_corpus.py`` (see its docstring for when to rerun it):

``stdlib-corpus.txt.xz``
    The text: UTF-8, one sentence per line (``\\n``), an empty line between documents, a final
    ``\\n``. Sentences are non-empty, stripped and contain no line break, so the format is
    unambiguous and the documents parse back exactly as they were extracted.
``stdlib-vocab.txt.xz``
    The WordPiece vocabulary trained on that text: UTF-8, one token per line in id order (token
    ``i`` is on line ``i + 1``), a final ``\\n``.
``stdlib-labels.txt.xz``
    One label per document, in corpus order: UTF-8, one label per line, a final ``\n``. A
    document from a standard-library file is labelled with the file's top-level package or
    module (``asyncio`` for ``asyncio/base_events.py``, ``os`` for ``os.py``, ``test`` for the
    test suite), a ``pydoc`` help topic with ``topics``. The labels are not part of the text:
    the corpus's ids and fingerprint do not depend on them (they feed
    :attr:`TokenCorpus.document_labels`, e.g. for probing which package a paragraph is from).
``stdlib-corpus.json``
    Metadata: for each of the three files the SHA-256 and byte size of its *decompressed*
    contents, the counts (documents, sentences, characters, vocabulary size), the CPython
    version the text was extracted from and the recipe version.

Both text files are xz-compressed (preset 6, CRC-64; xz stores no file names or timestamps), so a
rebuild from the same interpreter writes byte-identical files. The checksums cover the
decompressed bytes: they stay valid whatever liblzma version decompresses them.

This module needs only the standard library (no NumPy, no ``tokenizers``), so the shipped
data can be checked by any CPython, even one without the package's dependencies: load it by
path (``importlib.util.spec_from_file_location``) and call :func:`load`.
"""

from __future__ import annotations

import hashlib
import json
import lzma
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

__all__ = [
    "CORPUS_FILE",
    "DATA_DIR",
    "FORMAT",
    "FORMAT_VERSION",
    "LABELS_FILE",
    "METADATA_FILE",
    "VOCAB_FILE",
    "EmbeddedData",
    "EmbeddedDataError",
    "compress",
    "data_checksum",
    "load",
    "parse_corpus",
    "parse_labels",
    "parse_vocab",
    "read_file",
    "read_metadata",
    "serialize_corpus",
    "serialize_labels",
    "serialize_vocab",
]

#: Where the shipped files live (``lmobjectives/data``); functions read it at call time.
DATA_DIR = Path(__file__).resolve().parent.parent / "data"
CORPUS_FILE = "stdlib-corpus.txt.xz"
VOCAB_FILE = "stdlib-vocab.txt.xz"
LABELS_FILE = "stdlib-labels.txt.xz"
METADATA_FILE = "stdlib-corpus.json"
#: ``stdlib-corpus.json`` "format" and "format_version" values.
FORMAT = "lmobjectives.embedded-corpus"
FORMAT_VERSION = 1
#: The xz preset of the shipped files (fixed, so that rebuilds are byte-identical). Preset 6's
#: 8 MiB dictionary holds the whole ~5 MB text: 9 and 9e compress no better here (measured:
#: 1,234,556 bytes for 6 and 9, 1,234,784 for 9e) but need 64 MiB to decompress.
XZ_PRESET = 6

_FILES = (CORPUS_FILE, VOCAB_FILE, LABELS_FILE)
_COUNTS = ("documents", "sentences", "characters", "vocab_size")
_REBUILD_HINT = (
    "the installed lmobjectives data is corrupted or was modified; reinstall lmobjectives "
    "(developers: regenerate it with tools/build_embedded_corpus.py)"
)


class EmbeddedDataError(ValueError):
    """A shipped data file is missing, unreadable or does not match its recorded checksum."""


class EmbeddedData(NamedTuple):
    """The verified contents of the shipped files."""

    #: Documents, each a list of sentence strings, in corpus order.
    documents: list[list[str]]
    #: The vocabulary: token ``i`` has id ``i``.
    vocab: list[str]
    #: ``stdlib-corpus.json`` as read (validated).
    metadata: dict[str, Any]
    #: One label per document (its top-level package or module, or ``topics``).
    labels: list[str]


def _data_dir(data_dir: str | Path | None) -> Path:
    return Path(DATA_DIR if data_dir is None else data_dir)


def read_metadata(data_dir: str | Path | None = None) -> dict[str, Any]:
    """Read and validate ``stdlib-corpus.json``; :class:`EmbeddedDataError` naming the file."""
    path = _data_dir(data_dir) / METADATA_FILE
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise EmbeddedDataError(f"{path}: missing; {_REBUILD_HINT}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EmbeddedDataError(f"{path}: not valid JSON ({exc}); {_REBUILD_HINT}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise EmbeddedDataError(f"{path}: not {FORMAT!r} metadata; {_REBUILD_HINT}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise EmbeddedDataError(
            f"{path}: format_version {meta.get('format_version')!r}, this version of "
            f"lmobjectives reads {FORMAT_VERSION}"
        )
    files = meta.get("files")
    for name in _FILES:
        entry = files.get(name) if isinstance(files, dict) else None
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        size = entry.get("bytes") if isinstance(entry, dict) else None
        if (
            not isinstance(digest, str)
            or len(digest) != 64
            or digest.strip("0123456789abcdef")
            or type(size) is not int
        ):
            raise EmbeddedDataError(
                f"{path}: files.{name} needs a sha256 (64 lowercase hex digits) and a byte "
                f"size; {_REBUILD_HINT}"
            )
    for key in ("python_version", "recipe_version"):
        if not isinstance(meta.get(key), str if key == "python_version" else int):
            raise EmbeddedDataError(f"{path}: {key} missing or of the wrong type")
    counts = meta.get("counts")
    for key in _COUNTS:
        value = counts.get(key) if isinstance(counts, dict) else None
        if type(value) is not int or value < 0:
            raise EmbeddedDataError(f"{path}: counts.{key} must be a non-negative integer")
    return meta


def read_file(name: str, meta: dict[str, Any], data_dir: str | Path | None = None) -> bytes:
    """The decompressed bytes of shipped file ``name``, checked against ``meta``'s SHA-256."""
    path = _data_dir(data_dir) / name
    try:
        with open(path, "rb") as f:
            data = lzma.decompress(f.read(), format=lzma.FORMAT_XZ)
    except FileNotFoundError:
        raise EmbeddedDataError(f"{path}: missing; {_REBUILD_HINT}") from None
    except (OSError, lzma.LZMAError) as exc:
        raise EmbeddedDataError(f"{path}: not a readable xz file ({exc}); {_REBUILD_HINT}") from exc
    want = meta["files"][name]
    digest = hashlib.sha256(data).hexdigest()
    if digest != want["sha256"] or len(data) != want["bytes"]:
        raise EmbeddedDataError(
            f"{path}: checksum mismatch: the decompressed contents ({len(data)} bytes) have "
            f"SHA-256 {digest}, {METADATA_FILE} says {want['sha256']} ({want['bytes']} bytes); "
            f"{_REBUILD_HINT}"
        )
    return data


def parse_corpus(data: bytes) -> list[list[str]]:
    """Documents from the text format (see the module docstring)."""
    text = data.decode("utf-8")
    if not text:
        return []
    if not text.endswith("\n"):
        raise ValueError("corpus text: must end with a newline")
    return [block.split("\n") for block in text[:-1].split("\n\n")]


def parse_vocab(data: bytes) -> list[str]:
    """Tokens in id order from the vocabulary format (see the module docstring)."""
    text = data.decode("utf-8")
    if not text.endswith("\n"):
        raise ValueError("vocabulary: must end with a newline")
    return text[:-1].split("\n")


def serialize_corpus(documents: Sequence[Sequence[str]]) -> bytes:
    """The text format of ``documents``; ValueError if it could not be parsed back exactly."""
    for d, doc in enumerate(documents):
        if not doc:
            raise ValueError(f"documents[{d}]: empty (documents need at least one sentence)")
        for s, sentence in enumerate(doc):
            if not sentence or sentence != sentence.strip() or "\n" in sentence:
                raise ValueError(
                    f"documents[{d}][{s}]: sentences must be non-empty, stripped and on one "
                    f"line, got {sentence[:60]!r}"
                )
    return "".join("\n".join(doc) + "\n\n" for doc in documents)[:-1].encode("utf-8")


def parse_labels(data: bytes) -> list[str]:
    """Labels in document order from the labels format (see the module docstring)."""
    text = data.decode("utf-8")
    if not text:
        return []
    if not text.endswith("\n"):
        raise ValueError("labels: must end with a newline")
    return text[:-1].split("\n")


def serialize_labels(labels: Sequence[str]) -> bytes:
    """The labels format of ``labels``; ValueError on a label that could not be read back."""
    for i, label in enumerate(labels):
        if not label or label != label.strip() or "\n" in label or "\r" in label:
            raise ValueError(f"labels[{i}]: must be non-empty, stripped and on one line")
    return "".join(f"{label}\n" for label in labels).encode("utf-8")


def serialize_vocab(tokens: Sequence[str]) -> bytes:
    """The vocabulary format of ``tokens`` (in id order); ValueError on an unwritable token."""
    for i, token in enumerate(tokens):
        if not token or "\n" in token or "\r" in token:
            raise ValueError(f"tokens[{i}]: must be non-empty and without line breaks")
    if len(set(tokens)) != len(tokens):
        raise ValueError("tokens: duplicates")
    return ("\n".join(tokens) + "\n").encode("utf-8")


def compress(data: bytes) -> bytes:
    """xz-compress ``data`` with the fixed settings of the shipped files (deterministic)."""
    return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=XZ_PRESET)


def data_checksum(meta: dict[str, Any]) -> str:
    """One SHA-256 standing for the shipped data: over the files' recorded checksums.

    Part of the default corpus's cache key (with the recipe version); computed from the
    metadata alone, so finding the cache needs no decompression.
    """
    lines = "".join(f"{name} {meta['files'][name]['sha256']}\n" for name in _FILES)
    return hashlib.sha256(lines.encode("ascii")).hexdigest()


def load(data_dir: str | Path | None = None) -> EmbeddedData:
    """Read, decompress and verify the shipped files (default: :data:`DATA_DIR`).

    Raises:
        EmbeddedDataError: a file is missing or unreadable, its decompressed SHA-256 or size
            differs from ``stdlib-corpus.json``, or the parsed counts differ from the recorded
            ones; the message names the file.
    """
    meta = read_metadata(data_dir)
    documents = parse_corpus(read_file(CORPUS_FILE, meta, data_dir))
    vocab = parse_vocab(read_file(VOCAB_FILE, meta, data_dir))
    labels = parse_labels(read_file(LABELS_FILE, meta, data_dir))
    counts = meta["counts"]
    got = {
        "documents": len(documents),
        "sentences": sum(map(len, documents)),
        "characters": sum(len(s) for doc in documents for s in doc),
        "vocab_size": len(vocab),
    }
    wrong = [
        f"{key} {got[key]} (recorded: {counts[key]})" for key in _COUNTS if got[key] != counts[key]
    ]
    if len(labels) != len(documents):
        wrong.append(f"labels {len(labels)} (one per document)")
    if wrong:
        raise EmbeddedDataError(
            f"{_data_dir(data_dir) / METADATA_FILE}: the shipped files do not match the "
            f"recorded counts: {', '.join(wrong)}; {_REBUILD_HINT}"
        )
    return EmbeddedData(documents, vocab, meta, labels)
