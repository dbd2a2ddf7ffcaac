"""Streaming a corpus to disk: :class:`TokenCorpusWriter` (memory bounded by one batch)."""

from __future__ import annotations

import os
import shutil
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from lmobjectives.corpus._corpus import TokenCorpus
from lmobjectives.corpus._encoder import (
    DEFAULT_BATCH_SIZE,
    DiskSink,
    Encoder,
    check_documents,
    check_paths,
    discard,
    feed_documents,
    feed_files,
    feed_labelled,
)
from lmobjectives.corpus._format import (
    LABELS_FILE,
    TOKENIZER_FILE,
    make_temp_dir,
    publish,
    write_labels,
    write_manifest,
    write_text,
)

__all__ = ["TokenCorpusWriter", "build_on_disk"]


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
        self._labels: list[str] = []  # one per document added, when they come with labels
        self._labelled: bool | None = None  # whether they do (None: nothing added yet)
        self._encoder = Encoder(tokenizer, add_special_tokens, batch_size)  # validates
        self._tmp = make_temp_dir(self._path)
        try:
            self._sink = self._encoder.sink = DiskSink(self._tmp)
            self._encoder.document_label = "document {} (from 0) added to the writer"
        except BaseException:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise
        # Discard the temporary directory if the writer is dropped without close()/abort().
        self._finalizer = weakref.finalize(self, discard, self._sink, self._tmp)

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

    def add_documents(
        self, documents: Iterable[str | Sequence[str]], *, labels: Sequence[str] | None = None
    ) -> None:
        """Add documents, each a ``str`` or a sequence of sentence strings.

        The same rules as :meth:`TokenCorpus.from_texts` (read lazily, split, empty sentences
        and documents dropped). On a bad document (``TypeError`` naming ``documents[i]``) the
        documents before it stay added and the writer stays usable.

        ``labels``: one string per document (see :meth:`TokenCorpus.from_texts`). A corpus is
        labelled throughout or not at all: once documents were added with labels, every later
        call needs them (and :meth:`add_files` is refused), and the other way round.
        """
        self._check_open()
        check_documents(documents)
        self._check_labelled(labels is not None)
        if labels is None:
            feed_documents(self._encoder, documents, self._progress, flush=False)
        else:
            feed_labelled(
                self._encoder, documents, labels, self._labels, self._progress, flush=False
            )

    def _check_labelled(self, labelled: bool) -> None:
        if self._labelled is None or self._encoder.documents_added == 0:
            self._labelled = labelled
        elif self._labelled != labelled:
            raise ValueError(
                "labels: the documents added so far "
                + ("have labels; these need them too" if self._labelled else "have no labels")
            )

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
        self._check_labelled(False)
        files = check_paths(paths)
        feed_files(self._encoder, files, bool(one_sentence_per_line), self._progress, flush=False)

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
            write_text(self._tmp / TOKENIZER_FILE, encoder.tokenizer.to_str())
            if self._labelled:
                labels = self._labels
                write_labels(
                    self._tmp / LABELS_FILE, [labels[i] for i in encoder.kept_documents().tolist()]
                )
            write_manifest(
                self._tmp,
                vocab_size=encoder.vocab_size,
                num_tokens=encoder.num_tokens,
                num_sentences=encoder.num_sentences,
                num_documents=encoder.num_documents,
                ids_dtype=encoder.dtype,
                source=self._source,
                labelled=bool(self._labelled),
            )
            publish(self._tmp, self._path, self._overwrite)
        except BaseException:
            self.abort()
            raise
        self._finalizer.detach()
        self._corpus = TokenCorpus._load_directory(self._path, mmap=True, verify=False)
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


def build_on_disk(
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
