"""Regression tests for issue 15: explicit limits before allocating, nothing wraps, no panic.

The risky calls run in a subprocess under a 2 GiB address-space cap (``RLIMIT_AS``): an abort
("memory allocation of N bytes failed") or a panic fails the test instead of killing pytest,
and a call that tried to allocate gigabytes would hit the cap.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import lmobjectives
from lmobjectives import errors

CAP_BYTES = 2 << 30

RUNNER = """
import resource, sys, traceback
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
import numpy as np
import lmobjectives
from lmobjectives import errors
try:
{body}
except BaseException as e:
    print("RAISED", type(e).__module__, type(e).__name__, str(e)[:300], sep="|")
else:
    print("RETURNED")
"""


def run_capped(body: str) -> tuple[str, str, str]:
    """Runs ``body`` under the memory cap; returns ``(outcome line, exception class, message)``."""
    code = RUNNER.format(cap=CAP_BYTES, body=textwrap.indent(textwrap.dedent(body), "    "))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"the process died ({proc.returncode}): {proc.stderr[-2000:]}"
    assert "panicked" not in proc.stderr and "backtrace" not in proc.stderr.lower(), proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    if line == "RETURNED":
        return line, "", ""
    _, _module, name, message = line.split("|", 3)
    return "RAISED", name, message


T5 = "lmobjectives.T5SpanCorruptionCollator(vocab_size=32128, eos_token_id=1, pad_token_id=0{})"
UL2 = "lmobjectives.UL2Collator(vocab_size=32128, eos_token_id=1, pad_token_id=0{})"
BART = (
    "lmobjectives.BartDenoisingCollator(vocab_size=1000, bos_token_id=0, eos_token_id=2, "
    "pad_token_id=1, mask_token_id=3{})"
)
MLM = "lmobjectives.MLMCollator(vocab_size=1000, mask_token_id=4, pad_token_id=0{})"
CONTRASTIVE = "lmobjectives.ContrastivePairCollator(vocab_size=1000, pad_token_id=0{})"
ROWS = "[list(range(5, 25)), list(range(30, 42))]"


HUGE_PADDING = (
    [
        (make.format(f", pad_to_multiple_of={m}"), ("pad_to_multiple_of",))
        for make in (T5, UL2, BART, MLM, CONTRASTIVE)
        for m in ("2**62", "2**35")
    ]
    + [
        (MLM.format(f", max_length={m}, padding='max_length'"), ("max_length",))
        for m in ("2**35", "2**35 + 1", "2**31 - 1")
    ]
    + [
        (CONTRASTIVE.format(f", max_length={m}, padding='max_length'"), ("max_length",))
        for m in ("2**35", "2**31 - 1")
    ]
    + [(T5.format(", input_length=2**35"), ("input_length", "inputs_length"))]
    # UL2 needs one sentinel per span: a long input_length asks for more sentinels than the
    # vocabulary holds (it once built that many ids first: seconds and gigabytes).
    + [
        (UL2.format(f", input_length={n}"), ("num_sentinels", "input_length", "inputs_length"))
        for n in ("10**6", "2**30", "2**33")
    ]
)


@pytest.mark.parametrize(("make", "named"), HUGE_PADDING)
def test_huge_sizes_fail_cleanly_before_allocating(make, named):
    outcome, cls, message = run_capped(f"{make}({ROWS})")
    assert outcome == "RAISED"
    assert cls in ("InvalidArgumentError", "LimitError"), (cls, message)
    assert message.split(":")[0] in named, message


def test_pack_sequences_max_length_near_2_31():
    outcome, cls, message = run_capped(
        "lmobjectives.pack_sequences([[1, 2, 3]], max_length=2**31 - 1)"
    )
    assert (outcome, cls) == ("RAISED", "LimitError"), message
    assert message.startswith("max_length")


@pytest.mark.parametrize(
    ("lengths", "num_rollouts"),
    [([2**40], 2**30), ([2**33, 2**33], 16), ([3] * 4, 2**62)],
)
def test_rollout_plan_huge(lengths, num_rollouts):
    outcome, cls, message = run_capped(f"lmobjectives.rl.rollout_plan({lengths}, {num_rollouts})")
    assert (outcome, cls) == ("RAISED", "LimitError"), message


def test_mlm_vocab_size_huge_does_not_allocate():
    outcome, cls, message = run_capped(
        "lmobjectives.MLMCollator(vocab_size=2**31 - 1, mask_token_id=4, pad_token_id=0)"
    )
    assert (outcome, cls) == ("RAISED", "LimitError"), message
    assert message.startswith("vocab_size")


def test_mining_range_min_huge():
    outcome, cls, message = run_capped(
        """
        rng = np.random.default_rng(0)
        c = rng.standard_normal((20, 8)).astype(np.float32)
        lmobjectives.mine_hard_negatives(c[:4], c, [[0], [1], [2], [3]], range_min=2**60)
        """
    )
    # No candidate lies that deep: either a clean error naming range_min or a (negative-less)
    # result, never an allocation sized by range_min.
    assert outcome == "RETURNED" or (cls == "InvalidArgumentError" and "range_min" in message)


# -- nothing wraps --------------------------------------------------------------------------


def test_pack_int32_never_wraps():
    with pytest.raises(errors.InvalidArgumentError, match=r"^input_ids\[0\]\[1\]: .*int32"):
        lmobjectives.pack_sequences([[1, 2**40]], max_length=4, dtype="int32")
    with pytest.raises(errors.InvalidArgumentError, match=r"^token_type_ids\[0\]\[0\]"):
        lmobjectives.pack_sequences(
            [{"input_ids": [1, 2], "token_type_ids": [2**40, 0]}], max_length=4, dtype="int32"
        )


def test_pack_rejects_negative_and_out_of_vocabulary_ids():
    with pytest.raises(errors.InvalidArgumentError, match=r"^input_ids\[1\]\[0\]: value -3"):
        lmobjectives.pack_sequences([[1, 2], [-3]], max_length=4)
    with pytest.raises(errors.TokenIdError, match="input_ids"):
        lmobjectives.pack_sequences([[1, 2], [7]], max_length=4, vocab_size=5)
    ok = lmobjectives.pack_sequences([[1, 2], [4]], max_length=4, vocab_size=5)
    assert ok["input_ids"].tolist() == [[1, 2, 4, 0]]


def test_uint64_ids_at_or_above_2_63_are_rejected_not_clamped():
    ids = np.array([[1, 2**63]], dtype=np.uint64)
    with pytest.raises(errors.InvalidArgumentError, match=r"input_ids\[0\]\[1\]"):
        lmobjectives.pack_sequences(ids, max_length=4)


@pytest.mark.parametrize("overflow", ["truncate", "split"])
def test_flat_packing_never_exceeds_max_length(overflow):
    with pytest.raises(errors.InvalidArgumentError, match=r"^max_length"):
        lmobjectives.pack_sequences(
            [[1] * 6, [2] * 6], max_length=8, layout="flat", overflow=overflow
        )
    fine = lmobjectives.pack_sequences([[1] * 3], max_length=8, layout="flat", overflow=overflow)
    assert fine["input_ids"].shape[1] <= 8
    if overflow == "truncate":
        cut = lmobjectives.pack_sequences([[1] * 9], max_length=8, layout="flat", overflow=overflow)
        assert cut["input_ids"].shape[1] == 8


# -- contrastive honours the masks ------------------------------------------------------------


def test_contrastive_honours_attention_mask():
    collate = lmobjectives.ContrastivePairCollator(vocab_size=100, pad_token_id=0, seed=1)
    batch = collate(
        [
            {"input_ids": [5, 6, 7, 0, 0], "attention_mask": [1, 1, 1, 0, 0]},
            {"input_ids": [8, 9, 10, 11, 12], "attention_mask": [1, 1, 1, 1, 1]},
        ]
    )
    for view in ("anchor", "positive"):
        mask = batch[f"{view}_attention_mask"]
        assert mask[0].sum() <= 3, mask  # the padding is not content
        assert (batch[f"{view}_input_ids"][0][mask[0] == 0] == 0).all()


def test_contrastive_rejects_wrong_length_special_tokens_mask():
    collate = lmobjectives.ContrastivePairCollator(vocab_size=100, pad_token_id=0, seed=1)
    with pytest.raises(errors.ShapeError, match="special_tokens_mask"):
        collate([{"input_ids": [5, 6, 7], "special_tokens_mask": [1, 0]}])


# -- arguments named, never OverflowError -------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (
            lambda: lmobjectives.MLMCollator(vocab_size=2**63, mask_token_id=4, pad_token_id=0),
            "vocab_size",
        ),
        (
            lambda: lmobjectives.MLMCollator(vocab_size=100, mask_token_id=4, pad_token_id=2**70),
            "pad_token_id",
        ),
        (
            lambda: lmobjectives.MLMCollator.electra(
                vocab_size=100, mask_token_id=4, pad_token_id=0, max_seq_length=0
            ),
            "max_seq_length",
        ),
        (
            lambda: lmobjectives.MLMCollator(
                vocab_size=100, mask_token_id=4, pad_token_id=0, max_length=2**64
            ),
            "max_length",
        ),
        (lambda: lmobjectives.pack_sequences([[1]], max_length=-1), "max_length"),
        (
            lambda: lmobjectives.pack_sequences([[1]], max_length=4, pad_token_id=2**64),
            "pad_token_id",
        ),
    ],
)
def test_integer_arguments_are_named(call, name):
    with pytest.raises(errors.LMObjectivesError) as info:
        call()
    assert str(info.value).startswith(name), str(info.value)
    assert not isinstance(info.value, OverflowError)


def test_mlm_span_lower_negative_is_named():
    with pytest.raises(errors.InvalidArgumentError) as info:
        lmobjectives.MLMCollator(
            vocab_size=100, mask_token_id=4, pad_token_id=0, unit="span", span_lower=-1
        )
    assert "span_lower" in str(info.value)
