"""Type stubs of the native module ``lmobjectives._core`` (checked by mypy.stubtest)."""

from collections.abc import Callable
from typing import Any, Final, Literal, final

import numpy as np
import numpy.typing as npt

from lmobjectives.errors import InvalidArgumentError as InvalidArgumentError
from lmobjectives.errors import LMObjectivesError as LMObjectivesError
from lmobjectives.errors import ShapeError as ShapeError
from lmobjectives.errors import TokenIdError as TokenIdError

__all__ = [
    "MAX_ELEMENTS",
    "MAX_VOCAB",
    "STREAM_VERSION",
    "BartNoiser",
    "InvalidArgumentError",
    "LMObjectivesError",
    "MlmMasker",
    "ShapeError",
    "SpanCorruptor",
    "TokenAugmenter",
    "TokenIdError",
    "__version__",
    "_length_samples",
    "available_threads",
    "bleu",
    "build_pair_index",
    "check_recipe",
    "clip_masked",
    "completion_mask",
    "compute_input_and_target_lengths",
    "denoiser_lengths",
    "discounted_returns",
    "duplicate_groups",
    "gae",
    "group_advantages",
    "kl_estimate",
    "masking_recipe",
    "mining_isas",
    "note_keys",
    "pack",
    "pad",
    "pair_items",
    "pair_mlm_batch",
    "pair_rows",
    "pair_scores",
    "recipe_names",
    "rollout_plan",
    "rollout_scatter",
    "search_topk",
    "select_negatives",
    "self_bleu",
    "whiten",
]

__version__: Final[str]
STREAM_VERSION: Final[int]

MAX_ELEMENTS: Final[int]
MAX_VOCAB: Final[int]

_IntArray = npt.NDArray[np.int64] | npt.NDArray[np.int32]

@final
class MlmMasker:
    def __new__(
        cls,
        vocab_size: int,
        mask_token_id: int,
        pad_token_id: int,
        special_token_ids: list[int],
        *,
        mlm_probability: float = 0.15,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        exact_budget: bool | None = None,
        max_predictions: int | None = None,
        unit: str | None = None,
        replace_by: str | None = None,
        word_starts: list[bool] | None = None,
        geometric_p: float = 0.2,
        span_lower: int = 1,
        span_upper: int = 10,
        ngram: int = 3,
        favor_shorter_ngram: bool = True,
        position_sampling: str = "without_replacement",
        recipe: str = "lmobjectives",
        token_counts: list[int] | None = None,
    ) -> MlmMasker: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def mask_token_id(self) -> int: ...
    @property
    def pad_token_id(self) -> int: ...
    @property
    def special_token_ids(self) -> list[int]: ...
    @property
    def mlm_probability(self) -> float: ...
    @property
    def mask_replace_prob(self) -> float: ...
    @property
    def random_replace_prob(self) -> float: ...
    @property
    def exact_budget(self) -> bool: ...
    @property
    def max_predictions(self) -> int | None: ...
    @property
    def unit(self) -> str: ...
    @property
    def replace_by(self) -> str: ...
    @property
    def recipe(self) -> str: ...
    @property
    def has_token_counts(self) -> bool: ...
    @property
    def has_word_starts(self) -> bool: ...
    def mask(
        self,
        input_ids: Any,
        *,
        attention_mask: Any = None,
        special_tokens_mask: Any = None,
        word_ids: Any = None,
        boundaries: Any = None,
        seed: int,
        epoch: int = 0,
        batch_index: int = 0,
        sample_ids: npt.NDArray[np.uint64] | list[int] | None = None,
        max_length: int | None = None,
        truncation: bool = False,
        pad_to_max_length: bool = False,
        pad_to_multiple_of: int = 1,
        padding_side: Literal["right", "left"] = "right",
        dtype: Literal["int64", "int32"] = "int64",
        num_threads: int = 1,
        rows_name: str | None = None,
        allocate: Callable[[tuple[int, int, int], str], Any] | None = None,
    ) -> tuple[_IntArray, _IntArray, _IntArray]: ...
    def mask_examples(
        self,
        examples: Any,
        *,
        seed: int,
        epoch: int = 0,
        batch_index: int = 0,
        max_length: int | None = None,
        truncation: bool = False,
        pad_to_max_length: bool = False,
        pad_to_multiple_of: int = 1,
        padding_side: Literal["right", "left"] = "right",
        dtype: Literal["int64", "int32"] = "int64",
        num_threads: int = 1,
        allocate: Callable[[tuple[int, int, int], str], Any] | None = None,
    ) -> tuple[_IntArray, _IntArray, _IntArray] | None: ...
    def __reduce__(self) -> tuple[Any, ...]: ...

