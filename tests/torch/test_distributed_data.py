"""Sentence pairs and masks across ranks: 2 gloo processes (``mp.spawn`` on localhost) read a
:class:`SentencePairDataset` through ``DistributedSampler`` or through ``shard()``; the union of
their instances is the single-process dataset and every instance's masks equal the
single-process ones (sample keys are global)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmobjectives import MLMCollator, SentencePairDataset, TokenCorpus

from conftest import CLS, MASK, PAD, SEP, SPECIALS, VOCAB

EPOCH = 1


def _tokenizer():
    """conftest's small WordPiece vocabulary (a fixture cannot reach the spawned ranks)."""
    from tokenizers import Tokenizer, models

    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    vocab.update({f"w{i}": i for i in range(len(SPECIALS), VOCAB)})
    return Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))


def _dataset() -> SentencePairDataset:
    g = np.random.default_rng(4)
    docs = [list(g.integers(2, 25, size=int(g.integers(2, 10)))) for _ in range(80)]
    lengths = [n for d in docs for n in d]
    so = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    do = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
    ids = (np.arange(so[-1]) % 900 + 10).astype(np.uint16)
    corpus = TokenCorpus(ids, so, do, vocab_size=VOCAB, tokenizer=_tokenizer())
    ds = SentencePairDataset(corpus, "sop", max_seq_length=64, cls_token_id=CLS, sep_token_id=SEP)
    ds.set_epoch(EPOCH)
    return ds


def _collator() -> MLMCollator:
    c = MLMCollator(
        vocab_size=VOCAB, mask_token_id=MASK, pad_token_id=PAD, special_token_ids=[CLS, SEP], seed=9
    )
    c.set_epoch(EPOCH)
    return c


def _by_instance(loader) -> list[tuple[int, list[int], list[int]]]:
    """(idx, input ids, labels) of every row, padding cut."""
    out = []
    for b in loader:
        for row in range(len(b["idx"])):
            n = int(b["attention_mask"][row].sum())
            out.append(
                (
                    int(b["idx"][row]),
                    b["input_ids"][row, :n].tolist(),
                    b["labels"][row, :n].tolist(),
                )
            )
    return out


class KeepIdx:
    """The collator's batch plus the rows' sample keys (to match rows across processes)."""

    def __init__(self, collate: MLMCollator) -> None:
        self.collate = collate

    def __call__(self, examples):
        batch = self.collate(examples)
        batch["idx"] = np.asarray(examples["idx"])
        return batch


def _worker(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist
    from torch.utils.data import DataLoader, DistributedSampler

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        ds = _dataset()
        sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=5)
        sampler.set_epoch(EPOCH)
        by_sampler = DataLoader(ds, batch_size=8, sampler=sampler, collate_fn=KeepIdx(_collator()))
        shard = ds.shard(dist.get_rank(), dist.get_world_size())
        by_shard = DataLoader(shard, batch_size=8, shuffle=True, collate_fn=KeepIdx(_collator()))
        mine = {"sampler": _by_instance(by_sampler), "shard": _by_instance(by_shard)}
        everyone: list = [None] * world
        dist.all_gather_object(everyone, mine)
        if rank == 0:
            torch.save(everyone, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_see_the_single_process_instances_and_masks(tmp_path):
    import torch.multiprocessing as mp
    from torch.utils.data import DataLoader

    init = f"file://{tmp_path}/rendezvous"
    mp.spawn(_worker, args=(2, init, str(tmp_path / "rows.pt")), nprocs=2, join=True)
    ranks = torch.load(tmp_path / "rows.pt")

    ds = _dataset()
    single = {
        i: (ids, labels)
        for i, ids, labels in _by_instance(
            DataLoader(ds, batch_size=8, collate_fn=KeepIdx(_collator()))
        )
    }
    assert len(single) == len(ds)
    for how in ("sampler", "shard"):
        rows = [r for rank in ranks for r in rank[how]]
        assert {i for i, _, _ in rows} == set(single)  # the union is the whole pass
        if how == "shard":
            assert len(rows) == len(single)  # disjoint
        for i, ids, labels in rows:
            assert (ids, labels) == single[i], f"{how}: instance key {i}"
    # The masks are not trivially equal: two epochs differ.
    other = _collator()
    other.set_epoch(EPOCH + 1)
    moved = _by_instance(DataLoader(ds, batch_size=8, collate_fn=KeepIdx(other)))
    assert sum(single[i][1] != labels for i, _, labels in moved) > len(single) // 2
