"""TokenCorpus, the embedded corpus (shipped data and its build tools), WordPiece training and
the progress bar.

The embedded default corpus is built once per session from the shipped data into a temporary
cache directory (or taken from ``$LMOBJECTIVES_CACHE`` when that is set); everything else uses
small corpora. The text extraction that produces the shipped data lives in ``tools/`` (it is not
installed) and is tested here too.
"""

from __future__ import annotations

import gc
import glob
import hashlib
import importlib.util
import io
import json
import lzma
import os
import pickle
import platform
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from lmobjectives import corpus as corpus_module
from lmobjectives._optional import MissingDependencyError
from lmobjectives._progress import Progress, progress_enabled
from lmobjectives._sentences import split_sentences
from lmobjectives.corpus import (
    DEFAULT_VOCAB_SIZE,
    RECIPE_VERSION,
    SPECIAL_TOKENS,
    TokenCorpus,
    TokenCorpusWriter,
    _default,
    _embedded_data,
    _format,
    _wordpiece,
    _writer,
    train_wordpiece,
)
from lmobjectives.corpus._embedded_data import EmbeddedDataError

ROOT = Path(__file__).resolve().parents[2]


def _tools_module(name: str) -> ModuleType:
    """Import ``tools/<name>.py`` (build-time code, not part of the installed package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


embedded_corpus = _tools_module("embedded_corpus")
clean_block = embedded_corpus.clean_block
file_blocks = embedded_corpus.file_blocks

PAD, UNK, CLS, SEP, MASK = range(5)

DOCS: list[str | list[str]] = [
    "The quick brown fox jumps over the lazy dog. It was not amused!\n\n"
    "A second paragraph follows here. Does it split?",
    ["Pre-split sentences are kept as given.", "Even two of them in one document."],
    "",  # dropped: no sentences
    ["   ", "Only this sentence survives."],  # the blank sentence is dropped
    "Python 3.14 is a number, e.g. pi. Mr. Smith agrees.",
]


# ------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tokenizer():
    """A small WordPiece tokenizer trained on a slice of the pydoc topics."""
    from pydoc_data.topics import topics

    texts = [s for key in sorted(topics)[:30] for s in split_sentences(topics[key])]
    texts += [s for doc in DOCS for s in ([doc] if isinstance(doc, str) else doc)]
    return train_wordpiece(texts, 3000, progress=False)


@pytest.fixture(scope="module")
def small(tokenizer) -> TokenCorpus:
    return TokenCorpus.from_texts(DOCS, tokenizer, progress=False, source="unit test")


@pytest.fixture(scope="module")
def saved(small, tmp_path_factory) -> Path:
    return small.save(tmp_path_factory.mktemp("saved") / "corpus")


@pytest.fixture(scope="session")
def stdlib_labelled() -> tuple[list[list[str]], list[str]]:
    """The build tool's text extraction, run on this interpreter's standard library, with
    each document's label."""
    return embedded_corpus.stdlib_documents_and_labels(progress=False)


@pytest.fixture(scope="session")
def stdlib_docs(stdlib_labelled) -> list[list[str]]:
    return stdlib_labelled[0]


@pytest.fixture(scope="session")
def shipped() -> _embedded_data.EmbeddedData:
    """The shipped text, vocabulary and metadata, read and verified."""
    return _embedded_data.load()


@pytest.fixture(scope="session")
def default_cache(tmp_path_factory) -> Path:
    """A cache root holding the built default corpus (reuses ``$LMOBJECTIVES_CACHE`` if set)."""
    env = os.environ.get("LMOBJECTIVES_CACHE")
    root = Path(env) if env else tmp_path_factory.mktemp("lmobjectives-cache")
    TokenCorpus.default(cache_dir=root, progress=False)
    return root


@pytest.fixture(scope="session")
def default_corpus(default_cache) -> TokenCorpus:
    return TokenCorpus.default(cache_dir=default_cache, progress=False)


def copy_corpus(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def assert_csr(c: TokenCorpus) -> None:
    so, do = np.asarray(c.sentence_offsets), np.asarray(c.document_offsets)
    assert so.dtype == np.int64
    assert do.dtype == np.int64
    assert so[0] == 0
    assert do[0] == 0
    assert so[-1] == len(c.ids) == c.num_tokens
    assert do[-1] == c.num_sentences == len(so) - 1
    assert c.num_documents == len(do) - 1 == len(c)
    # build-time corpora never contain empty sentences or documents
    assert np.all(np.diff(so) > 0)
    assert np.all(np.diff(do) > 0)
    assert c.ids.dtype == (np.uint16 if c.vocab_size <= 65536 else np.uint32)


# ------------------------------------------------------------------------------- progress


def test_progress_disabled_prints_nothing():
    out = io.StringIO()
    with Progress(10, "work", enabled=False, file=out) as bar:
        for _ in range(10):
            bar.update()
    assert out.getvalue() == ""
    assert bar.n == 10


def test_progress_renders_bar_and_finishes_line():
    out = io.StringIO()
    bar = Progress(1000, "work", unit="tok", enabled=True, file=out)
    bar.update(420)
    text = bar.render(now=bar._start + 3.0)
    assert text.startswith("work:  42% |####      | 420/1000 tok [00:03<00:04, 140.0 tok/s]")
    bar.close()
    bar.close()  # idempotent
    written = out.getvalue()
    assert written.startswith("\rwork:")
    assert written.endswith("\n")
    assert written.count("\n") == 1
    assert "work:   0% |          | 0/1000 tok [" in written.split("\r")[1]  # first draw
    assert "420/1000 tok" in written.split("\r")[-1]


def test_progress_rate_limited_and_unknown_total():
    out = io.StringIO()
    with Progress(None, "scan", enabled=True, file=out) as bar:
        for _ in range(10_000):
            bar.update()
    draws = out.getvalue().count("\r")
    assert 2 <= draws <= 5  # initial + close (+ at most a few timed redraws)
    assert "scan: 10000 it [" in out.getvalue()


def test_progress_environment(monkeypatch):
    stream = io.StringIO()  # not a TTY
    monkeypatch.delenv("LMOBJECTIVES_PROGRESS", raising=False)
    assert not progress_enabled(None, stream)
    monkeypatch.setenv("LMOBJECTIVES_PROGRESS", "1")
    assert progress_enabled(None, stream)
    monkeypatch.setenv("LMOBJECTIVES_PROGRESS", "0")
    assert not progress_enabled(None, stream)
    assert progress_enabled(True, stream)  # explicit wins
    with pytest.raises(ValueError, match="total"):
        Progress(-1, "x")


# ------------------------------------------------------------------------------- text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("One. Two! Three? four.", ["One.", "Two!", "Three? four."]),
        ("Use e.g. Python here. Or i.e. this. Etc. etc. Then stop.", None),
        ("Pi is 3.14 and e is 2.718. Next.", ["Pi is 3.14 and e is 2.718.", "Next."]),
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ("It ends (like this.) And goes on.", ["It ends (like this.)", "And goes on."]),
        ('First. "Quoted start." Second.', ["First.", '"Quoted start."', "Second."]),
        (
            "Mr. Smith and Dr. Jones met J. R. Tolkien.",
            ["Mr. Smith and Dr. Jones met J. R. Tolkien."],
        ),
        ("Version 2. 3 apples.", ["Version 2.", "3 apples."]),
        (
            "line one\ncontinues here.\n\n  New   paragraph",
            ["line one continues here.", "New paragraph"],
        ),
        ("call os.path.join() first. Then go", ["call os.path.join() first.", "Then go"]),
        ("Wait... What?! Yes.", ["Wait...", "What?!", "Yes."]),
        ("", []),
        (" \n\n \t", []),
    ],
)
def test_split_sentences(text, expected):
    got = split_sentences(text)
    if expected is None:  # abbreviations never end a sentence
        assert got == ["Use e.g. Python here.", "Or i.e. this.", "Etc. etc. Then stop."]
    else:
        assert got == expected


def test_split_sentences_rejects_non_str():
    with pytest.raises(TypeError, match="text"):
        split_sentences(b"bytes")  # type: ignore[arg-type]


def test_clean_block_drops_doctests_tables_and_symbols():
    block = textwrap.dedent(
        """\
        Compute things for you.

        >>> compute(1,
        ...         2)
        3
        4

        After the example comes prose
        again.
        +-----+-----+
        | a   | b   |
        ======

        {"x": [1, 2], "y": {"z": (3, 4)}} = <tag>; [x] | {y}

        Tiny.

        - first item of a list
          continues here
        - second item of a list
        """
    )
    assert clean_block(block).split("\n\n") == [
        "Compute things for you.",
        "After the example comes prose again.",
        "first item of a list continues here",
        "second item of a list",
    ]
    assert clean_block("bad \udc80 surrogate text here") == ""


SOURCE = '''\
#!/usr/bin/env python3
# -*- coding: utf-8 -*-
# Copyright (c) 2001 Somebody. All rights reserved.
# Licensed under the Example License.
"""Module docstring explains the module."""

import os

# A prose comment block that explains the next class,
# spread over two lines of text.
class Widget:
    """A widget docstring.

    >>> Widget()
    <Widget>
    """

    def method(self):
        """Method docstring here."""

        def inner():
            """Nested function docstring."""

        # x = compute(y)
        # return value
        raise ValueError("this message has more than five words in it")

TEMPLATE = """
# not a comment
"""
'''


def test_file_blocks_sources_in_order():
    blocks = file_blocks(SOURCE)
    assert blocks is not None
    cleaned = [clean_block(b) for b in blocks]
    assert cleaned == [
        "Module docstring explains the module.",
        "A prose comment block that explains the next class, spread over two lines of text.",
        "A widget docstring.",
        "Method docstring here.",
        "Nested function docstring.",
        # (the block of commented-out code yields nothing)
        "this message has more than five words in it",
    ]
    # shebang, coding line, license block and the "#" inside the string are not comments
    joined = " ".join(blocks)
    assert "Copyright" not in joined
    assert "coding" not in joined
    assert "not a comment" not in joined


def test_file_blocks_rejects_unparsable():
    assert file_blocks("def broken(:\n    pass\n") is None