def pad(
    rows: Any,
    *,
    pad_value: int = 0,
    max_length: int | None = None,
    truncation: bool = False,
    pad_to_max_length: bool = False,
    pad_to_multiple_of: int = 1,
    padding_side: Literal["right", "left"] = "right",
    dtype: Literal["int64", "int32"] = "int64",
    name: str = "rows",
    rows_name: str | None = None,
) -> _IntArray: ...
def note_keys(table: npt.NDArray[np.uint64], keys: npt.NDArray[np.uint64]) -> int | None: ...
def pack(
    examples: Any,
    *,
    max_length: int | None = None,
    layout: str = "rows",
    strategy: str = "ffd",
    overflow: str = "error",
    pad_token_id: int = 0,
    causal_labels: bool = False,
    position_offset: int = 0,
    pad_to_multiple_of: int = 1,
    special_tokens_mask: Any = None,
    word_ids: Any = None,
    token_type_ids: Any = None,
    dtype: Literal["int64", "int32"] = "int64",
    num_threads: int = 1,
    rows_name: str | None = None,
    vocab_size: int | None = None,
) -> dict[str, Any]: ...
def build_pair_index(
    ids: npt.NDArray[Any] | int,
    sentence_offsets: npt.NDArray[np.int64],
    document_offsets: npt.NDArray[np.int64],
    *,
    task: str = "nsp",
    max_seq_length: int = 128,
    short_seq_prob: float = 0.1,
    random_next_prob: float = 0.5,
    swap_prob: float = 0.5,
    seed: int,
    epoch: int = 0,
    num_threads: int = 1,
    recipe: str = "lmobjectives",
) -> dict[str, npt.NDArray[Any]]: ...
def pair_rows(
    ids: npt.NDArray[Any],
    a: npt.NDArray[np.uint64],
    b: npt.NDArray[np.uint64],
    label: npt.NDArray[np.uint8],
    indices: list[int],
    *,
    cls_token_id: int,
    sep_token_id: int,
    rank: int = 0,
    world: int = 1,
    epoch: int = 0,
) -> tuple[
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.uint64],
]: ...
def pair_items(
    total: int,
    indices: Any,
    *,
    rank: int = 0,
    world: int = 1,
    epoch: int = 0,
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]: ...
def pair_mlm_batch(
    ids: npt.NDArray[Any],
    a: npt.NDArray[np.uint64],
    b: npt.NDArray[np.uint64],
    label: npt.NDArray[np.uint8],
    items: npt.NDArray[np.uint64],
    keys: npt.NDArray[np.uint64],
    masker: MlmMasker,
    *,
    cls_token_id: int,
    sep_token_id: int,
    seed: int,
    epoch: int = 0,
    max_length: int | None = None,
    truncation: bool = False,
    pad_to_max_length: bool = False,
    pad_to_multiple_of: int = 1,
    padding_side: str = "right",
    dtype: str = "int64",
    num_threads: int = 1,
    allocate: Any = None,
) -> tuple[npt.NDArray[Any], ...]: ...
def available_threads() -> int: ...
def _length_samples(
    unit: str,
    count: int,
    *,
    seed: int = 0,
    geometric_p: float = 0.2,
    span_lower: int = 1,
    span_upper: int = 10,
    ngram: int = 3,
    favor_shorter_ngram: bool = True,
) -> npt.NDArray[np.uint32]: ...
def masking_recipe(
    recipe: str = "lmobjectives",
    *,
    unit: str | None = None,
    exact_budget: bool | None = None,
    replace_by: str | None = None,
) -> dict[str, Any]: ...
def check_recipe(recipe: str, family: str) -> str: ...
def recipe_names() -> list[str]: ...

