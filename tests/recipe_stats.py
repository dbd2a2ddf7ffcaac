"""Two-sample tests for holding a recipe against a reference in distribution (NumPy only).

Every test uses fixed seeds, so a pass or a failure is reproducible; the thresholds are set for a
false-rejection chance of about 1e-6 (z = 4.9), so that a control — a deliberately wrong setting
— must be far off to be rejected and a correct one essentially never is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: The normal quantile of the thresholds (two-sided p ≈ 1e-6).
Z = 4.9


def chi2_critical(dof: int, z: float = Z) -> float:
    """Upper quantile of chi-square(dof) at the normal quantile ``z`` (Wilson–Hilferty)."""
    a = 2.0 / (9.0 * dof)
    return dof * (1 - a + z * math.sqrt(a)) ** 3


def chi2_fit(counts: np.ndarray, probs: np.ndarray) -> tuple[float, int]:
    """Pearson's statistic of ``counts`` against the law ``probs`` and its degrees of freedom
    (bins with an expected count below 5 are pooled into one)."""
    counts = np.asarray(counts, dtype=float)
    expected = counts.sum() * np.asarray(probs, dtype=float)
    small = expected < 5
    if small.any():
        counts = np.append(counts[~small], counts[small].sum())
        expected = np.append(expected[~small], expected[small].sum())
        if expected[-1] == 0:
            counts, expected = counts[:-1], expected[:-1]
    stat = float(((counts - expected) ** 2 / expected).sum())
    return stat, len(counts) - 1


def fits(counts: np.ndarray, probs: np.ndarray) -> bool:
    """Whether ``counts`` are compatible with the law ``probs``."""
    stat, dof = chi2_fit(counts, probs)
    return stat < chi2_critical(dof)


def chi2_same(a: Sequence[int], b: Sequence[int]) -> tuple[float, int]:
    """Pearson's homogeneity statistic of two samples of categories (ints) and its degrees of
    freedom; categories with fewer than 10 observations in both samples together are pooled."""
    a, b = np.asarray(a), np.asarray(b)
    values = np.union1d(a, b)
    ca = np.array([(a == v).sum() for v in values], dtype=float)
    cb = np.array([(b == v).sum() for v in values], dtype=float)
    rare = ca + cb < 10
    if rare.any():
        ca = np.append(ca[~rare], ca[rare].sum())
        cb = np.append(cb[~rare], cb[rare].sum())
    total = ca + cb
    ea = total * len(a) / (len(a) + len(b))
    eb = total * len(b) / (len(a) + len(b))
    stat = float(((ca - ea) ** 2 / ea).sum() + ((cb - eb) ** 2 / eb).sum())
    return stat, max(1, len(total) - 1)


def same_categories(a: Sequence[int], b: Sequence[int]) -> bool:
    """Whether two samples of categories come from the same law (chi-square homogeneity)."""
    stat, dof = chi2_same(a, b)
    return stat < chi2_critical(dof)


def ks_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """The two-sample Kolmogorov–Smirnov distance."""
    a, b = np.sort(np.asarray(a, dtype=float)), np.sort(np.asarray(b, dtype=float))
    grid = np.union1d(a, b)
    fa = np.searchsorted(a, grid, side="right") / len(a)
    fb = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.abs(fa - fb).max())


def same_distribution(a: Sequence[float], b: Sequence[float], alpha: float = 1e-6) -> bool:
    """Whether two samples are compatible under the two-sample KS test at level ``alpha``
    (conservative for discrete data)."""
    n, m = len(a), len(b)
    c = math.sqrt(-math.log(alpha / 2) / 2)
    return ks_distance(a, b) < c * math.sqrt((n + m) / (n * m))


def proportions_z(k1: int, n1: int, k2: int, n2: int) -> float:
    """The pooled two-proportion z statistic of ``k1/n1`` against ``k2/n2``."""
    p = (k1 + k2) / (n1 + n2)
    se = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    return 0.0 if se == 0 else (k1 / n1 - k2 / n2) / se


def same_proportion(k1: int, n1: int, k2: int, n2: int) -> bool:
    return abs(proportions_z(k1, n1, k2, n2)) < Z
