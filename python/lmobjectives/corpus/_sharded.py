"""Sharded corpora: several :class:`~lmobjectives.TokenCorpus` directories read as one corpus.

A sharded corpus is a list of ordinary corpora (the shards), each built on its own — by one job
of a launcher, on any machine — plus a small manifest that lists them in order with their
fingerprints (the BLAKE2b-256 checksums their own manifests record). Combining copies no token
data: the shards' ids stay memory-mapped where they are; only the offsets are concatenated (and
rebased), so document ``d`` and sentence ``s`` mean the same as in one directory holding the same
documents in the same order, and every dataset view gives the same samples. A saved sharded
corpus keeps those global offsets next to its manifest (``sentence_offsets.npy`` and
``document_offsets.npy``, checksummed in it, written a chunk at a time) and memory-maps them on
load, so opening one costs no memory per sentence; one combined in memory holds them in memory.
"""

from __future__ import annotations

import hashlib
import json
import operator
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lmobjectives.corpus._base import CorpusBase
from lmobjectives.corpus._format import (
    CHECKED_FILES,
    CHECKSUM_KEY,
    DOCUMENT_OFFSETS_FILE,
    MANIFEST_FILE,
    SENTENCE_OFFSETS_FILE,
    file_digest,
    ids_dtype,
    load_array,
    make_temp_dir,
    npy_header,
    publish,
    read_manifest,
    write_text,
)
from lmobjectives.errors import CorpusError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from lmobjectives.corpus._corpus import TokenCorpus

__all__ = ["SHARDED_FORMAT", "ShardError", "ShardedIds", "ShardedTokenCorpus"]

#: ``manifest.json`` "format" value of a sharded corpus.
SHARDED_FORMAT = "lmobjectives.ShardedTokenCorpus"
#: ``manifest.json`` "format_version" of a sharded corpus this code writes and reads.
SHARDED_FORMAT_VERSION = 1
#: ``manifest.json`` key of the global offsets files (their bytes and checksums); manifests
#: written before it existed have none and load with the offsets rebuilt in memory.
OFFSETS_KEY = "offsets"
#: Offsets rebased (and written) at a time when saving.
OFFSET_CHUNK = 1 << 20


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


def _open_shard(i: int, shard: Any, verify: bool, mmap: bool = True) -> TokenCorpus:
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
        return TokenCorpus._load_directory(path, mmap=mmap, verify=verify)
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


def _check_shards(shards: Sequence[Any]) -> tuple[TokenCorpus, ...]:
    """The shards as a tuple, checked: all corpora, one vocabulary, all or none labelled."""
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
    return shards


class _Bases:
    """Where each shard starts, in tokens, sentences and documents (each ``len(shards) + 1``
    long; the last entry is the total)."""

    def __init__(self, shards: Sequence[TokenCorpus]) -> None:
        def starts(counts: list[int]) -> np.ndarray:
            return np.concatenate([np.zeros(1, np.int64), np.cumsum(counts, dtype=np.int64)])

        self.tokens = starts([s.num_tokens for s in shards])
        self.sentences = starts([s.num_sentences for s in shards])
        self.documents = starts([s.num_documents for s in shards])


def _offset_pieces(
    shards: Sequence[TokenCorpus], bases: _Bases, sentences: bool
) -> Iterator[np.ndarray]:
    """The global sentence (or document) offsets in pieces of at most :data:`OFFSET_CHUNK`
    values: each shard's offsets, rebased, without its final one; then the total."""
    base = bases.tokens if sentences else bases.sentences
    for i, shard in enumerate(shards):
        offsets = shard.sentence_offsets if sentences else shard.document_offsets
        for lo in range(0, len(offsets) - 1, OFFSET_CHUNK):
            hi = min(lo + OFFSET_CHUNK, len(offsets) - 1)
            yield np.asarray(offsets[lo:hi], dtype=np.int64) + base[i]
    yield base[-1:].copy()


