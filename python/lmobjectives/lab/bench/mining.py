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

Distributed mining (:func:`distributed_mining_rows`, ``python -m lmobjectives.lab.bench.mining
--processes 1 2``; ``--corpus ROWS`` for a smaller corpus, as ``make bench`` runs it):
:func:`~lmobjectives.torch.distributed_mining.mine_hard_negatives_distributed` with 1, 2, ...
gloo processes on this machine sharing its cores, each mapping its shard of one
``.npy`` corpus; time barrier to barrier, and per rank the peak RSS and what mining added to it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
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
    "DistributedRow",
    "MiningCase",
    "distributed_mining_rows",
    "distributed_table",
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


# -- distributed mining: 1 vs several processes -------------------------------------------------

#: The distributed case: a corpus big enough that its share per rank shows in the memory.
DISTRIBUTED_CASE = MiningCase("sharded", 1000, 200_000, 384, 3)

_RANK_SCRIPT = r"""
import json, os, re, statistics, sys, time
sys.path[:0] = json.loads(sys.argv[1])
import numpy as np
import torch.distributed as dist
from lmobjectives.torch.distributed_mining import corpus_shard, mine_hard_negatives_distributed

def status(key):
    with open("/proc/self/status") as f:
        return int(re.search(key + r":\s+(\d+) kB", f.read()).group(1)) / 1024

rank, world, threads, rounds = (int(x) for x in sys.argv[3:7])
dist.init_process_group("gloo", init_method=sys.argv[2], rank=rank, world_size=world)
q = np.load(sys.argv[7])
positives = np.load(sys.argv[8])
shard = corpus_shard(sys.argv[9], rank, world)
with open("/proc/self/clear_refs", "w") as f:  # only what mining adds counts as peak
    f.write("5")
before = status("VmRSS")
times = []
for _ in range(rounds):
    dist.barrier()
    t0 = time.perf_counter()
    mined = mine_hard_negatives_distributed(
        q, shard, positives, num_negatives=int(sys.argv[10]), num_threads=threads, progress=False
    )
    dist.barrier()
    times.append(time.perf_counter() - t0)
print(json.dumps({"rank": rank, "seconds": statistics.median(times), "before": before,
                  "peak": status("VmHWM"), "ids": int(mined.negative_ids.sum())}))
dist.destroy_process_group()
"""


@dataclass
class DistributedRow:
    """One process count of :func:`distributed_mining_rows`."""

    processes: int
    threads: int
    seconds: float
    peak_mib: list[float]  # per rank: peak RSS during mining (the shard's pages included)
    extra_mib: list[float]  # per rank: peak RSS minus RSS before the first call
    checksum: int  # sum of the negative ids: equal across rows (the same result)


# long: one subprocess per rank and process count, the rows built from their JSON lines
def distributed_mining_rows(
    case: MiningCase = DISTRIBUTED_CASE,
    processes: Sequence[int] = (1, 2),
    *,
    cores: int | None = None,
    rounds: int = 3,
    seed: int = SEED,
) -> list[DistributedRow]:
    """:func:`~lmobjectives.torch.distributed_mining.mine_hard_negatives_distributed` on
    ``case`` (each query's positive: its best corpus row) with 1, 2, ... gloo processes on
    this machine, each mapping its shard of one ``.npy`` corpus and using ``cores // p``
    threads (``cores``: default all CPUs). Time: the median over ``rounds`` calls, barrier to
    barrier; memory: per rank, from ``/proc/self/status`` (Linux)."""
    from lmobjectives.mining import exact_topk

    cores = cores or os.cpu_count() or 1
    queries, corpus = make_embeddings(case, seed)
    positives = exact_topk(queries, corpus, 1, similarity="dot")[0][:, 0]
    out = []
    with tempfile.TemporaryDirectory(prefix="lmobjectives-bench-") as tmp:
        paths = [os.path.join(tmp, f"{name}.npy") for name in ("q", "p", "c")]
        for path, x in zip(paths, (queries, positives, corpus), strict=True):
            np.save(path, x)
        path = json.dumps([p for p in sys.path if p])
        for p in processes:
            threads = max(1, cores // p)
            init = f"file://{tmp}/rendezvous-{p}"
            procs = [
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        _RANK_SCRIPT,
                        path,
                        init,
                        str(r),
                        str(p),
                        str(threads),
                        str(rounds),
                        *paths,
                        str(case.k),
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for r in range(p)
            ]
            ranks = []
            for proc in procs:
                stdout, _ = proc.communicate(timeout=3600)
                if proc.returncode != 0:
                    raise RuntimeError(f"distributed mining: a rank exited with {proc.returncode}")
                ranks.append(json.loads(stdout.strip().splitlines()[-1]))
            ranks.sort(key=lambda r: r["rank"])
            out.append(
                DistributedRow(
                    processes=p,
                    threads=threads,
                    seconds=max(r["seconds"] for r in ranks),
                    peak_mib=[r["peak"] for r in ranks],
                    extra_mib=[r["peak"] - r["before"] for r in ranks],
                    checksum=ranks[0]["ids"],
                )
            )
    return out


def distributed_table(case: MiningCase, rows: Sequence[DistributedRow]) -> str:
    """The rows as a Markdown table."""
    base = rows[0].seconds
    lines = [
        "| case | processes | threads each | queries/s | speed-up | peak RSS MiB per rank | "
        "mining MiB per rank |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {case.label} | {r.processes} | {r.threads} | {case.queries / r.seconds:,.0f} | "
            f"{base / r.seconds:.2f}x | {' / '.join(f'{m:,.0f}' for m in r.peak_mib)} | "
            f"{' / '.join(f'{m:,.0f}' for m in r.extra_mib)} |"
        )
    return "\n".join(lines)


def _main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m lmobjectives.lab.bench.mining",
        description="distributed mining: 1 vs several gloo processes on this machine",
    )
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cores", type=int, default=None)
    parser.add_argument(
        "--corpus", type=int, default=DISTRIBUTED_CASE.corpus, help="corpus rows (embeddings)"
    )
    args = parser.parse_args(argv)
    if args.corpus < 1:
        parser.error(f"--corpus: must be positive, got {args.corpus}")
    case = replace(DISTRIBUTED_CASE, corpus=args.corpus)
    rows = distributed_mining_rows(case, args.processes, cores=args.cores, rounds=args.rounds)
    if len({r.checksum for r in rows}) != 1:
        raise RuntimeError("distributed mining: the process counts disagree on the result")
    print(distributed_table(case, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
