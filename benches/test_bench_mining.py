"""Exact top-k retrieval: lmobjectives against faiss IndexFlatIP, sentence-transformers' torch
approach and NumPy, on the same embeddings (a reduced version of ``lmobjectives bench
--objective mining``; the ratios table comes from that command).

Every benchmark also checks its result against lmobjectives' exact ids, so a fast but wrong
contender fails here.
"""

from __future__ import annotations

import numpy as np
import pytest

from lmobjectives.lab.bench.mining import (
    FAISS,
    NUMPY,
    OURS,
    TORCH_ST,
    MiningCase,
    make_embeddings,
    mining_contenders,
)

CASE = MiningCase("bench", 256, 5000, 384, 11)
GROUP = f"mining-{CASE.label.replace(' ', '-')}"


@pytest.fixture(scope="module")
def embeddings():
    return make_embeddings(CASE)


@pytest.fixture(scope="module")
def contenders(embeddings):
    q, c = embeddings
    return mining_contenders(q, c, CASE.k, include=(OURS, FAISS, TORCH_ST, NUMPY))


@pytest.fixture(scope="module")
def exact(embeddings):
    q, c = embeddings
    s = q.astype(np.float64) @ c.astype(np.float64).T
    return np.argsort(-s, axis=1, kind="stable")[:, : CASE.k]


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("contender", [OURS, FAISS, TORCH_ST, NUMPY])
def test_mining_topk(benchmark, contenders, exact, contender):
    ids, scores = benchmark(contenders[contender])
    ids = np.asarray(ids)
    assert ids.shape == (CASE.queries, CASE.k)
    # Gaussian embeddings: exact ties are absent, near-ties rare.
    assert (ids == exact).mean() > 0.999
    assert (np.diff(np.asarray(scores), axis=1) <= 1e-6).all()
