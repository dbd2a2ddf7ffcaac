"""Token corpora: flat token ids plus sentence and document offsets (CSR), memory-mapped on disk.

A :class:`TokenCorpus` holds three arrays::

    ids               1-D token ids (uint16 when the vocabulary fits, else uint32)
    sentence_offsets  int64, n_sentences + 1; sentence s is
                      ids[sentence_offsets[s]:sentence_offsets[s + 1]]
    document_offsets  int64, n_documents + 1, in sentences; document d is
                      sentences document_offsets[d]:document_offsets[d + 1]

plus the tokenizer that produced them. On disk a corpus is a directory of ``.npy`` files, the
tokenizer's ``tokenizer.json`` and a ``manifest.json``; :meth:`TokenCorpus.load` memory-maps the
arrays, so opening even a large corpus is instant and its pages are shared between processes.

:meth:`TokenCorpus.default` is the embedded corpus: English prose that every CPython ships
(see :mod:`lmobjectives._embedded`), tokenized with a BERT-uncased-style WordPiece vocabulary of
30,522 tokens trained on it, built once and cached.

This module needs only NumPy to import; ``tokenizers`` is imported when a tokenizer is trained,
loaded or used.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import operator
import os
import shutil
import sys
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lmobjectives._progress import Progress

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = [
    "DEFAULT_VOCAB_SIZE",
    "FORMAT",
    "FORMAT_VERSION",
    "RECIPE_VERSION",
    "SPECIAL_TOKENS",
    "TokenCorpus",
    "default_cache_dir",
    "train_wordpiece",
]

#: ``manifest.json`` "format" value.
FORMAT = "lmobjectives.TokenCorpus"
#: ``manifest.json`` "format_version" value this code reads and writes.
FORMAT_VERSION = 1
#: Version of the embedded corpus recipe (text extraction + tokenizer training); part of the
#: cache key, so bumping it rebuilds every cached default corpus.
RECIPE_VERSION = 1
#: BERT's vocabulary size.
DEFAULT_VOCAB_SIZE = 30522
#: Special tokens, in id order: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4.
SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

_IDS_FILE = "ids.npy"
_SENTENCE_OFFSETS_FILE = "sentence_offsets.npy"
_DOCUMENT_OFFSETS_FILE = "document_offsets.npy"
_TOKENIZER_FILE = "tokenizer.json"
_MANIFEST_FILE = "manifest.json"
_CACHE_ENV = "LMOBJECTIVES_CACHE"


def _ids_dtype(vocab_size: int) -> np.dtype[Any]:
    """uint16 when every id fits (vocab_size <= 65536), else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def _as_backend_tokenizer(tokenizer: Any) -> Tokenizer:
    """A ``tokenizers.Tokenizer`` from itself or a transformers fast tokenizer; else TypeError."""
    from tokenizers import Tokenizer

    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if isinstance(backend, Tokenizer):
        return backend
    raise TypeError(
        "tokenizer: expected a tokenizers.Tokenizer or a transformers fast tokenizer "
        f"(with .backend_tokenizer), got {type(tokenizer).__name__}"
    )


def _check_csr(
    ids_len: int, sentence_offsets: np.ndarray, document_offsets: np.ndarray
) -> tuple[str, str] | None:
    """Check the CSR invariants; returns ``(which array, what is wrong)`` or ``None`` if valid."""
    for name, offsets, end, unit in (
        ("sentence_offsets", sentence_offsets, ids_len, "len(ids)"),
        ("document_offsets", document_offsets, len(sentence_offsets) - 1, "num_sentences"),
    ):
        if offsets.ndim != 1:
            return name, f"must be 1-D, got shape {offsets.shape}"
        if offsets.dtype != np.int64:
            return name, f"must have dtype int64, got {offsets.dtype}"
        if len(offsets) == 0:
            return name, "must have at least one element (a leading 0)"
        if offsets[0] != 0:
            return name, f"must start at 0, starts at {int(offsets[0])}"
        if int(offsets[-1]) != end:
            return name, f"must end at {unit} = {end}, ends at {int(offsets[-1])}"
        if len(offsets) > 1 and bool(np.any(offsets[1:] < offsets[:-1])):
            bad = int(np.flatnonzero(offsets[1:] < offsets[:-1])[0])
            return name, f"must be non-decreasing; decreases after index {bad}"
    return None


