"""lmobjectives: the data side of language-model training objectives, fast and exact.

Rust kernels (GIL released, rows in parallel, keyed random streams) behind small Python
objects whose results are NumPy arrays handed over without a copy. ``import lmobjectives``
needs only NumPy; :mod:`lmobjectives.torch` holds the PyTorch wrappers.
"""

from lmobjectives import errors, rl
from lmobjectives._constants import IGNORE_INDEX
from lmobjectives._core import STREAM_VERSION, __version__
from lmobjectives._optional import MissingDependencyError
from lmobjectives._seeding import RepeatedSampleKeyWarning
from lmobjectives.contrastive import Augmentation, ContrastivePairCollator, neighbour_pairs
from lmobjectives.corpus import (
    ShardedTokenCorpus,
    ShardError,
    TokenCorpus,
    TokenCorpusWriter,
    train_wordpiece,
)
from lmobjectives.denoising import (
    BartDenoisingCollator,
    CorpusChunks,
    T5SpanCorruptionCollator,
    UL2Collator,
    compute_input_and_target_lengths,
)
from lmobjectives.errors import (
    ArgumentTypeError,
    CorpusError,
    InternalError,
    InvalidArgumentError,
    LimitError,
    LMObjectivesError,
    ShapeError,
    TokenIdError,
)
from lmobjectives.masking import MLMCollator
from lmobjectives.mining import HardNegatives, exact_topk, mine_hard_negatives
from lmobjectives.packing import PackingCollator, pack_sequences
from lmobjectives.pairs import SentencePairDataset

__all__ = [
    "IGNORE_INDEX",
    "STREAM_VERSION",
    "ArgumentTypeError",
    "Augmentation",
    "BartDenoisingCollator",
    "ContrastivePairCollator",
    "CorpusChunks",
    "CorpusError",
    "HardNegatives",
    "InternalError",
    "InvalidArgumentError",
    "LMObjectivesError",
    "LimitError",
    "MLMCollator",
    "MissingDependencyError",
    "PackingCollator",
    "RepeatedSampleKeyWarning",
    "SentencePairDataset",
    "ShapeError",
    "ShardError",
    "ShardedTokenCorpus",
    "T5SpanCorruptionCollator",
    "TokenCorpus",
    "TokenCorpusWriter",
    "TokenIdError",
    "UL2Collator",
    "__version__",
    "compute_input_and_target_lengths",
    "errors",
    "exact_topk",
    "mine_hard_negatives",
    "neighbour_pairs",
    "pack_sequences",
    "rl",
    "train_wordpiece",
]
