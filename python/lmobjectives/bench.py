"""The MLM benchmark: :class:`~lmobjectives.MLMCollator` against its baselines, in one run.

Used by ``lmobjectives bench`` (the CLI) and by ``benches/``. Everything is measured on the same
batches, built deterministically from a :class:`~lmobjectives.corpus.TokenCorpus`:

``ragged`` (``mlm-ragged-32x128-512``)
    What Hugging Face's ``run_mlm.py`` hands its collator: a list of ``batch_size`` mappings
    ``{"input_ids": list[int], "special_tokens_mask": list[int]}``, each row
    ``[CLS] + tokens + [SEP]`` cut from consecutive corpus tokens, total lengths uniform in
    [128, 512]. Every contender gets these very lists.

``padded`` (``mlm-padded-32x512``)
    Rows of exactly 512 (``[CLS]`` + 510 tokens + ``[SEP]``). lmobjectives and the NumPy
    reference get one C-contiguous ``(batch_size, 512)`` int64 array. Hugging Face gets a list
    of 1-D int64 tensors (rows of that array, what a ``set_format("torch")`` dataset yields):
    ``_torch_collate_batch`` stacks them without padding and the special-token mask comes from
    ``get_special_tokens_mask``. Of the forms HF accepts for pre-padded rows this was the fastest
    when measured (``transformers`` 5.24, 2 cores; median ms per 32x512 batch): list of tensors
    4.3, list of NumPy rows 4.4, one 2-D tensor 4.6, list of lists 8.2, mappings with
    ``special_tokens_mask`` (through ``tokenizer.pad``) 13-15.

Contenders: ``lmobjectives np`` and ``lmobjectives pt`` (:class:`~lmobjectives.MLMCollator` with
``return_tensors="np"`` / ``"pt"``), ``HF pt`` (``DataCollatorForLanguageModeling``, its default
``return_tensors="pt"``, seeded) and ``NumPy`` (:class:`~lmobjectives.baselines.NumpyMLMCollator`).

Measuring (DESIGN.md §7): each contender is warmed up on every batch, and a single call is timed
to choose ``k``, the calls per round (about ``target`` seconds). Then ``rounds`` rounds run the
contenders one after the other (A B C D, B C D A, …: the start rotates so no contender always
follows the same one), each timing ``k`` calls cycling over the batches. A row reports the
median time per batch as batches/s and real (non-pad) tokens/s; ``vs HF`` is the median over
rounds of ``t_HF / t_contender`` measured in the same round (``vs NumPy`` likewise).

DataLoader run: a map-style dataset of ragged examples, ``DataLoader(ds, batch_size,
collate_fn=collator, num_workers=w)`` for ``w`` in (0, 2), lmobjectives (``"np"`` and ``"pt"``)
against HF. Workers are persistent and one untimed epoch warms them up, so worker start-up is
excluded; a timed epoch runs from ``iter(loader)`` to the last batch received, and the epochs
alternate between the contenders. batches/s = batches per epoch / median epoch time. With
workers this includes moving each batch to the main process: torch tensors go through shared
memory (one segment per tensor), NumPy arrays are pickled through the worker's pipe — on small
machines the former can cost more than the masking itself.
"""

from __future__ import annotations

import importlib.util
import math
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmobjectives._optional import require

__all__ = [
    "BATCH_SIZE",
    "BenchRow",
    "ExampleDataset",
    "Workload",
    "compare",
    "format_table",
    "index_at_scale",
    "make_workloads",
    "missing_contenders",
    "padded_batches",
    "peak_rss_mib",
    "ragged_batches",
    "run_mlm_benchmark",
    "run_packing_benchmark",
    "run_pairs_benchmark",
    "run_wwm_benchmark",
]

#: Contender names, in table order.
OURS_NP = "lmobjectives np"
OURS_PT = "lmobjectives pt"
HF_PT = "HF pt"
NUMPY = "NumPy"
PYTHON = "Python"

SEED = 1234
BATCH_SIZE = 32
MIN_LEN, MAX_LEN = 128, 512
PADDED_LEN = 512


# -- workloads ---------------------------------------------------------------------------------


def _special_id(tokenizer: Any, token: str) -> int:
    i = tokenizer.token_to_id(token)
    if i is None:
        raise ValueError(f"tokenizer: has no {token} token")
    return int(i)


