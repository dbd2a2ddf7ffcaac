"""The one benchmark runner: contenders timed on the same inputs in one run, one row type, one
table formatter. Every benchmark of :mod:`lmobjectives.lab.bench` is a :class:`Plan` of
:class:`Case` s measured by :func:`run_plan`.

Measuring (design: §6): each contender of a case is warmed up on every one of its batches;
with a ``target``, a single call is then timed to choose ``k``, the calls per round (about
``target`` seconds; without one, ``k = 1``). Then ``rounds`` rounds run the contenders one after
the other (A B C D, B C D A, …: the start rotates so no contender always follows the same one),
each timing ``k`` calls cycling over its batches. A row reports the median time per batch;
a ratio column (``vs HF``, ``vs faiss``, …) is the median over rounds of
``t_reference / t_contender`` measured in the same round, so > 1 is faster than the reference.
"""

from __future__ import annotations

import importlib.util
import math
import resource
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from lmobjectives import RepeatedSampleKeyWarning

__all__ = [
    "SEED",
    "BenchResult",
    "BenchRow",
    "Case",
    "Column",
    "Contender",
    "Plan",
    "Settings",
    "Table",
    "format_table",
    "has",
    "limit_threads",
    "measure",
    "peak_rss_mib",
    "ratio_x",
    "run_plan",
    "si",
]

SEED = 1234


# -- what is measured ------------------------------------------------------------------------


@dataclass
class Contender:
    """One implementation: ``call(batch)`` on each of its ``batches`` in turn.

    ``batches_per_call``: how many batches one call handles (a whole ``DataLoader`` epoch is one
    call of many batches); samples are seconds per batch. ``calls`` (the calls per round) and
    ``samples`` (one per round) are filled in by :func:`measure`.
    """

    name: str
    call: Callable[[Any], Any]
    batches: Sequence[Any] = (None,)
    batches_per_call: int = 1
    calls: int = 1
    samples: list[float] = field(default_factory=list)


@dataclass
class Case:
    """Contenders measured against each other: one section of a table.

    Args:
        label: the row label (``workload`` column), e.g. ``"mlm-ragged-32x128-512"``.
        contenders: in table order.
        rounds: alternating rounds.
        batch_size: examples per batch (reported, not used).
        per_batch: what one batch holds, for the rates (``{"tokens": 9000.0}``).
        references: ratio column → the contender it divides by (absent contender: no ratio).
        target: seconds per contender per round, to choose the calls per round (``None``: one
            call per round, and a single warm-up call per batch).
        keep_results: keep each contender's output on its first batch (handed to the plan's
            ``finish``, e.g. to check the outputs against each other).
    """

    label: str
    contenders: list[Contender]
    rounds: int
    batch_size: int = 0
    per_batch: dict[str, float] = field(default_factory=dict)
    references: dict[str, str] = field(default_factory=dict)
    target: float | None = 0.1
    keep_results: bool = False


@dataclass
class BenchRow:
    """One contender on one case.

    ``seconds`` is the median time per batch; ``ratios`` maps a ratio column to the median over
    rounds of ``t_reference / t_this`` (``None`` when the reference did not run); ``extra`` holds
    what a benchmark adds after the run (``"extra MiB"``, ``"recall"``).
    """

    workload: str
    contender: str
    batch_size: int
    seconds: float
    per_batch: dict[str, float]
    ratios: dict[str, float | None]
    rounds: int = 0
    calls_per_round: int = 0
    samples: list[float] = field(default_factory=list, repr=False)  # seconds per batch, by round
    extra: dict[str, float | None] = field(default_factory=dict)

    def rate(self, unit: str = "batches") -> float:
        """``unit`` per second: batches, or an amount of :attr:`per_batch` (``"tokens"``)."""
        return (1.0 if unit == "batches" else self.per_batch[unit]) / self.seconds


# -- measuring ---------------------------------------------------------------------------------


def _time_calls(c: Contender, start: int, k: int) -> float:
    n = len(c.batches)
    t0 = time.perf_counter()
    for j in range(start, start + k):
        c.call(c.batches[j % n])
    return (time.perf_counter() - t0) / k


def _warm_up(c: Contender, target: float | None, keep: bool) -> Any:
    """Runs ``c`` once on every batch (returning its first output when ``keep``), then picks the
    calls per round from a timed call."""
    kept = None
    for i, b in enumerate(c.batches):
        out = c.call(b)
        if keep and i == 0:
            kept = out
    if target is not None:
        once = min(_time_calls(c, j, 1) for j in range(min(3, len(c.batches))))
        c.calls = max(1, min(100_000, math.ceil(target / max(once, 1e-9))))
    return kept


def _median_ratio(num: list[float], den: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(num, den, strict=True))


