"""Sentence-pair pretraining data: BERT's next-sentence prediction (NSP) and ALBERT's
sentence-order prediction (SOP), built in Rust from a :class:`~lmobjectives.TokenCorpus`.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np

from lmobjectives import _core
from lmobjectives._collator import check_choice, check_int
from lmobjectives._inputs import ExampleBatch, RaggedRows
from lmobjectives._seeding import EpochCell, check_num_threads, check_seed, resolve_num_threads
from lmobjectives.corpus._sharded import pair_rows as sharded_pair_rows
from lmobjectives.errors import MAX_ELEMENTS

__all__ = ["PairBatch", "SentencePairDataset"]

#: Sample keys (``idx``) are ``epoch << EPOCH_SHIFT | instance``: global (the same on every
#: rank and for every world size, see :meth:`SentencePairDataset.shard`) and unique across
#: epochs.
EPOCH_SHIFT = 40


class SentencePairDataset:
    """NSP or SOP instances of a :class:`~lmobjectives.TokenCorpus`, a map-style dataset.

    Item ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)``: the sample index of a
    whole pass (each instance's two token ranges and its label) is built once in Rust — in
    parallel, in a few dozen bytes per instance — and items are materialised from the
    memory-mapped corpus on demand. NSP follows Google BERT's ``create_instances_from_document``
    (target length, short with probability ``short_seq_prob``, drawn once per document and
    pass; sentences gathered into chunks; random split ``a_end``; B from a random *other*
    document with the unused sentences put back, or the true continuation; ``truncate_seq_pair``
    from the front or back at random); SOP follows ALBERT (B the true continuation, A and B
    swapped with probability ½). Deliberate fixes, documented in ``rust/core/src/pairs.rs``: a
    random document is never the current one (with a single document, chunks keep their true
    continuation), and SOP drops single-sentence chunks instead of leaking NSP pairs into it.
    ``recipe="google-bert"`` (NSP) and ``recipe="albert"`` (SOP or NSP) undo both fixes to
    reproduce the reference: the random document is drawn up to ten times among all documents,
    and SOP pairs a single-sentence chunk with a random document, labelled "swapped".

    An item is ``{"input_ids": [CLS] A [SEP] B [SEP], "token_type_ids": 0…0 1…1,
    <label_name>: 1 = random next (NSP) / swapped (SOP), "idx": sample key}`` with int64
    arrays; ``__getitems__`` (used by ``DataLoader``) returns a whole batch at once with the
    rows stored flat, which also reads as the list of those items (so ``transformers.Trainer``'s
    default ``remove_unused_columns=True`` works; it drops ``idx``, and masks are then keyed by
    batch and row). Pass the batches to an :class:`~lmobjectives.MLMCollator` (any masking
    unit) for ``BertForPreTraining``/``AlbertForPreTraining`` batches: it masks, pads and keeps
    the label; masks are keyed by ``idx``, so they are a pure function of (seed, epoch, item)
    too.

    Args:
        corpus: the :class:`~lmobjectives.TokenCorpus` (memory-mapped corpora stay on disk),
            or a :class:`~lmobjectives.ShardedTokenCorpus` (the same instances as one directory
            holding the same documents).
        task: ``"nsp"`` or ``"sop"``.
        max_seq_length: longest ``[CLS] A [SEP] B [SEP]`` (128).
        short_seq_prob: chance of a shorter target length (0.1).
        random_next_prob: NSP's chance of a random B (0.5).
        swap_prob: SOP's chance of swapping A and B (0.5).
        seed: the seed of every random choice (an int; ``None`` draws one).
        epoch: the pass to start with (see :meth:`set_epoch`).
        label_name: the label's key (``"next_sentence_label"`` for BERT;
            ``"sentence_order_label"`` for ALBERT, the default with ``task="sop"``).
        cls_token_id, sep_token_id: default from the corpus tokenizer's ``[CLS]``/``[SEP]``.
        num_threads: threads for building the index (default: all CPUs, 1 in workers).
        recipe: ``"lmobjectives"`` (default), ``"google-bert"`` (NSP only) or ``"albert"``;
            other recipes raise ``ValueError`` naming ``recipe``. The arguments above keep
            their meaning under every recipe (all three share Google's defaults).
    """

    def __init__(
        self,
        corpus: Any,
        task: Literal["nsp", "sop"] = "nsp",
        *,
        max_seq_length: int = 128,
        short_seq_prob: float = 0.1,
        random_next_prob: float = 0.5,
        swap_prob: float = 0.5,
        seed: int | None = 0,
        epoch: int = 0,
        label_name: str | None = None,
        cls_token_id: int | None = None,
        sep_token_id: int | None = None,
        num_threads: int | None = None,
        recipe: str = "lmobjectives",
    ) -> None:
        for name in ("ids", "sentence_offsets", "document_offsets"):
            if not hasattr(corpus, name):
                raise TypeError(f"corpus: expected a TokenCorpus, got {type(corpus).__name__}")
        self.corpus = corpus
        self.task = check_choice("task", task, ("nsp", "sop"))
        self.max_seq_length = check_int("max_seq_length", max_seq_length, 0, MAX_ELEMENTS)
        self.short_seq_prob = short_seq_prob
        self.random_next_prob = random_next_prob
        self.swap_prob = swap_prob
        checked = check_seed(seed)
        self.seed = checked if checked is not None else int.from_bytes(os.urandom(8), "little")
        if label_name is None:
            label_name = "sentence_order_label" if self.task == "sop" else "next_sentence_label"
        self.label_name = check_choice(
            "label_name", label_name, ("next_sentence_label", "sentence_order_label")
        )
        self.cls_token_id = self._special(cls_token_id, "[CLS]", "cls_token_id")
        self.sep_token_id = self._special(sep_token_id, "[SEP]", "sep_token_id")
        self.num_threads = check_num_threads(num_threads)
        if not isinstance(recipe, str):
            raise TypeError(f"recipe: expected a str, got {type(recipe).__name__}")
        self.recipe = _core.check_recipe(recipe, "pairs")
        self._rank, self._world = 0, 1
        self._epoch = -1
        self._index: dict[str, np.ndarray] = {}
        # The epoch set in the main process, read by copies in DataLoader workers.
        self._cell = EpochCell(slots=0)
        self.set_epoch(epoch)

    def _special(self, given: int | None, token: str, name: str) -> int:
        vocab = getattr(self.corpus, "vocab_size", None)
        hi = None if vocab is None else int(vocab) - 1
        if given is not None:
            return check_int(name, given, 0, hi)
        tok = getattr(self.corpus, "tokenizer", None)
        found = tok.token_to_id(token) if tok is not None else None
        if found is None:
            raise ValueError(f"{name}: the corpus tokenizer has no {token}; pass {name}")
        return check_int(name, found, 0, hi)

    # -- the pass ------------------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        self._sync()
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Builds pass ``epoch``: new chunks, pairs, truncations and order for the same corpus
        (what Google BERT's ``dupe_factor`` copies give, one per epoch). Copies in DataLoader
        workers (persistent ones included) follow: they rebuild the pass on their next item.
        ``transformers.Trainer`` does not call it (accelerate calls the sampler's instead):
        use :class:`lmobjectives.torch.integration.EpochCallback`."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch < 1 << 23:
            raise ValueError(f"epoch: expected an int in [0, 2**23), got {epoch!r}")
        self._build(epoch)
        self._cell.write(epoch, 0)

    def _sync(self) -> None:
        """Follows the epoch set in the main process (in a DataLoader worker's copy)."""
        _, epoch, _ = self._cell.read()
        if epoch != self._epoch:
            self._build(epoch)

    def _build(self, epoch: int) -> None:
        if epoch == self._epoch:
            return
        c = self.corpus
        self._index = _core.build_pair_index(
            # (A sharded corpus's ids are not one array: the index needs only their number.)
            np.asarray(c.ids) if isinstance(c.ids, np.ndarray) else len(c.ids),
            np.asarray(c.sentence_offsets, dtype=np.int64),
            np.asarray(c.document_offsets, dtype=np.int64),
            task=self.task,
            max_seq_length=self.max_seq_length,
            short_seq_prob=self.short_seq_prob,
            random_next_prob=self.random_next_prob,
            swap_prob=self.swap_prob,
            seed=self.seed,
            epoch=epoch,
            num_threads=resolve_num_threads(self.num_threads),
            recipe=self.recipe,
        )
        self._epoch = epoch

    def shard(self, rank: int, world_size: int) -> SentencePairDataset:
        """This dataset's share for rank ``rank`` of ``world_size`` (items ``rank``,
        ``rank + world_size``, …): disjoint, deterministic, covering every instance once.

        The shard's items keep their global sample keys (``idx`` names the instance, not its
        place in the shard), so an instance's masks are a function of (seed, epoch, instance)
        whatever the rank and the world size. The shard is a view: it shares the epoch with
        this dataset."""
        for name, v in (("rank", rank), ("world_size", world_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name}: expected a non-negative int, got {v!r}")
        if world_size < 1 or rank >= world_size:
            raise ValueError(f"rank: need 0 <= rank < world_size, got {rank}/{world_size}")
        view = object.__new__(SentencePairDataset)
        view.__dict__.update(self.__dict__)
        view._rank = self._rank + rank * self._world
        view._world = self._world * world_size
        return view

    # -- items ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        self._sync()
        n = len(self._index["label"])
        return max(0, (n - self._rank + self._world - 1) // self._world)

    def _rows(self, items: Any, pass_: tuple[Any, int] | None = None) -> tuple[np.ndarray, ...]:
        """The rows of ``items`` in this pass, or in ``pass_`` (an index and its epoch, the
        items then instances of the whole pass: no shard)."""
        rank, world = self._rank, self._world
        if pass_ is None:
            self._sync()
            pass_ = (self._index, self._epoch)
        else:
            rank, world = 0, 1
        idx, epoch = pass_
        ids = self.corpus.ids
        if not isinstance(ids, np.ndarray):  # a sharded corpus: gathered from its shards
            return sharded_pair_rows(
                ids,
                idx,
                [int(i) for i in items],
                cls_token_id=self.cls_token_id,
                sep_token_id=self.sep_token_id,
                rank=rank,
                world=world,
                epoch=epoch,
            )
        return _core.pair_rows(
            np.asarray(ids),  # a view: memory-mapped corpora stay on disk
            idx["a"],
            idx["b"],
            idx["label"],
            items,
            cls_token_id=self.cls_token_id,
            sep_token_id=self.sep_token_id,
            rank=rank,
            world=world,
            epoch=epoch,
        )

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = check_int("index", i)
        if not -(2**63) <= i < 2**63:
            raise IndexError(f"index: {i} is out of range for {len(self)} items")
        ids, types, _, labels, keys = self._rows([i])
        return {
            "input_ids": ids,
            "token_type_ids": types,
            self.label_name: int(labels[0]),
            "idx": int(keys[0]),
        }

    def __getitems__(self, indices: Any) -> ExampleBatch:
        """A whole batch in one call, stored by columns (``input_ids``/``token_type_ids`` as
        :class:`~lmobjectives._inputs.RaggedRows`, the labels and sample keys as arrays) for
        the collators; it also reads as the list of ``self[i]`` (``batch[j]``, iteration), as
        code written for ``__getitem__`` expects.

        The indices are checked here, but the rows are made when first read: an
        :class:`~lmobjectives.MLMCollator` with token masking builds, masks and pads them in
        one pass straight into its outputs (the same batch, bit for bit, as masking the
        materialised rows)."""
        if isinstance(self.corpus.ids, np.ndarray):
            self._sync()
            items, keys = _core.pair_items(
                len(self._index["label"]),
                _fast_indices(indices),
                rank=self._rank,
                world=self._world,
                epoch=self._epoch,
            )
            return PairBatch(self, items, keys)
        return self._materialised(indices if isinstance(indices, list) else list(indices))

    def _materialised(self, indices: Any, pass_: tuple[Any, int] | None = None) -> ExampleBatch:
        ids, types, offsets, labels, keys = self._rows(indices, pass_)
        return ExampleBatch(
            {
                "input_ids": RaggedRows(ids, offsets),
                "token_type_ids": RaggedRows(types, offsets),
                self.label_name: labels,
                "idx": keys,
            }
        )

    def label_balance(self) -> float:
        """The share of label 1 among this pass's instances."""
        self._sync()
        labels = self._index["label"][self._rank :: self._world]
        return float(labels.mean()) if labels.size else 0.0

    # -- state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "epoch": self._epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or {"seed", "epoch"} - state.keys():
            raise ValueError("state: expected a dict with 'seed' and 'epoch'")
        seed = check_seed(state["seed"])
        if seed is None:
            raise ValueError("state: seed must be an int")
        if seed != self.seed:
            self.seed, self._epoch = seed, -1
        self.set_epoch(state["epoch"])

    def __repr__(self) -> str:
        return (
            f"SentencePairDataset(task={self.task!r}, max_seq_length={self.max_seq_length}, "
            f"short_seq_prob={self.short_seq_prob}, recipe={self.recipe!r}, seed={self.seed}, "
            f"epoch={self._epoch}, "
            f"instances={len(self)}, shard={self._rank}/{self._world})"
        )


class PairBatch(ExampleBatch):
    """What :meth:`SentencePairDataset.__getitems__` returns: the batch's instances, their rows
    made when first read. Reading its columns (``batch["input_ids"]``, ``batch[j]``,
    iteration, pickling) materialises them as :class:`~lmobjectives._inputs.RaggedRows`, as an
    :class:`~lmobjectives._inputs.ExampleBatch` holds them; an
    :class:`~lmobjectives.MLMCollator` with token masking instead writes the masked, padded
    batch in one pass (:meth:`mlm_arrays`), never making the ragged rows."""

    __slots__ = ("_columns", "_dataset", "_index", "epoch", "items", "sample_keys")

    def __init__(self, dataset: SentencePairDataset, items: np.ndarray, keys: np.ndarray) -> None:
        self._columns: dict[str, Any] | None = None
        self._dataset = dataset
        # The pass the items belong to (a later set_epoch builds another index).
        self._index = dataset._index
        self.epoch = dataset._epoch
        self.items = items
        self.sample_keys = keys

    @property
    def columns(self) -> dict[str, Any]:
        if self._columns is None:
            pass_ = (self._index, self.epoch)
            self._columns = self._dataset._materialised(self.items, pass_).columns
        return self._columns

    @columns.setter
    def columns(self, value: dict[str, Any]) -> None:
        self._columns = value

    @property
    def materialised(self) -> bool:
        """Whether the ragged rows have been made."""
        return self._columns is not None

    def __len__(self) -> int:
        return len(self.items)

    def keys(self) -> Any:  # type: ignore[override]
        if self._columns is not None:
            return self._columns.keys()
        return ("input_ids", "token_type_ids", self._dataset.label_name, "idx")

    @property
    def label_name(self) -> str:
        return self._dataset.label_name

    def mlm_arrays(self, masker: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        """``(input_ids, attention_mask, labels, token_type_ids, pair labels)`` of the batch
        masked by ``masker`` (an ``MlmMasker`` with token units), keyed by the sample keys,
        padded as ``kwargs`` say (``seed``, ``epoch``, padding, ``dtype``, ``num_threads``,
        ``allocate``), in one pass."""
        ds, index = self._dataset, self._index
        return _core.pair_mlm_batch(
            np.asarray(ds.corpus.ids),
            index["a"],
            index["b"],
            index["label"],
            self.items,
            self.sample_keys,
            masker,
            cls_token_id=ds.cls_token_id,
            sep_token_id=ds.sep_token_id,
            **kwargs,
        )

    def __reduce__(self) -> Any:
        return (ExampleBatch, (self.columns,))

    def __repr__(self) -> str:
        state = "materialised" if self.materialised else "rows not made yet"
        return f"PairBatch({len(self)} examples, {state})"


def _fast_indices(indices: Any) -> Any:
    """``indices`` as the binding reads fastest: a ``range`` or a long list of non-negative
    ints as a uint64 array (read at once), anything else as a list (checked one by one, which
    names a bad entry)."""
    if isinstance(indices, range):
        if len(indices) and min(indices[0], indices[-1]) >= 0:
            return np.arange(indices.start, indices.stop, indices.step, dtype=np.uint64)
        return list(indices)
    if not isinstance(indices, list):
        indices = list(indices)
    if len(indices) > 64 and all(type(i) is int for i in indices):
        try:
            arr = np.array(indices, dtype=np.int64)
        except OverflowError:
            return indices
        if arr.min() >= 0:
            return arr.astype(np.uint64)
    return indices
