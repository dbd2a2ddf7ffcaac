"""Hard-negative mining: exact retrieval, selection semantics, parity with faiss and
sentence-transformers, determinism, memory-mapped and float16 corpora, progress, Ctrl-C, errors.
"""

from __future__ import annotations

import _thread
import doctest
import importlib
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import faiss
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lmobjectives
from lmobjectives import HardNegatives, _core, exact_topk, mine_hard_negatives

from reference_streams import mining_sample


def gaussian(rows: int, dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)


def reference_topk(q: np.ndarray, c: np.ndarray, k: int, similarity: str):
    """float64 brute force: (ids, scores, the float64 score matrix)."""
    q64, c64 = q.astype(np.float64), c.astype(np.float64)
    if similarity == "cosine":
        q64 /= np.maximum(np.linalg.norm(q64, axis=1, keepdims=True), 1e-12)
        c64 /= np.maximum(np.linalg.norm(c64, axis=1, keepdims=True), 1e-12)
    s = q64 @ c64.T
    order = np.lexsort((np.broadcast_to(np.arange(c.shape[0]), s.shape), -s), axis=1)[:, :k]
    return order, np.take_along_axis(s, order, 1), s


def assert_topk_matches(ids, scores, q, c, k, similarity, gap=1e-5):
    """ids equal the float64 reference wherever the ranking is decided by more than `gap`."""
    ref_ids, ref_scores, full = reference_topk(q, c, k, similarity)
    scale = max(1.0, float(np.abs(full).max()))
    np.testing.assert_allclose(scores, ref_scores, rtol=0, atol=2e-6 * scale)
    srt = -np.sort(-full, axis=1)
    checked = 0
    for i in range(q.shape[0]):
        # Positions j whose score is separated from both neighbours in the full ranking.
        row = srt[i]
        for j in range(k):
            lo = row[j + 1] if j + 1 < row.shape[0] else -np.inf
            hi = row[j - 1] if j > 0 else np.inf
            if row[j] - lo > gap * scale and hi - row[j] > gap * scale:
                assert ids[i, j] == ref_ids[i, j], (i, j)
                checked += 1
    assert checked > 0.9 * ids.size  # the data really has few near-ties


# -- retrieval ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nq", "n", "d", "k"),
    [(1, 50, 8, 1), (7, 3000, 64, 10), (300, 2000, 32, 99), (5, 40, 3, 40), (64, 700, 384, 11)],
)
@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_topk_equals_float64_brute_force(nq, n, d, k, similarity):
    q, c = gaussian(nq, d, 1), gaussian(n, d, 2)
    ids, scores = exact_topk(q, c, k, similarity=similarity)
    assert ids.dtype == np.int64
    assert scores.dtype == np.float32
    assert ids.shape == (nq, k)
    assert_topk_matches(ids, scores, q, c, k, similarity)
    assert (np.diff(scores, axis=1) <= 0).all()


def test_identical_bits_for_any_tiling_thread_count_and_instruction_set():
    q, c = gaussian(70, 37, 3), gaussian(1500, 37, 4)
    c[100:110] = c[5]  # planted exact ties
    ref = _core.search_topk(q, c, k=25, similarity="cosine", num_threads=1)
    for isa in _core.mining_isas():
        for plan in [
            {},
            {"query_block": 1, "corpus_tile": 1, "span": 7},
            {"query_block": 13, "corpus_tile": 100, "span": 300},
            {"query_block": 4096, "corpus_tile": 4096},
        ]:
            for threads in (1, 2, 5):
                ids, scores = _core.search_topk(
                    q, c, k=25, similarity="cosine", num_threads=threads, isa=isa, **plan
                )
                np.testing.assert_array_equal(ids, ref[0])
                assert scores.tobytes() == ref[1].tobytes()


def test_ties_go_to_the_lower_id():
    c = np.tile(gaussian(1, 16, 5), (50, 1))
    q = gaussian(3, 16, 6)
    ids, scores = exact_topk(q, c, 10, similarity="dot")
    np.testing.assert_array_equal(ids, np.tile(np.arange(10), (3, 1)))
    assert (scores == scores[:, :1]).all()


@pytest.mark.parametrize(("nq", "k"), [(3, 1), (3, 10), (300, 100), (2, 300)])
def test_same_ids_as_faiss_index_flat_ip(nq, k):
    # nq·d below and above faiss' BLAS threshold (128,000); k over its heap/reservoir switch.
    d = 512
    q, c = gaussian(nq, d, 7), gaussian(4000, d, 8)
    index = faiss.IndexFlatIP(d)
    index.add(c)
    f_scores, f_ids = index.search(q, k)
    ids, scores = exact_topk(q, c, k, similarity="dot")
    np.testing.assert_allclose(scores, f_scores, rtol=0, atol=1e-3)
    same = ids == f_ids
    # Wherever the two disagree, the scores are tied within float32 rounding.
    assert same.mean() > 0.99
    np.testing.assert_allclose(scores[~same], f_scores[~same], atol=1e-3)


def test_float16_storage_equals_its_float32_widening():
    q16 = gaussian(20, 48, 9).astype(np.float16)
    c16 = gaussian(500, 48, 10).astype(np.float16)
    a = exact_topk(q16, c16, 15)
    b = exact_topk(q16.astype(np.float32), c16.astype(np.float32), 15)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1].tobytes() == b[1].tobytes()


