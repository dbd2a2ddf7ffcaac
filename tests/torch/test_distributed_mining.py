"""Distributed exact mining: groups of 4 and of 2 gloo ranks (4 processes from one
``mp.spawn`` on localhost, the pairs as sub-groups whose ranks differ from the global ones),
the corpus sharded over them, give the single-process :func:`mine_hard_negatives` result bit
for bit — ids, scores, positive scores and removal counts — under every filter, both
rank-window modes, random sampling, self-exclusion, cosine and dot similarity, an empty shard,
and with the result gathered to every rank or to one.

The embeddings are small integers, so every dot product is exact and many scores tie: the
merge must break ties by corpus id across shard boundaries, as the single-process search does.
"""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest

from lmobjectives import mine_hard_negatives
from lmobjectives.mining._mine import check_settings, plan_mining, select_rows

Q, N, D = 23, 61, 6


def _data() -> tuple[np.ndarray, np.ndarray, list[list[int]], np.ndarray]:
    g = np.random.default_rng(7)
    corpus = g.integers(-2, 3, size=(N, D)).astype(np.float32)
    own = g.choice(N, size=Q, replace=False)
    queries = corpus[own].copy()
    queries[::3] += g.integers(-1, 2, size=queries[::3].shape).astype(np.float32)
    positives = [
        [int((r + 5) % N)] + ([int((r + 17) % N)] if i % 4 == 0 else []) for i, r in enumerate(own)
    ]
    self_ids = own.astype(np.int64)
    self_ids[1::5] = -1
    return queries, corpus, positives, self_ids


#: (name, keyword arguments): every selection rule, each on its own and some together.
CONFIGS: list[tuple[str, dict]] = [
    ("top", {"similarity": "dot", "num_negatives": 4}),
    ("cosine", {"num_negatives": 3, "range_min": 2}),
    ("abs margin", {"similarity": "dot", "absolute_margin": 0.0, "range_min": 1}),
    ("rel margin", {"similarity": "dot", "relative_margin": 0.1, "num_negatives": 2}),
    ("score window", {"similarity": "dot", "max_score": 6.0, "min_score": -1.0}),
    ("raw ranks", {"similarity": "dot", "ranks": "raw", "range_min": 3, "range_max": 9}),
    ("random", {"similarity": "dot", "sampling": "random", "seed": 11, "range_max": 12}),
    ("include positives", {"similarity": "dot", "include_positives": True}),
    ("self", {"similarity": "dot", "self": True, "num_negatives": 5}),
    ("depth", {"similarity": "dot", "candidate_depth": 7, "absolute_margin": 1.0}),
]


def _single(config: dict) -> object:
    queries, corpus, positives, self_ids = _data()
    kw = dict(config)
    if kw.pop("self", False):
        kw["self_ids"] = self_ids
    return mine_hard_negatives(queries, corpus, positives, num_threads=1, **kw)


def _run(group, rank: int, world: int, npy: str) -> dict:
    """Every case on ``group`` (this process is its rank ``rank`` of ``world``)."""
    from lmobjectives.torch.distributed_mining import (
        corpus_shard,
        mine_hard_negatives_distributed,
        shard_range,
    )

    queries, corpus, positives, self_ids = _data()
    shard = corpus_shard(npy, rank, world)

    def mine(q, c, p, **kw):
        return mine_hard_negatives_distributed(q, c, p, group=group, num_threads=1, **kw)

    got = {}
    for name, config in CONFIGS:
        kw = dict(config)
        if kw.pop("self", False):
            kw["self_ids"] = self_ids
        got[name] = mine(queries, shard, positives, **kw)
    # Uneven shards (rank 1's empty); the result on the last rank only.
    bounds = [0, N, N] if world == 2 else [0, 10, 10, 40, N]
    uneven = corpus[bounds[rank] : bounds[rank + 1]]
    got["uneven"] = mine(queries, uneven, positives, similarity="dot", result_on=world - 1)
    # Fewer queries than ranks: some ranks select nothing.
    got["one query"] = mine(queries[:1], shard, positives[:1], similarity="dot")
    # Ranks that disagree on the queries all raise (nobody hangs).
    try:
        mine(queries[: Q - (rank == 0)], shard, None)
        got["mismatch"] = None
    except ValueError as e:
        got["mismatch"] = str(e)
    # A NaN in rank 1's shard: rank 1 raises its own error, the others name rank 1.
    bad = np.array(shard)
    if rank == 1:
        bad[0, 0] = np.nan
    try:
        mine(queries, bad, positives)
        got["nan"] = None
    except ValueError as e:
        got["nan"] = str(e)
    got["slices"] = shard_range(N, rank, world)
    return got


