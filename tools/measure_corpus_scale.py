"""Measure corpora at scale: build, open and NSP-index synthetic corpora of 10^8 and 10^9 tokens,
in one directory and as a sharded corpus of the same documents.

    python tools/measure_corpus_scale.py --tokens 1e8 1e9 --shards 8 --dir /tmp/lmo-scale

prints the Markdown table of the corpora page ("Scale"). Each corpus is written by a fast
synthetic writer (uint16 ids drawn uniformly, sentences of 8-40 tokens, documents of 2-60
sentences, as the NSP benchmark's synthetic corpus; no tokenizer), once as one directory and once
as ``--shards`` shard directories plus their combined manifest; the two hold the same documents.
Each measurement then runs in a fresh process: open the corpus (memory-mapped, ``verify=False``),
build the NSP index of one pass (``SentencePairDataset``, all cores), and report the times, the
build's CPU time (user + system, all threads: less sensitive to the machine's load than the wall
time), the index size, the peak resident set size of the whole process during the build
(``VmHWM``, reset after opening the corpus), how much of the RSS is mapped corpus files (the
offsets, which the build reads; the token ids are not read and stay out), and how much the build
added to the RSS (the index and the build's working memory). The index of the sharded corpus is
checked to be identical (BLAKE2b of its arrays) to that of the single directory. The corpora
are deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Token ids are drawn from [FIRST_ID, VOCAB_SIZE): below are the special tokens.
VOCAB_SIZE = 30_000
FIRST_ID = 5
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
#: Documents generated per step of the writer (bounded memory).
DOCS_PER_STEP = 1 << 12


def tokenizer_json() -> str:
    """A word-level tokenizer whose vocabulary has :data:`VOCAB_SIZE` tokens (for decoding and
    the special-token ids; the synthetic writer never tokenizes)."""
    vocab = {t: i for i, t in enumerate(SPECIALS)}
    vocab.update({f"w{i}": i for i in range(len(SPECIALS), VOCAB_SIZE)})
    return json.dumps(
        {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": [
                {
                    "id": i,
                    "content": t,
                    "single_word": False,
                    "lstrip": False,
                    "rstrip": False,
                    "normalized": False,
                    "special": True,
                }
                for i, t in enumerate(SPECIALS)
            ],
            "normalizer": None,
            "pre_tokenizer": {"type": "Whitespace"},
            "post_processor": None,
            "decoder": None,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"},
        }
    )


class _NpyStream:
    """One 1-D ``.npy`` file written piece by piece (header reserved, written at the end)."""

    def __init__(self, path: Path, dtype: Any) -> None:
        from lmobjectives.corpus._format import NPY_HEADER_BYTES

        self.dtype = np.dtype(dtype)
        self.length = 0
        self.file = open(path, "wb")  # noqa: SIM115 (closed in close())
        self.file.write(bytes(NPY_HEADER_BYTES))

    def write(self, arr: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(arr, dtype=self.dtype).data.cast("B"))
        self.length += len(arr)

    def close(self) -> None:
        from lmobjectives.corpus._format import npy_header

        self.file.seek(0)
        self.file.write(npy_header(self.dtype, self.length))
        self.file.close()


class _CorpusFiles:
    """A corpus directory written from synthetic pieces, published with a real manifest."""

    def __init__(self, path: Path, tokenizer: str) -> None:
        self.path = path
        path.mkdir(parents=True)
        self.ids = _NpyStream(path / "ids.npy", np.uint16)
        self.sents = _NpyStream(path / "sentence_offsets.npy", np.int64)
        self.docs = _NpyStream(path / "document_offsets.npy", np.int64)
        self.sents.write(np.zeros(1, np.int64))
        self.docs.write(np.zeros(1, np.int64))
        (path / "tokenizer.json").write_text(tokenizer, encoding="utf-8")

    def add(self, ids: np.ndarray, sentence_lengths: np.ndarray, doc_sentences: np.ndarray) -> None:
        self.docs.write(self.sents.length - 1 + np.cumsum(doc_sentences))
        self.sents.write(self.ids.length + np.cumsum(sentence_lengths))
        self.ids.write(ids)

    def close(self) -> None:
        from lmobjectives.corpus._format import write_manifest

        num = (self.ids.length, self.sents.length - 1, self.docs.length - 1)
        for stream in (self.ids, self.sents, self.docs):
            stream.close()
        write_manifest(
            self.path,
            vocab_size=VOCAB_SIZE,
            num_tokens=num[0],
            num_sentences=num[1],
            num_documents=num[2],
            ids_dtype=np.dtype(np.uint16),
            source=f"synthetic ({num[0]:,} tokens)",
        )


def write_synthetic(root: Path, num_tokens: int, shards: int, seed: int = 0) -> dict[str, Any]:
    """Writes ``root/single`` (one directory) and ``root/shards/NNNNN`` (``shards`` directories
    of consecutive documents) plus ``root/sharded`` (their manifest), about ``num_tokens``
    tokens of the same documents; returns the timings."""
    from lmobjectives import TokenCorpus

    g = np.random.default_rng(seed)
    tok = tokenizer_json()
    t0 = time.perf_counter()
    single = _CorpusFiles(root / "single", tok)
    parts = [_CorpusFiles(root / "shards" / f"{i:05d}", tok) for i in range(shards)]
    written, step = 0, 0
    # (About 744 tokens a document: several steps per shard even for a small corpus.)
    per_step = max(1, min(DOCS_PER_STEP, num_tokens // (744 * 4 * shards)))
    while written < num_tokens:
        doc_sentences = g.integers(2, 61, size=per_step)
        sentence_lengths = g.integers(8, 41, size=int(doc_sentences.sum()))
        ends = np.cumsum(sentence_lengths)
        doc_ends = np.cumsum(doc_sentences)
        # Keep whole documents up to the budget (at least one).
        doc_tokens = ends[doc_ends - 1]
        keep = max(1, int(np.searchsorted(doc_tokens, num_tokens - written, side="right")))
        doc_sentences = doc_sentences[:keep]
        sentence_lengths = sentence_lengths[: int(doc_ends[keep - 1])]
        ids = g.integers(FIRST_ID, VOCAB_SIZE, size=int(sentence_lengths.sum()), dtype=np.uint16)
        single.add(ids, sentence_lengths, doc_sentences)
        # Consecutive documents per shard: the shards' concatenation is the single directory.
        parts[min(shards - 1, written * shards // num_tokens)].add(
            ids, sentence_lengths, doc_sentences
        )
        written += len(ids)
        step += 1
    empty = [i for i, part in enumerate(parts) if part.ids.length == 0]
    if empty:
        raise ValueError(f"--shards: too many shards for {num_tokens:,} tokens")
    generated = time.perf_counter() - t0
    for part in (single, *parts):
        part.close()
    built = time.perf_counter() - t0
    t1 = time.perf_counter()
    TokenCorpus.combine(sorted((root / "shards").iterdir()), out=root / "sharded", verify=False)
    combined = time.perf_counter() - t1
    return {
        "tokens": written,
        "write_s": built,
        "write_generate_s": generated,
        "combine_s": combined,
    }


def _child(kind: str, path: str) -> dict[str, Any]:
    """One measurement, in this (fresh) process."""
    from lmobjectives import SentencePairDataset, ShardedTokenCorpus, TokenCorpus

    t0 = time.perf_counter()
    corpus: Any
    if kind == "single":
        corpus = TokenCorpus.load(path, verify=False)
    else:
        corpus = ShardedTokenCorpus.load(path, verify=False)
    opened = time.perf_counter() - t0
    _reset_peak_rss()
    before = _rss_mib()
    cpu0 = _cpu_s()
    t1 = time.perf_counter()
    dataset = SentencePairDataset(corpus, "nsp", seed=0)
    indexed = time.perf_counter() - t1
    index_cpu = _cpu_s() - cpu0
    peak = _peak_rss_mib()
    mapped = _status_mib("RssFile")
    index = dataset._index
    h = hashlib.blake2b(digest_size=16)
    for name in ("a", "b", "label"):
        h.update(np.ascontiguousarray(index[name]).data.cast("B"))
    t2 = time.perf_counter()
    batches = 200
    g = np.random.default_rng(1)
    for _ in range(batches):
        dataset.__getitems__(g.integers(0, len(dataset), size=32).tolist())
    fetched = time.perf_counter() - t2
    return {
        "open_s": opened,
        "index_s": indexed,
        "index_cpu_s": index_cpu,
        "instances": len(index["label"]),
        "index_mib": sum(v.nbytes for v in index.values()) / 2**20,
        "rss_before_index_mib": before,
        "peak_rss_mib": peak,
        "mapped_rss_mib": mapped,
        "index_added_mib": max(0.0, peak - before),
        "batch_ms": 1000 * fetched / batches,
        "index_blake2b": h.hexdigest(),
    }


def _status_mib(field: str) -> float:
    """A memory figure of ``/proc/self/status`` (``VmRSS``, ``VmHWM``, ``RssFile``...)."""
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == field:
                return int(value.split()[0]) / 1024
    raise KeyError(field)


def _rss_mib() -> float:
    return _status_mib("VmRSS")


def _reset_peak_rss() -> None:
    """Resets this process's peak RSS (``VmHWM``) to its current RSS (Linux 4.0+)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _cpu_s() -> float:
    """User + system CPU time of this process, all threads (less sensitive to the machine's
    load than the wall time)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _peak_rss_mib() -> float:
    # (Not ``ru_maxrss``: Linux carries it over from the parent through fork and exec, so a
    # child of the writer would report the writer's peak.)
    return _status_mib("VmHWM")


def measure(kind: str, path: Path) -> dict[str, Any]:
    """Runs :func:`_child` in a fresh interpreter (its own peak RSS)."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def disk_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def run(num_tokens: int, shards: int, root: Path, keep: bool) -> list[dict[str, Any]]:
    """Writes and measures one size; returns a row for the single and the sharded layout."""
    if root.exists():
        shutil.rmtree(root)
    try:
        built = write_synthetic(root, num_tokens, shards)
        rows = []
        for kind in ("single", "sharded"):
            m = measure(kind, root / kind)
            on_disk = disk_mib(root / "single") if kind == "single" else disk_mib(root / "shards")
            rows.append(
                {
                    "layout": kind,
                    "shards": 1 if kind == "single" else shards,
                    "disk_mib": on_disk,
                    **built,
                    **m,
                }
            )
        if rows[0]["index_blake2b"] != rows[1]["index_blake2b"]:
            raise AssertionError("the sharded corpus's NSP index differs from the single one's")
        return rows
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| tokens | layout | on disk | write | open | NSP index | its CPU time | instances "
        "| index size | peak RSS (mapped files) | added by the index | 32-pair batch |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        layout = "one directory" if r["layout"] == "single" else f"{r['shards']} shards"
        lines.append(
            f"| {r['tokens']:.2e} | {layout} | {r['disk_mib']:,.0f} MiB | {r['write_s']:.1f} s "
            f"| {r['open_s']:.2f} s | {r['index_s']:.2f} s | {r['index_cpu_s']:.2f} s "
            f"| {r['instances']:,} "
            f"| {r['index_mib']:,.0f} MiB | {r['peak_rss_mib']:,.0f} MiB "
            f"({r['mapped_rss_mib']:,.0f} MiB) "
            f"| {r['index_added_mib']:,.0f} MiB | {r['batch_ms']:.2f} ms |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokens", type=float, nargs="+", default=[1e8, 1e9])
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--dir", type=Path, default=Path("/tmp/lmobjectives-corpus-scale"))
    p.add_argument("--keep", action="store_true", help="keep the corpora")
    p.add_argument("--json", type=Path, help="also write the rows as JSON")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(*args.child)))
        return 0
    start_load = os.getloadavg()
    rows = []
    for n in args.tokens:
        rows += run(int(n), args.shards, args.dir / f"{int(n)}", args.keep)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    load = os.getloadavg()
    print(table(rows))
    print(
        f"\n{os.cpu_count()} CPUs, load average (1, 5, 15 min) {start_load[0]:.2f} "
        f"{start_load[1]:.2f} {start_load[2]:.2f} at the start, "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
