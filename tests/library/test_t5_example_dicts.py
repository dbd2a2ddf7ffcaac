"""T5/UL2 on lists of example dicts, the ``datasets`` shape (issue 19): the batch is read in
one pass by the kernel (``SpanCorruptor.example_columns``) and its rows in place, and must
give the batch the general normaliser gives, bit for bit, for every form a row can take;
anything outside that form goes through the general normaliser; bad examples raise the
project's typed errors naming the example and key; a failed call leaves the stream where it
was."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import pytest

from lmobjectives import T5SpanCorruptionCollator, UL2Collator
from lmobjectives._collator import Collator
from lmobjectives._inputs import ExampleBatch
from lmobjectives.errors import ArgumentTypeError, InvalidArgumentError, TokenIdError

V, EOS, PAD = 1000, 1, 0
RAW = 568  # T5's raw length at input_length 512


def t5(**kw: Any) -> T5SpanCorruptionCollator:
    base: dict[str, Any] = {"vocab_size": V, "eos_token_id": EOS, "pad_token_id": PAD, "seed": 3}
    base.update(kw)
    return T5SpanCorruptionCollator(**base)


def ul2(**kw: Any) -> UL2Collator:
    base: dict[str, Any] = {"vocab_size": V, "eos_token_id": EOS, "pad_token_id": PAD, "seed": 3}
    base.update(kw)
    return UL2Collator(input_length=128, **base)


class General(T5SpanCorruptionCollator):
    """The same collator reading every batch through the general normaliser (the control
    the one-pass reading is compared with)."""

    def _normalize(self, examples: Any) -> Any:
        return Collator._normalize(self, examples)


def general(**kw: Any) -> General:
    base: dict[str, Any] = {"vocab_size": V, "eos_token_id": EOS, "pad_token_id": PAD, "seed": 3}
    base.update(kw)
    return General(**base)


def ids(n: int, width: int = RAW, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(5, 900, size=(n, width))


def equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a
    )


class Row(list):  # a list subclass
    pass


FORMS = {
    "int64": lambda r: np.asarray(r, dtype=np.int64),
    "int32": lambda r: np.asarray(r, dtype=np.int32),
    "uint16": lambda r: np.asarray(r, dtype=np.uint16),
    "int64-strided": lambda r: np.repeat(np.asarray(r, dtype=np.int64), 2)[::2],  # strided
    "list": list,
    "tuple": tuple,
    "list subclass": Row,
}


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("with_idx", [False, True])
def test_dicts_equal_the_general_path_and_the_array_path(form: str, with_idx: bool) -> None:
    rows = ids(6)
    make = FORMS[form]
    examples = [
        {"input_ids": make(r.tolist()), **({"idx": 10 + i} if with_idx else {})}
        for i, r in enumerate(rows)
    ]
    fast, slow = t5(), general()
    assert fast._kernel.example_columns(examples) is not None  # read in one pass
    for epoch in range(2):  # two batches: the batch index advances alike
        fast.set_epoch(epoch, batch_index=epoch)
        slow.set_epoch(epoch, batch_index=epoch)
        assert equal(fast(examples), slow(examples))
    # The same rows as one array (keyed by batch and row) or as columns with the same idx.
    columns: Any = ExampleBatch({"input_ids": rows, "idx": np.arange(10, 16, dtype=np.uint64)})
    assert equal(t5()(examples), t5()(columns if with_idx else rows))
    # Control: another seed gives another batch.
    assert not equal(t5()(examples), t5(seed=4)(examples))


def test_attention_masks_and_unused_keys_read_as_the_general_path_does() -> None:
    rows = ids(5, 40)
    masks = np.ones_like(rows)
    masks[1, :7] = 0  # left padding
    masks[3, 30:] = 0  # right padding
    examples = [
        {
            "input_ids": r,
            "attention_mask": m,
            "special_tokens_mask": np.zeros_like(r),
            "token_type_ids": [0] * len(r),
        }
        for r, m in zip(rows, masks, strict=True)
    ]
    got = t5()(examples)
    assert equal(got, general()(examples))
    assert got["attention_mask"][3].sum() < got["attention_mask"][0].sum()
    # An all-ones mask as lists (a tokenizer's) changes nothing.
    plain = [{"input_ids": r, "attention_mask": [1] * len(r)} for r in rows]
    assert equal(t5()(plain), t5()(rows))


@pytest.mark.parametrize(
    "examples",
    [
        [{"input_ids": ids(1)[0], "idx": np.int64(4)}],  # a NumPy int idx
        [{"input_ids": ids(1)[0], "idx": 4, "next_sentence_label": 1}],  # a label column
        [{"input_ids": ids(1)[0]}, OrderedDict(input_ids=ids(1)[0])],  # another mapping
        [{"input_ids": ids(1)[0], "idx": 2**64 - 1}],  # the largest idx
    ],
)
def test_other_forms_still_work(examples: list[dict[str, Any]]) -> None:
    assert equal(t5()(examples), general()(examples))


def test_only_the_plain_form_is_read_in_one_pass() -> None:
    kernel = t5()._kernel
    row = ids(1)[0]
    assert kernel.example_columns([{"input_ids": row}]) is not None
    for other in ([], [row], [{"idx": 1}], [{"input_ids": row, "idx": np.int64(4)}]):
        assert kernel.example_columns(other) is None


def test_ul2_reads_dicts_alike() -> None:
    rows = ids(8, 100)
    examples = [{"input_ids": r, "idx": i} for i, r in enumerate(rows)]
    columns: Any = ExampleBatch({"input_ids": rows, "idx": np.arange(8, dtype=np.uint64)})
    assert equal(ul2()(examples), ul2()(columns))


def test_any_thread_count_gives_the_same_batch() -> None:
    # 64 rows of 568 tokens: enough work for the kernel to use two threads.
    examples = [{"input_ids": r, "idx": i} for i, r in enumerate(ids(64))]
    one = t5(num_threads=1)(examples)
    assert equal(one, t5(num_threads=2)(examples))
    assert equal(one, t5(num_threads=0)(examples))


def good(n: int = 6) -> list[dict[str, Any]]:
    return [{"input_ids": r, "idx": i} for i, r in enumerate(ids(n, 50))]


def with_item(i: int, item: Any) -> list[Any]:
    examples: list[Any] = good()
    examples[i] = item
    return examples


def with_row(i: int, row: Any) -> list[Any]:
    return with_item(i, {"input_ids": row, "idx": i})


BAD = [
    ("non-dict", with_item(4, [5, 6, 7]), ArgumentTypeError, r"examples\[4\]"),
    ("missing key", with_item(2, {"idx": 2}), InvalidArgumentError, r"examples\[2\]"),
    (
        "no input_ids at all",
        [{"idx": 0}, {"idx": 1}],
        InvalidArgumentError,
        r"examples\[0\]: missing the 'input_ids'",
    ),
    ("unknown key", with_item(0, {"input_ids": [5], "idx": 0, "x": 1}), InvalidArgumentError, "x"),
    (
        "float row",
        with_row(3, np.full(50, 7.0)),
        ArgumentTypeError,
        r"examples\[3\]\['input_ids'\].*float64",
    ),
    (
        "2-D row",
        with_row(1, np.full((2, 25), 7)),
        InvalidArgumentError,
        r"examples\[1\]\['input_ids'\].*2-D",
    ),
    (
        "str token",
        with_row(5, [5, "a", 7]),
        ArgumentTypeError,
        r"examples\[5\]\['input_ids'\]\[1\]",
    ),
    (
        "negative idx",
        with_item(2, {"input_ids": [5], "idx": -1}),
        InvalidArgumentError,
        r"idx\[2\]",
    ),
    ("bool idx", with_item(3, {"input_ids": [5], "idx": True}), ArgumentTypeError, r"idx\[3\]"),
    ("id out of range", with_row(2, [5, V, 7]), TokenIdError, r"row 2"),
    ("empty row", with_row(0, []), InvalidArgumentError, r"row 0 is empty"),
    (
        "2-D mask row",
        [{"input_ids": np.full(5, 7), "attention_mask": np.ones((1, 5), dtype=np.int64)}],
        InvalidArgumentError,
        r"examples\[0\]\['attention_mask'\].*2-D",
    ),
    (
        "bad row and bad mask: the row is named",
        [{"input_ids": np.full(5, 7.0), "attention_mask": np.ones((1, 5), dtype=np.int64)}],
        ArgumentTypeError,
        r"examples\[0\]\['input_ids'\]",
    ),
    (
        "misaligned mask",
        [{"input_ids": [5, 6, 7], "attention_mask": [1, 1]}],
        ValueError,
        r"attention_mask.*row 0",
    ),
]


@pytest.mark.parametrize(("name", "examples", "exc", "match"), BAD, ids=[b[0] for b in BAD])
def test_bad_examples_raise_typed_errors_naming_the_position(
    name: str, examples: list[Any], exc: type[Exception], match: str
) -> None:
    c = t5()
    before = [dict(ex) if isinstance(ex, dict) else ex for ex in examples]
    with pytest.raises(exc, match=match):
        c(examples)
    # Inputs untouched, and the failed call gave its batch number back.
    assert all(
        (a is b) or (isinstance(a, dict) and a.keys() == b.keys())
        for a, b in zip(before, examples, strict=True)
    )
    assert c.state_dict()["batch_index"] == 0
    assert equal(c(good()), t5()(good()))
