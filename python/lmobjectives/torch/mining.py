"""The ``"torch"`` backend of :func:`lmobjectives.mine_hard_negatives`: chunked ``matmul`` +
``topk`` on the tensors' device (a GPU, typically).

Importing :mod:`lmobjectives.torch` imports this module, which registers the backend with
:func:`lmobjectives.mining.register_backend`; ``mine_hard_negatives(backend="torch")`` (or
``"auto"`` with CUDA tensors) imports :mod:`lmobjectives.torch` itself when needed. Selection
stays in Rust, as for every backend.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lmobjectives._progress import Progress
from lmobjectives._torch_bridge import from_numpy, is_tensor
from lmobjectives.mining import SearchOptions, register_backend
from lmobjectives.mining._inputs import as_matrix

__all__ = ["pair_scores", "prepare", "topk"]

_PURPOSE = "backend='torch' mining"


def prepare(x: Any, name: str) -> torch.Tensor:
    """A 2-D tensor: tensors as they are (on their device), anything else (arrays, ``.npy``
    paths) as a CPU tensor sharing the NumPy memory (float16 stays float16)."""
    if is_tensor(x):
        t = x
    else:
        arr, half = as_matrix(x, name)
        t = from_numpy(arr.view(np.float16) if half else arr, _PURPOSE)
    if t.dim() != 2:
        raise ValueError(f"{name}: expected a 2-D tensor (rows × dim), got {tuple(t.shape)}")
    return t


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    """``x / max(‖x‖, 1e-12)`` per row (``F.normalize``'s rule, as the Rust backend computes it)
    without overflow: rows are divided by their largest magnitude first, so a finite row of
    norm ~1e20, whose squares overflow float32, normalises like any other."""
    peak = x.abs().amax(dim=1, keepdim=True)
    peak = torch.where(peak > 0, peak, torch.ones_like(peak))
    y = x / peak
    return y / torch.maximum(y.norm(dim=1, keepdim=True), 1e-12 / peak)


def topk(
    queries: torch.Tensor, corpus: torch.Tensor, k: int, options: SearchOptions
) -> tuple[np.ndarray, np.ndarray]:
    """Chunked ``matmul`` + ``topk`` on the queries' device: memory
    ``O(query_chunk × corpus_chunk)`` there, results merged chunk by chunk. Equal scores come
    back in torch's order, not necessarily by id."""
    cosine = options.similarity == "cosine"
    corpus = corpus.to(queries.device)
    n, q_chunk, c_chunk = corpus.shape[0], options.query_chunk, options.corpus_chunk
    q_all = queries.float()
    if cosine:
        q_all = _unit_rows(q_all)
    ids_out = torch.empty((queries.shape[0], k), dtype=torch.int64)
    scores_out = torch.empty((queries.shape[0], k), dtype=torch.float32)
    steps = -(-queries.shape[0] // q_chunk) * -(-n // c_chunk)
    with Progress(steps, "mining", unit="block", enabled=options.progress) as bar, torch.no_grad():
        for i in range(0, queries.shape[0], q_chunk):
            best_s, best_i = _topk_of_chunk(q_all[i : i + q_chunk], corpus, k, cosine, c_chunk, bar)
            scores_out[i : i + q_chunk] = best_s.cpu()
            ids_out[i : i + q_chunk] = best_i.cpu()
    if not torch.isfinite(scores_out).all():
        raise ValueError("queries/corpus: a score is not finite (NaN or inf in the embeddings)")
    return ids_out.numpy(), scores_out.numpy()


def _topk_of_chunk(
    q: torch.Tensor, corpus: torch.Tensor, k: int, cosine: bool, corpus_chunk: int, bar: Progress
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best of the whole corpus for one chunk of queries, merged chunk by chunk."""
    best_s: torch.Tensor | None = None
    best_i: torch.Tensor | None = None
    for j in range(0, corpus.shape[0], corpus_chunk):
        c = corpus[j : j + corpus_chunk].float()
        if cosine:
            c = _unit_rows(c)
        s = q @ c.T
        ts, ti = s.topk(min(k, s.shape[1]), dim=1)
        ti += j
        if best_s is not None and best_i is not None:
            ts, pick = torch.cat([best_s, ts], 1).topk(k, dim=1)
            ti = torch.cat([best_i, ti], 1).gather(1, pick)
        best_s, best_i = ts, ti
        bar.update(1)
    assert best_s is not None
    assert best_i is not None
    return best_s, best_i


def pair_scores(
    queries: torch.Tensor,
    corpus: torch.Tensor,
    values: np.ndarray,
    offsets: np.ndarray,
    options: SearchOptions,
) -> np.ndarray:
    """The score of each query with each of its positives, on the queries' device."""
    if values.size == 0:
        return np.zeros(0, dtype=np.float32)
    if (values < 0).any() or (values >= corpus.shape[0]).any():
        bad = int(values[(values < 0) | (values >= corpus.shape[0])][0])
        raise ValueError(
            f"positives: id {bad} is not a corpus row (the corpus has {corpus.shape[0]} rows)"
        )
    rows = torch.from_numpy(np.repeat(np.arange(offsets.shape[0] - 1), np.diff(offsets)))
    device = queries.device
    with torch.no_grad():
        q = queries[rows.to(device)].float()
        c = corpus[torch.from_numpy(values).to(corpus.device)].to(device).float()
        if options.similarity == "cosine":
            q, c = _unit_rows(q), _unit_rows(c)
        s = (q * c).sum(dim=1).cpu()
    if not torch.isfinite(s).all():
        raise ValueError("queries/corpus: a positive's score is not finite")
    return s.numpy().astype(np.float32)


register_backend("torch", topk, pair_scores, prepare=prepare)
