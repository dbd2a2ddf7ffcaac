"""Sharded corpora: several :class:`~lmobjectives.TokenCorpus` directories read as one corpus.

A sharded corpus is a list of ordinary corpora (the shards), each built on its own — by one job
of a launcher, on any machine — plus a small manifest that lists them in order with their
fingerprints (the BLAKE2b-256 checksums their own manifests record). Combining copies no token
data: the shards' ids stay memory-mapped where they are; only the offsets are concatenated (and
rebased) in memory, so document ``d`` and sentence ``s`` mean the same as in one directory holding
the same documents in the same order, and every dataset view gives the same samples.
"""

from __future__ import annotations

import json
import operator
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lmobjectives.corpus._format import (
    CHECKED_FILES,
    CHECKSUM_KEY,
    MANIFEST_FILE,
    file_digest,
    ids_dtype,
    make_temp_dir,
    publish,
    read_manifest,
    write_text,
)

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from lmobjectives.corpus._corpus import TokenCorpus

__all__ = ["SHARDED_FORMAT", "ShardError", "ShardedIds", "ShardedTokenCorpus"]

#: ``manifest.json`` "format" value of a sharded corpus.
SHARDED_FORMAT = "lmobjectives.ShardedTokenCorpus"
#: ``manifest.json`` "format_version" of a sharded corpus this code writes and reads.
SHARDED_FORMAT_VERSION = 1


