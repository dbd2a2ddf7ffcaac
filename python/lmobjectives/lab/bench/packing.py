"""The packing benchmark (``lmobjectives bench --objective packing``): padding-free packing of
ragged 128–512-token examples, lmobjectives' ``PackingCollator(layout="flat")`` against Hugging
Face's ``DataCollatorWithFlattening`` (same outputs), plus first-fit-decreasing rows of 512 (no
Hugging Face counterpart)."""

from __future__ import annotations

from typing import Any

from lmobjectives._optional import require
from lmobjectives.lab.bench.runner import Case, Contender, Plan, Settings, has
from lmobjectives.lab.bench.workloads import (
    COLLATION_TABLE,
    HF_PT,
    MAX_LEN,
    MIN_LEN,
    OURS_NP,
    OURS_PT,
    PADDED_LEN,
    REFERENCES,
    default_corpus,
    missing_contenders,
    ragged_batches,
    tokens_per_batch,
)

__all__ = ["packing_plan"]


def packing_plan(corpus: Any, s: Settings) -> Plan:
    """One case, ``pack-32x128-512``; a note gives the rows layout's packing efficiency."""
    from lmobjectives.packing import PackingCollator

    corpus = default_corpus(corpus)
    batches = [
        [{"input_ids": ex["input_ids"]} for ex in b]
        for b in ragged_batches(
            corpus, batch_size=s.batch_size, num_batches=2 if s.quick else 8, seed=s.seed
        )
    ]
    contenders = [Contender(OURS_NP, PackingCollator(layout="flat", pad_token_id=0), batches)]
    if has("torch"):
        flat_pt = PackingCollator(layout="flat", pad_token_id=0, return_tensors="pt")
        contenders.append(Contender(OURS_PT, flat_pt, batches))
    if s.include_hf and has("torch") and has("transformers"):
        DataCollatorWithFlattening = require("transformers").DataCollatorWithFlattening
        contenders.append(Contender(HF_PT, DataCollatorWithFlattening(), batches))
    rows_packer = PackingCollator(max_length=PADDED_LEN, pad_token_id=0)
    contenders.append(Contender("lmobjectives rows (ffd)", rows_packer, batches))
    case = Case(
        f"pack-{s.batch_size}x{MIN_LEN}-{MAX_LEN}",
        contenders,
        s.rounds_or(15),
        batch_size=s.batch_size,
        per_batch={"tokens": tokens_per_batch(batches)},
        references=REFERENCES,
        target=s.target,
    )

    def notes(rows: Any, results: Any) -> list[str]:
        return [f"rows (ffd) packing efficiency: {rows_packer.efficiency:.1%} of slots hold tokens"]

    skipped = missing_contenders(include_hf=s.include_hf, include_dataloader=False)
    return Plan("packing", [case], COLLATION_TABLE, skipped=skipped, finish=notes)
