"""The tokenizer's examples as ``run_mlm.py`` hands them over — a list of dicts of lists with
``input_ids`` and optionally ``attention_mask`` / ``special_tokens_mask`` — are read by the
kernel in one pass (``MlmMasker.mask_examples``, issue 19). The batches are bit-identical to
the general path's, every form the fast path does not take falls back to the general path
(which accepts or names it), and bad items still raise the same typed errors, naming the
argument and position."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lmobjectives import MLMCollator
from lmobjectives._inputs import normalize
from lmobjectives.errors import ShapeError, TokenIdError

from conftest import CLS, MASK, PAD, SEP, VOCAB

SPECIALS = [PAD, CLS, SEP, MASK]
KEYS = ("input_ids", "attention_mask", "special_tokens_mask")


def _examples(n: int, seed: int, keys: tuple[str, ...] = KEYS) -> list[dict[str, Any]]:
    g = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        row = [CLS, *g.integers(5, VOCAB, size=int(g.integers(3, 40))).tolist(), SEP]
        ex = {
            "input_ids": row,
            "attention_mask": [1] * len(row),
            "special_tokens_mask": [int(t in (CLS, SEP)) for t in row],
        }
        out.append({k: ex[k] for k in keys})
    return out


def _mlm(unit: str = "word", **kw: Any) -> MLMCollator:
    return MLMCollator(
        vocab_size=VOCAB, mask_token_id=MASK, pad_token_id=PAD, special_token_ids=SPECIALS,
        unit=unit, word_starts=np.arange(VOCAB) % 3 == 0, seed=7, **kw,
    )  # fmt: skip


def _general(collate: MLMCollator, examples: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The same batch through the general path: the rows as normalised Python lists in a
    mapping, which the fast path never takes."""
    rows = normalize(examples)
    batch = {k: getattr(rows, k) for k in KEYS if getattr(rows, k) is not None}
    return collate(batch)


def _equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


def _kernel_args() -> dict[str, Any]:
    return {"seed": 1, "epoch": 0, "batch_index": 0}


@pytest.mark.parametrize("unit", ["token", "word", "span", "ngram"])
@pytest.mark.parametrize(
    "keys",
    [KEYS, ("input_ids",), ("input_ids", "special_tokens_mask"), ("attention_mask", "input_ids")],
)
def test_plain_examples_equal_the_general_path(unit: str, keys: tuple[str, ...]) -> None:
    examples = _examples(9, seed=1, keys=keys)
    fast = _mlm(unit)(examples)
    _equal(fast, _general(_mlm(unit), examples))
    assert (fast["labels"] != -100).any()  # something was masked
    # control: another seed gives another batch (the comparison can fail)
    other = MLMCollator(
        vocab_size=VOCAB, mask_token_id=MASK, pad_token_id=PAD, special_token_ids=SPECIALS,
        unit=unit, word_starts=np.arange(VOCAB) % 3 == 0, seed=8,
    )(examples)  # fmt: skip
    assert not np.array_equal(other["labels"], fast["labels"])


@pytest.mark.parametrize(
    "kw",
    [
        {"dtype": "int32"},
        {"padding_side": "left", "pad_to_multiple_of": 8},
        {"max_length": 16, "truncation": True},
        {"max_length": 48, "padding": "max_length"},
        {"exact_budget": False, "mask_replace_prob": 1.0, "random_replace_prob": 0.0},
        {"replace_by": "token"},
    ],
)
def test_plain_examples_follow_every_option(kw: dict[str, Any]) -> None:
    examples = _examples(7, seed=2)
    _equal(_mlm(**kw)(examples), _general(_mlm(**kw), examples))


def test_a_real_attention_mask_and_special_tokens_mask_are_kept() -> None:
    examples = _examples(6, seed=3)
    for ex in examples:
        n = len(ex["input_ids"])
        ex["attention_mask"] = [1] * (n - 2) + [0, 0]
        ex["special_tokens_mask"][1] = 1  # an ordinary id the tokenizer calls special
    fast = _mlm("token", mlm_probability=0.9)(examples)
    _equal(fast, _general(_mlm("token", mlm_probability=0.9), examples))
    for r, ex in enumerate(examples):
        n = len(ex["input_ids"])
        assert fast["attention_mask"][r, n - 2 : n].tolist() == [0, 0]
        assert fast["labels"][r, 1] == -100 and fast["labels"][r, n - 2 : n].tolist() == [-100] * 2
    # control: without the masks those positions are masked (p = 0.9)
    bare = _mlm("token", mlm_probability=0.9)([{"input_ids": ex["input_ids"]} for ex in examples])
    assert (bare["labels"][:, 1] != -100).any()