def test_memory_mapped_npy_corpus(tmp_path):
    q, c = gaussian(30, 24, 11), gaussian(900, 24, 12)
    path = tmp_path / "corpus.npy"
    np.save(path, c)
    a = exact_topk(q, str(path), 7)
    b = exact_topk(q, np.load(path, mmap_mode="r"), 7)
    ref = exact_topk(q, c, 7)
    for x in (a, b):
        np.testing.assert_array_equal(x[0], ref[0])
        np.testing.assert_array_equal(x[1], ref[1])
    mined = mine_hard_negatives(q, path, np.arange(30), num_negatives=3)
    want = mine_hard_negatives(q, c, np.arange(30), num_negatives=3).negative_ids
    np.testing.assert_array_equal(mined.negative_ids, want)
    on_torch = mine_hard_negatives(q, path, np.arange(30), num_negatives=3, backend="torch")
    np.testing.assert_array_equal(on_torch.negative_ids, want)


def test_outputs_are_handed_over_without_copies_and_inputs_untouched():
    q, c = gaussian(10, 8, 13), gaussian(100, 8, 14)
    q0, c0 = q.copy(), c.copy()
    ids, scores = exact_topk(q, c, 5)
    for arr in (ids, scores):
        assert arr.base is not None
        assert arr.flags.c_contiguous
        assert arr.flags.writeable
        assert torch.from_numpy(arr).data_ptr() == arr.ctypes.data
    mined = mine_hard_negatives(q, c, np.arange(10), num_negatives=2)
    assert mined.negative_ids.base is not None
    np.testing.assert_array_equal(q, q0)
    np.testing.assert_array_equal(c, c0)


def test_progress_bar(capsys):
    q, c = gaussian(40, 16, 15), gaussian(5000, 16, 16)
    exact_topk(q, c, 3, progress=True)
    err = capsys.readouterr().err
    assert "mining:" in err
    assert "task" in err
    assert err.endswith("\n")
    exact_topk(q, c, 3, progress=False)
    assert capsys.readouterr().err == ""


def test_ctrl_c_stops_a_long_search_between_chunks():
    q, c = gaussian(4000, 256, 17), gaussian(60_000, 256, 18)  # ~120 GFLOP: many seconds
    timer = threading.Timer(0.3, _thread.interrupt_main)
    t0 = time.perf_counter()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        exact_topk(q, c, 10, num_threads=1)
    elapsed = time.perf_counter() - t0
    timer.cancel()
    # A full run takes well over 10 s on one thread; stopping takes one chunk.
    assert elapsed < 10, elapsed


def test_the_search_releases_the_gil():
    q, c = gaussian(1000, 128, 19), gaussian(20_000, 128, 20)
    ticks = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.001)

    t = threading.Thread(target=tick)
    t.start()
    try:
        start = len(ticks)
        _core.search_topk(q, c, k=5, num_threads=1, query_block=1024, span=1 << 20)
        during = len(ticks) - start
    finally:
        stop.set()
        t.join()
    assert during > 5  # the other thread ran while the (single-chunk) search did


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"k": 0}, ValueError, "k: expected an int >= 1"),
        ({"k": 101}, ValueError, "k: is 101 but the corpus has only 100 rows"),
        ({"similarity": "l2"}, ValueError, "similarity: must be one of"),
    ],
)
def test_topk_argument_errors(kwargs, error, match):
    args = {"k": 3, **kwargs}
    with pytest.raises(error, match=match):
        exact_topk(gaussian(4, 8, 0), gaussian(100, 8, 1), **args)


