"""Tokenizing text into CSR pieces: the batching encoder, its sinks (memory or ``.npy`` files)
and the readers that feed it documents or text files."""

from __future__ import annotations

import io
import itertools
import operator
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence, Sized
from pathlib import Path
from typing import Any

import numpy as np

from lmobjectives._progress import Progress
from lmobjectives._sentences import split_sentences
from lmobjectives.corpus._format import (
    ARRAY_FILES,
    DOCUMENT_OFFSETS_FILE,
    IDS_FILE,
    NPY_HEADER_BYTES,
    SENTENCE_OFFSETS_FILE,
    ids_dtype,
    npy_header,
)
from lmobjectives.corpus._tokenizers import private_tokenizer

#: Sentences per ``encode_batch`` call when building: large enough that ``tokenizers`` keeps
#: every core busy, small enough that a batch's encodings stay in the tens of MB.
DEFAULT_BATCH_SIZE = 8192


class Encoder:
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
    sink: MemorySink | DiskSink
    #: How errors name document number ``{}`` (counted from 0 over everything added).
    document_label = "documents[{}]"

    def __init__(self, tokenizer: Any, add_special_tokens: bool, batch: int) -> None:
        tok = private_tokenizer(tokenizer)
        batch = operator.index(batch)
        if batch <= 0:
            raise ValueError(f"batch_size: must be positive, got {batch}")
        self.tokenizer = tok
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)
        self.dtype = ids_dtype(self.vocab_size)
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
        self._kept: list[np.ndarray] = []  # serial numbers of those documents, by batch

    @property
    def documents_added(self) -> int:
        """Documents ended so far (kept or not): the serial number of the next one."""
        return self._doc

    def kept_documents(self) -> np.ndarray:
        """The serial numbers of the documents that were kept (had a non-empty sentence), in
        order; complete after :meth:`finish`."""
        return np.concatenate([np.zeros(0, np.int64), *self._kept])

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
            explain_unencodable(batch, docs, self.document_label)
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
        new = np.flatnonzero(kept_docs != previous)
        self._kept.append(kept_docs[new])
        starts = new + self.num_sentences
        self.sink.append(flat.astype(self.dtype), sentence_ends, starts[starts > 0])
        self.num_tokens += len(flat)
        self.num_sentences += len(kept_lengths)
        self.num_documents += len(starts)


def explain_unencodable(batch: list[str], docs: np.ndarray, label: str) -> None:
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


class MemorySink:
    """Collects the encoder's pieces in memory (for :meth:`TokenCorpus.from_texts`)."""

    def __init__(self) -> None:
        self._ids: list[np.ndarray] = []
        self._sentence_offsets: list[np.ndarray] = [np.zeros(1, np.int64)]
        self._document_offsets: list[np.ndarray] = [np.zeros(1, np.int64)]

    def append(self, ids: np.ndarray, sentence_ends: np.ndarray, document_ends: np.ndarray) -> None:
        self._ids.append(ids)
        self._sentence_offsets.append(sentence_ends)
        self._document_offsets.append(document_ends)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(ids, sentence_offsets, document_offsets)``, each concatenated."""
        return (
            np.concatenate(self._ids),
            np.concatenate(self._sentence_offsets),
            np.concatenate(self._document_offsets),
        )


class DiskSink:
    """Appends the encoder's pieces to the three ``.npy`` files of a directory.

    Each file starts with :data:`NPY_HEADER_BYTES` reserved bytes, filled by :meth:`finish`
    with the real header once the length is known; the offsets files start with their 0.
    """

    def __init__(self, directory: Path) -> None:
        self._files: dict[str, io.BufferedWriter] = {}
        self._lengths = {IDS_FILE: 0, SENTENCE_OFFSETS_FILE: 0, DOCUMENT_OFFSETS_FILE: 0}
        try:
            for name in ARRAY_FILES:
                f = open(directory / name, "wb")  # noqa: SIM115 (closed in finish/close)
                self._files[name] = f
                f.write(bytes(NPY_HEADER_BYTES))
            self._write(SENTENCE_OFFSETS_FILE, np.zeros(1, np.int64))
            self._write(DOCUMENT_OFFSETS_FILE, np.zeros(1, np.int64))
        except BaseException:
            self.close()
            raise

    def _write(self, name: str, arr: np.ndarray) -> None:
        if len(arr):
            self._files[name].write(np.ascontiguousarray(arr).data.cast("B"))
            self._lengths[name] += len(arr)

    def append(self, ids: np.ndarray, sentence_ends: np.ndarray, document_ends: np.ndarray) -> None:
        self._write(IDS_FILE, ids)
        self._write(SENTENCE_OFFSETS_FILE, sentence_ends)
        self._write(DOCUMENT_OFFSETS_FILE, document_ends)

    def finish(self, ids_dtype: np.dtype[Any]) -> None:
        """Write each file's header into its reserved space, sync and close it."""
        for name, f in self._files.items():
            dtype = ids_dtype if name == IDS_FILE else np.dtype(np.int64)
            f.flush()
            f.seek(0)
            f.write(npy_header(dtype, self._lengths[name]))
            f.flush()
            os.fsync(f.fileno())
            f.close()

    def close(self) -> None:
        for f in self._files.values():
            f.close()


