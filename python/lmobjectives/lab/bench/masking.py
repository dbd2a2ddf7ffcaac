"""The masking benchmarks: :class:`~lmobjectives.MLMCollator` against its baselines, in one run.

``mlm`` (:func:`mlm_plan`): the ``ragged`` and ``padded`` workloads of
:mod:`~lmobjectives.lab.bench.workloads`. Contenders: ``lmobjectives np`` and
``lmobjectives pt`` (:class:`~lmobjectives.MLMCollator` with ``return_tensors="np"`` / ``"pt"``),
``HF pt`` (``DataCollatorForLanguageModeling``, its default ``return_tensors="pt"``, seeded) and
``NumPy`` (:class:`~lmobjectives.lab.baselines.numpy_reference.NumpyMLMCollator`). A row reports
the median time per batch as batches/s and real (non-pad) tokens/s; ``vs HF`` is the median over
rounds of ``t_HF / t_contender`` measured in the same round (``vs NumPy`` likewise).

DataLoader run: a map-style dataset of ragged examples, ``DataLoader(ds, batch_size,
collate_fn=collator, num_workers=w)`` for ``w`` in (0, 2), lmobjectives (``"np"`` and ``"pt"``)
against HF. Workers are persistent and one untimed epoch warms them up, so worker start-up is
excluded; a timed epoch runs from ``iter(loader)`` to the last batch received, and the epochs
alternate between the contenders. batches/s = batches per epoch / median epoch time. With
workers this includes moving each batch to the main process: torch tensors go through shared
memory (one segment per tensor), NumPy arrays are pickled through the worker's pipe — on small
machines the former can cost more than the masking itself.

``wwm`` (:func:`wwm_plan`): whole-word masking, lmobjectives (``unit="word"``) against
``DataCollatorForLanguageModeling(whole_word_mask=True)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from lmobjectives._optional import require
from lmobjectives.lab.bench.runner import Case, Contender, Plan, Settings, has
from lmobjectives.lab.bench.workloads import (
    COLLATION_TABLE,
    HF_PT,
    MAX_LEN,
    MIN_LEN,
    NUMPY,
    OURS_NP,
    OURS_PT,
    PADDED_LEN,
    REFERENCES,
    ExampleDataset,
    default_corpus,
    make_workloads,
    missing_contenders,
    ragged_batches,
    tokens_per_batch,
    wwm_batches,
)

__all__ = ["mlm_collators", "mlm_plan", "wwm_plan"]

#: DataLoader worker counts of the MLM benchmark's DataLoader run.
DATALOADER_WORKERS = (0, 2)


def mlm_collators(
    tokenizer: Any, *, include_hf: bool, num_threads: int | None, seed: int
) -> dict[str, Callable[[Any], Any]]:
    """The MLM contenders available here, by name, in table order."""
    from lmobjectives.lab.baselines.huggingface import hf_mlm_collator
    from lmobjectives.lab.baselines.numpy_reference import NumpyMLMCollator
    from lmobjectives.masking import MLMCollator

    out: dict[str, Callable[[Any], Any]] = {
        OURS_NP: MLMCollator(tokenizer, seed=seed, num_threads=num_threads),
    }
    if has("torch"):
        out[OURS_PT] = MLMCollator(
            tokenizer, seed=seed, num_threads=num_threads, return_tensors="pt"
        )
    if include_hf and has("torch") and has("transformers"):
        out[HF_PT] = hf_mlm_collator(tokenizer, seed=seed)
    out[NUMPY] = NumpyMLMCollator(tokenizer, seed=seed)
    return out


def mlm_plan(corpus: Any, s: Settings) -> Plan:
    """MLM collation (see the module docstring): one case per workload, then (with
    ``include_dataloader`` and torch) one per DataLoader worker count."""
    corpus = default_corpus(corpus)
    rounds = s.rounds_or(15)
    workloads = make_workloads(corpus, batch_size=s.batch_size, num_batches=2 if s.quick else 8)
    collators = mlm_collators(
        corpus.tokenizer, include_hf=s.include_hf, num_threads=s.num_threads, seed=s.seed
    )
    cases = [
        Case(
            w.label,
            [
                Contender(name, fn, w.hf_batches if name == HF_PT else w.batches)
                for name, fn in collators.items()
            ],
            rounds,
            batch_size=w.batch_size,
            per_batch={"tokens": float(np.mean(w.tokens))},
            references=REFERENCES,
            target=s.target,
        )
        for w in workloads
    ]
    if s.include_dataloader and has("torch"):
        cases += _dataloader_cases(corpus, s, rounds)
    skipped = missing_contenders(include_hf=s.include_hf, include_dataloader=s.include_dataloader)
    return Plan(
        "mlm", cases, COLLATION_TABLE, s.num_threads, thread_pools=("torch",), skipped=skipped
    )


def _epoch(loader: Any) -> Callable[[Any], int]:
    """One call = one epoch of ``loader``, from ``iter(loader)`` to the last batch."""
    return lambda _: sum(1 for _ in loader)


def _dataloader_cases(corpus: Any, s: Settings, rounds: int) -> list[Case]:
    DataLoader = require("torch.utils.data").DataLoader

    from lmobjectives.lab.baselines.huggingface import hf_mlm_collator
    from lmobjectives.masking import MLMCollator

    num_batches, epochs = (4, 2) if s.quick else (32, max(3, rounds // 3))
    batches = ragged_batches(
        corpus, batch_size=s.batch_size, num_batches=num_batches, seed=s.seed + 7
    )
    dataset: Any = ExampleDataset([ex for b in batches for ex in b])  # map-style
    kw: dict[str, Any] = {"seed": s.seed, "num_threads": s.num_threads}
    collators: dict[str, Callable[[Any], Any]] = {
        OURS_NP: MLMCollator(corpus.tokenizer, return_tensors="np", **kw),
        OURS_PT: MLMCollator(corpus.tokenizer, return_tensors="pt", **kw),
    }
    if s.include_hf and has("transformers"):
        collators[HF_PT] = hf_mlm_collator(corpus.tokenizer, seed=s.seed)
    cases = []
    for w in DATALOADER_WORKERS:
        contenders = [
            Contender(
                name,
                _epoch(
                    DataLoader(
                        dataset,
                        batch_size=s.batch_size,
                        collate_fn=fn,
                        num_workers=w,
                        persistent_workers=w > 0,  # started by the warm-up epoch
                    )
                ),
                batches_per_call=num_batches,
            )
            for name, fn in collators.items()
        ]
        cases.append(
            Case(
                f"dataloader w={w}",
                contenders,
                epochs,
                batch_size=s.batch_size,
                per_batch={"tokens": tokens_per_batch(batches)},
                references=REFERENCES,
                target=None,
            )
        )
    return cases


def wwm_plan(corpus: Any, s: Settings) -> Plan:
    """Whole-word masking: lmobjectives (``unit="word"``, configured to do Hugging Face 5.x's
    job: each word with probability 0.15, all chosen tokens [MASK]) against
    ``DataCollatorForLanguageModeling(whole_word_mask=True)``, on rows of exactly 512 tokens
    (a 2-D array for us — and, as ``lmobjectives np, dicts``, the tokenizer's dicts of lists
    that ``run_mlm.py`` hands over — dicts with ``offset_mapping`` for Hugging Face) and on
    ragged rows of
    128–512 given as dicts with ``special_tokens_mask`` (where Hugging Face fails: a note says
    so)."""
    from lmobjectives.lab.baselines.huggingface import hf_tokenizer
    from lmobjectives.masking import MLMCollator

    corpus = default_corpus(corpus)
    rounds = s.rounds_or(15)
    fast = hf_tokenizer(corpus.tokenizer)
    kw: dict[str, Any] = {
        "unit": "word",
        "exact_budget": False,
        "mask_replace_prob": 1.0,
        "random_replace_prob": 0.0,
        "seed": s.seed,
    }
    ours: dict[str, Callable[[Any], Any]] = {OURS_NP: MLMCollator(fast, **kw)}
    if has("torch"):
        ours[OURS_PT] = MLMCollator(fast, return_tensors="pt", **kw)
    hf = None
    if s.include_hf and has("torch") and has("transformers"):
        DataCollatorForLanguageModeling = require("transformers").DataCollatorForLanguageModeling
        hf = DataCollatorForLanguageModeling(
            fast, whole_word_mask=True, mask_replace_prob=1.0, random_replace_prob=0.0, seed=s.seed
        )
    notes: list[str] = []
    cases = [_wwm_case(corpus, s, rounds, ragged, ours, hf, notes) for ragged in (False, True)]
    return Plan(
        "wwm",
        cases,
        COLLATION_TABLE,
        skipped=missing_contenders(include_hf=s.include_hf, include_dataloader=False),
        finish=lambda rows, results: notes,
    )


def _wwm_case(
    corpus: Any,
    s: Settings,
    rounds: int,
    ragged: bool,
    ours: dict[str, Callable[[Any], Any]],
    hf: Any,
    notes: list[str],
) -> Case:
    batches = wwm_batches(
        corpus, batch_size=s.batch_size, num_batches=2 if s.quick else 4, ragged=ragged
    )
    # Each contender gets the form it is fastest with and that its users have: padded rows as
    # one 2-D array for lmobjectives (as in the MLM padded workload), the fast tokenizer's
    # dicts with offset_mapping for Hugging Face (which needs them).
    ours_batches: list[Any] = [
        [{k: v for k, v in ex.items() if k != "offset_mapping"} for ex in b] for b in batches
    ]
    if not ragged:
        ours_batches = [np.asarray([ex["input_ids"] for ex in b]) for b in batches]
    label = f"wwm-{'ragged' if ragged else 'padded'}-{s.batch_size}x" + (
        f"{MIN_LEN}-{MAX_LEN}" if ragged else f"{PADDED_LEN}"
    )
    contenders = [Contender(name, fn, ours_batches) for name, fn in ours.items()]
    if not ragged:
        # The same rows as run_mlm.py hands them over: the tokenizer's dicts of lists.
        dicts = [
            [{k: v for k, v in ex.items() if k != "offset_mapping"} for ex in b] for b in batches
        ]
        contenders.append(Contender(f"{OURS_NP}, dicts", ours[OURS_NP], dicts))
    if hf is not None:
        try:
            hf(batches[0])
            contenders.append(Contender(HF_PT, hf, batches))
        except Exception as e:  # Hugging Face cannot pad offset_mapping
            notes.append(f"{label}: {HF_PT} fails: {type(e).__name__}: {e}")
    return Case(
        label,
        contenders,
        rounds,
        batch_size=s.batch_size,
        per_batch={"tokens": tokens_per_batch(batches)},
        references=REFERENCES,
        target=s.target,
    )
