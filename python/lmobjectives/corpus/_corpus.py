"""The :class:`TokenCorpus` class: arrays, accessors, building, saving and loading."""

from __future__ import annotations

import operator
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from lmobjectives.corpus._base import CorpusBase
from lmobjectives.corpus._encoder import (
    DEFAULT_BATCH_SIZE,
    Encoder,
    MemorySink,
    check_documents,
    check_labels,
    check_paths,
    feed_documents,
    feed_files,
    feed_labelled,
)
from lmobjectives.corpus._format import (
    DOCUMENT_OFFSETS_FILE,
    IDS_FILE,
    LABELS_FILE,
    MANIFEST_FILE,
    SENTENCE_OFFSETS_FILE,
    TOKENIZER_FILE,
    check_csr,
    check_files,
    check_ids_in_vocab,
    check_manifest_checksum,
    count_tokens,
    ids_dtype,
    make_temp_dir,
    publish,
    read_arrays,
    read_labels,
    read_manifest,
    read_token_counts,
    write_labels,
    write_manifest,
    write_text,
    write_token_counts,
)
from lmobjectives.corpus._sources import (
    DEFAULT_ROWS_PER_BATCH,
    check_num_proc,
    check_rows_per_batch,
)
from lmobjectives.corpus._tokenizers import as_backend_tokenizer, tokenizers_module

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from lmobjectives.corpus._sharded import ShardedTokenCorpus

__all__ = ["TokenCorpus"]


