"""The :func:`mine_hard_negatives` driver: check the arguments, resolve the backend, retrieve
candidates, select negatives in Rust (design: §2)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from lmobjectives import _core, _torch_bridge
from lmobjectives._seeding import check_num_threads, check_seed, resolve_num_threads
from lmobjectives.mining._backends import (
    SIMILARITIES,
    Backend,
    SearchOptions,
    Similarity,
    backend_names,
    get_backend,
)
from lmobjectives.mining._inputs import check_float, check_int, choice, ids_vector, positives_csr
from lmobjectives.mining._result import HardNegatives

__all__ = ["mine_hard_negatives"]

BackendName = Literal["auto", "rust", "torch", "faiss"]


# long: public signature (24 arguments) and its 80-line docstring; the body is one call per step
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
    backend: BackendName | str = "auto",
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
            device; :mod:`lmobjectives.torch` registers it), ``"faiss"`` (``IndexFlatIP``;
            needs ``faiss-cpu``), or a name given to :func:`register_backend`.
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
    settings = _check_settings(
        num_negatives=num_negatives,
        range_min=range_min,
        range_max=range_max,
        max_score=max_score,
        min_score=min_score,
        absolute_margin=absolute_margin,
        relative_margin=relative_margin,
        sampling=sampling,
        ranks=ranks,
        include_positives=include_positives,
        exclude_self=exclude_self,
        candidate_depth=candidate_depth,
        seed=seed,
        backend=backend,
        similarity=similarity,
        num_threads=num_threads,
        progress=progress,
        query_chunk=query_chunk,
        corpus_chunk=corpus_chunk,
    )
    if corpus is None:
        corpus = queries
    engine = get_backend(_resolve_backend(settings.backend, queries))
    q = engine.prepare(queries, "queries")
    c = engine.prepare(corpus, "corpus")
    plan = plan_mining(settings, q.shape, c.shape, positives, query_ids, self_ids)
    candidates = _retrieve(engine, q, c, plan.depth, plan.side, settings.options)
    return _select(candidates, plan.side, settings, plan.range_max, plan.depth, plan.num_c)


# -- step 1: arguments -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Settings:
    """The checked arguments of :func:`mine_hard_negatives` that shape the selection."""

    num_negatives: int
    range_min: int
    range_max: int | None
    max_score: float | None
    min_score: float | None
    absolute_margin: float | None
    relative_margin: float | None
    sampling: str
    ranks: str
    include_positives: bool
    exclude_self: bool
    candidate_depth: int | None
    seed: int
    backend: str
    options: SearchOptions


def _check_settings(**args: Any) -> _Settings:
    """Checks each argument on its own; the first bad one (in this order) raises."""
    num_negatives = check_int("num_negatives", args["num_negatives"], 1)
    range_min = check_int("range_min", args["range_min"], 0)
    range_max = check_int("range_max", args["range_max"], 1, none=True)
    max_score = check_float("max_score", args["max_score"])
    min_score = check_float("min_score", args["min_score"])
    absolute_margin = check_float("absolute_margin", args["absolute_margin"])
    relative_margin = check_float("relative_margin", args["relative_margin"])
    sampling = choice("sampling", args["sampling"], ("top", "random"))
    ranks = choice("ranks", args["ranks"], ("filtered", "raw"))
    similarity = choice("similarity", args["similarity"], SIMILARITIES)
    backend = choice("backend", args["backend"], backend_names())
    for name in ("include_positives", "exclude_self"):
        if not isinstance(args[name], bool):
            raise TypeError(f"{name}: expected a bool, got {type(args[name]).__name__}")
    seed = check_seed(args["seed"])
    if seed is None:
        raise TypeError("seed: expected an int")
    threads = resolve_num_threads(check_num_threads(args["num_threads"]))
    candidate_depth = check_int("candidate_depth", args["candidate_depth"], 1, none=True)
    options = SearchOptions(
        similarity=similarity,
        num_threads=threads,
        progress=args["progress"],
        query_chunk=check_int("query_chunk", args["query_chunk"], 1),
        corpus_chunk=check_int("corpus_chunk", args["corpus_chunk"], 1),
    )
    return _Settings(
        num_negatives=num_negatives,
        range_min=range_min,
        range_max=range_max,
        max_score=max_score,
        min_score=min_score,
        absolute_margin=absolute_margin,
        relative_margin=relative_margin,
        sampling=sampling,
        ranks=ranks,
        include_positives=args["include_positives"],
        exclude_self=args["exclude_self"],
        candidate_depth=candidate_depth,
        seed=seed,
        backend=backend,
        options=options,
    )


def _resolve_backend(name: str, queries: Any) -> str:
    """``"auto"``: ``"torch"`` for tensors off the CPU (a GPU), else ``"rust"``."""
    if name != "auto":
        return name
    on_device = _torch_bridge.is_tensor(queries) and queries.device.type != "cpu"
    return "torch" if on_device else "rust"


def _check_shapes(queries: tuple[int, ...], corpus: tuple[int, ...], num_negatives: int) -> int:
    """The corpus's row count, after checking the shapes against each other."""
    (_, dim_q), (num_c, dim_c) = queries, corpus
    if dim_q != dim_c:
        raise ValueError(f"queries: has dimension {dim_q} but corpus has dimension {dim_c}")
    if num_c == 0:
        raise ValueError("corpus: is empty")
    if num_negatives > num_c:
        raise ValueError(f"num_negatives: is {num_negatives} but the corpus has only {num_c} rows")
    return int(num_c)