# -- denoising ----------------------------------------------------------------------------------

_Seq2SeqArrays = tuple[_IntArray, _IntArray, _IntArray, _IntArray, _IntArray]
_DenoiserTuple = tuple[str, float, float, int | None]

def compute_input_and_target_lengths(
    inputs_length: int, noise_density: float = 0.15, mean_noise_span_length: float = 3.0
) -> tuple[int, int]: ...
def denoiser_lengths(
    denoisers: list[_DenoiserTuple], input_length: int, random_roll: bool = False
) -> list[tuple[int, int, int, int]]: ...

@final
class SpanCorruptor:
    def __new__(
        cls,
        vocab_size: int,
        eos_token_id: int,
        pad_token_id: int,
        decoder_start_token_id: int,
        sentinel_ids: list[int],
        denoisers: list[_DenoiserTuple],
        weights: list[float],
        input_length: int,
        random_roll: bool = False,
        per_batch: bool = False,
        purpose: str = "t5",
    ) -> SpanCorruptor: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def eos_token_id(self) -> int: ...
    @property
    def pad_token_id(self) -> int: ...
    @property
    def decoder_start_token_id(self) -> int: ...
    @property
    def sentinel_ids(self) -> list[int]: ...
    @property
    def denoisers(self) -> list[_DenoiserTuple]: ...
    @property
    def weights(self) -> list[float]: ...
    @property
    def random_roll(self) -> bool: ...
    @property
    def per_batch(self) -> bool: ...
    @property
    def raw_lengths(self) -> list[int]: ...
    @property
    def input_lengths(self) -> list[int]: ...
    @property
    def target_lengths(self) -> list[int]: ...
    @property
    def input_length(self) -> int: ...
    def batch_denoiser(self, *, seed: int, epoch: int = 0, batch_index: int = 0) -> int: ...
    def corrupt(
        self,
        input_ids: Any,
        *,
        attention_mask: Any = None,
        seed: int,
        epoch: int = 0,
        batch_index: int = 0,
        sample_ids: npt.NDArray[np.uint64] | list[int] | None = None,
        truncation: bool = False,
        input_width: int | None = None,
        target_width: int | None = None,
        pad_to_multiple_of: int = 1,
        dtype: Literal["int64", "int32"] = "int64",
        num_threads: int = 1,
        rows_name: str | None = None,
    ) -> _Seq2SeqArrays: ...
    def example_columns(
        self, examples: Any
    ) -> tuple[list[Any], list[Any] | None, npt.NDArray[np.uint64] | None] | None: ...
    def __reduce__(self) -> tuple[Any, ...]: ...