def test_the_kernel_takes_plain_examples_and_declines_everything_else() -> None:
    masker = _mlm()._masker
    plain = _examples(4, seed=4)
    assert masker.mask_examples(plain, **_kernel_args()) is not None  # control
    reordered = [dict(reversed(list(ex.items()))) for ex in plain]  # same keys, other order
    assert masker.mask_examples(reordered, **_kernel_args()) is not None

    class Sub(list):
        pass

    declined: list[Any] = [
        tuple(plain),
        [],
        [plain[0]["input_ids"]],
        [dict(plain[0], idx=0)],
        [{k: v for k, v in plain[0].items() if k != "input_ids"}],
        [plain[0], {k: v for k, v in plain[1].items() if k != "attention_mask"}],
        [plain[0], dict(plain[1], token_type_ids=[0] * len(plain[1]["input_ids"]))],
        [plain[0], plain[1]["input_ids"]],
        [plain[0], dict(plain[1], input_ids=tuple(plain[1]["input_ids"]))],
        [plain[0], dict(plain[1], input_ids=np.asarray(plain[1]["input_ids"]))],
        [plain[0], dict(plain[1], special_tokens_mask=Sub(plain[1]["special_tokens_mask"]))],
    ]
    for i, examples in enumerate(declined):
        assert masker.mask_examples(examples, **_kernel_args()) is None, i
    # ... and the collator still takes the forms that are valid, through the general path
    _equal(_mlm()(tuple(plain)), _mlm()(plain))
    for examples in declined[8:]:
        _equal(_mlm()(examples), _mlm()(plain[:2]))


def _bad(defect: str) -> list[dict[str, Any]]:
    examples = _examples(4, seed=5)
    ex = examples[2]
    if defect == "float id":
        ex["input_ids"][3] = 3.0
    elif defect == "str id":
        ex["input_ids"][3] = "x"
    elif defect == "huge id":
        ex["input_ids"][3] = 2**70
    elif defect == "out of range id":
        ex["input_ids"][3] = VOCAB
    elif defect == "negative id":
        ex["input_ids"][3] = -1
    elif defect == "float mask":
        ex["special_tokens_mask"][3] = 1.0
    elif defect == "ragged special_tokens_mask":
        ex["special_tokens_mask"] = ex["special_tokens_mask"][:-1]
    elif defect == "ragged attention_mask":
        ex["attention_mask"] = ex["attention_mask"] + [1]
    elif defect == "str row":
        ex["input_ids"] = "abc"
    elif defect == "missing key":
        del ex["special_tokens_mask"]
    elif defect == "extra key":
        ex["labels"] = [0]
    elif defect == "non-dict item":
        examples[2] = ex["input_ids"]  # type: ignore[call-overload]
    return examples


@pytest.mark.parametrize(
    ("defect", "error", "match"),
    [
        ("float id", TypeError, r"examples\[2\]\['input_ids'\]\[3\]: expected an integer"),
        ("str id", TypeError, r"examples\[2\]\['input_ids'\]\[3\]: expected an integer"),
        ("huge id", TypeError, r"examples\[2\]\['input_ids'\]\[3\]: expected an integer"),
        ("out of range id", TokenIdError, r"input_ids: token id 1000 at row 2, position 3"),
        ("negative id", TokenIdError, r"input_ids: token id -1 at row 2, position 3"),
        ("float mask", TypeError, r"examples\[2\]\['special_tokens_mask'\]\[3\]"),
        ("ragged special_tokens_mask", ShapeError, r"special_tokens_mask: row 2 has length"),
        ("ragged attention_mask", ShapeError, r"attention_mask: row 2 has length"),
        ("str row", TypeError, r"examples\[2\]\['input_ids'\]: expected a list of ints"),
        ("missing key", ValueError, r"examples\[2\]: keys .* differ from examples\[0\]'s"),
        ("extra key", ValueError, r"examples\[2\]: keys .* differ from examples\[0\]'s"),
        ("non-dict item", TypeError, r"examples\[2\]: expected a mapping like examples\[0\]"),
    ],
)
def test_bad_items_raise_typed_errors_naming_the_position(
    defect: str, error: type[Exception], match: str
) -> None:
    collate, reference = _mlm(), _mlm()
    reference(_examples(4, seed=5))
    second = reference(_examples(4, seed=5))
    collate(_examples(4, seed=5))  # control: the batch without the defect is fine
    with pytest.raises(error, match=match):
        collate(_bad(defect))
    # A failed batch does not advance the stream: the next good batch is the second one.
    _equal(collate(_examples(4, seed=5)), second)


def test_inputs_are_not_mutated() -> None:
    examples = _examples(5, seed=6)
    before = [{k: list(v) for k, v in ex.items()} for ex in examples]
    _mlm()(examples)
    assert examples == before