# -- step 2: the queries' positives, ids and own rows ------------------------------------------


@dataclass(frozen=True)
class _QuerySide:
    positive_values: np.ndarray  # CSR values, int64
    positive_offsets: np.ndarray  # CSR offsets, int64 [Q + 1]
    has_positives: bool
    max_positives: int
    keys: np.ndarray  # uint64 [Q]: the keys of the random streams
    own_rows: np.ndarray | None  # int64 [Q]: each query's own corpus row or -1


def _query_side(
    positives: Any, query_ids: Any, self_ids: Any, exclude_self: bool, num_q: int, num_c: int
) -> _QuerySide:
    if positives is None:
        pos_values = np.zeros(0, dtype=np.int64)
        pos_offsets = np.zeros(num_q + 1, dtype=np.int64)
    else:
        pos_values, pos_offsets = positives_csr(positives, num_q)
    global_ids = (
        np.arange(num_q, dtype=np.int64)
        if query_ids is None
        else ids_vector("query_ids", query_ids, num_q, lowest=0)
    )
    return _QuerySide(
        positive_values=pos_values,
        positive_offsets=pos_offsets,
        has_positives=positives is not None,
        max_positives=int(np.diff(pos_offsets).max()) if num_q else 0,
        keys=global_ids.astype(np.uint64),
        own_rows=_own_rows(self_ids, exclude_self, global_ids, num_c),
    )


def _own_rows(
    self_ids: Any, exclude_self: bool, global_ids: np.ndarray, num_c: int
) -> np.ndarray | None:
    """Each query's own corpus row (``-1``: none), from ``self_ids`` or ``exclude_self``."""
    if self_ids is not None:
        if exclude_self:
            raise ValueError("self_ids: give either self_ids or exclude_self=True, not both")
        own_rows = ids_vector("self_ids", self_ids, global_ids.shape[0], lowest=-1)
        if (own_rows >= num_c).any():
            bad = int(np.argmax(own_rows >= num_c))
            raise ValueError(
                f"self_ids[{bad}]: {int(own_rows[bad])} is not a row of the corpus "
                f"({num_c} rows); use -1 for a query that is not in the corpus"
            )
        return own_rows
    if not exclude_self:
        return None
    if (global_ids >= num_c).any():
        bad = int(np.argmax(global_ids >= num_c))
        raise ValueError(
            f"exclude_self: query {bad} has id {int(global_ids[bad])}, not a row of the "
            f"corpus ({num_c} rows); give query_ids or self_ids"
        )
    return global_ids


# -- step 3: the rank window -------------------------------------------------------------------


def _window(settings: _Settings, max_positives: int, num_c: int) -> tuple[int, int]:
    """``(range_max, depth)``: the window's end (derived when not given) and the candidates
    retrieved per query."""
    s = settings
    range_max = s.range_max
    if range_max is None:
        wide = s.absolute_margin is not None or s.relative_margin is not None
        wide = wide or s.max_score is not None
        range_max = s.range_min + s.num_negatives * (10 if wide else 1) + max_positives
    if s.range_min >= range_max:
        raise ValueError(
            f"range_min: must be smaller than range_max, got range_min={s.range_min} and "
            f"range_max={range_max}"
        )
    if s.num_negatives > range_max - s.range_min:
        raise ValueError(
            f"num_negatives: is {s.num_negatives} but the window range_min={s.range_min}.."
            f"range_max={range_max} holds only {range_max - s.range_min}"
        )
    depth = s.candidate_depth
    if depth is None:
        depth = range_max if s.ranks == "raw" else range_max + max_positives + 1
    return range_max, min(depth, num_c)


# -- step 4: retrieval -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidates:
    ids: np.ndarray  # int64 [Q, depth]
    scores: np.ndarray  # float32 [Q, depth]
    positive_scores: np.ndarray  # float32, one per positive


def _retrieve(
    backend: Backend, q: Any, c: Any, depth: int, side: _QuerySide, options: SearchOptions
) -> _Candidates:
    if q.shape[0] == 0:
        return _Candidates(
            ids=np.zeros((0, depth), dtype=np.int64),
            scores=np.zeros((0, depth), dtype=np.float32),
            positive_scores=np.zeros(0, dtype=np.float32),
        )
    ids, scores = backend.topk(q, c, depth, options)
    positive_scores = backend.pair_scores(
        q, c, side.positive_values, side.positive_offsets, options
    )
    return _Candidates(ids, scores, positive_scores)


