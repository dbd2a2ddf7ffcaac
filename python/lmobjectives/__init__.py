"""lmobjectives: the data side of language-model training objectives, fast and exact.

Rust kernels (GIL released, rows in parallel, keyed random streams) behind small Python
objects whose results are NumPy arrays handed over without a copy. ``import lmobjectives``
needs only NumPy; :mod:`lmobjectives.torch` holds the PyTorch wrappers.
"""

from lmobjectives._core import (
    STREAM_VERSION,
    InvalidArgumentError,
    LMObjectivesError,
    ShapeError,
    TokenIdError,
    __version__,
)
from lmobjectives.corpus import TokenCorpus, TokenCorpusWriter, train_wordpiece
from lmobjectives.denoising import (
    BartDenoisingCollator,
    CorpusChunks,
    T5SpanCorruptionCollator,
    UL2Collator,
    compute_input_and_target_lengths,
)
from lmobjectives.masking import MLMCollator
from lmobjectives.packing import PackingCollator, pack_sequences
from lmobjectives.pairs import SentencePairDataset

__all__ = [
    "STREAM_VERSION",
    "BartDenoisingCollator",
    "CorpusChunks",
    "InvalidArgumentError",
    "LMObjectivesError",
    "MLMCollator",
    "PackingCollator",
    "SentencePairDataset",
    "ShapeError",
    "T5SpanCorruptionCollator",
    "TokenCorpus",
    "TokenCorpusWriter",
    "TokenIdError",
    "UL2Collator",
    "__version__",
    "compute_input_and_target_lengths",
    "pack_sequences",
    "train_wordpiece",
]
