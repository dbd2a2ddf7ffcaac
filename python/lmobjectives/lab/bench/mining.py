"""The mining benchmark: exact top-k retrieval, lmobjectives against the tools people use.

Run by ``lmobjectives bench --objective mining`` (:func:`mining_plan`); ``benches/`` times the
same contenders (:func:`mining_contenders`). Every contender gets the same L2-normalised float32
embeddings (Gaussian, seeded) and returns each query's ``k`` best corpus rows by inner product
(= cosine):

``lmobjectives``
    :func:`~lmobjectives.exact_topk` (``similarity="dot"``): tiled over queries and corpus,
    fused top-k, all threads.
``faiss``
    ``faiss.IndexFlatIP`` (exact): ``index.search(queries, k)``; the index is built once,
    outside the timing.
``torch (ST)``
    sentence-transformers' ``mine_hard_negatives`` retrieval without faiss: per chunk of
    ``faiss_batch_size`` (16384) queries, ``cos_sim(chunk, corpus)`` then ``torch.topk``
    (:func:`~lmobjectives.lab.baselines.sentence_transformers.st_topk`).
``NumPy``
    per chunk of 1024 queries, ``chunk @ corpus.T``, ``argpartition``, then a sort of the k
    (:func:`~lmobjectives.lab.baselines.numpy_reference.numpy_topk`).

Roofline: ``NumPy sgemm`` times the bare product ``queries @ corpus.T`` (OpenBLAS, no
top-k; 1024 queries at a time into one reused output buffer) in the same rounds; ``of sgemm``
is ``t_sgemm / t`` — the fraction of this machine's single-precision GEMM throughput a
contender reaches while also selecting the top k.

Measuring (design: §6, :mod:`~lmobjectives.lab.bench.runner`): one warm-up call each, then
``rounds`` rounds of one call each run the contenders one after the other, rotating the start;
``queries/s`` comes from the median time, ``vs faiss`` and ``of sgemm`` are medians over rounds
of per-round time ratios. Peak memory is measured separately, one fresh process per contender:
``extra MiB`` is its peak RSS minus the RSS with the embeddings already loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmobjectives._optional import require
from lmobjectives.lab.baselines.numpy_reference import NUMPY_CHUNK, numpy_topk
from lmobjectives.lab.baselines.sentence_transformers import ST_CHUNK, st_topk
from lmobjectives.lab.bench.runner import (
    SEED,
    BenchRow,
    Case,
    Column,
    Contender,
    Plan,
    Settings,
    Table,
    has,
)

__all__ = [
    "CASES",
    "MINING_TABLE",
    "MiningCase",
    "make_embeddings",
    "mining_contenders",
    "mining_plan",
    "missing_mining_contenders",
]

OURS = "lmobjectives"
FAISS = "faiss"
TORCH_ST = "torch (ST)"
NUMPY = "NumPy"
SGEMM = "NumPy sgemm"
ALL = (OURS, FAISS, TORCH_ST, NUMPY, SGEMM)


@dataclass(frozen=True)
class MiningCase:
    """One retrieval shape."""

    name: str
    queries: int
    corpus: int
    dim: int
    k: int

    @property
    def label(self) -> str:
        def short(n: int) -> str:
            return f"{n // 1000}k" if n % 1000 == 0 and n >= 1000 else str(n)

        return f"{short(self.queries)}x{short(self.corpus)}x{self.dim} k={self.k}"

    @property
    def flops(self) -> float:
        return 2.0 * self.queries * self.corpus * self.dim


#: The cases of the issue: ``small`` (the default) and ``large`` (documented, not in tests).
CASES = {
    "small": MiningCase("small", 1000, 20_000, 384, 11),
    "large": MiningCase("large", 10_000, 200_000, 384, 100),
}


def make_embeddings(case: MiningCase, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """``(queries, corpus)``: L2-normalised float32 Gaussian rows."""
    g = np.random.default_rng(seed)
    out = []
    for rows in (case.queries, case.corpus):
        x = g.standard_normal((rows, case.dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out.append(x)
    return out[0], out[1]


# -- contenders --------------------------------------------------------------------------------


def _faiss_search(queries: np.ndarray, corpus: np.ndarray, k: int) -> Callable[[], Any]:
    faiss = require("faiss")
    index = faiss.IndexFlatIP(corpus.shape[1])
    index.add(corpus)

    def faiss_search() -> Any:
        scores, ids = index.search(queries, k)
        return ids, scores

    return faiss_search


def _sgemm(queries: np.ndarray, corpus: np.ndarray) -> Callable[[], Any]:
    # The bare product, 1024 queries at a time into one reused buffer (the full Q × N output
    # of the large case would be 8 GB): the same FLOPs, BLAS at full speed.
    buf = np.empty((min(NUMPY_CHUNK, queries.shape[0]), corpus.shape[0]), dtype=np.float32)

    def sgemm() -> Any:
        for i in range(0, queries.shape[0], NUMPY_CHUNK):
            q = queries[i : i + NUMPY_CHUNK]
            np.matmul(q, corpus.T, out=buf[: q.shape[0]])
        return buf

    return sgemm


def mining_contenders(
    queries: np.ndarray,
    corpus: np.ndarray,
    k: int,
    *,
    include: Sequence[str] = ALL,
    num_threads: int | None = None,
    st_chunk: int = ST_CHUNK,
) -> dict[str, Callable[[], Any]]:
    """Zero-argument callables, one per contender available here (see the module docstring).
    Each returns ``(ids, scores)`` except ``NumPy sgemm`` (the bare product)."""
    from lmobjectives.mining import exact_topk

    out: dict[str, Callable[[], Any]] = {}
    if OURS in include:
        out[OURS] = lambda: exact_topk(
            queries, corpus, k, similarity="dot", num_threads=num_threads
        )
    if FAISS in include and has("faiss"):
        out[FAISS] = _faiss_search(queries, corpus, k)
    if TORCH_ST in include and has("torch"):
        out[TORCH_ST] = st_topk(queries, corpus, k, st_chunk)
    if NUMPY in include:
        out[NUMPY] = numpy_topk(queries, corpus, k)
    if SGEMM in include:
        out[SGEMM] = _sgemm(queries, corpus)
    return out


def missing_mining_contenders() -> list[str]:
    """What :func:`mining_plan` skips because a package is missing, one line each."""
    out = []
    if not has("faiss"):
        out.append(f"{FAISS}: needs faiss-cpu (pip install 'lmobjectives[contrastive]')")
    if not has("torch"):
        out.append(f"{TORCH_ST}: needs torch (pip install 'lmobjectives[torch]')")
    return out


# -- peak memory -------------------------------------------------------------------------------

_MEMORY_SCRIPT = r"""
import importlib.util, json, re, resource, sys
sys.path[:0] = json.loads(sys.argv[4])
# A contender's library import is not its working memory: import it first.
need = {"faiss": "faiss", "torch (ST)": "torch"}.get(sys.argv[6])
if need and importlib.util.find_spec(need):
    __import__(need)
