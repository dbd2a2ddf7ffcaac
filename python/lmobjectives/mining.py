"""Hard-negative mining over embeddings: :func:`mine_hard_negatives` and :func:`exact_topk`.

The pipeline (DESIGN.md §1): embeddings (NumPy, a memory-mapped ``.npy``, or torch tensors) →
candidate retrieval (Rust exact top-k on CPU, chunked torch matmul + topk on a GPU, or faiss)
→ negative selection in Rust (positives and the query's own id excluded, positive-aware
margins, score window, rank window, top or seeded random sampling) → compact arrays of ids and
scores, never strings.

Retrieval in Rust is exact and reproducible: every score is the same fused multiply-add chain
over the dimensions whatever the tiling, thread count or CPU (AVX-512, AVX2 or portable code),
ties are broken by the lower corpus id, and the work is tiled over queries *and* corpus so that
memory stays ``O(threads × tile + queries × k)`` — no ``queries × corpus`` matrix is ever built.
Long runs show a progress bar and stop on Ctrl-C within a fraction of a second.

Selection follows sentence-transformers' ``mine_hard_negatives`` as of version 6.3 (the version
the parity tests are pinned to) rule by rule; where it differs, on purpose, the difference is
documented on :func:`mine_hard_negatives`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from lmobjectives import _core
from lmobjectives._optional import require
from lmobjectives._progress import Progress
from lmobjectives._seeding import check_num_threads, check_seed, resolve_num_threads

__all__ = ["HardNegatives", "exact_topk", "mine_hard_negatives"]

Similarity = Literal["cosine", "dot"]
Backend = Literal["auto", "rust", "torch", "faiss"]

_SIMILARITIES = ("cosine", "dot")
_BACKENDS = ("auto", "rust", "torch", "faiss")


# -- inputs ------------------------------------------------------------------------------------


def _is_torch(x: Any) -> bool:
    t = type(x)
    return t.__module__.startswith("torch") and t.__name__ in ("Tensor", "Parameter")


def _as_matrix(x: Any, name: str) -> tuple[np.ndarray, bool]:
    """A C-contiguous 2-D float32 array, or float16 seen as its uint16 bits (read in place
    whenever the input already is one of those). Returns ``(array, is_float16)``."""
    if isinstance(x, (str, os.PathLike)):
        try:
            x = np.load(os.fspath(x), mmap_mode="r")
        except (OSError, ValueError) as e:
            raise ValueError(f"{name}: could not load {os.fspath(x)!r} as a .npy file: {e}") from e
    if _is_torch(x):
        if x.device.type != "cpu":
            raise ValueError(f"{name}: a {x.device.type} tensor needs backend='torch' or 'auto'")
        x = x.detach().numpy()
    if not isinstance(x, np.ndarray):
        if isinstance(x, (list, tuple)):
            x = np.asarray(x, dtype=np.float32)
        else:
            raise TypeError(
                f"{name}: expected a 2-D float array, a .npy path or a tensor, "
                f"got {type(x).__name__}"
            )
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (rows × dim), got shape {x.shape}")
    if x.dtype == np.float16:
        return np.ascontiguousarray(x).view(np.uint16), True
    if x.dtype == np.float32:
        return np.ascontiguousarray(x), False
    if x.dtype.kind in "fiu":
        return np.ascontiguousarray(x, dtype=np.float32), False
    raise TypeError(f"{name}: expected float32 or float16 values, got {x.dtype}")


def _positives(positives: Any, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Positives as CSR ``(values int64, offsets int64 [rows + 1])``."""
    if isinstance(positives, tuple) and len(positives) == 2:
        values = np.ascontiguousarray(positives[0], dtype=np.int64).reshape(-1)
        offsets = np.ascontiguousarray(positives[1], dtype=np.int64).reshape(-1)
    elif isinstance(positives, np.ndarray) or _is_torch(positives):
        arr = np.asarray(positives.cpu() if _is_torch(positives) else positives)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"positives: expected integer corpus ids, got dtype {arr.dtype}")
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise ValueError(f"positives: expected 1-D or 2-D ids, got shape {arr.shape}")
        values = np.ascontiguousarray(arr, dtype=np.int64).reshape(-1)
        offsets = np.arange(arr.shape[0] + 1, dtype=np.int64) * arr.shape[1]
    elif isinstance(positives, Sequence):
        lengths = np.empty(len(positives), dtype=np.int64)
        flat: list[int] = []
        for i, row in enumerate(positives):
            if isinstance(row, (int, np.integer)) and not isinstance(row, bool):
                row = [row]
            try:
                ids = [int(v) for v in row]
            except (TypeError, ValueError):
                raise TypeError(
                    f"positives[{i}]: expected a corpus id or a list of them, got {row!r}"
                ) from None
            lengths[i] = len(ids)
            flat.extend(ids)
        values = np.asarray(flat, dtype=np.int64)
        offsets = np.zeros(len(positives) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
    else:
        raise TypeError(
            "positives: expected a list of id lists, an int array, or (values, offsets), "
            f"got {type(positives).__name__}"
        )
    if offsets.shape[0] != rows + 1:
        raise ValueError(f"positives: has {offsets.shape[0] - 1} rows for {rows} queries")
    if offsets[0] != 0 or offsets[-1] != values.shape[0] or (np.diff(offsets) < 0).any():
        raise ValueError("positives: offsets must start at 0, not decrease, and end at len(values)")
    return values, offsets


def _ids_vector(name: str, ids: Any, rows: int, lowest: int) -> np.ndarray:
    """One integer id per query (int64 ``[rows]``), each ``>= lowest``."""
    arr = np.asarray(ids.cpu() if _is_torch(ids) else ids)
    if arr.dtype.kind not in "iu" or arr.shape != (rows,):
        raise ValueError(
            f"{name}: expected {rows} integer ids, got shape {arr.shape} dtype {arr.dtype}"
        )
    if arr.dtype == np.uint64 and rows and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name}: ids must fit in int64, got {int(arr.max())}")
    out = arr.astype(np.int64)
    if rows and int(out.min()) < lowest:
        bad = int(np.argmax(out < lowest))
        raise ValueError(f"{name}[{bad}]: ids must be >= {lowest}, got {int(out[bad])}")
    return out


