"""hypothesis strategies shared by the fuzz tests: token rows and hostile scalars."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

V = 1000  # vocabulary of the fuzzed objectives
PAD, EOS, MASK = 0, 1, 4
SPECIALS = (2, 3)

#: Integers that break naive conversions: negatives, 2^31/2^32/2^63/2^64 edges, huge.
EDGE_INTS = [
    -(2**63) - 1,
    -(2**63),
    -1,
    0,
    1,
    2**31 - 1,
    2**31,
    2**32,
    2**62,
    2**63 - 1,
    2**63,
    2**64,
    2**70,
]


def _rarely(plain, *hostile):
    """``plain`` about 15 times in 16; one of ``hostile`` otherwise (hypothesis explores the
    branches of ``one_of`` evenly, so the odds are set by a drawn number, not by repetition)."""
    bad = st.one_of(*hostile)
    return st.integers(0, 15).flatmap(lambda k: bad if k == 7 else plain)


def hostile_int(lo: int = 0, hi: int = 64):
    """Mostly a plausible int in [lo, hi]; sometimes an edge int, a bool, a float, a string,
    NaN or None."""
    plain = st.integers(lo, hi)
    return _rarely(
        plain,
        st.sampled_from(EDGE_INTS),
        st.booleans(),
        st.sampled_from(
            [0.5, 3.0, float("nan"), float("inf"), "3", None, np.int64(7), np.uint64(2**63)]
        ),
    )


def hostile_float(lo: float = 0.0, hi: float = 1.0):
    plain = st.floats(lo, hi)
    return _rarely(
        plain,
        st.sampled_from([float("nan"), float("inf"), -float("inf"), -0.1, 1.5, 1e-45, 1e300]),
        st.booleans(),
        st.sampled_from(["0.1", None, 2**70]),
    )


def token_id(vocab: int = V):
    """A content id ([5, vocab)) or, rarely, something outside the vocabulary."""
    return st.one_of(
        st.integers(5, vocab - 1),
        st.integers(5, vocab - 1),
        st.integers(5, vocab - 1),
        st.integers(5, vocab - 1),
        st.sampled_from([-1, vocab, 2**31, 2**40, 2**63 - 1]),
    )


@st.composite
def token_rows(draw, vocab: int = V, max_rows: int = 5, max_len: int = 40, min_len: int = 0):
    """A batch of rows as a list of lists, a dense 2-D array of some integer dtype, or a list of
    1-D arrays (invalid ids and empty rows included, rarely)."""
    n = draw(st.integers(0, max_rows))
    clean = draw(st.integers(0, 19)) > 0
    elem = st.integers(5, vocab - 1) if clean else token_id(vocab)
    rows = [draw(st.lists(elem, min_size=min_len, max_size=max_len)) for _ in range(n)]
    form = draw(st.sampled_from(["list", "list", "dense", "arrays"]))
    if form == "dense" and rows and len({len(r) for r in rows}) == 1:
        dtype = draw(st.sampled_from([np.int64, np.int32, np.uint16, np.uint64, np.float32]))
        try:
            return np.array(rows, dtype=dtype)
        except OverflowError:
            return rows
    if form == "arrays":
        try:
            return [np.array(r, dtype=np.int64) for r in rows]
        except OverflowError:
            return rows
    return rows


def plain_rows(arr_or_rows) -> list[list[int]]:
    if isinstance(arr_or_rows, np.ndarray):
        return [list(map(int, r)) for r in arr_or_rows]
    return [list(map(int, r)) for r in arr_or_rows]