@pytest.mark.parametrize("where", ["queries", "corpus"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_non_finite_embeddings_name_the_row(where, value, similarity):
    q, c = gaussian(6, 8, 0), gaussian(200, 8, 1)
    (q if where == "queries" else c)[3, 5] = value
    with pytest.raises(lmobjectives.InvalidArgumentError, match=rf"{where}: row 3 .* column 5"):
        exact_topk(q, c, 4, similarity=similarity)
    with pytest.raises(ValueError, match=rf"{where}: row 3"):
        mine_hard_negatives(q, c, np.arange(6), similarity=similarity)


def test_shape_and_dtype_errors():
    q, c = gaussian(4, 8, 0), gaussian(20, 8, 1)
    with pytest.raises(ValueError, match="queries: has dimension 8 but corpus has dimension 7"):
        exact_topk(q, c[:, :7], 2)
    with pytest.raises(ValueError, match=r"queries: expected a 2-D array"):
        exact_topk(q[0], c, 2)
    with pytest.raises(TypeError, match="corpus: expected float32 or float16"):
        exact_topk(q, c.astype(np.complex64), 2)
    with pytest.raises(TypeError, match="corpus: expected a 2-D float array"):
        exact_topk(q, {"a": 1}, 2)
    with pytest.raises(ValueError, match="corpus: could not load"):
        exact_topk(q, "/nonexistent/corpus.npy", 2)
    with pytest.raises(ValueError, match="corpus: is empty"):
        exact_topk(q, c[:0], 1)
    # Non-contiguous and float64 inputs are converted (a copy), not rejected.
    ids, _ = exact_topk(q.astype(np.float64), np.asfortranarray(c), 2)
    np.testing.assert_array_equal(ids, exact_topk(q, c, 2)[0])


# -- selection: a pure-Python statement of the rules ------------------------------------------


def reference_select(
    cand_ids,
    cand_scores,
    positives,
    pos_scores,
    *,
    num_negatives,
    range_min,
    range_max,
    absolute_margin=None,
    relative_margin=None,
    max_score=None,
    min_score=None,
    sampling="top",
    ranks="filtered",
    include_positives=False,
    self_ids=None,
    keys=None,
    seed=0,
):
    f32 = np.float32
    out_ids = np.full((len(cand_ids), num_negatives), -1, dtype=np.int64)
    out_scores = np.full((len(cand_ids), num_negatives), -np.inf, dtype=np.float32)
    for q, (ids, scores) in enumerate(zip(cand_ids, cand_scores, strict=True)):
        pos = positives[q] if positives is not None else []
        pmin = f32(min(pos_scores[q])) if pos else f32(np.inf)
        rows = range(len(ids))
        if ranks == "raw":
            rows = range(min(range_min, len(ids)), min(range_max, len(ids)))
        window = []
        for r in rows:
            i, s = int(ids[r]), f32(scores[r])
            if i < 0 or s == -np.inf:
                continue
            if not include_positives and i in pos:
                continue
            # The query's own row, unless it is one of its positives and those are kept.
            if self_ids is not None and i == self_ids[q] and not (include_positives and i in pos):
                continue
            if absolute_margin is not None and f32(s + f32(absolute_margin)) > pmin:
                continue
            if relative_margin is not None and s > f32(
                pmin - f32(abs(pmin) * f32(relative_margin))
            ):
                continue
            if max_score is not None and s > f32(max_score):
                continue
            if min_score is not None and s < f32(min_score):
                continue
            window.append((i, s))
        if ranks == "filtered":
            window = window[:range_max][range_min:]
        picks = list(range(min(num_negatives, len(window))))
        if sampling == "random":
            key = q if keys is None else int(keys[q])
            picks = mining_sample(seed, key, len(window), num_negatives)
        for slot, w in enumerate(picks):
            out_ids[q, slot], out_scores[q, slot] = window[w]
    return out_ids, out_scores


def select(
    cand_ids, cand_scores, positives, pos_scores, n_corpus, *, keys=None, self_ids=None, **kw
):
    values = np.asarray([i for p in positives for i in p], dtype=np.int64)
    offsets = np.cumsum([0] + [len(p) for p in positives]).astype(np.int64)
    flat_scores = np.asarray([s for p in pos_scores for s in p], dtype=np.float32)
    keys = np.arange(len(cand_ids), dtype=np.uint64) if keys is None else keys
    return _core.select_negatives(
        np.ascontiguousarray(cand_ids, dtype=np.int64),
        np.ascontiguousarray(cand_scores, dtype=np.float32),
        corpus_rows=n_corpus,
        keys=np.asarray(keys, dtype=np.uint64),
        positive_values=values,
        positive_offsets=offsets,
        positive_scores=flat_scores,
        self_ids=None if self_ids is None else np.asarray(self_ids, dtype=np.int64),
        **kw,
    )


@st.composite
def selection_case(draw):
    n_corpus = draw(st.integers(4, 40))
    rows = draw(st.integers(1, 6))
    depth = draw(st.integers(1, n_corpus))
    cand_ids, cand_scores, positives, pos_scores = [], [], [], []
    for _ in range(rows):
        ids = draw(st.permutations(range(n_corpus)))[:depth]
        scores = sorted(draw(st.lists(st.integers(-20, 20), min_size=depth, max_size=depth)))[::-1]
        pad = draw(st.integers(0, depth - 1))  # padded tail, as short retrievals have
        cand_ids.append(list(ids[: depth - pad]) + [-1] * pad)
        cand_scores.append([s / 8 for s in scores[: depth - pad]] + [-np.inf] * pad)
        pos = draw(st.lists(st.integers(0, n_corpus - 1), min_size=1, max_size=3))
        positives.append(pos)
        pos_scores.append([draw(st.integers(-20, 20)) / 8 for _ in pos])
    num_negatives = draw(st.integers(1, 4))
    range_min = draw(st.integers(0, 3))
    range_max = draw(st.integers(range_min + num_negatives, range_min + num_negatives + 6))
    opt = st.none() | st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.5])
    kwargs = {
        "num_negatives": num_negatives,
        "range_min": range_min,
        "range_max": range_max,
        "absolute_margin": draw(opt),
        "relative_margin": draw(opt),
        "max_score": draw(st.none() | st.sampled_from([-1.0, 0.0, 1.25])),
        "min_score": draw(st.none() | st.sampled_from([-1.5, 0.0, 0.5])),
        "sampling": draw(st.sampled_from(["top", "random"])),
        "ranks": draw(st.sampled_from(["filtered", "raw"])),
        "include_positives": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**64 - 1)),
    }
    self_ids = draw(
        st.none() | st.lists(st.integers(-1, n_corpus - 1), min_size=rows, max_size=rows)
    )
    keys = draw(st.lists(st.integers(0, 2**64 - 1), min_size=rows, max_size=rows))
    return n_corpus, cand_ids, cand_scores, positives, pos_scores, kwargs, self_ids, keys


@settings(max_examples=300, deadline=None)
@given(selection_case())
def test_selection_equals_the_reference_statement(case):
    n_corpus, cand_ids, cand_scores, positives, pos_scores, kw, self_ids, keys = case
    ids, scores, removed = select(
        cand_ids, cand_scores, positives, pos_scores, n_corpus, keys=keys, self_ids=self_ids, **kw
    )
    ref_ids, ref_scores = reference_select(
        cand_ids, cand_scores, positives, pos_scores, self_ids=self_ids, keys=keys, **kw
    )
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(scores, ref_scores)
    assert set(removed) == {
        "positives",
        "self",
        "absolute_margin",
        "relative_margin",
        "max_score",
        "min_score",
    }


