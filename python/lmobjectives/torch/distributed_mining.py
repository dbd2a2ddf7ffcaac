"""Exact hard-negative mining with the corpus sharded over ``torch.distributed`` ranks.

Every rank holds **all the queries** and **one shard of the corpus** (the shards, in rank order,
make the corpus: rank 0's rows are ids ``0..n0-1``, rank 1's follow, and so on). Each rank

1. retrieves the ``depth`` best rows of its shard for every query (the Rust exact top-k, or
   any registered backend) and scores the positives that fall in its shard;
2. sends the candidates of query slice ``r`` to rank ``r`` (one ``gather`` per rank; query
   slices are the even split of ``0..Q``), which merges the ``world × depth`` candidates of
   each of its queries by score, descending, equal scores by the lower corpus id — the order
   of the single-process search — and keeps the first ``depth``;
3. selects the negatives of its query slice with exactly the code of
   :func:`~lmobjectives.mine_hard_negatives` (positives, own row, margins, score window,
   rank window, sampling keyed by the global query id);
4. gathers the result to every rank (``result_on="all"``) or to one rank.

A score is the same fused multiply-add chain whatever the shard (the Rust kernel's contract),
so the merged candidates are the single-process candidates, bit for bit, and so is the result:
ids, scores and the ``removed`` counts. Memory per rank: its shard (memory-mapped: only the
pages read), the queries, and ``O(Q × depth)`` candidates — never the corpus.

Launch one process per rank (``torchrun``, or ``torch.multiprocessing.spawn``) and call
:func:`mine_hard_negatives_distributed` on every rank with the same queries, positives and
options; :func:`corpus_shard` maps a rank's rows of one ``.npy`` file (or give each rank its
own file).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Literal, TypeVar, cast

import numpy as np
import torch
import torch.distributed as dist

from lmobjectives.mining._backends import get_backend
from lmobjectives.mining._mine import (
    MiningPlan,
    _resolve_backend,
    check_settings,
    plan_mining,
    select_rows,
)
from lmobjectives.mining._result import HardNegatives

__all__ = ["corpus_shard", "mine_hard_negatives_distributed", "shard_range"]

_T = TypeVar("_T")


def shard_range(rows: int, rank: int, world_size: int) -> tuple[int, int]:
    """``(start, stop)``: rank ``rank``'s rows of ``rows`` split evenly over ``world_size``
    ranks in order (the first ``rows % world_size`` ranks get one row more).

    Example:
        >>> from lmobjectives.torch.distributed_mining import shard_range
        >>> [shard_range(10, r, 4) for r in range(4)]
        [(0, 3), (3, 6), (6, 8), (8, 10)]
    """
    for name, v, lo in (("rows", rows, 0), ("world_size", world_size, 1), ("rank", rank, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name}: expected an int >= {lo}, got {v!r}")
    if rank >= world_size:
        raise ValueError(f"rank: {rank} is not below world_size={world_size}")
    base, extra = divmod(int(rows), int(world_size))
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def corpus_shard(
    path: str | os.PathLike[str], rank: int | None = None, world_size: int | None = None
) -> np.ndarray:
    """Rank ``rank``'s rows (:func:`shard_range`) of the ``[N, d]`` embeddings in the ``.npy``
    file ``path``, memory-mapped: nothing is read until mining reads it, and a rank reads only
    its rows. ``rank``/``world_size`` default to the process group's."""
    if rank is None or world_size is None:
        if not dist.is_initialized():
            raise ValueError("rank: give rank and world_size, or initialise torch.distributed")
        rank = dist.get_rank() if rank is None else rank
        world_size = dist.get_world_size() if world_size is None else world_size
    try:
        whole = np.load(os.fspath(path), mmap_mode="r")
    except (OSError, ValueError) as e:
        raise ValueError(f"path: could not load {os.fspath(path)!r} as a .npy file: {e}") from e
    if whole.ndim != 2:
        raise ValueError(f"path: expected [rows, dim] embeddings, got shape {whole.shape}")
    start, stop = shard_range(whole.shape[0], rank, world_size)
    return whole[start:stop]