import numpy as np
from lmobjectives.lab.bench.mining import mining_contenders

def status(key):
    with open("/proc/self/status") as f:
        return int(re.search(key + r":\s+(\d+) kB", f.read()).group(1))

q = np.load(sys.argv[1]); c = np.load(sys.argv[2])
try:  # reset the high-water mark (Linux), so only what follows counts
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before, peak = status("VmRSS"), lambda: status("VmHWM")
except OSError:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
threads = int(sys.argv[5]) or None
fn = mining_contenders(q, c, int(sys.argv[3]), include=[sys.argv[6]], num_threads=threads)
fn[sys.argv[6]]()
print(json.dumps(max(0, peak() - before) / 1024))
"""


def _extra_memory(
    names: Sequence[str], queries: np.ndarray, corpus: np.ndarray, k: int, threads: int | None
) -> dict[str, float]:
    """Peak RSS above the loaded embeddings, one fresh process per contender (MiB)."""
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="lmobjectives-bench-") as tmp:
        qp, cp = os.path.join(tmp, "q.npy"), os.path.join(tmp, "c.npy")
        np.save(qp, queries)
        np.save(cp, corpus)
        path = json.dumps([p for p in sys.path if p])
        for name in names:
            if name == SGEMM:
                continue
            proc = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    _MEMORY_SCRIPT,
                    qp,
                    cp,
                    str(k),
                    path,
                    str(threads or 0),
                    name,
                ],
                capture_output=True,
                text=True,
                timeout=3600,
                check=False,
            )
            if proc.returncode == 0:
                out[name] = float(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


def _ignoring_batch(fn: Callable[[], Any]) -> Callable[[Any], Any]:
    """A contender call (which gets a batch) running the zero-argument ``fn``."""
    return lambda _: fn()


def mining_plan(corpus: Any, s: Settings) -> Plan:
    """Exact top-k retrieval for ``s.case`` (``"small"``: 1k × 20k × 384, k=11; ``"large"``:
    10k × 200k × 384, k=100, a few minutes and ~3 GB; or a :class:`MiningCase`) with the
    contenders of ``s.include`` (default: all) available here; ``corpus`` is not used (the
    embeddings are Gaussian, seeded by ``s.seed``). Rounds: 7 for small cases, 3 for large
    ones. After the run each row gets ``extra["recall"]`` (the share of lmobjectives' ids it
    also found) and, with ``s.memory``, ``extra["extra MiB"]`` (:func:`_extra_memory`)."""
    c = CASES[s.case] if isinstance(s.case, str) else s.case
    rounds = s.rounds or (7 if c.flops < 1e11 else 3)
    queries, embeddings = make_embeddings(c, s.seed)
    fns = mining_contenders(
        queries,
        embeddings,
        c.k,
        include=ALL if s.include is None else s.include,
        num_threads=s.num_threads,
        st_chunk=s.st_chunk or ST_CHUNK,
    )
    names = list(fns)
    case = Case(
        c.label,
        [Contender(n, _ignoring_batch(fn)) for n, fn in fns.items()],
        rounds,
        batch_size=c.queries,
        per_batch={"queries": float(c.queries), "GFLOP": c.flops / 1e9},
        references={"vs faiss": FAISS, "of sgemm": SGEMM},
        target=None,
        keep_results=True,
    )

    def finish(rows: list[BenchRow], results: dict[str, dict[str, Any]]) -> list[str]:
        memory = _extra_memory(names, queries, embeddings, c.k, s.num_threads) if s.memory else {}
        _recall_and_memory(rows, results[c.label], memory)
        return []

    return Plan(
        "mining",
        [case],
        MINING_TABLE,
        s.num_threads,
        thread_pools=("torch", "faiss", "blas"),
        skipped=missing_mining_contenders(),
        finish=finish,
        unit="call",
    )


def _recall_and_memory(
    rows: list[BenchRow], results: dict[str, Any], memory: dict[str, float]
) -> None:
    ours_ids = results[OURS][0] if OURS in results else None
    for row in rows:
        recall = None
        if ours_ids is not None and row.contender != SGEMM:
            ids = np.asarray(results[row.contender][0])
            recall = float(
                np.mean([np.isin(a, b).mean() for a, b in zip(ids, ours_ids, strict=True)])
            )
        row.extra = {"recall": recall, "extra MiB": memory.get(row.contender)}


# -- the table ---------------------------------------------------------------------------------


def _times(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.0f}%" if pct else f"{x:.2f}x"


def _mib(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


#: The mining benchmark's table.
MINING_TABLE = Table(
    columns=(
        Column("case", lambda r: r.workload, right=False),
        Column("contender", lambda r: r.contender, right=False),
        Column("queries/s", lambda r: f"{r.rate('queries'):,.0f}"),
        Column("GFLOP/s", lambda r: f"{r.rate('GFLOP'):,.1f}"),
        Column("vs faiss", lambda r: _times(r.ratios.get("vs faiss"))),
        Column("of sgemm", lambda r: _times(r.ratios.get("of sgemm"), pct=True)),
        Column("extra MiB", lambda r: _mib(r.extra.get("extra MiB"))),
    ),
    legend="queries/s: median over alternating rounds; vs faiss = t_faiss / t and of sgemm = "
    "t_sgemm / t (medians of same-round ratios); extra MiB = peak RSS above the loaded "
    "embeddings, one fresh process per contender.",
)
