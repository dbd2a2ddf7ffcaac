"""Hard-negative mining over embeddings: :func:`mine_hard_negatives` and :func:`exact_topk`.

The pipeline (design: §2): embeddings (NumPy, a memory-mapped ``.npy``, or torch tensors) →
candidate retrieval (Rust exact top-k on CPU, chunked torch matmul + topk on a GPU, or faiss)
→ negative selection in Rust (positives and the query's own id excluded, positive-aware
margins, score window, rank window, top or seeded random sampling) → compact arrays of ids and
scores, never strings.

Retrieval in Rust is exact and reproducible: every score is the same fused multiply-add chain
over the dimensions whatever the tiling, thread count or CPU (AVX-512, AVX2 or portable code),
ties are broken by the lower corpus id, and the work is tiled over queries *and* corpus so that
memory stays ``O(threads × tile + queries × k)`` — no ``queries × corpus`` matrix is ever built.
Long runs show a progress bar and stop on Ctrl-C within a fraction of a second.

Selection follows sentence-transformers' ``mine_hard_negatives`` as of version 6.3 (the version
the parity tests are pinned to) rule by rule; where it differs, on purpose, the difference is
documented on :func:`mine_hard_negatives`.

The package, by concern: ``_inputs`` (embeddings, positives, ids, argument checks),
``_backends`` (the retrieval backends and their registry: :func:`register_backend`; the
``"torch"`` backend lives in :mod:`lmobjectives.torch.mining` and registers itself when
:mod:`lmobjectives.torch` is imported), ``_mine`` (the :func:`mine_hard_negatives` driver:
arguments → backend → retrieval → selection), ``_result`` (:class:`HardNegatives`) and
``_dataset`` (:func:`mine_dataset`: a sentence-transformers model and a ``datasets.Dataset`` of
texts in, sentence-transformers' output ``Dataset`` out, through an on-disk embedding cache).
Distributed mining, the corpus sharded over ``torch.distributed`` ranks, is
:mod:`lmobjectives.torch.distributed_mining`.
"""

from lmobjectives.mining._backends import (
    Backend,
    SearchOptions,
    backend_names,
    exact_topk,
    get_backend,
    register_backend,
)
from lmobjectives.mining._dataset import EmbeddingCache, mine_dataset, model_fingerprint
from lmobjectives.mining._mine import mine_hard_negatives
from lmobjectives.mining._result import HardNegatives

__all__ = [
    "Backend",
    "EmbeddingCache",
    "HardNegatives",
    "SearchOptions",
    "backend_names",
    "exact_topk",
    "get_backend",
    "mine_dataset",
    "mine_hard_negatives",
    "model_fingerprint",
    "register_backend",
]