# long: public signature and its 50-line docstring; the body is one call per step
def mine_hard_negatives_distributed(
    queries: Any,
    corpus: Any,
    positives: Any = None,
    *,
    query_ids: Any = None,
    self_ids: Any = None,
    result_on: Literal["all"] | int = "all",
    group: Any = None,
    **options: Any,
) -> HardNegatives | None:
    """:func:`~lmobjectives.mine_hard_negatives` with the corpus sharded over the ranks of
    ``group``: the same result, bit for bit, as one process mining the whole corpus.

    Call it on every rank of ``group`` with the same ``queries``, ``positives``,
    ``query_ids``, ``self_ids`` and ``options``; only ``corpus`` differs.

    Args:
        queries: ``[Q, d]`` embeddings (array, ``.npy`` path or CPU tensor) — all the queries,
            on every rank.
        corpus: this rank's shard of the corpus ``[n_rank, d]`` (array, ``.npy`` path, CPU
            tensor; e.g. :func:`corpus_shard`). The shards in rank order are the corpus, so
            corpus ids (positives, ``self_ids``, the result) are global. A shard may be empty.
        positives, query_ids, self_ids: as for :func:`~lmobjectives.mine_hard_negatives`,
            in global corpus ids.
        result_on: ``"all"`` (default): every rank returns the whole :class:`HardNegatives`;
            a rank number: that rank returns it and the others return ``None``.
        group: the process group (default: the world).
        **options: any keyword argument of :func:`~lmobjectives.mine_hard_negatives`
            (``num_negatives``, ``range_min``, ``range_max``, the margins and score bounds,
            ``sampling``, ``ranks``, ``include_positives``, ``exclude_self``,
            ``candidate_depth``, ``similarity``, ``seed``, ``backend``, ``num_threads``,
            ``progress``), with the same meaning. Give ``num_threads`` (the cores of one
            rank) when several ranks share a machine. Results equal the single-process ones
            for the ``"rust"`` backend (the default on CPU tensors and arrays); other
            backends break score ties in their own order.

    Returns:
        A :class:`HardNegatives` (``None`` on the ranks other than ``result_on``).

    Collectives on ``group``: one ``all_gather`` of the shapes (every rank checks the same
    shapes), one small ``all_gather`` after each local step (loading, planning, searching,
    selecting) so that an error on one rank — a bad path, a NaN in its shard — raises on
    every rank instead of leaving the others waiting, one ``all_reduce`` of the positive
    scores, two ``gather`` per rank (the candidates), one ``all_reduce`` of the removal
    counts and two ``all_gather`` (or ``gather``) of the negatives. With the NCCL backend
    the tensors travel through the current CUDA device.
    """
    if not dist.is_initialized():
        raise ValueError("group: torch.distributed is not initialised (init_process_group)")
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    if result_on != "all" and (
        isinstance(result_on, bool) or not isinstance(result_on, int) or not 0 <= result_on < world
    ):
        raise ValueError(
            f"result_on: expected 'all' or a rank in 0..{world - 1}, got {result_on!r}"
        )
    settings = check_settings(**options)
    comm = _Comm(group, rank, world)
    engine = get_backend(_resolve_backend(settings.backend, queries))
    q, c = comm.each(lambda: (engine.prepare(queries, "queries"), engine.prepare(corpus, "corpus")))
    offsets, dim = comm.shard_offsets(tuple(q.shape), tuple(c.shape))
    num_c, offset = int(offsets[-1]), int(offsets[rank])
    plan = comm.each(
        lambda: plan_mining(settings, tuple(q.shape), (num_c, dim), positives, query_ids, self_ids)
    )
    ids, scores, local_scores = comm.each(
        lambda: (
            *_shard_candidates(engine, q, c, plan, offset),
            _local_positive_scores(engine, q, c, plan, offset),
        )
    )
    positive_scores = comm.all_reduce_max(local_scores)
    start, stop = shard_range(q.shape[0], rank, world)
    merged_ids, merged_scores = comm.merge(ids, scores, plan.depth, q.shape[0])
    part = comm.each(
        lambda: select_rows(plan, merged_ids, merged_scores, positive_scores, start, stop)
    )
    return comm.assemble(part, plan, positive_scores, q.shape[0], result_on)