def discard(sink: DiskSink, tmp: Path) -> None:
    sink.close()
    shutil.rmtree(tmp, ignore_errors=True)


def check_documents(documents: Any) -> None:
    if isinstance(documents, str | bytes) or not isinstance(documents, Iterable):
        raise TypeError(
            "documents: expected an iterable of documents (each a str or a list of sentence "
            f"strings), got {type(documents).__name__}"
        )


def check_labels(labels: Any, count: int | None) -> None:
    """``labels`` is a sequence of ``str`` (of ``count`` items when ``count`` is known)."""
    if isinstance(labels, str | bytes) or not isinstance(labels, Sequence):
        raise TypeError(
            f"labels: expected a sequence of str (one per document), got {type(labels).__name__}"
        )
    for i, label in enumerate(labels):
        if not isinstance(label, str):
            raise TypeError(f"labels[{i}]: expected str, got {type(label).__name__}")
    if count is not None and len(labels) != count:
        raise ValueError(f"labels: {len(labels)} labels for {count} documents")


def feed_labelled(
    encoder: Encoder,
    documents: Iterable[str | Sequence[str]],
    labels: Sequence[str],
    taken: list[str],
    progress: bool | None,
    *,
    flush: bool,
) -> None:
    """:func:`feed_documents`, appending the label of every document added to ``taken`` (in
    the encoder's document order; the labels of documents left without sentences included).
    ``labels`` must hold one label per document: checked up front when ``documents`` has a
    length, else as they are read (the documents before a missing label stay added)."""
    check_labels(labels, len(documents) if isinstance(documents, Sized) else None)
    first, before = encoder.documents_added, len(taken)

    def paired() -> Iterator[str | Sequence[str]]:
        n = 0
        for doc in documents:
            if n == len(labels):
                raise ValueError(f"labels: {len(labels)} labels for more documents")
            taken.append(labels[n])
            n += 1
            yield doc
        if n != len(labels):
            raise ValueError(f"labels: {len(labels)} labels for {n} documents")

    total = len(documents) if isinstance(documents, Sized) else len(labels)
    try:
        feed_documents(encoder, paired(), progress, flush=flush, total=total)
    finally:  # a bad document was not added: neither is its label
        del taken[before + encoder.documents_added - first :]


def feed_documents(
    encoder: Encoder,
    documents: Iterable[str | Sequence[str]],
    progress: bool | None,
    *,
    flush: bool,
    total: int | None = None,
) -> None:
    """Split/check each document and add it to ``encoder`` (one progress step per document)."""
    if total is None:
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


def check_paths(paths: Any) -> list[Path]:
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


def feed_files(
    encoder: Encoder,
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
