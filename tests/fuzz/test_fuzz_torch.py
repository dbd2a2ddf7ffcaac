"""Fuzzing the torch losses against the contract of issue 15: an empty batch, a non-finite or
non-positive ``scale``/``temperature`` (or one whose reciprocal overflows) is an
``InvalidArgumentError`` naming it; ``masked_lm_loss`` labels outside ``[0, vocab)`` other than
-100 are a ``TokenIdError`` naming ``labels``; every returned loss is finite."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fuzz_harness import budget, run
from hypothesis import given
from hypothesis import strategies as st

from lmobjectives.errors import InvalidArgumentError, TokenIdError
from lmobjectives.torch import info_nce_loss, masked_lm_loss

TEMPS = st.one_of(
    st.floats(0.01, 10.0),
    st.sampled_from([0.0, -1.0, float("nan"), float("inf"), 1e-45, 1e-300]),
)


@budget(500)
@given(
    n=st.integers(0, 6),
    d=st.integers(1, 6),
    temperature=TEMPS,
    seed=st.integers(0, 2**16),
)
def test_info_nce_loss(n, d, temperature, seed):
    g = torch.Generator().manual_seed(seed)
    q, p = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)

    def call():
        return info_nce_loss(q, p, temperature=temperature)

    def check(loss):
        assert torch.isfinite(loss).all(), f"a non-finite loss for temperature={temperature}"

    out = run("torch.info_nce_loss", call, check)
    bad = n == 0 or not (math.isfinite(temperature) and temperature > 0) or 1 / temperature > 1e30
    if bad:
        assert out is None, "a bad batch or temperature was accepted"
        with pytest.raises(InvalidArgumentError):
            call()


@budget(500)
@given(
    rows=st.integers(1, 3),
    cols=st.integers(1, 5),
    vocab=st.integers(2, 12),
    bad=st.sampled_from([None, None, -1, -5, 12, 13, 1000]),
    seed=st.integers(0, 2**16),
)
def test_masked_lm_loss(rows, cols, vocab, bad, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, vocab, size=(rows, cols))
    labels[rng.random((rows, cols)) < 0.3] = -100
    if bad is not None:
        labels[0, 0] = bad if bad < 0 else vocab + (bad - 12)
    logits = torch.from_numpy(rng.standard_normal((rows, cols, vocab)).astype(np.float32))
    lab = torch.from_numpy(labels)

    def call():
        return masked_lm_loss(logits, lab)

    def check(loss):
        assert torch.isfinite(loss) or (labels == -100).all()

    out = run("torch.masked_lm_loss", call, check)
    outside = ((labels != -100) & ((labels < 0) | (labels >= vocab))).any()
    if outside:
        assert out is None, "labels outside the vocabulary were accepted"
        with pytest.raises(TokenIdError, match="labels"):
            call()
