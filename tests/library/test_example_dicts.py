"""Lists of example dicts (the ``run_mlm.py`` shape) against the same rows as one array
(issue 19): bit-identical batches for the same seed, through every way a row can come (list,
list subclass, tuple, 1-D array), with a tokenizer's all-ones ``attention_mask`` (which the
bindings skip) and with a real one (which they keep)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lmobjectives import MLMCollator, T5SpanCorruptionCollator

from conftest import CLS, MASK, PAD, SEP, VOCAB

SPECIALS = [PAD, CLS, SEP, MASK]


class Row(list):  # a list subclass (shares list's layout)
    pass


def _rows(n: int, width: int, seed: int) -> np.ndarray:
    g = np.random.default_rng(seed)
    ids = g.integers(5, VOCAB, size=(n, width))
    ids[:, 0], ids[:, -1] = CLS, SEP
    return ids


def _dicts(ids: np.ndarray, form: str) -> list[dict[str, Any]]:
    make = {"list": list, "subclass": Row, "tuple": tuple, "array": np.asarray}[form]
    out = []
    for row in ids.tolist():
        special = [int(t in (CLS, SEP)) for t in row]
        out.append(
            {
                "input_ids": make(row),
                "attention_mask": make([1] * len(row)),
                "special_tokens_mask": make(special),
            }
        )
    return out


def _mlm(unit: str) -> MLMCollator:
    return MLMCollator(
        vocab_size=VOCAB, mask_token_id=MASK, pad_token_id=PAD, special_token_ids=SPECIALS,
        unit=unit, word_starts=np.arange(VOCAB) % 3 == 0, seed=11,
    )  # fmt: skip


def _equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


@pytest.mark.parametrize("form", ["list", "subclass", "tuple", "array"])
@pytest.mark.parametrize("unit", ["token", "word"])
def test_mlm_on_example_dicts_equals_the_array_path(form: str, unit: str) -> None:
    ids = _rows(12, 40, seed=1)
    from_array = _mlm(unit)(ids)
    from_dicts = _mlm(unit)(_dicts(ids, form))
    _equal(from_array, from_dicts)
    assert (from_dicts["labels"] != -100).any()  # something was masked


def test_a_real_attention_mask_is_kept() -> None:
    # Zeros in the mask trim those tokens: the same batch as the rows without them.
    ids = _rows(6, 30, seed=2)
    examples = _dicts(ids, "list")
    short = [ex["input_ids"][:20] for ex in examples]
    for ex in examples:
        ex["attention_mask"] = [1] * 20 + [0] * 10
    t5 = {
        "vocab_size": VOCAB + 120, "eos_token_id": SEP, "pad_token_id": PAD,
        "decoder_start_token_id": PAD, "input_length": 24, "seed": 4, "truncation": True,
    }  # fmt: skip
    kept = T5SpanCorruptionCollator(**t5)(
        [{k: ex[k] for k in ("input_ids", "attention_mask")} for ex in examples]
    )
    trimmed = T5SpanCorruptionCollator(**t5)(short)
    full = T5SpanCorruptionCollator(**t5)(ids[:, :30])
    _equal(kept, trimmed)
    assert kept["input_ids"].shape != full["input_ids"].shape or not np.array_equal(
        kept["input_ids"], full["input_ids"]
    )  # control: ignoring the mask would differ


@pytest.mark.parametrize("form", ["list", "array"])
def test_t5_on_example_dicts_equals_the_array_path(form: str) -> None:
    ids = _rows(8, 28, seed=3)
    t5 = {
        "vocab_size": VOCAB + 120, "eos_token_id": SEP, "pad_token_id": PAD,
        "decoder_start_token_id": PAD, "input_length": 26, "seed": 5,
    }  # fmt: skip
    examples = [{k: ex[k] for k in ("input_ids", "attention_mask")} for ex in _dicts(ids, form)]
    _equal(T5SpanCorruptionCollator(**t5)(ids), T5SpanCorruptionCollator(**t5)(examples))


def test_mlm_errors_still_name_the_item() -> None:
    examples = _dicts(_rows(3, 10, seed=4), "list")
    examples[1]["input_ids"][4] = "x"
    with pytest.raises(TypeError, match=r"examples\[1\]\['input_ids'\]\[4\]"):
        _mlm("token")(examples)
    examples = _dicts(_rows(3, 10, seed=4), "list")
    examples[2]["special_tokens_mask"][3] = 2.5
    with pytest.raises(TypeError, match=r"examples\[2\]\['special_tokens_mask'\]\[3\]"):
        _mlm("token")(examples)
