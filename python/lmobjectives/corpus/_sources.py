"""Corpora from where the text is: Hugging Face datasets (map-style or streaming), Parquet, Arrow
IPC and JSON Lines files, read in batches of rows and fed to the ordinary encoder/writer path.

The rows are never held whole: a batch of ``rows_per_batch`` rows is read, split into sentences
(in ``num_proc`` worker processes when asked; in order, so the result does not depend on
``num_proc``), tokenized with ``tokenizers`` on all cores and, with ``out=``, appended to the
corpus files before the next batches are read (at most ``2 * num_proc`` batches are in flight).
``datasets`` and ``pyarrow`` are optional (imported through :func:`lmobjectives._optional.require`).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any, NamedTuple

from lmobjectives._optional import require
from lmobjectives._progress import Progress
from lmobjectives._sentences import split_sentences
from lmobjectives.corpus._encoder import Encoder, check_paths, feed_documents, feed_labelled

__all__ = [
    "DEFAULT_ROWS_PER_BATCH",
    "RowBatch",
    "arrow_batches",
    "build_from_rows",
    "dataset_batches",
    "jsonl_batches",
    "parquet_batches",
]

#: Rows read (and, with ``num_proc > 1``, sent to a worker) at a time.
DEFAULT_ROWS_PER_BATCH = 1000


class RowBatch(NamedTuple):
    """Consecutive rows of a source: their texts, their labels (or ``None``), and how errors
    name row ``first + i`` (``where.format(first + i)``)."""

    texts: list[Any]
    labels: list[Any] | None
    where: str
    first: int


def split_rows(texts: list[Any], where: str, first: int, column: str) -> list[list[str]]:
    """Each row's document as a list of sentences: a ``str`` is split with
    :func:`~lmobjectives._sentences.split_sentences`, a list of ``str`` is taken as the
    sentences. Runs in the worker processes when ``num_proc > 1``."""
    out = []
    for i, text in enumerate(texts):
        if isinstance(text, str):
            out.append(split_sentences(text))
        elif isinstance(text, list | tuple) and all(isinstance(s, str) for s in text):
            out.append(list(text))
        else:
            raise TypeError(
                f"{where.format(first + i)}: column {column!r} must hold a str or a list of str, "
                f"got {type(text).__name__}"
            )
    return out


def check_labels_of(
    labels: list[Any], where: str, first: int, names: Sequence[str] | None, column: str
) -> list[str]:
    """The batch's labels as strings: ``str`` as is, an ``int`` as its class name (a
    ``datasets.ClassLabel`` column) or its decimal digits; anything else is a TypeError."""
    out = []
    for i, label in enumerate(labels):
        if isinstance(label, str):
            out.append(label)
        elif isinstance(label, int) and not isinstance(label, bool):
            if names is not None and 0 <= label < len(names):
                out.append(names[label])
            else:
                out.append(str(label))
        else:
            raise TypeError(
                f"{where.format(first + i)}: label_column {column!r} must hold a str or an int, "
                f"got {type(label).__name__}"
            )
    return out


def _split_stream(
    batches: Iterable[RowBatch], column: str, num_proc: int
) -> Iterator[tuple[list[list[str]], RowBatch]]:
    """Each batch's documents (split into sentences), in order; with ``num_proc > 1`` split in
    that many worker processes, at most ``2 * num_proc`` batches in flight."""
    if num_proc == 1:
        for batch in batches:
            yield split_rows(batch.texts, batch.where, batch.first, column), batch
        return
    pool = ProcessPoolExecutor(num_proc, mp_context=get_context("spawn"))
    pending: deque[tuple[Future[list[list[str]]], RowBatch]] = deque()
    try:
        for batch in batches:
            pending.append(
                (pool.submit(split_rows, batch.texts, batch.where, batch.first, column), batch)
            )
            if len(pending) >= 2 * num_proc:
                future, done = pending.popleft()
                yield future.result(), done
        while pending:
            future, done = pending.popleft()
            yield future.result(), done
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def check_num_proc(num_proc: Any) -> int:
    if num_proc is None:
        return 1
    if isinstance(num_proc, bool) or not isinstance(num_proc, int) or num_proc < 1:
        raise ValueError(f"num_proc: expected a positive int or None, got {num_proc!r}")
    return num_proc


def check_rows_per_batch(rows: Any) -> int:
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ValueError(f"rows_per_batch: expected a positive int, got {rows!r}")
    return rows


def build_from_rows(
    batches: Iterable[RowBatch],
    build: Any,
    *,
    column: str,
    label_column: str | None,
    label_names: Sequence[str] | None,
    num_proc: int,
    total: int | None,
    empty_message: str,
) -> Any:
    """The corpus of the documents in ``batches`` through the ordinary build (``build`` is a
    ``_Build``: in memory, or streamed to ``build.out`` by a ``TokenCorpusWriter``)."""
    from lmobjectives.corpus._corpus import _build

    progress = build.progress
    quiet = build._replace(progress=False)  # one bar over the rows, not one per batch

    def documents() -> Iterator[tuple[list[list[str]], list[str] | None]]:
        with Progress(total, "tokenize", unit="row", enabled=progress) as bar:
            for docs, batch in _split_stream(batches, column, num_proc):
                labels = None
                if batch.labels is not None:
                    assert label_column is not None
                    labels = check_labels_of(
                        batch.labels, batch.where, batch.first, label_names, label_column
                    )
                yield docs, labels
                bar.update(len(docs))

    taken: list[str] = []

    def to_encoder(encoder: Encoder) -> None:
        for docs, labels in documents():
            if labels is None:
                feed_documents(encoder, docs, False, flush=False)
            else:
                feed_labelled(encoder, docs, labels, taken, False, flush=False)
        encoder.flush()

    def to_writer(writer: Any) -> None:
        for docs, labels in documents():
            writer.add_documents(docs, labels=labels)

    return _build(
        quiet, to_writer, to_encoder, empty_message, taken if label_column is not None else None
    )


# -- sources -----------------------------------------------------------------------------------


def pyarrow_module(name: str, purpose: str) -> Any:
    """``pyarrow`` (or one of its modules), through :func:`~lmobjectives._optional.require`: a
    missing one names the ``datasets`` extra (``pip install 'lmobjectives[datasets]'``)."""
    return require(name, purpose)


def _columns(column: str, label_column: str | None) -> list[str]:
    if not isinstance(column, str):
        raise TypeError(f"column: expected a str, got {type(column).__name__}")
    if label_column is not None and not isinstance(label_column, str):
        raise TypeError(f"label_column: expected a str or None, got {type(label_column).__name__}")
    return [column] if label_column is None else [column, label_column]


def _missing(what: str, columns: list[str], have: Iterable[str] | None) -> None:
    if have is None:
        return
    have = list(have)
    for arg, name in zip(("column", "label_column"), columns, strict=False):
        if name not in have:
            raise ValueError(f"{arg}: {what} has no column {name!r} (it has {have})")


def dataset_batches(
    dataset: Any, column: str, label_column: str | None, rows: int
) -> tuple[Iterator[RowBatch], Sequence[str] | None, int | None]:
    """Batches of a ``datasets.Dataset`` / ``IterableDataset`` (read with ``.iter``, only the
    needed columns) or of any iterable of mappings; plus the label column's class names (a
    ``ClassLabel``) and the number of rows when known."""
    columns = _columns(column, label_column)
    names: Sequence[str] | None = None
    features = getattr(dataset, "features", None)
    if label_column is not None and isinstance(features, Mapping):
        feature = features.get(label_column)
        names = getattr(feature, "names", None)
    if hasattr(dataset, "select_columns") and hasattr(dataset, "iter"):
        _missing("the dataset", columns, getattr(dataset, "column_names", None))
        selected = dataset.select_columns(columns)
        try:
            total = len(dataset)
        except TypeError:  # (an IterableDataset has no length)
            total = None

        def from_dataset() -> Iterator[RowBatch]:
            first = 0
            for batch in selected.iter(batch_size=rows):
                texts = list(batch[column])
                labels = list(batch[label_column]) if label_column is not None else None
                yield RowBatch(texts, labels, "dataset row {}", first)
                first += len(texts)

        return from_dataset(), names, total
    if isinstance(dataset, str | bytes | Mapping) or not isinstance(dataset, Iterable):
        raise TypeError(
            "dataset: expected a datasets.Dataset, a datasets.IterableDataset or an iterable of "
            f"mappings (rows), got {type(dataset).__name__}"
        )

    def from_rows() -> Iterator[RowBatch]:
        texts: list[Any] = []
        labels: list[Any] = []
        first = 0
        for i, row in enumerate(dataset):
            if not isinstance(row, Mapping):
                raise TypeError(f"dataset row {i}: expected a mapping, got {type(row).__name__}")
            for arg, name in zip(("column", "label_column"), columns, strict=False):
                if name not in row:
                    raise ValueError(f"{arg}: dataset row {i} has no column {name!r}")
            texts.append(row[column])
            if label_column is not None:
                labels.append(row[label_column])
            if len(texts) == rows:
                yield RowBatch(texts, labels if label_column else None, "dataset row {}", first)
                first += len(texts)
                texts, labels = [], []
        if texts:
            yield RowBatch(texts, labels if label_column else None, "dataset row {}", first)

    total = len(dataset) if isinstance(dataset, Sequence) else None
    return from_rows(), names, total


def _table_batches(
    record_batches: Callable[[Path], Iterator[Any]],
    files: list[Path],
    column: str,
    label_column: str | None,
) -> Iterator[RowBatch]:
    columns = _columns(column, label_column)
    for path in files:
        first = 0
        for rb in record_batches(path):
            _missing(str(path), columns, rb.schema.names)
            texts = rb.column(column).to_pylist()
            labels = rb.column(label_column).to_pylist() if label_column is not None else None
            yield RowBatch(texts, labels, f"{path}: row {{}}", first)
            first += len(texts)


def parquet_batches(
    paths: Any, column: str, label_column: str | None, rows: int
) -> tuple[Iterator[RowBatch], list[Path]]:
    """Batches of Parquet files (``pyarrow.parquet.ParquetFile.iter_batches``, only the needed
    columns)."""
    files = check_paths(paths)
    parquet = pyarrow_module("pyarrow.parquet", "reading Parquet files")
    columns = _columns(column, label_column)

    def batches(path: Path) -> Iterator[Any]:
        try:
            pf = parquet.ParquetFile(path)
        except Exception as exc:  # pyarrow raises ArrowInvalid (a ValueError) or OSError
            raise ValueError(f"{path}: not a readable Parquet file ({exc})") from exc
        _missing(str(path), columns, pf.schema_arrow.names)
        yield from pf.iter_batches(batch_size=rows, columns=columns)

    return _table_batches(batches, files, column, label_column), files


def arrow_batches(
    paths: Any, column: str, label_column: str | None, rows: int
) -> tuple[Iterator[RowBatch], list[Path]]:
    """Batches of Arrow IPC files, in the file (random access) or the stream format (as
    ``datasets`` caches tables), memory-mapped and sliced into ``rows`` rows."""
    files = check_paths(paths)
    pa = pyarrow_module("pyarrow", "reading Arrow files")

    def batches(path: Path) -> Iterator[Any]:
        source = pa.memory_map(str(path), "r")
        try:
            try:
                reader = pa.ipc.open_file(source)
                record_batches: Iterable[Any] = (
                    reader.get_batch(i) for i in range(reader.num_record_batches)
                )
            except pa.ArrowInvalid:
                source.seek(0)
                try:
                    record_batches = pa.ipc.open_stream(source)
                except pa.ArrowInvalid as exc:
                    raise ValueError(f"{path}: not an Arrow IPC file or stream ({exc})") from exc
            for rb in record_batches:
                for start in range(0, rb.num_rows, rows):
                    yield rb.slice(start, rows)
        finally:
            source.close()

    return _table_batches(batches, files, column, label_column), files


def jsonl_batches(
    paths: Any, column: str, label_column: str | None, rows: int
) -> tuple[Iterator[RowBatch], list[Path]]:
    """Batches of JSON Lines files (one JSON object per line; blank lines skipped), read line by
    line."""
    files = check_paths(paths)
    columns = _columns(column, label_column)

    def batches() -> Iterator[RowBatch]:
        for path in files:
            texts: list[Any] = []
            labels: list[Any] = []
            first = 0
            with open(path, "rb") as f:
                for lineno, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                        raise ValueError(f"{path}: line {lineno}: not valid JSON ({exc})") from None
                    if not isinstance(row, dict):
                        raise ValueError(f"{path}: line {lineno}: expected a JSON object")
                    for arg, name in zip(("column", "label_column"), columns, strict=False):
                        if name not in row:
                            raise ValueError(f"{arg}: {path}: line {lineno} has no key {name!r}")
                    texts.append(row[column])
                    if label_column is not None:
                        labels.append(row[label_column])
                    if len(texts) == rows:
                        yield RowBatch(
                            texts, labels if label_column else None, f"{path}: row {{}}", first
                        )
                        first += len(texts)
                        texts, labels = [], []
            if texts:
                yield RowBatch(texts, labels if label_column else None, f"{path}: row {{}}", first)

    return batches(), files


#: The reader of each file kind of :meth:`TokenCorpus.from_parquet` / ``from_arrow`` /
#: ``from_jsonl``: ``(paths, column, label_column, rows) -> (row batches, files)``.
TABLE_READERS: dict[str, Callable[..., tuple[Iterator[RowBatch], list[Path]]]] = {
    "parquet": parquet_batches,
    "arrow": arrow_batches,
    "jsonl": jsonl_batches,
}


def describe(kind: str, files: list[Path]) -> str:
    names = ", ".join(str(f) for f in files[:3])
    return f"{kind}: {names}" + (f" and {len(files) - 3} more" if len(files) > 3 else "")