def test_stdlib_documents(stdlib_docs, shipped, monkeypatch):
    docs = stdlib_docs
    assert len(docs) > 1000
    assert all(isinstance(d, list) and d for d in docs)
    assert all(isinstance(s, str) and s and s == s.strip() for d in docs[:50] for s in d)
    # the first documents are the sorted pydoc topics; "assert" comes first
    assert "assert" in docs[0][0].lower()
    # no doctest prompts survive, and exact duplicate blocks are gone
    flat = [s for d in docs for s in d]
    assert not any(s.startswith(">>>") for s in flat)
    assert sum(len(s) for s in flat) > 3_000_000
    blocks = [" ".join(d) for d in docs]
    assert len(set(blocks)) == len(blocks)  # duplicates removed (e.g. copied docstrings)
    # deterministic (checked on a slice of the files to stay fast)
    files = embedded_corpus._stdlib_files()
    assert files == sorted(files)
    assert not any("site-packages" in f for f in files)
    monkeypatch.setattr(embedded_corpus, "_stdlib_files", lambda: files[:150])
    part = embedded_corpus.stdlib_documents(progress=False)
    assert part == embedded_corpus.stdlib_documents(progress=False)
    assert part == docs[: len(part)]
    # The text serializes in the shipped format, and on the CPython the shipped text was
    # extracted from (3.11.7, the project's main interpreter) the extraction reproduces it byte
    # for byte: what `tools/build_embedded_corpus.py --check` verifies. (Other versions have
    # other standard libraries, hence other text: that is why the text is shipped.)
    text = _embedded_data.serialize_corpus(docs)
    assert _embedded_data.parse_corpus(text) == docs
    source = (shipped.metadata["python_implementation"], shipped.metadata["python_version"])
    if (platform.python_implementation(), platform.python_version()) == source:
        want = shipped.metadata["files"][_embedded_data.CORPUS_FILE]
        assert (len(text), hashlib.sha256(text).hexdigest()) == (want["bytes"], want["sha256"])


# ------------------------------------------------------------------------------- tokenizer


