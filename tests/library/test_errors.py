"""The error contract: one hierarchy, every argument named, no panic across the FFI (issue 15).

The first tests read the bindings' source: every ``#[pyfunction]`` and ``#[pymethods]`` body
runs under ``crate::errors::guarded`` (the panic guard) and every numeric parameter is
converted by ``crate::args`` (the one range-checked, named conversion).
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

import lmobjectives
from lmobjectives import errors

BINDINGS = Path(__file__).resolve().parents[2] / "rust" / "python" / "src"
FN = re.compile(r"\bfn\s+(\w+)\s*(?:<[^>]*>)?\s*\(")
NUMERIC = re.compile(
    r"(?<!\)\] )\b([a-z_][a-z0-9_]*): (?:Option<)?(?:Vec<)?"
    r"(?:usize|u64|u32|u16|u8|i64|i32|f64|f32)\b"
)


def _close(src: str, i: int, open_: str, close: str) -> int:
    """Index just past the bracket matching the one before ``i``."""
    depth = 1
    while depth:
        depth += {open_: 1, close: -1}.get(src[i], 0)
        i += 1
    return i


def _bindings(src: str) -> list[tuple[str, str, str]]:
    """``(name, parameters, body)`` of each binding function in a bindings source file."""
    starts = [FN.search(src, m.end()) for m in re.finditer(r"^\s*#\[pyfunction\]", src, re.M)]
    for m in re.finditer(r"^\s*#\[pymethods\]\s*impl\b[^{]*\{", src, re.M):
        end = _close(src, m.end(), "{", "}")
        depth, j = 0, m.end()
        while j < end - 1:
            c = src[j]
            if c in "{}":
                depth += 1 if c == "{" else -1
            elif depth == 0 and (f := FN.match(src, j)):
                starts.append(f)
                j = f.end()
                continue
            j += 1
    found = []
    for f in starts:
        assert f is not None
        params_end = _close(src, f.end(), "(", ")")
        body_start = src.index("{", params_end)
        body_end = _close(src, body_start + 1, "{", "}")
        found.append(
            (f.group(1), src[f.end() : params_end - 1], src[body_start + 1 : body_end - 1])
        )
    return found


def _all_bindings() -> list[tuple[str, str, str]]:
    out = []
    for path in sorted(BINDINGS.glob("*.rs")):
        out += [(f"{path.name}:{n}", p, b) for n, p, b in _bindings(path.read_text())]
    return out


def test_bindings_are_found():
    names = [n for n, _, _ in _all_bindings()]
    # A control: the scan finds the bindings it must (a broken scan would pass vacuously).
    for expected in (
        "masking.rs:mask",
        "packing.rs:pack",
        "rl.rs:rollout_plan",
        "lib.rs:note_keys",
    ):
        assert expected in names
    assert len(names) > 60


def test_every_binding_runs_under_the_panic_guard():
    skipped = [
        n
        for n, _, body in _all_bindings()
        if not body.strip().startswith("crate::errors::guarded(")
    ]
    assert skipped == []


def test_every_numeric_parameter_goes_through_the_conversion_helper():
    bare = [
        f"{n}({m.group(1)})"
        for n, params, _ in _all_bindings()
        for m in NUMERIC.finditer(params)
        if "from_py_with = crate::args::" not in params[max(0, m.start() - 60) : m.start()]
    ]
    assert bare == []


def test_the_scan_catches_a_binding_that_skips_the_guard():
    src = textwrap.dedent(
        """
        #[pyfunction]
        fn bad(py: Python<'_>, n: usize) -> PyResult<usize> {
            Ok(n)
        }
        """
    )
    ((name, params, body),) = _bindings(src)
    assert name == "bad" and not body.strip().startswith("crate::errors::guarded(")
    assert NUMERIC.search(params)


# -- the hierarchy ------------------------------------------------------------------------------


def test_hierarchy():
    assert issubclass(errors.LMObjectivesError, ValueError)
    for cls in (
        errors.InvalidArgumentError,
        errors.TokenIdError,
        errors.ShapeError,
        errors.CorpusError,
        errors.InternalError,
    ):
        assert issubclass(cls, errors.LMObjectivesError)
    assert issubclass(errors.ArgumentTypeError, TypeError)
    assert issubclass(errors.ArgumentTypeError, errors.InvalidArgumentError)
    assert issubclass(errors.LimitError, errors.InvalidArgumentError)
    # The same classes from every import path.
    assert lmobjectives.InvalidArgumentError is errors.InvalidArgumentError
    assert lmobjectives._core.InvalidArgumentError is errors.InvalidArgumentError
    assert lmobjectives._core.MAX_ELEMENTS == errors.MAX_ELEMENTS == 2**30


def test_an_unrelated_note_stays_a_note():
    e = errors.InvalidArgumentError("{arg}: must be positive")
    e.add_note("context")
    assert str(e) == "{arg}: must be positive"
    assert e.__notes__ == ["context"]


# -- integer and float arguments: named, range-checked, never OverflowError -----------------------

_core = lmobjectives._core


@pytest.mark.parametrize(
    ("value", "cls", "text"),
    [
        (
            -1,
            errors.InvalidArgumentError,
            "must be an integer in [0, 18446744073709551615], got -1",
        ),
        (2**64, errors.InvalidArgumentError, "got 18446744073709551616"),
        (2**200, errors.InvalidArgumentError, "must be an integer in"),
        (True, errors.ArgumentTypeError, "expected an int, got a bool"),
        (np.bool_(True), errors.ArgumentTypeError, "expected an int, got a bool"),
        (1.5, errors.ArgumentTypeError, "expected an int, got float"),
        ("3", errors.ArgumentTypeError, "expected an int, got str"),
    ],
)
def test_integer_arguments(value, cls, text):
    with pytest.raises(cls) as info:
        _core.rollout_plan([3, 4], value)
    assert str(info.value).startswith("num_rollouts: "), str(info.value)
    assert text in str(info.value)
    assert not isinstance(info.value, OverflowError)


def test_numpy_integers_are_integers():
    a = _core.rollout_plan(np.array([3, 4]), np.uint8(2))
    b = _core.rollout_plan([3, 4], 2)
    assert all((x == y).all() for x, y in zip(a, b, strict=True))


def test_list_items_are_named_by_position():
    with pytest.raises(
        errors.InvalidArgumentError, match=r"^lengths\[1\]: must be an integer in \[0, "
    ):
        _core.rollout_plan([3, -4], 2)
    with pytest.raises(
        errors.ArgumentTypeError, match=r"^lengths\[0\]: expected an int, got float"
    ):
        _core.rollout_plan([0.9], 2)


def test_float_arguments_reject_nan_by_name():
    with pytest.raises(
        errors.InvalidArgumentError, match=r"^mlm_probability: must be a number, got nan"
    ):
        lmobjectives.MLMCollator(
            vocab_size=100, mask_token_id=4, pad_token_id=0, mlm_probability=float("nan")
        )
