"""Sharded corpora: shards built on their own, combined by a manifest, read exactly like one
directory holding the same documents (same samples, batches and keys for the same seed)."""

from __future__ import annotations

import importlib.util
import itertools
import json
import pickle
import shutil
import tracemalloc
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from lmobjectives import (
    CorpusChunks,
    CorpusError,
    SentencePairDataset,
    ShardedTokenCorpus,
    ShardError,
    TokenCorpus,
    neighbour_pairs,
)
from lmobjectives.corpus import CorpusBase

from conftest import CLS, SEP, SPECIALS

ROOT = Path(__file__).resolve().parents[2]
CUTS = (0, 23, 24, 61, 90)  # shard boundaries, in documents (one shard of a single document)


def documents(n: int = 90, seed: int = 0) -> tuple[list[list[str]], list[str]]:
    g = np.random.default_rng(seed)
    docs = [
        [
            " ".join(f"w{w}" for w in g.integers(5, 1000, size=int(g.integers(1, 25))))
            for _ in range(int(g.integers(1, 12)))
        ]
        for _ in range(n)
    ]
    return docs, [f"topic{d % 7}" for d in range(n)]


@pytest.fixture(scope="module")
def built(tmp_path_factory, small_tokenizer):
    """``(single, sharded, shard directories, root)``: the same documents in one directory and
    in four shards (combined with a saved manifest)."""
    root = tmp_path_factory.mktemp("sharded")
    docs, labels = documents()
    single = TokenCorpus.from_texts(
        docs, small_tokenizer, labels=labels, progress=False, out=root / "single"
    )
    dirs = []
    for i, (lo, hi) in enumerate(itertools.pairwise(CUTS)):
        TokenCorpus.from_texts(
            docs[lo:hi],
            small_tokenizer,
            labels=labels[lo:hi],
            progress=False,
            out=root / "shards" / f"{i:02d}",
        )
        dirs.append(root / "shards" / f"{i:02d}")
    TokenCorpus.combine(dirs, out=root / "combined")
    sharded = ShardedTokenCorpus.load(root / "combined")
    return single, sharded, dirs, root


def test_the_sharded_corpus_reads_as_the_single_directory(built):
    single, sharded, _, _ = built
    assert len(sharded.shards) == 4
    assert (sharded.num_tokens, sharded.num_sentences, sharded.num_documents) == (
        single.num_tokens,
        single.num_sentences,
        single.num_documents,
    )
    np.testing.assert_array_equal(sharded.sentence_offsets, single.sentence_offsets)
    np.testing.assert_array_equal(sharded.document_offsets, single.document_offsets)
    np.testing.assert_array_equal(np.asarray(sharded.ids), np.asarray(single.ids))
    assert sharded.ids.dtype == single.ids.dtype and len(sharded.ids) == single.num_tokens
    assert sharded.document_labels == single.document_labels
    assert sharded.vocab_size == single.vocab_size
    for d in (0, 23, 24, 60, 61, -1):
        np.testing.assert_array_equal(sharded.document(d), single.document(d))
        for x, y in zip(sharded.document_sentences(d), single.document_sentences(d), strict=True):
            np.testing.assert_array_equal(x, y)
    for s in (0, 1, int(single.document_offsets[24]), -1):
        np.testing.assert_array_equal(sharded.sentence(s), single.sentence(s))
    np.testing.assert_array_equal(sharded.token_counts(), single.token_counts())
    with pytest.raises(IndexError, match="document index out of range"):
        sharded.document(single.num_documents)
    # Both kinds share CorpusBase: the same statistics, plus the number of shards.
    assert isinstance(sharded, CorpusBase) and isinstance(single, CorpusBase)
    stats, ref = sharded.stats(), single.stats()
    assert stats.pop("shards") == 4 and stats.pop("path") == str(sharded.path)
    assert ref.pop("path") == str(single.path) and stats.pop("source") == ref.pop("source") == ""
    assert stats == ref


