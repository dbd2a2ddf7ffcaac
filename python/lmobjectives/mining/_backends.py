"""Candidate retrieval for mining: the backend registry and the library's own backends.

A backend turns the embeddings into its own matrices (``prepare``), finds each query's ``k``
best corpus rows (``topk``) and scores each query against its positives exactly as it scores
candidates (``pair_scores``). The library registers ``"rust"`` (exact, tiled, multi-threaded:
:func:`exact_topk`) and ``"faiss"`` (``IndexFlatIP``); :mod:`lmobjectives.torch` registers
``"torch"`` when it is imported, and :func:`get_backend` imports it (through the torch bridge)
the first time ``"torch"`` is asked for. Selection (:mod:`lmobjectives.mining._mine`) is the same
whatever the backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from lmobjectives import _core, _torch_bridge
from lmobjectives._optional import require
from lmobjectives._progress import Progress
from lmobjectives._seeding import check_num_threads, resolve_num_threads
from lmobjectives.mining._inputs import Embeddings, as_embeddings, as_matrix, check_int, choice

__all__ = [
    "Backend",
    "SearchOptions",
    "backend_names",
    "exact_topk",
    "get_backend",
    "register_backend",
]

Similarity = Literal["cosine", "dot"]
SIMILARITIES = ("cosine", "dot")


@dataclass(frozen=True)
class SearchOptions:
    """What every backend call gets besides the matrices."""

    similarity: str
    num_threads: int
    progress: bool | None
    query_chunk: int
    corpus_chunk: int


#: ``topk(queries, corpus, k, options) -> (ids int64 [Q, k], scores float32 [Q, k])``, each row
#: by score, descending.
TopkFn = Callable[[Any, Any, int, SearchOptions], tuple[np.ndarray, np.ndarray]]
#: ``pair_scores(queries, corpus, values, offsets, options) -> float32 [len(values)]``: the
#: score of query ``q`` and each of its positives ``values[offsets[q]:offsets[q + 1]]``.
PairScoresFn = Callable[[Any, Any, np.ndarray, np.ndarray, SearchOptions], np.ndarray]
#: ``prepare(embeddings, argument name) -> matrix`` (anything with a 2-D ``shape``).
PrepareFn = Callable[[Any, str], Any]


@dataclass(frozen=True)
class Backend:
    """A registered retrieval backend (see :func:`register_backend`)."""

    name: str
    topk: TopkFn
    pair_scores: PairScoresFn
    prepare: PrepareFn


_REGISTRY: dict[str, Backend] = {}
#: Backends that live outside the library, and what makes them register themselves.
_LAZY: dict[str, Callable[[], object]] = {
    "torch": lambda: _torch_bridge.load_torch_package("backend='torch' mining"),
}
#: Listed first, in this order, in error messages.
_KNOWN = ("rust", "torch", "faiss")


def register_backend(
    name: str,
    topk_fn: TopkFn,
    pair_scores_fn: PairScoresFn,
    *,
    prepare: PrepareFn | None = None,
) -> None:
    """Makes ``backend=name`` of :func:`~lmobjectives.mine_hard_negatives` retrieve with
    ``topk_fn`` and score positives with ``pair_scores_fn`` (replacing a backend of that name).

    ``prepare`` turns each embeddings argument into the matrices the two functions receive;
    by default they get :class:`~lmobjectives.mining._inputs.Embeddings` (C-contiguous
    float32, or float16 as its uint16 bits). Both functions get a :class:`SearchOptions`.
    """
    if not isinstance(name, str) or not name or name == "auto":
        raise ValueError(f"name: expected a backend name other than 'auto', got {name!r}")
    for label, fn in (("topk_fn", topk_fn), ("pair_scores_fn", pair_scores_fn)):
        if not callable(fn):
            raise TypeError(f"{label}: expected a callable, got {type(fn).__name__}")
    _REGISTRY[name] = Backend(name, topk_fn, pair_scores_fn, prepare or as_embeddings)


def backend_names() -> tuple[str, ...]:
    """Every value ``backend=`` takes: ``"auto"``, the known backends, then any registered."""
    return ("auto", *dict.fromkeys([*_KNOWN, *_REGISTRY]))


def get_backend(name: str) -> Backend:
    """The backend called ``name``, importing the package that registers it if needed."""
    if name not in _REGISTRY and name in _LAZY:
        _LAZY[name]()
    if name not in _REGISTRY:
        raise ValueError(f"backend: {name!r} is not registered (known: {list(backend_names())})")
    return _REGISTRY[name]


# -- the Rust backend --------------------------------------------------------------------------


def exact_topk(
    queries: Any,
    corpus: Any,
    k: int,
    *,
    similarity: Similarity = "cosine",
    num_threads: int | None = None,
    progress: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` corpus rows of highest score for every query, exactly.

    Args:
        queries: ``[Q, d]`` float32 or float16 array (other numeric dtypes are converted).
        corpus: ``[N, d]`` array, or the path of a ``.npy`` file (memory-mapped, read in
            place: the corpus may be larger than RAM).
        k: neighbours per query, ``1 <= k <= N``.
        similarity: ``"cosine"`` (dot product of the L2-normalised rows, as
            ``F.normalize``) or ``"dot"``.
        num_threads: default ``LMOBJECTIVES_NUM_THREADS``, else all CPUs.
        progress: draw a progress bar (``None``: when stderr is a terminal).

    Returns:
        ``(ids, scores)``: int64 and float32 ``[Q, k]``, each row by score (descending), equal
        scores by corpus id (ascending).

    Example:
        >>> import numpy as np
        >>> from lmobjectives import exact_topk
        >>> corpus = np.eye(4, dtype=np.float32)
        >>> ids, scores = exact_topk(np.array([[0.1, 0.9, 0.4, 0.0]], np.float32), corpus, 2)
        >>> ids.tolist()
        [[1, 2]]
    """
    q, q16 = as_matrix(queries, "queries")
    c, c16 = as_matrix(corpus, "corpus")
    k = check_int("k", k, 1)
    return rust_topk(
        q,
        q16,
        c,
        c16,
        k,
        choice("similarity", similarity, SIMILARITIES),
        resolve_num_threads(check_num_threads(num_threads)),
        progress,
    )