def test_train_wordpiece_specials_and_post_processor(tokenizer):
    assert [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert tokenizer.get_vocab_size() == 3000
    enc = tokenizer.encode("Hello world.")
    assert enc.ids[0] == CLS
    assert enc.ids[-1] == SEP
    assert enc.tokens[1:-1] == tokenizer.encode("Hello world.", add_special_tokens=False).tokens
    pair = tokenizer.encode("First part.", "Second part.")
    assert pair.ids[0] == CLS
    assert pair.ids.count(SEP) == 2
    assert pair.ids[-1] == SEP
    first_sep = pair.ids.index(SEP)
    assert set(pair.type_ids[: first_sep + 1]) == {0}
    assert set(pair.type_ids[first_sep + 1 :]) == {1}
    # uncased, decodes back, continuation prefix
    assert tokenizer.decode(tokenizer.encode("The STATEMENT is executed.").ids) == (
        "the statement is executed."
    )
    assert any(t.startswith("##") for t in tokenizer.get_vocab())
    # the ## characters pinned during training are not added tokens of the result
    assert tokenizer.get_vocab_size(with_added_tokens=True) == tokenizer.get_vocab_size(False)
    assert tokenizer.encode("##a", add_special_tokens=False).tokens != ["##a"]


def test_train_wordpiece_is_deterministic():
    """Plain tokenizers training differs run to run (tokenizers#1794); ours must not."""
    from pydoc_data.topics import topics

    texts = [s for key in sorted(topics)[:20] for s in split_sentences(topics[key])]
    first = train_wordpiece(texts, 2000, progress=False).to_str()
    for _ in range(4):
        assert train_wordpiece(texts, 2000, progress=False).to_str() == first
    # and in another process (hash seeds differ there)
    code = textwrap.dedent(
        """\
        import sys
        from pydoc_data.topics import topics
        from lmobjectives._sentences import split_sentences
        from lmobjectives.corpus import train_wordpiece
        texts = [s for key in sorted(topics)[:20] for s in split_sentences(topics[key])]
        sys.stdout.write(train_wordpiece(texts, 2000, progress=False).to_str())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout == first


def test_train_wordpiece_bad_arguments():
    with pytest.raises(TypeError, match="texts"):
        train_wordpiece("just a string", 100)
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        train_wordpiece(["ok", 3], 100)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="vocab_size"):
        train_wordpiece(["ok"], 5)
    with pytest.raises(ValueError, match="min_frequency"):
        train_wordpiece(["ok"], 100, min_frequency=-1)


# ------------------------------------------------------------------------------- from_texts


def test_from_texts_structure(small, tokenizer):
    assert_csr(small)
    assert small.num_documents == 4  # the empty document is dropped
    assert [len(small.document_sentences(d)) for d in range(4)] == [4, 2, 1, 2]
    assert small.vocab_size == 3000
    assert small.ids.dtype == np.uint16
    assert int(small.ids.max()) < small.vocab_size
    assert small.tokenizer is not None
    assert small.path is None
    assert small.source == "unit test"
    # views, not copies
    assert np.shares_memory(small.sentence(0), small.ids)
    assert np.shares_memory(small.document(1), small.ids)
    doc = small.document(3)
    np.testing.assert_array_equal(doc, np.concatenate(small.document_sentences(3)))
    np.testing.assert_array_equal(small.sentence(-1), small.document_sentences(-1)[-1])
    with pytest.raises(IndexError):
        small.sentence(small.num_sentences)
    with pytest.raises(IndexError):
        small.document(-5)


def test_from_texts_sentences_decode_to_inputs(small, tokenizer):
    expected = [
        sentence.lower()
        for doc in DOCS
        for sentence in (split_sentences(doc) if isinstance(doc, str) else doc)
        if sentence.strip()
    ]
    assert len(expected) == small.num_sentences == 9
    assert expected[-2:] == ["python 3.14 is a number, e.g. pi.", "mr. smith agrees."]
    for s, want in enumerate(expected):
        got = tokenizer.decode(small.sentence(s).tolist())
        # the WordPiece decoder may put spaces around punctuation; compare without spaces
        assert "".join(got.split()) == "".join(want.split())


def test_from_texts_string_and_presplit_agree(tokenizer):
    text = "First sentence here. Second one follows.\n\nThird in a new paragraph."
    a = TokenCorpus.from_texts([text], tokenizer, progress=False)
    b = TokenCorpus.from_texts([split_sentences(text)], tokenizer, progress=False)
    for name in ("ids", "sentence_offsets", "document_offsets"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    # batch size does not change the result
    c = TokenCorpus.from_texts(DOCS, tokenizer, batch_size=1, progress=False)
    d = TokenCorpus.from_texts(iter(DOCS), tokenizer, batch_size=7, progress=False)
    for name in ("ids", "sentence_offsets", "document_offsets"):
        np.testing.assert_array_equal(getattr(c, name), getattr(d, name))


def test_from_texts_special_tokens(tokenizer):
    c = TokenCorpus.from_texts(
        [["One sentence.", "Two sentences."]], tokenizer, add_special_tokens=True, progress=False
    )
    for s in range(c.num_sentences):
        sent = c.sentence(s)
        assert sent[0] == CLS
        assert sent[-1] == SEP
    assert int((c.ids == CLS).sum()) == 2


def test_from_texts_leaves_tokenizer_untouched(tokenizer):
    from tokenizers import Tokenizer

    padded = Tokenizer.from_str(tokenizer.to_str())
    padded.enable_padding(length=64)
    padded.enable_truncation(max_length=3)
    before = padded.to_str()
    c = TokenCorpus.from_texts(DOCS, padded, progress=False)
    ref = TokenCorpus.from_texts(DOCS, tokenizer, progress=False)
    np.testing.assert_array_equal(c.ids, ref.ids)  # no padding, no truncation
    assert padded.to_str() == before


def test_from_texts_accepts_transformers_fast_tokenizer(tokenizer):
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]")
    c = TokenCorpus.from_texts(DOCS, hf, progress=False)
    np.testing.assert_array_equal(c.ids, TokenCorpus.from_texts(DOCS, tokenizer).ids)


@pytest.mark.parametrize(
    ("documents", "tok", "exc", "match"),
    [
        ("a single string", True, TypeError, "documents"),
        (None, True, TypeError, "documents"),
        ([["ok.", 5]], True, TypeError, r"documents\[0\]\[1\]"),
        (["ok.", 7], True, TypeError, r"documents\[1\]"),
        ([b"bytes"], True, TypeError, r"documents\[0\]"),
        ([], True, ValueError, "documents"),
        (["", ["  "]], True, ValueError, "documents"),
        (["ok."], False, TypeError, "tokenizer"),
    ],
)
def test_from_texts_bad_input(tokenizer, documents, tok, exc, match):
    with pytest.raises(exc, match=match):
        TokenCorpus.from_texts(documents, tokenizer if tok else object(), progress=False)


def test_from_texts_names_a_sentence_tokenizers_rejects(tokenizer, tmp_path):
    docs = [["Fine."], "Also fine. Still.", ["ok", "lone \udc80 surrogate"]]
    with pytest.raises(ValueError, match=r"documents\[2\]: a sentence is not valid Unicode"):
        TokenCorpus.from_texts(docs, tokenizer)
    w = TokenCorpusWriter(tmp_path / "c", tokenizer)
    w.add_documents(docs[:2])
    w.add_documents(docs[2:])  # pending: encoded on close
    with pytest.raises(ValueError, match=r"document 2 \(from 0\) added to the writer"):
        w.close()
    assert w.closed
    assert list(tmp_path.iterdir()) == []  # a failed close discards the build


def test_from_texts_bad_batch_size(tokenizer):
    with pytest.raises(ValueError, match="batch_size"):
        TokenCorpus.from_texts(DOCS, tokenizer, batch_size=0)


def test_constructor_validates(small):
    ids, so, do = small.ids, small.sentence_offsets, small.document_offsets
    with pytest.raises(ValueError, match="ids"):
        TokenCorpus(ids.astype(np.uint32), so, do, 3000, small.tokenizer)
    with pytest.raises(ValueError, match="sentence_offsets"):
        TokenCorpus(ids, so[::-1].copy(), do, 3000, small.tokenizer)
    with pytest.raises(ValueError, match="document_offsets"):
        TokenCorpus(ids, so, do[:-1], 3000, small.tokenizer)
    with pytest.raises(TypeError, match="ids"):
        TokenCorpus(list(ids), so, do, 3000, small.tokenizer)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tokenizer"):
        TokenCorpus(ids, so, do, 3000)


def test_stats_and_repr(small):
    s = small.stats()
    assert s["num_documents"] == 4
    assert s["num_sentences"] == 9
    assert s["num_tokens"] == small.num_tokens
    assert s["ids_dtype"] == "uint16"
    assert s["tokens_per_sentence"]["min"] >= 1
    assert s["sentences_per_document"]["max"] == 4
    assert s["tokens_per_document"]["mean"] == pytest.approx(small.num_tokens / 4)
    assert s["nbytes"] == small.ids.nbytes + 8 * (10 + 5)
    r = repr(small)
    assert r.startswith("TokenCorpus(documents=4, sentences=9, tokens=")


# ------------------------------------------------------------------------------- save / load


def test_save_load_round_trip(small, saved):
    assert sorted(p.name for p in saved.iterdir()) == [
        "document_offsets.npy",
        "ids.npy",
        "manifest.json",
        "sentence_offsets.npy",
        "tokenizer.json",
    ]
    manifest = json.loads((saved / "manifest.json").read_text())
    files = manifest.pop("files")
    # The manifest's own checksum and the largest id (issue 15), computed independently.
    digest = manifest.pop("manifest_blake2b_256")
    covered = {**manifest, "files": files}
    text = json.dumps(covered, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert digest == hashlib.blake2b(text.encode(), digest_size=32).hexdigest()
    assert manifest.pop("max_id") == int(np.asarray(small.ids).max())
    assert manifest == {
        "format": "lmobjectives.TokenCorpus",
        "format_version": 2,
        "vocab_size": 3000,
        "num_tokens": small.num_tokens,
        "num_sentences": 9,
        "num_documents": 4,
        "ids_dtype": "uint16",
        "source": "unit test",
    }
    # sizes and BLAKE2b-256 checksums of every file but the manifest, computed independently
    assert files == {
        name: {
            "bytes": (saved / name).stat().st_size,
            "blake2b_256": hashlib.blake2b((saved / name).read_bytes(), digest_size=32).hexdigest(),
        }
        for name in ("ids.npy", "sentence_offsets.npy", "document_offsets.npy", "tokenizer.json")
    }
    c = TokenCorpus.load(saved)
    assert_csr(c)
    for name in ("ids", "sentence_offsets", "document_offsets"):
        arr = getattr(c, name)
        assert isinstance(arr, np.memmap), name
        assert arr.dtype == getattr(small, name).dtype
        np.testing.assert_array_equal(arr, getattr(small, name))
    assert c._tokenizer is None  # loaded lazily
    assert c.tokenizer.to_str() == small.tokenizer.to_str()
    assert c.path == saved
    assert c.source == "unit test"
    assert "path=" in repr(c)
    # no temporary directories left next to it
    assert [p.name for p in saved.parent.iterdir()] == ["corpus"]
    eager = TokenCorpus.load(saved, mmap=False)
    assert not isinstance(eager.ids, np.memmap)
    np.testing.assert_array_equal(eager.ids, small.ids)


def test_save_refuses_existing_and_overwrites(small, saved, tmp_path):
    with pytest.raises(FileExistsError, match="path"):
        small.save(saved)
    target = copy_corpus(saved, tmp_path / "c")
    loaded = TokenCorpus.load(target)  # lazy tokenizer pointing into the directory
    loaded.save(target, overwrite=True)  # overwrite its own directory
    again = TokenCorpus.load(target)
    np.testing.assert_array_equal(again.ids, small.ids)
    assert loaded.tokenizer.to_str() == small.tokenizer.to_str()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_interrupted_save_leaves_nothing_loadable(small, tmp_path, monkeypatch):
    calls = {"n": 0}
    real_save = np.save

    def failing_save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        small.save(tmp_path / "corpus")
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temp dir
    with pytest.raises(FileNotFoundError):
        TokenCorpus.load(tmp_path / "corpus")


def test_pickle(small, saved):
    a = pickle.loads(pickle.dumps(small))
    np.testing.assert_array_equal(a.ids, small.ids)
    assert a.tokenizer.to_str() == small.tokenizer.to_str()
    loaded = TokenCorpus.load(saved)
    blob = pickle.dumps(loaded)
    assert len(blob) < 1000  # a path, not the arrays
    # re-opening (in each DataLoader worker) checks structure and sizes but does not re-hash
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_format, "file_digest", _no_hashing)
        b = pickle.loads(blob)
    assert isinstance(b.ids, np.memmap)
    np.testing.assert_array_equal(b.ids, small.ids)


def _no_hashing(path):
    raise AssertionError(f"hashed {path}")


def _edit_manifest(d: Path, **changes):
    """Edits the manifest as its writer would (its own checksum recomputed), so the checks
    downstream of the checksum are what a test sees."""
    m = json.loads((d / "manifest.json").read_text())
    m.update(changes)
    _write_signed(d, m)


def _write_signed(d: Path, m: dict) -> None:
    if "manifest_blake2b_256" in m:
        m["manifest_blake2b_256"] = _format.manifest_digest(m)
    (d / "manifest.json").write_text(json.dumps(m))


def _bump_manifest(d: Path, key: str, delta: int):
    m = json.loads((d / "manifest.json").read_text())
    _edit_manifest(d, **{key: m[key] + delta})


def _save_npy(d: Path, name: str, arr: np.ndarray, **kw):
    np.save(d / name, arr, **kw)


def _edit_npy(d: Path, name: str, edit):
    arr = np.load(d / name)
    np.save(d / name, edit(arr.copy()))


def _edit_file_entry(d: Path, name: str, **changes):
    m = json.loads((d / "manifest.json").read_text())
    m["files"][name].update(changes)
    _write_signed(d, m)


def _drop_file_entry(d: Path, name: str):
    m = json.loads((d / "manifest.json").read_text())
    del m["files"][name]
    _write_signed(d, m)


def _append_bytes(d: Path, name: str):
    with open(d / name, "ab") as f:
        f.write(b"\0\0")


def _flip_last_byte(d: Path, name: str):
    data = bytearray((d / name).read_bytes())
    data[-1] ^= 1  # ids: the low bit of a token id (uint16 little-endian: its high byte)
    (d / name).write_bytes(bytes(data))


def _shift_one_boundary(a: np.ndarray) -> np.ndarray:
    a[1] += 1  # still a valid, non-decreasing CSR: only the checksum can tell
    return a


def _as_version_1(d: Path):
    """Rewrite the manifest exactly as format version 1 wrote it (no "files")."""
    m = json.loads((d / "manifest.json").read_text())
    del m["files"]
    m["format_version"] = 1
    (d / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")


def _swap12(a: np.ndarray) -> np.ndarray:
    a[1], a[2] = a[2], a[1]
    return a


def _dec_last(a: np.ndarray) -> np.ndarray:
    a[-1] -= 1
    return a


@pytest.mark.parametrize(
    ("corrupt", "file", "match"),
    [
        (lambda d: (d / "manifest.json").write_text("{not json"), "manifest.json", "JSON"),
        (lambda d: (d / "manifest.json").write_text("[1, 2]"), "manifest.json", "object"),
        (lambda d: (d / "manifest.json").unlink(), "manifest.json", "missing"),
        (lambda d: _edit_manifest(d, format="other"), "manifest.json", "format"),
        (lambda d: _edit_manifest(d, format_version=3), "manifest.json", "format_version"),
        (lambda d: _edit_manifest(d, format_version=0), "manifest.json", "format_version"),
        (lambda d: _edit_manifest(d, files=None), "manifest.json", "files must be an object"),
        (lambda d: _drop_file_entry(d, "tokenizer.json"), "manifest.json", "exactly"),
        (lambda d: _edit_file_entry(d, "ids.npy", bytes=-1), "manifest.json", r"ids\.npy\.bytes"),
        (lambda d: _edit_file_entry(d, "ids.npy", bytes=1.5), "manifest.json", r"ids\.npy\.bytes"),
        (
            lambda d: _edit_file_entry(d, "ids.npy", blake2b_256="ABC"),
            "manifest.json",
            "hex digits",
        ),
        (
            lambda d: _edit_file_entry(d, "tokenizer.json", blake2b_256="0" * 63 + "g"),
            "manifest.json",
            "hex digits",
        ),
        (lambda d: _append_bytes(d, "ids.npy"), "ids.npy", "size"),
        (lambda d: _append_bytes(d, "document_offsets.npy"), "document_offsets.npy", "size"),
        (lambda d: _append_bytes(d, "tokenizer.json"), "tokenizer.json", "size"),
        (lambda d: _flip_last_byte(d, "ids.npy"), "ids.npy", "checksum"),
        (lambda d: _flip_last_byte(d, "tokenizer.json"), "tokenizer.json", "checksum"),
        (
            lambda d: _edit_npy(d, "sentence_offsets.npy", _shift_one_boundary),
            "sentence_offsets.npy",
            "checksum",
        ),
        (lambda d: _edit_manifest(d, format_version=True), "manifest.json", "format_version"),
        (lambda d: _edit_manifest(d, num_tokens=-1), "manifest.json", "num_tokens"),
        (lambda d: _edit_manifest(d, num_sentences="10"), "manifest.json", "num_sentences"),
        (lambda d: _edit_manifest(d, ids_dtype="int8"), "manifest.json", "ids_dtype"),
        (lambda d: _edit_manifest(d, ids_dtype="uint32"), "manifest.json", "ids_dtype"),
        (lambda d: _bump_manifest(d, "num_sentences", -1), "sentence_offsets.npy", "length"),
        (lambda d: _bump_manifest(d, "num_documents", 1), "document_offsets.npy", "length"),
        (lambda d: _edit_manifest(d, num_tokens=5), "ids.npy", "length"),
        (lambda d: (d / "ids.npy").unlink(), "ids.npy", "missing"),
        (lambda d: (d / "tokenizer.json").unlink(), "tokenizer.json", "missing"),
        (
            lambda d: _save_npy(d, "ids.npy", np.load(d / "ids.npy").astype(np.int32)),
            "ids.npy",
            "dtype",
        ),
        (
            lambda d: _save_npy(d, "ids.npy", np.load(d / "ids.npy").astype(">u2")),
            "ids.npy",
            "dtype",
        ),
        (
            lambda d: _save_npy(
                d, "sentence_offsets.npy", np.load(d / "sentence_offsets.npy").astype(np.int32)
            ),
            "sentence_offsets.npy",
            "dtype",
        ),
        (
            lambda d: _save_npy(
                d, "sentence_offsets.npy", np.load(d / "sentence_offsets.npy")[:-1]
            ),
            "sentence_offsets.npy",
            "length",
        ),
        (
            lambda d: _edit_npy(d, "sentence_offsets.npy", _swap12),
            "sentence_offsets.npy",
            "non-decreasing",
        ),
        (
            lambda d: _save_npy(d, "sentence_offsets.npy", np.load(d / "sentence_offsets.npy") + 1),
            "sentence_offsets.npy",
            "start at 0",
        ),
        (
            lambda d: _edit_npy(d, "document_offsets.npy", _dec_last),
            "document_offsets.npy",
            "end at",
        ),
        (
            lambda d: _edit_npy(d, "document_offsets.npy", lambda a: a[None, :]),
            "document_offsets.npy",
            "1-D",
        ),
        (
            lambda d: _save_npy(
                d, "ids.npy", np.array([None] * 5, dtype=object), allow_pickle=True
            ),
            "ids.npy",
            "readable",
        ),
        (
            lambda d: (d / "ids.npy").write_bytes((d / "ids.npy").read_bytes()[:-7]),
            "ids.npy",
            "readable",
        ),
        (lambda d: (d / "ids.npy").write_bytes(b"garbage"), "ids.npy", "readable"),
    ],
)
def test_load_rejects_corruption(saved, tmp_path, corrupt, file, match):
    d = copy_corpus(saved, tmp_path / "c")
    corrupt(d)
    with pytest.raises(ValueError, match=match) as info:
        TokenCorpus.load(d)
    assert str(d / file) in str(info.value)


@pytest.mark.parametrize(
    ("corrupt", "file"),
    [
        (lambda d: _flip_last_byte(d, "ids.npy"), "ids.npy"),
        (
            lambda d: _edit_npy(d, "sentence_offsets.npy", _shift_one_boundary),
            "sentence_offsets.npy",
        ),
        (lambda d: _flip_last_byte(d, "tokenizer.json"), "tokenizer.json"),
    ],
)
def test_verify_false_skips_only_the_hashing(saved, tmp_path, corrupt, file):
    d = copy_corpus(saved, tmp_path / "c")
    corrupt(d)
    with pytest.raises(ValueError, match="checksum mismatch") as info:
        TokenCorpus.load(d)  # verify=True is the default
    assert str(d / file) in str(info.value)
    c = TokenCorpus.load(d, verify=False)  # same size, valid structure: loads as it is
    assert c.num_tokens == TokenCorpus.load(saved).num_tokens
    # ... but sizes are still checked without verify
    _append_bytes(d, file)
    with pytest.raises(ValueError, match="size") as info:
        TokenCorpus.load(d, verify=False)
    assert str(d / file) in str(info.value)


def test_load_reads_format_version_1(small, saved, tmp_path):
    d = copy_corpus(saved, tmp_path / "v1")
    _as_version_1(d)
    for verify in (True, False):
        for mmap in (True, False):
            c = TokenCorpus.load(d, verify=verify, mmap=mmap)
            assert_csr(c)
            for name in ("ids", "sentence_offsets", "document_offsets"):
                np.testing.assert_array_equal(getattr(c, name), getattr(small, name))
            assert c.source == "unit test"
    # structure is still checked in version-1 corpora ...
    bad = copy_corpus(d, tmp_path / "v1-bad")
    _edit_npy(bad, "sentence_offsets.npy", _swap12)
    with pytest.raises(ValueError, match="non-decreasing"):
        TokenCorpus.load(bad)
    # ... but they carry no checksums: a changed token id goes unnoticed (documented)
    _flip_last_byte(d, "ids.npy")
    assert int(TokenCorpus.load(d).ids[-1]) != int(small.ids[-1])
    # saving a version-1 corpus writes version 2
    again = TokenCorpus.load(d).save(tmp_path / "v2")
    assert json.loads((again / "manifest.json").read_text())["format_version"] == 2
    TokenCorpus.load(again)
    # a version-2 manifest must have the checksums
    v2 = copy_corpus(saved, tmp_path / "v2-nofiles")
    m = json.loads((v2 / "manifest.json").read_text())
    del m["files"]
    (v2 / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="files"):
        TokenCorpus.load(v2)


def test_offsets_checked_in_chunks(saved, tmp_path, monkeypatch):
    # a decrease in a later chunk is found, and reported at its global index
    monkeypatch.setattr(_format, "CHECK_CHUNK", 2)
    c = TokenCorpus.load(saved)
    assert _format.first_decrease(c.sentence_offsets) is None
    offsets = np.asarray(c.sentence_offsets).copy()
    offsets[7] = offsets[6] - 1
    assert _format.first_decrease(offsets) == 6
    offsets = np.arange(10, dtype=np.int64)
    offsets[-1] = 0
    assert _format.first_decrease(offsets) == 8
    assert _format.first_decrease(np.zeros(1, np.int64)) is None


def test_load_rejects_mismatched_tokenizer(saved, tmp_path):
    d = copy_corpus(saved, tmp_path / "c")
    _edit_manifest(d, vocab_size=2999)  # still uint16; tokenizer has 3000
    c = TokenCorpus.load(d)
    with pytest.raises(ValueError, match=r"tokenizer\.json"):
        _ = c.tokenizer
    (d / "tokenizer.json").write_text("{broken")
    _edit_file_entry(d, "tokenizer.json", bytes=len("{broken"))
    with pytest.raises(ValueError, match=r"tokenizer\.json"):
        _ = TokenCorpus.load(d, verify=False).tokenizer


def test_load_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="path"):
        TokenCorpus.load(tmp_path / "nope")


# ------------------------------------------------------------------------------- default


def test_default_corpus_contents(default_corpus):
    c = default_corpus
    assert_csr(c)
    assert c.vocab_size == 30522
    assert c.tokenizer.get_vocab_size() == 30522
    assert [c.tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert c.ids.dtype == np.uint16
    assert isinstance(c.ids, np.memmap)
    assert c.num_documents > 1000
    assert c.num_sentences > 40_000
    assert c.num_tokens > 500_000
    ids = np.asarray(c.ids)
    assert int(ids.max()) < c.vocab_size
    assert int((ids == UNK).sum()) < 0.005 * len(ids)  # the vocabulary covers its own text
    assert not np.isin(ids, [PAD, CLS, SEP, MASK]).any()  # no specials in the raw corpus
    counts = np.bincount(ids, minlength=c.vocab_size)
    # most learned tokens occur (not all: greedy longest-match never emits some intermediate
    # merges, e.g. a prefix that only ever appears inside longer vocabulary words)
    assert (counts[5:] > 0).mean() > 0.6
    # the first document is the "assert" help topic; text decodes to readable English
    first = c.tokenizer.decode(c.sentence(0).tolist())
    assert "assert" in first
    manifest = json.loads((c.path / "manifest.json").read_text())
    # the source names the shipped data and the CPython it came from, not this interpreter
    assert "standard library" in manifest["source"]
    assert "CPython 3.11.7" in manifest["source"]
    assert _embedded_data.CORPUS_FILE in manifest["source"]
    assert c.source == manifest["source"]
    # cached under the recipe version and the data checksum, whatever the Python version
    checksum = _embedded_data.data_checksum(_embedded_data.read_metadata())
    assert c.path.name == f"stdlib-corpus-v{RECIPE_VERSION}-{checksum[:16]}"
    assert c.path.name == _default.default_corpus_name()
    assert RECIPE_VERSION == 2


def test_default_corpus_has_enough_text(default_corpus):
    # > 1 MB of text: the decoded corpus (WordPiece decoding adds spaces, so be generous)
    text_bytes = sum(
        len(default_corpus.tokenizer.decode(default_corpus.document(d).tolist()).encode())
        for d in range(0, default_corpus.num_documents, 10)
    )
    assert text_bytes * 10 > 1_000_000


def test_default_second_call_loads_cache(default_cache, monkeypatch):
    def no_build(progress):
        raise AssertionError("default() rebuilt a cached corpus")

    def no_read(data_dir=None):
        raise AssertionError("default() read the shipped data for a cached corpus")

    monkeypatch.setattr(_default, "build_default_corpus", no_build)
    monkeypatch.setattr(_embedded_data, "load", no_read)
    hashed = []
    real_digest = _format.file_digest
    monkeypatch.setattr(
        _format, "file_digest", lambda path: hashed.append(path.name) or real_digest(path)
    )
    c = TokenCorpus.default(cache_dir=default_cache)
    assert isinstance(c.ids, np.memmap)
    assert c._tokenizer is None
    # the cached corpus is verified against its checksums on every load (a version-1 cache
    # from before checksums, reused through $LMOBJECTIVES_CACHE, has none to verify)
    manifest = json.loads((c.path / "manifest.json").read_text())
    assert sorted(hashed) == (
        sorted(
            ["ids.npy", "sentence_offsets.npy", "document_offsets.npy", "tokenizer.json"]
            + (["document_labels.json"] if "document_labels.json" in manifest["files"] else [])
        )
        if manifest["format_version"] == 2
        else []
    )
    monkeypatch.setenv("LMOBJECTIVES_CACHE", str(default_cache))
    assert TokenCorpus.default().path == c.path


def test_default_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("LMOBJECTIVES_CACHE", str(tmp_path / "env"))
    assert corpus_module.default_cache_dir() == tmp_path / "env"
    assert corpus_module.default_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("LMOBJECTIVES_CACHE")
    assert corpus_module.default_cache_dir() == Path.home() / ".cache" / "lmobjectives"


def test_default_rebuilds_broken_cache_and_survives_races(small, tmp_path, monkeypatch):
    builds = []

    def fake_build(progress):
        builds.append(progress)
        return small

    monkeypatch.setattr(_default, "build_default_corpus", fake_build)
    target = tmp_path / _default.default_corpus_name()
    target.mkdir()
    (target / "manifest.json").write_text("half written")  # a broken cache entry
    c = TokenCorpus.default(cache_dir=tmp_path, progress=False)
    assert builds == [False]
    assert c.num_documents == small.num_documents
    assert TokenCorpus.default(cache_dir=tmp_path).path == target
    assert len(builds) == 1
    TokenCorpus.default(cache_dir=tmp_path, rebuild=True)
    assert len(builds) == 2

    # another process finishes first while we build: its corpus wins, no error
    other = tmp_path / "other"

    def racing_build(progress):
        small.save(other / _default.default_corpus_name())
        return TokenCorpus.from_texts(["Something else entirely."], small.tokenizer)

    monkeypatch.setattr(_default, "build_default_corpus", racing_build)
    c = TokenCorpus.default(cache_dir=other)
    assert c.num_documents == small.num_documents
    assert sorted(p.name for p in other.iterdir()) == [_default.default_corpus_name()]


# ------------------------------------------------------------------------------- shipped data

# Pinned once, from the data that tools/build_embedded_corpus.py extracted from CPython 3.11.7
# (recipe version 2, tokenizers 0.23.3). A change to any of them changes the default corpus: it
# must come with a regenerated data set, a RECIPE_VERSION bump and new figures in the README.
SHIPPED_SHA256 = {
    "stdlib-corpus.txt.xz": "7e77a0043b2cc587446ee01f5385529e0fb8cc0d56d42cea204a5d303f8379c2",
    "stdlib-vocab.txt.xz": "f11b3aa26b02419cf47a6feb364cbd36556ee49539011566fbc72eb7dbfd15eb",
    # added with the per-document labels (the text, the vocabulary and every pin above and
    # below are unchanged by them)
    "stdlib-labels.txt.xz": "2b4c931b53a0116e25107a75a737361ac069f07d1bd0c80bf84ea3687881799b",
}
#: corpus_module.default_corpus_fingerprint(): ids, offsets and vocabulary.
DEFAULT_FINGERPRINT = "5d684c6bfa00fc79b70f18ca7747a9d435413005e18ce199cb305e7b581b56c4"
#: BLAKE2b-256 of the default corpus's ids.npy, as its manifest records it.
DEFAULT_IDS_BLAKE2B = "9b859446dcef77085d737d09eff693d81255fa84c8f276d7b173a68fc71434b2"
#: (documents, sentences, tokens, characters of text)
DEFAULT_COUNTS = (1669, 69792, 1094893, 4890464)
DEFAULT_VOCAB_IDS = {"the": 593, "##ing": 600, "return": 681, "python": 800, "iterator": 1813}


def test_default_corpus_is_pinned(default_corpus, default_cache, shipped):
    c = default_corpus
    documents, sentences, tokens, characters = DEFAULT_COUNTS
    assert (c.num_documents, c.num_sentences, c.num_tokens) == (documents, sentences, tokens)
    assert shipped.metadata["counts"] == {
        "documents": documents,
        "sentences": sentences,
        "characters": characters,
        "vocab_size": DEFAULT_VOCAB_SIZE,
    }
    assert {name: f["sha256"] for name, f in shipped.metadata["files"].items()} == SHIPPED_SHA256
    assert corpus_module.default_corpus_fingerprint(cache_dir=default_cache) == DEFAULT_FINGERPRINT
    assert corpus_module.default_corpus_fingerprint(c) == DEFAULT_FINGERPRINT
    manifest = json.loads((c.path / "manifest.json").read_text())
    assert manifest["files"]["ids.npy"]["blake2b_256"] == DEFAULT_IDS_BLAKE2B
    assert {t: c.tokenizer.token_to_id(t) for t in DEFAULT_VOCAB_IDS} == DEFAULT_VOCAB_IDS
    # the corpus is the shipped text, sentence for sentence
    assert [len(d) for d in shipped.documents] == np.diff(c.document_offsets).tolist()


def test_fingerprint_sees_every_part(small):
    base = corpus_module.default_corpus_fingerprint(small)
    assert base == _default.fingerprint(small)
    with pytest.raises(TypeError, match="corpus"):
        corpus_module.default_corpus_fingerprint("not a corpus")  # type: ignore[arg-type]
    assert base == _default.fingerprint(pickle.loads(pickle.dumps(small)))
    ids = np.array(small.ids)
    ids[3] = (ids[3] + 1) % small.vocab_size
    changed = TokenCorpus(
        ids, small.sentence_offsets, small.document_offsets, small.vocab_size, small.tokenizer
    )
    assert _default.fingerprint(changed) != base
    # the same ids with a sentence boundary moved
    so = np.array(small.sentence_offsets)
    so[1] += 1
    moved = TokenCorpus(small.ids, so, small.document_offsets, small.vocab_size, small.tokenizer)
    assert _default.fingerprint(moved) != base


def test_shipped_metadata(shipped):
    meta = shipped.metadata
    assert meta["recipe_version"] == RECIPE_VERSION  # regenerate the data when the recipe changes
    assert (meta["python_implementation"], meta["python_version"]) == ("CPython", "3.11.7")
    assert len(shipped.vocab) == DEFAULT_VOCAB_SIZE
    assert shipped.vocab[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    # small enough for a wheel: the compressed data stays under 2 MB
    sizes = {name: (_embedded_data.DATA_DIR / name).stat().st_size for name in SHIPPED_SHA256}
    assert sum(sizes.values()) < 2_000_000
    notice = (_embedded_data.DATA_DIR / "NOTICE").read_text()
    assert "PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2" in notice
    assert "Copyright (c) 2001-2023 Python Software Foundation; All Rights Reserved" in notice


def test_shipped_vocabulary_is_what_train_wordpiece_learns(shipped, default_corpus):
    """The shipped vocabulary is the recipe's output on the shipped text (any Python), and the
    tokenizer the default corpus builds from it is the one train_wordpiece returns."""
    sentences = [s for doc in shipped.documents for s in doc]
    trained = train_wordpiece(sentences, DEFAULT_VOCAB_SIZE, progress=False)
    vocab = trained.get_vocab(with_added_tokens=False)
    assert sorted(vocab, key=vocab.__getitem__) == shipped.vocab
    assert _wordpiece.wordpiece_tokenizer(shipped.vocab).to_str() == trained.to_str()
    assert default_corpus.tokenizer.to_str() == trained.to_str()
    got = default_corpus.tokenizer.get_vocab(with_added_tokens=True)
    assert sorted(got, key=got.__getitem__) == shipped.vocab


def test_wordpiece_tokenizer_round_trips_a_trained_vocabulary(tokenizer):
    vocab = tokenizer.get_vocab(with_added_tokens=False)
    tokens = sorted(vocab, key=vocab.__getitem__)
    assert _wordpiece.wordpiece_tokenizer(tokens).to_str() == tokenizer.to_str()
    assert _wordpiece.wordpiece_tokenizer(vocab).to_str() == tokenizer.to_str()
    with pytest.raises(ValueError, match="special tokens"):
        _wordpiece.wordpiece_tokenizer([*tokens[1:5], tokens[0], *tokens[5:]])
    with pytest.raises(ValueError, match="ids must be"):
        _wordpiece.wordpiece_tokenizer({**vocab, "extra": len(vocab) + 1})


def test_corpus_format_round_trips_and_rejects_ambiguity():
    docs = [["One.", "Two words."], ["Three, alone."]]
    data = _embedded_data.serialize_corpus(docs)
    assert data == b"One.\nTwo words.\n\nThree, alone.\n"
    assert _embedded_data.parse_corpus(data) == docs
    for bad in ([["two\nlines"]], [[" padded"]], [[""]], [[]]):
        with pytest.raises(ValueError, match="documents"):
            _embedded_data.serialize_corpus(bad)
    assert _embedded_data.parse_vocab(_embedded_data.serialize_vocab(["a", "##b"])) == ["a", "##b"]
    with pytest.raises(ValueError, match="duplicates"):
        _embedded_data.serialize_vocab(["a", "a"])


def test_shipped_files_regenerate_byte_identically():
    """The build script's compression is deterministic: recompressing the shipped vocabulary's
    contents gives the shipped file byte for byte (no timestamps, fixed preset)."""
    meta = _embedded_data.read_metadata()
    raw = _embedded_data.read_file(_embedded_data.VOCAB_FILE, meta)
    shipped_xz = (_embedded_data.DATA_DIR / _embedded_data.VOCAB_FILE).read_bytes()
    assert _embedded_data.compress(raw) == shipped_xz
    assert _embedded_data.compress(raw) == _embedded_data.compress(raw)


def _recompress(path: Path, edit) -> None:
    path.write_bytes(lzma.compress(edit(lzma.decompress(path.read_bytes())), preset=0))


def _edit_metadata(path: Path, edit) -> None:
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


CORRUPTIONS = {
    "corpus text changed": (
        lambda d: _recompress(d / "stdlib-corpus.txt.xz", lambda b: b.replace(b"the", b"thE", 1)),
        r"stdlib-corpus\.txt\.xz: checksum mismatch.*SHA-256",
    ),
    "labels changed": (
        lambda d: _recompress(d / "stdlib-labels.txt.xz", lambda b: b.replace(b"test", b"tset", 1)),
        r"stdlib-labels\.txt\.xz: checksum mismatch",
    ),
    "vocabulary changed": (
        lambda d: _recompress(d / "stdlib-vocab.txt.xz", lambda b: b + b"extra\n"),
        r"stdlib-vocab\.txt\.xz: checksum mismatch",
    ),
    "xz truncated": (
        lambda d: (d / "stdlib-corpus.txt.xz").write_bytes(
            (d / "stdlib-corpus.txt.xz").read_bytes()[:5000]
        ),
        r"stdlib-corpus\.txt\.xz: not a readable xz file",
    ),
    "file missing": (
        lambda d: (d / "stdlib-vocab.txt.xz").unlink(),
        r"stdlib-vocab\.txt\.xz: missing",
    ),
    "checksum edited": (
        lambda d: _edit_metadata(
            d / "stdlib-corpus.json",
            lambda m: m["files"]["stdlib-corpus.txt.xz"].update(sha256="0" * 64),
        ),
        r"stdlib-corpus\.txt\.xz: checksum mismatch",
    ),
    "counts edited": (
        lambda d: _edit_metadata(
            d / "stdlib-corpus.json", lambda m: m["counts"].update(documents=7)
        ),
        r"do not match the recorded counts: documents 1669 \(recorded: 7\)",
    ),
    "metadata not JSON": (
        lambda d: (d / "stdlib-corpus.json").write_text("{half"),
        r"stdlib-corpus\.json: not valid JSON",
    ),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupted_shipped_data_raises_a_clear_error(corruption, tmp_path, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(_embedded_data.DATA_DIR, data)
    corrupt, match = CORRUPTIONS[corruption]
    corrupt(data)
    monkeypatch.setattr(_embedded_data, "DATA_DIR", data)
    with pytest.raises(EmbeddedDataError, match=match) as info:
        _embedded_data.load()
    assert "reinstall lmobjectives" in str(info.value)
    assert isinstance(info.value, ValueError)
    # TokenCorpus.default() surfaces it (and caches nothing)
    cache = tmp_path / "cache"
    with pytest.raises(EmbeddedDataError, match=match):
        TokenCorpus.default(cache_dir=cache, progress=False)
    assert not cache.exists() or not any(cache.iterdir())


def test_missing_tokenizers_names_the_corpus_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match=r"lmobjectives\[corpus\]") as info:
        TokenCorpus.default(cache_dir=tmp_path, progress=False)
    assert info.value.extra == "corpus"
    with pytest.raises(MissingDependencyError, match="training a WordPiece tokenizer"):
        train_wordpiece(["some text"], 100)
    with pytest.raises(MissingDependencyError, match=r"lmobjectives\[corpus\]"):
        TokenCorpus.from_texts(["Some text."], object())


#: The CPython versions the shipped data must read identically on (the package's classifiers).
CPYTHONS = ("3.10", "3.11", "3.12", "3.13")

#: Run by each interpreter with only its standard library (``-I -S``: no site-packages, no
#: PYTHON* variables): import lmobjectives/corpus/_embedded_data.py by path and verify the
#: shipped data.
CROSS_PYTHON_CHECK = textwrap.dedent(
    """\
    import hashlib, importlib.util, json, platform, sys

    spec = importlib.util.spec_from_file_location("_lmo_embedded_data", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = module.load()  # decompresses, checks each file's SHA-256 and the counts
    THIRD_PARTY = {"lmobjectives", "numpy", "tokenizers"}
    text = hashlib.sha256()
    for doc in data.documents:
        text.update(("\\n".join(doc) + "\\n\\n").encode("utf-8"))
    json.dump(
        {
            "python": platform.python_version(),
            "counts": data.metadata["counts"],
            "sha256": {name: f["sha256"] for name, f in data.metadata["files"].items()},
            "documents": text.hexdigest(),
            "vocab": hashlib.sha256("\\n".join(data.vocab).encode("utf-8")).hexdigest(),
            "third_party": sorted({m.split(".")[0] for m in sys.modules} & THIRD_PARTY),
        },
        sys.stdout,
    )
    """
)


def _find_cpython(minor: str) -> str | None:
    """An interpreter for CPython ``minor``: from ``$LMOBJECTIVES_CPYTHONS`` (os.pathsep-separated
    paths), else pyenv's versions (``$PYENV_ROOT``, default ``~/.pyenv``), else ``pythonX.Y``
    on ``$PATH``."""
    candidates = [p for p in os.environ.get("LMOBJECTIVES_CPYTHONS", "").split(os.pathsep) if p]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += sorted(glob.glob(str(pyenv / "versions" / f"{minor}.*" / "bin" / "python")))
    which = shutil.which(f"python{minor}")
    candidates += [which] if which else []
    for exe in candidates:
        try:
            out = subprocess.run(
                [exe, "-I", "-c", "import platform; print(platform.python_version())"],
                capture_output=True,
                text=True,
                timeout=60,
            )
        except OSError:
            continue
        version = out.stdout.strip()
        if out.returncode == 0 and version.rsplit(".", 1)[0] == minor:
            return exe
    return None


@pytest.mark.parametrize("minor", CPYTHONS)
def test_shipped_data_reads_identically_on_every_cpython(minor, shipped, tmp_path):
    exe = _find_cpython(minor)
    if exe is None:
        pytest.fail(
            f"CPython {minor} not found (looked in $LMOBJECTIVES_CPYTHONS, pyenv's versions and "
            f"python{minor} on PATH): install it, e.g. `pyenv install {minor}`, or list its path "
            "in $LMOBJECTIVES_CPYTHONS"
        )
    script = tmp_path / "check_embedded_data.py"
    script.write_text(CROSS_PYTHON_CHECK)
    module_path = Path(_embedded_data.__file__)
    out = subprocess.run(
        [exe, "-I", "-S", str(script), str(module_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, f"{exe}:\n{out.stderr}"
    got = json.loads(out.stdout)
    assert got["python"].rsplit(".", 1)[0] == minor
    assert got["third_party"] == []  # the standard library alone reads the data
    text = hashlib.sha256()
    for doc in shipped.documents:
        text.update(("\n".join(doc) + "\n\n").encode("utf-8"))
    assert got == {
        "python": got["python"],
        "counts": shipped.metadata["counts"],
        "sha256": SHIPPED_SHA256,
        "documents": text.hexdigest(),
        "vocab": hashlib.sha256("\n".join(shipped.vocab).encode("utf-8")).hexdigest(),
        "third_party": [],
    }


def test_import_is_light():
    code = (
        "import sys, lmobjectives.corpus, lmobjectives._sentences\n"
        "import lmobjectives.corpus._embedded_data\n"
        "bad = {'tokenizers', 'torch', 'transformers'} & set(sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ------------------------------------------------------------------------------- from_files


def write_text(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def assert_same_corpus(a: TokenCorpus, b: TokenCorpus) -> None:
    for name in ("ids", "sentence_offsets", "document_offsets"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)
    assert a.vocab_size == b.vocab_size


@pytest.fixture(scope="module")
def topic_documents() -> list[list[str]]:
    """About 60 pydoc topics, each a document of sentences (a few thousand sentences in all)."""
    from pydoc_data.topics import topics

    docs = [split_sentences(topics[key]) for key in sorted(topics)[:60]]
    return [d for d in docs if d]


def test_from_files_one_sentence_per_line(tokenizer, topic_documents, tmp_path):
    docs = topic_documents
    half = len(docs) // 2
    files = [
        write_text(tmp_path / "a.txt", "\n\n".join("\n".join(d) for d in docs[:half]) + "\n"),
        write_text(tmp_path / "b.txt", "\n\n".join("\n".join(d) for d in docs[half:])),
    ]
    expected = TokenCorpus.from_texts(docs, tokenizer, progress=False)
    in_memory = TokenCorpus.from_files(files, tokenizer, one_sentence_per_line=True)
    assert_csr(in_memory)
    assert_same_corpus(in_memory, expected)
    assert in_memory.num_documents == len(docs)
    assert in_memory.source == f"files: {files[0]}, {files[1]}"
    # streamed to disk in batches of 7 sentences: hundreds of appends, same corpus
    on_disk = TokenCorpus.from_files(
        [str(f) for f in files],
        tokenizer,
        one_sentence_per_line=True,
        batch_size=7,
        out=tmp_path / "out",
        source="two files",
    )
    assert on_disk.num_sentences > 100 * 7
    assert isinstance(on_disk.ids, np.memmap)
    assert on_disk.path == tmp_path / "out"
    assert_same_corpus(on_disk, expected)
    reloaded = TokenCorpus.load(tmp_path / "out")  # checksums verify
    assert_same_corpus(reloaded, expected)
    assert reloaded.source == "two files"
    assert reloaded.tokenizer.to_str() == tokenizer.to_str()
    # plain NumPy reads the streamed files (the headers written at the end are valid)
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "ids.npy"), expected.ids)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt", "out"]


def test_from_files_free_text(tokenizer, topic_documents, tmp_path):
    # each document is free text wrapped at 60 columns (lines break mid-sentence)
    texts = [textwrap.fill(" ".join(d), width=60) for d in topic_documents[:20]]
    path = write_text(tmp_path / "free.txt", "\n\n".join(texts))
    expected = TokenCorpus.from_texts(texts, tokenizer, progress=False)
    got = TokenCorpus.from_files(path, tokenizer)  # one path, default: free text
    assert_same_corpus(got, expected)
    streamed = TokenCorpus.from_files(path, tokenizer, batch_size=5, out=tmp_path / "out")
    assert_same_corpus(streamed, expected)
    # read as one sentence per line instead, every wrapped line is a "sentence"
    lines = TokenCorpus.from_files(path, tokenizer, one_sentence_per_line=True)
    assert lines.num_sentences == sum(len(t.splitlines()) for t in texts)


def test_from_files_format_details(tokenizer, tmp_path):
    first = write_text(
        tmp_path / "1.txt",
        b"\xef\xbb\xbfFirst doc, line one.\r\n  First doc, line two.  \r\n \t \r\n\n\n"
        b"Second doc.\n\nThird doc, no newline at the end",
    )
    second = write_text(tmp_path / "2.txt", "Fourth doc starts the second file.\n\n\n")
    empty = write_text(tmp_path / "empty.txt", "")
    blank = write_text(tmp_path / "blank.txt", "\n \n\t\n")
    got = TokenCorpus.from_files(
        [first, empty, second, blank], tokenizer, one_sentence_per_line=True
    )
    expected = TokenCorpus.from_texts(
        [
            ["First doc, line one.", "First doc, line two."],
            ["Second doc."],
            # (Google's script would glue the next file's first lines onto this document)
            ["Third doc, no newline at the end"],
            ["Fourth doc starts the second file."],
        ],
        tokenizer,
    )
    assert_same_corpus(got, expected)
    # ids are exactly the tokenizer's (batched encoding changes nothing)
    for s, text in enumerate(["First doc, line one.", "First doc, line two.", "Second doc."]):
        assert got.sentence(s).tolist() == tokenizer.encode(text, add_special_tokens=False).ids
    # the BOM is gone: the first sentence decodes to its text
    assert tokenizer.decode(got.sentence(0).tolist()).startswith("first doc")
    # sentences that tokenize to nothing are dropped, and documents left empty with them
    odd = write_text(tmp_path / "odd.txt", "\u200b\n\nKept.\n\u200b\n")
    c = TokenCorpus.from_files(odd, tokenizer, one_sentence_per_line=True)
    assert (c.num_documents, c.num_sentences) == (1, 1)


def test_from_files_tokenizers_parallelism_off_gives_same_bytes(tokenizer, tmp_path):
    """TOKENIZERS_PARALLELISM=false makes encode_batch serial; the files come out identical."""
    lines = [f"Sentence number {i} talks about {i % 7} things." for i in range(3000)]
    text = "\n".join(ln if i % 50 else "" for i, ln in enumerate(lines))
    src = write_text(tmp_path / "in.txt", text)
    (tmp_path / "tok.json").write_text(tokenizer.to_str())
    TokenCorpus.from_files(src, tokenizer, one_sentence_per_line=True, out=tmp_path / "par")
    code = textwrap.dedent(
        f"""\
        from tokenizers import Tokenizer
        from lmobjectives.corpus import TokenCorpus
        tok = Tokenizer.from_file({str(tmp_path / "tok.json")!r})
        TokenCorpus.from_files({str(src)!r}, tok, one_sentence_per_line=True, batch_size=100,
                               out={str(tmp_path / "serial")!r})
        """
    )
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, env=env)
    manifests = [
        json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("par", "serial")
    ]
    assert manifests[0]["files"] == manifests[1]["files"]


def test_from_files_progress(tokenizer, tmp_path, capsys):
    path = write_text(tmp_path / "p.txt", "One sentence.\nTwo sentences.\n" * 100)
    TokenCorpus.from_files(path, tokenizer, one_sentence_per_line=True, progress=True)
    err = capsys.readouterr().err
    total = -(-path.stat().st_size // 1024)
    assert f"tokenize: 100% |##########| {total}/{total} KiB" in err
    TokenCorpus.from_texts(["A document.", "Another one."], tokenizer, progress=True)
    assert "tokenize: 100% |##########| 2/2 doc" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("paths", "exc", "match"),
    [
        (lambda d: [], ValueError, "paths: no files"),
        (lambda d: 42, TypeError, "paths"),
        (lambda d: b"bytes.txt", TypeError, "paths"),
        (lambda d: [d / "ok.txt", 3], TypeError, r"paths\[1\]"),
        (lambda d: d / "missing.txt", FileNotFoundError, "paths: no such file"),
        (lambda d: [d / "ok.txt", d / "missing.txt"], FileNotFoundError, r"paths\[1\]"),
        (lambda d: [d], IsADirectoryError, r"paths\[0\].*directory"),
        (lambda d: "/dev/null", ValueError, "paths: /dev/null is not a regular file"),
        (lambda d: d / "empty.txt", ValueError, "no non-empty sentence"),
    ],
)
def test_from_files_bad_paths(tokenizer, tmp_path, paths, exc, match):
    write_text(tmp_path / "ok.txt", "Fine.\n")
    write_text(tmp_path / "empty.txt", "\n\n")
    with pytest.raises(exc, match=match):
        TokenCorpus.from_files(paths(tmp_path), tokenizer)
    with pytest.raises(exc, match=match):
        TokenCorpus.from_files(paths(tmp_path), tokenizer, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_from_files_invalid_utf8_names_file_and_line(tokenizer, tmp_path):
    good = write_text(tmp_path / "good.txt", "Fine.\n")
    bad = write_text(tmp_path / "bad.txt", b"Fine.\n\nAlso fine.\nnot \xff\xfe utf-8\n")
    for out in (None, tmp_path / "out"):
        with pytest.raises(ValueError, match=r"bad\.txt: line 4: not valid UTF-8") as info:
            TokenCorpus.from_files([good, bad], tokenizer, out=out)
        assert str(bad) in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt", "good.txt"]


# ------------------------------------------------------------------------------- writer


def test_writer_mixed_sources_and_tiny_batches(tokenizer, tmp_path):
    path = write_text(tmp_path / "in.txt", "File sentence one.\nFile sentence two.\n\nAnother.\n")
    with TokenCorpusWriter(tmp_path / "c", tokenizer, batch_size=2, source="mixed") as w:
        w.add_documents(DOCS[:2])
        assert w.num_sentences >= 4  # complete batches are already on disk
        w.add_files(path, one_sentence_per_line=True)
        w.add_documents(iter(DOCS[2:]))
        assert repr(w).startswith(f"TokenCorpusWriter(path={str(tmp_path / 'c')!r}, open")
        assert not w.closed
    assert w.closed
    assert "closed" in repr(w)
    expected = TokenCorpus.from_texts(
        [*DOCS[:2], ["File sentence one.", "File sentence two."], ["Another."], *DOCS[2:]],
        tokenizer,
    )
    c = TokenCorpus.load(tmp_path / "c")
    assert_same_corpus(c, expected)
    assert c.source == "mixed"
    assert w.num_tokens == c.num_tokens
    assert w.close() is w.close()  # idempotent; the same corpus object
    with pytest.raises(ValueError, match="closed"):
        w.add_documents(DOCS)


def test_writer_from_texts_out_and_uint32(tmp_path):
    """A vocabulary over 65,536 ids gives uint32 ids, in memory and on disk alike."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, **{f"w{i}": i for i in range(1, 70_000)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    docs = [["w1 w69999 w65536", "w2 nope"], ["w70000"]]
    a = TokenCorpus.from_texts(docs, tok)
    b = TokenCorpus.from_texts(docs, tok, out=tmp_path / "c", batch_size=1)
    assert a.ids.dtype == np.uint32
    assert_same_corpus(a, b)
    assert a.ids.tolist() == [1, 69999, 65536, 2, 0, 0]
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["ids_dtype"] == "uint32"


def _add_then_fail(writer: TokenCorpusWriter) -> None:
    with writer:
        writer.add_documents(DOCS)
        raise KeyError("boom")


def test_writer_lifecycle_and_failures(tokenizer, tmp_path, monkeypatch):
    target = tmp_path / "c"
    # an exception inside the block discards everything
    w = TokenCorpusWriter(target, tokenizer)
    with pytest.raises(KeyError):
        _add_then_fail(w)
    assert list(tmp_path.iterdir()) == []
    assert "aborted" in repr(w)
    with pytest.raises(ValueError, match="aborted"):
        w.add_documents(DOCS)
    with pytest.raises(ValueError, match="aborted"):
        w.close()
    # an explicit abort() inside the block: nothing written, no error on leaving it
    with TokenCorpusWriter(target, tokenizer) as w:
        w.add_documents(DOCS)
        w.abort()
    assert list(tmp_path.iterdir()) == []
    # nothing added: close refuses, leaves nothing
    w = TokenCorpusWriter(target, tokenizer)
    w.add_documents(["", ["  "]])
    with pytest.raises(ValueError, match="no non-empty sentence"):
        w.close()
    assert list(tmp_path.iterdir()) == []
    # a bad document: the earlier ones stay, the writer stays usable
    w = TokenCorpusWriter(target, tokenizer)
    with pytest.raises(TypeError, match=r"documents\[1\]"):
        w.add_documents([DOCS[0], 5, DOCS[1]])
    with pytest.raises(TypeError, match="documents"):
        w.add_documents("not a list")
    w.add_documents(DOCS[1:2])
    assert_same_corpus(w.close(), TokenCorpus.from_texts(DOCS[:2], tokenizer))
    # the path exists now
    with pytest.raises(FileExistsError, match="path"):
        TokenCorpusWriter(target, tokenizer)
    with TokenCorpusWriter(target, tokenizer, overwrite=True) as w:
        w.add_documents(["Replaced."])
    assert TokenCorpus.load(target).num_sentences == 1
    # a failure while finishing (here: the manifest) leaves the old corpus and no temp dir
    w = TokenCorpusWriter(target, tokenizer, overwrite=True)
    w.add_documents(DOCS)

    def failing(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(_writer, "write_manifest", failing)
    with pytest.raises(OSError, match="disk full"):
        w.close()
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]
    assert TokenCorpus.load(target).num_sentences == 1
    # dropped without close(): the temporary directory goes with it
    w = TokenCorpusWriter(tmp_path / "d", tokenizer)
    w.add_documents(DOCS)
    assert len(list(tmp_path.iterdir())) == 2
    del w
    gc.collect()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]
    # argument checks
    with pytest.raises(ValueError, match="batch_size"):
        TokenCorpusWriter(tmp_path / "e", tokenizer, batch_size=0)
    with pytest.raises(TypeError, match="tokenizer"):
        TokenCorpusWriter(tmp_path / "e", object())
    with pytest.raises(TypeError, match="source"):
        TokenCorpusWriter(tmp_path / "e", tokenizer, source=3)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_npy_header_is_always_128_bytes():
    for dtype in (np.uint16, np.uint32, np.int64):
        for n in (0, 1, 10**9, 2**63 - 1):
            header = _format.npy_header(np.dtype(dtype), n)
            assert len(header) == 128
            f = io.BytesIO(header)
            assert np.lib.format.read_magic(f) == (1, 0)
            assert np.lib.format.read_array_header_1_0(f) == ((n,), False, np.dtype(dtype))


def _synthetic_file(path: Path, num_sentences: int, words: int) -> Path:
    """``num_sentences`` lines of ``words`` tokens of the conftest vocabulary; 20 per document."""
    g = np.random.default_rng(0)
    ids = g.integers(5, 1000, size=(num_sentences, words))
    with open(path, "w") as f:
        for s, row in enumerate(ids):
            f.write(" ".join(f"w{i}" for i in row))
            f.write("\n\n" if s % 20 == 19 else "\n")
    return path


def test_writer_memory_is_bounded(small_tokenizer, tmp_path):
    """Streaming to disk holds one batch, not the corpus (NumPy and Python allocations, traced).

    (``tokenizers``' own Rust allocations are not traced; they too are one batch's worth.) The
    control shows that the measurement sees NumPy arrays: reading the ids back into memory
    peaks above their size.
    """
    import tracemalloc

    src = _synthetic_file(tmp_path / "in.txt", 50_000, 24)  # 1.2M tokens, ~5.8 MB of text
    corpus_bytes = 1_200_000 * 2 + 50_001 * 8 + 2_501 * 8  # uint16 ids + offsets: ~2.8 MB
    tracemalloc.start()
    try:
        c = TokenCorpus.from_files(
            src, small_tokenizer, one_sentence_per_line=True, batch_size=256, out=tmp_path / "c"
        )
        _, streamed_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        ids = np.load(tmp_path / "c" / "ids.npy")  # the control
        _, control_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    stats = c.stats()
    assert stats["nbytes"] == corpus_bytes
    assert (stats["num_sentences"], stats["num_documents"]) == (50_000, 2_500)
    with open(src) as f:  # spot check: the first and last sentences are the file's
        lines = [ln.split() for ln in f if ln.strip()]
    assert small_tokenizer.decode(c.sentence(0).tolist()).split() == lines[0]
    assert small_tokenizer.decode(c.sentence(-1).tolist()).split() == lines[-1]
    assert control_peak >= ids.nbytes
    assert streamed_peak < corpus_bytes / 4, (streamed_peak, corpus_bytes)


# ------------------------------------------------------------------------------- labels


def test_shipped_labels(shipped, default_corpus, stdlib_labelled):
    labels = shipped.labels
    assert len(labels) == len(shipped.documents) == default_corpus.num_documents
    assert default_corpus.document_labels == tuple(labels)
    # the help topics first, then the source files by path: their top-level package or module
    topics = sum(1 for label in labels if label == "topics")
    assert labels[:topics] == ["topics"] * topics and "topics" not in labels[topics:]
    assert labels[topics:] == sorted(labels[topics:])
    counts = {label: labels.count(label) for label in set(labels)}
    assert (len(counts), counts["topics"], counts["test"], counts["asyncio"]) == (195, 78, 676, 33)
    assert counts["json"] == 5 and counts["os"] == 1 and "os.py" not in counts
    # the extraction labels as the shipped file does (on the CPython it came from)
    documents, extracted = stdlib_labelled
    assert len(extracted) == len(documents)
    source = (shipped.metadata["python_implementation"], shipped.metadata["python_version"])
    if (platform.python_implementation(), platform.python_version()) == source:
        assert extracted == labels
    stdlib = sysconfig.get_paths()["stdlib"]
    assert embedded_corpus.file_label(os.path.join(stdlib, "asyncio", "events.py")) == "asyncio"
    assert embedded_corpus.file_label(os.path.join(stdlib, "os.py")) == "os"
    # the labels are beside the text, not in it: the labels file's round trip and its errors
    data = _embedded_data.serialize_labels(["a", "b_c"])
    assert data == b"a\nb_c\n" and _embedded_data.parse_labels(data) == ["a", "b_c"]
    for bad in (["two\nlines"], [" padded"], [""]):
        with pytest.raises(ValueError, match="labels"):
            _embedded_data.serialize_labels(bad)


LABELS = ["fox", "split", "empty", "blank first", "numbers"]


def test_from_texts_keeps_one_label_per_kept_document(small, tokenizer):
    assert small.document_labels is None
    c = TokenCorpus.from_texts(DOCS, tokenizer, labels=LABELS, progress=False)
    # DOCS[2] has no sentence: it is dropped, and its label with it
    assert c.document_labels == ("fox", "split", "blank first", "numbers")
    np.testing.assert_array_equal(c.ids, small.ids)
    np.testing.assert_array_equal(c.document_offsets, small.document_offsets)
    assert _default.fingerprint(c) == _default.fingerprint(small)  # labels are not contents
    assert c.documents(1, 3).document_labels == ("split", "blank first")
    assert pickle.loads(pickle.dumps(c)).document_labels == c.document_labels
    # a generator of documents, batches smaller than a document: the same labels
    g = TokenCorpus.from_texts(iter(DOCS), tokenizer, labels=LABELS, batch_size=1)
    assert g.document_labels == c.document_labels


@pytest.mark.parametrize(
    ("documents", "labels", "exc", "match"),
    [
        (DOCS, LABELS[:4], ValueError, r"labels: 4 labels for 5 documents"),
        (iter(DOCS), LABELS[:4], ValueError, r"labels: 4 labels for more documents"),
        (iter(DOCS), [*LABELS, "extra"], ValueError, r"labels: 6 labels for 5 documents"),
        (DOCS, "fox", TypeError, r"labels: expected a sequence of str"),
        (DOCS, [*LABELS[:4], 5], TypeError, r"labels\[4\]: expected str, got int"),
    ],
)
def test_from_texts_refuses_labels_that_do_not_fit(tokenizer, documents, labels, exc, match):
    with pytest.raises(exc, match=match):
        TokenCorpus.from_texts(documents, tokenizer, labels=labels, progress=False)


def test_constructor_checks_labels(small):
    arrays = (small.ids, small.sentence_offsets, small.document_offsets, small.vocab_size)
    with pytest.raises(ValueError, match="document_labels: 3 labels for 4 documents"):
        TokenCorpus(*arrays, small.tokenizer, document_labels=["a", "b", "c"])
    with pytest.raises(TypeError, match=r"document_labels\[1\]: expected str"):
        TokenCorpus(*arrays, small.tokenizer, document_labels=["a", None, "c", "d"])
    c = TokenCorpus(*arrays, small.tokenizer, document_labels=list("abcd"))
    assert c.document_labels == ("a", "b", "c", "d")


def test_labels_are_saved_checksummed_and_loaded(tokenizer, small, saved, tmp_path):
    c = TokenCorpus.from_texts(DOCS, tokenizer, labels=LABELS, progress=False, source="unit test")
    path = c.save(tmp_path / "labelled")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format_version"] == 2
    raw = (path / "document_labels.json").read_bytes()
    assert json.loads(raw) == list(c.document_labels)
    assert manifest["files"]["document_labels.json"] == {
        "bytes": len(raw),
        "blake2b_256": hashlib.blake2b(raw, digest_size=32).hexdigest(),
    }
    # the other files are those of the same corpus without labels, byte for byte
    for name in ("ids.npy", "sentence_offsets.npy", "document_offsets.npy", "tokenizer.json"):
        assert (path / name).read_bytes() == (saved / name).read_bytes(), name
    loaded = TokenCorpus.load(path)
    assert loaded.document_labels == c.document_labels
    assert loaded.documents(2, 4).document_labels == ("blank first", "numbers")
    assert pickle.loads(pickle.dumps(loaded.documents(2, 4))).document_labels == (
        "blank first",
        "numbers",
    )
    assert TokenCorpus.load(saved).document_labels is None  # corpora without labels still load
    # streamed to disk: the same files
    streamed = TokenCorpus.from_texts(
        iter(DOCS), tokenizer, labels=LABELS, out=tmp_path / "streamed", source="unit test"
    )
    assert streamed.document_labels == c.document_labels
    for name in manifest["files"]:
        assert (tmp_path / "streamed" / name).read_bytes() == (path / name).read_bytes(), name


def _relabel(d: Path, labels) -> None:
    (d / "document_labels.json").write_text(json.dumps(labels, separators=(",", ":")) + "\n")


@pytest.mark.parametrize(
    ("corrupt", "verify", "match"),
    [
        (lambda d: _relabel(d, ["fox", "split", "blank first", "NUMBERS"]), True, "checksum"),
        (lambda d: _relabel(d, ["fox", "split", "blank first", "numberz"]), False, None),
        (lambda d: _relabel(d, ["fox", "split", "blank first"]), True, "size"),
        (lambda d: (d / "document_labels.json").unlink(), True, "document_labels.json: missing"),
        (lambda d: _drop_file_entry(d, "document_labels.json"), True, None),
        (lambda d: _drop_file_entry(d, "ids.npy"), True, "files must list exactly"),
    ],
)
def test_labels_file_is_verified(tokenizer, tmp_path, corrupt, verify, match):
    c = TokenCorpus.from_texts(DOCS, tokenizer, labels=LABELS, progress=False)
    path = c.save(tmp_path / "c")
    corrupt(path)
    if match is None:  # not detectable by sizes alone / no longer a labelled corpus
        loaded = TokenCorpus.load(path, verify=verify)
        assert loaded.document_labels in (None, ("fox", "split", "blank first", "numberz"))
    else:
        with pytest.raises(ValueError, match=match):
            TokenCorpus.load(path, verify=verify)


def test_labels_count_is_checked_without_checksums(tokenizer, tmp_path):
    c = TokenCorpus.from_texts(DOCS, tokenizer, labels=LABELS, progress=False)
    path = c.save(tmp_path / "c")
    _relabel(path, ["fox", "split", "three"])
    size = (path / "document_labels.json").stat().st_size
    _edit_file_entry(path, "document_labels.json", bytes=size)
    with pytest.raises(ValueError, match=r"document_labels\.json: 3 labels for 4 documents"):
        TokenCorpus.load(path, verify=False)


def test_writer_labels_all_documents_or_none(tokenizer, tmp_path):
    with TokenCorpusWriter(tmp_path / "a", tokenizer) as w:
        w.add_documents(DOCS[:2], labels=["one", "two"])
        w.add_documents(iter(DOCS[2:]), labels=["three", "four", "five"])
        with pytest.raises(ValueError, match="have labels; these need them too"):
            w.add_documents(["More text."])
        with pytest.raises(ValueError, match="have labels"):
            w.add_files([tmp_path])  # refused before the paths are looked at
    assert TokenCorpus.load(tmp_path / "a").document_labels == ("one", "two", "four", "five")
    with TokenCorpusWriter(tmp_path / "b", tokenizer) as w:
        w.add_documents(DOCS[:1])
        with pytest.raises(ValueError, match="have no labels"):
            w.add_documents(DOCS[1:2], labels=["two"])
    assert TokenCorpus.load(tmp_path / "b").document_labels is None
    # a bad document: the documents before it stay added with their labels, and no others
    with TokenCorpusWriter(tmp_path / "c", tokenizer) as w:
        with pytest.raises(TypeError, match=r"documents\[1\]"):
            w.add_documents(["First.", 7, "Third."], labels=["a", "b", "c"])
        w.add_documents(["Fourth."], labels=["d"])
    assert TokenCorpus.load(tmp_path / "c").document_labels == ("a", "d")
