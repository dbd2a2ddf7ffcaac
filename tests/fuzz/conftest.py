"""Prints the fuzz table (cases, clean errors, failures per entry point) after the run; with
``LMOBJ_FUZZ_TABLE=PATH`` also writes it there."""

from __future__ import annotations

import os

import fuzz_harness


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not fuzz_harness.STATS:
        return
    profile = "full (LMOBJ_FUZZ=full)" if fuzz_harness.FULL else "ci"
    terminalreporter.section(f"lmobjectives fuzz table, {profile} profile")
    terminalreporter.write_line(fuzz_harness.table())
    path = os.environ.get("LMOBJ_FUZZ_TABLE")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            f.write(fuzz_harness.table() + "\n")