def _check_int(name: str, v: Any, lo: int, none: bool = False) -> Any:
    if v is None and none:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name}: expected an int >= {lo}{' or None' if none else ''}, got {v!r}")
    return int(v)


def _check_float(name: str, v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name}: expected a number or None, got {type(v).__name__}")
    if not np.isfinite(v):
        raise ValueError(f"{name}: must be finite, got {v}")
    return float(v)


def _choice(name: str, v: Any, choices: tuple[str, ...]) -> Any:
    if v not in choices:
        raise ValueError(f"{name}: must be one of {list(choices)}, got {v!r}")
    return str(v)


# -- retrieval ---------------------------------------------------------------------------------


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
    q, q16 = _as_matrix(queries, "queries")
    c, c16 = _as_matrix(corpus, "corpus")
    k = _check_int("k", k, 1)
    return _rust_topk(
        q,
        q16,
        c,
        c16,
        k,
        _choice("similarity", similarity, _SIMILARITIES),
        resolve_num_threads(check_num_threads(num_threads)),
        progress,
    )


def _rust_topk(
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


def _torch_topk(
    queries: Any,
    corpus: Any,
    k: int,
    similarity: str,
    query_chunk: int,
    corpus_chunk: int,
    progress: bool | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Chunked ``matmul`` + ``topk`` on the tensors' device (a GPU, typically): memory
    ``O(query_chunk × corpus_chunk)`` there, results merged chunk by chunk. Equal scores come
    back in torch's order, not necessarily by id."""
    torch = require("torch", purpose="backend='torch' mining")

    device = queries.device
    corpus = corpus.to(device)
    n = corpus.shape[0]
    q_all = queries.float()
    if similarity == "cosine":
        q_all = torch.nn.functional.normalize(q_all, dim=1)
    ids_out = torch.empty((queries.shape[0], k), dtype=torch.int64)
    scores_out = torch.empty((queries.shape[0], k), dtype=torch.float32)
    steps = -(-queries.shape[0] // query_chunk) * -(-n // corpus_chunk)
    with Progress(steps, "mining", unit="block", enabled=progress) as bar, torch.no_grad():
        for i in range(0, queries.shape[0], query_chunk):
            q = q_all[i : i + query_chunk]
            best_s: Any = None
            best_i: Any = None
            for j in range(0, n, corpus_chunk):
                c = corpus[j : j + corpus_chunk].float()
                if similarity == "cosine":
                    c = torch.nn.functional.normalize(c, dim=1)
                s = q @ c.T
                ts, ti = s.topk(min(k, s.shape[1]), dim=1)
                ti += j
                if best_s is not None:
                    ts, pick = torch.cat([best_s, ts], 1).topk(k, dim=1)
                    ti = torch.cat([best_i, ti], 1).gather(1, pick)
                best_s, best_i = ts, ti
                bar.update(1)
            assert best_s is not None
            assert best_i is not None
            scores_out[i : i + query_chunk] = best_s.cpu()
            ids_out[i : i + query_chunk] = best_i.cpu()
    if not torch.isfinite(scores_out).all():
        raise ValueError("queries/corpus: a score is not finite (NaN or inf in the embeddings)")
    return ids_out.numpy(), scores_out.numpy()


def _faiss_topk(
    q: np.ndarray, q16: bool, c: np.ndarray, c16: bool, k: int, similarity: str
) -> tuple[np.ndarray, np.ndarray]:
    """faiss ``IndexFlatIP`` (exact; holds its own float32 copy of the corpus)."""
    faiss = require("faiss", purpose="backend='faiss' mining")

    def prepare(x: np.ndarray, half: bool) -> np.ndarray:
        x = x.view(np.float16).astype(np.float32) if half else np.array(x, dtype=np.float32)
        if similarity == "cosine":
            faiss.normalize_L2(x)
        return x

    index = faiss.IndexFlatIP(c.shape[1])
    index.add(prepare(c, c16))
    scores, ids = index.search(prepare(q, q16), k)
    if not np.isfinite(scores).all():
        raise ValueError("queries/corpus: a score is not finite (NaN or inf in the embeddings)")
    return ids.astype(np.int64), scores.astype(np.float32)


# -- the result --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HardNegatives:
    """What :func:`mine_hard_negatives` found: ids and scores, no texts.

    Attributes:
        negative_ids: int64 ``[Q, num_negatives]`` corpus ids, hardest first; ``-1`` where a
            query has fewer negatives.
        negative_scores: float32 ``[Q, num_negatives]``; ``-inf`` where ids are ``-1``.
        positive_ids, positive_offsets: the positives as CSR (query ``q`` has
            ``positive_ids[positive_offsets[q]:positive_offsets[q + 1]]``).
        positive_scores: float32, one per positive, computed exactly as the candidate scores.
        removed: how many retrieved candidates each rule removed (each counted once, by the
            first rule that removed it): ``positives``, ``self``, ``absolute_margin``,
            ``relative_margin``, ``max_score``, ``min_score``.
        range_max: the window end used (derived when not given).
        depth: candidates retrieved per query.
    """

    negative_ids: np.ndarray
    negative_scores: np.ndarray
    positive_ids: np.ndarray
    positive_offsets: np.ndarray
    positive_scores: np.ndarray
    removed: dict[str, int] = field(default_factory=dict)
    range_max: int = 0
    depth: int = 0

    @property
    def num_found(self) -> np.ndarray:
        """Negatives found per query (int64 ``[Q]``)."""
        return (self.negative_ids >= 0).sum(axis=1)

    def _positive_rows(self) -> tuple[np.ndarray, np.ndarray]:
        counts = np.diff(self.positive_offsets)
        return np.repeat(np.arange(counts.shape[0]), counts), counts

    def triplets(self) -> dict[str, np.ndarray]:
        """One row per (query, positive, found negative), as sentence-transformers'
        ``output_format="triplet"`` orders them: queries in order, each positive of a query in
        order, its negatives hardest first. Keys: ``query``, ``positive``, ``negative``,
        ``positive_score``, ``negative_score``."""
        q_of_pos, _ = self._positive_rows()
        neg = self.negative_ids[q_of_pos]
        keep = neg >= 0
        n = neg.shape[1]
        return {
            "query": np.repeat(q_of_pos, n).reshape(-1, n)[keep],
            "positive": np.repeat(self.positive_ids, n).reshape(-1, n)[keep],
            "negative": neg[keep],
            "positive_score": np.repeat(self.positive_scores, n).reshape(-1, n)[keep],
            "negative_score": self.negative_scores[q_of_pos][keep],
        }

    def ntuples(self) -> dict[str, np.ndarray]:
        """One row per (query, positive) whose query found all ``num_negatives`` negatives
        (others are dropped, as sentence-transformers' ``output_format="n-tuple"`` does).
        Keys: ``query`` ``[R]``, ``positive`` ``[R]``, ``negatives`` ``[R, n]``, ``scores``
        ``[R, 1 + n]`` (positive score, then the negatives')."""
        q_of_pos, _ = self._positive_rows()
        full = (self.negative_ids[q_of_pos] >= 0).all(axis=1)
        rows = q_of_pos[full]
        return {
            "query": rows,
            "positive": self.positive_ids[full],
            "negatives": self.negative_ids[rows],
            "scores": np.concatenate(
                [self.positive_scores[full, None], self.negative_scores[rows]], axis=1
            ),
        }

    def summary(self) -> str:
        """Score statistics of positives and found negatives, and what was removed."""
        pos = self.positive_scores.astype(np.float64)
        neg = self.negative_scores[self.negative_ids >= 0].astype(np.float64)
        lines = [f"{'':8}{'positive':>12}{'negative':>12}"]

        def stat(label: str, f: Callable[[np.ndarray], float]) -> None:
            cells = [f"{f(x):12.4f}" if x.size else f"{'-':>12}" for x in (pos, neg)]
            lines.append(f"{label:8}" + "".join(cells))

        lines.append(f"{'count':8}{pos.size:12,}{neg.size:12,}")
        stat("mean", np.mean)
        stat("std", np.std)
        stat("min", np.min)
        stat("median", np.median)
        stat("max", np.max)
        for rule, n in self.removed.items():
            if n:
                lines.append(f"removed {n:,} candidates by {rule}")
        short = int((self.num_found < self.negative_ids.shape[1]).sum())
        if short:
            lines.append(
                f"{short:,} of {self.negative_ids.shape[0]:,} queries found fewer than "
                f"{self.negative_ids.shape[1]} negatives"
            )
        return "\n".join(lines)


# -- mining ------------------------------------------------------------------------------------


def mine_hard_negatives(
    queries: Any,
    corpus: Any = None,
    positives: Any = None,
    *,
    num_negatives: int = 3,
    range_min: int = 0,
    range_max: int | None = None,
    max_score: float | None = None,
    min_score: float | None = None,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
    sampling: Literal["top", "random"] = "top",
    ranks: Literal["filtered", "raw"] = "filtered",
    include_positives: bool = False,
    exclude_self: bool = False,
    query_ids: Any = None,
    self_ids: Any = None,
    candidate_depth: int | None = None,
    similarity: Similarity = "cosine",
    seed: int = 0,
    backend: Backend = "auto",
    num_threads: int | None = None,
    progress: bool | None = None,
    query_chunk: int = 16384,
    corpus_chunk: int = 65536,
) -> HardNegatives:
    """Mines hard negatives for each query from a corpus of embeddings.

    For every query, the ``depth`` corpus rows of highest score are retrieved exactly, then
    candidates are dropped in rank order if they are a positive of the query (unless
    ``include_positives``), the query's own corpus row (``self_ids``), or fail a filter — in
    this order, with ``pos`` the query's *minimum* positive score and float32 arithmetic, as
    sentence-transformers does: ``score + absolute_margin > pos``;
    ``score > pos - |pos| * relative_margin`` (sign-safe: NV-Retriever's "TopK-PercPos 95%" is
    ``relative_margin=0.05``); ``score > max_score``; ``score < min_score``. The window is the
    survivors of ranks ``[range_min, range_max)`` and ``num_negatives`` are taken from it.

    Args:
        queries: ``[Q, d]`` embeddings: float32 or float16 NumPy array (other numeric dtypes
            are converted), or a torch tensor (a CUDA tensor runs retrieval on the GPU).
        corpus: ``[N, d]`` embeddings in the same forms, or the path of a ``.npy`` file
            (memory-mapped); ``None`` mines among the queries themselves (then
            ``exclude_self`` is usually wanted).
        positives: each query's positive corpus ids: a list of id lists (any number per
            query, at least one), a 1-D int array (one each), a 2-D int array, or CSR
            ``(values, offsets)``. ``None``: no positives (margins then cannot be used).
        num_negatives: negatives per query (default 3, as sentence-transformers).
        range_min: skip this many of the best surviving candidates (false negatives hide at
            the top; 10 is common).
        range_max: end of the rank window. Default (sentence-transformers'):
            ``range_min + num_negatives + max_positives``, with ``10 * num_negatives`` instead
            when a margin or ``max_score`` is set (they remove many candidates).
        max_score, min_score: keep candidates with ``min_score <= score <= max_score``.
        absolute_margin, relative_margin: positive-aware filters (see above).
        sampling: ``"top"`` (the hardest of the window) or ``"random"`` (uniform without
            replacement from the window, from a stream keyed by ``(seed, query id)``; returned
            by score).
        ranks: ``"filtered"`` (default, sentence-transformers): ``range_min``/``range_max``
            count surviving candidates; ``"raw"``: they count raw retrieval ranks, positives
            included, as NV-Retriever's "top-K shifted by N" and FlagEmbedding do.
        include_positives: keep positives among the candidates (for rerank evaluation sets).
        exclude_self: shorthand for ``self_ids=query_ids`` (default ``0..Q-1``): for queries
            that are the corpus rows of the same index, e.g. ``corpus=None``.
        query_ids: each query's global id (int ``[Q]``, ``>= 0``): the key of its random
            stream. Default ``0..Q-1``. Give global ids when mining a shard of the queries, so
            results equal one run over all of them.
        self_ids: each query's own row in the corpus, or ``-1`` where it has none (int
            ``[Q]``). That row is never returned as a negative — sentence-transformers 6.3
            drops a corpus text equal to the query — except, with ``include_positives``,
            when it is also one of the query's positives. We take embeddings, not texts, so
            the identity is given here. Default: no query is a corpus row.
        candidate_depth: candidates retrieved per query before filtering. Default (6.3's):
            ``range_max + max_positives + 1`` with ``ranks="filtered"`` (room for the
            positives and the query's own row), ``range_max`` with ``ranks="raw"``.
            sentence-transformers 6.2 retrieved ``range_max + max_positives``: pass that to
            reproduce its output, which differs when filters empty the window.
        similarity: ``"cosine"`` (default: the rows are L2-normalised, as
            sentence-transformers does) or ``"dot"``.
        seed: seed of the random sampling.
        backend: ``"auto"`` (``"torch"`` for CUDA tensors, else ``"rust"``), ``"rust"`` (exact,
            tiled, multi-threaded), ``"torch"`` (chunked matmul + topk on the tensors'
            device), ``"faiss"`` (``IndexFlatIP``; needs ``faiss-cpu``).
        num_threads: threads for retrieval and selection (default
            ``LMOBJECTIVES_NUM_THREADS``, else all CPUs).
        progress: draw a progress bar (``None``: when stderr is a terminal).
        query_chunk, corpus_chunk: chunk sizes of the ``"torch"`` backend.

    Returns:
        A :class:`HardNegatives`.

    Differences from sentence-transformers' ``mine_hard_negatives``, on purpose: embeddings in,
    ids out (no model, no strings, no dataset explosion: :meth:`HardNegatives.triplets` and
    :meth:`HardNegatives.ntuples` give its row layouts as ids); random sampling is seeded
    and keyed per query instead of Python's global ``random``; ties are broken by corpus id;
    ``ranks="raw"`` and ``candidate_depth`` exist.

    Example:
        >>> import numpy as np
        >>> from lmobjectives import mine_hard_negatives
        >>> rng = np.random.default_rng(0)
        >>> corpus = rng.standard_normal((100, 16)).astype(np.float32)
        >>> queries = corpus[:4] + 0.1 * rng.standard_normal((4, 16)).astype(np.float32)
        >>> mined = mine_hard_negatives(queries, corpus, [[0], [1], [2], [3]], num_negatives=2)
        >>> mined.negative_ids.shape, bool((mined.negative_ids[:, 0] != np.arange(4)).all())
        ((4, 2), True)
    """
    num_negatives = _check_int("num_negatives", num_negatives, 1)
    range_min = _check_int("range_min", range_min, 0)
    range_max = _check_int("range_max", range_max, 1, none=True)
    max_score = _check_float("max_score", max_score)
    min_score = _check_float("min_score", min_score)
    absolute_margin = _check_float("absolute_margin", absolute_margin)
    relative_margin = _check_float("relative_margin", relative_margin)
    sampling_name = _choice("sampling", sampling, ("top", "random"))
    ranks_name = _choice("ranks", ranks, ("filtered", "raw"))
    sim = _choice("similarity", similarity, _SIMILARITIES)
    backend_name = _choice("backend", backend, _BACKENDS)
    for name, flag in (("include_positives", include_positives), ("exclude_self", exclude_self)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name}: expected a bool, got {type(flag).__name__}")
    seed_value = check_seed(seed)
    if seed_value is None:
        raise TypeError("seed: expected an int")
    threads = resolve_num_threads(check_num_threads(num_threads))
    candidate_depth = _check_int("candidate_depth", candidate_depth, 1, none=True)
    query_chunk = _check_int("query_chunk", query_chunk, 1)
    corpus_chunk = _check_int("corpus_chunk", corpus_chunk, 1)

    if corpus is None:
        corpus = queries
    on_device = _is_torch(queries) and queries.device.type != "cpu"
    if backend_name == "auto":
        backend_name = "torch" if on_device else "rust"
    if backend_name == "torch":
        if _is_torch(queries):
            q_t = queries
        else:
            q_np, q16 = _as_matrix(queries, "queries")
            q_t = _tensor(q_np.view(np.float16) if q16 else q_np)
        if isinstance(corpus, (str, os.PathLike)) or not _is_torch(corpus):
            c_np, c16 = _as_matrix(corpus, "corpus")
            c_t = _tensor(c_np.view(np.float16) if c16 else c_np)
        else:
            c_t = corpus
        for name, t in (("queries", q_t), ("corpus", c_t)):
            if t.dim() != 2:
                raise ValueError(
                    f"{name}: expected a 2-D tensor (rows × dim), got {tuple(t.shape)}"
                )
        num_q, num_c, dim_q, dim_c = q_t.shape[0], c_t.shape[0], q_t.shape[1], c_t.shape[1]
    else:
        q, q16 = _as_matrix(queries, "queries")
        c, c16 = _as_matrix(corpus, "corpus")
        num_q, num_c, dim_q, dim_c = q.shape[0], c.shape[0], q.shape[1], c.shape[1]
    if dim_q != dim_c:
        raise ValueError(f"queries: has dimension {dim_q} but corpus has dimension {dim_c}")
    if num_c == 0:
        raise ValueError("corpus: is empty")
    if num_negatives > num_c:
        raise ValueError(f"num_negatives: is {num_negatives} but the corpus has only {num_c} rows")

    if positives is None:
        pos_values = np.zeros(0, dtype=np.int64)
        pos_offsets = np.zeros(num_q + 1, dtype=np.int64)
        has_positives = False
    else:
        pos_values, pos_offsets = _positives(positives, num_q)
        has_positives = True
    max_positives = int(np.diff(pos_offsets).max()) if num_q else 0

    global_ids = (
        np.arange(num_q, dtype=np.int64)
        if query_ids is None
        else _ids_vector("query_ids", query_ids, num_q, lowest=0)
    )
    keys = global_ids.astype(np.uint64)
    own_rows: np.ndarray | None = None
    if self_ids is not None:
        if exclude_self:
            raise ValueError("self_ids: give either self_ids or exclude_self=True, not both")
        own_rows = _ids_vector("self_ids", self_ids, num_q, lowest=-1)
        if (own_rows >= num_c).any():
            bad = int(np.argmax(own_rows >= num_c))
            raise ValueError(
                f"self_ids[{bad}]: {int(own_rows[bad])} is not a row of the corpus "
                f"({num_c} rows); use -1 for a query that is not in the corpus"
            )
    elif exclude_self:
        own_rows = global_ids
        if (own_rows >= num_c).any():
            bad = int(np.argmax(own_rows >= num_c))
            raise ValueError(
                f"exclude_self: query {bad} has id {int(own_rows[bad])}, not a row of the "
                f"corpus ({num_c} rows); give query_ids or self_ids"
            )

    if range_max is None:
        wide = absolute_margin is not None or relative_margin is not None or max_score is not None
        range_max = range_min + num_negatives * (10 if wide else 1) + max_positives
    if range_min >= range_max:
        raise ValueError(
            f"range_min: must be smaller than range_max, got range_min={range_min} and "
            f"range_max={range_max}"
        )
    if num_negatives > range_max - range_min:
        raise ValueError(
            f"num_negatives: is {num_negatives} but the window range_min={range_min}.."
            f"range_max={range_max} holds only {range_max - range_min}"
        )
    if candidate_depth is None:
        candidate_depth = range_max if ranks_name == "raw" else range_max + max_positives + 1
    depth = min(candidate_depth, num_c)

    if num_q == 0:
        cand_ids = np.zeros((0, depth), dtype=np.int64)
        cand_scores = np.zeros((0, depth), dtype=np.float32)
        pos_scores = np.zeros(0, dtype=np.float32)
    elif backend_name == "torch":
        cand_ids, cand_scores = _torch_topk(
            q_t, c_t, depth, sim, query_chunk, corpus_chunk, progress
        )
        pos_scores = _torch_pair_scores(q_t, c_t, pos_values, pos_offsets, sim)
    else:
        if backend_name == "faiss":
            cand_ids, cand_scores = _faiss_topk(q, q16, c, c16, depth, sim)
        else:
            cand_ids, cand_scores = _rust_topk(q, q16, c, c16, depth, sim, threads, progress)
        pos_scores = _core.pair_scores(
            q,
            c,
            pos_values,
            pos_offsets,
            similarity=sim,
            queries_float16=q16,
            corpus_float16=c16,
            num_threads=threads,
        )

    neg_ids, neg_scores, removed = _core.select_negatives(
        np.ascontiguousarray(cand_ids, dtype=np.int64),
        np.ascontiguousarray(cand_scores, dtype=np.float32),
        corpus_rows=num_c,
        keys=keys,
        num_negatives=num_negatives,
        range_min=range_min,
        range_max=range_max,
        positive_values=pos_values if has_positives else None,
        positive_offsets=pos_offsets if has_positives else None,
        positive_scores=pos_scores if has_positives else None,
        self_ids=own_rows,
        absolute_margin=absolute_margin,
        relative_margin=relative_margin,
        max_score=max_score,
        min_score=min_score,
        sampling=sampling_name,
        ranks=ranks_name,
        include_positives=include_positives,
        seed=seed_value,
        num_threads=threads,
    )
    return HardNegatives(
        negative_ids=neg_ids,
        negative_scores=neg_scores,
        positive_ids=pos_values,
        positive_offsets=pos_offsets,
        positive_scores=np.asarray(pos_scores, dtype=np.float32),
        removed=dict(removed),
        range_max=range_max,
        depth=depth,
    )


def _tensor(x: np.ndarray) -> Any:
    """``torch.from_numpy`` without a copy, also for read-only arrays (memory-mapped corpora;
    torch warns about them, but nothing here writes to the tensor)."""
    import warnings

    torch = require("torch", purpose="backend='torch' mining")

    if x.flags.writeable:
        return torch.from_numpy(x)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(x)


def _torch_pair_scores(
    queries: Any, corpus: Any, values: np.ndarray, offsets: np.ndarray, sim: str
) -> np.ndarray:
    torch = require("torch", purpose="backend='torch' mining")

    if values.size == 0:
        return np.zeros(0, dtype=np.float32)
    if (values < 0).any() or (values >= corpus.shape[0]).any():
        bad = int(values[(values < 0) | (values >= corpus.shape[0])][0])
        raise ValueError(
            f"positives: id {bad} is not a corpus row (the corpus has {corpus.shape[0]} rows)"
        )
    rows = torch.from_numpy(np.repeat(np.arange(offsets.shape[0] - 1), np.diff(offsets)))
    device = queries.device
    with torch.no_grad():
        q = queries[rows.to(device)].float()
        c = corpus[torch.from_numpy(values).to(corpus.device)].to(device).float()
        if sim == "cosine":
            q = torch.nn.functional.normalize(q, dim=1)
            c = torch.nn.functional.normalize(c, dim=1)
        s = (q * c).sum(dim=1).cpu()
    if not torch.isfinite(s).all():
        raise ValueError("queries/corpus: a positive's score is not finite")
    return s.numpy().astype(np.float32)
