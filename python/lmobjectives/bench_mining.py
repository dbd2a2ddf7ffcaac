"""The mining benchmark: exact top-k retrieval, lmobjectives against the tools people use.

Used by ``lmobjectives bench --objective mining`` (the CLI) and by ``benches/``. Every contender
gets the same L2-normalised float32 embeddings (Gaussian, seeded) and returns each query's
``k`` best corpus rows by inner product (= cosine):

``lmobjectives``
    :func:`~lmobjectives.exact_topk` (``similarity="dot"``): tiled over queries and corpus,
    fused top-k, all threads.
``faiss``
    ``faiss.IndexFlatIP`` (exact): ``index.search(queries, k)``; the index is built once,
    outside the timing.
``torch (ST)``
    sentence-transformers' ``mine_hard_negatives`` retrieval without faiss: per chunk of
    ``faiss_batch_size`` (16384) queries, ``cos_sim(chunk, corpus)`` then ``torch.topk``.
``NumPy``
    per chunk of 1024 queries, ``chunk @ corpus.T``, ``argpartition``, then a sort of the k.

Roofline: ``NumPy sgemm`` times the bare product ``queries @ corpus.T`` (OpenBLAS, no
top-k; 1024 queries at a time into one reused output buffer) in the same rounds; ``of sgemm``
is ``t_sgemm / t`` — the fraction of this machine's single-precision GEMM throughput a
contender reaches while also selecting the top k.

Measuring (DESIGN.md §7): one warm-up call each, then ``rounds`` rounds run the contenders
one after the other, rotating the start; ``queries/s`` comes from the median time, ``vs faiss``
and ``of sgemm`` are medians over rounds of per-round time ratios. Peak memory is measured
separately, one fresh process per contender: ``extra MiB`` is its peak RSS minus the RSS with
the embeddings already loaded.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmobjectives._optional import require
from lmobjectives.bench import _has

__all__ = [
    "CASES",
    "MiningCase",
    "MiningRow",
    "format_mining_table",
    "make_embeddings",
    "mining_contenders",
    "missing_mining_contenders",
    "run_mining_benchmark",
]

OURS = "lmobjectives"
FAISS = "faiss"
TORCH_ST = "torch (ST)"
NUMPY = "NumPy"
SGEMM = "NumPy sgemm"

SEED = 1234
ST_CHUNK = 16384  # sentence-transformers' faiss_batch_size default
NUMPY_CHUNK = 1024


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


def mining_contenders(
    queries: np.ndarray,
    corpus: np.ndarray,
    k: int,
    *,
    include: Sequence[str] = (OURS, FAISS, TORCH_ST, NUMPY, SGEMM),
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
    if FAISS in include and _has("faiss"):
        faiss = require("faiss")
        index = faiss.IndexFlatIP(corpus.shape[1])
        index.add(corpus)

        def faiss_search() -> Any:
            scores, ids = index.search(queries, k)
            return ids, scores

        out[FAISS] = faiss_search
    if TORCH_ST in include and _has("torch"):
        torch = require("torch")
        q_t, c_t = torch.from_numpy(queries), torch.from_numpy(corpus)

        def st_search() -> Any:
            # sentence_transformers.util.cos_sim, then topk, per faiss_batch_size chunk.
            ids, scores = [], []
            c_n = torch.nn.functional.normalize(c_t, p=2, dim=1)
            for i in range(0, q_t.shape[0], st_chunk):
                q_n = torch.nn.functional.normalize(q_t[i : i + st_chunk], p=2, dim=1)
                s, j = torch.topk(q_n @ c_n.T, k=k, dim=1)
                ids.append(j)
                scores.append(s)
            return torch.cat(ids).numpy(), torch.cat(scores).numpy()

        out[TORCH_ST] = st_search
    if NUMPY in include:

        def numpy_search() -> Any:
            ids = np.empty((queries.shape[0], k), dtype=np.int64)
            scores = np.empty((queries.shape[0], k), dtype=np.float32)
            for i in range(0, queries.shape[0], NUMPY_CHUNK):
                s = queries[i : i + NUMPY_CHUNK] @ corpus.T
                part = np.argpartition(-s, k - 1, axis=1)[:, :k]
                top = np.take_along_axis(s, part, 1)
                order = np.argsort(-top, axis=1, kind="stable")
                ids[i : i + NUMPY_CHUNK] = np.take_along_axis(part, order, 1)
                scores[i : i + NUMPY_CHUNK] = np.take_along_axis(top, order, 1)
            return ids, scores

        out[NUMPY] = numpy_search
    if SGEMM in include:
        # The bare product, 1024 queries at a time into one reused buffer (the full Q × N
        # output of the large case would be 8 GB): the same FLOPs, BLAS at full speed.
        buf = np.empty((min(NUMPY_CHUNK, queries.shape[0]), corpus.shape[0]), dtype=np.float32)

        def sgemm() -> Any:
            for i in range(0, queries.shape[0], NUMPY_CHUNK):
                q = queries[i : i + NUMPY_CHUNK]
                np.matmul(q, corpus.T, out=buf[: q.shape[0]])
            return buf

        out[SGEMM] = sgemm
    return out


def missing_mining_contenders() -> list[str]:
    """What :func:`run_mining_benchmark` skips because a package is missing, one line each."""
    out = []
    if not _has("faiss"):
        out.append(f"{FAISS}: needs faiss-cpu (pip install 'lmobjectives[contrastive]')")
    if not _has("torch"):
        out.append(f"{TORCH_ST}: needs torch (pip install 'lmobjectives[torch]')")
    return out


# -- results -----------------------------------------------------------------------------------


@dataclass
class MiningRow:
    """One contender on one case."""

    case: str
    contender: str
    seconds: float  # median per call
    queries_per_s: float
    gflops: float
    ratio_vs_faiss: float | None = None  # t_faiss / t (median over rounds); > 1 is faster
    of_sgemm: float | None = None  # t_sgemm / t (median over rounds)
    extra_mib: float | None = None  # peak RSS above the loaded embeddings
    recall: float | None = None  # share of lmobjectives' ids also found (sanity)
    rounds: int = 0
    samples: list[float] = field(default_factory=list)


def _set_threads(num_threads: int | None) -> Callable[[], None]:
    """Sets torch's and faiss' thread counts (and BLAS', via threadpoolctl when installed);
    returns a function restoring them."""
    undo: list[Callable[[], None]] = []
    if num_threads:
        if _has("torch"):
            torch = require("torch")
            saved = torch.get_num_threads()
            torch.set_num_threads(num_threads)
            undo.append(lambda: torch.set_num_threads(saved))
        if _has("faiss"):
            faiss = require("faiss")
            saved_f = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(num_threads)
            undo.append(lambda: faiss.omp_set_num_threads(saved_f))
        if _has("threadpoolctl"):
            from threadpoolctl import threadpool_limits

            limits = threadpool_limits(num_threads, user_api="blas")
            undo.append(limits.restore_original_limits)

    def restore() -> None:
        for f in reversed(undo):
            f()

    return restore


_MEMORY_SCRIPT = r"""
import importlib.util, json, re, resource, sys
sys.path[:0] = json.loads(sys.argv[4])
# A contender's library import is not its working memory: import it first.
need = {"faiss": "faiss", "torch (ST)": "torch"}.get(sys.argv[6])
if need and importlib.util.find_spec(need):
    __import__(need)
import numpy as np
from lmobjectives.bench_mining import mining_contenders

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


def run_mining_benchmark(
    case: str | MiningCase = "small",
    *,
    rounds: int | None = None,
    num_threads: int | None = None,
    include: Sequence[str] = (OURS, FAISS, TORCH_ST, NUMPY, SGEMM),
    memory: bool = True,
    st_chunk: int | None = None,
    progress: bool | None = None,
    seed: int = SEED,
) -> list[MiningRow]:
    """Measures exact top-k retrieval for one case (see the module docstring).

    Args:
        case: ``"small"`` (1k × 20k × 384, k=11), ``"large"`` (10k × 200k × 384, k=100; a few
            minutes and ~3 GB), or a :class:`MiningCase`.
        rounds: alternating rounds (default 7 for small cases, 3 for large ones).
        num_threads: threads for every contender (default: all CPUs).
        include: contender names to run.
        memory: also measure each contender's peak memory in a fresh process.
        st_chunk: queries per chunk of the torch (ST) contender (default 16384, as
            sentence-transformers; its score matrix is ``chunk × N`` float32).
        progress: draw a progress bar (``None``: when stderr is a terminal).
        seed: seed of the embeddings.

    Returns:
        One :class:`MiningRow` per available contender.
    """
    from lmobjectives._progress import Progress

    c = CASES[case] if isinstance(case, str) else case
    if rounds is None:
        rounds = 7 if c.flops < 1e11 else 3
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds: expected a positive int, got {rounds!r}")
    queries, corpus = make_embeddings(c, seed)
    restore = _set_threads(num_threads)
    try:
        fns = mining_contenders(
            queries,
            corpus,
            c.k,
            include=include,
            num_threads=num_threads,
            st_chunk=st_chunk or ST_CHUNK,
        )
        names = list(fns)
        samples: dict[str, list[float]] = {n: [] for n in names}
        results: dict[str, Any] = {}
        with Progress(
            len(names) * (rounds + 1), "bench mining", unit="call", enabled=progress
        ) as bar:
            for n in names:  # warm-up, and the results for the sanity check
                results[n] = fns[n]()
                bar.update(1)
            for r in range(rounds):
                for i in range(len(names)):
                    n = names[(r + i) % len(names)]
                    t0 = time.perf_counter()
                    fns[n]()
                    samples[n].append(time.perf_counter() - t0)
                    bar.update(1)
        del fns
    finally:
        restore()
    extra = _extra_memory(names, queries, corpus, c.k, num_threads) if memory else {}

    def ratio(num: str, den: str) -> float | None:
        if num not in samples or den not in samples:
            return None
        return statistics.median(a / b for a, b in zip(samples[num], samples[den], strict=True))

    ours_ids = results[OURS][0] if OURS in results else None
    rows = []
    for n in names:
        t = statistics.median(samples[n])
        recall = None
        if ours_ids is not None and n != SGEMM:
            ids = np.asarray(results[n][0])
            recall = float(
                np.mean([np.isin(a, b).mean() for a, b in zip(ids, ours_ids, strict=True)])
            )
        rows.append(
            MiningRow(
                case=c.label,
                contender=n,
                seconds=t,
                queries_per_s=c.queries / t,
                gflops=c.flops / t / 1e9,
                ratio_vs_faiss=ratio(FAISS, n),
                of_sgemm=ratio(SGEMM, n),
                extra_mib=extra.get(n),
                recall=recall,
                rounds=rounds,
                samples=samples[n],
            )
        )
    return rows


# -- the table ---------------------------------------------------------------------------------

COLUMNS = ("case", "contender", "queries/s", "GFLOP/s", "vs faiss", "of sgemm", "extra MiB")


def _cells(row: MiningRow) -> list[str]:
    def ratio(x: float | None, pct: bool = False) -> str:
        if x is None:
            return "-"
        return f"{100 * x:.0f}%" if pct else f"{x:.2f}x"

    return [
        row.case,
        row.contender,
        f"{row.queries_per_s:,.0f}",
        f"{row.gflops:,.1f}",
        ratio(row.ratio_vs_faiss),
        ratio(row.of_sgemm, pct=True),
        "-" if row.extra_mib is None else f"{row.extra_mib:,.0f}",
    ]


def format_mining_table(rows: Sequence[MiningRow], markdown: bool = False) -> str:
    """The rows as an aligned text table, or as a GitHub Markdown table."""
    body = [_cells(r) for r in rows]
    right = [False, False, True, True, True, True, True]
    if markdown:
        lines = ["| " + " | ".join(COLUMNS) + " |"]
        lines.append("|" + "|".join("---:" if r else "---" for r in right) + "|")
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(cells[i]) for cells in body)) for i, h in enumerate(COLUMNS)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            x.rjust(w) if r else x.ljust(w) for x, w, r in zip(cells, widths, right, strict=True)
        ).rstrip()

    return "\n".join([line(COLUMNS), line(["-" * w for w in widths]), *map(line, body)])
