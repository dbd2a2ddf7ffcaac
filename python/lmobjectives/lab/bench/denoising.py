"""The denoising benchmarks (``lmobjectives bench --objective t5|bart``): lmobjectives'
collators against their references, on the same batches of a
:class:`~lmobjectives.TokenCorpus`, in one run (measured by
:func:`~lmobjectives.lab.bench.runner.run_plan`: contenders alternated round by round, median
per-round ratios).

``t5`` (T5 span corruption at T5's defaults: 568 raw tokens → 512 inputs, 114 targets)
    Batches of 32 consecutive 568-token chunks of the corpus (:class:`CorpusChunks`), given
    two ways: ``t5-examples-32x568``, the list of ``{"input_ids": 1-D int64 array, "idx": i}``
    a ``DataLoader`` hands its collator, and ``t5-array-32x568``, one ``(32, 568)`` int64
    array. Contenders: ``lmobjectives np`` / ``pt``
    (:class:`~lmobjectives.T5SpanCorruptionCollator`), ``HF Flax (NumPy)`` — the collator of
    Hugging Face's ``run_t5_mlm_flax.py`` (one NumPy mask per row, then batch filtering;
    :class:`~lmobjectives.lab.baselines.t5.HFT5MLMCollator`) in the "vs HF" column — and
    ``NumPy vectorised`` (:class:`~lmobjectives.lab.baselines.t5.NumpyT5Collator`, masks for the
    whole batch at once) in the "vs NumPy" column.

``bart`` (BART-large recipe: text infilling of 30% of words, Poisson(3) spans, 10% random,
one mask per span, sentence permutation)
    ``bart-examples-32x512``: 32 chunks of 510 tokens (BOS and EOS make 512), as a list of
    examples. Contenders: ``lmobjectives np`` / ``pt``
    (:class:`~lmobjectives.BartDenoisingCollator`) and ``fairseq (NumPy port)``
    (:class:`~lmobjectives.lab.baselines.fairseq.FairseqBartNoiser`: fairseq's ``DenoisingDataset``
    noising, per row, as fairseq runs it) in the "vs NumPy" column. Both take word starts from
    the tokenizer's vocabulary and end sentences at ``"."``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from lmobjectives.lab.bench.runner import SEED, Case, Contender, Plan, Settings, has
from lmobjectives.lab.bench.workloads import (
    COLLATION_TABLE,
    OURS_NP,
    OURS_PT,
    Workload,
    default_corpus,
    missing_contenders,
)

__all__ = [
    "BART_RAW",
    "FAIRSEQ",
    "HF_FLAX",
    "NUMPY_VECTORISED",
    "OBJECTIVES",
    "T5_RAW",
    "bart_contenders",
    "bart_plan",
    "make_denoising_workloads",
    "t5_contenders",
    "t5_plan",
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


def t5_contenders(corpus: Any, num_threads: int | None, seed: int) -> dict[str, Callable]:
    """The T5 contenders available here, by name, in table order."""
    from lmobjectives.denoising import T5SpanCorruptionCollator
    from lmobjectives.lab.baselines.t5 import HFT5MLMCollator, NumpyT5Collator

    ours = T5SpanCorruptionCollator(corpus.tokenizer, seed=seed, num_threads=num_threads)
    out: dict[str, Callable] = {OURS_NP: ours}
    if has("torch"):
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


def bart_contenders(corpus: Any, num_threads: int | None, seed: int) -> dict[str, Callable]:
    """The BART contenders available here, by name, in table order."""
    from lmobjectives.denoising import BartDenoisingCollator
    from lmobjectives.lab.baselines.fairseq import FairseqBartNoiser

    stop = corpus.tokenizer.token_to_id(".")
    stops = [] if stop is None else [int(stop)]
    ours = BartDenoisingCollator(
        corpus.tokenizer, seed=seed, num_threads=num_threads, full_stop_token_ids=stops
    )
    out: dict[str, Callable] = {OURS_NP: ours}
    if has("torch"):
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


def _plan(objective: str, corpus: Any, s: Settings, references: dict[str, str]) -> Plan:
    corpus = default_corpus(corpus)
    workloads = make_denoising_workloads(
        objective, corpus, batch_size=s.batch_size, num_batches=2 if s.quick else 8, seed=s.seed
    )
    contenders = {"t5": t5_contenders, "bart": bart_contenders}[objective]
    collators = contenders(corpus, s.num_threads, s.seed)
    if not s.include_hf:
        collators.pop(HF_FLAX, None)
    cases = [
        Case(
            w.label,
            [Contender(name, fn, w.batches) for name, fn in collators.items()],
            s.rounds_or(15),
            batch_size=w.batch_size,
            per_batch={"tokens": float(np.mean(w.tokens))},
            references=references,
            target=s.target,
        )
        for w in workloads
    ]
    return Plan(
        objective,
        cases,
        COLLATION_TABLE,
        s.num_threads,
        thread_pools=("torch",),
        skipped=missing_contenders(include_hf=False, include_dataloader=False),
    )


def t5_plan(corpus: Any, s: Settings) -> Plan:
    """T5 span corruption against Hugging Face's Flax-example collator ("vs HF";
    ``include_hf=False`` leaves it out) and the vectorised NumPy version ("vs NumPy"); a note
    says what the ratios compare."""
    plan = _plan("t5", corpus, s, {"vs HF": HF_FLAX, "vs NumPy": NUMPY_VECTORISED})
    note = (
        "t5: vs HF = Hugging Face's Flax-example T5 collator (NumPy, one mask per row, "
        "re-implemented), vs NumPy = the same vectorised over the batch; tokens = raw tokens"
    )
    plan.finish = lambda rows, results: [note]
    return plan


def bart_plan(corpus: Any, s: Settings) -> Plan:
    """BART noising against a NumPy port of fairseq's ``DenoisingDataset`` ("vs NumPy"; there
    is no Hugging Face counterpart, so ``include_hf`` changes nothing); a note says so."""
    plan = _plan("bart", corpus, s, {"vs HF": "", "vs NumPy": FAIRSEQ})
    note = "bart: vs NumPy = a NumPy port of fairseq's DenoisingDataset noising (per row)"
    plan.finish = lambda rows, results: [note]
    return plan
