"""What the collation benchmarks (MLM, whole-word, packing, pairs, T5, BART) share: batches cut
deterministically from a :class:`~lmobjectives.corpus.TokenCorpus`, the contender names, the
table they are shown in, and the contenders a missing package leaves out.

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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmobjectives._optional import require
from lmobjectives.lab.bench.runner import SEED, Column, Table, has, ratio_x, si

__all__ = [
    "BATCH_SIZE",
    "COLLATION_TABLE",
    "HF_PT",
    "MAX_LEN",
    "MIN_LEN",
    "NUMPY",
    "OURS_NP",
    "OURS_PT",
    "PADDED_LEN",
    "PYTHON",
    "REFERENCES",
    "SEED",
    "ExampleDataset",
    "Workload",
    "default_corpus",
    "make_workloads",
    "missing_contenders",
    "padded_batches",
    "ragged_batches",
    "tokens_per_batch",
    "wwm_batches",
]

#: Contender names, in table order.
OURS_NP = "lmobjectives np"
OURS_PT = "lmobjectives pt"
HF_PT = "HF pt"
NUMPY = "NumPy"
PYTHON = "Python"

BATCH_SIZE = 32
MIN_LEN, MAX_LEN = 128, 512
PADDED_LEN = 512

#: The ratio columns of the collation table and the contenders they divide by.
REFERENCES = {"vs HF": HF_PT, "vs NumPy": NUMPY}


def _ratio(column: str) -> Column:
    return Column(column, lambda r: ratio_x(r.ratios.get(column)), optional=column == "vs Python")


#: The table of every collation benchmark.
COLLATION_TABLE = Table(
    columns=(
        Column("workload", lambda r: r.workload, right=False),
        Column("contender", lambda r: r.contender, right=False),
        Column("batches/s", lambda r: f"{r.rate():,.1f}"),
        Column("tokens/s", lambda r: si(r.rate("tokens"))),
        _ratio("vs HF"),
        _ratio("vs NumPy"),
        _ratio("vs Python"),
    ),
    legend="batches/s, tokens/s: median over alternating rounds; vs HF = t_HF / t (same round), "
    "> 1 is faster than Hugging Face (likewise vs NumPy, vs Python).",
)


def tokens_per_batch(batches: Sequence[Any]) -> float:
    """Mean real tokens per batch of examples with ``input_ids``."""
    return float(np.mean([sum(len(ex["input_ids"]) for ex in b) for b in batches]))


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
    if has("torch"):
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


def wwm_batches(
    corpus: Any, *, batch_size: int, num_batches: int, ragged: bool, seed: int = SEED + 2
) -> list[list[dict[str, Any]]]:
    """Examples as a fast tokenizer gives them for whole-word masking: ``input_ids``,
    ``special_tokens_mask`` and ``offset_mapping`` (which Hugging Face's whole-word path needs),
    from corpus text re-tokenized with ``[CLS] … [SEP]``; exactly 512 tokens per row, or
    128–512 when ``ragged``."""
    from lmobjectives.lab.baselines.huggingface import hf_tokenizer

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


class ExampleDataset:
    """A map-style dataset over a list of examples (what ``DataLoader`` indexes)."""

    def __init__(self, examples: Sequence[Any]) -> None:
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Any:
        return self.examples[i]


def default_corpus(corpus: Any) -> Any:
    """``corpus``, or the embedded one (:meth:`TokenCorpus.default`) when it is ``None``."""
    if corpus is None:
        from lmobjectives.corpus import TokenCorpus

        corpus = TokenCorpus.default()
    return corpus


def missing_contenders(*, include_hf: bool = True, include_dataloader: bool = True) -> list[str]:
    """The collation contenders a missing ``torch``/``transformers`` leaves out, one line each
    (empty when nothing is skipped): ``lmobjectives pt``, ``HF pt`` (with ``include_hf``) and
    the DataLoader run (with ``include_dataloader``)."""
    has_torch, has_transformers = has("torch"), has("transformers")
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
