"""Corpora verified end to end (issue 15): the manifest's checksum and recorded largest id,
ids re-checked on ``verify=True``, and every corruption a ``CorpusError`` naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lmobjectives import TokenCorpus
from lmobjectives.corpus import _format
from lmobjectives.errors import CorpusError, LMObjectivesError


@pytest.fixture(scope="module")
def saved(small_tokenizer, tmp_path_factory) -> Path:
    ids = np.array([5, 6, 7, 8, 9, 10, 900, 11], dtype=np.uint16)
    corpus = TokenCorpus(
        ids,
        np.array([0, 3, 8], dtype=np.int64),
        np.array([0, 2], dtype=np.int64),
        1000,
        small_tokenizer,
        source="integrity",
    )
    return corpus.save(tmp_path_factory.mktemp("integrity") / "corpus")


@pytest.fixture
def copy(saved, tmp_path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(saved, out)
    return out


def _manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def _write(path: Path, manifest: dict) -> None:
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_the_manifest_records_its_checksum_and_largest_id(saved):
    m = _manifest(saved)
    assert m["max_id"] == 900
    assert m["manifest_blake2b_256"] == _format.manifest_digest(m)
    for verify in (False, True):
        assert TokenCorpus.load(saved, verify=verify).num_tokens == 8
    assert issubclass(CorpusError, LMObjectivesError) and issubclass(CorpusError, ValueError)


@pytest.mark.parametrize("verify", [False, True])
def test_an_edited_vocab_size_never_loads(copy, verify):
    m = _manifest(copy)
    m["vocab_size"] = 800  # ids up to 900 are now outside it
    _write(copy, m)
    with pytest.raises(CorpusError, match=r"manifest\.json: (checksum mismatch|max_id)"):
        TokenCorpus.load(copy, verify=verify)
    m["vocab_size"] = 950  # still above the recorded max_id: only the checksum catches it
    _write(copy, m)
    with pytest.raises(CorpusError, match=r"manifest\.json: checksum mismatch"):
        TokenCorpus.load(copy, verify=verify)


def test_an_old_manifest_without_checksum_still_loads_and_verify_scans_the_ids(copy):
    m = _manifest(copy)
    del m["manifest_blake2b_256"], m["max_id"]
    _write(copy, m)
    assert TokenCorpus.load(copy, verify=True).num_tokens == 8  # old corpora keep loading
    m["vocab_size"] = 800
    _write(copy, m)
    with pytest.raises(
        CorpusError, match=r"ids\.npy: holds id 900, outside \[0, vocab_size = 800\)"
    ):
        TokenCorpus.load(copy, verify=True)


def test_a_max_id_outside_the_vocabulary_is_rejected(copy):
    m = _manifest(copy)
    m["max_id"] = 1000
    m["manifest_blake2b_256"] = _format.manifest_digest(m)
    _write(copy, m)
    with pytest.raises(CorpusError, match="max_id"):
        TokenCorpus.load(copy, verify=False)


@pytest.mark.parametrize("offset", range(8, 70))
def test_any_flipped_byte_in_an_npy_header_is_a_corpus_error(copy, offset):
    path = copy / "ids.npy"
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))
    m = _manifest(copy)
    m["files"]["ids.npy"]["blake2b_256"] = _format.file_digest(path)[1]  # size is unchanged
    m["manifest_blake2b_256"] = _format.manifest_digest(m)
    _write(copy, m)
    for mmap in (True, False):
        # A flip either leaves a header that still describes the data (it loads) or is a
        # CorpusError naming the file; never tokenize.TokenError, SyntaxError, MemoryError.
        errors = []
        try:
            TokenCorpus.load(copy, mmap=mmap, verify=False)
        except CorpusError as e:
            errors.append(str(e))
        assert all("ids.npy" in e for e in errors)


def test_a_header_claiming_2_40_elements_is_a_corpus_error_not_memory_error(copy):
    path = copy / "ids.npy"
    header = _format.npy_header(np.dtype(np.uint16), 1 << 40)
    data = path.read_bytes()
    path.write_bytes(header + data[len(header) :])
    for mmap in (False, True):
        with pytest.raises(CorpusError, match=r"ids\.npy"):
            TokenCorpus.load(copy, mmap=mmap, verify=False)


def test_a_deeply_nested_manifest_is_a_corpus_error(copy):
    (copy / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CorpusError, match=r"manifest\.json: not valid JSON"):
        TokenCorpus.load(copy)


def test_a_flipped_data_byte_is_caught_by_verify(copy):
    path = copy / "ids.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x7F
    path.write_bytes(bytes(data))
    with pytest.raises(CorpusError, match=r"ids\.npy: checksum mismatch"):
        TokenCorpus.load(copy, verify=True)