@final
class BartNoiser:
    def __new__(
        cls,
        vocab_size: int,
        bos_token_id: int,
        eos_token_id: int,
        pad_token_id: int,
        mask_token_id: int,
        decoder_start_token_id: int,
        special_token_ids: list[int],
        word_starts: list[bool] | None = None,
        full_stop_token_ids: list[int] = ...,
        mask_ratio: float = 0.3,
        random_ratio: float = 0.1,
        insert_ratio: float = 0.0,
        rotate_ratio: float = 0.0,
        permute_sentence_ratio: float = 1.0,
        poisson_lambda: float = 3.0,
        mask_length: str = "span-poisson",
        replace_length: int = 1,
        add_special_tokens: bool = True,
        recipe: str = "lmobjectives",
    ) -> BartNoiser: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def bos_token_id(self) -> int: ...
    @property
    def eos_token_id(self) -> int: ...
    @property
    def pad_token_id(self) -> int: ...
    @property
    def mask_token_id(self) -> int: ...
    @property
    def decoder_start_token_id(self) -> int: ...
    @property
    def special_token_ids(self) -> list[int]: ...
    @property
    def full_stop_token_ids(self) -> list[int]: ...
    @property
    def recipe(self) -> str: ...
    @property
    def mask_ratio(self) -> float: ...
    @property
    def random_ratio(self) -> float: ...
    @property
    def insert_ratio(self) -> float: ...
    @property
    def rotate_ratio(self) -> float: ...
    @property
    def permute_sentence_ratio(self) -> float: ...
    @property
    def poisson_lambda(self) -> float: ...
    @property
    def mask_length(self) -> str: ...
    @property
    def replace_length(self) -> int: ...
    @property
    def add_special_tokens(self) -> bool: ...
    @property
    def word_starts(self) -> npt.NDArray[np.bool_] | None: ...
    @property
    def span_length_probabilities(self) -> list[float] | None: ...
    def sample_span_lengths(self, count: int, *, seed: int) -> npt.NDArray[np.uint32]: ...
    def noise(
        self,
        input_ids: Any,
        *,
        attention_mask: Any = None,
        sentence_starts: Any = None,
        seed: int,
        epoch: int = 0,
        batch_index: int = 0,
        sample_ids: npt.NDArray[np.uint64] | list[int] | None = None,
        pad_to_multiple_of: int = 1,
        dtype: Literal["int64", "int32"] = "int64",
        num_threads: int = 1,
        rows_name: str | None = None,
    ) -> _Seq2SeqArrays: ...
    def __reduce__(self) -> tuple[Any, ...]: ...

# -- mining ------------------------------------------------------------------------------------

_F32 = npt.NDArray[np.float32]
_I64 = npt.NDArray[np.int64]

def search_topk(
    queries: npt.NDArray[Any],
    corpus: npt.NDArray[Any],
    *,
    k: int,
    similarity: Literal["cosine", "dot"] = "cosine",
    queries_float16: bool = False,
    corpus_float16: bool = False,
    num_threads: int = 0,
    progress: Callable[[int, int], object] | None = None,
    isa: Literal["avx512", "avx2", "portable"] | None = None,
    query_block: int | None = None,
    corpus_tile: int | None = None,
    span: int | None = None,
) -> tuple[_I64, _F32]: ...
def pair_scores(
    queries: npt.NDArray[Any],
    corpus: npt.NDArray[Any],
    values: _I64,
    offsets: _I64,
    *,
    similarity: Literal["cosine", "dot"] = "cosine",
    queries_float16: bool = False,
    corpus_float16: bool = False,
    num_threads: int = 0,
    name: str = "positives",
) -> _F32: ...
def select_negatives(
    candidate_ids: _I64,
    candidate_scores: _F32,
    *,
    corpus_rows: int,
    keys: npt.NDArray[np.uint64],
    num_negatives: int,
    range_min: int,
    range_max: int,
    positive_values: _I64 | None = None,
    positive_offsets: _I64 | None = None,
    positive_scores: _F32 | None = None,
    self_ids: _I64 | None = None,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
    max_score: float | None = None,
    min_score: float | None = None,
    sampling: Literal["top", "random"] = "top",
    ranks: Literal["filtered", "raw"] = "filtered",
    include_positives: bool = False,
    seed: int = 0,
    num_threads: int = 0,
) -> tuple[_I64, _F32, dict[str, int]]: ...
def mining_isas() -> list[str]: ...

# -- contrastive augmentations -----------------------------------------------------------------