def _worker(rank: int, init: str, out: str, npy: str) -> None:
    """Rank ``rank`` of 4: every case on the world, then on a group of 2 (ranks 0-1 and
    ranks 2-3, whose group ranks are not their global ranks)."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=4)
    try:
        pairs = [dist.new_group([0, 1]), dist.new_group([2, 3])]
        got = {
            "world": _run(None, rank, 4, npy),
            "pair": _run(pairs[rank // 2], rank % 2, 2, npy),
        }
        with open(f"{out}.{rank}", "wb") as f:
            pickle.dump(got, f)
    finally:
        dist.destroy_process_group()


def _same(a, b) -> None:
    assert np.array_equal(a.negative_ids, b.negative_ids)
    assert a.negative_scores.view(np.uint32).tolist() == b.negative_scores.view(np.uint32).tolist()
    assert a.positive_scores.view(np.uint32).tolist() == b.positive_scores.view(np.uint32).tolist()
    assert np.array_equal(a.positive_ids, b.positive_ids)
    assert np.array_equal(a.positive_offsets, b.positive_offsets)
    assert a.removed == b.removed
    assert (a.range_max, a.depth) == (b.range_max, b.depth)


@pytest.mark.slow
def test_sharded_mining_equals_single_process(tmp_path):
    """4 processes: groups of 4 and of 2 (twice)."""
    import torch.multiprocessing as mp

    npy = str(tmp_path / "corpus.npy")
    np.save(npy, _data()[1])
    out = str(tmp_path / "got")
    init = f"file://{tmp_path}/rendezvous"
    mp.spawn(_worker, args=(init, out, npy), nprocs=4, join=True)
    got = []
    for r in range(4):
        with open(f"{out}.{r}", "rb") as f:
            got.append(pickle.load(f))

    queries, corpus, positives, _ = _data()
    want = {name: _single(config) for name, config in CONFIGS}
    want["uneven"] = mine_hard_negatives(queries, corpus, positives, similarity="dot")
    want["one query"] = mine_hard_negatives(queries[:1], corpus, positives[:1], similarity="dot")
    for label, groups in (("world", [[0, 1, 2, 3]]), ("pair", [[0, 1], [2, 3]])):
        for members in groups:
            ranks = [got[g][label] for g in members]
            world = len(members)
            assert ranks[-1]["slices"][1] == N
            for name in [*want]:
                for r in range(world):
                    if name == "uneven" and r < world - 1:
                        assert ranks[r][name] is None  # the result went to the last rank
                    else:
                        _same(ranks[r][name], want[name])
            for r in range(world):
                assert "every rank must hold all the queries" in ranks[r]["mismatch"]
                if r == 1:
                    assert "not finite" in ranks[r]["nan"] or "NaN" in ranks[r]["nan"]
                else:
                    assert "mining failed on rank 1" in ranks[r]["nan"]


def test_the_data_exercises_every_rule():
    """Controls: the filters remove candidates, and exact ties straddle shard boundaries, so a
    merge that ignored ids (or kept the shards' order) would differ."""
    removed = {name: _single(config).removed for name, config in CONFIGS}
    assert removed["abs margin"]["absolute_margin"] > 0
    assert removed["rel margin"]["relative_margin"] > 0
    assert removed["score window"]["max_score"] > 0
    assert removed["score window"]["min_score"] > 0
    assert removed["self"]["self"] > 0
    assert removed["top"]["positives"] > 0
    assert removed["include positives"]["positives"] == 0
    queries, corpus, _, _ = _data()
    scores = queries @ corpus.T
    ties = 0
    for s in scores:
        top = np.sort(s)[::-1][:10]
        for value in np.unique(top):
            rows = np.flatnonzero(s == value)
            ties += int(rows.min() < N // 2 <= rows.max())
    assert ties > Q  # many tied groups cross the middle (a shard boundary of 2 and 4 ranks)


def test_selection_of_query_slices_equals_one_selection():
    """select_rows, the distributed driver's selection, on any split of the queries."""
    queries, corpus, positives, self_ids = _data()
    config = {"similarity": "dot", "sampling": "random", "absolute_margin": 0.5, "seed": 3}
    whole = mine_hard_negatives(queries, corpus, positives, self_ids=self_ids, **config)
    settings = check_settings(**config)
    plan = plan_mining(settings, queries.shape, corpus.shape, positives, None, self_ids)
    from lmobjectives import exact_topk

    ids, scores = exact_topk(queries, corpus, plan.depth, similarity="dot")
    for cut in (0, 1, 9, Q):
        parts = [
            select_rows(plan, ids[a:b], scores[a:b], whole.positive_scores, a, b)
            for a, b in ((0, cut), (cut, Q))
        ]
        got = np.concatenate([p.negative_ids for p in parts])
        assert np.array_equal(got, whole.negative_ids)
        summed = {k: parts[0].removed[k] + parts[1].removed[k] for k in whole.removed}
        assert summed == whole.removed
    with pytest.raises(TypeError, match="not_an_option"):
        check_settings(not_an_option=1)


def test_shard_range_and_corpus_shard(tmp_path):
    from lmobjectives.torch.distributed_mining import corpus_shard, shard_range

    for rows in (0, 1, 7, 61):
        for world in (1, 2, 3, 4):
            spans = [shard_range(rows, r, world) for r in range(world)]
            assert spans[0][0] == 0 and spans[-1][1] == rows
            assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
            sizes = [b - a for a, b in spans]
            assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match="rank"):
        shard_range(5, 2, 2)
    npy = tmp_path / "c.npy"
    corpus = _data()[1]
    np.save(npy, corpus)
    got = corpus_shard(npy, 1, 3)
    assert isinstance(got, np.memmap)
    assert np.array_equal(got, corpus[21:41])
    with pytest.raises(ValueError, match="rank"):
        corpus_shard(npy)  # no process group and no rank given


def test_a_group_of_one_and_argument_errors(tmp_path):
    """In-process (a gloo group of one): the single-process result, no queries, bad
    arguments named."""
    import torch.distributed as dist

    from lmobjectives.torch.distributed_mining import mine_hard_negatives_distributed

    queries, corpus, positives, self_ids = _data()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/r", rank=0, world_size=1)
    try:
        got = mine_hard_negatives_distributed(
            queries, corpus, positives, self_ids=self_ids, sampling="random", result_on=0
        )
        _same(
            got,
            mine_hard_negatives(queries, corpus, positives, self_ids=self_ids, sampling="random"),
        )
        empty = mine_hard_negatives_distributed(queries[:0], corpus, [], num_negatives=2)
        assert empty.negative_ids.shape == (0, 2)
        with pytest.raises(ValueError, match="result_on"):
            mine_hard_negatives_distributed(queries, corpus, positives, result_on=1)
        with pytest.raises(ValueError, match="positives: id 99"):
            mine_hard_negatives_distributed(queries, corpus, [[99]] * Q)
        with pytest.raises(TypeError, match="bogus"):
            mine_hard_negatives_distributed(queries, corpus, positives, bogus=1)
    finally:
        dist.destroy_process_group()
    with pytest.raises(ValueError, match="not initialised"):
        mine_hard_negatives_distributed(queries, corpus, positives)
