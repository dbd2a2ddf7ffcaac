"""Build-time extraction of the embedded corpus's text from the running CPython (not installed).

``tools/build_embedded_corpus.py`` runs :func:`stdlib_documents` once and ships the result inside
the package (``python/lmobjectives/data/``); :meth:`lmobjectives.TokenCorpus.default` reads those
files and never runs this module. The code lives here, outside the package, because its output
depends on the interpreter that runs it (CPython 3.10 and 3.13 ship different standard
libraries); the committed data pins one of them.

Pure standard library (plus :mod:`lmobjectives._sentences` and :mod:`lmobjectives._progress`)
and deterministic for a given Python installation. Two sources:

1. ``pydoc_data.topics.topics`` — the language-reference help topics; one document per topic,
   in sorted key order.
2. Every standard-library ``.py`` file under ``sysconfig.get_paths()["stdlib"]`` (sorted by
   relative path; ``site-packages`` skipped; test suites included), parsed with :mod:`ast`. Each
   file yields one document made of, in source order:

   * the docstring of every module, class and function (nested ones included), cleaned with
     ``ast.get_docstring(node, clean=True)``;
   * prose string literals (error messages, help texts, test data): non-docstring ``str``
     constants of at least :data:`MIN_LITERAL_WORDS` words that are mostly letters;
   * prose comment blocks: runs of full-line ``#`` comments (not inside string literals),
     excluding shebangs, encoding cookies, editor modelines, blocks mentioning a license or
     copyright, and lines that look like commented-out code.

   Files that cannot be read or parsed (syntax errors, undecodable bytes — e.g. ``lib2to3`` test
   data or ``badsyntax_*`` modules) are skipped silently.

Every text block (a topic, a docstring, a literal, a comment block) is cleaned by
:func:`clean_block` — doctest prompts (``>>>``, ``...``) and the output lines that follow them
are dropped, as are lines without any letter or digit (heading underlines, lone brackets), table
rows, and paragraphs with little alphabetic content or many code symbols; list items start new
paragraphs; whitespace is collapsed — and exact duplicates of an already-seen cleaned block are
removed globally (first occurrence wins). Blocks are then split into sentences with
:func:`lmobjectives._sentences.split_sentences`; documents with no sentences are dropped.

Why literals and all comment blocks: docstrings, help topics and multi-line comment blocks alone
(about 3.8 MB on CPython 3.11) are too little text for a WordPiece trainer to reach BERT's
30,522-token vocabulary (it stops near 25.6k). With them the text is about 5 MB, and the
trainer could go 5-9% past 30,522 on CPython 3.10-3.13.
"""

from __future__ import annotations

import ast
import inspect
import io
import os
import re
import sysconfig
import tokenize
import warnings
from collections.abc import Iterator

from lmobjectives._progress import Progress
from lmobjectives._sentences import split_paragraphs, split_sentences

__all__ = [
    "MIN_LITERAL_WORDS",
    "TOPICS_LABEL",
    "clean_block",
    "file_blocks",
    "file_label",
    "stdlib_documents",
    "stdlib_documents_and_labels",
]

#: A paragraph needs at least this many letters ...
_MIN_PARAGRAPH_LETTERS = 12
#: ... and at least this fraction of its non-space characters must be letters.
_MIN_LETTER_FRACTION = 0.55
#: ... and at most this fraction may be code/markup symbols (brackets, ``=``, ``|``, ``;`` ...).
_MAX_SYMBOL_FRACTION = 0.1

# --------------------------------------------------------------------------------------------
# Cleaning text blocks
# --------------------------------------------------------------------------------------------