@final
class TokenAugmenter:
    def __new__(
        cls,
        vocab_size: int,
        special_token_ids: list[int],
        crop: float = 0.0,
        span_deletion: float = 0.0,
        token_deletion: float = 0.0,
        reorder: float = 0.0,
        substitution: float = 0.0,
        insertion: float = 0.0,
        unigram: list[float] | None = None,
    ) -> TokenAugmenter: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def special_token_ids(self) -> list[int]: ...
    def augment(
        self,
        input_ids: Any,
        *,
        pad_token_id: int,
        seed: int,
        epoch: int = 0,
        batch_index: int = 0,
        sample_ids: list[int] | None = None,
        view: int = 0,
        max_length: int | None = None,
        truncation: bool = False,
        pad_to_max_length: bool = False,
        pad_to_multiple_of: int = 1,
        padding_side: Literal["right", "left"] = "right",
        dtype: Literal["int64", "int32"] = "int64",
        num_threads: int = 1,
        rows_name: str | None = None,
    ) -> tuple[_IntArray, _IntArray]: ...
    def __reduce__(self) -> tuple[Any, ...]: ...

def duplicate_groups(input_ids: Any, *, rows_name: str | None = None) -> _I64: ...

# -- sequence-level RL (lmobjectives.rl) -------------------------------------------------------

_Floats = npt.NDArray[np.float32] | npt.NDArray[np.float64]

def completion_mask(
    ids: Any,
    eos_token_ids: list[int],
    *,
    pad_token_id: int | None = None,
    attention_mask: npt.NDArray[np.bool_] | None = None,
    completion_start: list[int] | None = None,
    padding_side: str = "right",
    include_eos: bool = True,
    mask_truncated: bool = False,
    num_threads: int = 0,
) -> dict[str, Any]: ...
def discounted_returns(
    rewards: _Floats, mask: npt.NDArray[np.bool_], *, gamma: float, num_threads: int = 0
) -> Any: ...
def gae(
    rewards: _Floats,
    values: _Floats,
    mask: npt.NDArray[np.bool_],
    *,
    gamma: float,
    lam: float,
    bootstrap: _Floats | None = None,
    num_threads: int = 0,
) -> tuple[Any, Any]: ...
def whiten(
    values: _Floats,
    mask: npt.NDArray[np.bool_],
    *,
    shift_mean: bool = True,
    unbiased: bool = True,
    eps: float = 1e-08,
    num_threads: int = 0,
) -> tuple[Any, float, float]: ...
def clip_masked(
    values: _Floats, mask: npt.NDArray[np.bool_], *, bound: float, num_threads: int = 0
) -> Any: ...
def group_advantages(
    scores: _Floats,
    groups: npt.NDArray[np.int64],
    num_groups: int,
    *,
    baseline: str = "mean",
    scale: str = "group",
    eps: float = 0.0001,
    nan: str = "raise",
) -> tuple[Any, Any, Any]: ...
def kl_estimate(
    logprobs: _Floats,
    ref_logprobs: _Floats,
    mask: npt.NDArray[np.bool_],
    *,
    estimator: str = "k1",
    num_threads: int = 0,
) -> tuple[Any, Any]: ...
def bleu(
    hypotheses: Any,
    references: Any,
    *,
    weights: list[float],
    smoothing: str = "method1",
    epsilon: float = 0.1,
    num_threads: int = 0,
) -> npt.NDArray[np.float64]: ...
def self_bleu(
    samples: Any,
    *,
    weights: list[float],
    smoothing: str = "method1",
    epsilon: float = 0.1,
    num_threads: int = 0,
) -> npt.NDArray[np.float64]: ...
def rollout_plan(
    lengths: list[int], num_rollouts: int, *, order: str = "prefix_major"
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
def rollout_scatter(
    scores: _Floats,
    sample: npt.NDArray[np.int64],
    prefix_length: npt.NDArray[np.int64],
    lengths: list[int],
    final_scores: _Floats,
    cols: int,
) -> Any: ...