class TokenCorpus(CorpusBase):
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
        document_labels: one string per document (e.g. where it came from), or ``None`` for
            a corpus without labels. :meth:`TokenCorpus.default` labels each document with
            its standard-library package or module (``topics`` for a help topic).
    """

    ids: np.ndarray
    sentence_offsets: np.ndarray
    document_offsets: np.ndarray
    vocab_size: int
    source: str
    document_labels: tuple[str, ...] | None

    def __init__(
        self,
        ids: np.ndarray,
        sentence_offsets: np.ndarray,
        document_offsets: np.ndarray,
        vocab_size: int,
        tokenizer: Tokenizer | None = None,
        *,
        source: str = "",
        document_labels: Sequence[str] | None = None,
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
        if ids.dtype != ids_dtype(vocab_size):
            raise ValueError(
                f"ids: dtype must be {ids_dtype(vocab_size)} for vocab_size={vocab_size}, "
                f"got {ids.dtype}"
            )
        problem = check_csr(len(ids), sentence_offsets, document_offsets)
        if problem is not None:
            raise ValueError(f"{problem[0]}: {problem[1]}")
        if tokenizer is not None:
            tokenizer = as_backend_tokenizer(tokenizer)
        elif _tokenizer_path is None:
            raise ValueError("tokenizer: required (the corpus must know how to decode its ids)")
        if document_labels is not None:
            try:
                check_labels(document_labels, len(document_offsets) - 1)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"document_{exc}") from None
            document_labels = tuple(document_labels)
        self.ids = ids
        self.sentence_offsets = sentence_offsets
        self.document_offsets = document_offsets
        self.vocab_size = vocab_size
        self.source = source
        self.document_labels = document_labels
        self._tokenizer = tokenizer
        self._tokenizer_path = _tokenizer_path
        self._path = _path
        self._mmap = _mmap
        self._range: tuple[int, int] | None = None  # documents of the corpus at _range_path
        self._range_path: Path | None = None
        self._token_counts: np.ndarray | None = None

    # ------------------------------------------------------------------ basic accessors

    @property
    def tokenizer(self) -> Tokenizer:
        """The ``tokenizers.Tokenizer`` of this corpus (loaded lazily for corpora from disk)."""
        if self._tokenizer is None:
            tokenizers = tokenizers_module("a TokenCorpus's tokenizer")
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

    def documents(self, start: int, stop: int) -> TokenCorpus:
        """Documents ``start:stop`` as a corpus of their own: ``ids`` is a view (no copy, a
        memory-mapped corpus stays on disk), the offsets are rebased copies. A view of a corpus
        opened from disk pickles as its path and range, so DataLoader workers re-open the
        memory map. Use it for train/held-out splits (``corpus.documents(0, n - k)`` and
        ``corpus.documents(n - k, n)``).
        """
        self._check_range(start, stop)
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
            document_labels=(
                None if self.document_labels is None else self.document_labels[start:stop]
            ),
            _tokenizer_path=self._tokenizer_path,
        )
        origin = self._path if self._path is not None else self._range_path
        if origin is not None:  # documents of a corpus on disk: pickle as path + range
            base = self._range[0] if self._range is not None else 0
            view._range = (base + start, base + stop)
            view._range_path = origin
            view._mmap = self._mmap
        return view

    def token_counts(self) -> np.ndarray:
        """How often each id occurs: a read-only ``int64`` array of :attr:`vocab_size` counts.

        Counted once (``np.bincount`` over the ids in chunks, so a memory-mapped corpus is read
        once in bounded memory) and cached: in memory, and for a corpus opened from a directory
        also there, as ``token_counts.npy`` listed in the manifest under ``"derived"`` with its
        checksum and the checksum of the ids it was counted from; later loads (DataLoader
        workers included) read it back instead of counting again. A stale or damaged cache is
        ignored and replaced; a directory that cannot be written keeps the in-memory copy.
        Corpora saved by earlier versions get the cache on first use. SpanBERT's random
        replacements are drawn in proportion to these counts
        (``MLMCollator(recipe="spanbert", token_counts=corpus)``).
        """
        if self._token_counts is None:
            counts = read_token_counts(self._path, self.vocab_size) if self._path else None
            if counts is None:
                counts = count_tokens(self.ids, self.vocab_size)
                if self._path is not None:
                    write_token_counts(self._path, counts)
            counts.setflags(write=False)
            self._token_counts = counts
        return self._token_counts

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
                self.document_labels,
            ),
        )

    # ------------------------------------------------------------------ building

    # long: a 45-line docstring (the public argument reference); the body is 20 lines
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
        labels: Sequence[str] | None = None,
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
            labels: one string per document of ``documents`` (e.g. its source or topic),
                kept as :attr:`document_labels` and saved with the corpus; the label of a
                document that is dropped (no non-empty sentence) is dropped with it.
            out: if given, stream the corpus into this directory with a
                :class:`TokenCorpusWriter` (memory bounded by one batch, not by the corpus) and
                return it memory-mapped from there.
            overwrite: with ``out``, replace an existing directory.

        Sentences that tokenize to nothing are dropped, then documents left without sentences.

        Raises:
            TypeError: a document, sentence or label is not a ``str``, or ``tokenizer`` is not
                one.
            ValueError: ``batch_size`` is not positive, no non-empty sentence remains, or
                ``labels`` does not hold one label per document.
            FileExistsError: ``out`` exists and ``overwrite`` is false.
        """
        check_documents(documents)
        if labels is not None:
            check_labels(labels, None)
        taken: list[str] = []

        def to_encoder(encoder: Encoder) -> None:
            if labels is None:
                feed_documents(encoder, documents, progress, flush=True)
            else:
                feed_labelled(encoder, documents, labels, taken, progress, flush=True)

        return _build(
            _Build(tokenizer, add_special_tokens, batch_size, progress, source, out, overwrite),
            lambda writer: writer.add_documents(documents, labels=labels),
            to_encoder,
            "documents: no non-empty sentence to tokenize",
            taken if labels is not None else None,
        )

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
        files = check_paths(paths)
        if source is None:
            names = ", ".join(str(f) for f in files[:3])
            source = f"files: {names}" + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        lines = bool(one_sentence_per_line)
        return _build(
            _Build(tokenizer, add_special_tokens, batch_size, progress, source, out, overwrite),
            lambda writer: writer.add_files(files, one_sentence_per_line=one_sentence_per_line),
            lambda encoder: feed_files(encoder, files, lines, progress, flush=True),
            "paths: the files hold no non-empty sentence",
        )

    # ------------------------------------------------------------------ datasets and tables

    # long: a 45-line docstring (the public argument reference); the body is 25 lines
    @classmethod
    def from_dataset(
        cls,
        dataset: Any,
        column: str,
        tokenizer: Any,
        *,
        label_column: str | None = None,
        num_proc: int | None = None,
        rows_per_batch: int = DEFAULT_ROWS_PER_BATCH,
        add_special_tokens: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: bool | None = None,
        source: str | None = None,
        out: str | os.PathLike[str] | None = None,
        overwrite: bool = False,
    ) -> TokenCorpus:
        """Tokenize one text column of a dataset into a corpus, streaming: one row per document.

        The rows are read ``rows_per_batch`` at a time (``Dataset.iter`` /
        ``IterableDataset.iter`` over just the needed columns, so a streaming dataset is never
        held whole), split into sentences and tokenized on all cores as in :meth:`from_texts`;
        with ``out=`` every batch is appended to the corpus files before more rows are read,
        so memory stays bounded by a few batches whatever the dataset's size. Document
        boundaries are the rows; sentence boundaries come from the text (a ``str`` is split
        with the rule of :meth:`from_texts`) or from the row itself (a list of ``str`` is taken
        as the sentences). The result is the same for every ``num_proc``, and the same as
        :meth:`from_parquet`, :meth:`from_arrow` or :meth:`from_jsonl` of the same rows.

        Args:
            dataset: a ``datasets.Dataset``, a ``datasets.IterableDataset`` (streaming), or any
                iterable of mappings (rows), read once, in order.
            column: the column holding each document's text (``str``) or sentences (list of
                ``str``).
            tokenizer, add_special_tokens, batch_size, out, overwrite: as in
                :meth:`from_texts`.
            label_column: a column naming each document (its source, topic, ...), kept as
                :attr:`document_labels`: ``str`` values as they are, ``int`` values as the
                ``ClassLabel`` name when the column is one, else as their digits.
            num_proc: worker processes that split the text into sentences (the Python part of
                the work; tokenizing always uses every core). ``None`` or 1: in this process.
            rows_per_batch: rows read (and sent to a worker) at a time.
            progress: show a progress bar over the rows (``None``: iff stderr is a TTY or
                ``LMOBJECTIVES_PROGRESS=1``).
            source: free text for the manifest; default names the dataset.

        Raises:
            TypeError: a row's text is not a ``str`` or a list of ``str``, a label is not a
                ``str`` or an ``int``, or ``dataset`` is not a dataset (the message names the
                row).
            ValueError: a column is missing, ``num_proc``/``rows_per_batch``/``batch_size`` is
                not positive, or no non-empty sentence remains.
            FileExistsError: ``out`` exists and ``overwrite`` is false.
        """
        from lmobjectives.corpus._sources import build_from_rows, dataset_batches

        procs = check_num_proc(num_proc)
        rows, names, total = dataset_batches(
            dataset, column, label_column, check_rows_per_batch(rows_per_batch)
        )
        if source is None:
            info = getattr(dataset, "info", None)
            name = getattr(info, "dataset_name", None) or type(dataset).__name__
            source = f"dataset: {name}, column {column!r}"
        return build_from_rows(
            rows,
            _Build(tokenizer, add_special_tokens, batch_size, progress, source, out, overwrite),
            column=column,
            label_column=label_column,
            label_names=names,
            num_proc=procs,
            total=total,
            empty_message=f"column: no non-empty sentence in column {column!r}",
        )

    @classmethod
    def from_parquet(
        cls,
        paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
        column: str,
        tokenizer: Any,
        *,
        label_column: str | None = None,
        num_proc: int | None = None,
        rows_per_batch: int = DEFAULT_ROWS_PER_BATCH,
        add_special_tokens: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: bool | None = None,
        source: str | None = None,
        out: str | os.PathLike[str] | None = None,
        overwrite: bool = False,
    ) -> TokenCorpus:
        """Tokenize a text column of Parquet files (one row per document), streaming row groups
        ``rows_per_batch`` rows at a time and reading only the needed columns; arguments and
        results as in :meth:`from_dataset`. Needs ``pyarrow``.

        Raises:
            FileNotFoundError: a path does not exist (``paths[i]: ...``).
            ValueError: a file is not Parquet or lacks a column (named), or as in
                :meth:`from_dataset`.
        """
        return _from_table_files(
            "parquet",
            paths,
            column,
            tokenizer,
            label_column,
            num_proc,
            rows_per_batch,
            source,
            _Build(tokenizer, add_special_tokens, batch_size, progress, "", out, overwrite),
        )

    @classmethod
    def from_arrow(
        cls,
        paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
        column: str,
        tokenizer: Any,
        *,
        label_column: str | None = None,
        num_proc: int | None = None,
        rows_per_batch: int = DEFAULT_ROWS_PER_BATCH,
        add_special_tokens: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: bool | None = None,
        source: str | None = None,
        out: str | os.PathLike[str] | None = None,
        overwrite: bool = False,
    ) -> TokenCorpus:
        """Tokenize a text column of Arrow IPC files (the file or the stream format, e.g. the
        ``.arrow`` files ``datasets`` caches), memory-mapped and read ``rows_per_batch`` rows
        at a time; arguments and results as in :meth:`from_dataset`. Needs ``pyarrow``.

        Raises:
            FileNotFoundError: a path does not exist (``paths[i]: ...``).
            ValueError: a file is not Arrow IPC or lacks a column (named), or as in
                :meth:`from_dataset`.
        """
        return _from_table_files(
            "arrow",
            paths,
            column,
            tokenizer,
            label_column,
            num_proc,
            rows_per_batch,
            source,
            _Build(tokenizer, add_special_tokens, batch_size, progress, "", out, overwrite),
        )

    @classmethod
    def from_jsonl(
        cls,
        paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
        column: str,
        tokenizer: Any,
        *,
        label_column: str | None = None,
        num_proc: int | None = None,
        rows_per_batch: int = DEFAULT_ROWS_PER_BATCH,
        add_special_tokens: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: bool | None = None,
        source: str | None = None,
        out: str | os.PathLike[str] | None = None,
        overwrite: bool = False,
    ) -> TokenCorpus:
        """Tokenize a field of JSON Lines files (one JSON object per line and document; blank
        lines skipped), read line by line; arguments and results as in :meth:`from_dataset`.
        Needs nothing beyond NumPy and ``tokenizers``.

        Raises:
            FileNotFoundError: a path does not exist (``paths[i]: ...``).
            ValueError: a line is not a JSON object or lacks a key (file and line named), or as
                in :meth:`from_dataset`.
        """
        return _from_table_files(
            "jsonl",
            paths,
            column,
            tokenizer,
            label_column,
            num_proc,
            rows_per_batch,
            source,
            _Build(tokenizer, add_special_tokens, batch_size, progress, "", out, overwrite),
        )

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the corpus as a directory; atomically (temp dir + rename). Returns the path.

        The directory holds ``ids.npy``, ``sentence_offsets.npy``, ``document_offsets.npy``,
        ``tokenizer.json``, ``document_labels.json`` when the corpus has
        :attr:`document_labels`, and ``manifest.json`` (format version :data:`FORMAT_VERSION`,
        with each file's size and BLAKE2b-256 checksum). It is written next to ``path`` under a
        temporary name and renamed into place, so an interrupted save never leaves a directory
        that :meth:`load` accepts.

        Raises:
            FileExistsError: ``path`` exists and ``overwrite`` is false (or another process
                created it while this one was writing).
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"path: {path} already exists (pass overwrite=True)")
        tmp = make_temp_dir(path)
        try:
            for name, arr in (
                (IDS_FILE, self.ids),
                (SENTENCE_OFFSETS_FILE, self.sentence_offsets),
                (DOCUMENT_OFFSETS_FILE, self.document_offsets),
            ):
                with open(tmp / name, "wb") as f:
                    np.save(f, np.ascontiguousarray(arr), allow_pickle=False)
                    f.flush()
                    os.fsync(f.fileno())
            # (Loads a lazily loaded tokenizer first, so overwriting the corpus's own directory
            # leaves this object usable.)
            write_text(tmp / TOKENIZER_FILE, self.tokenizer.to_str())
            if self.document_labels is not None:
                write_labels(tmp / LABELS_FILE, self.document_labels)
            write_manifest(
                tmp,
                vocab_size=self.vocab_size,
                num_tokens=self.num_tokens,
                num_sentences=self.num_sentences,
                num_documents=self.num_documents,
                ids_dtype=self.ids.dtype,
                source=self.source,
                labelled=self.document_labels is not None,
            )
            publish(tmp, path, overwrite)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return path

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, mmap: bool = True, verify: bool = True
    ) -> TokenCorpus | ShardedTokenCorpus:
        """Open a corpus saved with :meth:`save`; arrays are memory-mapped unless ``mmap=False``.

        A directory holding the manifest of a sharded corpus (written by :meth:`combine` with
        ``out=`` or :meth:`ShardedTokenCorpus.save`) opens as that
        :class:`ShardedTokenCorpus`, exactly as :meth:`ShardedTokenCorpus.load` opens it (with
        the same ``mmap`` and ``verify``), so code that loads a corpus need not know which kind
        it has; every other directory opens as a :class:`TokenCorpus`, as described below.

        Always validates the manifest (format, version, counts, dtype), the arrays against it
        (dtypes, shapes, offsets starting at 0, non-decreasing and ending at the right totals;
        the offsets are scanned in bounded-memory chunks) and every file's byte size against
        the manifest, and the labels (when the corpus has them) against the documents. Never
        unpickles. Corpora saved without labels load with ``document_labels`` ``None``.

        With ``verify=True`` (the default) it also recomputes the BLAKE2b-256 checksum of every
        file and compares it with the manifest, which catches any changed byte, token ids
        included. That costs one sequential read of the files (hashing runs at roughly
        1 GB/s; the embedded corpus, about 3 MB, takes a few milliseconds), so for a huge
        corpus that is opened often, ``verify=False`` skips only the hashing and the scan of
        the ids. The manifest carries its own checksum and the largest id, both checked on
        every load, so an edited manifest (``vocab_size`` lowered) never loads.

        What ``verify=False`` trusts: the *data bytes* of the files (their sizes and ``.npy``
        headers are still checked, and the offsets scanned), i.e. that ``ids.npy`` still holds
        what was written. A flipped byte inside the ids then goes unnoticed at load; the
        kernels still check every id they read against ``vocab_size``
        (:class:`~lmobjectives.TokenIdError`). Pickled corpora reopen in DataLoader workers
        with ``verify=False``, after the parent loaded them (verified by default). Corpora
        written by format version 1 carry no checksums, and corpora written before the
        manifest checksum was added have neither it nor the largest id: they load with the
        other checks, and ``verify=True`` scans their ids against ``vocab_size``.

        Raises:
            FileNotFoundError: ``path`` is not a directory.
            CorpusError: (a ``ValueError``) any file is missing, invalid, of the wrong size or
                (with ``verify``) has the wrong checksum or an id outside the vocabulary; the
                message names the file and what is wrong.
        """
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"path: no corpus directory at {path}")
        from lmobjectives.corpus._sharded import ShardedTokenCorpus, is_sharded

        if is_sharded(path):
            return ShardedTokenCorpus.load(path, mmap=mmap, verify=verify)
        return cls._load_directory(path, mmap=mmap, verify=verify)

    @classmethod
    def _load_directory(cls, path: Path, *, mmap: bool, verify: bool) -> TokenCorpus:
        """:meth:`load` of a directory that is not a sharded corpus's."""
        if not path.is_dir():
            raise FileNotFoundError(f"path: no corpus directory at {path}")
        manifest = read_manifest(path / MANIFEST_FILE)
        ids, sentence_offsets, document_offsets = read_arrays(path, manifest, mmap)
        check_files(path, manifest, verify)
        check_manifest_checksum(path / MANIFEST_FILE, manifest)
        check_ids_in_vocab(path, ids, manifest, verify)
        return cls(
            ids,
            sentence_offsets,
            document_offsets,
            manifest["vocab_size"],
            source=manifest["source"],
            document_labels=read_labels(path, manifest),
            _tokenizer_path=path / TOKENIZER_FILE,
            _path=path,
            _mmap=mmap,
        )

    # ------------------------------------------------------------------ sharded corpora

    @classmethod
    def combine(
        cls,
        shards: Iterable[TokenCorpus | str | os.PathLike[str]],
        *,
        out: str | os.PathLike[str] | None = None,
        overwrite: bool = False,
        verify: bool = True,
        source: str = "",
    ) -> ShardedTokenCorpus:
        """Several corpora (shards) as one :class:`ShardedTokenCorpus`, in the order given.

        Each shard is an ordinary corpus, built on its own (by any job launcher, on any
        machine); combining copies no token data — the shards stay memory-mapped where they
        are and only their offsets are concatenated. Document, sentence and token numbers
        are global, so every dataset view gives exactly the samples it gives over one
        directory holding the same documents in the same order.

        Args:
            shards: :class:`TokenCorpus` objects or corpus directories (opened with
                :meth:`load`).
            out: also write the sharded corpus's manifest (shard paths, counts and
                fingerprints; no token data) to this directory, for
                :meth:`ShardedTokenCorpus.load`.
            overwrite: with ``out``, replace an existing directory.
            verify: check each shard directory's checksums when opening it.
            source: free text stored in the manifest.

        Raises:
            ShardError: (a ``ValueError``) a shard directory is missing or invalid, or a
                shard's vocabulary differs from the first shard's; the message names the shard
                (``shards[i] (path): ...``).
            TypeError: ``shards`` or one of them is neither a corpus nor a path.
        """
        from lmobjectives.corpus._sharded import combine

        return combine(shards, out=out, overwrite=overwrite, verify=verify, source=source)

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
        # (The embedded corpus's module builds on this one.)
        from lmobjectives.corpus._default import load_default

        return load_default(cls, cache_dir=cache_dir, rebuild=rebuild, progress=progress)


