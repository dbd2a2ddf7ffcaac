"""What mining returns: :class:`HardNegatives`, ids and scores, and its row layouts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["HardNegatives"]


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
