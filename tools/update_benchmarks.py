"""Rewrite the benchmark tables of ``docs/benchmarks.md`` from fresh runs.

Usage: ``python tools/update_benchmarks.py [NAME ...] [--list]`` from anywhere, with the
interpreter of the development environment (``.venv/bin/python``): the commands run as
``python -m lmobjectives`` under the interpreter that runs this script.

The commands are the ``lmobjectives bench ... --markdown`` lines of the Makefile's ``bench``
target, read from the Makefile so that the two never drift apart. Each command's table goes
between ``<!-- bench:NAME:start -->`` and ``<!-- bench:NAME:end -->`` on the page, NAME being
the command's ``--objective`` (``mlm`` when it has none). Every marker pair is checked before
anything runs; the page is rewritten after each command, so an interrupted run keeps the
tables it has measured. Only the tables change: the prose around them (machine, load, how to
read them) is updated by hand.

This takes many minutes; run it on an otherwise idle machine. ``--list`` prints the commands
and their markers without running anything. NAME arguments run only those tables.
Standard library only.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAKEFILE = ROOT / "Makefile"
PAGE = ROOT / "docs" / "benchmarks.md"
TARGET = "bench"


def makefile_commands(makefile: str, target: str = TARGET) -> list[tuple[str, list[str]]]:
    """``(name, arguments)`` of each ``lmobjectives bench ... --markdown`` line of a target.

    The arguments start at ``bench`` (the program itself is left out); the name is the value
    of ``--objective``, or ``mlm`` (the command's default) without one.
    """
    commands: list[tuple[str, list[str]]] = []
    lines = makefile.splitlines()
    header = re.compile(rf"^{re.escape(target)}\s*:(?!=)")
    try:
        start = next(i for i, line in enumerate(lines) if header.match(line))
    except StopIteration:
        raise ValueError(f"Makefile: no {target!r} target") from None
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        words = shlex.split(line.strip())
        for i, word in enumerate(words[:-1]):
            if word.rsplit("/", 1)[-1] == "lmobjectives" and words[i + 1] == "bench":
                args = words[i + 1 :]
                if "--markdown" in args:
                    commands.append((_objective(args), args))
                break
    if not commands:
        raise ValueError(f"Makefile: the {target!r} target runs no 'lmobjectives bench --markdown'")
    names = [name for name, _ in commands]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ValueError(f"Makefile: more than one {target!r} command for {duplicated}")
    return commands


def _objective(args: list[str]) -> str:
    for i, arg in enumerate(args):
        if arg == "--objective" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--objective="):
            return arg.split("=", 1)[1]
    return "mlm"


def _markers(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- bench:{re.escape(name)}:start -->\n)(.*?)(<!-- bench:{re.escape(name)}:end -->)",
        flags=re.DOTALL,
    )


def check_markers(page: str, names: list[str]) -> None:
    """Raises ValueError unless each name has exactly one start/end marker pair on the page."""
    problems = []
    for name in names:
        found = len(_markers(name).findall(page))
        if found != 1:
            problems.append(f"bench:{name}: {found} marker pairs (expected 1)")
    if problems:
        raise ValueError(f"{PAGE.relative_to(ROOT)}: " + "; ".join(problems))


def markdown_table(output: str) -> str:
    """The first Markdown table (a run of lines starting with ``|``) in a command's output."""
    table: list[str] = []
    for line in output.splitlines():
        if line.startswith("|"):
            table.append(line.rstrip())
        elif table:
            break
    if len(table) < 3:
        raise ValueError("no Markdown table (header, rule and at least one row) in the output")
    return "\n".join(table)


def replace_table(page: str, name: str, table: str) -> str:
    """The page with the text between ``name``'s markers replaced by ``table``."""
    check_markers(page, [name])
    return _markers(name).sub(lambda m: f"{m.group(1)}{table}\n{m.group(3)}", page)


def _run(args: list[str]) -> str:
    """Runs ``python -m lmobjectives ARGS`` in the repository root, echoing its output."""
    command = [sys.executable, "-m", "lmobjectives", *args]
    print(f"$ {shlex.join(['python', '-m', 'lmobjectives', *args])}", flush=True)
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    if process.wait() != 0:
        raise SystemExit(
            f"update_benchmarks: the command failed with exit code {process.returncode}"
        )
    return "".join(lines)


def _write(page: str) -> None:
    tmp = PAGE.with_name(f".{PAGE.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, PAGE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help="only these tables")
    parser.add_argument("--list", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)

    commands = makefile_commands(MAKEFILE.read_text(encoding="utf-8"))
    known = [name for name, _ in commands]
    unknown = sorted(set(args.names) - set(known))
    if unknown:
        parser.error(f"no such table: {', '.join(unknown)} (the Makefile has {', '.join(known)})")
    selected = [(n, a) for n, a in commands if not args.names or n in args.names]
    page = PAGE.read_text(encoding="utf-8")
    check_markers(page, [name for name, _ in selected])
    if args.list:
        for name, command in selected:
            print(f"bench:{name}\tpython -m lmobjectives {shlex.join(command)}")
        return 0
    for name, command in selected:
        table = markdown_table(_run(command))
        page = replace_table(PAGE.read_text(encoding="utf-8"), name, table)
        _write(page)
        print(f"update_benchmarks: bench:{name} written to {PAGE.relative_to(ROOT)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