class TokenCorpus:
    """Token ids of documents split into sentences, stored as flat arrays with CSR offsets.

    Build one with :meth:`from_texts`, persist it with :meth:`save`, open it with :meth:`load`
    (memory-mapped), or get the embedded corpus with :meth:`default`.

    Attributes:
        ids: 1-D token ids; uint16 if ``vocab_size <= 65536`` else uint32.
        sentence_offsets: int64, ``num_sentences + 1``; sentence ``s`` is
            ``ids[sentence_offsets[s]:sentence_offsets[s + 1]]``.
        document_offsets: int64, ``num_documents + 1``, in units of sentences; document ``d``
            is sentences ``document_offsets[d]:document_offsets[d + 1]``.
        vocab_size: the tokenizer's vocabulary size (every id is below it).
        source: a free-text description of where the text came from.
    """

    ids: np.ndarray
    sentence_offsets: np.ndarray
    document_offsets: np.ndarray
    vocab_size: int
    source: str

    def __init__(
        self,
        ids: np.ndarray,
        sentence_offsets: np.ndarray,
        document_offsets: np.ndarray,
        vocab_size: int,
        tokenizer: Tokenizer | None = None,
        *,
        source: str = "",
        _tokenizer_path: Path | None = None,
        _path: Path | None = None,
        _mmap: bool = False,
    ) -> None:
        """Wrap existing arrays (validated; not copied). Most users want a classmethod instead."""
        vocab_size = operator.index(vocab_size)
        if vocab_size <= 0:
            raise ValueError(f"vocab_size: must be positive, got {vocab_size}")
        for name, arr in (
            ("ids", ids),
            ("sentence_offsets", sentence_offsets),
            ("document_offsets", document_offsets),
        ):
            if not isinstance(arr, np.ndarray):
                raise TypeError(f"{name}: expected a numpy.ndarray, got {type(arr).__name__}")
        if ids.ndim != 1:
            raise ValueError(f"ids: must be 1-D, got shape {ids.shape}")
        if ids.dtype != _ids_dtype(vocab_size):
            raise ValueError(
                f"ids: dtype must be {_ids_dtype(vocab_size)} for vocab_size={vocab_size}, "
                f"got {ids.dtype}"
            )
        problem = _check_csr(len(ids), sentence_offsets, document_offsets)
        if problem is not None:
            raise ValueError(f"{problem[0]}: {problem[1]}")
        if tokenizer is not None:
            tokenizer = _as_backend_tokenizer(tokenizer)
        elif _tokenizer_path is None:
            raise ValueError("tokenizer: required (the corpus must know how to decode its ids)")
        self.ids = ids
        self.sentence_offsets = sentence_offsets
        self.document_offsets = document_offsets
        self.vocab_size = vocab_size
        self.source = source
        self._tokenizer = tokenizer
        self._tokenizer_path = _tokenizer_path
        self._path = _path
        self._mmap = _mmap

    # ------------------------------------------------------------------ basic accessors

    @property
    def tokenizer(self) -> Tokenizer:
        """The ``tokenizers.Tokenizer`` of this corpus (loaded lazily for corpora from disk)."""
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            assert self._tokenizer_path is not None
            try:
                tok = Tokenizer.from_file(str(self._tokenizer_path))
            except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
                raise ValueError(f"{self._tokenizer_path}: not a valid tokenizer ({exc})") from exc
            if tok.get_vocab_size(with_added_tokens=True) != self.vocab_size:
                raise ValueError(
                    f"{self._tokenizer_path}: vocabulary size "
                    f"{tok.get_vocab_size(with_added_tokens=True)} does not match the "
                    f"manifest's vocab_size {self.vocab_size}"
                )
            self._tokenizer = tok
        return self._tokenizer

    @property
    def path(self) -> Path | None:
        """The directory this corpus was loaded from, or ``None`` if built in memory."""
        return self._path

    @property
    def num_tokens(self) -> int:
        """Total number of tokens (``len(ids)``)."""
        return len(self.ids)

    @property
    def num_sentences(self) -> int:
        """Number of sentences."""
        return len(self.sentence_offsets) - 1

    @property
    def num_documents(self) -> int:
        """Number of documents."""
        return len(self.document_offsets) - 1

    def __len__(self) -> int:
        """The number of documents."""
        return self.num_documents

    @staticmethod
    def _index(i: Any, n: int, what: str) -> int:
        i = operator.index(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"{what} index out of range (there are {n})")
        return i

    def sentence(self, s: int) -> np.ndarray:
        """Token ids of sentence ``s`` (a view into :attr:`ids`; negative indices count back)."""
        s = self._index(s, self.num_sentences, "sentence")
        return self.ids[self.sentence_offsets[s] : self.sentence_offsets[s + 1]]

    def document(self, d: int) -> np.ndarray:
        """Token ids of document ``d``, all its sentences back to back (a view into :attr:`ids`)."""
        d = self._index(d, self.num_documents, "document")
        first, last = self.document_offsets[d], self.document_offsets[d + 1]
        return self.ids[self.sentence_offsets[first] : self.sentence_offsets[last]]

    def document_sentences(self, d: int) -> list[np.ndarray]:
        """The sentences of document ``d``, each a view into :attr:`ids`."""
        d = self._index(d, self.num_documents, "document")
        first, last = int(self.document_offsets[d]), int(self.document_offsets[d + 1])
        offsets = self.sentence_offsets[first : last + 1]
        return [self.ids[offsets[i] : offsets[i + 1]] for i in range(last - first)]

    def stats(self) -> dict[str, Any]:
        """Summary numbers: counts, dtype, bytes and sentence/document length statistics."""
        sent_lens = np.diff(self.sentence_offsets)
        doc_sents = np.diff(self.document_offsets)
        doc_tokens = np.diff(self.sentence_offsets[self.document_offsets])

        def describe(x: np.ndarray) -> dict[str, float]:
            if len(x) == 0:
                return {"min": 0, "mean": 0.0, "median": 0.0, "max": 0}
            return {
                "min": int(x.min()),
                "mean": float(x.mean()),
                "median": float(np.median(x)),
                "max": int(x.max()),
            }

        return {
            "num_documents": self.num_documents,
            "num_sentences": self.num_sentences,
            "num_tokens": self.num_tokens,
            "vocab_size": self.vocab_size,
            "ids_dtype": str(self.ids.dtype),
            "nbytes": int(
                self.ids.nbytes + self.sentence_offsets.nbytes + self.document_offsets.nbytes
            ),
            "tokens_per_sentence": describe(sent_lens),
            "sentences_per_document": describe(doc_sents),
            "tokens_per_document": describe(doc_tokens),
            "source": self.source,
            "path": None if self._path is None else str(self._path),
        }

    def __repr__(self) -> str:
        where = f", path={str(self._path)!r}" if self._path is not None else ""
        return (
            f"TokenCorpus(documents={self.num_documents:,}, sentences={self.num_sentences:,}, "
            f"tokens={self.num_tokens:,}, vocab_size={self.vocab_size:,}, "
            f"ids_dtype={self.ids.dtype}{where})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # A corpus opened from disk pickles as its path (cheap for DataLoader workers, which
        # re-open the memory map); an in-memory corpus pickles its arrays and tokenizer JSON.
        if self._path is not None:
            return (_reopen, (str(self._path), self._mmap))
        return (
            _from_state,
            (
                np.asarray(self.ids),
                np.asarray(self.sentence_offsets),
                np.asarray(self.document_offsets),
                self.vocab_size,
                self.tokenizer.to_str(),
                self.source,
            ),
        )

    # ------------------------------------------------------------------ building

    @classmethod
    def from_texts(
        cls,
        documents: Iterable[str | Sequence[str]],
        tokenizer: Any,
        *,
        add_special_tokens: bool = False,
        batch_size: int = 1000,
        progress: bool | None = None,
        source: str = "",
    ) -> TokenCorpus:
        """Tokenize documents into a corpus.

        Args:
            documents: each either a ``str`` (split into sentences with
                :func:`lmobjectives._embedded.split_sentences`: paragraphs at blank lines, then
                sentence-final punctuation) or a sequence of sentence strings (used as given).
            tokenizer: a ``tokenizers.Tokenizer`` or a transformers fast tokenizer (its
                ``backend_tokenizer`` is used). Padding and truncation, if enabled on it, are
                disabled on a private copy; the argument is never modified.
            add_special_tokens: pass through to ``encode_batch`` (e.g. wrap each sentence in
                ``[CLS] ... [SEP]``). Usually ``False``: objectives add their own.
            batch_size: sentences per ``encode_batch`` call.
            progress: show a progress bar (``None``: iff stderr is a TTY or
                ``LMOBJECTIVES_PROGRESS=1``).
            source: free text stored in the manifest.

        Sentences that tokenize to nothing are dropped, then documents left without sentences.

        Raises:
            TypeError: a document or sentence is not a ``str``, or ``tokenizer`` is not one.
            ValueError: ``batch_size`` is not positive, or no non-empty sentence remains.
        """
        from lmobjectives._embedded import split_sentences

        tok = _as_backend_tokenizer(tokenizer)
        if tok.padding is not None or tok.truncation is not None:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_str(tok.to_str())
            tok.no_padding()
            tok.no_truncation()
        batch_size = operator.index(batch_size)
        if batch_size <= 0:
            raise ValueError(f"batch_size: must be positive, got {batch_size}")
        if isinstance(documents, str | bytes) or not isinstance(documents, Iterable):
            raise TypeError(
                "documents: expected an iterable of documents (each a str or a list of sentence "
                f"strings), got {type(documents).__name__}"
            )

        sentences: list[str] = []
        doc_sizes: list[int] = []  # sentences per input document
        for d, doc in enumerate(documents):
            if isinstance(doc, str):
                sents = split_sentences(doc)
            elif isinstance(doc, Sequence) and not isinstance(doc, bytes):
                sents = list(doc)
                for j, sent in enumerate(sents):
                    if not isinstance(sent, str):
                        raise TypeError(
                            f"documents[{d}][{j}]: expected str, got {type(sent).__name__}"
                        )
            else:
                raise TypeError(
                    f"documents[{d}]: expected a str or a list of str, got {type(doc).__name__}"
                )
            sentences.extend(sents)
            doc_sizes.append(len(sents))

        vocab_size = tok.get_vocab_size(with_added_tokens=True)
        dtype = _ids_dtype(vocab_size)
        id_chunks: list[np.ndarray] = []
        len_chunks: list[np.ndarray] = []
        with Progress(len(sentences), "tokenize", unit="sent", enabled=progress) as bar:
            for start in range(0, len(sentences), batch_size):
                batch = sentences[start : start + batch_size]
                encodings = tok.encode_batch(batch, add_special_tokens=add_special_tokens)
                id_lists = [enc.ids for enc in encodings]
                lengths = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
                flat = np.fromiter(
                    itertools.chain.from_iterable(id_lists),
                    dtype=np.int64,
                    count=int(lengths.sum()),
                )
                if len(flat) and (flat.min() < 0 or flat.max() >= vocab_size):
                    raise ValueError(f"tokenizer: produced ids outside [0, {vocab_size})")
                id_chunks.append(flat.astype(dtype))
                len_chunks.append(lengths)
                bar.update(len(batch))

        lengths = np.concatenate(len_chunks) if len_chunks else np.zeros(0, np.int64)
        keep = lengths > 0
        if not keep.any():
            raise ValueError("documents: no non-empty sentence to tokenize")
        sentence_offsets = np.zeros(int(keep.sum()) + 1, dtype=np.int64)
        np.cumsum(lengths[keep], out=sentence_offsets[1:])
        sentence_doc = np.repeat(np.arange(len(doc_sizes), dtype=np.int64), doc_sizes)
        per_doc = np.bincount(sentence_doc[keep], minlength=len(doc_sizes)).astype(np.int64)
        per_doc = per_doc[per_doc > 0]
        document_offsets = np.zeros(len(per_doc) + 1, dtype=np.int64)
        np.cumsum(per_doc, out=document_offsets[1:])
        return cls(
            np.concatenate(id_chunks),
            sentence_offsets,
            document_offsets,
            vocab_size,
            tok,
            source=source,
        )

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the corpus as a directory; atomically (temp dir + rename). Returns the path.

        The directory holds ``ids.npy``, ``sentence_offsets.npy``, ``document_offsets.npy``,
        ``tokenizer.json`` and ``manifest.json``. It is written next to ``path`` under a
        temporary name and renamed into place, so an interrupted save never leaves a directory
        that :meth:`load` accepts.

        Raises:
            FileExistsError: ``path`` exists and ``overwrite`` is false (or another process
                created it while this one was writing).
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"path: {path} already exists (pass overwrite=True)")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
        tmp.mkdir()  # (unlike tempfile.mkdtemp, honours the umask: caches may be shared)
        try:
            for name, arr in (
                (_IDS_FILE, self.ids),
                (_SENTENCE_OFFSETS_FILE, self.sentence_offsets),
                (_DOCUMENT_OFFSETS_FILE, self.document_offsets),
            ):
                with open(tmp / name, "wb") as f:
                    np.save(f, np.ascontiguousarray(arr), allow_pickle=False)
                    f.flush()
                    os.fsync(f.fileno())
            # (Loads a lazily loaded tokenizer first, so overwriting the corpus's own directory
            # leaves this object usable.)
            _write_text(tmp / _TOKENIZER_FILE, self.tokenizer.to_str())
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "vocab_size": self.vocab_size,
                "num_tokens": self.num_tokens,
                "num_sentences": self.num_sentences,
                "num_documents": self.num_documents,
                "ids_dtype": str(self.ids.dtype),
                "source": self.source,
            }
            _write_text(tmp / _MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
            if overwrite and path.exists():
                old = path.parent / f".{path.name}.old-{uuid.uuid4().hex}"
                os.rename(path, old)
                os.rename(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                try:
                    os.rename(tmp, path)
                except OSError as exc:  # someone else created it meanwhile
                    raise FileExistsError(f"path: {path} already exists") from exc
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, mmap: bool = True) -> TokenCorpus:
        """Open a corpus saved with :meth:`save`; arrays are memory-mapped unless ``mmap=False``.

        Validates the manifest (format, version, counts, dtype) and the arrays against it
        (dtypes, shapes, offsets starting at 0, non-decreasing and ending at the right totals).
        Token ids are not scanned (that would defeat memory-mapping). Never unpickles.

        Raises:
            FileNotFoundError: ``path`` is not a directory.
            ValueError: any file is missing or invalid; the message names the file.
        """
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"path: no corpus directory at {path}")
        manifest = _read_manifest(path / _MANIFEST_FILE)
        vocab_size = manifest["vocab_size"]
        expected_dtype = _ids_dtype(vocab_size)
        if manifest["ids_dtype"] != str(expected_dtype):
            raise ValueError(
                f"{path / _MANIFEST_FILE}: ids_dtype {manifest['ids_dtype']!r} does not fit "
                f"vocab_size {vocab_size} (expected {str(expected_dtype)!r})"
            )
        ids = _load_array(path / _IDS_FILE, expected_dtype, manifest["num_tokens"], mmap)
        sentence_offsets = _load_array(
            path / _SENTENCE_OFFSETS_FILE, np.dtype(np.int64), manifest["num_sentences"] + 1, mmap
        )
        document_offsets = _load_array(
            path / _DOCUMENT_OFFSETS_FILE, np.dtype(np.int64), manifest["num_documents"] + 1, mmap
        )
        problem = _check_csr(len(ids), sentence_offsets, document_offsets)
        if problem is not None:
            array, what = problem
            file = {"sentence_offsets": _SENTENCE_OFFSETS_FILE}.get(array, _DOCUMENT_OFFSETS_FILE)
            raise ValueError(f"{path / file}: {what}")
        tokenizer_path = path / _TOKENIZER_FILE
        if not tokenizer_path.is_file():
            raise ValueError(f"{tokenizer_path}: missing")
        return cls(
            ids,
            sentence_offsets,
            document_offsets,
            vocab_size,
            source=manifest["source"],
            _tokenizer_path=tokenizer_path,
            _path=path,
            _mmap=mmap,
        )

    # ------------------------------------------------------------------ the embedded corpus

    @classmethod
    def default(
        cls,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        rebuild: bool = False,
        progress: bool | None = None,
    ) -> TokenCorpus:
        """The embedded corpus: English prose from this Python's standard library.

        Text comes from :func:`lmobjectives._embedded.stdlib_documents` (``pydoc`` topics,
        docstrings, prose string literals and comment blocks); a BERT-uncased-style WordPiece
        tokenizer with 30,522 tokens is trained on it (:func:`train_wordpiece`); the result is
        tokenized, saved and returned memory-mapped. The first call builds it (tens of seconds);
        later calls load the cache.

        Args:
            cache_dir: where to cache; default ``$LMOBJECTIVES_CACHE``, else
                ``~/.cache/lmobjectives``. The corpus lives in a subdirectory keyed by the
                recipe version and the exact Python version.
            rebuild: build even when a valid cache exists (and replace it).
            progress: show progress bars (``None``: iff stderr is a TTY or
                ``LMOBJECTIVES_PROGRESS=1``).
        """
        target = default_cache_dir(cache_dir) / _default_corpus_name()
        broken = False
        if not rebuild and target.exists():
            try:
                return cls.load(target)
            except (ValueError, OSError):
                broken = True  # a broken or foreign cache entry: replace it
        corpus = _build_default_corpus(progress)
        # FileExistsError: another process finished first; its corpus is identical.
        with contextlib.suppress(FileExistsError):
            corpus.save(target, overwrite=rebuild or broken)
        return cls.load(target)