def rust_topk(
    q: np.ndarray,
    q16: bool,
    c: np.ndarray,
    c16: bool,
    k: int,
    similarity: str,
    threads: int,
    progress: bool | None,
    **plan: Any,
) -> tuple[np.ndarray, np.ndarray]:
    with Progress(None, "mining", unit="task", enabled=progress) as bar:

        def report(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        return _core.search_topk(
            q,
            c,
            k=k,
            similarity=similarity,  # type: ignore[arg-type]  # checked by the callers
            queries_float16=q16,
            corpus_float16=c16,
            num_threads=threads,
            progress=report if bar.enabled else None,
            **plan,
        )


def _rust_search(
    q: Embeddings, c: Embeddings, k: int, options: SearchOptions
) -> tuple[np.ndarray, np.ndarray]:
    return rust_topk(
        q.array,
        q.float16,
        c.array,
        c.float16,
        k,
        options.similarity,
        options.num_threads,
        options.progress,
    )


def _pair_scores(
    q: Embeddings, c: Embeddings, values: np.ndarray, offsets: np.ndarray, options: SearchOptions
) -> np.ndarray:
    """Positive scores in Rust, the same arithmetic as the Rust search (both NumPy backends)."""
    return _core.pair_scores(
        q.array,
        c.array,
        values,
        offsets,
        similarity=options.similarity,  # type: ignore[arg-type]  # checked by the callers
        queries_float16=q.float16,
        corpus_float16=c.float16,
        num_threads=options.num_threads,
    )


# -- the faiss backend -------------------------------------------------------------------------


def faiss_topk(
    q: np.ndarray, q16: bool, c: np.ndarray, c16: bool, k: int, similarity: str
) -> tuple[np.ndarray, np.ndarray]:
    """faiss ``IndexFlatIP`` (exact; holds its own float32 copy of the corpus)."""
    faiss = require("faiss", purpose="backend='faiss' mining")

    def prepare(x: np.ndarray, half: bool) -> np.ndarray:
        x = x.view(np.float16).astype(np.float32) if half else np.array(x, dtype=np.float32)
        if similarity == "cosine":
            # x / max(‖x‖, 1e-12) per row (F.normalize's rule, as the Rust backend), each
            # row divided by its largest magnitude first: the squared norm of a finite row
            # of norm ~1e20 overflows float32 (faiss.normalize_L2 would divide by inf).
            peak = np.abs(x).max(axis=1, keepdims=True) if x.size else np.ones((len(x), 1))
            peak[~(peak > 0)] = 1.0  # all-zero rows stay zero (NaN rows are caught below)
            x /= peak.astype(np.float32)
            norm = np.linalg.norm(x, axis=1, keepdims=True)
            x /= np.maximum(norm, 1e-12 / peak).astype(np.float32)
        return x

    index = faiss.IndexFlatIP(c.shape[1])
    index.add(prepare(c, c16))
    scores, ids = index.search(prepare(q, q16), k)
    if not np.isfinite(scores).all():
        raise ValueError("queries/corpus: a score is not finite (NaN or inf in the embeddings)")
    return ids.astype(np.int64), scores.astype(np.float32)


def _faiss_search(
    q: Embeddings, c: Embeddings, k: int, options: SearchOptions
) -> tuple[np.ndarray, np.ndarray]:
    return faiss_topk(q.array, q.float16, c.array, c.float16, k, options.similarity)


register_backend("rust", _rust_search, _pair_scores)
register_backend("faiss", _faiss_search, _pair_scores)
