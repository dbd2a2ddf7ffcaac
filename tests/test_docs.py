"""The documentation is tested: its examples run, the docstrings' examples pass, the site builds.

1. Every ```python block of ``README.md`` and ``docs/**/*.md`` runs, each in a fresh namespace
   (tracebacks point at the page's own line numbers). A block that must not run is marked, and
   says why, in one of two ways: an HTML comment ``<!-- no-run: reason -->`` on the line
   directly above its fence, or a fence with more than the language (```python title="...").
   Exemptions are counted: :data:`EXPECTED_EXEMPTIONS` must be updated, on purpose, to add one.
   A few README blocks make claims in their comments; :data:`CHECKS` asserts them on the
   namespace the block leaves behind.
2. ``doctest`` runs the ``>>>`` examples of every module of ``lmobjectives``, the lab included
   (modules are found on disk, so a new module is covered without being listed here).
3. ``mkdocs build --strict`` succeeds (slow: it renders the API pages from the docstrings).
"""

from __future__ import annotations

import doctest
import importlib
import importlib.machinery
import importlib.util
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

#: Blocks exempted from running (see the module docstring). Raise it only for a block that
#: cannot run in a test (a multi-process launch, minutes of training), with its reason written.
#: 1: docs/guide/training.md's torchrun script (a multi-process launch).
EXPECTED_EXEMPTIONS = 1

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*?)[ \t]*$")
_NO_RUN = re.compile(r"^[ \t]*<!--[ \t]*no-run:[ \t]*(?P<reason>.*?)[ \t]*-->[ \t]*$")


@dataclass(frozen=True)
class Block:
    """One ```python block of a page."""

    page: str  # relative to the repository root
    line: int  # 1-based line of the first line of code
    code: str
    exempt: str | None  # why it does not run, or None

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def python_blocks(text: str, page: str) -> list[Block]:
    """The ```python blocks of a Markdown text, in order (blocks of other languages skipped)."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, info = opening.group("fence"), opening.group("info")
        end = i + 1
        while end < len(lines):
            closing = _FENCE.match(lines[end])
            if (
                closing is not None
                and closing.group("fence")[0] == fence[0]
                and len(closing.group("fence")) >= len(fence)
                and not closing.group("info")
            ):
                break
            end += 1
        language, _, extra = info.partition(" ")
        if language == "python":
            above = _NO_RUN.match(lines[i - 1]) if i > 0 else None
            exempt = above.group("reason") if above else None
            if exempt is None and extra.strip():
                exempt = f"fenced as ```python {extra.strip()}"
            code = textwrap.dedent("\n".join(lines[i + 1 : end])) + "\n"
            blocks.append(Block(page, i + 2, code, exempt))
        i = end + 1
    return blocks


BLOCKS = [
    block
    for path in PAGES
    for block in python_blocks(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
]
RUNNABLE = [b for b in BLOCKS if b.exempt is None]
EXEMPT = [b for b in BLOCKS if b.exempt is not None]


def _exact_budget(namespace: dict[str, Any]) -> None:
    # The claim in its comment: 77 = round(0.15 · 512) selected positions in every row.
    labels = namespace["batch"]["labels"]
    assert ((labels != -100).sum(axis=1) == 77).all()


def _packed_positions(namespace: dict[str, Any]) -> None:
    # The position_ids shown in its comment.
    positions = namespace["batch"]["position_ids"][0, :12].tolist()
    assert positions == [0, 1, 2, 3, 0, 1, 2, 0, 1, 2, 3, 4]


#: (page, text that identifies one block of it) -> an assertion on the namespace it leaves.
CHECKS: dict[tuple[str, str], Callable[[dict[str, Any]], None]] = {
    ("README.md", "exact_budget=True"): _exact_budget,
    ("README.md", "PackingCollator("): _packed_positions,
}


def test_pages_have_examples():
    assert len(PAGES) >= 10, [str(p) for p in PAGES]
    assert len(RUNNABLE) >= 15
    assert sum(b.page == "README.md" for b in RUNNABLE) >= 2


def test_exemptions_are_counted():
    assert all(b.exempt for b in EXEMPT), "an exemption without a reason"
    listed = "\n".join(f"  {b.id}: {b.exempt}" for b in EXEMPT)
    assert len(EXEMPT) == EXPECTED_EXEMPTIONS, (
        f"{len(EXEMPT)} blocks do not run, EXPECTED_EXEMPTIONS is {EXPECTED_EXEMPTIONS}:\n{listed}"
    )


@pytest.mark.parametrize(("page", "needle"), list(CHECKS))
def test_checks_find_their_block(page, needle):
    found = [b.id for b in RUNNABLE if b.page == page and needle in b.code]
    assert len(found) == 1, f"{needle!r} should identify one runnable block of {page}: {found}"


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_example_runs(block):
    namespace: dict[str, Any] = {"__name__": "__docs_example__"}
    # Leading newlines make tracebacks show the page's own line numbers.
    code = "\n" * (block.line - 1) + block.code
    exec(compile(code, str(ROOT / block.page), "exec"), namespace)
    for (page, needle), check in CHECKS.items():
        if block.page == page and needle in block.code:
            check(namespace)


def test_block_parser():
    text = textwrap.dedent(
        """\
        ```python
        a = 1
        ```
        <!-- no-run: launches torchrun -->
        ```python
        b = 2
        ```
        ```python title="train.py"
        c = 3
        ```
        ````markdown
        ```python
        inside = "a fence shown in a fence"
        ```
        ````
        - a list item:

          ```python
          d = 4
          ```
        ```bash
        echo e
        ```
        """
    )
    blocks = python_blocks(text, "page.md")
    assert [(b.line, b.code, b.exempt) for b in blocks] == [
        (2, "a = 1\n", None),
        (6, "b = 2\n", "launches torchrun"),
        (9, "c = 3\n", 'fenced as ```python title="train.py"'),
        (19, "d = 4\n", None),
    ]


def test_readme_links_resolve():
    """README's relative links point at files of the repository (mkdocs checks the docs)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    assert targets
    missing = [t for t in targets if "://" not in t and not (ROOT / t).is_file()]
    assert not missing


