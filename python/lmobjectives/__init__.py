"""lmobjectives: the data side of language-model training objectives, fast and exact."""

from lmobjectives._core import __version__

__all__ = ["__version__"]
