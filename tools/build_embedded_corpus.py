"""Regenerate the embedded corpus data shipped in ``python/lmobjectives/data/``.

``TokenCorpus.default()`` tokenizes text and a vocabulary that ship inside the package, so that
every Python version gets the same corpus. This script produces those files from the running
interpreter:

1. extracts the English prose of its standard library (``tools/embedded_corpus.py``:
   ``pydoc`` help topics, docstrings, prose string literals, comment blocks; cleaned, split into
   sentences, deduplicated) — the part whose output depends on the CPython version;
2. trains the 30,522-token BERT-uncased-style WordPiece vocabulary on it
   (``lmobjectives.corpus.train_wordpiece``, deterministic) and checks that the tokenizer
   rebuilt from the written vocabulary (what ``TokenCorpus.default()`` uses) is the trained one;
3. writes, in the formats documented in ``lmobjectives/corpus/_embedded_data.py``:

   * ``stdlib-corpus.txt.xz`` — one sentence per line, an empty line between documents;
   * ``stdlib-vocab.txt.xz`` — one token per line, in id order;
   * ``stdlib-labels.txt.xz`` — one label per document (its top-level package or module,
     ``topics`` for a help topic), in document order;
   * ``stdlib-corpus.json`` — the SHA-256 and size of each file's decompressed contents, the
     counts, the source CPython version, the recipe version (``RECIPE_VERSION``);

   and prints the checksums and sizes. The files are xz-compressed with a fixed preset (xz
   stores no timestamps or names), so running the script twice writes byte-identical files.

When to run it: only when the data must change — the extraction recipe, the vocabulary
training or the source CPython changes. Then bump ``RECIPE_VERSION`` in
``python/lmobjectives/corpus/_default.py`` (if the recipe changed), rerun this script, update the
constants pinned in ``tests/library/test_corpus.py`` (``test_default_corpus_is_pinned``) and the
corpus figures in ``README.md``, and commit the data with the change. It is never part of a
normal build or install: the committed files are the source of truth.

How: from the repository root, in the development environment (the package installed in
editable mode, ``tokenizers`` available), with CPython 3.11.7 — the version the committed data
was extracted from; the script refuses any other unless ``--allow-other-python`` is given::

    .venv/bin/python tools/build_embedded_corpus.py          # rewrite the files (~30 s)
    .venv/bin/python tools/build_embedded_corpus.py --check  # exit 1 if they would change

(``--out DIR`` writes somewhere else.)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import embedded_corpus  # tools/embedded_corpus.py (this script's directory is on sys.path)
import tokenizers

import lmobjectives
from lmobjectives.corpus import DEFAULT_VOCAB_SIZE, RECIPE_VERSION, _embedded_data, train_wordpiece
from lmobjectives.corpus._wordpiece import wordpiece_tokenizer

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "python" / "lmobjectives" / "data"
#: The CPython the committed data was extracted from.
SOURCE_PYTHON = "3.11.7"


def build(progress: bool | None) -> dict[str, bytes]:
    """The four files' contents (compressed where shipped compressed), by file name."""
    t0 = time.perf_counter()
    documents, labels = embedded_corpus.stdlib_documents_and_labels(progress=progress)
    corpus_text = _embedded_data.serialize_corpus(documents)
    if _embedded_data.parse_corpus(corpus_text) != documents:
        raise RuntimeError("the corpus text does not parse back to the extracted documents")
    labels_text = _embedded_data.serialize_labels(labels)
    if _embedded_data.parse_labels(labels_text) != labels:
        raise RuntimeError("the labels do not parse back")
    sentences = [s for doc in documents for s in doc]
    print(f"extracted {len(documents):,} documents in {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    tokenizer = train_wordpiece(sentences, DEFAULT_VOCAB_SIZE, progress=progress)
    vocab_dict = tokenizer.get_vocab(with_added_tokens=False)
    vocab = sorted(vocab_dict, key=vocab_dict.__getitem__)
    if [vocab_dict[t] for t in vocab] != list(range(len(vocab))):
        raise RuntimeError("the trained vocabulary's ids are not 0..n-1")
    vocab_text = _embedded_data.serialize_vocab(vocab)
    rebuilt = wordpiece_tokenizer(_embedded_data.parse_vocab(vocab_text))
    if rebuilt.to_str() != tokenizer.to_str():
        raise RuntimeError("the tokenizer rebuilt from the vocabulary differs from the trained one")
    print(f"trained {len(vocab):,} tokens in {time.perf_counter() - t0:.1f} s")

    files = {
        _embedded_data.CORPUS_FILE: corpus_text,
        _embedded_data.VOCAB_FILE: vocab_text,
        _embedded_data.LABELS_FILE: labels_text,
    }
    metadata: dict[str, Any] = {
        "format": _embedded_data.FORMAT,
        "format_version": _embedded_data.FORMAT_VERSION,
        "recipe_version": RECIPE_VERSION,
        "python_implementation": platform.python_implementation(),
        "python_version": platform.python_version(),
        "tokenizers_version": tokenizers.__version__,
        "generated_by": "tools/build_embedded_corpus.py",
        "counts": {
            "documents": len(documents),
            "sentences": len(sentences),
            "characters": sum(map(len, sentences)),
            "vocab_size": len(vocab),
        },
        "files": {
            name: {"sha256": _sha256(data), "bytes": len(data)} for name, data in files.items()
        },
    }
    out = {name: _embedded_data.compress(data) for name, data in files.items()}
    out[_embedded_data.METADATA_FILE] = (json.dumps(metadata, indent=2) + "\n").encode()
    return out


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(out: dict[str, bytes], directory: Path) -> None:
    """Write each file atomically (a temporary file renamed into place)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in out.items():
        tmp = directory / f".{name}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, directory / name)


def report(out: dict[str, bytes], directory: Path) -> None:
    meta = json.loads(out[_embedded_data.METADATA_FILE])
    print(f"source: {meta['python_implementation']} {meta['python_version']}")
    print("counts: " + ", ".join(f"{k} {v:,}" for k, v in meta["counts"].items()))
    for name, data in out.items():
        line = f"{directory / name}: {len(data):,} bytes"
        if name in meta["files"]:
            entry = meta["files"][name]
            line += f" ({entry['bytes']:,} decompressed), sha256 {entry['sha256']}"
        print(line)
    total = sum(map(len, out.values()))
    print(f"total shipped: {total:,} bytes")
    print(f"data checksum (cache key): {_embedded_data.data_checksum(meta)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DATA_DIR, help=f"default: {DATA_DIR}")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the files would change"
    )
    parser.add_argument(
        "--allow-other-python",
        action="store_true",
        help=f"run on a Python other than CPython {SOURCE_PYTHON} (changes the data)",
    )
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    args = parser.parse_args(argv)

    running = f"{platform.python_implementation()} {platform.python_version()}"
    if running != f"CPython {SOURCE_PYTHON}" and not args.allow_other_python:
        print(
            f"error: the shipped data is extracted from CPython {SOURCE_PYTHON}, this is "
            f"{running} ({sys.executable}); pass --allow-other-python to change the source",
            file=sys.stderr,
        )
        return 2
    package = Path(lmobjectives.__file__).resolve().parent
    if package != DATA_DIR.parent:
        print(
            f"error: lmobjectives is imported from {package}, not from this repository "
            f"({DATA_DIR.parent}); use the development environment (editable install)",
            file=sys.stderr,
        )
        return 2

    out = build(progress=args.progress or None)
    report(out, args.out)
    if args.check:
        changed = [
            name
            for name, data in out.items()
            if not (args.out / name).is_file() or (args.out / name).read_bytes() != data
        ]
        if changed:
            print(f"check: would change {', '.join(changed)}", file=sys.stderr)
            return 1
        print("check: the files are up to date")
        return 0
    write(out, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
