"""Package structure: what importing needs, what is exported, documented and typed."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import lmobjectives

PACKAGE_DIR = Path(lmobjectives.__file__).parent


def run_isolated(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_import_needs_only_numpy():
    """With torch, tokenizers and transformers made unimportable, the core still works."""
    result = run_isolated(
        """
        import sys
        for name in ("torch", "tokenizers", "transformers"):
            sys.modules[name] = None  # any import of them now raises ImportError
        import numpy as np
        import lmobjectives
        c = lmobjectives.MLMCollator(vocab_size=50, mask_token_id=4, pad_token_id=0, seed=0)
        b = c(np.arange(5, 45, dtype=np.int64).reshape(4, 10))
        assert b["labels"].shape == (4, 10)
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_importing_the_package_does_not_import_torch():
    result = run_isolated(
        """
        import sys, lmobjectives, lmobjectives.masking
        print(sorted(m for m in ("torch", "tokenizers", "transformers") if m in sys.modules))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_public_names_exist_and_are_documented():
    assert lmobjectives.__all__
    for name in lmobjectives.__all__:
        obj = getattr(lmobjectives, name)
        if isinstance(obj, type) or callable(obj):
            assert obj.__doc__, f"{name} has no docstring"
    assert lmobjectives.__version__ == lmobjectives._core.__version__


def test_typed_package_ships_stubs():
    assert (PACKAGE_DIR / "py.typed").exists()
    stub = (PACKAGE_DIR / "_core.pyi").read_text()
    for name in lmobjectives._core.__all__:
        assert name in stub, f"_core.{name} missing from _core.pyi"


def test_docstring_examples_run():
    for module in ("lmobjectives.masking", "lmobjectives.rl"):
        mod = importlib.import_module(module)
        failures, tried = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert tried > 0, f"{module} has no examples"
        assert failures == 0
