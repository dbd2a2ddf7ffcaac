"""The benchmarks of ``lmobjectives bench``: lmobjectives against its baselines, in one run.

Every benchmark is a function ``plan(corpus, settings) -> Plan`` that builds its cases (the
inputs and the contenders, see :mod:`~lmobjectives.lab.bench.runner`); :func:`run_benchmark`
measures any of them the same way and returns rows of one type, shown by one formatter
(:func:`~lmobjectives.lab.bench.runner.format_table`) in the benchmark's table.

- :mod:`~lmobjectives.lab.bench.masking`: ``mlm`` (with the DataLoader run) and ``wwm``;
- :mod:`~lmobjectives.lab.bench.packing`: ``packing``;
- :mod:`~lmobjectives.lab.bench.pairs`: ``pairs`` (NSP instances);
- :mod:`~lmobjectives.lab.bench.denoising`: ``t5`` and ``bart``;
- :mod:`~lmobjectives.lab.bench.mining`: ``mining`` (exact top-k retrieval; its own table).

The collation benchmarks share the batches of :mod:`~lmobjectives.lab.bench.workloads`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lmobjectives.lab.bench.denoising import bart_plan, t5_plan
from lmobjectives.lab.bench.masking import mlm_plan, wwm_plan
from lmobjectives.lab.bench.mining import mining_plan
from lmobjectives.lab.bench.packing import packing_plan
from lmobjectives.lab.bench.pairs import pairs_plan
from lmobjectives.lab.bench.runner import BenchResult, Plan, Settings, run_plan

__all__ = ["BENCHMARKS", "COLLATION", "run_benchmark"]

#: Every benchmark by name: the function that plans it.
BENCHMARKS: dict[str, Callable[[Any, Settings], Plan]] = {
    "mlm": mlm_plan,
    "wwm": wwm_plan,
    "packing": packing_plan,
    "pairs": pairs_plan,
    "t5": t5_plan,
    "bart": bart_plan,
    "mining": mining_plan,
}

#: The benchmarks over corpus batches (``lmobjectives bench --objective all``), in table order.
COLLATION = ("mlm", "wwm", "packing", "pairs", "t5", "bart")


def run_benchmark(objective: str, corpus: Any = None, **settings: Any) -> BenchResult:
    """Plans and measures the benchmark ``objective`` (a key of :data:`BENCHMARKS`).

    Args:
        objective: ``"mlm"``, ``"wwm"``, ``"packing"``, ``"pairs"``, ``"t5"``, ``"bart"`` or
            ``"mining"``.
        corpus: a :class:`~lmobjectives.corpus.TokenCorpus` (anything with ``ids`` and a
            ``tokenizer``); ``None`` loads :meth:`TokenCorpus.default` (mining uses none).
        settings: the fields of :class:`~lmobjectives.lab.bench.runner.Settings`
            (``batch_size``, ``rounds``, ``quick``, ``include_hf``, ``num_threads``, …).

    Returns:
        The rows (one per case and contender available here), notes, the contenders skipped
        for a missing package, and the table to show the rows in.
    """
    if objective not in BENCHMARKS:
        raise ValueError(f"objective: must be one of {list(BENCHMARKS)}, got {objective!r}")
    s = Settings(**settings)
    return run_plan(BENCHMARKS[objective](corpus, s), progress=s.progress)
