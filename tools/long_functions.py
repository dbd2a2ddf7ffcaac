"""List functions longer than a screen that do not say why.

Usage: ``python tools/long_functions.py [--rust-only | --python-only]`` from anywhere.

A function is *long* when it spans more than 60 lines, counting from its ``fn`` / ``def`` line
to its last line (the closing brace in Rust). A long function is allowed when the line
directly above it, or above its attribute block (Rust) or decorators (Python), is a one-line
reason comment: ``// long: <reason>`` in Rust, ``# long: <reason>`` in Python.

Scans every ``.rs`` file under ``rust/`` and every ``.py`` file under ``python/lmobjectives``.
Prints ``path:line name length`` for each offender and exits 1 if there is any, 0 otherwise.
Standard library only.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 60
RUST_REASON = re.compile(r"^//\s*long:\s*\S")
PYTHON_REASON = re.compile(r"^#\s*long:\s*\S")
RUST_FN = re.compile(r"\bfn\s+([A-Za-z_][A-Za-z0-9_]*)\s*(?=[<(])")


def rust_code_lines(text: str) -> list[str]:
    """The lines of a Rust source with comments, strings and char literals blanked out.

    Line structure is kept, so indices match the original lines and brackets in the result
    are real code brackets.
    """
    out: list[str] = []
    i, n = 0, len(text)
    depth = 0  # nesting of block comments
    while i < n:
        c = text[i]
        if depth:
            if text.startswith("*/", i):
                depth -= 1
                out.append("  ")
                i += 2
            elif text.startswith("/*", i):
                depth += 1
                out.append("  ")
                i += 2
            else:
                out.append("\n" if c == "\n" else " ")
                i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(" " * (end - i))
            i = end
        elif text.startswith("/*", i):
            depth = 1
            out.append("  ")
            i += 2
        elif c == '"' or (c in "rb" and _raw_or_byte_string(text, i)):
            i = _skip_string(text, i, out)
        elif c == "'":
            i = _skip_char(text, i, out)
        else:
            out.append(c)
            i += 1
    return "".join(out).split("\n")


def _raw_or_byte_string(text: str, i: int) -> bool:
    if i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_"):
        return False
    m = re.match(r'(?:br|rb|r|b)#*"', text[i : i + 260])
    return m is not None


def _skip_string(text: str, i: int, out: list[str]) -> int:
    """Blanks a (raw, byte) string literal starting at `i`; returns the index after it."""
    start = i
    prefix = re.match(r'(?:br|rb|r|b)?(#*)"', text[i : i + 260])
    assert prefix is not None
    raw = "r" in prefix.group(0)
    closing = '"' + prefix.group(1)
    i += len(prefix.group(0))
    while i < len(text):
        if not raw and text[i] == "\\":
            i += 2
            continue
        if text.startswith(closing, i):
            i += len(closing)
            break
        i += 1
    out.extend("\n" if ch == "\n" else " " for ch in text[start:i])
    return i


def _skip_char(text: str, i: int, out: list[str]) -> int:
    """Blanks a char literal at `i` (a lifetime is kept as code); returns the next index."""
    if text.startswith("\\", i + 1):
        end = text.find("'", i + 3)
        end = len(text) - 1 if end < 0 else end
    elif i + 2 < len(text) and text[i + 2] == "'":
        end = i + 2
    else:
        out.append("'")
        return i + 1
    out.append(" " * (end + 1 - i))
    return end + 1


def rust_functions(lines: list[str]) -> Iterator[tuple[int, str, int]]:
    """`(fn line index, name, line count)` of every Rust function with a body."""
    for start, line in enumerate(lines):
        for m in RUST_FN.finditer(line):
            end = _rust_body_end(lines, start, m.end())
            if end is not None:
                yield start, m.group(1), end - start + 1


def _rust_body_end(lines: list[str], row: int, col: int) -> int | None:
    """The line of the brace closing the body whose signature continues at (row, col)."""
    nesting = 0  # () and [] in the signature
    braces = 0
    for r in range(row, len(lines)):
        for ch in lines[r][col if r == row else 0 :]:
            if braces:
                braces += {"{": 1, "}": -1}.get(ch, 0)
                if braces == 0:
                    return r
            elif ch in "([":
                nesting += 1
            elif ch in ")]":
                nesting -= 1
            elif nesting == 0 and ch == ";":
                return None  # a declaration without a body
            elif nesting == 0 and ch == "{":
                braces = 1
    return None


def rust_attribute_lines(lines: list[str]) -> set[int]:
    """Indices of the lines that belong to outer attributes (`#[...]`, possibly multi-line)."""
    inside: set[int] = set()
    depth = 0
    for r, line in enumerate(lines):
        if depth == 0 and not line.lstrip().startswith("#["):
            continue
        inside.add(r)
        for ch in line:
            if ch == "[":
                depth += 1
            elif ch == "]":
                depth -= 1
    return inside


def rust_offenders(path: Path) -> Iterator[tuple[int, str, int]]:
    text = path.read_text(encoding="utf-8")
    raw = text.split("\n")
    code = rust_code_lines(text)
    attributes = rust_attribute_lines(code)
    for start, name, length in rust_functions(code):
        if length <= MAX_LINES:
            continue
        above = start - 1
        while above in attributes:
            above -= 1
        if above < 0 or not RUST_REASON.match(raw[above].strip()):
            yield start + 1, name, length


def python_offenders(path: Path) -> Iterator[tuple[int, str, int]]:
    text = path.read_text(encoding="utf-8")
    raw = text.split("\n")
    for node in ast.walk(ast.parse(text, filename=str(path))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        length = (node.end_lineno or node.lineno) - node.lineno + 1
        if length <= MAX_LINES:
            continue
        top = min([node.lineno] + [d.lineno for d in node.decorator_list])
        above = top - 2  # 0-based index of the line above `top`
        if above < 0 or not PYTHON_REASON.match(raw[above].strip()):
            yield node.lineno, node.name, length


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--rust-only", action="store_true", help="check Rust sources only")
    only.add_argument("--python-only", action="store_true", help="check Python sources only")
    args = parser.parse_args(argv)
    found: list[str] = []
    if not args.python_only:
        for path in sorted((ROOT / "rust").rglob("*.rs")):
            if "target" in path.relative_to(ROOT).parts:
                continue
            for line, name, length in rust_offenders(path):
                found.append(f"{path.relative_to(ROOT)}:{line} {name} {length}")
    if not args.rust_only:
        for path in sorted((ROOT / "python" / "lmobjectives").rglob("*.py")):
            for line, name, length in python_offenders(path):
                found.append(f"{path.relative_to(ROOT)}:{line} {name} {length}")
    for entry in found:
        print(entry)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
