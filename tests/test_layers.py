"""The import direction of the layers (design: §1): library → torch → lab, never back.

Every ``.py`` file of the package is parsed (with :mod:`ast`; nothing is imported) and all its
imports are collected: ``import x`` and ``from x import y`` at module level, inside functions,
classes and ``if TYPE_CHECKING:`` blocks, relative imports resolved, and the string calls that
import by name (``require("torch", ...)``, ``importlib.import_module("...")``,
``__import__("...")``). Docstring examples (``>>> import torch``) are text, not imports. Then:

- a library module (outside ``lmobjectives/torch/`` and ``lmobjectives/lab/``) imports neither
  ``torch`` nor ``lmobjectives.torch`` (except ``lmobjectives/_torch_bridge.py``, the one lazy
  bridge) nor ``lmobjectives.lab`` (except ``lmobjectives/__main__.py``, which hands over to the
  lab's command line);
- a module of ``lmobjectives.torch`` does not import ``lmobjectives.lab``.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "lmobjectives"
#: The library module allowed to reach torch (lazily) and the one allowed to reach the lab.
TORCH_BRIDGE = "lmobjectives._torch_bridge"
LAB_ENTRY = "lmobjectives.__main__"
#: Fewer files than this means the scan looked in the wrong place.
MIN_FILES = {"library": 25, "torch": 8}
#: Callables whose first string argument names a module they import.
IMPORTING_CALLS = {"require", "import_module", "__import__"}


def package_dir() -> Path:
    """The package's directory, found without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    assert spec is not None and spec.submodule_search_locations, f"{PACKAGE} is not importable"
    return Path(next(iter(spec.submodule_search_locations)))


def module_name(root: Path, path: Path) -> str:
    """``lmobjectives.corpus._corpus`` for ``<root>/corpus/_corpus.py`` (``root`` is the package
    directory; an ``__init__.py`` names its package)."""
    parts = [PACKAGE, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> str:
    for name in ("lab", "torch"):
        if module == f"{PACKAGE}.{name}" or module.startswith(f"{PACKAGE}.{name}."):
            return name
    return "library"


def _resolve(name: str, level: int, package: str) -> str:
    """The absolute name of ``from <level dots><name> import ...`` inside ``package``."""
    if level == 0:
        return name
    base = package.split(".")
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _call_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _string_arg(call: ast.Call, position: int, keyword: str) -> str | None:
    if len(call.args) > position:
        node: ast.expr | None = call.args[position]
    else:
        node = next((k.value for k in call.keywords if k.arg == keyword), None)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def imports(source: str, module: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """``(line, imported module)`` for every import in ``source``, the source of ``module``.

    ``from a import b`` yields ``a`` and ``a.b`` (``b`` may be a submodule: ``from lmobjectives
    import torch``).
    """
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", node.level, package)
            yield node.lineno, base
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{base}.{alias.name}"
        elif isinstance(node, ast.Call) and _call_name(node.func) in IMPORTING_CALLS:
            name = _string_arg(node, 0, "name")
            if name is None:
                continue
            if name.startswith("."):
                anchor = _string_arg(node, 1, "package") or package
                level = len(name) - len(name.lstrip("."))
                name = _resolve(name.lstrip("."), level, anchor)
            yield node.lineno, name


def _within(name: str, target: str) -> bool:
    return name == target or name.startswith(target + ".")


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """The imports of ``module`` (given its source) that point up the layers."""
    where = layer(module)
    if where == "lab":
        return []
    forbidden = [f"{PACKAGE}.lab"]
    if where == "library":
        forbidden += ["torch", f"{PACKAGE}.torch"]
    allowed: list[str] = []
    if module == TORCH_BRIDGE:
        allowed += ["torch", f"{PACKAGE}.torch"]
    if module == LAB_ENTRY:
        allowed += [f"{PACKAGE}.lab"]
    found = []
    for line, name in imports(source, module, is_package):
        bad = [t for t in forbidden if _within(name, t) and t not in allowed]
        if bad:
            found.append(f"{module}:{line} ({where}) imports {name}")
    return sorted(set(found))


def scan() -> tuple[dict[str, int], list[str]]:
    """Files scanned per layer, and every violation in the package."""
    root = package_dir()
    counts = {"library": 0, "torch": 0, "lab": 0}
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(root, path)
        counts[layer(module)] += 1
        source = path.read_text(encoding="utf-8")
        found += violations(source, module, is_package=path.name == "__init__.py")
    return counts, found


def test_layers_import_only_downwards():
    counts, found = scan()
    for name, floor in MIN_FILES.items():
        assert counts[name] >= floor, f"scanned {counts[name]} {name} files (< {floor}): {counts}"
    assert not found, "imports pointing up the layers (design: §1):\n" + "\n".join(found)


def test_the_checker_reports_upward_imports():
    """Control: the checker sees each form of import, in each place, and only where it is
    forbidden."""
    library = "lmobjectives.masking"
    cases = {
        "import torch": True,
        "import torch.nn.functional as F": True,
        "from torch import nn": True,
        "from lmobjectives import torch": True,
        "from lmobjectives.torch.mining import topk": True,
        "from .torch import to_torch": True,
        "from . import lab": True,
        "from lmobjectives.lab.cli import main": True,
        "def f():\n    import torch\n": True,
        "class C:\n    def m(self):\n        from lmobjectives.lab import cli\n": True,
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n": True,
        "def f():\n    return require('torch', 'x')\n": True,
        "def f():\n    return _optional.require(name='torch')\n": True,
        "import importlib\nimportlib.import_module('lmobjectives.torch')\n": True,
        "import importlib\nimportlib.import_module('.lab', 'lmobjectives')\n": True,
        "__import__('torch')\n": True,
        # not imports of torch or the lab
        '"""Example:\n\n    >>> import torch\n    >>> from lmobjectives import lab\n"""\n': False,
        "import numpy as np\nfrom lmobjectives import _torch_bridge\n": False,
        "from lmobjectives._torch_bridge import to_torch\n": False,
        "import torchvision_like_name_is_not_torch\n": False,
        "x = 'import torch'\n": False,
        "def f():\n    return require('tokenizers')\n": False,
        "from . import mining\n": False,
    }
    for source, bad in cases.items():
        assert bool(violations(source, library)) == bad, source
    # relative imports resolve against the module's package (an __init__ is its package)
    assert violations("from ..torch import x", "lmobjectives.corpus._corpus")
    assert violations("from .torch import x", "lmobjectives", is_package=True)
    assert not violations("from .torch import x", "lmobjectives.mining", is_package=True)
    # the exceptions, and only for what they are allowed
    assert not violations("import torch\nimport lmobjectives.torch", "lmobjectives._torch_bridge")
    assert violations("from lmobjectives.lab import cli", "lmobjectives._torch_bridge")
    assert not violations("from lmobjectives.lab.cli import main", "lmobjectives.__main__")
    assert violations("import torch", "lmobjectives.__main__")
    # lmobjectives.torch may import torch and the library, not the lab; the lab anything
    assert not violations("import torch\nfrom lmobjectives import mining", "lmobjectives.torch.rl")
    assert violations("from lmobjectives.lab import bench", "lmobjectives.torch.gan.models")
    assert not violations("import torch\nimport lmobjectives.torch", "lmobjectives.lab.cli")
    # the line is reported
    (report,) = violations("import numpy\n\n\ndef f():\n    import torch\n", library)
    assert report == "lmobjectives.masking:5 (library) imports torch"
