"""Fuzzing corpus loading with corruptions (issue 15): any damage is a ``CorpusError`` naming
the file (or, for a change that leaves the files consistent, a corpus that loads and whose ids
are all inside the vocabulary); ``SentencePairDataset`` over fuzzed ids and arguments."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from fuzz_harness import budget, run
from hypothesis import given
from hypothesis import strategies as st
from strategies import hostile_int

from lmobjectives import SentencePairDataset, TokenCorpus
from lmobjectives.errors import CorpusError

FILES = ["ids.npy", "sentence_offsets.npy", "document_offsets.npy", "manifest.json"]


@pytest.fixture(scope="module")
def saved(small_tokenizer, tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 1000, size=400).astype(np.uint16)
    sent = np.arange(0, 401, 10, dtype=np.int64)
    docs = np.array([0, 10, 20, 30, 40], dtype=np.int64)
    corpus = TokenCorpus(ids, sent, docs, 1000, small_tokenizer, source="fuzz")
    return corpus.save(tmp_path_factory.mktemp("fuzz-corpus") / "corpus")


@st.composite
def corruption(draw):
    name = draw(st.sampled_from(FILES))
    kind = draw(st.sampled_from(["flip", "flip", "truncate", "extend", "json"]))
    return name, kind, draw(st.integers(0, 10**6)), draw(st.integers(1, 255))


def corrupt(path: Path, name: str, kind: str, where: int, xor: int) -> None:
    file = path / name
    data = bytearray(file.read_bytes())
    if kind == "flip":
        data[where % len(data)] ^= xor
    elif kind == "truncate":
        del data[where % len(data) :]
    elif kind == "extend":
        data += bytes([xor]) * (1 + where % 64)
    elif name == "manifest.json":
        m = json.loads(data)
        key = sorted(m)[where % len(m)]
        m[key] = [m[key]] * (where % 3) if where % 2 else {"x": m[key]}
        data = bytearray(json.dumps(m).encode())
    file.write_bytes(bytes(data))


@budget(400)
@given(c=corruption(), verify=st.booleans(), mmap=st.booleans())
def test_load_a_corrupted_corpus(saved, c, verify, mmap):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c"
        shutil.copytree(saved, path)
        corrupt(path, *c)

        def call():
            return TokenCorpus.load(path, verify=verify, mmap=mmap)

        name, kind = c[0], c[1]
        data_flip = name == "ids.npy" and kind == "flip"

        def check(corpus):
            ids = np.asarray(corpus.ids)
            # verify=False trusts the data bytes (documented): a flipped id may load there,
            # and the kernels check ids against the vocabulary when they read them.
            if verify or not data_flip:
                assert (ids < corpus.vocab_size).all(), "an id outside the vocabulary loaded"

        try:
            run("TokenCorpus.load (corrupted)", call, check)
        except CorpusError:  # pragma: no cover (run() counts it as clean)
            raise


@budget(300)
@given(
    max_seq_length=hostile_int(8, 64),
    cls=hostile_int(0, 999),
    sep=hostile_int(0, 999),
    index=hostile_int(0, 80),
    task=st.sampled_from(["nsp", "sop"]),
)
def test_sentence_pair_dataset(saved, max_seq_length, cls, sep, index, task):
    corpus = TokenCorpus.load(saved, verify=False)

    def call():
        ds = SentencePairDataset(
            corpus,
            task=task,
            max_seq_length=max_seq_length,
            cls_token_id=cls,
            sep_token_id=sep,
            seed=1,
        )
        return ds[index]

    def check(item):
        ids = np.asarray(item["input_ids"])
        assert len(ids) <= max_seq_length
        assert ((ids >= 0) & (ids < 1000)).all()
        assert cls is None or ids[0] == cls  # None: the tokenizer's [CLS]

    run("SentencePairDataset", call, check)
