"""Token corpora: flat token ids plus sentence and document offsets (CSR), memory-mapped on disk.

A :class:`TokenCorpus` holds three arrays::

    ids               1-D token ids (uint16 when the vocabulary fits, else uint32)
    sentence_offsets  int64, n_sentences + 1; sentence s is
                      ids[sentence_offsets[s]:sentence_offsets[s + 1]]
    document_offsets  int64, n_documents + 1, in sentences; document d is
                      sentences document_offsets[d]:document_offsets[d + 1]

plus the tokenizer that produced them. On disk a corpus is a directory of ``.npy`` files, the
tokenizer's ``tokenizer.json`` and a ``manifest.json`` recording counts, the byte size of every
file and its BLAKE2b-256 checksum; :meth:`TokenCorpus.load` memory-maps the arrays, so opening
even a large corpus is quick and its pages are shared between processes.

Corpora are built from Python strings (:meth:`TokenCorpus.from_texts`) or from text files
(:meth:`TokenCorpus.from_files`), tokenized by Hugging Face ``tokenizers`` in large multi-threaded
``encode_batch`` calls. Given ``out=``, or through :class:`TokenCorpusWriter`, a build streams
token ids and offsets straight into the final files, so a corpus larger than memory can be built
with memory bounded by one batch.

:meth:`TokenCorpus.default` is the embedded corpus: English prose from CPython's standard library
(help topics, docstrings, comments), extracted once from CPython 3.11.7 and shipped inside the
package with the BERT-uncased-style WordPiece vocabulary of 30,522 tokens trained on it (see
:mod:`lmobjectives._embedded_data`); it is tokenized on first use and cached, and is the same on
every Python version.

This module needs only NumPy to import; ``tokenizers`` (the ``corpus`` extra) is imported when a
tokenizer is trained, loaded or used.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import operator
import os
import shutil
import uuid
import weakref
from collections.abc import Iterable, Sequence, Sized
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from lmobjectives import _embedded_data
from lmobjectives._embedded_data import EmbeddedDataError
from lmobjectives._optional import require
from lmobjectives._progress import Progress
from lmobjectives._sentences import split_sentences

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_VOCAB_SIZE",
    "FORMAT",
    "FORMAT_VERSION",
    "RECIPE_VERSION",
    "SPECIAL_TOKENS",
    "EmbeddedDataError",
    "TokenCorpus",
    "TokenCorpusWriter",
    "default_cache_dir",
    "default_corpus_fingerprint",
    "train_wordpiece",
]

#: ``manifest.json`` "format" value.
FORMAT = "lmobjectives.TokenCorpus"
#: ``manifest.json`` "format_version" value this code writes. Version 2 added the per-file sizes
#: and checksums (``"files"``); version-1 corpora (without them) are still read.
FORMAT_VERSION = 2
#: Every format version :meth:`TokenCorpus.load` reads.
READABLE_FORMAT_VERSIONS = (1, 2)
#: Version of the embedded corpus recipe (text extraction, tokenizer training and how the
#: shipped data is tokenized); part of the cache key (with the shipped data's checksum), so
#: bumping it rebuilds every cached default corpus. Version 2: the text and vocabulary are
#: shipped (extracted from CPython 3.11.7) instead of rebuilt from the running interpreter.
RECIPE_VERSION = 2
#: BERT's vocabulary size.
DEFAULT_VOCAB_SIZE = 30522
#: Special tokens, in id order: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4.
SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
#: Sentences per ``encode_batch`` call when building: large enough that ``tokenizers`` keeps
#: every core busy, small enough that a batch's encodings stay in the tens of MB.
DEFAULT_BATCH_SIZE = 8192

_IDS_FILE = "ids.npy"
_SENTENCE_OFFSETS_FILE = "sentence_offsets.npy"
_DOCUMENT_OFFSETS_FILE = "document_offsets.npy"
_TOKENIZER_FILE = "tokenizer.json"
_MANIFEST_FILE = "manifest.json"
_CACHE_ENV = "LMOBJECTIVES_CACHE"
_ARRAY_FILES = (_IDS_FILE, _SENTENCE_OFFSETS_FILE, _DOCUMENT_OFFSETS_FILE)
_CHECKED_FILES = (*_ARRAY_FILES, _TOKENIZER_FILE)
#: The checksum: BLAKE2b with a 32-byte digest over the whole file (``b2sum -l 256 FILE``).
_CHECKSUM_KEY = "blake2b_256"
_HASH_CHUNK = 1 << 18
#: Offsets are checked for monotonicity this many elements at a time (bounded memory).
_CHECK_CHUNK = 1 << 18
#: A version-1.0 ``.npy`` header of a 1-D array of a simple dtype is always 128 bytes long (for
#: any length up to 2**63), so the writer streams the data from byte 128 and writes the header
#: last.
_NPY_HEADER_BYTES = 128


def _tokenizers(purpose: str) -> Any:
    """The ``tokenizers`` module, or MissingDependencyError naming the ``corpus`` extra."""
    return require("tokenizers", purpose=purpose)


def _ids_dtype(vocab_size: int) -> np.dtype[Any]:
    """uint16 when every id fits (vocab_size <= 65536), else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def _as_backend_tokenizer(tokenizer: Any) -> Tokenizer:
    """A ``tokenizers.Tokenizer`` from itself or a transformers fast tokenizer; else TypeError."""
    tokenizer_type = _tokenizers("tokenizing a corpus").Tokenizer
    if isinstance(tokenizer, tokenizer_type):
        return tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if isinstance(backend, tokenizer_type):
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
        bad = _first_decrease(offsets)
        if bad is not None:
            return name, f"must be non-decreasing; decreases after index {bad}"
    return None


