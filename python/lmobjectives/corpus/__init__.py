"""Token corpora: flat token ids plus sentence and document offsets (CSR), memory-mapped on disk.

A :class:`TokenCorpus` holds three arrays::

    ids               1-D token ids (uint16 when the vocabulary fits, else uint32)
    sentence_offsets  int64, n_sentences + 1; sentence s is
                      ids[sentence_offsets[s]:sentence_offsets[s + 1]]
    document_offsets  int64, n_documents + 1, in sentences; document d is
                      sentences document_offsets[d]:document_offsets[d + 1]

plus the tokenizer that produced them. On disk a corpus is a directory of ``.npy`` files, the
tokenizer's ``tokenizer.json`` and a ``manifest.json`` recording counts, the byte size of every
file and its BLAKE2b-256 checksum; :meth:`TokenCorpus.load` memory-maps the arrays, so opening
even a large corpus is quick and its pages are shared between processes.

Corpora are built from Python strings (:meth:`TokenCorpus.from_texts`) or from text files
(:meth:`TokenCorpus.from_files`), tokenized by Hugging Face ``tokenizers`` in large multi-threaded
``encode_batch`` calls. Given ``out=``, or through :class:`TokenCorpusWriter`, a build streams
token ids and offsets straight into the final files, so a corpus larger than memory can be built
with memory bounded by one batch.

:meth:`TokenCorpus.default` is the embedded corpus: English prose from CPython's standard library
(help topics, docstrings, comments), extracted once from CPython 3.11.7 and shipped inside the
package with the BERT-uncased-style WordPiece vocabulary of 30,522 tokens trained on it (see
:mod:`lmobjectives.corpus._embedded_data`); it is tokenized on first use and cached, and is the
same on every Python version.

This package needs only NumPy to import; ``tokenizers`` (the ``corpus`` extra) is imported when a
tokenizer is trained, loaded or used. Its modules, by concern: ``_corpus`` (the
:class:`TokenCorpus` class), ``_encoder`` and ``_writer`` (tokenizing, in memory or streamed to
disk by :class:`TokenCorpusWriter`), ``_format`` (the directory format: ``.npy`` headers, the
manifest, checksums, atomic publishing), ``_wordpiece`` (:func:`train_wordpiece` and the BERT
pipeline), ``_default`` and ``_embedded_data`` (the embedded corpus: the shipped data, the cache,
:func:`default_corpus_fingerprint`), ``_tokenizers`` (the optional ``tokenizers`` dependency),
``_base`` (:class:`CorpusBase`: the counts and accessors every corpus shares), ``_sharded``
(:class:`ShardedTokenCorpus`: shards combined by a manifest, its global offsets memory-mapped
next to it; :meth:`TokenCorpus.load` opens either kind) and ``_sources`` (corpora from
datasets, Parquet, Arrow and JSON Lines).
"""

from lmobjectives.corpus._base import CorpusBase
from lmobjectives.corpus._corpus import TokenCorpus
from lmobjectives.corpus._default import (
    RECIPE_VERSION,
    default_cache_dir,
    default_corpus_fingerprint,
)
from lmobjectives.corpus._embedded_data import EmbeddedDataError
from lmobjectives.corpus._encoder import DEFAULT_BATCH_SIZE
from lmobjectives.corpus._format import FORMAT, FORMAT_VERSION
from lmobjectives.corpus._format import READABLE_FORMAT_VERSIONS as READABLE_FORMAT_VERSIONS
from lmobjectives.corpus._sharded import ShardedIds, ShardedTokenCorpus, ShardError
from lmobjectives.corpus._wordpiece import DEFAULT_VOCAB_SIZE, SPECIAL_TOKENS, train_wordpiece
from lmobjectives.corpus._writer import TokenCorpusWriter

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_VOCAB_SIZE",
    "FORMAT",
    "FORMAT_VERSION",
    "RECIPE_VERSION",
    "SPECIAL_TOKENS",
    "CorpusBase",
    "EmbeddedDataError",
    "ShardError",
    "ShardedIds",
    "ShardedTokenCorpus",
    "TokenCorpus",
    "TokenCorpusWriter",
    "default_cache_dir",
    "default_corpus_fingerprint",
    "train_wordpiece",
]