def _alternate(contenders: list[Contender], rounds: int, progress: Any) -> None:
    n = len(contenders)
    for r in range(rounds):
        for i in range(n):
            c = contenders[(r + i) % n]
            c.samples.append(_time_calls(c, r, c.calls) / c.batches_per_call)
            progress.update(1)


def _rows(case: Case) -> list[BenchRow]:
    by_name = {c.name: c for c in case.contenders}
    refs = {column: by_name.get(name) for column, name in case.references.items()}
    rows = []
    for c in case.contenders:
        rows.append(
            BenchRow(
                workload=case.label,
                contender=c.name,
                batch_size=case.batch_size,
                seconds=statistics.median(c.samples),
                per_batch=dict(case.per_batch),
                ratios={
                    column: _median_ratio(ref.samples, c.samples) if ref else None
                    for column, ref in refs.items()
                },
                rounds=case.rounds,
                calls_per_round=c.calls * c.batches_per_call,
                samples=list(c.samples),
            )
        )
    return rows


def measure(case: Case, progress: Any) -> tuple[list[BenchRow], dict[str, Any]]:
    """Warms up and times the contenders of ``case`` (see the module docstring); returns its
    rows and, with ``keep_results``, each contender's output on its first batch by name.
    ``progress`` gets one ``update(1)`` per warm-up and per timed round of a contender."""
    results = {}
    for c in case.contenders:
        out = _warm_up(c, case.target, case.keep_results)
        if case.keep_results:
            results[c.name] = out
        progress.update(1)
    _alternate(case.contenders, case.rounds, progress)
    return _rows(case), results


# -- a benchmark -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One table column: its header, the cell of a row, right-aligned or not; an ``optional``
    column is left out when every cell is ``"-"``."""

    header: str
    cell: Callable[[BenchRow], str]
    right: bool = True
    optional: bool = False


@dataclass(frozen=True)
class Table:
    """The columns a benchmark's rows are shown in, and what they mean (printed below)."""

    columns: tuple[Column, ...]
    legend: str


def _no_notes(rows: list[BenchRow], results: dict[str, dict[str, Any]]) -> list[str]:
    return []


@dataclass
class Plan:
    """One benchmark ready to run: its cases, how its rows are shown, and what to do after.

    Args:
        name: the benchmark's name (the progress bar says ``bench <name>``).
        cases: measured in order; each case's contenders are dropped once it is measured (so
            what they hold — DataLoader workers, indexes, buffers — goes with them).
        table: the columns of its rows.
        num_threads: when given, the thread pools named in ``thread_pools`` (``"torch"``,
            ``"faiss"``, ``"blas"``) are limited to it during the measurements.
        skipped: contenders left out because a package is missing, one line each.
        finish: called after the measurements with the rows and the kept results (case label
            → contender → output); may fill in the rows' ``extra``; returns notes.
        unit: the progress bar's unit.
    """

    name: str
    cases: list[Case]
    table: Table
    num_threads: int | None = None
    thread_pools: tuple[str, ...] = ()
    skipped: list[str] = field(default_factory=list)
    finish: Callable[[list[BenchRow], dict[str, dict[str, Any]]], list[str]] = _no_notes
    unit: str = "round"


@dataclass
class BenchResult:
    """What one benchmark run gives: its rows, notes, skipped contenders and table."""

    rows: list[BenchRow]
    notes: list[str]
    skipped: list[str]
    table: Table


def run_plan(plan: Plan, progress: bool | None = None) -> BenchResult:
    """Measures every case of ``plan`` (in order, with its thread limits), then runs its
    ``finish``. ``progress``: draw a progress bar (``None``: when stderr is a terminal)."""
    from lmobjectives._progress import Progress

    total = sum(len(c.contenders) * (c.rounds + 1) for c in plan.cases)
    rows: list[BenchRow] = []
    results: dict[str, dict[str, Any]] = {}
    with (
        limit_threads(plan.num_threads, plan.thread_pools),
        Progress(total, f"bench {plan.name}", unit=plan.unit, enabled=progress) as bar,
        warnings.catch_warnings(),
    ):
        # Rounds collate the same batches again on purpose: the collators' repeated-key
        # check still runs (its cost is measured), its warning is not news here.
        warnings.simplefilter("ignore", RepeatedSampleKeyWarning)
        for case in plan.cases:
            case_rows, kept = measure(case, bar)
            rows += case_rows
            if case.keep_results:
                results[case.label] = kept
            case.contenders = []
    return BenchResult(rows, plan.finish(rows, results), list(plan.skipped), plan.table)