def _shard_candidates(
    engine: Any, q: Any, c: Any, plan: MiningPlan, offset: int
) -> tuple[np.ndarray, np.ndarray]:
    """This shard's ``depth`` best rows per query, as global ids, padded to ``depth`` columns
    with id ``-1`` and score ``-inf`` (which sort last and selection skips)."""
    num_q, rows = q.shape[0], c.shape[0]
    ids = np.full((num_q, plan.depth), -1, dtype=np.int64)
    scores = np.full((num_q, plan.depth), -np.inf, dtype=np.float32)
    k = min(plan.depth, rows)
    if num_q and k:
        local_ids, local_scores = engine.topk(q, c, k, plan.settings.options)
        ids[:, :k] = np.asarray(local_ids, dtype=np.int64) + offset
        scores[:, :k] = np.asarray(local_scores, dtype=np.float32)
    return ids, scores


def _local_positive_scores(
    engine: Any, q: Any, c: Any, plan: MiningPlan, offset: int
) -> np.ndarray:
    """The score of every query with each of its positives that lies in this shard; ``-inf``
    for the others (an ``all_reduce(MAX)`` over the ranks then fills in every one)."""
    side = plan.side
    values = side.positive_values
    out = np.full(values.shape[0], -np.inf, dtype=np.float32)
    if values.size and ((values < 0) | (values >= plan.num_c)).any():
        bad = int(values[(values < 0) | (values >= plan.num_c)][0])
        raise ValueError(
            f"positives: id {bad} is not a corpus row (the corpus has {plan.num_c} rows)"
        )
    mine = (values >= offset) & (values < offset + c.shape[0])
    if mine.any():
        owner = np.repeat(np.arange(q.shape[0]), np.diff(side.positive_offsets))[mine]
        local_offsets = np.zeros(q.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(owner, minlength=q.shape[0]), out=local_offsets[1:])
        local_values = np.ascontiguousarray(values[mine] - offset, dtype=np.int64)
        out[mine] = engine.pair_scores(q, c, local_values, local_offsets, plan.settings.options)
    return out


