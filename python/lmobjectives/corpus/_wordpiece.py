"""BERT-style WordPiece tokenizers: :func:`train_wordpiece` (deterministic) and the pipeline
around a vocabulary (the embedded corpus's tokenizer is built from its shipped vocabulary)."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from lmobjectives._progress import Progress
from lmobjectives.corpus._tokenizers import tokenizers_module

if TYPE_CHECKING:
    from tokenizers import Tokenizer

#: BERT's vocabulary size.
DEFAULT_VOCAB_SIZE = 30522
#: Special tokens, in id order: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4.
SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def bert_pipeline(model: Any, lowercase: bool) -> Tokenizer:
    """A ``Tokenizer`` around ``model`` with BERT's normalizer, pre-tokenizer and decoder."""
    tokenizers = tokenizers_module("WordPiece tokenizers")
    tok = tokenizers.Tokenizer(model)
    tok.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    tok.decoder = tokenizers.decoders.WordPiece(prefix="##")
    return tok


def wordpiece_tokenizer(vocab: dict[str, int] | Sequence[str], lowercase: bool = True) -> Tokenizer:
    """The BERT-style WordPiece tokenizer over ``vocab`` (a token -> id dict, or tokens in id
    order): the pipeline of :func:`train_wordpiece`'s result (and of the embedded corpus).

    :func:`_bert_pipeline` around a ``WordPiece`` model (``[UNK]``, ``##`` continuations, at
    most 100 characters per word), :data:`SPECIAL_TOKENS` registered as special tokens and a
    ``[CLS] $A [SEP]`` / ``[CLS] $A [SEP] $B:1 [SEP]:1`` post-processor.

    Raises:
        ValueError: the special tokens do not have ids 0..4, or ids are not 0..len(vocab)-1.
    """
    if not isinstance(vocab, dict):
        vocab = {token: i for i, token in enumerate(vocab)}
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise ValueError("vocab: ids must be 0..len(vocab)-1, each used once")
    ids = [vocab.get(tok) for tok in SPECIAL_TOKENS]
    if ids != list(range(len(SPECIAL_TOKENS))):
        raise ValueError(f"vocab: special tokens {SPECIAL_TOKENS} must have ids 0..4, got {ids}")
    tokenizers = tokenizers_module("WordPiece tokenizers")
    tokenizer = bert_pipeline(
        tokenizers.models.WordPiece(
            vocab, unk_token="[UNK]", continuing_subword_prefix="##", max_input_chars_per_word=100
        ),
        lowercase,
    )
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids[2]), ("[SEP]", ids[3])],
    )
    return tokenizer


def train_wordpiece(
    texts: Iterable[str],
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    *,
    lowercase: bool = True,
    min_frequency: int = 1,
    progress: bool | None = None,
) -> Tokenizer:
    """Train a BERT-style WordPiece tokenizer with Hugging Face ``tokenizers``, deterministically.

    The pipeline matches ``bert-base-uncased`` (with ``lowercase=True``): ``BertNormalizer``
    (lowercasing and accent stripping follow ``lowercase``), ``BertPreTokenizer``, a
    ``WordPiece`` model with ``[UNK]`` and the ``##`` continuation prefix, a ``WordPiece``
    decoder, and a post-processor adding ``[CLS] $A [SEP]`` (pairs:
    ``[CLS] $A [SEP] $B:1 [SEP]:1``). Special tokens get the first ids: [PAD]=0, [UNK]=1,
    [CLS]=2, [SEP]=3, [MASK]=4.

    Determinism: ``tokenizers``' trainer assigns ids to the ``##``-prefixed single characters
    in hash-map order, and those ids break ties between equally frequent merges, so the same
    text can give different vocabularies from run to run (huggingface/tokenizers#1794). To
    avoid that, a first quick pass (no merges) finds these continuation characters, and the
    real pass registers them up front, in sorted order, so every id and every tie-break is
    fixed. The texts are therefore held in memory (they are read twice).

    The vocabulary may come out smaller than ``vocab_size`` when the text is too small to
    support that many merges.

    Args:
        texts: training texts (e.g. sentences).
        vocab_size: target vocabulary size, special tokens included.
        lowercase: uncased (``True``) or cased vocabulary.
        min_frequency: minimum count for a merge.
        progress: show a progress bar while reading the texts (``None``: iff stderr is a TTY
            or ``LMOBJECTIVES_PROGRESS=1``).
    """
    tokenizers_module("training a WordPiece tokenizer")
    vocab_size = operator.index(vocab_size)
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size: must exceed {len(SPECIAL_TOKENS)}, got {vocab_size}")
    min_frequency = operator.index(min_frequency)
    if min_frequency < 0:
        raise ValueError(f"min_frequency: must be >= 0, got {min_frequency}")
    corpus = _read_texts(texts, progress)
    with Progress(2, "train wordpiece", unit="pass", enabled=progress) as bar:
        probe = _train(
            corpus, list(SPECIAL_TOKENS), len(SPECIAL_TOKENS) + 1, min_frequency, lowercase
        )
        bar.update()  # (the probe learns the alphabet only)
        continuation = sorted(t for t in probe if t.startswith("##") and len(t) == 3)
        vocab = _train(
            corpus, [*SPECIAL_TOKENS, *continuation], vocab_size, min_frequency, lowercase
        )
        bar.update()
    ids = [vocab.get(tok) for tok in SPECIAL_TOKENS]
    if ids != list(range(len(SPECIAL_TOKENS))):
        raise RuntimeError(f"special token ids came out as {ids}, expected 0..4")
    # A fresh tokenizer over the trained vocabulary: the continuation characters were passed as
    # "special tokens" only to pin their ids; they must not be added tokens of the result.
    return wordpiece_tokenizer(vocab, lowercase)


def _read_texts(texts: Iterable[str], progress: bool | None) -> list[str]:
    """The training texts in a list (they are read twice), each checked to be a ``str``."""
    if isinstance(texts, str | bytes) or not isinstance(texts, Iterable):
        raise TypeError(f"texts: expected an iterable of str, got {type(texts).__name__}")
    length = len(texts) if isinstance(texts, Sequence) else None
    corpus: list[str] = []
    with Progress(length, "read texts", unit="text", enabled=progress) as bar:
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}]: expected str, got {type(text).__name__}")
            corpus.append(text)
            bar.update()
    return corpus


def _train(
    corpus: list[str], special_tokens: list[str], size: int, min_frequency: int, lowercase: bool
) -> dict[str, int]:
    """One training pass of a WordPiece vocabulary of (at most) ``size`` tokens."""
    tokenizers = tokenizers_module("training a WordPiece tokenizer")
    tok = bert_pipeline(
        tokenizers.models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"),
        lowercase,
    )
    trainer = tokenizers.trainers.WordPieceTrainer(
        vocab_size=size,
        min_frequency=min_frequency,
        show_progress=False,
        special_tokens=special_tokens,
        continuing_subword_prefix="##",
    )
    tok.train_from_iterator(corpus, trainer=trainer, length=len(corpus))
    return tok.get_vocab(with_added_tokens=False)
