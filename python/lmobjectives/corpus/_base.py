"""What every corpus reads like: :class:`CorpusBase`, shared by
:class:`~lmobjectives.TokenCorpus` (one directory) and
:class:`~lmobjectives.ShardedTokenCorpus` (several, combined by a manifest).

A corpus is token ids plus CSR offsets: ``sentence_offsets`` (in tokens) and
``document_offsets`` (in sentences). Everything here is computed from those three and works
alike whether ``ids`` is one array (memory-mapped or not) or the shards' arrays read as one
(:class:`~lmobjectives.corpus.ShardedIds`).
"""

from __future__ import annotations

import operator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CorpusBase"]


def _describe(x: np.ndarray) -> dict[str, float]:
    if len(x) == 0:
        return {"min": 0, "mean": 0.0, "median": 0.0, "max": 0}
    return {
        "min": int(x.min()),
        "mean": float(x.mean()),
        "median": float(np.median(x)),
        "max": int(x.max()),
    }


class CorpusBase:
    """The accessors every corpus has (counts, sentences, documents, statistics), shared by
    :class:`~lmobjectives.TokenCorpus` and :class:`~lmobjectives.ShardedTokenCorpus`; use it to
    annotate code that takes either kind (what :meth:`TokenCorpus.load` returns). Subclasses set
    the attributes below.

    Attributes:
        ids: 1-D token ids, indexed by global token position.
        sentence_offsets: int64, ``num_sentences + 1``; sentence ``s`` is
            ``ids[sentence_offsets[s]:sentence_offsets[s + 1]]``.
        document_offsets: int64, ``num_documents + 1``, in units of sentences; document ``d``
            is sentences ``document_offsets[d]:document_offsets[d + 1]``.
        vocab_size: the tokenizer's vocabulary size (every id is below it).
        source: a free-text description of where the text came from.
        document_labels: one string per document, or ``None``.
    """

    ids: Any
    sentence_offsets: np.ndarray
    document_offsets: np.ndarray
    vocab_size: int
    source: str
    document_labels: tuple[str, ...] | None
    _path: Path | None

    @property
    def path(self) -> Path | None:
        """The directory this corpus was loaded from or saved to, or ``None`` if built in
        memory."""
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

    def _check_range(self, start: Any, stop: Any) -> None:
        """``start:stop`` is a non-empty range of documents (for :meth:`documents`)."""
        n = self.num_documents
        for name, v in (("start", start), ("stop", stop)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
        if not 0 <= start < stop <= n:
            raise ValueError(
                f"start, stop: need 0 <= start < stop <= {n} (the number of documents), got "
                f"{start}, {stop}"
            )

    def sentence(self, s: int) -> np.ndarray:
        """Token ids of sentence ``s`` (a view into :attr:`ids`; negative indices count back)."""
        s = self._index(s, self.num_sentences, "sentence")
        return self.ids[int(self.sentence_offsets[s]) : int(self.sentence_offsets[s + 1])]

    def document(self, d: int) -> np.ndarray:
        """Token ids of document ``d``, all its sentences back to back (a view into :attr:`ids`)."""
        d = self._index(d, self.num_documents, "document")
        first, last = self.document_offsets[d], self.document_offsets[d + 1]
        return self.ids[int(self.sentence_offsets[first]) : int(self.sentence_offsets[last])]

    def document_sentences(self, d: int) -> list[np.ndarray]:
        """The sentences of document ``d``, each a view into :attr:`ids`."""
        d = self._index(d, self.num_documents, "document")
        first, last = int(self.document_offsets[d]), int(self.document_offsets[d + 1])
        offsets = np.asarray(self.sentence_offsets[first : last + 1]).tolist()
        return [self.ids[offsets[i] : offsets[i + 1]] for i in range(last - first)]

    def stats(self) -> dict[str, Any]:
        """Summary numbers: counts, dtype, bytes and sentence/document length statistics."""
        sent_lens = np.diff(self.sentence_offsets)
        doc_sents = np.diff(self.document_offsets)
        doc_tokens = np.diff(self.sentence_offsets[self.document_offsets])
        return {
            "num_documents": self.num_documents,
            "num_sentences": self.num_sentences,
            "num_tokens": self.num_tokens,
            "vocab_size": self.vocab_size,
            "ids_dtype": str(self.ids.dtype),
            "nbytes": int(
                self.ids.nbytes + self.sentence_offsets.nbytes + self.document_offsets.nbytes
            ),
            "tokens_per_sentence": _describe(sent_lens),
            "sentences_per_document": _describe(doc_sents),
            "tokens_per_document": _describe(doc_tokens),
            "source": self.source,
            "path": None if self._path is None else str(self._path),
        }