class _Build(NamedTuple):
    """How :meth:`TokenCorpus.from_texts` / :meth:`TokenCorpus.from_files` build."""

    tokenizer: Any
    add_special_tokens: bool
    batch_size: int
    progress: bool | None
    source: str
    out: str | os.PathLike[str] | None
    overwrite: bool


def _build(
    options: _Build,
    to_writer: Callable[[Any], None],
    to_encoder: Callable[[Encoder], None],
    empty_message: str,
    labels: list[str] | None = None,
) -> TokenCorpus:
    """A corpus in memory (``to_encoder`` feeds an encoder; ``labels``, when given, is filled
    with one label per document fed), or streamed to ``options.out`` (``to_writer`` feeds a
    :class:`~lmobjectives.TokenCorpusWriter`) and opened from there."""
    o = options
    if o.out is not None:
        # (The writer module imports this one: TokenCorpusWriter.close() returns a TokenCorpus.)
        from lmobjectives.corpus._writer import build_on_disk

        return build_on_disk(
            o.out,
            o.tokenizer,
            to_writer,
            add_special_tokens=o.add_special_tokens,
            batch_size=o.batch_size,
            progress=o.progress,
            source=o.source,
            overwrite=o.overwrite,
        )
    encoder = Encoder(o.tokenizer, o.add_special_tokens, o.batch_size)
    sink = encoder.sink = MemorySink()
    to_encoder(encoder)
    encoder.finish(empty_message)
    ids, sentence_offsets, document_offsets = sink.arrays()
    return TokenCorpus(
        ids,
        sentence_offsets,
        document_offsets,
        encoder.vocab_size,
        encoder.tokenizer,
        source=o.source,
        document_labels=(
            None if labels is None else [labels[i] for i in encoder.kept_documents().tolist()]
        ),
    )