# -- step 5: selection -------------------------------------------------------------------------


def _select(
    candidates: _Candidates,
    side: _QuerySide,
    settings: _Settings,
    range_max: int,
    depth: int,
    num_c: int,
) -> HardNegatives:
    """Negatives from the candidates, in Rust: filters in sentence-transformers' order, the
    window, top or seeded random sampling."""
    s = settings
    has = side.has_positives
    neg_ids, neg_scores, removed = _core.select_negatives(
        np.ascontiguousarray(candidates.ids, dtype=np.int64),
        np.ascontiguousarray(candidates.scores, dtype=np.float32),
        corpus_rows=num_c,
        keys=side.keys,
        num_negatives=s.num_negatives,
        range_min=s.range_min,
        range_max=range_max,
        positive_values=side.positive_values if has else None,
        positive_offsets=side.positive_offsets if has else None,
        positive_scores=candidates.positive_scores if has else None,
        self_ids=side.own_rows,
        absolute_margin=s.absolute_margin,
        relative_margin=s.relative_margin,
        max_score=s.max_score,
        min_score=s.min_score,
        sampling=s.sampling,  # type: ignore[arg-type]  # checked by _check_settings
        ranks=s.ranks,  # type: ignore[arg-type]
        include_positives=s.include_positives,
        seed=s.seed,
        num_threads=s.options.num_threads,
    )
    return HardNegatives(
        negative_ids=neg_ids,
        negative_scores=neg_scores,
        positive_ids=side.positive_values,
        positive_offsets=side.positive_offsets,
        positive_scores=np.asarray(candidates.positive_scores, dtype=np.float32),
        removed=dict(removed),
        range_max=range_max,
        depth=depth,
    )


# -- the steps for drivers that retrieve elsewhere (distributed mining) ------------------------


@dataclass(frozen=True)
class MiningPlan:
    """Everything selection needs besides the candidates: the checked arguments, the queries'
    positives, ids and own rows, the window end and the retrieval depth, for a corpus of
    ``num_c`` rows."""

    settings: _Settings
    side: _QuerySide
    range_max: int
    depth: int
    num_c: int


def check_settings(**args: Any) -> _Settings:
    """:func:`mine_hard_negatives`' keyword arguments, checked exactly as it checks them; the
    ones not given take its defaults. An unknown name raises :class:`TypeError`."""
    defaults = {
        name: p.default
        for name, p in inspect.signature(mine_hard_negatives).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in ("query_ids", "self_ids")
    }
    unknown = sorted(set(args) - set(defaults))
    if unknown:
        raise TypeError(f"{unknown[0]}: not an argument of mine_hard_negatives")
    return _check_settings(**{**defaults, **args})


def plan_mining(
    settings: _Settings,
    queries_shape: tuple[int, ...],
    corpus_shape: tuple[int, ...],
    positives: Any,
    query_ids: Any,
    self_ids: Any,
) -> MiningPlan:
    """Steps 2 and 3 of :func:`mine_hard_negatives` for a corpus of shape ``corpus_shape``
    (which a distributed driver knows without holding the corpus)."""
    num_c = _check_shapes(queries_shape, corpus_shape, settings.num_negatives)
    side = _query_side(
        positives, query_ids, self_ids, settings.exclude_self, queries_shape[0], num_c
    )
    range_max, depth = _window(settings, side.max_positives, num_c)
    return MiningPlan(settings, side, range_max, depth, num_c)


def select_rows(
    plan: MiningPlan,
    ids: np.ndarray,
    scores: np.ndarray,
    positive_scores: np.ndarray,
    start: int,
    stop: int,
) -> HardNegatives:
    """Step 5 of :func:`mine_hard_negatives` for the queries ``start:stop`` only, given their
    candidates (``ids``/``scores`` ``[stop - start, depth]``, ordered as the Rust search orders
    them) and the scores of *all* queries' positives. Selection of a query depends on nothing
    but its own candidates, positives, key and own row, so the slices of a split run equal the
    rows of one run. The positives of the result are the slice's."""
    side = plan.side
    lo, hi = int(side.positive_offsets[start]), int(side.positive_offsets[stop])
    part = _QuerySide(
        positive_values=side.positive_values[lo:hi],
        positive_offsets=side.positive_offsets[start : stop + 1] - lo,
        has_positives=side.has_positives,
        max_positives=side.max_positives,
        keys=side.keys[start:stop],
        own_rows=None if side.own_rows is None else side.own_rows[start:stop],
    )
    candidates = _Candidates(ids, scores, np.asarray(positive_scores[lo:hi], dtype=np.float32))
    return _select(candidates, part, plan.settings, plan.range_max, plan.depth, plan.num_c)
