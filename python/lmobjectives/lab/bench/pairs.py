"""The sentence-pair benchmark (``lmobjectives bench --objective pairs``): NSP instances from the
corpus, lmobjectives (Rust index, then batches through ``__getitems__`` and the
:class:`~lmobjectives.MLMCollator`) against Google BERT's pure-Python builder
(:func:`~lmobjectives.lab.baselines.google_bert.google_pair_instances`), with and without
masking; plus the NSP index of a 100M-token synthetic corpus (:func:`index_at_scale`)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from lmobjectives.lab.bench.runner import SEED, Case, Contender, Plan, Settings, peak_rss_mib
from lmobjectives.lab.bench.workloads import (
    COLLATION_TABLE,
    OURS_NP,
    PYTHON,
    REFERENCES,
    default_corpus,
)

__all__ = ["index_at_scale", "pairs_plan"]

#: Instances per call when generating a pass offline.
OFFLINE = 1024


def _sub_corpus(corpus: Any, n_docs: int) -> Any:
    """The first ``n_docs`` documents of ``corpus`` as a corpus of their own."""
    from lmobjectives.corpus import TokenCorpus

    last_sentence = int(corpus.document_offsets[n_docs])
    end = int(corpus.sentence_offsets[last_sentence])
    return TokenCorpus(
        np.asarray(corpus.ids[:end]),
        np.asarray(corpus.sentence_offsets[: last_sentence + 1]),
        np.asarray(corpus.document_offsets[: n_docs + 1]),
        corpus.vocab_size,
        tokenizer=corpus.tokenizer,
    )


def _ours(sub: Any, masker: Any, epochs: Any, seed: int, mask: bool, per_call: int) -> Any:
    """One call = one pass of lmobjectives: a fresh epoch's index, then ``per_call`` instances
    at a time through ``__getitems__`` and ``masker`` with ``mask`` (one pass from the index
    to the padded, masked arrays), else the ragged rows of the instances."""
    from lmobjectives.pairs import SentencePairDataset

    def one_pass(_: Any) -> int:
        ds = SentencePairDataset(sub, "nsp", seed=seed, epoch=next(epochs))
        n = len(ds)
        for start in range(0, n, per_call):
            batch = ds.__getitems__(range(start, min(n, start + per_call)))
            if mask:
                masker(batch)  # token masking: rows built, masked and padded in one pass
            else:
                _ = batch.columns  # the rows themselves (made when first read)
        return n

    return one_pass


def _per_item(sub: Any, masker: Any, epochs: Any, seed: int, mask: bool, per_batch: int) -> Any:
    """One call = one pass read item by item (``dataset[i]``, what a ``DataLoader`` does with a
    dataset that has no ``__getitems__``), the items collated ``per_batch`` at a time by
    ``masker`` with ``mask``."""
    from lmobjectives.pairs import SentencePairDataset

    def one_pass(_: Any) -> int:
        ds = SentencePairDataset(sub, "nsp", seed=seed, epoch=next(epochs))
        n = len(ds)
        for start in range(0, n, per_batch):
            items = [ds[i] for i in range(start, min(n, start + per_batch))]
            if mask:
                masker(items)
        return n

    return one_pass


def _google(documents: list[list[list[int]]], seed: int, mask: bool) -> Callable[[Any], Any]:
    """One call = one pass of Google BERT's builder over ``documents``."""
    from lmobjectives.lab.baselines.google_bert import google_pair_instances

    rng = random.Random(seed)
    return lambda _: google_pair_instances(documents, rng=rng, masking=mask)