def test_ids_index_globally_across_shards(built):
    single, sharded, _, _ = built
    ids, ref = sharded.ids, np.asarray(single.ids)
    boundary = int(sharded.ids.starts[1])  # where shard 1 starts
    for sl in (
        slice(0, 5),
        slice(boundary - 3, boundary + 4),
        slice(None),
        slice(boundary - 10, None, 3),
        slice(-7, None),
    ):
        np.testing.assert_array_equal(ids[sl], ref[sl])
    pos = np.array([[0, boundary], [boundary - 1, len(ref) - 1]])
    np.testing.assert_array_equal(ids[pos], ref[pos])
    assert ids[-1] == ref[-1] and ids[boundary] == ref[boundary]
    third = int(sharded.ids.starts[2])
    within = ids[third + 1 : third + 5]  # one shard: a view of its ids, no copy
    assert np.shares_memory(within, sharded.shards[2].ids)
    ranges = np.array([[boundary - 3, boundary + 2], [5, 5], [third, third + 4], [0, 4]])
    buffer, local = ids.gather_ranges(ranges)
    np.testing.assert_array_equal(buffer, np.concatenate([ref[lo:hi] for lo, hi in ranges]))
    np.testing.assert_array_equal(local, [[0, 5], [5, 5], [5, 9], [9, 13]])
    with pytest.raises(IndexError, match="token range"):
        ids.gather_ranges(np.array([[len(ref) - 1, len(ref) + 1]]))
    with pytest.raises(IndexError):
        ids[len(ref)]
    with pytest.raises(IndexError):
        ids[np.array([len(ref)])]


@pytest.mark.parametrize("task", ["nsp", "sop"])
def test_pair_datasets_give_the_same_samples_and_batches(built, task):
    single, sharded, _, _ = built
    a = SentencePairDataset(single, task, seed=5, max_seq_length=48)
    b = SentencePairDataset(sharded, task, seed=5, max_seq_length=48)
    for epoch in (0, 1):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        assert len(a) == len(b) > 50
        for name in ("a", "b", "label"):
            np.testing.assert_array_equal(a._index[name], b._index[name])
        items = [0, 3, len(a) - 1, -2, 17, 17]
        x, y = a.__getitems__(items), b.__getitems__(items)
        assert list(x) and len(x) == len(y)
        for row_a, row_b in zip(x, y, strict=True):
            assert row_a.keys() == row_b.keys()
            for key in row_a:
                np.testing.assert_array_equal(row_a[key], row_b[key])
        item_a, item_b = a[7], b[7]
        for key in item_a:
            np.testing.assert_array_equal(item_a[key], item_b[key])
    # Ranks of a sharded corpus keep global keys and the same instances.
    ra, rb = a.shard(1, 3), b.shard(1, 3)
    assert len(ra) == len(rb)
    for row_a, row_b in zip(ra.__getitems__([0, 1, -1]), rb.__getitems__([0, 1, -1]), strict=True):
        for key in row_a:
            np.testing.assert_array_equal(row_a[key], row_b[key])
    with pytest.raises(IndexError, match="out of range"):
        b.__getitems__([len(b)])
    with pytest.raises(IndexError, match="out of range"):
        a.__getitems__([len(a)])


def test_a_pair_spanning_two_shards_is_gathered_from_both(built):
    """NSP's random B comes from any document: some pairs take A and B from different shards,
    and they are built from the right tokens."""
    single, sharded, _, _ = built
    ds = SentencePairDataset(sharded, "nsp", seed=1, max_seq_length=48)
    starts = sharded.ids.starts
    shard_of = lambda pos: int(np.searchsorted(starts, pos, side="right")) - 1  # noqa: E731
    crossing = [
        i
        for i in range(len(ds))
        if shard_of(ds._index["a"][i, 0]) != shard_of(ds._index["b"][i, 0])
    ]
    assert crossing
    ids = np.asarray(single.ids)
    for i in crossing[:10]:
        (alo, ahi), (blo, bhi) = ds._index["a"][i], ds._index["b"][i]
        row = ds[i]["input_ids"]
        expected = [CLS, *ids[alo:ahi], SEP, *ids[blo:bhi], SEP]
        np.testing.assert_array_equal(row, expected)