def test_random_sampling_is_uniform_over_the_window():
    # 30,000 queries with the same 10-candidate window, 3 draws each: every position is
    # drawn with probability 3/10. Chi-square (9 dof) < 33.7 is the 99.99th percentile.
    rows, w, k = 30_000, 10, 3
    cand = np.tile(np.arange(w), (rows, 1))
    scores = np.tile(-np.arange(w, dtype=np.float32), (rows, 1))
    pos = [[w + 1]] * rows
    kw = {"num_negatives": k, "range_min": 0, "range_max": w}
    ids, _, _ = select(cand, scores, pos, [[1.0]] * rows, w + 2, sampling="random", **kw)
    assert (np.diff(ids, axis=1) > 0).all()  # returned in window order
    counts = np.bincount(ids.ravel(), minlength=w)
    expected = rows * k / w
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 33.7, counts
    # Control: "top" is anything but uniform.
    top, _, _ = select(cand, scores, pos, [[1.0]] * rows, w + 2, sampling="top", **kw)
    counts = np.bincount(top.ravel(), minlength=w)
    assert float(((counts - expected) ** 2 / expected).sum()) > 1000
    # Pairs are uniform too: (0, 1) together with probability k(k-1)/(w(w-1)) = 1/15.
    both = ((ids == 0).any(1) & (ids == 1).any(1)).mean()
    assert abs(both - 1 / 15) < 5 * np.sqrt((1 / 15) * (14 / 15) / rows)


def test_random_sampling_is_keyed_by_seed_and_query_id():
    q, c = gaussian(60, 16, 21), gaussian(3000, 16, 22)
    pos = np.arange(60)
    kw = {"num_negatives": 4, "range_max": 40, "sampling": "random", "seed": 5}
    full = mine_hard_negatives(q, c, pos, **kw)
    assert (
        full.negative_ids.tobytes() == mine_hard_negatives(q, c, pos, **kw).negative_ids.tobytes()
    )
    # Any thread count, any backend (same candidates), any shard of the queries.
    for threads in (1, 3):
        other = mine_hard_negatives(q, c, pos, num_threads=threads, **kw)
        np.testing.assert_array_equal(other.negative_ids, full.negative_ids)
    np.testing.assert_array_equal(
        mine_hard_negatives(q, c, pos, backend="faiss", **kw).negative_ids, full.negative_ids
    )
    shard = mine_hard_negatives(q[20:45], c, pos[20:45], query_ids=np.arange(20, 45), **kw)
    np.testing.assert_array_equal(shard.negative_ids, full.negative_ids[20:45])
    other_seed = mine_hard_negatives(q, c, pos, **{**kw, "seed": 6})
    assert (other_seed.negative_ids != full.negative_ids).any(axis=1).mean() > 0.5


# -- mine_hard_negatives -----------------------------------------------------------------------


def test_positives_in_every_form_and_self_exclusion():
    c = gaussian(500, 12, 23)
    q = c[:20] + 0.05 * gaussian(20, 12, 24)
    lists = [[i, (i + 1) % 20] for i in range(20)]
    values = np.asarray([v for row in lists for v in row], dtype=np.int64)
    csr = (values, np.arange(0, 41, 2))
    a = mine_hard_negatives(q, c, lists, num_negatives=5)
    b = mine_hard_negatives(q, c, csr, num_negatives=5)
    d = mine_hard_negatives(q, c, np.asarray(lists), num_negatives=5)
    for x in (b, d):
        np.testing.assert_array_equal(x.negative_ids, a.negative_ids)
    for i, row in enumerate(lists):
        assert not set(a.negative_ids[i]) & set(row)
    # Each query's first positive is its near-copy, always retrieved (the second rarely is).
    assert 20 <= a.removed["positives"] < 40
    # Mining among the queries themselves: each would be its own hardest negative.
    inner = mine_hard_negatives(c, None, None, num_negatives=3)
    assert (inner.negative_ids[:, 0] == np.arange(500)).all()
    own = mine_hard_negatives(c, None, None, num_negatives=3, exclude_self=True)
    assert not (own.negative_ids == np.arange(500)[:, None]).any()
    assert own.removed["self"] == 500
    moved = mine_hard_negatives(
        c[100:110], c, None, num_negatives=3, exclude_self=True, query_ids=np.arange(100, 110)
    )
    np.testing.assert_array_equal(moved.negative_ids, own.negative_ids[100:110])


def test_margins_use_the_minimum_positive_and_raw_ranks():
    c = gaussian(400, 10, 25)
    q = gaussian(15, 10, 26)
    pos = [[int(i), int(j)] for i, j in np.argsort(-(q @ c.T), axis=1)[:, [2, 30]]]
    m = mine_hard_negatives(q, c, pos, num_negatives=5, absolute_margin=0.1, similarity="dot")
    for i in range(15):
        pmin = min(float(q[i] @ c[j]) for j in pos[i])
        found = m.negative_scores[i][m.negative_ids[i] >= 0]
        assert (found < pmin - 0.1 + 1e-5).all()
    raw = mine_hard_negatives(q, c, pos, num_negatives=3, range_min=5, range_max=20, ranks="raw")
    filt = mine_hard_negatives(q, c, pos, num_negatives=3, range_min=5, range_max=20)
    assert raw.depth == 20
    assert filt.depth == 23  # range_max + 2 positives + 1 (sentence-transformers 6.3)
    ids, _ = exact_topk(q, c, 20)
    for i in range(15):
        window = [j for j in ids[i, 5:20] if j not in pos[i]]
        assert raw.negative_ids[i].tolist() == window[:3]
        survivors = [j for j in ids[i] if j not in pos[i]]
        assert filt.negative_ids[i].tolist() == survivors[5:8]