def _first_decrease(offsets: np.ndarray) -> int | None:
    """Index ``i`` of the first ``offsets[i + 1] < offsets[i]``, or ``None``.

    Scans in chunks so that checking a memory-mapped array of any length needs bounded memory.
    """
    n = len(offsets)
    for start in range(0, n - 1, _CHECK_CHUNK):
        stop = min(start + _CHECK_CHUNK + 1, n)
        block = np.asarray(offsets[start:stop])
        down = block[1:] < block[:-1]
        if down.any():
            return start + int(np.argmax(down))
    return None


class TokenCorpus:
    """Token ids of documents split into sentences, stored as flat arrays with CSR offsets.

    Build one with :meth:`from_texts` or :meth:`from_files` (in memory, or streamed to disk
    with ``out=`` / :class:`TokenCorpusWriter`), persist it with :meth:`save`, open it with
    :meth:`load` (memory-mapped, checksums verified), or get the embedded corpus with
    :meth:`default`.

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
        self._range: tuple[int, int] | None = None  # documents of the corpus at _range_path
        self._range_path: Path | None = None

    # ------------------------------------------------------------------ basic accessors

    @property
    def tokenizer(self) -> Tokenizer:
        """The ``tokenizers.Tokenizer`` of this corpus (loaded lazily for corpora from disk)."""
        if self._tokenizer is None:
            tokenizers = _tokenizers("a TokenCorpus's tokenizer")
            assert self._tokenizer_path is not None
            try:
                tok = tokenizers.Tokenizer.from_file(str(self._tokenizer_path))
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

    def documents(self, start: int, stop: int) -> TokenCorpus:
        """Documents ``start:stop`` as a corpus of their own: ``ids`` is a view (no copy, a
        memory-mapped corpus stays on disk), the offsets are rebased copies. A view of a corpus
        opened from disk pickles as its path and range, so DataLoader workers re-open the
        memory map. Use it for train/held-out splits (``corpus.documents(0, n - k)`` and
        ``corpus.documents(n - k, n)``).
        """
        n = self.num_documents
        for name, v in (("start", start), ("stop", stop)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
        if not 0 <= start < stop <= n:
            raise ValueError(
                f"start, stop: need 0 <= start < stop <= {n} (the number of documents), got "
                f"{start}, {stop}"
            )
        first, last = int(self.document_offsets[start]), int(self.document_offsets[stop])
        sentence_offsets = np.asarray(self.sentence_offsets[first : last + 1], dtype=np.int64)
        lo, hi = int(sentence_offsets[0]), int(sentence_offsets[-1])
        view = TokenCorpus(
            self.ids[lo:hi],
            sentence_offsets - lo,
            np.asarray(self.document_offsets[start : stop + 1], dtype=np.int64) - first,
            self.vocab_size,
            self._tokenizer,
            source=self.source,
            _tokenizer_path=self._tokenizer_path,
        )
        origin = self._path if self._path is not None else self._range_path
        if origin is not None:  # documents of a corpus on disk: pickle as path + range
            base = self._range[0] if self._range is not None else 0
            view._range = (base + start, base + stop)
            view._range_path = origin
            view._mmap = self._mmap
        return view

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
        if self._range is not None and self._range_path is not None:
            return (_reopen_range, (str(self._range_path), self._mmap, *self._range))
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
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: bool | None = None,
        source: str = "",
        out: str | os.PathLike[str] | None = None,
        overwrite: bool = False,
    ) -> TokenCorpus:
        """Tokenize documents into a corpus.

        Sentences are tokenized in batches of ``batch_size`` with the tokenizer's
        ``encode_batch_fast`` (``encode_batch`` before ``tokenizers`` 0.20; the same ids), which
        runs on all cores in Rust (``tokenizers``' own thread pool; ``TOKENIZERS_PARALLELISM=false``
        makes it serial, and the result is the same either way). Batches span document
        boundaries, so many short documents still make large batches.

        Args:
            documents: an iterable (read once, lazily) of documents, each either a ``str``
                (split into sentences with :func:`lmobjectives._sentences.split_sentences`:
                paragraphs at blank lines, then sentence-final punctuation) or a sequence of
                sentence strings (used as given).
            tokenizer: a ``tokenizers.Tokenizer`` or a transformers fast tokenizer (its
                ``backend_tokenizer`` is used). Padding and truncation, if enabled on it, are
                disabled on a private copy; the argument is never modified.
            add_special_tokens: pass through to ``encode_batch`` (e.g. wrap each sentence in
                ``[CLS] ... [SEP]``). Usually ``False``: objectives add their own.
            batch_size: sentences per ``encode_batch`` call.
            progress: show a progress bar over the documents (``None``: iff stderr is a TTY or
                ``LMOBJECTIVES_PROGRESS=1``).
            source: free text stored in the manifest.
            out: if given, stream the corpus into this directory with a
                :class:`TokenCorpusWriter` (memory bounded by one batch, not by the corpus) and
                return it memory-mapped from there.
            overwrite: with ``out``, replace an existing directory.

        Sentences that tokenize to nothing are dropped, then documents left without sentences.

        Raises:
            TypeError: a document or sentence is not a ``str``, or ``tokenizer`` is not one.
            ValueError: ``batch_size`` is not positive, or no non-empty sentence remains.
            FileExistsError: ``out`` exists and ``overwrite`` is false.
        """
        _check_documents(documents)
        if out is not None:
            return _build_on_disk(
                out,
                tokenizer,
                lambda writer: writer.add_documents(documents),
                add_special_tokens=add_special_tokens,
                batch_size=batch_size,
                progress=progress,
                source=source,
                overwrite=overwrite,
            )
        encoder = _Encoder(tokenizer, add_special_tokens, batch_size)
        sink = encoder.sink = _MemorySink()
        _feed_documents(encoder, documents, progress, flush=True)
        encoder.finish("documents: no non-empty sentence to tokenize")
        return sink.corpus(encoder, source)

    @classmethod
    def from_files(
        cls,
        paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
        tokenizer: Any,
        *,
        one_sentence_per_line: bool = False,
        add_special_tokens: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: bool | None = None,
        source: str | None = None,
        out: str | os.PathLike[str] | None = None,
        overwrite: bool = False,
    ) -> TokenCorpus:
        """Tokenize UTF-8 text files into a corpus (see :meth:`from_texts` for tokenization).

        File format: UTF-8 text (a leading byte-order mark is ignored), lines ending in ``\\n``
        or ``\\r\\n``. Documents are separated by blank (or whitespace-only) lines; the end of a
        file ends its last document (documents never run across files). Within a document:

        * ``one_sentence_per_line=True`` — each line is one sentence (Google BERT's
          ``create_pretraining_data.py`` format), stripped of surrounding whitespace; lines are
          streamed, so even a single enormous document needs no more memory than one batch;
        * ``one_sentence_per_line=False`` — the lines are free text, joined and split into
          sentences with :func:`lmobjectives._sentences.split_sentences`.

        Files are read in the order given, line by line (never whole). Every path is checked
        before any is read.

        Args:
            paths: one path or an iterable of paths (``str`` or ``os.PathLike``).
            tokenizer, add_special_tokens, batch_size, out, overwrite: as in :meth:`from_texts`;
                with ``out`` nothing but the current batch is held in memory.
            one_sentence_per_line: how lines within a document are read (above).
            progress: show a progress bar over the input bytes (``None``: iff stderr is a TTY
                or ``LMOBJECTIVES_PROGRESS=1``).
            source: free text for the manifest; default names the files.

        Raises:
            TypeError: ``paths`` (or one of them) is not a path, or ``tokenizer`` is not one.
            FileNotFoundError: a path does not exist or is not a regular file
                (``paths[i]: ...``).
            ValueError: ``paths`` is empty, a file is not valid UTF-8 (the message names the
                file and line), ``batch_size`` is not positive, or no sentence remains.
        """
        files = _check_paths(paths)
        if source is None:
            names = ", ".join(str(f) for f in files[:3])
            source = f"files: {names}" + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        if out is not None:
            return _build_on_disk(
                out,
                tokenizer,
                lambda writer: writer.add_files(files, one_sentence_per_line=one_sentence_per_line),
                add_special_tokens=add_special_tokens,
                batch_size=batch_size,
                progress=progress,
                source=source,
                overwrite=overwrite,
            )
        encoder = _Encoder(tokenizer, add_special_tokens, batch_size)
        sink = encoder.sink = _MemorySink()
        _feed_files(encoder, files, bool(one_sentence_per_line), progress, flush=True)
        encoder.finish("paths: the files hold no non-empty sentence")
        return sink.corpus(encoder, source)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the corpus as a directory; atomically (temp dir + rename). Returns the path.

        The directory holds ``ids.npy``, ``sentence_offsets.npy``, ``document_offsets.npy``,
        ``tokenizer.json`` and ``manifest.json`` (format version :data:`FORMAT_VERSION`, with
        each file's size and BLAKE2b-256 checksum). It is written next to ``path`` under a
        temporary name and renamed into place, so an interrupted save never leaves a directory
        that :meth:`load` accepts.

        Raises:
            FileExistsError: ``path`` exists and ``overwrite`` is false (or another process
                created it while this one was writing).
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"path: {path} already exists (pass overwrite=True)")
        tmp = _make_temp_dir(path)
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
            _write_manifest(
                tmp,
                vocab_size=self.vocab_size,
                num_tokens=self.num_tokens,
                num_sentences=self.num_sentences,
                num_documents=self.num_documents,
                ids_dtype=self.ids.dtype,
                source=self.source,
            )
            _publish(tmp, path, overwrite)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return path

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, mmap: bool = True, verify: bool = True
    ) -> TokenCorpus:
        """Open a corpus saved with :meth:`save`; arrays are memory-mapped unless ``mmap=False``.

        Always validates the manifest (format, version, counts, dtype), the arrays against it
        (dtypes, shapes, offsets starting at 0, non-decreasing and ending at the right totals;
        the offsets are scanned in bounded-memory chunks) and every file's byte size against
        the manifest. Never unpickles.

        With ``verify=True`` (the default) it also recomputes the BLAKE2b-256 checksum of every
        file and compares it with the manifest, which catches any changed byte, token ids
        included. That costs one sequential read of the files (hashing runs at roughly
        1 GB/s; the embedded corpus, about 3 MB, takes a few milliseconds), so for a huge
        corpus that is opened often, ``verify=False`` skips only the hashing. Corpora written
        by format version 1 carry no checksums; they load with the other checks.

        Raises:
            FileNotFoundError: ``path`` is not a directory.
            ValueError: any file is missing, invalid, of the wrong size or (with ``verify``)
                has the wrong checksum; the message names the file and what is wrong.
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
        files = manifest.get("files")
        if files is not None:  # format version >= 2
            for name in _CHECKED_FILES:
                size = (path / name).stat().st_size
                if size != files[name]["bytes"]:
                    raise ValueError(
                        f"{path / name}: size {size} bytes does not match the manifest "
                        f"({files[name]['bytes']} bytes); the file is truncated, extended or "
                        "replaced"
                    )
            if verify:
                for name in _CHECKED_FILES:
                    digest = _file_digest(path / name)[1]
                    if digest != files[name][_CHECKSUM_KEY]:
                        raise ValueError(
                            f"{path / name}: checksum mismatch (BLAKE2b-256 {digest}, manifest "
                            f"says {files[name][_CHECKSUM_KEY]}); the file is corrupted or was "
                            "modified"
                        )
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
        """The embedded corpus: CPython standard-library prose shipped inside the package.

        The text (``pydoc`` help topics, docstrings, prose string literals and comment blocks of
        the standard library) was extracted once from CPython 3.11.7 and ships in
        ``lmobjectives/data/`` together with the BERT-uncased-style WordPiece vocabulary of
        30,522 tokens trained on it (:func:`train_wordpiece`); ``tools/build_embedded_corpus.py``
        in the source repository regenerates both. This method decompresses the shipped files,
        checks their SHA-256 against the shipped metadata, builds the tokenizer from the
        vocabulary (the pipeline :func:`train_wordpiece` produces), tokenizes the text, saves the
        corpus to the cache and returns it memory-mapped. The result does not depend on the
        running Python version (:func:`default_corpus_fingerprint` is the same on all of them).
        The first call builds it (a few seconds); later calls load the cache.

        Args:
            cache_dir: where to cache; default ``$LMOBJECTIVES_CACHE``, else
                ``~/.cache/lmobjectives``. The corpus lives in a subdirectory keyed by the
                recipe version (:data:`RECIPE_VERSION`) and the shipped data's checksum.
            rebuild: build even when a valid cache exists (and replace it).
            progress: show progress bars (``None``: iff stderr is a TTY or
                ``LMOBJECTIVES_PROGRESS=1``).

        Raises:
            EmbeddedDataError: (a ``ValueError``) a shipped data file is missing, corrupted or
                does not match its recorded checksum; the message names the file.
            lmobjectives._optional.MissingDependencyError: ``tokenizers`` is not installed
                (``pip install 'lmobjectives[corpus]'``).
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


class TokenCorpusWriter:
    """Build a :class:`TokenCorpus` on disk, streaming: memory stays bounded by one batch.

    Documents are tokenized in batches of ``batch_size`` sentences (as in
    :meth:`TokenCorpus.from_texts`) and each batch's token ids and offsets are appended to the
    final ``.npy`` files as soon as it is tokenized; the ``.npy`` headers (whose shapes are known
    only at the end) are written into space reserved at the start of each file, the tokenizer
    and the manifest (with checksums, which costs one read of the files) on :meth:`close`.
    Everything is written into a temporary directory next to ``path`` and renamed into place
    on :meth:`close`, so an interrupted or failed build never leaves a directory that
    :meth:`TokenCorpus.load` accepts.

    Use it as a context manager (leaving the block closes it; an exception inside the block,
    or an explicit :meth:`abort`, discards everything)::

        with TokenCorpusWriter("corpus-dir", tokenizer) as writer:
            writer.add_files(["part-000.txt", "part-001.txt"], one_sentence_per_line=True)
            writer.add_documents(more_documents)  # str or list-of-sentence documents
        corpus = TokenCorpus.load("corpus-dir")

    or call :meth:`close` (which returns the corpus, memory-mapped) or :meth:`abort` yourself.
    A temporary directory left behind by a killed process is named ``.<name>.tmp-<hex>``.

    Args:
        path: the corpus directory to create.
        tokenizer: a ``tokenizers.Tokenizer`` or a transformers fast tokenizer (padding and
            truncation are disabled on a private copy).
        overwrite: replace ``path`` on :meth:`close` if it exists (else it must not exist).
        add_special_tokens, batch_size: as in :meth:`TokenCorpus.from_texts`.
        progress: show a progress bar during each ``add_*`` call (``None``: iff stderr is a
            TTY or ``LMOBJECTIVES_PROGRESS=1``).
        source: free text stored in the manifest.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        TypeError, ValueError: a bad ``tokenizer``, ``batch_size`` or ``source``.

    Not thread-safe: add from one thread at a time.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        tokenizer: Any,
        *,
        overwrite: bool = False,
        add_special_tokens: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: bool | None = None,
        source: str = "",
    ) -> None:
        if not isinstance(source, str):
            raise TypeError(f"source: expected str, got {type(source).__name__}")
        self._path = Path(path)
        self._overwrite = bool(overwrite)
        if self._path.exists() and not self._overwrite:
            raise FileExistsError(f"path: {self._path} already exists (pass overwrite=True)")
        self._progress = progress
        self._source = source
        self._corpus: TokenCorpus | None = None
        self._aborted = False
        self._encoder = _Encoder(tokenizer, add_special_tokens, batch_size)  # validates
        self._tmp = _make_temp_dir(self._path)
        try:
            self._sink = self._encoder.sink = _DiskSink(self._tmp)
            self._encoder.document_label = "document {} (from 0) added to the writer"
        except BaseException:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise
        # Discard the temporary directory if the writer is dropped without close()/abort().
        self._finalizer = weakref.finalize(self, _discard, self._sink, self._tmp)

    @property
    def path(self) -> Path:
        """The directory the corpus is published to on :meth:`close`."""
        return self._path

    @property
    def num_tokens(self) -> int:
        """Tokens written so far (sentences still waiting for a full batch not included)."""
        return self._encoder.num_tokens

    @property
    def num_sentences(self) -> int:
        """Non-empty sentences written so far."""
        return self._encoder.num_sentences

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` or :meth:`abort` has run."""
        return self._corpus is not None or self._aborted

    def _check_open(self) -> None:
        if self._aborted:
            raise ValueError("TokenCorpusWriter: aborted (nothing more can be added)")
        if self._corpus is not None:
            raise ValueError("TokenCorpusWriter: already closed (nothing more can be added)")

    def add_documents(self, documents: Iterable[str | Sequence[str]]) -> None:
        """Add documents, each a ``str`` or a sequence of sentence strings.

        The same rules as :meth:`TokenCorpus.from_texts` (read lazily, split, empty sentences
        and documents dropped). On a bad document (``TypeError`` naming ``documents[i]``) the
        documents before it stay added and the writer stays usable.
        """
        self._check_open()
        _check_documents(documents)
        _feed_documents(self._encoder, documents, self._progress, flush=False)

    def add_files(
        self,
        paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
        *,
        one_sentence_per_line: bool = False,
    ) -> None:
        """Add text files in the format of :meth:`TokenCorpus.from_files`, read line by line.

        Every path is checked before any is read; on a decoding error (``ValueError`` naming the
        file and line) what was read before stays added.
        """
        self._check_open()
        files = _check_paths(paths)
        _feed_files(self._encoder, files, bool(one_sentence_per_line), self._progress, flush=False)

    def close(self) -> TokenCorpus:
        """Tokenize what is pending, finish the files, publish the directory; returns the corpus.

        The corpus is returned memory-mapped from :attr:`path` (opened with ``verify=False``:
        the checksums were computed from the files just written). Idempotent.

        Raises:
            ValueError: no non-empty sentence was added (nothing is written), or the writer
                was aborted.
            FileExistsError: ``path`` appeared meanwhile and ``overwrite`` is false.
        """
        if self._corpus is not None:
            return self._corpus
        if self._aborted:
            raise ValueError("TokenCorpusWriter: aborted (nothing to close)")
        try:
            encoder = self._encoder
            encoder.finish("TokenCorpusWriter: no non-empty sentence was added; nothing written")
            self._sink.finish(encoder.dtype)
            _write_text(self._tmp / _TOKENIZER_FILE, encoder.tokenizer.to_str())
            _write_manifest(
                self._tmp,
                vocab_size=encoder.vocab_size,
                num_tokens=encoder.num_tokens,
                num_sentences=encoder.num_sentences,
                num_documents=encoder.num_documents,
                ids_dtype=encoder.dtype,
                source=self._source,
            )
            _publish(self._tmp, self._path, self._overwrite)
        except BaseException:
            self.abort()
            raise
        self._finalizer.detach()
        self._corpus = TokenCorpus.load(self._path, verify=False)
        return self._corpus

    def abort(self) -> None:
        """Discard everything written so far (the temporary directory). Idempotent."""
        if self._corpus is not None or self._aborted:
            return
        self._aborted = True
        self._finalizer()

    def __enter__(self) -> TokenCorpusWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and not self._aborted:  # (an explicit abort() stays aborted)
            self.close()
        else:
            self.abort()

    def __repr__(self) -> str:
        state = "closed" if self._corpus is not None else "aborted" if self._aborted else "open"
        return (
            f"TokenCorpusWriter(path={str(self._path)!r}, {state}, "
            f"sentences={self.num_sentences:,}, tokens={self.num_tokens:,})"
        )


# ---------------------------------------------------------------------- building


def _private_tokenizer(tokenizer: Any) -> Tokenizer:
    """The backend tokenizer, copied without padding/truncation if either is enabled."""
    tok = _as_backend_tokenizer(tokenizer)
    if tok.padding is not None or tok.truncation is not None:
        tok = _tokenizers("tokenizing a corpus").Tokenizer.from_str(tok.to_str())
        tok.no_padding()
        tok.no_truncation()
    return tok


class _Encoder:
    """Tokenizes a stream of sentences in batches and hands CSR pieces to a sink.

    Sentences are added with :meth:`add_sentences` / :meth:`add_sentence`; :meth:`end_document`
    closes the current document. Whenever ``batch_size`` sentences are pending they are encoded
    with one ``encode_batch`` call (multi-threaded in Rust; ``TOKENIZERS_PARALLELISM`` is left
    to ``tokenizers``), and the sink receives, per batch, the token ids, the global end offset
    of every non-empty sentence, and the global end (in sentences) of every document that
    ended before this batch's first new document started. Empty sentences and documents left
    without sentences are dropped. :meth:`finish` encodes the rest and sends the last
    document's end.
    """

    #: Where the pieces go; set by the caller after construction (which validates the options).
    sink: _MemorySink | _DiskSink
    #: How errors name document number ``{}`` (counted from 0 over everything added).
    document_label = "documents[{}]"

    def __init__(self, tokenizer: Any, add_special_tokens: bool, batch: int) -> None:
        tok = _private_tokenizer(tokenizer)
        batch = operator.index(batch)
        if batch <= 0:
            raise ValueError(f"batch_size: must be positive, got {batch}")
        self.tokenizer = tok
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)
        self.dtype = _ids_dtype(self.vocab_size)
        # encode_batch_fast (tokenizers >= 0.20) skips computing character offsets, which a
        # corpus does not keep: same ids, ~15% less time.
        self._encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
        self._add_special_tokens = bool(add_special_tokens)
        self._batch_size = batch
        self._pending: list[str] = []
        self._pending_doc: list[int] = []  # the document serial number of each pending sentence
        self._doc = 0  # serial number of the document being added
        self._last_doc = -1  # serial number of the document of the last non-empty sentence
        self.num_tokens = 0
        self.num_sentences = 0  # non-empty sentences sent to the sink
        self.num_documents = 0  # documents with at least one of them

    def add_sentence(self, sentence: str) -> None:
        self._pending.append(sentence)
        self._pending_doc.append(self._doc)
        if len(self._pending) >= self._batch_size:
            self._encode_pending()

    def add_sentences(self, sentences: list[str]) -> None:
        self._pending.extend(sentences)
        self._pending_doc.extend(itertools.repeat(self._doc, len(sentences)))
        while len(self._pending) >= self._batch_size:
            self._encode_pending()

    def end_document(self) -> None:
        self._doc += 1

    def flush(self) -> None:
        while self._pending:
            self._encode_pending()

    def finish(self, empty_message: str) -> None:
        self.flush()
        if self.num_sentences == 0:
            raise ValueError(empty_message)
        self.sink.append(
            np.zeros(0, self.dtype),
            np.zeros(0, np.int64),
            np.array([self.num_sentences], dtype=np.int64),
        )

    def _encode_pending(self) -> None:
        n = min(self._batch_size, len(self._pending))
        batch = self._pending[:n]
        docs = np.array(self._pending_doc[:n], dtype=np.int64)
        del self._pending[:n], self._pending_doc[:n]
        try:
            encodings = self._encode(batch, add_special_tokens=self._add_special_tokens)
        except Exception:
            _explain_unencodable(batch, docs, self.document_label)
            raise
        id_lists = [enc.ids for enc in encodings]
        del encodings, batch
        lengths = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
        flat = np.fromiter(
            itertools.chain.from_iterable(id_lists), dtype=np.uint32, count=int(lengths.sum())
        )
        del id_lists
        if len(flat) and int(flat.max()) >= self.vocab_size:
            raise ValueError(f"tokenizer: produced ids outside [0, {self.vocab_size})")
        keep = lengths > 0
        kept_lengths = lengths[keep]
        kept_docs = docs[keep]
        sentence_ends = self.num_tokens + np.cumsum(kept_lengths)
        # A document starts at every non-empty sentence whose document differs from that of the
        # previous non-empty sentence (in this batch or an earlier one). Each start but the very
        # first (the leading 0 of document_offsets) is the end of the document before it.
        previous = np.empty_like(kept_docs)
        if len(kept_docs):
            previous[0] = self._last_doc
            previous[1:] = kept_docs[:-1]
            self._last_doc = int(kept_docs[-1])
        starts = np.flatnonzero(kept_docs != previous) + self.num_sentences
        self.sink.append(flat.astype(self.dtype), sentence_ends, starts[starts > 0])
        self.num_tokens += len(flat)
        self.num_sentences += len(kept_lengths)
        self.num_documents += len(starts)


def _explain_unencodable(batch: list[str], docs: np.ndarray, label: str) -> None:
    """After ``encode_batch`` failed: a ValueError naming the sentence ``tokenizers`` rejected.

    (``tokenizers`` raises a bare ``TypeError`` on strings that are not valid Unicode, e.g. with
    lone surrogates from ``errors="surrogateescape"`` decoding, without saying which one.)
    """
    for sentence, doc in zip(batch, docs.tolist(), strict=True):
        try:
            sentence.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"{label.format(doc)}: a sentence is not valid Unicode ({exc.reason} at character "
                f"{exc.start}): {sentence[:60]!r}"
            ) from None


class _MemorySink:
    """Collects the encoder's pieces in memory (for :meth:`TokenCorpus.from_texts`)."""

    def __init__(self) -> None:
        self._ids: list[np.ndarray] = []
        self._sentence_offsets: list[np.ndarray] = [np.zeros(1, np.int64)]
        self._document_offsets: list[np.ndarray] = [np.zeros(1, np.int64)]

    def append(self, ids: np.ndarray, sentence_ends: np.ndarray, document_ends: np.ndarray) -> None:
        self._ids.append(ids)
        self._sentence_offsets.append(sentence_ends)
        self._document_offsets.append(document_ends)

    def corpus(self, encoder: _Encoder, source: str) -> TokenCorpus:
        return TokenCorpus(
            np.concatenate(self._ids),
            np.concatenate(self._sentence_offsets),
            np.concatenate(self._document_offsets),
            encoder.vocab_size,
            encoder.tokenizer,
            source=source,
        )


class _DiskSink:
    """Appends the encoder's pieces to the three ``.npy`` files of a directory.

    Each file starts with :data:`_NPY_HEADER_BYTES` reserved bytes, filled by :meth:`finish`
    with the real header once the length is known; the offsets files start with their 0.
    """

    def __init__(self, directory: Path) -> None:
        self._files: dict[str, io.BufferedWriter] = {}
        self._lengths = {_IDS_FILE: 0, _SENTENCE_OFFSETS_FILE: 0, _DOCUMENT_OFFSETS_FILE: 0}
        try:
            for name in _ARRAY_FILES:
                f = open(directory / name, "wb")  # noqa: SIM115 (closed in finish/close)
                self._files[name] = f
                f.write(bytes(_NPY_HEADER_BYTES))
            self._write(_SENTENCE_OFFSETS_FILE, np.zeros(1, np.int64))
            self._write(_DOCUMENT_OFFSETS_FILE, np.zeros(1, np.int64))
        except BaseException:
            self.close()
            raise

    def _write(self, name: str, arr: np.ndarray) -> None:
        if len(arr):
            self._files[name].write(np.ascontiguousarray(arr).data.cast("B"))
            self._lengths[name] += len(arr)

    def append(self, ids: np.ndarray, sentence_ends: np.ndarray, document_ends: np.ndarray) -> None:
        self._write(_IDS_FILE, ids)
        self._write(_SENTENCE_OFFSETS_FILE, sentence_ends)
        self._write(_DOCUMENT_OFFSETS_FILE, document_ends)

    def finish(self, ids_dtype: np.dtype[Any]) -> None:
        """Write each file's header into its reserved space, sync and close it."""
        for name, f in self._files.items():
            dtype = ids_dtype if name == _IDS_FILE else np.dtype(np.int64)
            f.flush()
            f.seek(0)
            f.write(_npy_header(dtype, self._lengths[name]))
            f.flush()
            os.fsync(f.fileno())
            f.close()

    def close(self) -> None:
        for f in self._files.values():
            f.close()


def _discard(sink: _DiskSink, tmp: Path) -> None:
    sink.close()
    shutil.rmtree(tmp, ignore_errors=True)


def _npy_header(dtype: np.dtype[Any], length: int) -> bytes:
    """The ``.npy`` (version 1.0) header of a C-order 1-D array; always 128 bytes."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf,
        {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (length,)},
    )
    header = buf.getvalue()
    if len(header) != _NPY_HEADER_BYTES:  # cannot happen for a 1-D array (length < 2**63)
        raise RuntimeError(f"unexpected .npy header size {len(header)} for {dtype}[{length}]")
    return header


def _check_documents(documents: Any) -> None:
    if isinstance(documents, str | bytes) or not isinstance(documents, Iterable):
        raise TypeError(
            "documents: expected an iterable of documents (each a str or a list of sentence "
            f"strings), got {type(documents).__name__}"
        )


def _feed_documents(
    encoder: _Encoder,
    documents: Iterable[str | Sequence[str]],
    progress: bool | None,
    *,
    flush: bool,
) -> None:
    """Split/check each document and add it to ``encoder`` (one progress step per document)."""
    total = len(documents) if isinstance(documents, Sized) else None
    with Progress(total, "tokenize", unit="doc", enabled=progress) as bar:
        for d, doc in enumerate(documents):
            if isinstance(doc, str):
                sentences = split_sentences(doc)
            elif isinstance(doc, Sequence) and not isinstance(doc, bytes):
                sentences = list(doc)
                for j, sentence in enumerate(sentences):
                    if not isinstance(sentence, str):
                        raise TypeError(
                            f"documents[{d}][{j}]: expected str, got {type(sentence).__name__}"
                        )
            else:
                raise TypeError(
                    f"documents[{d}]: expected a str or a list of str, got {type(doc).__name__}"
                )
            encoder.add_sentences(sentences)
            encoder.end_document()
            bar.update()
        if flush:
            encoder.flush()


def _check_paths(paths: Any) -> list[Path]:
    """``paths`` (one path or an iterable of them) as a non-empty list of existing files."""
    if isinstance(paths, str | os.PathLike):
        items, labels = [paths], ["paths"]
    elif isinstance(paths, bytes) or not isinstance(paths, Iterable):
        raise TypeError(
            f"paths: expected a path or an iterable of paths, got {type(paths).__name__}"
        )
    else:
        items = list(paths)
        labels = [f"paths[{i}]" for i in range(len(items))]
        if not items:
            raise ValueError("paths: no files given")
    files = []
    for label, item in zip(labels, items, strict=True):
        if not isinstance(item, str | os.PathLike):
            raise TypeError(f"{label}: expected str or os.PathLike, got {type(item).__name__}")
        path = Path(item)
        if not path.exists():
            raise FileNotFoundError(f"{label}: no such file: {path}")
        if path.is_dir():
            raise IsADirectoryError(f"{label}: {path} is a directory, not a text file")
        if not path.is_file():
            raise ValueError(f"{label}: {path} is not a regular file")
        files.append(path)
    return files


def _feed_files(
    encoder: _Encoder,
    files: list[Path],
    one_sentence_per_line: bool,
    progress: bool | None,
    *,
    flush: bool,
) -> None:
    """Read each file line by line (format: see :meth:`TokenCorpus.from_files`) into ``encoder``."""
    total_kib = -(-sum(f.stat().st_size for f in files) // 1024)
    with Progress(total_kib, "tokenize", unit="KiB", enabled=progress) as bar:
        done = 0  # bytes read
        for path in files:
            lines: list[str] = []  # the current document's lines (free-text mode)
            with open(path, "rb") as f:
                for lineno, raw in enumerate(f, 1):
                    done += len(raw)
                    if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 BOM
                        raw = raw[3:]
                    try:
                        line = raw.decode("utf-8").strip()
                    except UnicodeDecodeError as exc:
                        raise ValueError(
                            f"{path}: line {lineno}: not valid UTF-8 ({exc.reason} at byte "
                            f"{exc.start} of the line)"
                        ) from None
                    if not line:  # a blank line ends the document
                        if lines:
                            encoder.add_sentences(split_sentences("\n".join(lines)))
                            lines = []
                        encoder.end_document()
                    elif one_sentence_per_line:
                        encoder.add_sentence(line)
                    else:
                        lines.append(line)
                    if done - (bar.n << 10) >= 1 << 16:
                        bar.update((done >> 10) - bar.n)
            if lines:
                encoder.add_sentences(split_sentences("\n".join(lines)))
            encoder.end_document()  # documents never run across files
        if flush:
            encoder.flush()
        bar.update(max(0, total_kib - bar.n))


def _build_on_disk(
    out: str | os.PathLike[str],
    tokenizer: Any,
    fill: Any,
    *,
    add_special_tokens: bool,
    batch_size: int,
    progress: bool | None,
    source: str,
    overwrite: bool,
) -> TokenCorpus:
    writer = TokenCorpusWriter(
        out,
        tokenizer,
        overwrite=overwrite,
        add_special_tokens=add_special_tokens,
        batch_size=batch_size,
        progress=progress,
        source=source,
    )
    try:
        fill(writer)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


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
    if type(version) is not int or version not in READABLE_FORMAT_VERSIONS:
        raise ValueError(
            f"{path}: unsupported format_version {version!r} (this version reads "
            f"{', '.join(map(str, READABLE_FORMAT_VERSIONS))})"
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
    manifest["files"] = _read_manifest_files(path, manifest.get("files")) if version >= 2 else None
    return manifest


def _read_manifest_files(path: Path, files: Any) -> dict[str, dict[str, Any]]:
    """Validate the manifest's ``"files"``: each checked file's ``bytes`` and checksum."""
    if not isinstance(files, dict):
        raise ValueError(f"{path}: files must be an object, got {type(files).__name__}")
    if sorted(files) != sorted(_CHECKED_FILES):
        raise ValueError(
            f"{path}: files must list exactly {', '.join(_CHECKED_FILES)}; got "
            f"{', '.join(sorted(map(str, files))) or 'none'}"
        )
    for name in _CHECKED_FILES:
        entry = files[name]
        size = entry.get("bytes") if isinstance(entry, dict) else None
        digest = entry.get(_CHECKSUM_KEY) if isinstance(entry, dict) else None
        if type(size) is not int or size < 0:
            raise ValueError(f"{path}: files.{name}.bytes must be a non-negative integer")
        if (
            not isinstance(digest, str)
            or len(digest) != 64
            or digest.strip("0123456789abcdef") != ""
        ):
            raise ValueError(
                f"{path}: files.{name}.{_CHECKSUM_KEY} must be 64 lowercase hex digits"
            )
    return files


def _file_digest(path: Path) -> tuple[int, str]:
    """``(size in bytes, BLAKE2b-256 hex digest)`` of a file, read in 256 KiB chunks."""
    h = hashlib.blake2b(digest_size=32)
    size = 0
    buf = bytearray(_HASH_CHUNK)
    view = memoryview(buf)
    with open(path, "rb") as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            size += n
    return size, h.hexdigest()


def _write_manifest(
    directory: Path,
    *,
    vocab_size: int,
    num_tokens: int,
    num_sentences: int,
    num_documents: int,
    ids_dtype: np.dtype[Any],
    source: str,
) -> None:
    """Write ``manifest.json`` for the (complete) files in ``directory``, with their checksums."""
    files = {}
    for name in _CHECKED_FILES:
        size, digest = _file_digest(directory / name)
        files[name] = {"bytes": size, _CHECKSUM_KEY: digest}
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "vocab_size": vocab_size,
        "num_tokens": num_tokens,
        "num_sentences": num_sentences,
        "num_documents": num_documents,
        "ids_dtype": str(ids_dtype),
        "source": source,
        "files": files,
    }
    _write_text(directory / _MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")


def _make_temp_dir(path: Path) -> Path:
    """A fresh hidden directory next to ``path`` (same filesystem, so it can be renamed in)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()  # (unlike tempfile.mkdtemp, honours the umask: caches may be shared)
    return tmp


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Rename the finished directory ``tmp`` to ``path`` (replacing it if ``overwrite``)."""
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
    # The pickling process verified the checksums when it loaded the corpus; DataLoader workers
    # re-opening it only re-check sizes and structure (hashing a large corpus once per worker
    # would defeat memory-mapping).
    return TokenCorpus.load(path, mmap=mmap, verify=False)


def _reopen_range(path: str, mmap: bool, start: int, stop: int) -> TokenCorpus:
    return _reopen(path, mmap).documents(start, stop)


def _from_state(
    ids: np.ndarray,
    sentence_offsets: np.ndarray,
    document_offsets: np.ndarray,
    vocab_size: int,
    tokenizer_json: str,
    source: str,
) -> TokenCorpus:
    tokenizers = _tokenizers("unpickling a TokenCorpus")
    return TokenCorpus(
        ids,
        sentence_offsets,
        document_offsets,
        vocab_size,
        tokenizers.Tokenizer.from_str(tokenizer_json),
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
    """The default corpus's cache directory name: the recipe version and the data checksum."""
    meta = _embedded_data.read_metadata()
    return f"stdlib-corpus-v{RECIPE_VERSION}-{_embedded_data.data_checksum(meta)[:16]}"


def _default_corpus_source(meta: dict[str, Any]) -> str:
    return (
        f"lmobjectives embedded corpus (recipe v{RECIPE_VERSION}): pydoc topics, docstrings, "
        f"prose string literals and comments of the CPython {meta['python_version']} standard "
        f"library, shipped as lmobjectives/data/{_embedded_data.CORPUS_FILE} (sha256 "
        f"{meta['files'][_embedded_data.CORPUS_FILE]['sha256']}) with its vocabulary "
        f"{_embedded_data.VOCAB_FILE} (sha256 {meta['files'][_embedded_data.VOCAB_FILE]['sha256']})"
    )


def _build_default_corpus(progress: bool | None) -> TokenCorpus:
    """Read and verify the shipped text and vocabulary and tokenize the text (no caching)."""
    data = _embedded_data.load()
    tokenizer = _wordpiece_tokenizer(data.vocab)
    return TokenCorpus.from_texts(
        data.documents, tokenizer, progress=progress, source=_default_corpus_source(data.metadata)
    )


def _fingerprint(corpus: TokenCorpus) -> str:
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
    return _fingerprint(corpus)


def _bert_pipeline(model: Any, lowercase: bool) -> Tokenizer:
    """A ``Tokenizer`` around ``model`` with BERT's normalizer, pre-tokenizer and decoder."""
    tokenizers = _tokenizers("WordPiece tokenizers")
    tok = tokenizers.Tokenizer(model)
    tok.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    tok.decoder = tokenizers.decoders.WordPiece(prefix="##")
    return tok


def _wordpiece_tokenizer(
    vocab: dict[str, int] | Sequence[str], lowercase: bool = True
) -> Tokenizer:
    """The BERT-style WordPiece tokenizer over ``vocab`` (a token -> id dict, or tokens in id
    order): the pipeline of :func:`train_wordpiece`'s result (and of the embedded corpus).

    :func:`_bert_pipeline` around a ``WordPiece`` model (``[UNK]``, ``##`` continuations, at
    most 100 characters per word), :data:`SPECIAL_TOKENS` registered as special tokens and a
    ``[CLS] $A [SEP]`` / ``[CLS] $A [SEP] $B:1 [SEP]:1`` post-processor.

    Raises:
        ValueError: the special tokens do not have ids 0..4, or ids are not 0..len(vocab)-1.
    """
    if not isinstance(vocab, dict):
        vocab = {token: i for i, token in enumerate(vocab)}
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise ValueError("vocab: ids must be 0..len(vocab)-1, each used once")
    ids = [vocab.get(tok) for tok in SPECIAL_TOKENS]
    if ids != list(range(len(SPECIAL_TOKENS))):
        raise ValueError(f"vocab: special tokens {SPECIAL_TOKENS} must have ids 0..4, got {ids}")
    tokenizers = _tokenizers("WordPiece tokenizers")
    tokenizer = _bert_pipeline(
        tokenizers.models.WordPiece(
            vocab, unk_token="[UNK]", continuing_subword_prefix="##", max_input_chars_per_word=100
        ),
        lowercase,
    )
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids[2]), ("[SEP]", ids[3])],
    )
    return tokenizer


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
    tokenizers = _tokenizers("training a WordPiece tokenizer")
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

    def train(special_tokens: list[str], size: int) -> dict[str, int]:
        tok = _bert_pipeline(
            tokenizers.models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"),
            lowercase,
        )
        trainer = tokenizers.trainers.WordPieceTrainer(
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
    return _wordpiece_tokenizer(vocab, lowercase)