@pytest.mark.parametrize(
    "options", [{}, {"separator": [SEP]}, {"sentence_starts": True}, {"drop_last": False}]
)
def test_corpus_chunks_give_the_same_chunks(built, options):
    single, sharded, _, _ = built
    a, b = CorpusChunks(single, 37, **options), CorpusChunks(sharded, 37, **options)
    assert len(a) == len(b) > 20
    items = list(range(len(a)))
    x, y = a.__getitems__(items), b.__getitems__(items)
    keys = ["input_ids", "idx"] + (["sentence_starts"] if options.get("sentence_starts") else [])
    for key in keys:
        for row_x, row_y in zip(x, y, strict=True):
            np.testing.assert_array_equal(row_x[key], row_y[key])
    for i in (0, 5, len(a) - 1):
        for key, value in a[i].items():
            np.testing.assert_array_equal(value, b[i][key])


def test_neighbour_pairs_and_document_ranges(built):
    single, sharded, _, _ = built
    assert neighbour_pairs(sharded, [0, 5, 300]) == neighbour_pairs(single, [0, 5, 300])
    part = sharded.documents(20, 65)  # parts of four shards
    ref = single.documents(20, 65)
    assert isinstance(part, ShardedTokenCorpus) and len(part.shards) == 4
    np.testing.assert_array_equal(part.sentence_offsets, ref.sentence_offsets)
    np.testing.assert_array_equal(part.document_offsets, ref.document_offsets)
    np.testing.assert_array_equal(np.asarray(part.ids), np.asarray(ref.ids))
    assert part.document_labels == ref.document_labels
    with pytest.raises(ValueError, match="start, stop"):
        sharded.documents(5, 5)


def test_pickling_reopens_the_shards(built):
    single, sharded, _, _ = built
    clone = pickle.loads(pickle.dumps(sharded))
    assert clone.path == sharded.path
    np.testing.assert_array_equal(clone.sentence_offsets, single.sentence_offsets)
    np.testing.assert_array_equal(np.asarray(clone.ids), np.asarray(single.ids))
    assert len(pickle.dumps(sharded)) < 10_000  # by path: no ids, no offsets
    ds = pickle.loads(pickle.dumps(SentencePairDataset(sharded, "nsp", seed=2)))
    ref = SentencePairDataset(single, "nsp", seed=2)
    np.testing.assert_array_equal(ds[3]["input_ids"], ref[3]["input_ids"])


def test_combine_in_memory_and_from_objects(built, small_tokenizer):
    single, _, dirs, _ = built
    docs, labels = documents()
    shards = [
        TokenCorpus.from_texts(docs[lo:hi], small_tokenizer, labels=labels[lo:hi], progress=False)
        for lo, hi in itertools.pairwise(CUTS)
    ]
    combined = TokenCorpus.combine(shards)
    assert combined.path is None
    np.testing.assert_array_equal(np.asarray(combined.ids), np.asarray(single.ids))
    with pytest.raises(ShardError, match=r"shards\[0\]: not a whole corpus on disk"):
        combined.save(dirs[0].parent.parent / "nope")
    mixed = TokenCorpus.combine([dirs[0], shards[1]])
    assert mixed.num_documents == CUTS[2]


def test_the_manifest_moves_with_its_shards(built, tmp_path):
    single, _, _, root = built
    shutil.copytree(root / "shards", tmp_path / "shards")
    shutil.copytree(root / "combined", tmp_path / "combined")
    moved = ShardedTokenCorpus.load(tmp_path / "combined")
    assert moved.shards[0].path == tmp_path / "combined" / ".." / "shards" / "00"
    np.testing.assert_array_equal(moved.document_offsets, single.document_offsets)