def test_range_max_default_and_short_windows():
    q, c = gaussian(5, 8, 27), gaussian(50, 8, 28)
    assert mine_hard_negatives(q, c, np.arange(5)).range_max == 0 + 3 + 1
    assert mine_hard_negatives(q, c, np.arange(5), max_score=0.9).range_max == 31
    assert mine_hard_negatives(q, c, np.arange(5), min_score=-0.9).range_max == 4
    # A corpus smaller than the window: fewer candidates, no crash (sentence-transformers #3873).
    tiny = mine_hard_negatives(q, c[:6], np.arange(5), num_negatives=5, range_min=1, range_max=50)
    assert tiny.depth == 6
    assert (tiny.num_found == 4).all()
    assert (tiny.negative_ids[:, 4] == -1).all()
    assert np.isneginf(tiny.negative_scores[:, 4]).all()
    nothing = mine_hard_negatives(q, c, np.arange(5), min_score=5.0)
    assert (nothing.negative_ids == -1).all()
    assert "fewer than 3" in nothing.summary()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_negatives": 0}, ValueError, "num_negatives: expected an int >= 1"),
        ({"num_negatives": 51}, ValueError, "num_negatives: is 51 but the corpus has only 50"),
        ({"range_min": 5, "range_max": 5}, ValueError, "range_min: must be smaller"),
        ({"range_min": 2, "range_max": 4}, ValueError, "num_negatives: is 3 but the window"),
        ({"positives": [[0]] * 4}, ValueError, "positives: has 4 rows for 5 queries"),
        ({"positives": [[0], [1], [], [3], [4]]}, ValueError, "query 2 has no positives"),
        ({"positives": [[0], [1], [2], [3], [50]]}, ValueError, r"positives: \[4\]\[0\] = 50"),
        ({"positives": [[0], [1], [2], [3], ["a"]]}, TypeError, r"positives\[4\]"),
        ({"positives": np.zeros(5)}, TypeError, "positives: expected integer corpus ids"),
        ({"positives": None, "absolute_margin": 0.1}, ValueError, "positives: absolute_margin"),
        ({"relative_margin": float("nan")}, ValueError, "relative_margin: must be finite"),
        ({"max_score": "high"}, TypeError, "max_score: expected a number"),
        ({"sampling": "hard"}, ValueError, "sampling: must be one of"),
        ({"ranks": "rank"}, ValueError, "ranks: must be one of"),
        ({"backend": "annoy"}, ValueError, "backend: must be one of"),
        ({"exclude_self": 1}, TypeError, "exclude_self: expected a bool"),
        ({"seed": -1}, ValueError, "seed: must be in"),
        ({"query_ids": np.arange(4)}, ValueError, "query_ids: expected 5 integer ids"),
        ({"query_ids": np.arange(-1, 4)}, ValueError, r"query_ids\[0\]: ids must be >= 0, got -1"),
        (
            {"exclude_self": True, "query_ids": np.arange(48, 53)},
            ValueError,
            "exclude_self: query 2 has id 50",
        ),
        ({"self_ids": np.arange(4)}, ValueError, "self_ids: expected 5 integer ids"),
        ({"self_ids": [0, 1, -2, 3, 4]}, ValueError, r"self_ids\[2\]: ids must be >= -1"),
        ({"self_ids": [0, 1, 2, 50, -1]}, ValueError, r"self_ids\[3\]: 50 is not a row"),
        ({"self_ids": np.arange(5), "exclude_self": True}, ValueError, "self_ids: give either"),
        ({"self_ids": np.zeros(5)}, ValueError, "self_ids: expected 5 integer ids"),
        ({"candidate_depth": 0}, ValueError, "candidate_depth"),
    ],
)
def test_mining_argument_errors(kwargs, error, match):
    q, c = gaussian(5, 8, 29), gaussian(50, 8, 30)
    args = {"positives": np.arange(5), **kwargs}
    with pytest.raises(error, match=match):
        mine_hard_negatives(q, c, **args)


def test_torch_backend_on_cpu_tensors_and_tensor_inputs():
    q, c = gaussian(40, 32, 31), gaussian(3000, 32, 32)
    pos = np.arange(40)
    ref = mine_hard_negatives(q, c, pos, num_negatives=5, relative_margin=0.05)
    for backend in ("torch", "auto"):
        got = mine_hard_negatives(
            torch.from_numpy(q),
            torch.from_numpy(c),
            torch.from_numpy(pos),
            num_negatives=5,
            relative_margin=0.05,
            backend=backend,
            query_chunk=7,
            corpus_chunk=500,
        )
        np.testing.assert_array_equal(got.negative_ids, ref.negative_ids)
        np.testing.assert_allclose(got.negative_scores, ref.negative_scores, atol=1e-5)
        np.testing.assert_allclose(got.positive_scores, ref.positive_scores, atol=1e-5)


