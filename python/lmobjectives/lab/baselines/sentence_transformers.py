"""sentence-transformers' exact retrieval without faiss, as ``mine_hard_negatives`` runs it:
per chunk of ``faiss_batch_size`` queries, ``util.cos_sim(chunk, corpus)`` then ``torch.topk``
(:func:`st_topk`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from lmobjectives._optional import require

__all__ = ["ST_CHUNK", "st_topk"]

#: sentence-transformers' ``faiss_batch_size`` default: queries per chunk.
ST_CHUNK = 16384


def st_topk(
    queries: np.ndarray, corpus: np.ndarray, k: int, chunk: int = ST_CHUNK
) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    """A zero-argument search returning each query's ``k`` best corpus rows by cosine,
    ``(ids, scores)``, best first. The embeddings become tensors once, here (views, no copy);
    each call scores ``chunk`` queries at a time (a ``chunk × N`` float32 matrix). Needs torch."""
    torch = require("torch", "the sentence-transformers retrieval baseline")
    q_t, c_t = torch.from_numpy(queries), torch.from_numpy(corpus)

    def st_search() -> Any:
        # sentence_transformers.util.cos_sim, then topk, per faiss_batch_size chunk.
        ids, scores = [], []
        c_n = torch.nn.functional.normalize(c_t, p=2, dim=1)
        for i in range(0, q_t.shape[0], chunk):
            q_n = torch.nn.functional.normalize(q_t[i : i + chunk], p=2, dim=1)
            s, j = torch.topk(q_n @ c_n.T, k=k, dim=1)
            ids.append(j)
            scores.append(s)
        return torch.cat(ids).numpy(), torch.cat(scores).numpy()

    return st_search