def test_mismatched_vocabularies_are_rejected_naming_the_shard(built, small_tokenizer, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    _, _, dirs, _ = built
    # Same size, two tokens swapped.
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    vocab.update({f"w{i}": i for i in range(len(SPECIALS), 1000)})
    vocab["w5"], vocab["w6"] = 6, 5
    swapped = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    swapped.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    other = TokenCorpus.from_texts([["w5 w6 w7"]], swapped, progress=False, out=tmp_path / "o")
    with pytest.raises(ShardError, match=r"shards\[2\] \(.*o\): vocabulary differs") as info:
        TokenCorpus.combine([dirs[0], dirs[1], tmp_path / "o"])
    assert info.value.shard == 2 and info.value.path == other.path
    assert isinstance(info.value, ValueError)
    assert "'w5'" in str(info.value)
    # A different size.
    small = Tokenizer(models.WordLevel({"[UNK]": 0, "[CLS]": 1, "a": 2}, unk_token="[UNK]"))
    small.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    TokenCorpus.from_texts([["a a"]], small, progress=False, out=tmp_path / "s")
    with pytest.raises(ShardError, match=r"shards\[1\] .*vocabulary of 3 tokens"):
        TokenCorpus.combine([dirs[0], tmp_path / "s"])
    # Labels on some shards only.
    TokenCorpus.from_texts([["w7 w8"]], small_tokenizer, progress=False, out=tmp_path / "u")
    with pytest.raises(ShardError, match=r"shards\[1\] .*has no document labels"):
        TokenCorpus.combine([dirs[0], tmp_path / "u"])


def test_missing_or_replaced_shards_are_named(built, small_tokenizer, tmp_path):
    _, _, dirs, root = built
    with pytest.raises(ShardError, match=r"shards\[1\] \(.*nowhere\): missing") as info:
        TokenCorpus.combine([dirs[0], tmp_path / "nowhere"])
    assert info.value.shard == 1
    with pytest.raises(TypeError, match=r"shards\[0\]: expected a TokenCorpus"):
        TokenCorpus.combine([3])
    with pytest.raises(ValueError, match="shards: no shards"):
        TokenCorpus.combine([])
    shutil.copytree(root / "shards", tmp_path / "shards")
    shutil.copytree(root / "combined", tmp_path / "combined")
    shutil.rmtree(tmp_path / "shards" / "02")
    with pytest.raises(ShardError, match=r"shards\[2\] \(.*02\): missing"):
        ShardedTokenCorpus.load(tmp_path / "combined")
    # A shard rebuilt with other documents (same counts or not) is not the one recorded.
    docs, labels = documents(seed=1)
    TokenCorpus.from_texts(
        docs[24:61],
        small_tokenizer,
        labels=labels[24:61],
        progress=False,
        out=tmp_path / "shards" / "02",
    )
    with pytest.raises(ShardError, match=r"shards\[2\] .*(manifest recorded|rebuilt or replaced)"):
        ShardedTokenCorpus.load(tmp_path / "combined")
    with pytest.raises(FileNotFoundError):
        ShardedTokenCorpus.load(tmp_path / "none")
    with pytest.raises(ValueError, match="format must be"):
        ShardedTokenCorpus.load(dirs[0])  # an ordinary corpus, not a sharded manifest
    err = pickle.loads(pickle.dumps(ShardError(3, Path("x"), "missing")))
    assert (err.shard, err.path, str(err)) == (3, Path("x"), "shards[3] (x): missing")


def test_token_corpus_load_opens_either_kind(built):
    single, _, dirs, root = built
    opened = TokenCorpus.load(root / "combined")
    assert type(opened) is ShardedTokenCorpus
    assert opened.path == root / "combined" and len(opened.shards) == 4
    np.testing.assert_array_equal(opened.sentence_offsets, single.sentence_offsets)
    assert opened.offsets_mapped
    assert isinstance(ShardedTokenCorpus.load(root / "combined"), ShardedTokenCorpus)
    # mmap and verify reach the sharded load: mmap=False reads the offsets into memory.
    in_memory = TokenCorpus.load(root / "combined", mmap=False)
    assert type(in_memory) is ShardedTokenCorpus and not in_memory.offsets_mapped
    np.testing.assert_array_equal(in_memory.document_offsets, single.document_offsets)
    # Control: an ordinary directory is still a TokenCorpus, the same as before.
    plain = TokenCorpus.load(dirs[0])
    assert type(plain) is TokenCorpus and plain.path == dirs[0]
    assert type(TokenCorpus.load(root / "single")) is TokenCorpus
    # A sharded manifest is not a shard.
    with pytest.raises(ShardError, match=r"shards\[1\] .*not a valid corpus"):
        TokenCorpus.combine([dirs[0], root / "combined"])


def test_the_global_offsets_are_files_next_to_the_manifest(built):
    single, sharded, _, root = built
    manifest = json.loads((root / "combined" / "manifest.json").read_text())
    assert set(manifest["offsets"]) == {"sentence_offsets.npy", "document_offsets.npy"}
    for name, ref in (
        ("sentence_offsets.npy", single.sentence_offsets),
        ("document_offsets.npy", single.document_offsets),
    ):
        on_disk = np.load(root / "combined" / name)
        np.testing.assert_array_equal(on_disk, ref)
        assert manifest["offsets"][name]["bytes"] == (root / "combined" / name).stat().st_size
    assert sharded.offsets_mapped and isinstance(sharded.sentence_offsets, np.memmap)
    assert not (root / "combined" / "ids.npy").exists()  # offsets only, never token data
    # combine(out=) returns the mapped corpus too; in memory it holds them in memory.
    assert TokenCorpus.combine(sharded.shards).offsets_mapped is False
    clone = pickle.loads(pickle.dumps(sharded))
    assert clone.offsets_mapped and len(pickle.dumps(sharded)) < 10_000


def test_document_ranges_keep_mapped_offsets_and_pickle_by_range(built):
    single, sharded, _, _ = built
    for start, stop, mapped in ((0, 70, True), (0, 90, True), (30, 70, False), (23, 24, False)):
        part, ref = sharded.documents(start, stop), single.documents(start, stop)
        assert part.offsets_mapped is mapped, (start, stop)
        np.testing.assert_array_equal(part.sentence_offsets, ref.sentence_offsets)
        np.testing.assert_array_equal(part.document_offsets, ref.document_offsets)
        np.testing.assert_array_equal(np.asarray(part.ids), np.asarray(ref.ids))
        back = pickle.loads(pickle.dumps(part))
        assert len(pickle.dumps(part)) < 2_000  # the manifest's path and the range
        np.testing.assert_array_equal(back.sentence_offsets, ref.sentence_offsets)
        assert back.document_labels == ref.document_labels
    nested = sharded.documents(10, 80).documents(5, 40)
    np.testing.assert_array_equal(
        pickle.loads(pickle.dumps(nested)).document_offsets,
        single.documents(15, 50).document_offsets,
    )


def _copy_tree(root: Path, to: Path) -> Path:
    shutil.copytree(root / "shards", to / "shards")
    shutil.copytree(root / "combined", to / "combined")
    return to / "combined"


def test_damaged_global_offsets_are_named(built, tmp_path):
    single, _, _, root = built
    combined = _copy_tree(root, tmp_path)
    path = combined / "sentence_offsets.npy"
    data = bytearray(path.read_bytes())
    good = bytes(data)
    # One value inside a shard changed (the same size): only the checksum sees it.
    data[128 + 8 * 5] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(CorpusError, match=r"sentence_offsets\.npy: checksum mismatch"):
        TokenCorpus.load(combined)
    assert issubclass(CorpusError, ValueError)
    # A shard boundary changed: caught without the checksum (verify=False), naming the shard.
    data = bytearray(good)
    at = int(single.document_offsets[CUTS[1]])  # the first sentence of shards[1]
    data[128 + 8 * at] ^= 2
    path.write_bytes(bytes(data))
    with pytest.raises(CorpusError, match=r"sentence_offsets\.npy: offset .* shards\[1\]"):
        ShardedTokenCorpus.load(combined, verify=False)
    path.write_bytes(good[:-8])
    with pytest.raises(CorpusError, match=r"sentence_offsets\.npy: size .* does not match"):
        ShardedTokenCorpus.load(combined, verify=False)
    path.write_bytes(good)
    (combined / "document_offsets.npy").unlink()
    with pytest.raises(CorpusError, match=r"document_offsets\.npy: missing"):
        TokenCorpus.load(combined)
    manifest = json.loads((combined / "manifest.json").read_text())
    manifest["offsets"]["document_offsets.npy"] = {"bytes": "x"}
    (combined / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"manifest\.json: offsets must give"):
        TokenCorpus.load(combined)


def test_a_manifest_without_offsets_files_still_loads(built, tmp_path):
    single, _, _, root = built
    combined = _copy_tree(root, tmp_path)
    manifest = json.loads((combined / "manifest.json").read_text())
    del manifest["offsets"]  # as written before the offsets were saved with the manifest
    (combined / "manifest.json").write_text(json.dumps(manifest))
    for name in ("sentence_offsets.npy", "document_offsets.npy"):
        (combined / name).unlink()
    old = TokenCorpus.load(combined)
    assert type(old) is ShardedTokenCorpus and not old.offsets_mapped
    np.testing.assert_array_equal(old.sentence_offsets, single.sentence_offsets)
    np.testing.assert_array_equal(old.document_offsets, single.document_offsets)
    # Saving it again writes the files; it then reads its offsets from them.
    old.save(combined, overwrite=True)
    assert old.offsets_mapped and (combined / "sentence_offsets.npy").is_file()
    np.testing.assert_array_equal(old.document_offsets, single.document_offsets)


def test_loading_a_saved_sharded_corpus_holds_no_offsets_in_memory(small_tokenizer, tmp_path):
    """tracemalloc counts NumPy's allocations: opening a sharded corpus whose offsets are files
    allocates far less than its offsets' size; the control (the same manifest without the
    files, offsets rebuilt in memory) allocates at least their size."""
    g = np.random.default_rng(0)
    dirs = []
    for i in range(2):
        lengths = g.integers(1, 4, size=150_000)
        sentence_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        document_offsets = np.arange(0, 150_001, 5, dtype=np.int64)
        ids = g.integers(5, 1000, size=int(sentence_offsets[-1])).astype(np.uint16)
        corpus = TokenCorpus(ids, sentence_offsets, document_offsets, 1000, small_tokenizer)
        dirs.append(corpus.save(tmp_path / f"s{i}"))
    TokenCorpus.combine(dirs, out=tmp_path / "combined")
    offsets_bytes = 8 * (300_001 + 60_001)

    def peak() -> int:
        tracemalloc.start()
        try:
            corpus = TokenCorpus.load(tmp_path / "combined", verify=False)
            assert corpus.num_sentences == 300_000
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    mapped = peak()
    assert mapped < offsets_bytes / 4, (mapped, offsets_bytes)
    manifest = json.loads((tmp_path / "combined" / "manifest.json").read_text())
    del manifest["offsets"]
    (tmp_path / "combined" / "manifest.json").write_text(json.dumps(manifest))
    assert peak() >= offsets_bytes  # control


def _scale_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "measure_corpus_scale", ROOT / "tools" / "measure_corpus_scale.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_scale_measurement_runs_at_a_small_scale(tmp_path):
    """The code path of ``tools/measure_corpus_scale.py`` (the docs' 10^8/10^9 table) on 30,000
    tokens: both layouts measured in fresh processes, their NSP indexes identical."""
    tool = _scale_tool()
    rows = tool.run(30_000, 3, tmp_path / "scale", keep=False)
    assert [r["layout"] for r in rows] == ["single", "sharded"]
    assert rows[0]["index_blake2b"] == rows[1]["index_blake2b"]
    assert rows[0]["instances"] == rows[1]["instances"] > 100
    assert 30_000 <= rows[0]["tokens"] < 30_000 + 60 * 40
    assert rows[0]["peak_rss_mib"] > 0
    assert not (tmp_path / "scale").exists()
    assert "| 3 shards |" in tool.table(rows)