class _Comm:
    """The collectives of one call, on ``group``'s device (the current CUDA device for NCCL,
    else the CPU)."""

    def __init__(self, group: Any, rank: int, world: int) -> None:
        self.group, self.rank, self.world = group, rank, world
        nccl = dist.get_backend(group) == "nccl"
        self.device = torch.device("cuda", torch.cuda.current_device()) if nccl else None

    def _t(self, x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(x))
        return t if self.device is None else t.to(self.device)

    def each(self, step: Callable[[], _T]) -> _T:
        """Runs one local step on every rank, then agrees on its outcome (one ``all_gather``):
        if it raised on any rank, every rank raises — the rank's own error where it failed,
        else a :class:`ValueError` naming the ranks that failed — so no rank is left waiting
        in a collective for a rank that is gone."""
        error: Exception | None = None
        result: Any = None
        try:
            result = step()
        except Exception as e:  # re-raised below, on every rank alike
            error = e
        failed = [
            r
            for r, f in enumerate(
                self.all_gather(np.array([int(error is not None)], dtype=np.int64))
            )
            if f[0]
        ]
        if error is not None:
            raise error
        if failed:
            raise ValueError(
                f"corpus: mining failed on rank{'s' if len(failed) > 1 else ''} "
                f"{', '.join(map(str, failed))} (see {'their' if len(failed) > 1 else 'its'} error)"
            )
        return cast(_T, result)

    def all_gather(self, x: np.ndarray) -> list[np.ndarray]:
        parts = [torch.empty_like(self._t(x)) for _ in range(self.world)]
        dist.all_gather(parts, self._t(x), group=self.group)
        return [p.cpu().numpy() for p in parts]

    def all_reduce_max(self, x: np.ndarray) -> np.ndarray:
        t = self._t(x)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.group)
        return t.cpu().numpy()

    def all_reduce_sum(self, x: np.ndarray) -> np.ndarray:
        t = self._t(x)
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.group)
        return t.cpu().numpy()

    def shard_offsets(
        self, q_shape: tuple[int, ...], c_shape: tuple[int, ...]
    ) -> tuple[np.ndarray, int]:
        """The shards' first global ids (``[world + 1]``, the last is the corpus size) and the
        dimension, after checking that every rank has the same queries' shape and dimension."""
        mine = np.array([*q_shape, *c_shape], dtype=np.int64)
        shapes = self.all_gather(mine)
        for r, s in enumerate(shapes):
            if tuple(s[:2]) != tuple(shapes[0][:2]):
                raise ValueError(
                    f"queries: rank {r} has shape {tuple(s[:2])} but rank 0 has "
                    f"{tuple(shapes[0][:2])}; every rank must hold all the queries"
                )
            if s[3] != shapes[0][1]:
                raise ValueError(
                    f"corpus: rank {r}'s shard has dimension {int(s[3])} but the queries have "
                    f"{int(shapes[0][1])}"
                )
        offsets = np.zeros(self.world + 1, dtype=np.int64)
        np.cumsum([int(s[2]) for s in shapes], out=offsets[1:])
        return offsets, int(shapes[0][1])

    def merge(
        self, ids: np.ndarray, scores: np.ndarray, depth: int, num_q: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rank ``r`` receives every rank's candidates for its query slice and keeps, per
        query, the ``depth`` best by (score descending, corpus id ascending): the order of the
        single-process search (equal scores, ``-0.0`` and ``0.0`` included, by id)."""
        mine_ids: list[torch.Tensor] = []
        mine_scores: list[torch.Tensor] = []
        for dst in range(self.world):
            start, stop = shard_range(num_q, dst, self.world)
            for src, out in ((ids, mine_ids), (scores, mine_scores)):
                t = self._t(src[start:stop])
                bufs = (
                    [torch.empty_like(t) for _ in range(self.world)] if dst == self.rank else None
                )
                dist.gather(t, bufs, dst=self._global(dst), group=self.group)
                if bufs is not None:
                    out.extend(bufs)
        all_ids = np.concatenate([t.cpu().numpy() for t in mine_ids], axis=1)
        all_scores = np.concatenate([t.cpu().numpy() for t in mine_scores], axis=1)
        # -score puts the best first; np.lexsort's comparisons treat -0.0 == 0.0 as Rust's
        # partial_cmp does, and the id key breaks the tie.
        order = np.lexsort((all_ids, -all_scores), axis=-1)[:, :depth]
        return (
            np.ascontiguousarray(np.take_along_axis(all_ids, order, axis=1)),
            np.ascontiguousarray(np.take_along_axis(all_scores, order, axis=1)),
        )

    def _global(self, group_rank: int) -> int:
        if self.group is None:
            return group_rank
        return int(dist.get_global_rank(self.group, group_rank))

    def assemble(
        self,
        part: HardNegatives,
        plan: MiningPlan,
        positive_scores: np.ndarray,
        num_q: int,
        result_on: Literal["all"] | int,
    ) -> HardNegatives | None:
        """Every rank's query slice put together, on every rank or on ``result_on``."""
        keys = list(part.removed)  # the Rust order, the same on every rank
        removed = self.all_reduce_sum(np.array([part.removed[k] for k in keys], dtype=np.int64))
        n = plan.settings.num_negatives
        rows = shard_range(num_q, 0, self.world)[1] - shard_range(num_q, 0, self.world)[0]
        pad_ids = np.full((rows, n), -1, dtype=np.int64)
        pad_scores = np.full((rows, n), -np.inf, dtype=np.float32)
        pad_ids[: part.negative_ids.shape[0]] = part.negative_ids
        pad_scores[: part.negative_scores.shape[0]] = part.negative_scores
        if result_on == "all":
            all_ids, all_scores = self.all_gather(pad_ids), self.all_gather(pad_scores)
        else:
            all_ids, all_scores = (
                self._gather_to(pad_ids, result_on),
                self._gather_to(pad_scores, result_on),
            )
            if self.rank != result_on:
                return None
        sizes = [
            stop - start
            for start, stop in (shard_range(num_q, r, self.world) for r in range(self.world))
        ]
        return HardNegatives(
            negative_ids=np.concatenate([a[:s] for a, s in zip(all_ids, sizes, strict=True)]),
            negative_scores=np.concatenate([a[:s] for a, s in zip(all_scores, sizes, strict=True)]),
            positive_ids=plan.side.positive_values,
            positive_offsets=plan.side.positive_offsets,
            positive_scores=positive_scores,
            removed={k: int(removed[i]) for i, k in enumerate(keys)},
            range_max=plan.range_max,
            depth=plan.depth,
        )

    def _gather_to(self, x: np.ndarray, dst: int) -> list[np.ndarray]:
        t = self._t(x)
        bufs = [torch.empty_like(t) for _ in range(self.world)] if self.rank == dst else None
        dist.gather(t, bufs, dst=self._global(dst), group=self.group)
        return [] if bufs is None else [b.cpu().numpy() for b in bufs]