def _stream(corpus: Any, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    ids = np.asarray(corpus.ids)
    if ids.size == 0:
        raise ValueError("corpus: has no tokens")
    return ids, int(rng.integers(ids.size))


def ragged_batches(
    corpus: Any,
    *,
    batch_size: int = 32,
    num_batches: int = 1,
    min_len: int = MIN_LEN,
    max_len: int = MAX_LEN,
    seed: int = SEED,
) -> list[list[dict[str, list[int]]]]:
    """``num_batches`` batches of ``batch_size`` examples as ``run_mlm.py`` makes them:
    ``{"input_ids": [CLS] + tokens + [SEP], "special_tokens_mask": [1, 0, …, 0, 1]}`` with
    total lengths uniform in ``[min_len, max_len]``, cut from consecutive corpus tokens
    (starting at a seeded random offset, wrapping around a small corpus)."""
    rng = np.random.default_rng(seed)
    ids, pos = _stream(corpus, rng)
    cls, sep = _special_id(corpus.tokenizer, "[CLS]"), _special_id(corpus.tokenizer, "[SEP]")
    lengths = rng.integers(min_len, max_len + 1, size=(num_batches, batch_size))
    batches = []
    for row_lengths in lengths:
        batch = []
        for n in row_lengths.tolist():
            body = ids.take(np.arange(pos, pos + n - 2), mode="wrap").tolist()
            pos = (pos + n - 2) % ids.size
            batch.append(
                {
                    "input_ids": [cls, *body, sep],
                    "special_tokens_mask": [1] + [0] * (n - 2) + [1],
                }
            )
        batches.append(batch)
    return batches


def padded_batches(
    corpus: Any,
    *,
    batch_size: int = 32,
    num_batches: int = 1,
    length: int = PADDED_LEN,
    seed: int = SEED + 1,
) -> list[np.ndarray]:
    """``num_batches`` C-contiguous ``(batch_size, length)`` int64 arrays of rows
    ``[CLS] + (length - 2) consecutive corpus tokens + [SEP]``."""
    rng = np.random.default_rng(seed)
    ids, pos = _stream(corpus, rng)
    cls, sep = _special_id(corpus.tokenizer, "[CLS]"), _special_id(corpus.tokenizer, "[SEP]")
    out = []
    for _ in range(num_batches):
        n = batch_size * (length - 2)
        body = ids.take(np.arange(pos, pos + n), mode="wrap").astype(np.int64)
        pos = (pos + n) % ids.size
        batch = np.empty((batch_size, length), dtype=np.int64)
        batch[:, 0], batch[:, -1] = cls, sep
        batch[:, 1:-1] = body.reshape(batch_size, length - 2)
        out.append(batch)
    return out


@dataclass
class Workload:
    """Batches of one shape, in the form each contender is given."""

    name: str  # "ragged" or "padded"
    label: str  # e.g. "mlm-ragged-32x128-512" (the pytest-benchmark group)
    batches: list[Any]  # lmobjectives and NumPy
    hf_batches: list[Any]  # Hugging Face
    tokens: list[int]  # real tokens per batch
    batch_size: int


def make_workloads(corpus: Any, *, batch_size: int = 32, num_batches: int = 8) -> list[Workload]:
    """The ``ragged`` and ``padded`` workloads (see the module docstring)."""
    ragged = ragged_batches(corpus, batch_size=batch_size, num_batches=num_batches)
    padded = padded_batches(corpus, batch_size=batch_size, num_batches=num_batches)
    hf_padded: list[Any] = padded
    if _has("torch"):
        torch = require("torch")
        hf_padded = [list(torch.from_numpy(b)) for b in padded]  # row views, no copies
    return [
        Workload(
            name="ragged",
            label=f"mlm-ragged-{batch_size}x{MIN_LEN}-{MAX_LEN}",
            batches=ragged,
            hf_batches=ragged,
            tokens=[sum(len(ex["input_ids"]) for ex in b) for b in ragged],
            batch_size=batch_size,
        ),
        Workload(
            name="padded",
            label=f"mlm-padded-{batch_size}x{PADDED_LEN}",
            batches=padded,
            hf_batches=hf_padded,
            tokens=[b.size for b in padded],
            batch_size=batch_size,
        ),
    ]


class ExampleDataset:
    """A map-style dataset over a list of examples (what ``DataLoader`` indexes)."""

    def __init__(self, examples: Sequence[Any]) -> None:
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Any:
        return self.examples[i]


# -- results -----------------------------------------------------------------------------------


@dataclass
class BenchRow:
    """One contender on one workload."""

    workload: str
    contender: str
    batch_size: int
    tokens_per_batch: float  # mean real (non-pad) tokens
    seconds_per_batch: float  # median
    batches_per_s: float
    tokens_per_s: float
    ratio_vs_hf: float | None = None  # t_HF / t_this (median over rounds); > 1 is faster
    ratio_vs_numpy: float | None = None  # t_NumPy / t_this
    ratio_vs_python: float | None = None  # t_Python / t_this (pure-Python reference)
    rounds: int = 0
    calls_per_round: int = 0
    samples: list[float] = field(default_factory=list, repr=False)  # seconds per batch, by round


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def missing_contenders(*, include_hf: bool = True, include_dataloader: bool = True) -> list[str]:
    """What :func:`run_mlm_benchmark` will skip because ``torch``/``transformers`` are not
    installed, one line each (empty when nothing is skipped)."""
    has_torch, has_transformers = _has("torch"), _has("transformers")
    out = []
    if not has_torch:
        out.append(f"{OURS_PT}: needs torch (pip install 'lmobjectives[torch]')")
    if include_hf and not (has_torch and has_transformers):
        need = " and ".join(
            n for n, ok in (("torch", has_torch), ("transformers", has_transformers)) if not ok
        )
        out.append(f"{HF_PT}: needs {need} (pip install 'lmobjectives[bench]')")
    if include_dataloader and not has_torch:
        out.append("DataLoader run: needs torch (pip install 'lmobjectives[torch]')")
    return out


def _has(module: str) -> bool:
    if sys.modules.get(module, False) is None:  # blocked (e.g. by a test)
        return False
    return importlib.util.find_spec(module) is not None


# -- measuring ---------------------------------------------------------------------------------


@dataclass
class _Contender:
    name: str
    call: Callable[[Any], Any]
    batches: list[Any]
    calls: int = 1
    samples: list[float] = field(default_factory=list)


def _time_calls(c: _Contender, start: int, k: int) -> float:
    n = len(c.batches)
    t0 = time.perf_counter()
    for j in range(start, start + k):
        c.call(c.batches[j % n])
    return (time.perf_counter() - t0) / k


def _warm_up(c: _Contender, target: float) -> None:
    """Runs ``c`` once on every batch, then picks the calls per round from a timed call."""
    for b in c.batches:
        c.call(b)
    once = min(_time_calls(c, j, 1) for j in range(min(3, len(c.batches))))
    c.calls = max(1, min(100_000, math.ceil(target / max(once, 1e-9))))


def _median_ratio(num: list[float], den: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(num, den, strict=True))


def _rows(
    workload: str,
    contenders: list[_Contender],
    batch_size: int,
    tokens_per_batch: float,
    rounds: int,
    vs_hf: str = HF_PT,
    vs_numpy: str = NUMPY,
) -> list[BenchRow]:
    by_name = {c.name: c for c in contenders}
    hf, npy = by_name.get(vs_hf), by_name.get(vs_numpy)
    py_ref = next((c for c in contenders if c.name.startswith(PYTHON)), None)
    rows = []
    for c in contenders:
        t = statistics.median(c.samples)
        rows.append(
            BenchRow(
                workload=workload,
                contender=c.name,
                batch_size=batch_size,
                tokens_per_batch=tokens_per_batch,
                seconds_per_batch=t,
                batches_per_s=1.0 / t,
                tokens_per_s=tokens_per_batch / t,
                ratio_vs_hf=_median_ratio(hf.samples, c.samples) if hf else None,
                ratio_vs_numpy=_median_ratio(npy.samples, c.samples) if npy else None,
                ratio_vs_python=_median_ratio(py_ref.samples, c.samples) if py_ref else None,
                rounds=rounds,
                calls_per_round=c.calls,
                samples=list(c.samples),
            )
        )
    return rows


def _alternate(contenders: list[_Contender], rounds: int, progress: Any) -> None:
    n = len(contenders)
    for r in range(rounds):
        for i in range(n):
            c = contenders[(r + i) % n]
            c.samples.append(_time_calls(c, r, c.calls))
            progress.update(1)


def _collators(
    tokenizer: Any, *, include_hf: bool, num_threads: int | None, seed: int
) -> dict[str, Callable[[Any], Any]]:
    from lmobjectives.baselines import NumpyMLMCollator, hf_mlm_collator
    from lmobjectives.masking import MLMCollator

    out: dict[str, Callable[[Any], Any]] = {
        OURS_NP: MLMCollator(tokenizer, seed=seed, num_threads=num_threads),
    }
    if _has("torch"):
        out[OURS_PT] = MLMCollator(
            tokenizer, seed=seed, num_threads=num_threads, return_tensors="pt"
        )
    if include_hf and _has("torch") and _has("transformers"):
        out[HF_PT] = hf_mlm_collator(tokenizer, seed=seed)
    out[NUMPY] = NumpyMLMCollator(tokenizer, seed=seed)
    return out


def _dataloader_rows(
    tokenizer: Any,
    corpus: Any,
    *,
    batch_size: int,
    num_batches: int,
    epochs: int,
    workers: Sequence[int],
    include_hf: bool,
    num_threads: int | None,
    seed: int,
    progress: Any,
) -> list[BenchRow]:
    DataLoader = require("torch.utils.data").DataLoader

    from lmobjectives.baselines import hf_mlm_collator
    from lmobjectives.masking import MLMCollator

    examples = [
        ex
        for b in ragged_batches(
            corpus, batch_size=batch_size, num_batches=num_batches, seed=seed + 7
        )
        for ex in b
    ]
    dataset: Any = ExampleDataset(examples)  # map-style: __len__ and __getitem__
    tokens = sum(len(ex["input_ids"]) for ex in examples) / num_batches
    collators: dict[str, Callable[[Any], Any]] = {
        OURS_NP: MLMCollator(tokenizer, seed=seed, num_threads=num_threads, return_tensors="np"),
        OURS_PT: MLMCollator(tokenizer, seed=seed, num_threads=num_threads, return_tensors="pt"),
    }
    if include_hf and _has("transformers"):
        collators[HF_PT] = hf_mlm_collator(tokenizer, seed=seed)
    rows = []
    for w in workers:
        loaders: dict[str, Any] = {
            name: DataLoader(
                dataset,
                batch_size=batch_size,
                collate_fn=fn,
                num_workers=w,
                persistent_workers=w > 0,
            )
            for name, fn in collators.items()
        }
        contenders = [_Contender(name, lambda b: b, []) for name in loaders]
        for loader in loaders.values():  # warm-up epoch: starts the workers
            for _ in loader:
                pass
        for r in range(epochs):
            for i in range(len(contenders)):
                c = contenders[(r + i) % len(contenders)]
                t0 = time.perf_counter()
                n = sum(1 for _ in loaders[c.name])
                c.samples.append((time.perf_counter() - t0) / n)
                progress.update(1)
        del loaders  # shuts the persistent workers down
        rows += _rows(f"dataloader w={w}", contenders, batch_size, tokens, epochs)
        for row in rows[-len(contenders) :]:
            row.calls_per_round = num_batches
    return rows


def run_mlm_benchmark(
    corpus: Any = None,
    *,
    batch_size: int = 32,
    rounds: int | None = None,
    quick: bool = False,
    include_hf: bool = True,
    include_dataloader: bool = True,
    num_threads: int | None = None,
    progress: bool | None = None,
    seed: int = SEED,
) -> list[BenchRow]:
    """Measures MLM collation: lmobjectives against HF and the NumPy reference.

    Args:
        corpus: a :class:`~lmobjectives.corpus.TokenCorpus` (anything with ``ids`` and a
            ``tokenizer``); ``None`` loads :meth:`TokenCorpus.default`.
        batch_size: examples per batch.
        rounds: alternating rounds per workload (default 15, or 3 with ``quick``).
        quick: a run of a few seconds (tests, CI): short rounds, fewer batches.
        include_hf: measure ``DataCollatorForLanguageModeling`` (needs transformers + torch).
        include_dataloader: also measure through ``torch.utils.data.DataLoader`` with 0 and 2
            workers (needs torch).
        num_threads: threads per lmobjectives batch (default: all CPUs); when given, torch's
            intra-op threads are set to the same number for the run.
        progress: draw a progress bar (``None``: when stderr is a terminal).
        seed: the seed of every contender.

    Returns:
        One :class:`BenchRow` per (workload, contender). Contenders whose dependencies are
        missing are left out (see :func:`missing_contenders`).
    """
    from lmobjectives._progress import Progress

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    if rounds is None:
        rounds = 3 if quick else 15
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds: expected a positive int, got {rounds!r}")
    if num_threads is not None and (
        isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 0
    ):
        raise ValueError(f"num_threads: expected a non-negative int, got {num_threads!r}")
    if corpus is None:
        from lmobjectives.corpus import TokenCorpus

        corpus = TokenCorpus.default()
    target = 0.004 if quick else 0.1  # seconds per contender per round
    num_batches = 2 if quick else 8
    has_torch = _has("torch")
    include_dataloader = include_dataloader and has_torch
    dl_batches, dl_epochs = (4, 2) if quick else (32, max(3, rounds // 3))
    dl_workers = (0, 2)

    tokenizer = corpus.tokenizer
    workloads = make_workloads(corpus, batch_size=batch_size, num_batches=num_batches)
    collators = _collators(tokenizer, include_hf=include_hf, num_threads=num_threads, seed=seed)
    dl_contenders = 2 + int(include_hf and HF_PT in collators)
    total = len(workloads) * len(collators) * (rounds + 1)
    if include_dataloader:
        total += len(dl_workers) * dl_contenders * dl_epochs

    saved_threads = None
    if num_threads and has_torch:
        torch = require("torch")
        saved_threads = torch.get_num_threads()
        torch.set_num_threads(num_threads)
    rows: list[BenchRow] = []
    try:
        with Progress(total, "bench", unit="round", enabled=progress) as bar:
            for w in workloads:
                contenders = [
                    _Contender(name, fn, w.hf_batches if name == HF_PT else w.batches)
                    for name, fn in collators.items()
                ]
                for c in contenders:
                    _warm_up(c, target)
                    bar.update(1)
                _alternate(contenders, rounds, bar)
                rows += _rows(w.label, contenders, w.batch_size, float(np.mean(w.tokens)), rounds)
            if include_dataloader:
                rows += _dataloader_rows(
                    tokenizer,
                    corpus,
                    batch_size=batch_size,
                    num_batches=dl_batches,
                    epochs=dl_epochs,
                    workers=dl_workers,
                    include_hf=include_hf,
                    num_threads=num_threads,
                    seed=seed,
                    progress=bar,
                )
    finally:
        if saved_threads is not None:
            torch = require("torch")
            torch.set_num_threads(saved_threads)
    return rows


# -- other objectives: one generic same-run comparison ---------------------------------------


def compare(
    label: str,
    contenders: dict[str, tuple[Callable[[Any], Any], list[Any]]],
    *,
    tokens_per_batch: float,
    batch_size: int,
    rounds: int,
    quick: bool,
    progress: Any,
    vs_hf: str = HF_PT,
    vs_numpy: str = NUMPY,
) -> list[BenchRow]:
    """Times each contender on its own batches, alternating (A B C, B C A, …) for ``rounds``
    rounds; ratios are against the contender named ``vs_hf`` (default ``HF pt``) and
    ``vs_numpy`` (default ``NumPy``) when present."""
    target = 0.004 if quick else 0.1
    cs = [_Contender(name, fn, batches) for name, (fn, batches) in contenders.items()]
    for c in cs:
        _warm_up(c, target)
        progress.update(1)
    _alternate(cs, rounds, progress)
    return _rows(label, cs, batch_size, tokens_per_batch, rounds, vs_hf, vs_numpy)


def wwm_batches(
    corpus: Any, *, batch_size: int, num_batches: int, ragged: bool, seed: int = SEED + 2
) -> list[list[dict[str, Any]]]:
    """Examples as a fast tokenizer gives them for whole-word masking: ``input_ids``,
    ``special_tokens_mask`` and ``offset_mapping`` (which Hugging Face's whole-word path needs),
    from corpus text re-tokenized with ``[CLS] … [SEP]``; exactly 512 tokens per row, or
    128–512 when ``ragged``."""
    from lmobjectives.baselines import hf_tokenizer

    fast = hf_tokenizer(corpus.tokenizer)
    rng = np.random.default_rng(seed)
    ids, pos = _stream(corpus, rng)
    out = []
    for _ in range(num_batches):
        texts, lengths = [], []
        for _ in range(batch_size):
            n = int(rng.integers(MIN_LEN, MAX_LEN + 1)) if ragged else PADDED_LEN
            span = ids.take(np.arange(pos, pos + 2 * n), mode="wrap").tolist()
            pos = (pos + 2 * n) % ids.size
            texts.append(corpus.tokenizer.decode(span))
            lengths.append(n)
        batch = []
        for text, n in zip(texts, lengths, strict=True):
            enc = fast(
                text,
                truncation=True,
                max_length=n,
                return_offsets_mapping=True,
                return_special_tokens_mask=True,
            )
            batch.append({k: list(v) for k, v in enc.items() if k != "token_type_ids"})
        out.append(batch)
    return out


def run_wwm_benchmark(
    corpus: Any = None,
    *,
    batch_size: int = 32,
    rounds: int | None = None,
    quick: bool = False,
    include_hf: bool = True,
    progress: bool | None = None,
    seed: int = SEED,
) -> tuple[list[BenchRow], list[str]]:
    """Whole-word masking: lmobjectives (``unit="word"``, configured to do Hugging Face 5.x's
    job: each word with probability 0.15, all chosen tokens [MASK]) against
    ``DataCollatorForLanguageModeling(whole_word_mask=True)``, on rows of exactly 512 tokens
    (a 2-D array for us, dicts with ``offset_mapping`` for Hugging Face) and on ragged rows of
    128–512 given as dicts with ``special_tokens_mask`` (where Hugging Face fails). Returns rows
    and notes."""
    from lmobjectives._progress import Progress
    from lmobjectives.baselines import hf_tokenizer
    from lmobjectives.masking import MLMCollator

    corpus = _default_corpus(corpus)
    rounds = rounds or (3 if quick else 15)
    num_batches = 2 if quick else 4
    fast = hf_tokenizer(corpus.tokenizer)
    kw: dict[str, Any] = {
        "unit": "word",
        "exact_budget": False,
        "mask_replace_prob": 1.0,
        "random_replace_prob": 0.0,
        "seed": seed,
    }
    ours: dict[str, Callable[[Any], Any]] = {OURS_NP: MLMCollator(fast, **kw)}
    if _has("torch"):
        ours[OURS_PT] = MLMCollator(fast, return_tensors="pt", **kw)
    hf = None
    if include_hf and _has("torch") and _has("transformers"):
        DataCollatorForLanguageModeling = require("transformers").DataCollatorForLanguageModeling
        hf = DataCollatorForLanguageModeling(
            fast, whole_word_mask=True, mask_replace_prob=1.0, random_replace_prob=0.0, seed=seed
        )
    rows: list[BenchRow] = []
    notes: list[str] = []
    with Progress(2 * (len(ours) + 1) * (rounds + 1), "bench wwm", enabled=progress) as bar:
        for ragged in (False, True):
            batches = wwm_batches(
                corpus, batch_size=batch_size, num_batches=num_batches, ragged=ragged
            )
            # Each contender gets the form it is fastest with and that its users have: padded
            # rows as one 2-D array for lmobjectives (as in the MLM padded workload), the
            # fast tokenizer's dicts with offset_mapping for Hugging Face (which needs them).
            ours_batches: list[Any] = [
                [{k: v for k, v in ex.items() if k != "offset_mapping"} for ex in b]
                for b in batches
            ]
            if not ragged:
                ours_batches = [np.asarray([ex["input_ids"] for ex in b]) for b in batches]
            label = f"wwm-{'ragged' if ragged else 'padded'}-{batch_size}x" + (
                f"{MIN_LEN}-{MAX_LEN}" if ragged else f"{PADDED_LEN}"
            )
            contenders: dict[str, tuple[Callable[[Any], Any], list[Any]]] = {
                name: (fn, ours_batches) for name, fn in ours.items()
            }
            if hf is not None:
                try:
                    hf(batches[0])
                    contenders[HF_PT] = (hf, batches)
                except Exception as e:  # Hugging Face cannot pad offset_mapping
                    notes.append(f"{label}: {HF_PT} fails: {type(e).__name__}: {e}")
            tokens = float(np.mean([sum(len(ex["input_ids"]) for ex in b) for b in batches]))
            rows += compare(
                label,
                contenders,
                tokens_per_batch=tokens,
                batch_size=batch_size,
                rounds=rounds,
                quick=quick,
                progress=bar,
            )
    return rows, notes


def run_packing_benchmark(
    corpus: Any = None,
    *,
    batch_size: int = 32,
    rounds: int | None = None,
    quick: bool = False,
    include_hf: bool = True,
    progress: bool | None = None,
    seed: int = SEED,
) -> tuple[list[BenchRow], list[str]]:
    """Padding-free packing of ragged 128–512-token examples: lmobjectives'
    ``PackingCollator(layout="flat")`` against ``DataCollatorWithFlattening`` (same outputs),
    plus first-fit-decreasing rows of 512 (no Hugging Face counterpart). Returns rows and a
    note with the rows layout's packing efficiency."""
    from lmobjectives._progress import Progress
    from lmobjectives.packing import PackingCollator

    corpus = _default_corpus(corpus)
    rounds = rounds or (3 if quick else 15)
    num_batches = 2 if quick else 8
    batches = [
        [{"input_ids": ex["input_ids"]} for ex in b]
        for b in ragged_batches(corpus, batch_size=batch_size, num_batches=num_batches, seed=seed)
    ]
    contenders: dict[str, tuple[Callable[[Any], Any], list[Any]]] = {
        OURS_NP: (PackingCollator(layout="flat", pad_token_id=0), batches),
    }
    if _has("torch"):
        contenders[OURS_PT] = (
            PackingCollator(layout="flat", pad_token_id=0, return_tensors="pt"),
            batches,
        )
    if include_hf and _has("torch") and _has("transformers"):
        DataCollatorWithFlattening = require("transformers").DataCollatorWithFlattening
        contenders[HF_PT] = (DataCollatorWithFlattening(), batches)
    rows_packer = PackingCollator(max_length=PADDED_LEN, pad_token_id=0)
    contenders["lmobjectives rows (ffd)"] = (rows_packer, batches)
    tokens = float(np.mean([sum(len(ex["input_ids"]) for ex in b) for b in batches]))
    with Progress(len(contenders) * (rounds + 1), "bench packing", enabled=progress) as bar:
        rows = compare(
            f"pack-{batch_size}x{MIN_LEN}-{MAX_LEN}",
            contenders,
            tokens_per_batch=tokens,
            batch_size=batch_size,
            rounds=rounds,
            quick=quick,
            progress=bar,
        )
    notes = [f"rows (ffd) packing efficiency: {rows_packer.efficiency:.1%} of slots hold tokens"]
    return rows, notes


def run_pairs_benchmark(
    corpus: Any = None,
    *,
    batch_size: int = 32,
    rounds: int | None = None,
    quick: bool = False,
    include_hf: bool = True,
    progress: bool | None = None,
    seed: int = SEED,
) -> tuple[list[BenchRow], list[str]]:
    """NSP instances from the corpus: lmobjectives (Rust index, then batches through
    ``__getitems__`` and the :class:`~lmobjectives.MLMCollator` — ``batch_size`` instances per
    call as a DataLoader asks, or 1024 as an offline pass would) against Google BERT's
    pure-Python builder (:func:`~lmobjectives.baselines.google_pair_instances`), with and
    without masking. One call = one full pass over the same documents; "batches/s" counts
    passes/s and tokens/s real tokens. Notes give instances/s and the index of a 100M-token
    synthetic corpus (build time, peak memory vs the corpus size) unless ``quick``."""
    import random

    from lmobjectives._progress import Progress
    from lmobjectives.baselines import google_pair_instances
    from lmobjectives.corpus import TokenCorpus
    from lmobjectives.masking import MLMCollator
    from lmobjectives.pairs import SentencePairDataset

    corpus = _default_corpus(corpus)
    rounds = rounds or (3 if quick else 7)
    n_docs = min(corpus.num_documents, 60 if quick else 400)
    last_sentence = int(corpus.document_offsets[n_docs])
    end = int(corpus.sentence_offsets[last_sentence])
    sub = TokenCorpus(
        np.asarray(corpus.ids[:end]),
        np.asarray(corpus.sentence_offsets[: last_sentence + 1]),
        np.asarray(corpus.document_offsets[: n_docs + 1]),
        corpus.vocab_size,
        tokenizer=corpus.tokenizer,
    )
    documents = [[s.tolist() for s in sub.document_sentences(d)] for d in range(n_docs)]
    masker = MLMCollator(corpus.tokenizer, exact_budget=True, max_predictions=20, seed=seed)
    epochs = iter(range(1, 1 << 22))

    def ours(mask: bool, per_call: int) -> Callable[[Any], Any]:
        def one_pass(_: Any) -> int:
            ds = SentencePairDataset(sub, "nsp", seed=seed, epoch=next(epochs))
            n = len(ds)
            for start in range(0, n, per_call):
                batch = ds.__getitems__(range(start, min(n, start + per_call)))
                if mask:
                    masker(batch)
            return n

        return one_pass

    def google(mask: bool) -> Callable[[Any], Any]:
        rng = random.Random(seed)
        return lambda _: google_pair_instances(documents, rng=rng, masking=mask)

    big = 1024  # instances per call when generating a pass offline
    contenders: dict[str, tuple[Callable[[Any], Any], list[Any]]] = {
        f"{OURS_NP} +mask, {batch_size}/call": (ours(True, batch_size), [None]),
        f"{OURS_NP} +mask, {big}/call": (ours(True, big), [None]),
        f"{PYTHON} (Google) +mask": (google(True), [None]),
    }
    rows: list[BenchRow] = []
    probe = SentencePairDataset(sub, "nsp", seed=seed)
    count = len(probe)
    tokens = float(probe.__getitems__(range(count))["input_ids"].values.size)
    with Progress(6 * (rounds + 1), "bench pairs", enabled=progress) as bar:
        rows += compare(
            f"nsp-mlm-{n_docs}docs",
            contenders,
            tokens_per_batch=tokens,
            batch_size=count,
            rounds=rounds,
            quick=quick,
            progress=bar,
        )
        rows += compare(
            f"nsp-{n_docs}docs",
            {
                f"{OURS_NP}, {batch_size}/call": (ours(False, batch_size), [None]),
                f"{OURS_NP}, {big}/call": (ours(False, big), [None]),
                f"{PYTHON} (Google)": (google(False), [None]),
            },
            tokens_per_batch=tokens,
            batch_size=count,
            rounds=rounds,
            quick=quick,
            progress=bar,
        )
    notes = [
        f"{r.workload} {r.contender}: {r.batches_per_s * count:,.0f} instances/s" for r in rows
    ]
    if not quick:
        notes += [index_at_scale(100_000_000, seed=seed)]
    return rows, notes


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


def _default_corpus(corpus: Any) -> Any:
    if corpus is None:
        from lmobjectives.corpus import TokenCorpus

        corpus = TokenCorpus.default()
    return corpus


# -- the table ---------------------------------------------------------------------------------

COLUMNS = ("workload", "contender", "batches/s", "tokens/s", "vs HF", "vs NumPy")


def _si(x: float) -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def _ratio(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.1f}x" if x >= 10 else f"{x:.2f}x"


def _cells(row: BenchRow, python: bool = False) -> list[str]:
    cells = [
        row.workload,
        row.contender,
        f"{row.batches_per_s:,.1f}",
        _si(row.tokens_per_s),
        _ratio(row.ratio_vs_hf),
        _ratio(row.ratio_vs_numpy),
    ]
    return [*cells, _ratio(row.ratio_vs_python)] if python else cells


def format_table(rows: Sequence[BenchRow], markdown: bool = False) -> str:
    """The rows as an aligned text table, or as a GitHub Markdown table."""
    python = any(r.ratio_vs_python is not None for r in rows)
    columns = (*COLUMNS, "vs Python") if python else COLUMNS
    body = [_cells(r, python) for r in rows]
    right = [False, False, True, True, True, True] + ([True] if python else [])
    if markdown:
        lines = ["| " + " | ".join(columns) + " |"]
        lines.append("|" + "|".join("---:" if r else "---" for r in right) + "|")
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(c), *(len(cells[i]) for cells in body)) for i, c in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)
        ).rstrip()

    out = [line(columns), line(["-" * w for w in widths])]
    out += [line(cells) for cells in body]
    return "\n".join(out)