def _reopen(path: str, mmap: bool) -> TokenCorpus:
    # The pickling process verified the checksums when it loaded the corpus; DataLoader workers
    # re-opening it only re-check sizes and structure (hashing a large corpus once per worker
    # would defeat memory-mapping).
    return TokenCorpus._load_directory(Path(path), mmap=mmap, verify=False)


def _reopen_range(path: str, mmap: bool, start: int, stop: int) -> TokenCorpus:
    return _reopen(path, mmap).documents(start, stop)


def _from_state(
    ids: np.ndarray,
    sentence_offsets: np.ndarray,
    document_offsets: np.ndarray,
    vocab_size: int,
    tokenizer_json: str,
    source: str,
    document_labels: tuple[str, ...] | None = None,
) -> TokenCorpus:
    tokenizers = tokenizers_module("unpickling a TokenCorpus")
    return TokenCorpus(
        ids,
        sentence_offsets,
        document_offsets,
        vocab_size,
        tokenizers.Tokenizer.from_str(tokenizer_json),
        source=source,
        document_labels=document_labels,
    )


def _from_table_files(
    kind: str,
    paths: Any,
    column: str,
    tokenizer: Any,
    label_column: str | None,
    num_proc: int | None,
    rows_per_batch: int,
    source: str | None,
    options: _Build,
) -> TokenCorpus:
    """:meth:`TokenCorpus.from_parquet` / ``from_arrow`` / ``from_jsonl`` (``kind``): the rows
    of the files, read in batches by the reader of that kind, built as :meth:`from_dataset`
    builds rows; ``source`` defaults to the kind and the files' names."""
    from lmobjectives.corpus._sources import TABLE_READERS, build_from_rows, describe

    procs = check_num_proc(num_proc)
    rows, files = TABLE_READERS[kind](
        paths, column, label_column, check_rows_per_batch(rows_per_batch)
    )
    return build_from_rows(
        rows,
        options._replace(source=describe(kind, files) if source is None else source),
        column=column,
        label_column=label_column,
        label_names=None,
        num_proc=procs,
        total=None,
        empty_message=f"column: no non-empty sentence in column {column!r} of the files",
    )