def pairs_plan(corpus: Any, s: Settings) -> Plan:
    """NSP instances, with masking (``nsp-mlm-<n>docs``) and without (``nsp-<n>docs``): ours
    with ``batch_size`` instances per call as a DataLoader asks, or 1024 as an offline pass
    would, or item by item (``dataset[i]``, collated ``batch_size`` at a time: ``per item``),
    against Google's builder ("vs Python"). One call = one full pass over the same
    documents; "batches/s" counts passes/s and tokens/s real tokens. Notes give instances/s and,
    unless ``quick``, :func:`index_at_scale` of 100M tokens."""
    from lmobjectives.masking import MLMCollator
    from lmobjectives.pairs import SentencePairDataset

    corpus = default_corpus(corpus)
    n_docs = min(corpus.num_documents, 60 if s.quick else 400)
    sub = _sub_corpus(corpus, n_docs)
    documents = [[x.tolist() for x in sub.document_sentences(d)] for d in range(n_docs)]
    masker = MLMCollator(corpus.tokenizer, exact_budget=True, max_predictions=20, seed=s.seed)
    epochs = iter(range(1, 1 << 22))
    probe = SentencePairDataset(sub, "nsp", seed=s.seed)
    count = len(probe)
    tokens = float(probe.__getitems__(range(count))["input_ids"].values.size)
    cases = []
    for mask, suffix in ((True, " +mask"), (False, "")):
        python = f"{PYTHON} (Google){suffix}"
        contenders = [
            Contender(f"{OURS_NP}{suffix}, {n}/call", _ours(sub, masker, epochs, s.seed, mask, n))
            for n in (s.batch_size, OFFLINE)
        ]
        contenders.append(
            Contender(
                f"{OURS_NP}{suffix}, per item",
                _per_item(sub, masker, epochs, s.seed, mask, s.batch_size),
            )
        )
        contenders.append(Contender(python, _google(documents, s.seed, mask)))
        cases.append(
            Case(
                f"nsp{'-mlm' if mask else ''}-{n_docs}docs",
                contenders,
                s.rounds_or(7),
                batch_size=count,
                per_batch={"tokens": tokens},
                references={**REFERENCES, "vs Python": python},
                target=s.target,
            )
        )

    def notes(rows: Any, results: Any) -> list[str]:
        out = [f"{r.workload} {r.contender}: {r.rate() * count:,.0f} instances/s" for r in rows]
        return out if s.quick else [*out, index_at_scale(100_000_000, seed=s.seed)]

    return Plan("pairs", cases, COLLATION_TABLE, finish=notes)


def index_at_scale(num_tokens: int, *, seed: int = SEED, max_seq_length: int = 128) -> str:
    """Builds the NSP index of a synthetic ``num_tokens`` corpus (uint16 ids, sentences of
    8–40 tokens, documents of 2–60 sentences) and reports build time and the memory the build
    added at its peak (RSS high-water mark), next to the corpus size."""
    from lmobjectives import _core

    g = np.random.default_rng(seed)
    lengths = g.integers(8, 41, size=num_tokens // 24 + 16)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    n_sent = int(np.searchsorted(offsets, num_tokens, side="right") - 1)
    sentence_offsets = offsets[: n_sent + 1].astype(np.int64)
    docs = np.concatenate([[0], np.cumsum(g.integers(2, 61, size=n_sent // 2 + 2))])
    docs = docs[docs < n_sent]
    document_offsets = np.concatenate([docs, [n_sent]]).astype(np.int64)
    ids = g.integers(5, 30_000, size=int(sentence_offsets[-1]), dtype=np.uint16)
    before = peak_rss_mib()
    t0 = time.perf_counter()
    index = _core.build_pair_index(
        ids,
        sentence_offsets,
        document_offsets,
        max_seq_length=max_seq_length,
        seed=seed,
        num_threads=0,
    )
    seconds = time.perf_counter() - t0
    added = max(0.0, peak_rss_mib() - before)
    corpus_mib = (ids.nbytes + sentence_offsets.nbytes + document_offsets.nbytes) / 2**20
    index_mib = sum(v.nbytes for v in index.values()) / 2**20
    return (
        f"NSP index of a {ids.size / 1e6:.0f}M-token synthetic corpus ({corpus_mib:,.0f} MiB): "
        f"{len(index['label']):,} instances in {seconds:.2f} s; index {index_mib:,.0f} MiB, "
        f"peak memory added by the build {added:,.0f} MiB"
    )
