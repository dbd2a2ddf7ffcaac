"""The fuzz suite's harness: profiles, per-entry-point counts, and the one way a case runs.

A case calls an entry point with generated (often hostile) arguments. It either returns —
then its output is checked against the entry point's invariants — or raises a *clean* error:
a ``ValueError``/``TypeError``/``IndexError`` (every ``lmobjectives.errors`` class is one)
whose message is not empty. Anything else (``OverflowError``, ``RuntimeError``,
``MemoryError``, ``RecursionError``, a Rust ``PanicException``, a failed invariant) is a
failure. ``LMOBJ_FUZZ=full`` multiplies every budget by ten (``make fuzz``).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass

from hypothesis import HealthCheck, settings

FULL = os.environ.get("LMOBJ_FUZZ", "") == "full"
#: ``LMOBJ_FUZZ=smoke``: a twentieth of the CI budgets, to try the suite quickly.
SCALE = {"full": 10.0, "smoke": 0.05}.get(os.environ.get("LMOBJ_FUZZ", ""), 1.0)
CLEAN = (ValueError, TypeError, IndexError)

settings.register_profile(
    "lmobj-fuzz",
    derandomize=True,  # the same cases on every run: CI is deterministic
    deadline=None,
    database=None,
    print_blob=False,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)


def budget(n: int) -> settings:
    """Settings for a property with ``n`` cases in the CI profile (``10 n`` with full)."""
    return settings(settings.get_profile("lmobj-fuzz"), max_examples=max(1, int(n * SCALE)))


@dataclass
class Count:
    cases: int = 0
    clean_errors: int = 0
    failures: int = 0


STATS: dict[str, Count] = defaultdict(Count)


def run(entry: str, call, check=None):
    """Runs one case of ``entry``; returns the output (``None`` after a clean error)."""
    count = STATS[entry]
    count.cases += 1
    try:
        out = call()
    except CLEAN as e:
        if not str(e).strip():
            count.failures += 1
            raise AssertionError(f"{entry}: {type(e).__name__} with an empty message") from e
        if isinstance(e, OverflowError):  # pragma: no cover (OverflowError is not CLEAN)
            count.failures += 1
            raise
        count.clean_errors += 1
        return None
    except BaseException:
        count.failures += 1
        raise
    if check is not None:
        try:
            check(out)
        except BaseException:
            count.failures += 1
            raise
    return out


def table() -> str:
    rows = sorted(STATS.items())
    total = Count(
        sum(c.cases for _, c in rows),
        sum(c.clean_errors for _, c in rows),
        sum(c.failures for _, c in rows),
    )
    lines = [
        "| entry point | cases | clean errors | failures |",
        "|---|---:|---:|---:|",
        *(f"| `{name}` | {c.cases} | {c.clean_errors} | {c.failures} |" for name, c in rows),
        f"| **total** | {total.cases} | {total.clean_errors} | {total.failures} |",
    ]
    return "\n".join(lines)