_HAS_ALNUM = re.compile(r"[^\W_]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_SYMBOLS = re.compile(r"[<>{}\[\]()=|\\;#@$%^&~`]")
_TABLE_ROW = re.compile(r"[|+][-=+|]|\|.*\|$")
_BULLET = re.compile(r"^[-*+•]\s+")
_LIST_ITEM = re.compile(r"(?:[-*+•]|\d{1,2}[.)]|\(?[a-z0-9]\))\s")


_NOT_LETTER = re.compile(r"[\W\d_]+")


def _letters(text: str) -> int:
    """The number of alphabetic characters in ``text``."""
    return len(text) - sum(len(m) for m in _NOT_LETTER.findall(text))


def _prose_enough(text: str, min_letters: int = _MIN_PARAGRAPH_LETTERS) -> bool:
    """Enough letters, mostly letters, and few code/markup symbols."""
    letters = _letters(text)
    if letters < min_letters:
        return False
    non_space = len(text) - text.count(" ")
    if letters < _MIN_LETTER_FRACTION * non_space:
        return False
    return len(_SYMBOLS.findall(text)) <= _MAX_SYMBOL_FRACTION * non_space


def clean_block(text: str) -> str:
    """Clean one text block; returns paragraphs joined by blank lines ("" if nothing is left).

    Drops doctest prompts (``>>>`` and their ``...`` continuations) and the output lines that
    follow them up to the next blank line, lines with no letter or digit (heading underlines,
    lone brackets), table rows, and paragraphs with too little alphabetic content or too many
    code/markup symbols; starts a new paragraph at each list item (dropping bullet marks);
    collapses whitespace inside each paragraph. Text containing lone surrogates (not valid
    UTF-8) is dropped whole.
    """
    if _SURROGATE.search(text):  # e.g. "\udc80" escapes in test data
        return ""
    kept: list[str] = []
    in_doctest = False
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            in_doctest = False
            kept.append("")
            continue
        if stripped.startswith(">>>"):
            in_doctest = True
            continue
        if in_doctest:  # "..." continuation or expected output
            continue
        if not _HAS_ALNUM.search(stripped) or _TABLE_ROW.match(stripped):
            continue
        if _LIST_ITEM.match(stripped):
            kept.append("")
            stripped = _BULLET.sub("", stripped)
        kept.append(stripped)
    paragraphs = [p for p in split_paragraphs("\n".join(kept)) if _prose_enough(p)]
    return "\n\n".join(paragraphs)


# --------------------------------------------------------------------------------------------
# Comment blocks
# --------------------------------------------------------------------------------------------

_LICENSE = re.compile(
    r"copyright|licen[cs]e|all rights reserved|warranty|merchantability|"
    r"permission is hereby granted|redistribution|spdx",
    re.IGNORECASE,
)
_CODING = re.compile(r"-\*-|coding[:=]|\bvim?:|\bex:|^!")
# Commented-out code: statements by their first keyword, assignments, calls, decorators,
# and lines ending like code rather than like prose.
_CODE = re.compile(
    r"""^(?:
        (?:def|class)\s+\w+\s*[(:]
      | (?:import|from)\s+[\w.]+(?:\s+import\b.*)?$
      | (?:if|elif|while|for|with|try|except|finally|else)\b.*:$
      | (?:return|raise|yield|del|pass|break|continue|assert|print)\b[^.]*[^.\s]$
      | [\w.\[\]'"]+\s*(?:[-+*/|&]?=)\s*[^=\s].*[^.]$
      | [\w.]+\(.*\)$
      | @\w
      | .*[;{}\\]$
    )""",
    re.VERBOSE,
)


def _looks_like_code(line: str) -> bool:
    """A heuristic for commented-out code (``# x = f(y)``, ``# return x``, ``# }``)."""
    if _CODE.match(line):
        return True
    return _letters(line) < 0.5 * (len(line) - line.count(" "))


def _comment_blocks(lines: list[str], skip_lines: set[int]) -> Iterator[tuple[int, str]]:
    """Yield ``(first_line_number, text)`` for the prose blocks of full-line ``#`` comments.

    ``lines`` are the file's lines (line numbers are 1-based); ``skip_lines`` are lines inside
    multi-line string literals (a ``#`` there is not a comment). A block is a run of consecutive
    comment lines; a bare ``#`` or a line of commented-out code becomes a paragraph break.
    Shebangs, encoding cookies and editor modelines are skipped; blocks that mention a license
    or copyright are dropped whole.
    """
    block: list[str] = []
    first = 0
    for lineno, line in enumerate(lines, start=1):
        stripped = line.lstrip()
        if not stripped.startswith("#") or lineno in skip_lines:
            if block:
                text = "\n".join(block).strip()
                if text and not _LICENSE.search(text):
                    yield first, text
                block = []
            continue
        body = stripped.lstrip("#").strip()
        if _CODING.search(body) and (lineno <= 2 or _letters(body) < 40):
            continue  # shebang, encoding cookie or editor modeline
        if not block:
            first = lineno
        block.append("" if not body or _looks_like_code(body) else body)
    if block:
        text = "\n".join(block).strip()
        if text and not _LICENSE.search(text):
            yield first, text


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------

#: A string literal other than a docstring needs this many words to count as prose.
MIN_LITERAL_WORDS = 5
#: ... and this many letters.
_MIN_LITERAL_LETTERS = 20

_DOC_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _is_prose_literal(value: str) -> bool:
    """Whether a (non-docstring) string literal reads as prose, e.g. an error message."""
    return len(value.split()) >= MIN_LITERAL_WORDS and _prose_enough(value, _MIN_LITERAL_LETTERS)


def _read_source(path: str) -> str | None:
    """Decode a Python source file honouring its coding cookie; ``None`` if it cannot."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        return data.decode(encoding)
    except (OSError, SyntaxError, UnicodeDecodeError, LookupError):
        return None


# Leaves (and leaf-only subtrees) that can hold neither a docstring nor a string literal.
_SKIP_NODES = (ast.Name, ast.expr_context, ast.Constant)


def _strings_and_scopes(tree: ast.AST) -> tuple[list[ast.Constant], list[ast.AST]]:
    """All ``str``/``bytes`` constants and all module/class/function nodes of ``tree``.

    A lean replacement for :func:`ast.walk` (which dominated build time): an explicit stack,
    no generator, and no descent into names and expression contexts.
    """
    strings: list[ast.Constant] = []
    scopes: list[ast.AST] = []
    stack: list[ast.AST] = [tree]
    ast_type, skip, constant, doc_nodes = ast.AST, _SKIP_NODES, ast.Constant, _DOC_NODES
    while stack:
        node = stack.pop()
        if isinstance(node, doc_nodes):
            scopes.append(node)
        for name in node._fields:
            child = getattr(node, name, None)
            children = child if isinstance(child, list) else (child,)
            for c in children:
                if not isinstance(c, ast_type):
                    continue
                if not isinstance(c, skip):
                    stack.append(c)
                elif isinstance(c, constant) and isinstance(c.value, str | bytes):
                    strings.append(c)
    return strings, scopes


def file_blocks(source: str) -> list[str] | None:
    """The text blocks of one module's source, in source order; ``None`` if it does not parse.

    Blocks are docstrings of every module, class and function (nested ones included), prose
    string literals (:data:`MIN_LITERAL_WORDS` words or more, mostly letters) and prose comment
    blocks (see :func:`_comment_blocks`).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences etc. in old sources
            tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    items: list[tuple[int, int, str]] = []
    string_lines: set[int] = set()
    docstrings: set[int] = set()
    strings, scopes = _strings_and_scopes(tree)
    for node in scopes:
        doc = ast.get_docstring(node, clean=True)  # type: ignore[arg-type]
        if doc:
            first = node.body[0]  # type: ignore[attr-defined]
            docstrings.add(id(first.value))
            items.append((first.lineno, first.col_offset, doc))
    for node in strings:
        end = node.end_lineno or node.lineno
        if end > node.lineno:
            string_lines.update(range(node.lineno, end + 1))
        value = node.value
        if isinstance(value, str) and id(node) not in docstrings and _is_prose_literal(value):
            items.append((node.lineno, node.col_offset, inspect.cleandoc(value)))
    for lineno, text in _comment_blocks(source.splitlines(), string_lines):
        items.append((lineno, -1, text))
    items.sort(key=lambda item: (item[0], item[1]))
    return [text for _, _, text in items]


def _stdlib_files() -> list[str]:
    """Every ``.py`` file of the standard library, sorted by relative path."""
    root = sysconfig.get_paths()["stdlib"]
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in {"site-packages", "__pycache__"})
        for name in filenames:
            if name.endswith(".py"):
                found.append(os.path.relpath(os.path.join(dirpath, name), root))
    found.sort()
    return [os.path.join(root, rel) for rel in found]


#: The label of every ``pydoc`` help topic document.
TOPICS_LABEL = "topics"


def file_label(path: str) -> str:
    """A standard-library file's document label: its top-level package or module, from its
    path relative to the standard library (``asyncio/events.py`` → ``asyncio``, ``os.py`` →
    ``os``, ``test/test_os.py`` → ``test``)."""
    rel = os.path.relpath(path, sysconfig.get_paths()["stdlib"])
    top = rel.replace(os.sep, "/").split("/", 1)[0]
    return top[: -len(".py")] if top.endswith(".py") else top


def _topic_blocks() -> list[list[str]]:
    try:
        from pydoc_data.topics import topics
    except ImportError:  # a stripped-down Python without pydoc_data
        return []
    return [[topics[key]] for key in sorted(topics)]


def stdlib_documents(progress: bool | None = None) -> list[list[str]]:
    """The embedded corpus as documents, each a list of sentence strings, deterministically ordered.

    See the module docstring for the recipe. ``progress`` controls a progress bar over the
    source files (``None``: on iff stderr is a TTY or ``LMOBJECTIVES_PROGRESS=1``).
    """
    return stdlib_documents_and_labels(progress)[0]


def stdlib_documents_and_labels(
    progress: bool | None = None,
) -> tuple[list[list[str]], list[str]]:
    """:func:`stdlib_documents` and one label per document: :data:`TOPICS_LABEL` for a help
    topic, :func:`file_label` (the top-level package or module) for a source file."""
    raw_documents: list[list[str]] = _topic_blocks()
    raw_labels = [TOPICS_LABEL] * len(raw_documents)
    paths = _stdlib_files()
    with Progress(len(paths), "read stdlib", unit="file", enabled=progress) as bar:
        for path in paths:
            source = _read_source(path)
            blocks = file_blocks(source) if source is not None else None
            if blocks:
                raw_documents.append(blocks)
                raw_labels.append(file_label(path))
            bar.update()

    seen: set[str] = set()
    documents: list[list[str]] = []
    labels: list[str] = []
    for blocks, label in zip(raw_documents, raw_labels, strict=True):
        sentences: list[str] = []
        for block in blocks:
            cleaned = clean_block(block)
            if not cleaned or cleaned in seen:
                continue
            seen.add(cleaned)
            sentences.extend(split_sentences(cleaned))
        if sentences:
            documents.append(sentences)
            labels.append(label)
    return documents, labels
