"""Optional dependencies: one place that knows which extra installs which module.

Every code path that needs a package outside the core (NumPy) imports it with :func:`require`,
so a missing package raises :class:`MissingDependencyError` naming the extra to install instead
of a bare ``ModuleNotFoundError``::

    torch = require("torch")  # -> pip install 'lmobjectives[torch]' when absent
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["EXTRAS", "MissingDependencyError", "available", "require"]

#: The extra (of ``pyproject.toml``) that installs each optional top-level module.
EXTRAS: dict[str, str] = {
    "torch": "torch",
    "tokenizers": "corpus",
    "matplotlib": "plot",
    "transformers": "bench",
    "faiss": "contrastive",
    "datasets": "datasets",
    "pyarrow": "datasets",
    "sentence_transformers": "test",
    "nltk": "test",
}


class MissingDependencyError(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it.

    Attributes:
        module: the missing top-level module (``"torch"``).
        extra: the extra that installs it (``"torch"`` for ``pip install 'lmobjectives[torch]'``).
        purpose: what needed it, as given to :func:`require` (or ``None``).
    """

    def __init__(self, module: str, extra: str, purpose: str | None = None) -> None:
        self.module = module
        self.extra = extra
        self.purpose = purpose
        need = f" (needed for {purpose})" if purpose else ""
        super().__init__(
            f"{module} is not installed{need}: pip install 'lmobjectives[{extra}]'",
            name=module,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # ImportError pickles as cls(message): rebuild from the fields instead (so the error
        # survives multiprocessing pools and DataLoader workers).
        return (type(self), (self.module, self.extra, self.purpose))


def _top(name: str) -> str:
    return name.partition(".")[0]


def require(name: str, purpose: str | None = None) -> ModuleType:
    """Import ``name`` (a module or submodule of a known optional package) or raise
    :class:`MissingDependencyError` naming its extra.

    Only the absence of the package itself is translated: an ``ImportError`` raised from
    *inside* an installed package (a broken install, a dependency of its own that is missing,
    a submodule it does not have) propagates unchanged.

    Raises:
        MissingDependencyError: the top-level package of ``name`` is not installed (or its
            import is blocked with ``sys.modules[package] = None``).
        KeyError: ``name`` is not in a package listed in :data:`EXTRAS`.
    """
    top = _top(name)
    if top not in EXTRAS:
        raise KeyError(f"{name!r} is not a known optional dependency of lmobjectives")
    try:
        module = importlib.import_module(top)
    except ImportError as e:
        # Missing: ModuleNotFoundError with name == top; `sys.modules[top] = None` (a blocked
        # import) gives the same. Anything else was raised while importing the package,
        # e.g. "cannot import name '_C' from partially initialized module" (name == top too).
        if isinstance(e, ModuleNotFoundError) and e.name == top:
            raise MissingDependencyError(top, EXTRAS[top], purpose) from None
        raise
    # The package is there: a submodule that fails to import is a broken or too old install.
    return module if name == top else importlib.import_module(name)


def available(name: str) -> bool:
    """Whether ``require(name)`` succeeds rather than raising :class:`MissingDependencyError`
    (it imports ``name``; other import errors propagate)."""
    try:
        require(name)
    except MissingDependencyError:
        return False
    return True