@pytest.mark.cuda
def test_cuda_tensors_mine_on_the_gpu():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    q, c = gaussian(300, 64, 33), gaussian(20_000, 64, 34)
    pos = np.arange(300)
    ref = mine_hard_negatives(q, c, pos, num_negatives=5, relative_margin=0.05)
    got = mine_hard_negatives(
        torch.from_numpy(q).cuda(),
        torch.from_numpy(c).cuda(),
        pos,
        num_negatives=5,
        relative_margin=0.05,
        corpus_chunk=4096,
    )
    assert (got.negative_ids == ref.negative_ids).mean() > 0.999
    np.testing.assert_allclose(got.positive_scores, ref.positive_scores, atol=1e-4)


def test_registered_backend_is_used_and_torch_registers_lazily(monkeypatch):
    from lmobjectives import mining
    from lmobjectives.mining import _backends

    monkeypatch.setattr(_backends, "_REGISTRY", dict(_backends._REGISTRY))
    calls = []

    def topk(q, c, k, options):
        calls.append((q.shape, c.shape, k, options.similarity))
        return exact_topk(q.values(), c.values(), k, similarity=options.similarity)

    rust = mining.get_backend("rust")
    mining.register_backend("mine", topk, rust.pair_scores)
    assert mining.backend_names() == ("auto", "rust", "torch", "faiss", "mine")
    q, c = gaussian(6, 8, 41), gaussian(60, 8, 42)
    got = mine_hard_negatives(q, c, np.arange(6), num_negatives=2, backend="mine")
    want = mine_hard_negatives(q, c, np.arange(6), num_negatives=2, backend="rust")
    np.testing.assert_array_equal(got.negative_ids, want.negative_ids)
    assert calls == [((6, 8), (60, 8), got.depth, "cosine")]
    with pytest.raises(ValueError, match="name: expected a backend name other than 'auto'"):
        mining.register_backend("auto", topk, rust.pair_scores)
    with pytest.raises(TypeError, match="pair_scores_fn: expected a callable"):
        mining.register_backend("x", topk, None)  # type: ignore[arg-type]
    # "torch" lives in lmobjectives.torch (imported by this module), registered on import.
    assert mining.get_backend("torch").prepare.__module__ == "lmobjectives.torch.mining"