def _memory_offsets(shards: Sequence[TokenCorpus], bases: _Bases) -> tuple[np.ndarray, np.ndarray]:
    """The global offsets as arrays in memory (8 bytes a sentence and a document), filled in
    place piece by piece."""
    out = []
    for sentences, count in ((True, bases.sentences[-1]), (False, bases.documents[-1])):
        arr = np.empty(int(count) + 1, dtype=np.int64)
        at = 0
        for piece in _offset_pieces(shards, bases, sentences):
            arr[at : at + len(piece)] = piece
            at += len(piece)
        out.append(arr)
    return out[0], out[1]


def _write_offsets(tmp: Path, shards: Sequence[TokenCorpus], bases: _Bases) -> dict[str, Any]:
    """Write the global offsets into ``tmp`` as ``.npy`` files, streamed a chunk at a time
    (bounded memory); returns their manifest entries (bytes and checksum)."""
    files = {}
    for file, count in (
        (SENTENCE_OFFSETS_FILE, bases.sentences[-1]),
        (DOCUMENT_OFFSETS_FILE, bases.documents[-1]),
    ):
        h = hashlib.blake2b(digest_size=32)
        header = npy_header(np.dtype(np.int64), int(count) + 1)
        h.update(header)
        size = len(header)
        with open(tmp / file, "wb") as f:
            f.write(header)
            for piece in _offset_pieces(shards, bases, file == SENTENCE_OFFSETS_FILE):
                data = piece.tobytes()
                f.write(data)
                h.update(data)
                size += len(data)
            f.flush()
            os.fsync(f.fileno())
        files[file] = {"bytes": size, CHECKSUM_KEY: h.hexdigest()}
    return files


def _load_offsets(
    path: Path, manifest: dict[str, Any], bases: _Bases, *, mmap: bool, verify: bool
) -> tuple[np.ndarray, np.ndarray] | None:
    """The global offsets saved next to the manifest at ``path``, memory-mapped (``None`` for
    a manifest written before they were saved). Always checked: each file's size against the
    manifest, its ``.npy`` header, and its values at every shard boundary against the shards'
    counts; with ``verify``, its checksum (read in chunks, not mapped). A
    :class:`~lmobjectives.CorpusError` names the file."""
    files = manifest.get(OFFSETS_KEY)
    if files is None:
        return None
    counts = {SENTENCE_OFFSETS_FILE: bases.sentences, DOCUMENT_OFFSETS_FILE: bases.documents}
    values = {SENTENCE_OFFSETS_FILE: bases.tokens, DOCUMENT_OFFSETS_FILE: bases.sentences}
    out = []
    for file in (SENTENCE_OFFSETS_FILE, DOCUMENT_OFFSETS_FILE):
        where = path / file
        entry = files[file]
        if not where.is_file():
            raise CorpusError(f"{where}: missing (the sharded manifest lists it)")
        size = where.stat().st_size
        if size != entry["bytes"]:
            raise CorpusError(
                f"{where}: size {size} bytes does not match the manifest ({entry['bytes']} "
                "bytes); the file is truncated, extended or replaced"
            )
        if verify:
            digest = file_digest(where)[1]
            if digest != entry[CHECKSUM_KEY]:
                raise CorpusError(
                    f"{where}: checksum mismatch (BLAKE2b-256 {digest}, manifest says "
                    f"{entry[CHECKSUM_KEY]}); the file is corrupted or was modified"
                )
        arr = load_array(where, np.dtype(np.int64), int(counts[file][-1]) + 1, mmap)
        at = arr[counts[file]]  # (one value per shard boundary: O(shards) reads)
        bad = np.flatnonzero(at != values[file])
        if len(bad):
            k = int(bad[0])
            raise CorpusError(
                f"{where}: offset {int(counts[file][k])} is {int(at[k])}, but the shards put "
                f"{int(values[file][k])} there (the start of shards[{k}] or the end)"
            )
        out.append(arr)
    return out[0], out[1]