class ShardError(ValueError):
    """A shard of a sharded corpus is missing, damaged, or does not fit the others.

    Attributes:
        shard: the shard's position in the list (from 0).
        path: the shard's directory, or ``None`` for a shard built in memory.
    """

    def __init__(self, shard: int, path: Path | None, what: str) -> None:
        self.shard = shard
        self.path = path
        self.what = what
        where = f" ({path})" if path is not None else ""
        super().__init__(f"shards[{shard}]{where}: {what}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.shard, self.path, self.what))


class ShardedIds:
    """The token ids of a sharded corpus: a read-only 1-D sequence over the shards' arrays.

    Indexing with an int, a slice or an integer array uses global token positions, like the
    ``ids`` of one corpus; a slice within one shard is a view (no copy), anything else is
    gathered into a new array. ``np.asarray`` of it copies every token into memory, which the
    dataset views never do.
    """

    def __init__(self, arrays: Sequence[np.ndarray]) -> None:
        self._arrays = list(arrays)
        self.dtype = self._arrays[0].dtype
        lengths = np.array([len(a) for a in self._arrays], dtype=np.int64)
        #: Where each shard's tokens start; ``starts[-1]`` is the total.
        self.starts = np.concatenate([np.zeros(1, np.int64), np.cumsum(lengths)])
        self.ndim = 1
        self.shape = (int(self.starts[-1]),)
        self.size = int(self.starts[-1])
        self.nbytes = self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.size

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.concatenate([np.asarray(a) for a in self._arrays])
        return out if dtype is None else out.astype(dtype)

    def _slice(self, lo: int, hi: int) -> np.ndarray:
        if hi <= lo:
            return np.zeros(0, self.dtype)
        first = int(np.searchsorted(self.starts, lo, side="right")) - 1
        last = int(np.searchsorted(self.starts, hi, side="left")) - 1
        base = int(self.starts[first])
        if first == last:  # within one shard: a view
            return self._arrays[first][lo - base : hi - base]
        pieces = []
        for s in range(first, last + 1):
            a, b = max(lo, int(self.starts[s])), min(hi, int(self.starts[s + 1]))
            pieces.append(
                np.asarray(self._arrays[s][a - int(self.starts[s]) : b - int(self.starts[s])])
            )
        return np.concatenate(pieces)

    def take(self, positions: Any) -> np.ndarray:
        """The ids at global ``positions`` (an integer array of any shape; no negative ones)."""
        pos = np.asarray(positions, dtype=np.int64)
        out = np.empty(pos.shape, dtype=self.dtype)
        if pos.size == 0:
            return out
        if pos.min() < 0 or pos.max() >= self.size:
            raise IndexError(f"token position out of range (there are {self.size})")
        shard = np.searchsorted(self.starts, pos, side="right") - 1
        for s in np.unique(shard).tolist():
            where = shard == s
            out[where] = np.asarray(self._arrays[s])[pos[where] - self.starts[s]]
        return out

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            lo, hi, step = key.indices(self.size)
            if step == 1:
                return self._slice(lo, hi)
            return self.take(np.arange(lo, hi, step))
        if isinstance(key, np.ndarray | list):
            pos = np.asarray(key)
            if pos.dtype == bool:
                raise TypeError("ids: boolean masks are not supported on a sharded corpus")
            pos = pos.astype(np.int64)
            return self.take(np.where(pos < 0, pos + self.size, pos))
        i = operator.index(key)
        if i < 0:
            i += self.size
        if not 0 <= i < self.size:
            raise IndexError(f"token index out of range (there are {self.size})")
        s = int(np.searchsorted(self.starts, i, side="right")) - 1
        return self._arrays[s][i - int(self.starts[s])]

    def gather_ranges(self, ranges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The tokens of the global ``[lo, hi)`` ``ranges`` (``[n, 2]``) laid back to back in a
        new array, and the ranges rebased into it (uint64 ``[n, 2]``). A range inside one shard
        (as every range of a document is) is one slice of its memory map."""
        r = np.asarray(ranges, dtype=np.int64).reshape(-1, 2)
        lengths = np.maximum(r[:, 1] - r[:, 0], 0)
        ends = np.cumsum(lengths)
        local = np.stack([ends - lengths, ends], axis=1).astype(np.uint64)
        shard = np.searchsorted(self.starts, r[:, 0], side="right") - 1
        pieces = []
        for s, lo, hi in zip(shard.tolist(), r[:, 0].tolist(), r[:, 1].tolist(), strict=True):
            if hi <= lo:
                continue
            if 0 <= s < len(self._arrays) and hi <= self.starts[s + 1] and lo >= 0:
                base = int(self.starts[s])
                pieces.append(self._arrays[s][lo - base : hi - base])
            elif lo < 0 or hi > self.size:
                raise IndexError(f"token range [{lo}, {hi}) out of range (there are {self.size})")
            else:  # across shards
                pieces.append(self._slice(lo, hi))
        buffer = np.concatenate(pieces) if pieces else np.zeros(0, self.dtype)
        return buffer, local

    def __repr__(self) -> str:
        return f"ShardedIds({len(self._arrays)} shards, {self.size:,} tokens, {self.dtype})"


def pair_rows(
    ids: ShardedIds,
    index: dict[str, np.ndarray],
    items: Any,
    *,
    cls_token_id: int,
    sep_token_id: int,
    rank: int,
    world: int,
    epoch: int,
) -> tuple[np.ndarray, ...]:
    """``_core.pair_rows`` for a sharded corpus: the batch's A and B token ranges are gathered
    from the shards into one small array, and the rows are built from it by the same kernel;
    items, their errors and their sample keys are those of the unsharded corpus."""
    from lmobjectives import _core

    label = index["label"]
    total = len(label)
    n = max(0, (total - rank + world - 1) // world)
    given = np.asarray(items, dtype=np.int64).reshape(-1)
    local = np.where(given < 0, given + n, given)
    bad = np.flatnonzero((local < 0) | (local >= n))
    if len(bad):
        k = int(bad[0])
        raise IndexError(f"indices[{k}] = {int(given[k])} is out of range for {n} items")
    instances = local * world + rank
    both = np.concatenate([index["a"][instances], index["b"][instances]])
    buffer, local_ranges = ids.gather_ranges(both)
    m = len(instances)
    rows = _core.pair_rows(
        buffer,
        np.ascontiguousarray(local_ranges[:m]),
        np.ascontiguousarray(local_ranges[m:]),
        np.ascontiguousarray(label[instances]),
        list(range(m)),
        cls_token_id=cls_token_id,
        sep_token_id=sep_token_id,
    )
    keys = (np.uint64(epoch) << np.uint64(40)) | instances.astype(np.uint64)
    return (*rows[:4], keys)


def _shard_path(corpus: TokenCorpus) -> Path | None:
    return corpus.path


def _open_shard(i: int, shard: Any, verify: bool) -> TokenCorpus:
    """Shard ``i``: a :class:`TokenCorpus` as given, or loaded from a directory path."""
    from lmobjectives.corpus._corpus import TokenCorpus

    if isinstance(shard, TokenCorpus):
        return shard
    if not isinstance(shard, str | os.PathLike):
        raise TypeError(
            f"shards[{i}]: expected a TokenCorpus or a corpus directory, got {type(shard).__name__}"
        )
    path = Path(shard)
    if not path.is_dir():
        raise ShardError(i, path, "missing (no corpus directory there)")
    try:
        return TokenCorpus.load(path, verify=verify)
    except (ValueError, OSError) as exc:
        raise ShardError(i, path, f"not a valid corpus: {exc}") from exc


def _tokenizer_key(corpus: TokenCorpus) -> bytes:
    """What two shards must share: the bytes of the tokenizer they were built with."""
    tok_path = corpus._tokenizer_path
    if corpus._tokenizer is None and tok_path is not None:
        return tok_path.read_bytes()
    return corpus.tokenizer.to_str().encode()


def _check_vocabularies(shards: Sequence[TokenCorpus]) -> None:
    """Every shard has the first shard's vocabulary; a :class:`ShardError` names the first one
    that does not (its vocabulary size, or a token whose id differs)."""
    first = shards[0]
    key = _tokenizer_key(first)
    vocab: dict[str, int] | None = None
    for i, shard in enumerate(shards[1:], 1):
        if shard.vocab_size != first.vocab_size:
            raise ShardError(
                i,
                _shard_path(shard),
                f"vocabulary of {shard.vocab_size} tokens, but shards[0] has "
                f"{first.vocab_size}: the shards were built with different tokenizers",
            )
        if shard.ids.dtype != first.ids.dtype:  # (follows from vocab_size; kept as a guard)
            raise ShardError(i, _shard_path(shard), f"ids dtype {shard.ids.dtype} differs")
        if _tokenizer_key(shard) == key:
            continue
        if vocab is None:
            vocab = first.tokenizer.get_vocab(with_added_tokens=True)
        other = shard.tokenizer.get_vocab(with_added_tokens=True)
        if other != vocab:
            token = next(
                (t for t in sorted(vocab) if other.get(t) != vocab[t]),
                next(iter(sorted(set(other) - set(vocab))), "?"),
            )
            raise ShardError(
                i,
                _shard_path(shard),
                f"vocabulary differs from shards[0]'s (token {token!r} has id "
                f"{other.get(token)} here and {vocab.get(token)} in shards[0]): the shards "
                "were built with different tokenizers",
            )


class ShardedTokenCorpus:
    """Several corpora (shards) read as one, in order, with global document, sentence and token
    numbers; the token data stays where each shard is (memory-mapped), nothing is copied.

    Make one with :meth:`TokenCorpus.combine` (from :class:`~lmobjectives.TokenCorpus` objects
    or corpus directories), save its manifest with :meth:`save` and open it again with
    :meth:`load`. It reads like a :class:`~lmobjectives.TokenCorpus` — ``ids`` (a
    :class:`ShardedIds`), ``sentence_offsets`` and ``document_offsets`` (global ``int64``
    arrays, in memory), ``vocab_size``, ``tokenizer``, ``document_labels``, :meth:`sentence`,
    :meth:`document`, :meth:`documents`, :meth:`token_counts` — so every dataset view
    (:class:`~lmobjectives.SentencePairDataset`, :class:`~lmobjectives.CorpusChunks`,
    :func:`~lmobjectives.neighbour_pairs`) works over it exactly as over one directory holding
    the same documents: the same samples, batches and sample keys for the same seed.

    All shards must share one vocabulary (the same tokenizer): a shard that differs raises
    :class:`ShardError` naming it. So do all shards or none carry document labels.

    Attributes:
        shards: the shards, a tuple of :class:`~lmobjectives.TokenCorpus`.
        ids, sentence_offsets, document_offsets, vocab_size, source, document_labels: as on a
            :class:`~lmobjectives.TokenCorpus`.
    """

    def __init__(
        self, shards: Sequence[TokenCorpus], *, source: str = "", _path: Path | None = None
    ) -> None:
        from lmobjectives.corpus._corpus import TokenCorpus

        shards = tuple(shards)
        if not shards:
            raise ValueError("shards: no shards given")
        for i, shard in enumerate(shards):
            if not isinstance(shard, TokenCorpus):
                raise TypeError(f"shards[{i}]: expected a TokenCorpus, got {type(shard).__name__}")
        _check_vocabularies(shards)
        labelled = [s.document_labels is not None for s in shards]
        if any(labelled) and not all(labelled):
            i = labelled.index(not labelled[0])
            raise ShardError(
                i,
                _shard_path(shards[i]),
                (
                    "has no document labels but shards[0] has"
                    if labelled[0]
                    else "has document labels but shards[0] has none"
                ),
            )
        self.shards = shards
        self.vocab_size = shards[0].vocab_size
        self.source = source
        self._path = _path
        self.ids = ShardedIds([s.ids for s in shards])
        token_base = self.ids.starts
        sentences = np.array([s.num_sentences for s in shards], dtype=np.int64)
        sentence_base = np.concatenate([np.zeros(1, np.int64), np.cumsum(sentences)])
        self.sentence_offsets = np.empty(int(sentence_base[-1]) + 1, dtype=np.int64)
        docs = np.array([s.num_documents for s in shards], dtype=np.int64)
        doc_base = np.concatenate([np.zeros(1, np.int64), np.cumsum(docs)])
        self.document_offsets = np.empty(int(doc_base[-1]) + 1, dtype=np.int64)
        for i, s in enumerate(shards):  # rebased copies of the offsets (never the ids)
            lo, hi = int(sentence_base[i]), int(sentence_base[i + 1])
            np.add(s.sentence_offsets[:-1], token_base[i], out=self.sentence_offsets[lo:hi])
            lo, hi = int(doc_base[i]), int(doc_base[i + 1])
            np.add(s.document_offsets[:-1], sentence_base[i], out=self.document_offsets[lo:hi])
        self.sentence_offsets[-1] = token_base[-1]
        self.document_offsets[-1] = sentence_base[-1]
        self._sentence_base = sentence_base
        self._doc_base = doc_base
        self.document_labels: tuple[str, ...] | None = (
            tuple(label for s in shards for label in (s.document_labels or ()))
            if labelled[0]
            else None
        )
        self._token_counts: np.ndarray | None = None

    # ------------------------------------------------------------------ like a TokenCorpus

    @property
    def tokenizer(self) -> Tokenizer:
        """The shards' tokenizer (that of the first shard; all share its vocabulary)."""
        return self.shards[0].tokenizer

    @property
    def path(self) -> Path | None:
        """The directory of the manifest this corpus was loaded from or saved to, or ``None``."""
        return self._path

    @property
    def num_tokens(self) -> int:
        return len(self.ids)

    @property
    def num_sentences(self) -> int:
        return len(self.sentence_offsets) - 1

    @property
    def num_documents(self) -> int:
        return len(self.document_offsets) - 1

    def __len__(self) -> int:
        """The number of documents."""
        return self.num_documents

    def _global(self, i: Any, n: int, what: str) -> int:
        i = operator.index(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"{what} index out of range (there are {n})")
        return i

    def sentence(self, s: int) -> np.ndarray:
        """Token ids of sentence ``s`` (a view into its shard's ids)."""
        s = self._global(s, self.num_sentences, "sentence")
        return self.ids[int(self.sentence_offsets[s]) : int(self.sentence_offsets[s + 1])]

    def document(self, d: int) -> np.ndarray:
        """Token ids of document ``d`` (a view into its shard's ids)."""
        d = self._global(d, self.num_documents, "document")
        first, last = self.document_offsets[d], self.document_offsets[d + 1]
        return self.ids[int(self.sentence_offsets[first]) : int(self.sentence_offsets[last])]

    def document_sentences(self, d: int) -> list[np.ndarray]:
        """The sentences of document ``d``, each a view into its shard's ids."""
        d = self._global(d, self.num_documents, "document")
        first, last = int(self.document_offsets[d]), int(self.document_offsets[d + 1])
        return [self.sentence(s) for s in range(first, last)]

    def documents(self, start: int, stop: int) -> ShardedTokenCorpus:
        """Documents ``start:stop`` as a sharded corpus of their own (each shard's part is
        :meth:`TokenCorpus.documents` of it: zero-copy, pickled by path and range)."""
        n = self.num_documents
        for name, v in (("start", start), ("stop", stop)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
        if not 0 <= start < stop <= n:
            raise ValueError(
                f"start, stop: need 0 <= start < stop <= {n} (the number of documents), got "
                f"{start}, {stop}"
            )
        parts = []
        for i, shard in enumerate(self.shards):
            lo = max(start, int(self._doc_base[i])) - int(self._doc_base[i])
            hi = min(stop, int(self._doc_base[i + 1])) - int(self._doc_base[i])
            if lo < hi:
                parts.append(
                    shard if (lo, hi) == (0, shard.num_documents) else shard.documents(lo, hi)
                )
        return ShardedTokenCorpus(parts, source=self.source)

    def token_counts(self) -> np.ndarray:
        """How often each id occurs (the sum of the shards' :meth:`TokenCorpus.token_counts`,
        each cached in its shard's directory); read-only ``int64``, :attr:`vocab_size` long."""
        if self._token_counts is None:
            counts = np.zeros(self.vocab_size, dtype=np.int64)
            for shard in self.shards:
                counts += shard.token_counts()
            counts.setflags(write=False)
            self._token_counts = counts
        return self._token_counts

    def stats(self) -> dict[str, Any]:
        """Summary numbers: counts, dtype, bytes and length statistics (as
        :meth:`TokenCorpus.stats`), plus the number of shards."""
        sent_lens = np.diff(self.sentence_offsets)
        doc_sents = np.diff(self.document_offsets)
        return {
            "shards": len(self.shards),
            "documents": self.num_documents,
            "sentences": self.num_sentences,
            "tokens": self.num_tokens,
            "vocab_size": self.vocab_size,
            "ids_dtype": str(self.ids.dtype),
            "ids_bytes": self.ids.nbytes,
            "tokens_per_sentence_mean": float(sent_lens.mean()) if len(sent_lens) else 0.0,
            "sentences_per_document_mean": float(doc_sents.mean()) if len(doc_sents) else 0.0,
        }

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the manifest (no token data) to the directory ``path``; returns the path.

        ``manifest.json`` lists every shard's directory — relative to ``path`` when it can be,
        so a tree of manifest and shards can be moved together — with its counts and its
        fingerprint (the checksums its own manifest records). Every shard must be a whole
        corpus opened from a directory (:meth:`TokenCorpus.load` or a writer), not one built
        in memory or a :meth:`documents` range. Written atomically, like
        :meth:`TokenCorpus.save`.

        Raises:
            ShardError: a shard is not a whole corpus on disk.
            FileExistsError: ``path`` exists and ``overwrite`` is false.
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"path: {path} already exists (pass overwrite=True)")
        entries = []
        for i, shard in enumerate(self.shards):
            if shard.path is None:
                raise ShardError(
                    i,
                    None,
                    "not a whole corpus on disk (save it, or open it with "
                    "TokenCorpus.load, before saving a sharded corpus that lists it)",
                )
            entries.append(_shard_entry(i, shard, path))
        manifest = {
            "format": SHARDED_FORMAT,
            "format_version": SHARDED_FORMAT_VERSION,
            "vocab_size": self.vocab_size,
            "ids_dtype": str(self.ids.dtype),
            "num_tokens": self.num_tokens,
            "num_sentences": self.num_sentences,
            "num_documents": self.num_documents,
            "labelled": self.document_labels is not None,
            "source": self.source,
            "shards": entries,
        }
        tmp = make_temp_dir(path)
        try:
            write_text(tmp / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
            publish(tmp, path, overwrite)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        self._path = path
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, verify: bool = True) -> ShardedTokenCorpus:
        """Open a sharded corpus saved with :meth:`save`: every shard is opened with
        :meth:`TokenCorpus.load` (memory-mapped; with ``verify``, its checksums are checked)
        and its fingerprint compared with the manifest's.

        Raises:
            FileNotFoundError: ``path`` is not a directory.
            ValueError: the manifest is missing or invalid (the message names it).
            ShardError: a shard is missing, invalid, not the one the manifest recorded
                (rebuilt or replaced), or its vocabulary differs; the message names it.
        """
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"path: no sharded corpus directory at {path}")
        manifest = _read_sharded_manifest(path / MANIFEST_FILE)
        shards = []
        for i, entry in enumerate(manifest["shards"]):
            shard_dir = Path(entry["path"])
            if not shard_dir.is_absolute():
                shard_dir = path / shard_dir
            shard = _open_shard(i, shard_dir, verify)
            recorded = {k: entry[k] for k in ("num_tokens", "num_sentences", "num_documents")}
            actual = {k: getattr(shard, k) for k in recorded}
            if actual != recorded:
                raise ShardError(i, shard_dir, f"holds {actual}, the manifest recorded {recorded}")
            if _fingerprint(shard_dir) != entry["files"]:
                raise ShardError(
                    i,
                    shard_dir,
                    "its files' checksums differ from those the sharded manifest recorded: "
                    "the shard was rebuilt or replaced",
                )
            shards.append(shard)
        corpus = cls(shards, source=manifest["source"], _path=path)
        if corpus.vocab_size != manifest["vocab_size"]:
            raise ValueError(
                f"{path / MANIFEST_FILE}: vocab_size {manifest['vocab_size']} does not match "
                f"the shards' {corpus.vocab_size}"
            )
        return corpus

    def __reduce__(self) -> tuple[Any, ...]:
        # The shards pickle by path (and range); the offsets are rebuilt on unpickling.
        return (_rebuild, (self.shards, self.source, self._path))

    def __repr__(self) -> str:
        return (
            f"ShardedTokenCorpus(shards={len(self.shards)}, documents={self.num_documents:,}, "
            f"sentences={self.num_sentences:,}, tokens={self.num_tokens:,}, "
            f"vocab_size={self.vocab_size:,})"
        )


def _rebuild(shards: tuple[TokenCorpus, ...], source: str, path: Path | None) -> ShardedTokenCorpus:
    return ShardedTokenCorpus(shards, source=source, _path=path)


def _fingerprint(shard_dir: Path) -> dict[str, Any]:
    """The checksums a corpus directory's manifest records for its files (format 2), else
    computed from the files (format 1)."""
    manifest = read_manifest(shard_dir / MANIFEST_FILE)
    files = manifest.get("files")
    if files is None:
        files = {}
        for name in CHECKED_FILES:
            size, digest = file_digest(shard_dir / name)
            files[name] = {"bytes": size, CHECKSUM_KEY: digest}
    return {name: dict(files[name]) for name in sorted(files)}


def _shard_entry(i: int, shard: TokenCorpus, base: Path) -> dict[str, Any]:
    directory = shard.path
    assert directory is not None
    try:
        rel = os.path.relpath(directory.resolve(), base.resolve())
    except ValueError:  # (another drive on Windows)
        rel = str(directory.resolve())
    try:
        files = _fingerprint(directory)
    except ValueError as exc:
        raise ShardError(i, directory, str(exc)) from exc
    return {
        "path": rel,
        "num_tokens": shard.num_tokens,
        "num_sentences": shard.num_sentences,
        "num_documents": shard.num_documents,
        "files": files,
    }


def _read_sharded_manifest(path: Path) -> dict[str, Any]:
    """Parse and validate a sharded corpus's ``manifest.json``; ValueError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != SHARDED_FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ValueError(f"{path}: format must be {SHARDED_FORMAT!r}, got {got!r}")
    if manifest.get("format_version") != SHARDED_FORMAT_VERSION:
        raise ValueError(
            f"{path}: unsupported format_version {manifest.get('format_version')!r} (this "
            f"version reads {SHARDED_FORMAT_VERSION})"
        )
    shards = manifest.get("shards")
    if not isinstance(shards, list) or not shards:
        raise ValueError(f"{path}: shards must be a non-empty list")
    for i, entry in enumerate(shards):
        ok = (
            isinstance(entry, dict)
            and isinstance(entry.get("path"), str)
            and isinstance(entry.get("files"), dict)
            and all(
                type(entry.get(k)) is int and entry[k] >= 0
                for k in ("num_tokens", "num_sentences", "num_documents")
            )
        )
        if not ok:
            raise ValueError(f"{path}: shards[{i}] must have path, counts and files")
    if type(manifest.get("vocab_size")) is not int or manifest["vocab_size"] <= 0:
        raise ValueError(f"{path}: vocab_size must be a positive integer")
    if manifest.get("ids_dtype") != str(ids_dtype(manifest["vocab_size"])):
        raise ValueError(f"{path}: ids_dtype does not fit vocab_size")
    manifest.setdefault("source", "")
    if not isinstance(manifest["source"], str):
        raise ValueError(f"{path}: source must be a string")
    return manifest


def combine(
    shards: Iterable[Any],
    *,
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    verify: bool = True,
    source: str = "",
) -> ShardedTokenCorpus:
    """See :meth:`TokenCorpus.combine`."""
    if isinstance(shards, str | bytes | os.PathLike) or not isinstance(shards, Iterable):
        raise TypeError(
            "shards: expected an iterable of TokenCorpus objects or corpus directories, got "
            f"{type(shards).__name__}"
        )
    opened = [_open_shard(i, s, verify) for i, s in enumerate(shards)]
    if not opened:
        raise ValueError("shards: no shards given")
    corpus = ShardedTokenCorpus(opened, source=source)
    if out is not None:
        corpus.save(out, overwrite=overwrite)
    return corpus