@dataclass(frozen=True)
class Settings:
    """The options every benchmark takes (each uses those that apply to it).

    Args:
        batch_size: examples per batch.
        rounds: alternating rounds per case (default: the benchmark's — 15, or 3 with
            ``quick``; pairs 7; mining 7 for small cases, 3 for large ones).
        quick: a run of a few seconds (tests, CI): short rounds, fewer batches.
        include_hf: measure Hugging Face's contenders (they need transformers + torch).
        include_dataloader: MLM: also measure through ``torch.utils.data.DataLoader`` with 0
            and 2 workers (needs torch).
        num_threads: threads per lmobjectives call (default: all CPUs); when given, the
            benchmark's thread pools (torch's intra-op threads; for mining also faiss and BLAS)
            are set to the same number for the run.
        progress: draw a progress bar (``None``: when stderr is a terminal).
        seed: the seed of every contender and of the inputs.
        case: mining: ``"small"``, ``"large"`` or a ``MiningCase``.
        include: mining: the contender names to run (default: all).
        memory: mining: also measure each contender's peak memory in a fresh process.
        st_chunk: mining: queries per chunk of the ``torch (ST)`` contender (default 16384).
    """

    batch_size: int = 32
    rounds: int | None = None
    quick: bool = False
    include_hf: bool = True
    include_dataloader: bool = True
    num_threads: int | None = None
    progress: bool | None = None
    seed: int = SEED
    case: Any = "small"
    include: Sequence[str] | None = None
    memory: bool = True
    st_chunk: int | None = None

    def __post_init__(self) -> None:
        if not _positive_int(self.batch_size):
            raise ValueError(f"batch_size: expected a positive int, got {self.batch_size!r}")
        if self.rounds is not None and not _positive_int(self.rounds):
            raise ValueError(f"rounds: expected a positive int, got {self.rounds!r}")
        n = self.num_threads
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise ValueError(f"num_threads: expected a non-negative int, got {n!r}")

    @property
    def target(self) -> float:
        """Seconds per contender per round."""
        return 0.004 if self.quick else 0.1

    def rounds_or(self, default: int, quick: int = 3) -> int:
        """The rounds asked for, else ``quick`` with ``quick=True``, else ``default``."""
        return self.rounds or (quick if self.quick else default)


def _positive_int(x: Any) -> bool:
    return not isinstance(x, bool) and isinstance(x, int) and x >= 1


# -- the machine -------------------------------------------------------------------------------


def has(module: str) -> bool:
    """Whether ``module`` is installed (without importing it; a ``sys.modules[module] = None``
    block counts as absent)."""
    if sys.modules.get(module, False) is None:  # blocked (e.g. by a test)
        return False
    return importlib.util.find_spec(module) is not None


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


@contextmanager
def limit_threads(num_threads: int | None, pools: Sequence[str] = ("torch",)) -> Iterator[None]:
    """Within the block, torch's intra-op threads (``"torch"``), faiss' OpenMP threads
    (``"faiss"``) and BLAS' (``"blas"``, via threadpoolctl when installed) are ``num_threads``,
    for those of ``pools`` that are installed; nothing changes when ``num_threads`` is falsy."""
    from lmobjectives._optional import require

    undo: list[Callable[[], None]] = []
    if num_threads:
        if "torch" in pools and has("torch"):
            torch = require("torch")
            saved = torch.get_num_threads()
            torch.set_num_threads(num_threads)
            undo.append(lambda: torch.set_num_threads(saved))
        if "faiss" in pools and has("faiss"):
            faiss = require("faiss")
            saved_f = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(num_threads)
            undo.append(lambda: faiss.omp_set_num_threads(saved_f))
        if "blas" in pools and has("threadpoolctl"):
            from threadpoolctl import threadpool_limits

            limits = threadpool_limits(num_threads, user_api="blas")
            undo.append(limits.restore_original_limits)
    try:
        yield
    finally:
        for f in reversed(undo):
            f()


# -- the table ---------------------------------------------------------------------------------


def si(x: float) -> str:
    """``x`` with an SI suffix and 3 significant digits (``1.23M``)."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def ratio_x(x: float | None) -> str:
    """A speed ratio: ``1.23x``, ``12.3x``; ``-`` when there is none."""
    if x is None:
        return "-"
    return f"{x:.1f}x" if x >= 10 else f"{x:.2f}x"


def format_table(rows: Sequence[BenchRow], table: Table, markdown: bool = False) -> str:
    """The rows as an aligned text table, or as a GitHub Markdown table, in ``table``'s
    columns."""
    columns = [c for c in table.columns if not c.optional or any(c.cell(r) != "-" for r in rows)]
    headers = [c.header for c in columns]
    right = [c.right for c in columns]
    body = [[c.cell(r) for c in columns] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |"]
        lines.append("|" + "|".join("---:" if r else "---" for r in right) + "|")
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max([len(h), *(len(cells[i]) for cells in body)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, body)])
