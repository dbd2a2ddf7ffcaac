"""Hostile scalar arguments to every binding of ``lmobjectives._core`` (issue 15): each call
returns or raises a clean error whose message starts with the name of a parameter; never an
``OverflowError``, a panic or an abort."""

from __future__ import annotations

import numpy as np
import pytest
from fuzz_harness import budget, run
from hypothesis import given
from hypothesis import strategies as st
from strategies import EDGE_INTS

from lmobjectives import _core

ROWS = [[5, 6, 7, 8], [9, 10]]

#: Small valid calls of the bindings that take numbers; each case replaces one keyword.
CALLS = {
    "pad": (
        lambda **k: _core.pad(ROWS, **{"pad_value": 0, **k}),
        ["pad_value", "max_length", "pad_to_multiple_of"],
    ),
    "pack": (
        lambda **k: _core.pack(ROWS, **{"max_length": 8, **k}),
        ["max_length", "pad_token_id", "position_offset", "pad_to_multiple_of", "vocab_size"],
    ),
    "rollout_plan": (
        lambda **k: _core.rollout_plan(**{"lengths": [3, 4], "num_rollouts": 2, **k}),
        ["num_rollouts"],
    ),
    "compute_input_and_target_lengths": (
        lambda **k: _core.compute_input_and_target_lengths(
            **{"inputs_length": 64, "noise_density": 0.15, "mean_noise_span_length": 3.0, **k}
        ),
        ["inputs_length", "noise_density", "mean_noise_span_length"],
    ),
}

VALUES = st.sampled_from([*EDGE_INTS, True, 1.5, float("nan"), "3", np.uint64(2**63), np.int8(-1)])


@budget(600)
@given(which=st.sampled_from(sorted(CALLS)), data=st.data(), value=VALUES)
def test_hostile_scalars(which, data, value):
    call, params = CALLS[which]
    name = data.draw(st.sampled_from(params))

    def invoke():
        return call(**{name: value})

    out = run(f"_core.{which}", invoke)
    if out is None:  # a clean error: it names one of the call's arguments
        with pytest.raises((ValueError, TypeError)) as info:
            invoke()
        named = str(info.value).split(":")[0].split("[")[0]
        assert named in (*params, "rows", "input_ids", "lengths", "examples"), str(info.value)