# ---------------------------------------------------------------------- helpers


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _read_manifest(path: Path) -> dict[str, Any]:
    """Parse and validate ``manifest.json``; ValueError naming the file on any problem."""
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(manifest).__name__}")
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: format must be {FORMAT!r}, got {manifest.get('format')!r}")
    version = manifest.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise ValueError(
            f"{path}: unsupported format_version {version!r} (this version reads {FORMAT_VERSION})"
        )
    for key in ("vocab_size", "num_tokens", "num_sentences", "num_documents"):
        value = manifest.get(key)
        if type(value) is not int or value < 0:
            raise ValueError(f"{path}: {key} must be a non-negative integer, got {value!r}")
    if manifest["vocab_size"] == 0:
        raise ValueError(f"{path}: vocab_size must be positive")
    if manifest.get("ids_dtype") not in ("uint16", "uint32"):
        raise ValueError(
            f"{path}: ids_dtype must be 'uint16' or 'uint32', got {manifest.get('ids_dtype')!r}"
        )
    source = manifest.get("source", "")
    if not isinstance(source, str):
        raise ValueError(f"{path}: source must be a string, got {type(source).__name__}")
    manifest["source"] = source
    return manifest


def _load_array(path: Path, dtype: np.dtype[Any], length: int, mmap: bool) -> np.ndarray:
    """``np.load`` one 1-D array, checking dtype and length; ValueError naming the file."""
    if not path.is_file():
        raise ValueError(f"{path}: missing")
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as exc:
        raise ValueError(f"{path}: not readable ({exc})") from exc
    if magic != b"\x93NUMPY":
        raise ValueError(f"{path}: not a readable .npy array (bad magic bytes {magic!r})")
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable .npy array ({exc})") from exc
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{path}: expected a single array, got {type(arr).__name__}")
    if arr.dtype != dtype:
        raise ValueError(f"{path}: dtype must be {dtype} (native byte order), got {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{path}: must be 1-D, got shape {arr.shape}")
    if len(arr) != length:
        raise ValueError(f"{path}: length {len(arr)} does not match the manifest ({length})")
    return arr