class ShardedTokenCorpus(CorpusBase):
    """Several corpora (shards) read as one, in order, with global document, sentence and token
    numbers; the token data stays where each shard is (memory-mapped), nothing is copied.

    Make one with :meth:`TokenCorpus.combine` (from :class:`~lmobjectives.TokenCorpus` objects
    or corpus directories), save its manifest with :meth:`save` and open it again with
    :meth:`load` (or :meth:`TokenCorpus.load`, which opens either kind). It reads like a
    :class:`~lmobjectives.TokenCorpus` — ``ids`` (a :class:`ShardedIds`), ``sentence_offsets``
    and ``document_offsets`` (global ``int64`` arrays), ``vocab_size``, ``tokenizer``,
    ``document_labels``, :meth:`sentence`, :meth:`document`, :meth:`documents`,
    :meth:`token_counts` — so every dataset view (:class:`~lmobjectives.SentencePairDataset`,
    :class:`~lmobjectives.CorpusChunks`, :func:`~lmobjectives.neighbour_pairs`) works over it
    exactly as over one directory holding the same documents: the same samples, batches and
    sample keys for the same seed.

    The global offsets of a corpus saved with :meth:`save` (or ``combine(..., out=...)``) are
    files next to its manifest, memory-mapped on load, so opening it costs no memory per
    sentence; a corpus combined in memory (or a :meth:`documents` range not starting at 0)
    holds them in memory, 8 bytes a sentence and a document.

    All shards must share one vocabulary (the same tokenizer): a shard that differs raises
    :class:`ShardError` naming it. So do all shards or none carry document labels.

    Attributes:
        shards: the shards, a tuple of :class:`~lmobjectives.TokenCorpus`.
        ids, sentence_offsets, document_offsets, vocab_size, source, document_labels: as on a
            :class:`~lmobjectives.TokenCorpus`.
    """

    ids: ShardedIds

    def __init__(
        self,
        shards: Sequence[TokenCorpus],
        *,
        source: str = "",
        _path: Path | None = None,
        _offsets: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        shards = _check_shards(shards)
        self.shards = shards
        self.vocab_size = shards[0].vocab_size
        self.source = source
        self._path = _path
        self.ids = ShardedIds([s.ids for s in shards])
        self._bases = _Bases(shards)
        if _offsets is None:
            _offsets = _memory_offsets(shards, self._bases)  # (rebased copies; never the ids)
        self.sentence_offsets, self.document_offsets = _offsets
        self.document_labels: tuple[str, ...] | None = (
            tuple(label for s in shards for label in (s.document_labels or ()))
            if shards[0].document_labels is not None
            else None
        )
        self._mmap = True
        self._range: tuple[int, int] | None = None  # documents of the corpus at _range_path
        self._range_path: Path | None = None
        self._token_counts: np.ndarray | None = None

    # ------------------------------------------------------------------ like a TokenCorpus

    @property
    def tokenizer(self) -> Tokenizer:
        """The shards' tokenizer (that of the first shard; all share its vocabulary)."""
        return self.shards[0].tokenizer

    @property
    def offsets_mapped(self) -> bool:
        """Whether the global offsets are memory-mapped from files next to the manifest
        (``False``: held in memory)."""
        return isinstance(self.sentence_offsets, np.memmap) or isinstance(
            self.sentence_offsets.base, np.memmap
        )

    def documents(self, start: int, stop: int) -> ShardedTokenCorpus:
        """Documents ``start:stop`` as a sharded corpus of their own (each shard's part is
        :meth:`TokenCorpus.documents` of it: zero-copy). A range starting at document 0 keeps
        views of this corpus's offsets (memory-mapped when they are); others hold rebased
        copies of the range's offsets. A range of a corpus opened from a manifest pickles as
        its path and range."""
        self._check_range(start, stop)
        base = self._bases.documents
        parts = []
        for i, shard in enumerate(self.shards):
            lo = max(start, int(base[i])) - int(base[i])
            hi = min(stop, int(base[i + 1])) - int(base[i])
            if lo < hi:
                parts.append(
                    shard if (lo, hi) == (0, shard.num_documents) else shard.documents(lo, hi)
                )
        offsets = None
        if start == 0:  # a prefix: the global offsets' prefixes are the range's own
            last = int(self.document_offsets[stop])
            offsets = (self.sentence_offsets[: last + 1], self.document_offsets[: stop + 1])
        view = ShardedTokenCorpus(parts, source=self.source, _offsets=offsets)
        origin = self._path if self._path is not None else self._range_path
        if origin is not None:
            first = self._range[0] if self._range is not None else 0
            view._range = (first + start, first + stop)
            view._range_path = origin
            view._mmap = self._mmap
        return view

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
        """Summary numbers as :meth:`TokenCorpus.stats` gives them, plus ``"shards"`` (their
        number)."""
        return {"shards": len(self.shards), **super().stats()}

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the manifest and the global offsets (no token data) to the directory
        ``path``; returns the path. Afterwards this corpus reads its offsets from there
        (memory-mapped).

        ``manifest.json`` lists every shard's directory — relative to ``path`` when it can be,
        so a tree of manifest and shards can be moved together — with its counts and its
        fingerprint (the checksums its own manifest records), and the byte size and
        BLAKE2b-256 checksum of ``sentence_offsets.npy`` and ``document_offsets.npy``, the
        global offsets, written next to it a chunk at a time (bounded memory). Every shard must
        be a whole corpus opened from a directory (:meth:`TokenCorpus.load` or a writer), not
        one built in memory or a :meth:`documents` range. Written atomically, like
        :meth:`TokenCorpus.save`.

        Raises:
            ShardError: a shard is not a whole corpus on disk.
            FileExistsError: ``path`` exists and ``overwrite`` is false.
        """
        path = Path(path)
        manifest = _save(self.shards, self._bases, self.source, path, overwrite)
        offsets = _load_offsets(path, manifest, self._bases, mmap=True, verify=False)
        assert offsets is not None
        self.sentence_offsets, self.document_offsets = offsets
        self._path = path
        self._range = self._range_path = None
        return path

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, mmap: bool = True, verify: bool = True
    ) -> ShardedTokenCorpus:
        """Open a sharded corpus saved with :meth:`save` (:meth:`TokenCorpus.load` of the
        directory does the same): every shard is opened with :meth:`TokenCorpus.load`
        (memory-mapped unless ``mmap=False``; with ``verify``, its checksums are checked) and
        its fingerprint compared with the manifest's; the global offsets are memory-mapped
        (sizes, headers and the values at the shard boundaries checked; with ``verify``, their
        checksums). A manifest written before the offsets were saved with it still loads: its
        offsets are then rebuilt in memory.

        Raises:
            FileNotFoundError: ``path`` is not a directory.
            ValueError: the manifest is missing or invalid (the message names it).
            CorpusError: (a ``ValueError``) a global offsets file is missing, of the wrong
                size, damaged or (with ``verify``) has the wrong checksum; the message names it.
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
            shard = _open_shard(i, shard_dir, verify, mmap)
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
        offsets = _load_offsets(path, manifest, _Bases(shards), mmap=mmap, verify=verify)
        corpus = cls(shards, source=manifest["source"], _path=path, _offsets=offsets)
        corpus._mmap = mmap
        if corpus.vocab_size != manifest["vocab_size"]:
            raise ValueError(
                f"{path / MANIFEST_FILE}: vocab_size {manifest['vocab_size']} does not match "
                f"the shards' {corpus.vocab_size}"
            )
        return corpus

    def __reduce__(self) -> tuple[Any, ...]:
        # Opened from (or saved to) a manifest: pickled as its path (and range), so workers
        # re-map the offsets; otherwise as the shards (which pickle by path and range), the
        # offsets rebuilt on unpickling.
        if self._path is not None:
            return (_reopen, (str(self._path), self._mmap))
        if self._range is not None and self._range_path is not None:
            return (_reopen_range, (str(self._range_path), self._mmap, *self._range))
        return (_rebuild, (self.shards, self.source))

    def __repr__(self) -> str:
        return (
            f"ShardedTokenCorpus(shards={len(self.shards)}, documents={self.num_documents:,}, "
            f"sentences={self.num_sentences:,}, tokens={self.num_tokens:,}, "
            f"vocab_size={self.vocab_size:,})"
        )


def _rebuild(shards: tuple[TokenCorpus, ...], source: str) -> ShardedTokenCorpus:
    return ShardedTokenCorpus(shards, source=source)


def _reopen(path: str, mmap: bool) -> ShardedTokenCorpus:
    # As for a TokenCorpus: the pickling process verified the checksums when it loaded it.
    return ShardedTokenCorpus.load(path, mmap=mmap, verify=False)


def _reopen_range(path: str, mmap: bool, start: int, stop: int) -> ShardedTokenCorpus:
    return _reopen(path, mmap).documents(start, stop)


def _save(
    shards: Sequence[TokenCorpus], bases: _Bases, source: str, path: Path, overwrite: bool
) -> dict[str, Any]:
    """Write the manifest of ``shards`` and their global offsets to ``path``, atomically;
    returns the manifest."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"path: {path} already exists (pass overwrite=True)")
    entries = []
    for i, shard in enumerate(shards):
        if shard.path is None:
            raise ShardError(
                i,
                None,
                "not a whole corpus on disk (save it, or open it with "
                "TokenCorpus.load, before saving a sharded corpus that lists it)",
            )
        entries.append(_shard_entry(i, shard, path))
    first = shards[0]
    tmp = make_temp_dir(path)
    try:
        manifest = {
            "format": SHARDED_FORMAT,
            "format_version": SHARDED_FORMAT_VERSION,
            "vocab_size": first.vocab_size,
            "ids_dtype": str(first.ids.dtype),
            "num_tokens": int(bases.tokens[-1]),
            "num_sentences": int(bases.sentences[-1]),
            "num_documents": int(bases.documents[-1]),
            "labelled": first.document_labels is not None,
            "source": source,
            "shards": entries,
            OFFSETS_KEY: _write_offsets(tmp, shards, bases),
        }
        write_text(tmp / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
        publish(tmp, path, overwrite)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


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


def is_sharded(path: Path) -> bool:
    """Whether the directory ``path`` holds a sharded corpus's manifest (its ``format``);
    anything else, an unreadable manifest included, is left to :meth:`TokenCorpus.load`."""
    try:
        with open(path / MANIFEST_FILE, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == SHARDED_FORMAT


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
    offsets = manifest.get(OFFSETS_KEY)
    if offsets is not None and not (
        isinstance(offsets, dict)
        and set(offsets) == {SENTENCE_OFFSETS_FILE, DOCUMENT_OFFSETS_FILE}
        and all(
            isinstance(e, dict)
            and type(e.get("bytes")) is int
            and isinstance(e.get(CHECKSUM_KEY), str)
            for e in offsets.values()
        )
    ):
        raise ValueError(
            f"{path}: {OFFSETS_KEY} must give bytes and {CHECKSUM_KEY} of "
            f"{SENTENCE_OFFSETS_FILE} and {DOCUMENT_OFFSETS_FILE}"
        )
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
    opened = _check_shards([_open_shard(i, s, verify) for i, s in enumerate(shards)])
    if out is None:
        return ShardedTokenCorpus(opened, source=source)
    path = Path(out)
    bases = _Bases(opened)
    manifest = _save(opened, bases, source, path, overwrite)
    offsets = _load_offsets(path, manifest, bases, mmap=True, verify=False)
    return ShardedTokenCorpus(opened, source=source, _path=path, _offsets=offsets)
