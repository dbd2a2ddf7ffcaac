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


# -- distribution metadata ---------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_pyproject_metadata_is_complete():
    project = _pyproject()["project"]
    assert project["license"] == "Apache-2.0"  # an SPDX expression, not the old table form
    for path in project["license-files"]:
        assert (ROOT / path).is_file(), path
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]
    assert "Python Software Foundation" in (ROOT / project["license-files"][1]).read_text()
    assert project["authors"]
    assert project["keywords"]
    assert {"Homepage", "Source", "Issues"} <= set(project["urls"])
    classifiers = set(project["classifiers"])
    minor = [c for c in classifiers if c.startswith("Programming Language :: Python :: 3.")]
    assert sorted(minor) == [f"Programming Language :: Python :: 3.{v}" for v in (10, 11, 12, 13)]
    assert project["requires-python"] == ">=3.10"
    assert "Typing :: Typed" in classifiers
    assert any(c.startswith("Operating System ::") for c in classifiers)
    assert (PACKAGE_DIR / "py.typed").is_file()


def test_installed_metadata_carries_the_licence_expression():
    from importlib.metadata import metadata

    meta = metadata("lmobjectives")
    assert meta["License-Expression"] == "Apache-2.0"
    assert "Typing :: Typed" in meta.get_all("Classifier")
    assert any(u.startswith("Source, ") for u in meta.get_all("Project-URL"))


def test_the_lock_pins_every_dev_dependency():
    """requirements/dev.lock pins (==) every package it names, and names each direct
    dependency of the dev extra, so a fresh clone installs exactly the tested set."""
    import re

    lock = (ROOT / "requirements" / "dev.lock").read_text()
    lines = [ln for ln in lock.splitlines() if ln and not ln.startswith((" ", "#"))]
    assert len(lines) > 50
    for ln in lines:
        assert re.match(r"^[A-Za-z0-9_.\-\[\],]+==[^ ;]+( ; .+)?$", ln), ln
    pinned = {re.split(r"[=\[ ]", ln)[0].lower().replace("_", "-") for ln in lines}
    extras = _pyproject()["project"]["optional-dependencies"]
    direct = {
        re.split(r"[<>=\[ ;]", req)[0].lower()
        for reqs in extras.values()
        for req in reqs
        if not req.startswith("lmobjectives")
    }
    assert direct <= pinned, direct - pinned


def test_benches_import_only_public_names():
    import ast

    files = sorted((ROOT / "benches").glob("*.py"))
    assert len(files) >= 5
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lmobjectives"):
                assert not any(p.startswith("_") for p in node.module.split(".")), (f, node.module)
                assert not any(a.name.startswith("_") for a in node.names), (f, node.module)