def test_torch_backend_imports_lmobjectives_torch_on_first_use():
    code = (
        "import sys, numpy as np\n"
        "from lmobjectives import mine_hard_negatives\n"
        "assert 'torch' not in sys.modules\n"
        "q = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)\n"
        "a = mine_hard_negatives(q, None, np.arange(8), exclude_self=True, backend='torch')\n"
        "assert 'lmobjectives.torch' in sys.modules\n"
        "b = mine_hard_negatives(q, None, np.arange(8), exclude_self=True)\n"
        "assert (a.negative_ids == b.negative_ids).all()\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_hard_negatives_layouts():
    mined = HardNegatives(
        negative_ids=np.array([[5, 6], [7, -1]]),
        negative_scores=np.array([[0.5, 0.4], [0.3, -np.inf]], dtype=np.float32),
        positive_ids=np.array([1, 2, 3]),
        positive_offsets=np.array([0, 2, 3]),
        positive_scores=np.array([0.9, 0.8, 0.7], dtype=np.float32),
    )
    t = mined.triplets()
    assert t["query"].tolist() == [0, 0, 0, 0, 1]
    assert t["positive"].tolist() == [1, 1, 2, 2, 3]
    assert t["negative"].tolist() == [5, 6, 5, 6, 7]
    np.testing.assert_array_equal(t["positive_score"], np.float32([0.9, 0.9, 0.8, 0.8, 0.7]))
    n = mined.ntuples()
    assert n["query"].tolist() == [0, 0]
    assert n["positive"].tolist() == [1, 2]
    assert n["negatives"].tolist() == [[5, 6], [5, 6]]
    np.testing.assert_array_equal(n["scores"][1], np.float32([0.8, 0.5, 0.4]))
    assert mined.num_found.tolist() == [2, 1]


def test_docstring_examples_run():
    # The package's modules: exact_topk lives in _backends, mine_hard_negatives in _mine.
    for name in ("lmobjectives.mining._backends", "lmobjectives.mining._mine"):
        mod = importlib.import_module(name)
        failures, tried = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert tried > 0, f"{name} has no examples"
        assert failures == 0


# -- parity with sentence-transformers ---------------------------------------------------------


class StubModel:
    """What sentence-transformers' ``mine_hard_negatives`` needs from a model, over fixed
    embeddings: query texts and corpus texts ``d<j>`` map to rows of the given arrays."""

    def __init__(
        self, queries: np.ndarray, query_texts: list[str], corpus: np.ndarray, similarity: str
    ) -> None:
        self.query_rows = {t: i for i, t in enumerate(query_texts)}
        self.queries, self.corpus, self.kind = queries, corpus, similarity
        self.device = torch.device("cpu")
        self.model_card_data = SimpleNamespace(base_model=None)

    def _encode(self, x, normalize_embeddings=False, **_):
        if normalize_embeddings and self.kind == "cosine":
            x = torch.nn.functional.normalize(torch.from_numpy(x), dim=1).numpy()
        return x

    def encode_query(self, texts, **kw):
        return self._encode(self.queries[[self.query_rows[t] for t in texts]], **kw)

    def encode_document(self, texts, **kw):
        return self._encode(self.corpus[[int(t[1:]) for t in texts]], **kw)

    def similarity(self, a, b):
        from sentence_transformers.util import cos_sim

        a, b = torch.as_tensor(a), torch.as_tensor(b)
        return cos_sim(a, b) if self.kind == "cosine" else a @ b.T

    def similarity_pairwise(self, a, b):
        from sentence_transformers.util import pairwise_cos_sim

        a, b = torch.as_tensor(a), torch.as_tensor(b)
        return pairwise_cos_sim(a, b) if self.kind == "cosine" else (a * b).sum(-1)

    def get_embedding_dimension(self):
        return self.corpus.shape[1]


def exact_data(nq: int, n: int, seed: int):
    """Embeddings whose dot products are exact in float32 in any summation order and never
    tie for a query: small multiples of 1/8, plus a unique (j + 1)·2^-14 per corpus row."""
    g = np.random.default_rng(seed)
    q = g.integers(-3, 4, size=(nq, 16)).astype(np.float32)
    c = (g.integers(-3, 4, size=(n, 16)) / 8).astype(np.float32)
    q[:, 0] = 1.0
    c[:, 0] = (np.arange(n) + 1) * 2.0**-14
    return q, c


def st_mine(q, c, positives, similarity, self_ids=None, **kw):
    """sentence-transformers' miner on the same embeddings. Query ``i`` is the text ``q<i>``, or
    ``d<j>`` — the text of corpus row ``j`` — where ``self_ids[i] = j``; the returned query
    column holds query indices either way."""
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives as st_mine_hard_negatives

    texts = [
        f"d{j}" if self_ids is not None and j >= 0 else f"q{i}"
        for i, j in enumerate(self_ids if self_ids is not None else [-1] * len(q))
    ]
    rows = [(texts[i], f"d{j}") for i, ps in enumerate(positives) for j in ps]
    data = Dataset.from_dict({"query": [a for a, _ in rows], "answer": [b for _, b in rows]})
    out = st_mine_hard_negatives(
        data,
        StubModel(q, texts, c, similarity),
        corpus=[f"d{j}" for j in range(c.shape[0])],
        verbose=False,
        **kw,
    ).to_dict()
    index = {t: i for i, t in enumerate(texts)}
    out["query"] = [f"q{index[t]}" for t in out["query"]]
    return out


def ids_of(texts):
    return [int(t[1:]) for t in texts]


ST_GRID = [
    {},
    {"num_negatives": 5},
    {"range_min": 3, "range_max": 20, "num_negatives": 4},
    {"absolute_margin": 0.5, "num_negatives": 3},
    {"relative_margin": 0.1, "num_negatives": 3},
    {"relative_margin": 0.3, "absolute_margin": 0.25, "range_min": 2},
    {"max_score": 1.5, "num_negatives": 4},
    {"min_score": 0.0, "max_score": 2.0, "range_max": 30},
    {"range_min": 10, "range_max": 40, "relative_margin": 0.05, "num_negatives": 6},
]


@pytest.mark.parametrize("kw", ST_GRID)
@pytest.mark.parametrize("use_faiss", [False, True])
def test_same_triplets_as_sentence_transformers(kw, use_faiss):
    q, c = exact_data(30, 300, 35)
    # 1–3 positives per query, drawn from its top 40 (so margins bite), some scores negative.
    g = np.random.default_rng(36)
    top = np.argsort(-(q @ c.T), axis=1)
    positives = [
        [int(j) for j in g.choice(top[i, :40], size=int(g.integers(1, 4)), replace=False)]
        for i in range(30)
    ]
    positives[3] = [int(top[3, -1])]  # a positive scored below zero
    ours = mine_hard_negatives(q, c, positives, similarity="dot", **kw)
    theirs = st_mine(q, c, positives, "dot", output_format="triplet", use_faiss=use_faiss, **kw)
    t = ours.triplets()
    assert ids_of(theirs["query"]) == t["query"].tolist()
    assert ids_of(theirs["answer"]) == t["positive"].tolist()
    assert ids_of(theirs["negative"]) == t["negative"].tolist()


@pytest.mark.parametrize(
    "kw", [{}, {"relative_margin": 0.1}, {"range_min": 2, "include_positives": True}]
)
def test_same_ntuples_and_scores_as_sentence_transformers(kw):
    q, c = exact_data(25, 200, 37)
    positives = [[int(j)] for j in np.argsort(-(q @ c.T), axis=1)[:, 3]]
    positives[0].append(7)
    ours = mine_hard_negatives(q, c, positives, similarity="dot", **kw)
    theirs = st_mine(q, c, positives, "dot", output_format="n-tuple", output_scores=True, **kw)
    n = ours.ntuples()
    assert ids_of(theirs["query"]) == n["query"].tolist()
    assert ids_of(theirs["answer"]) == n["positive"].tolist()
    for slot in range(n["negatives"].shape[1]):
        assert ids_of(theirs[f"negative_{slot + 1}"]) == n["negatives"][:, slot].tolist()
    np.testing.assert_array_equal(np.asarray(theirs["scores"], dtype=np.float32), n["scores"])


@pytest.mark.parametrize(
    ("kw", "self_rows_bite"),
    [
        ({}, True),
        ({"range_min": 2, "absolute_margin": 0.25}, False),  # the margin removes them anyway
        ({"include_positives": True, "num_negatives": 4}, True),
        ({"range_min": 1, "range_max": 12, "min_score": 0.0}, True),
    ],
)
@pytest.mark.parametrize("use_faiss", [False, True])
def test_query_that_is_a_corpus_row_as_sentence_transformers(kw, self_rows_bite, use_faiss):
    # Every third query is the text of a corpus row among its top 3 candidates; two of those
    # rows are also the query's positive (kept with include_positives, as in 6.3).
    q, c = exact_data(30, 300, 40)
    top = np.argsort(-(q @ c.T), axis=1)
    self_ids = np.full(30, -1, dtype=np.int64)
    self_ids[::3] = [top[i, i % 3] for i in range(0, 30, 3)]
    positives = [[int(top[i, 5 + i % 7])] for i in range(30)]
    positives[0].append(int(self_ids[0]))
    positives[3] = [int(self_ids[3])]
    ours = mine_hard_negatives(q, c, positives, similarity="dot", self_ids=self_ids, **kw)
    # sentence-transformers answers include_positives in n-tuple form only.
    fmt = "n-tuple" if kw.get("include_positives") else "triplet"
    theirs = st_mine(
        q, c, positives, "dot", self_ids=self_ids, output_format=fmt, use_faiss=use_faiss, **kw
    )
    if fmt == "triplet":
        t = ours.triplets()
        assert ids_of(theirs["query"]) == t["query"].tolist()
        assert ids_of(theirs["answer"]) == t["positive"].tolist()
        assert ids_of(theirs["negative"]) == t["negative"].tolist()
    else:
        n = ours.ntuples()
        assert ids_of(theirs["query"]) == n["query"].tolist()
        assert ids_of(theirs["answer"]) == n["positive"].tolist()
        for slot in range(n["negatives"].shape[1]):
            assert ids_of(theirs[f"negative_{slot + 1}"]) == n["negatives"][:, slot].tolist()
        # Query 3 is its own (only) positive: kept among its candidates, first.
        assert n["negatives"][n["query"] == 3][0, 0] == self_ids[3]
    # The control: without self_ids, our negatives include self rows that ST removed.
    plain = mine_hard_negatives(q, c, positives, similarity="dot", **kw)
    assert (plain.negative_ids.tolist() != ours.negative_ids.tolist()) == self_rows_bite


def test_same_negatives_as_sentence_transformers_with_cosine_on_real_valued_embeddings():
    q, c = gaussian(40, 32, 38), gaussian(1500, 32, 39)
    positives = [[int(j)] for j in np.argsort(-(q @ c.T), axis=1)[:, 1]]
    kw = {"range_min": 2, "num_negatives": 5, "relative_margin": 0.05}
    ours = mine_hard_negatives(q, c, positives, **kw)
    theirs = st_mine(q, c, positives, "cosine", output_format="n-tuple", output_scores=True, **kw)
    n = ours.ntuples()
    for slot in range(5):
        assert ids_of(theirs[f"negative_{slot + 1}"]) == n["negatives"][:, slot].tolist()
    np.testing.assert_allclose(np.asarray(theirs["scores"]), n["scores"], atol=1e-6)


def test_empty_queries_mixed_storage_and_tensor_inputs():
    c = gaussian(100, 8, 40)
    ids, scores = exact_topk(np.zeros((0, 8), np.float32), c, 3)
    assert ids.shape == scores.shape == (0, 3)
    mined = mine_hard_negatives(np.zeros((0, 8), np.float32), c, [], num_negatives=2)
    assert mined.negative_ids.shape == (0, 2) and mined.triplets()["query"].shape == (0,)
    q16 = gaussian(5, 8, 41).astype(np.float16)
    a = exact_topk(q16, c, 4)
    b = exact_topk(q16.astype(np.float32), c, 4)
    np.testing.assert_array_equal(a[0], b[0])
    t = exact_topk(torch.from_numpy(q16.astype(np.float32)), torch.from_numpy(c), 4)
    np.testing.assert_array_equal(t[0], b[0])


@pytest.mark.parametrize("backend", ["torch", "faiss"])
@pytest.mark.parametrize("scale", [1.0, 1e20, 1e37, 1e-30])
def test_cosine_backends_agree_on_finite_embeddings_of_extreme_norm(backend, scale):
    """Cosine similarity normalises as ``F.normalize`` (``x / max(‖x‖, 1e-12)``): the torch and
    faiss backends do it without overflow (squares of ~1e20 overflow float32) and return the
    Rust backend's ids and scores at every scale. Above the 1e-12 floor the result does not
    depend on the norm at all; below it (1e-30) the rows stay short, in every backend alike.
    Control: the scores are not all zero (what the overflowing normalisation returned)."""
    rng = np.random.default_rng(3)
    q = np.clip(rng.standard_normal((6, 8)), -3, 3).astype(np.float32) * np.float32(scale)
    c = np.clip(rng.standard_normal((40, 8)), -3, 3).astype(np.float32) * np.float32(scale)
    positives = np.arange(6)
    ref = mine_hard_negatives(q, c, positives, num_negatives=4, backend="rust")
    got = mine_hard_negatives(q, c, positives, num_negatives=4, backend=backend)
    np.testing.assert_array_equal(got.negative_ids, ref.negative_ids)
    np.testing.assert_allclose(got.negative_scores, ref.negative_scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.positive_scores, ref.positive_scores, rtol=1e-5, atol=1e-6)
    if scale >= 1:
        unit = mine_hard_negatives(
            q / np.float32(scale), c / np.float32(scale), positives, num_negatives=4, backend="rust"
        )
        np.testing.assert_array_equal(got.negative_ids, unit.negative_ids)
        np.testing.assert_allclose(got.negative_scores, unit.negative_scores, atol=1e-5)
        assert np.abs(got.negative_scores).max() > 0.5
