"""Fuzzing mining (search, selection, backends) and ``lmobjectives.rl`` (issue 15)."""

from __future__ import annotations

import numpy as np
from fuzz_harness import budget, run
from hypothesis import given
from hypothesis import strategies as st
from strategies import hostile_float, hostile_int

import lmobjectives as L
from lmobjectives import rl


@st.composite
def embeddings(draw):
    q = draw(st.integers(0, 6))
    c = draw(st.integers(0, 12))
    d = draw(st.integers(1, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1.0, 1.0, 1.0, 1e-30, 1e20, 1e37]))  # finite in float32
    queries = (np.clip(rng.standard_normal((q, d)), -3, 3) * scale).astype(np.float32)
    corpus = (np.clip(rng.standard_normal((c, d)), -3, 3) * scale).astype(np.float32)
    if draw(st.integers(0, 15)) == 0 and corpus.size:
        corpus.flat[0] = draw(st.sampled_from([np.nan, np.inf]))
    return queries, corpus


@budget(800)
@given(
    emb=embeddings(),
    k=hostile_int(1, 14),
    similarity=st.sampled_from(["cosine", "dot"]),
)
def test_exact_topk(emb, k, similarity):
    queries, corpus = emb

    def check(out):
        ids, scores = out
        assert ids.shape == scores.shape == (len(queries), k)
        assert ((ids >= -1) & (ids < len(corpus))).all()
        valid = ids >= 0
        # each row ordered by score, best first
        for r in range(len(ids)):
            s = scores[r][valid[r]]
            assert (np.diff(s) <= 1e-6 * (1 + np.abs(s[:-1]))).all()

    run("exact_topk", lambda: L.exact_topk(queries, corpus, k, similarity=similarity), check)


@budget(800)
@given(
    emb=embeddings(),
    num_negatives=hostile_int(1, 5),
    range_min=hostile_int(0, 4),
    range_max=st.one_of(st.none(), hostile_int(1, 12)),
    max_score=st.one_of(st.none(), hostile_float(-1.0, 1.0)),
    positives=st.sampled_from(["lists", "array", "csr", "tuple-of-lists", "bad"]),
    sampling=st.sampled_from(["top", "random"]),
)
def test_mine_hard_negatives(
    emb, num_negatives, range_min, range_max, max_score, positives, sampling
):
    queries, corpus = emb
    nq, nc = len(queries), len(corpus)
    pos_ids = [i % max(nc, 1) for i in range(nq)]
    given_pos = {
        "lists": [[p] for p in pos_ids],
        "array": np.array(pos_ids, dtype=np.int64),
        "csr": (np.array(pos_ids, dtype=np.int64), np.arange(nq + 1, dtype=np.int64)),
        "tuple-of-lists": tuple([p] for p in pos_ids),
        "bad": [[0.9]] * nq if nq else [["3"]],
    }[positives]

    def call():
        return L.mine_hard_negatives(
            queries,
            corpus,
            given_pos,
            num_negatives=num_negatives,
            range_min=range_min,
            range_max=range_max,
            max_score=max_score,
            sampling=sampling,
            backend="numpy" if nc < 0 else "auto",
        )

    def check(res):
        assert positives != "bad", "non-integer ids were accepted"
        neg = np.asarray(res.negative_ids)
        assert neg.shape[0] == nq
        for q in range(nq):
            row = [x for x in neg[q].tolist() if x >= 0]
            assert pos_ids[q] not in row, "a positive was chosen as a negative"
            assert len(set(row)) == len(row), "a negative repeats"
            assert all(0 <= x < nc for x in row)
        if max_score is not None and hasattr(res, "negative_scores"):
            s = np.asarray(res.negative_scores)[neg >= 0]
            assert (s <= max_score + 1e-5).all()

    run("mine_hard_negatives", call, check)


@st.composite
def reward_arrays(draw):
    rows = draw(st.integers(0, 4))
    cols = draw(st.integers(0, 8))
    vals = draw(
        st.lists(
            st.floats(-10, 10) | st.sampled_from([np.nan, np.inf, 1e300]),
            min_size=rows * cols,
            max_size=rows * cols,
        )
    )
    return np.array(vals, dtype=np.float64).reshape(rows, cols)


@budget(700)
@given(r=reward_arrays(), gamma=hostile_float(0.0, 1.0), lam=hostile_float(0.0, 1.0))
def test_rl_returns_and_gae(r, gamma, lam):
    def check_returns(out):
        out = np.asarray(out)
        assert out.shape == r.shape and np.isfinite(out).all()

    run("rl.discounted_returns", lambda: rl.discounted_returns(r, gamma=gamma), check_returns)
    run("rl.gae", lambda: rl.gae(r, np.zeros_like(r), gamma=gamma, lam=lam))
    run("rl.whiten", lambda: rl.whiten(r))


@budget(700)
@given(
    lengths=st.lists(hostile_int(0, 12), max_size=5),
    num_rollouts=hostile_int(1, 5),
    order=st.sampled_from(["prefix_major", "sample_major", "other"]),
)
def test_rl_rollout_plan(lengths, num_rollouts, order):
    def check(plan):
        expected = sum(max(int(n) - 1, 0) * int(num_rollouts) for n in lengths)
        assert len(plan.sample) == expected
        assert (plan.prefix_length >= 1).all()

    run("rl.rollout_plan", lambda: rl.rollout_plan(lengths, num_rollouts, order=order), check)


@budget(700)
@given(
    ids=st.lists(st.lists(st.integers(0, 20), min_size=3, max_size=3), max_size=4),
    eos=hostile_int(0, 20),
    start=hostile_int(0, 3),
)
def test_rl_completion_mask(ids, eos, start):
    arr = np.array(ids, dtype=np.int64).reshape(len(ids), 3)

    def check(out):
        mask = np.asarray(out.mask)
        assert mask.shape == arr.shape
        assert not mask[:, : int(start)].any(), "a prompt token marked as an action"

    run("rl.completion_mask", lambda: rl.completion_mask(arr, eos, completion_start=start), check)