def _reopen(path: str, mmap: bool) -> TokenCorpus:
    return TokenCorpus.load(path, mmap=mmap)


def _from_state(
    ids: np.ndarray,
    sentence_offsets: np.ndarray,
    document_offsets: np.ndarray,
    vocab_size: int,
    tokenizer_json: str,
    source: str,
) -> TokenCorpus:
    from tokenizers import Tokenizer

    return TokenCorpus(
        ids,
        sentence_offsets,
        document_offsets,
        vocab_size,
        Tokenizer.from_str(tokenizer_json),
        source=source,
    )


def default_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: ``cache_dir``, else ``$LMOBJECTIVES_CACHE``, else ``~/.cache/lmobjectives``.

    (The default corpus lives in a versioned subdirectory of it.)
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(_CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "lmobjectives"


def _default_corpus_name() -> str:
    v = sys.version_info
    return f"stdlib-corpus-v{RECIPE_VERSION}-py{v.major}.{v.minor}.{v.micro}"


def _build_default_corpus(progress: bool | None) -> TokenCorpus:
    """Extract the stdlib text, train the tokenizer on it and tokenize it (no caching)."""
    import sysconfig

    from lmobjectives._embedded import stdlib_documents

    documents = stdlib_documents(progress=progress)
    tokenizer = train_wordpiece(
        [sentence for doc in documents for sentence in doc],
        DEFAULT_VOCAB_SIZE,
        progress=progress,
    )
    source = (
        f"lmobjectives embedded corpus (recipe v{RECIPE_VERSION}): pydoc topics, docstrings, "
        f"prose string literals and comments of the Python {sys.version.split()[0]} standard "
        f"library at {sysconfig.get_paths()['stdlib']}"
    )
    return TokenCorpus.from_texts(documents, tokenizer, progress=progress, source=source)


def train_wordpiece(
    texts: Iterable[str],
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    *,
    lowercase: bool = True,
    min_frequency: int = 1,
    progress: bool | None = None,
) -> Tokenizer:
    """Train a BERT-style WordPiece tokenizer with Hugging Face ``tokenizers``, deterministically.

    The pipeline matches ``bert-base-uncased`` (with ``lowercase=True``): ``BertNormalizer``
    (lowercasing and accent stripping follow ``lowercase``), ``BertPreTokenizer``, a
    ``WordPiece`` model with ``[UNK]`` and the ``##`` continuation prefix, a ``WordPiece``
    decoder, and a post-processor adding ``[CLS] $A [SEP]`` (pairs:
    ``[CLS] $A [SEP] $B:1 [SEP]:1``). Special tokens get the first ids: [PAD]=0, [UNK]=1,
    [CLS]=2, [SEP]=3, [MASK]=4.

    Determinism: ``tokenizers``' trainer assigns ids to the ``##``-prefixed single characters
    in hash-map order, and those ids break ties between equally frequent merges, so the same
    text can give different vocabularies from run to run (huggingface/tokenizers#1794). To
    avoid that, a first quick pass (no merges) finds these continuation characters, and the
    real pass registers them up front, in sorted order, so every id and every tie-break is
    fixed. The texts are therefore held in memory (they are read twice).

    The vocabulary may come out smaller than ``vocab_size`` when the text is too small to
    support that many merges.

    Args:
        texts: training texts (e.g. sentences).
        vocab_size: target vocabulary size, special tokens included.
        lowercase: uncased (``True``) or cased vocabulary.
        min_frequency: minimum count for a merge.
        progress: show a progress bar while reading the texts (``None``: iff stderr is a TTY
            or ``LMOBJECTIVES_PROGRESS=1``).
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab_size = operator.index(vocab_size)
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size: must exceed {len(SPECIAL_TOKENS)}, got {vocab_size}")
    min_frequency = operator.index(min_frequency)
    if min_frequency < 0:
        raise ValueError(f"min_frequency: must be >= 0, got {min_frequency}")
    if isinstance(texts, str | bytes) or not isinstance(texts, Iterable):
        raise TypeError(f"texts: expected an iterable of str, got {type(texts).__name__}")
    length = len(texts) if isinstance(texts, Sequence) else None
    corpus: list[str] = []
    with Progress(length, "read texts", unit="text", enabled=progress) as bar:
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}]: expected str, got {type(text).__name__}")
            corpus.append(text)
            bar.update()

    def pipeline(model: Any) -> Tokenizer:
        tok = Tokenizer(model)
        tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
        return tok

    def train(special_tokens: list[str], size: int) -> dict[str, int]:
        from tokenizers import trainers

        tok = pipeline(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
        trainer = trainers.WordPieceTrainer(
            vocab_size=size,
            min_frequency=min_frequency,
            show_progress=False,
            special_tokens=special_tokens,
            continuing_subword_prefix="##",
        )
        tok.train_from_iterator(corpus, trainer=trainer, length=len(corpus))
        return tok.get_vocab(with_added_tokens=False)

    with Progress(2, "train wordpiece", unit="pass", enabled=progress) as bar:
        probe = train(list(SPECIAL_TOKENS), len(SPECIAL_TOKENS) + 1)  # alphabet only
        bar.update()
        continuation = sorted(t for t in probe if t.startswith("##") and len(t) == 3)
        vocab = train([*SPECIAL_TOKENS, *continuation], vocab_size)
        bar.update()

    ids = [vocab.get(tok) for tok in SPECIAL_TOKENS]
    if ids != list(range(len(SPECIAL_TOKENS))):
        raise RuntimeError(f"special token ids came out as {ids}, expected 0..4")
    # A fresh tokenizer over the trained vocabulary: the continuation characters were passed as
    # "special tokens" only to pin their ids; they must not be added tokens of the result.
    tokenizer = pipeline(
        models.WordPiece(
            vocab, unk_token="[UNK]", continuing_subword_prefix="##", max_input_chars_per_word=100
        )
    )
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids[2]), ("[SEP]", ids[3])],
    )
    return tokenizer
