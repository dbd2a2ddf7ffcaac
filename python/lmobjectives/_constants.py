"""Constants shared by the library and :mod:`lmobjectives.torch`, defined once (design: §5)."""

from __future__ import annotations

__all__ = ["IGNORE_INDEX"]

#: The label of a position no loss is computed on (PyTorch's ``cross_entropy`` default, and
#: what every collator writes on unselected, padded or prompt positions).
IGNORE_INDEX = -100