# -- docstring examples ------------------------------------------------------------------------


def _package_modules() -> list[str]:
    """Every module of lmobjectives, found on disk (nothing is imported to list them)."""
    spec = importlib.util.find_spec("lmobjectives")
    assert spec is not None and spec.submodule_search_locations
    root = Path(next(iter(spec.submodule_search_locations)))
    suffixes = (".py", *importlib.machinery.EXTENSION_SUFFIXES)
    names = set()
    for path in root.rglob("*"):
        if "__pycache__" in path.parts or not path.name.endswith(suffixes):
            continue
        stem = path.name.split(".", 1)[0]
        parts = [*path.relative_to(root).parent.parts, stem]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if all(p.isidentifier() for p in parts):
            names.add(".".join(["lmobjectives", *parts]))
    return sorted(names)


MODULES = _package_modules()


def _doctests(name: str) -> list[doctest.DocTest]:
    module = importlib.import_module(name)
    return [t for t in doctest.DocTestFinder().find(module, name) if t.examples]


def test_modules_found():
    for name in ("lmobjectives", "lmobjectives._core", "lmobjectives.torch", "lmobjectives.lab"):
        assert name in MODULES
    assert len(MODULES) >= 30, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    report: list[str] = []
    runner = doctest.DocTestRunner(verbose=False)
    for test in _doctests(name):
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(report)


def test_docstring_examples_exist():
    """The examples are found (a broken finder would make every module pass vacuously)."""
    counts = {name: sum(len(t.examples) for t in _doctests(name)) for name in MODULES}
    assert sum(counts.values()) >= 50, counts
    for name in ("lmobjectives.masking", "lmobjectives.packing", "lmobjectives.rl"):
        assert counts[name] > 0, name


# -- the site ----------------------------------------------------------------------------------


def _update_benchmarks() -> Any:
    spec = importlib.util.spec_from_file_location(
        "update_benchmarks", ROOT / "tools" / "update_benchmarks.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_page_has_a_marker_for_every_bench_command():
    tool = _update_benchmarks()
    commands = tool.makefile_commands((ROOT / "Makefile").read_text(encoding="utf-8"))
    names = [name for name, _ in commands]
    assert "mlm" in names
    tool.check_markers((ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8"), names)


@pytest.mark.slow
def test_site_builds_strict(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "site" / "reference" / "collators" / "index.html").is_file()
