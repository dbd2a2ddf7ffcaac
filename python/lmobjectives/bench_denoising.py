"""The denoising benchmarks (``lmobjectives bench --objective t5|bart``): lmobjectives'
collators against their references, on the same batches of a
:class:`~lmobjectives.TokenCorpus`, in one run (measured with :func:`lmobjectives.bench.compare`:
contenders alternated round by round, median per-round ratios).

``t5`` (T5 span corruption at T5's defaults: 568 raw tokens → 512 inputs, 114 targets)
    Batches of 32 consecutive 568-token chunks of the corpus (:class:`CorpusChunks`), given
    two ways: ``t5-examples-32x568``, the list of ``{"input_ids": 1-D int64 array, "idx": i}``
    a ``DataLoader`` hands its collator, and ``t5-array-32x568``, one ``(32, 568)`` int64
    array. Contenders: ``lmobjectives np`` / ``pt``
    (:class:`~lmobjectives.T5SpanCorruptionCollator`), ``HF Flax (NumPy)`` — the collator of
    Hugging Face's ``run_t5_mlm_flax.py`` (one NumPy mask per row, then batch filtering;
    :class:`~lmobjectives.baselines.HFT5MLMCollator`) in the "vs HF" column — and
    ``NumPy vectorised`` (:class:`~lmobjectives.baselines.NumpyT5Collator`, masks for the
    whole batch at once) in the "vs NumPy" column.

``bart`` (BART-large recipe: text infilling of 30% of words, Poisson(3) spans, 10% random,
one mask per span, sentence permutation)
    ``bart-examples-32x512``: 32 chunks of 510 tokens (BOS and EOS make 512), as a list of
    examples. Contenders: ``lmobjectives np`` / ``pt``
    (:class:`~lmobjectives.BartDenoisingCollator`) and ``fairseq (NumPy port)``
    (:class:`~lmobjectives.baselines.FairseqBartNoiser`: fairseq's ``DenoisingDataset``
    noising, per row, as fairseq runs it) in the "vs NumPy" column. Both take word starts from
    the tokenizer's vocabulary and end sentences at ``"."``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from lmobjectives._optional import require
from lmobjectives.bench import (
    OURS_NP,
    OURS_PT,
    SEED,
    BenchRow,
    Workload,
    _has,
    compare,
)

__all__ = [
    "OBJECTIVES",
    "make_denoising_workloads",
    "run_bart_benchmark",
    "run_denoising_benchmark",
    "run_t5_benchmark",
]

#: The selectable denoising benchmarks.
OBJECTIVES = ("t5", "bart")

HF_FLAX = "HF Flax (NumPy)"
NUMPY_VECTORISED = "NumPy vectorised"
FAIRSEQ = "fairseq (NumPy port)"

T5_RAW, BART_RAW = 568, 510


def _chunks(corpus: Any, length: int, batch_size: int, num_batches: int, seed: int) -> list[Any]:
    from lmobjectives.denoising import CorpusChunks

    chunks = CorpusChunks(corpus, length)
    if len(chunks) < batch_size * num_batches:
        raise ValueError(
            f"corpus: has {len(chunks)} chunks of {length} tokens, fewer than the "
            f"{batch_size * num_batches} the benchmark needs"
        )
    first = int(np.random.default_rng(seed).integers(len(chunks) - batch_size * num_batches + 1))
    return [
        [chunks[first + b * batch_size + i] for i in range(batch_size)] for b in range(num_batches)
    ]


def make_denoising_workloads(
    objective: str, corpus: Any, *, batch_size: int = 32, num_batches: int = 8, seed: int = SEED
) -> list[Workload]:
    """The workloads of ``objective`` (see the module docstring)."""
    if objective == "t5":
        examples = _chunks(corpus, T5_RAW, batch_size, num_batches, seed)
        arrays = [np.stack([ex["input_ids"] for ex in batch]) for batch in examples]
        tokens = [batch_size * T5_RAW] * num_batches
        return [
            Workload(
                "examples", f"t5-examples-{batch_size}x{T5_RAW}", examples, examples, tokens,
                batch_size,
            ),
            Workload(
                "array", f"t5-array-{batch_size}x{T5_RAW}", arrays, arrays, tokens, batch_size
            ),
        ]  # fmt: skip
    if objective == "bart":
        examples = _chunks(corpus, BART_RAW, batch_size, num_batches, seed)
        tokens = [batch_size * (BART_RAW + 2)] * num_batches
        return [
            Workload(
                "examples", f"bart-examples-{batch_size}x{BART_RAW + 2}", examples, examples,
                tokens, batch_size,
            )
        ]  # fmt: skip
    raise ValueError(f"objective: must be one of {list(OBJECTIVES)}, got {objective!r}")


def _t5_contenders(corpus: Any, num_threads: int | None, seed: int) -> dict[str, Callable]:
    from lmobjectives.baselines import HFT5MLMCollator, NumpyT5Collator
    from lmobjectives.denoising import T5SpanCorruptionCollator

    ours = T5SpanCorruptionCollator(corpus.tokenizer, seed=seed, num_threads=num_threads)
    out: dict[str, Callable] = {OURS_NP: ours}
    if _has("torch"):
        out[OURS_PT] = T5SpanCorruptionCollator(
            corpus.tokenizer, seed=seed, num_threads=num_threads, return_tensors="pt"
        )
    kw = {
        "vocab_len": ours.vocab_size,
        "eos_token_id": ours.eos_token_id,
        "pad_token_id": ours.pad_token_id,
        "decoder_start_token_id": ours.decoder_start_token_id,
        "seed": seed,
    }
    out[HF_FLAX] = HFT5MLMCollator(input_length=512, target_length=ours.target_length, **kw)
    out[NUMPY_VECTORISED] = NumpyT5Collator(**kw)
    return out


def _bart_contenders(corpus: Any, num_threads: int | None, seed: int) -> dict[str, Callable]:
    from lmobjectives.baselines import FairseqBartNoiser
    from lmobjectives.denoising import BartDenoisingCollator

    stop = corpus.tokenizer.token_to_id(".")
    stops = [] if stop is None else [int(stop)]
    ours = BartDenoisingCollator(
        corpus.tokenizer, seed=seed, num_threads=num_threads, full_stop_token_ids=stops
    )
    out: dict[str, Callable] = {OURS_NP: ours}
    if _has("torch"):
        out[OURS_PT] = BartDenoisingCollator(
            corpus.tokenizer,
            seed=seed,
            num_threads=num_threads,
            full_stop_token_ids=stops,
            return_tensors="pt",
        )
    out[FAIRSEQ] = FairseqBartNoiser(
        vocab_size=ours.vocab_size,
        bos_token_id=ours.bos_token_id,
        eos_token_id=ours.eos_token_id,
        pad_token_id=ours.pad_token_id,
        mask_token_id=ours.mask_token_id,
        word_starts=ours.word_starts,
        full_stop_token_ids=stops,
        seed=seed,
    )
    return out


def _check(batch_size: Any, rounds: Any, quick: bool) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    if rounds is None:
        rounds = 3 if quick else 15
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds: expected a positive int, got {rounds!r}")
    return rounds


def _run(
    objective: str,
    corpus: Any,
    *,
    batch_size: int,
    rounds: int | None,
    quick: bool,
    include_hf: bool,
    num_threads: int | None,
    progress: bool | None,
    seed: int,
) -> list[BenchRow]:
    from lmobjectives._progress import Progress

    rounds = _check(batch_size, rounds, quick)
    if corpus is None:
        from lmobjectives.corpus import TokenCorpus

        corpus = TokenCorpus.default()
    workloads = make_denoising_workloads(
        objective, corpus, batch_size=batch_size, num_batches=2 if quick else 8, seed=seed
    )
    if objective == "t5":
        collators = _t5_contenders(corpus, num_threads, seed)
        if not include_hf:
            del collators[HF_FLAX]
        vs_hf, vs_numpy = HF_FLAX, NUMPY_VECTORISED
    else:
        collators = _bart_contenders(corpus, num_threads, seed)
        vs_hf, vs_numpy = "", FAIRSEQ
    total = len(workloads) * len(collators) * (rounds + 1)
    saved_threads = None
    if num_threads and _has("torch"):
        torch = require("torch")
        saved_threads = torch.get_num_threads()
        torch.set_num_threads(num_threads)
    rows: list[BenchRow] = []
    try:
        with Progress(total, f"bench {objective}", unit="round", enabled=progress) as bar:
            for w in workloads:
                rows += compare(
                    w.label,
                    {name: (fn, w.batches) for name, fn in collators.items()},
                    tokens_per_batch=float(np.mean(w.tokens)),
                    batch_size=w.batch_size,
                    rounds=rounds,
                    quick=quick,
                    progress=bar,
                    vs_hf=vs_hf,
                    vs_numpy=vs_numpy,
                )
    finally:
        if saved_threads is not None:
            torch = require("torch")
            torch.set_num_threads(saved_threads)
    return rows


def run_t5_benchmark(
    corpus: Any = None,
    *,
    batch_size: int = 32,
    rounds: int | None = None,
    quick: bool = False,
    include_hf: bool = True,
    num_threads: int | None = None,
    progress: bool | None = None,
    seed: int = SEED,
) -> tuple[list[BenchRow], list[str]]:
    """T5 span corruption against Hugging Face's Flax-example collator ("vs HF") and the
    vectorised NumPy version ("vs NumPy"); arguments as
    :func:`lmobjectives.bench.run_mlm_benchmark` (``include_hf=False`` leaves the Flax
    collator out). Returns the rows and a note on what the ratios compare."""
    rows = _run(
        "t5",
        corpus,
        batch_size=batch_size,
        rounds=rounds,
        quick=quick,
        include_hf=include_hf,
        num_threads=num_threads,
        progress=progress,
        seed=seed,
    )
    note = (
        "t5: vs HF = Hugging Face's Flax-example T5 collator (NumPy, one mask per row, "
        "re-implemented), vs NumPy = the same vectorised over the batch; tokens = raw tokens"
    )
    return rows, [note]


def run_bart_benchmark(
    corpus: Any = None,
    *,
    batch_size: int = 32,
    rounds: int | None = None,
    quick: bool = False,
    include_hf: bool = True,
    num_threads: int | None = None,
    progress: bool | None = None,
    seed: int = SEED,
) -> tuple[list[BenchRow], list[str]]:
    """BART noising against a NumPy port of fairseq's ``DenoisingDataset`` ("vs NumPy"; there
    is no Hugging Face counterpart, so ``include_hf`` changes nothing). Returns the rows and a
    note."""
    rows = _run(
        "bart",
        corpus,
        batch_size=batch_size,
        rounds=rounds,
        quick=quick,
        include_hf=include_hf,
        num_threads=num_threads,
        progress=progress,
        seed=seed,
    )
    note = "bart: vs NumPy = a NumPy port of fairseq's DenoisingDataset noising (per row)"
    return rows, [note]


def run_denoising_benchmark(objective: str, corpus: Any = None, **kwargs: Any) -> list[BenchRow]:
    """The rows of :func:`run_t5_benchmark` (``objective="t5"``) or
    :func:`run_bart_benchmark` (``"bart"``)."""
    runs = {"t5": run_t5_benchmark, "bart": run_bart_benchmark}
    if objective not in runs:
        raise ValueError(f"objective: must be one of {list(OBJECTIVES)}, got {objective!r}")
    rows, _ = runs[objective](corpus, **kwargs)
    return rows
