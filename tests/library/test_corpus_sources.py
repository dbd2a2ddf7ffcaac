"""Corpora from datasets and table files: Dataset, IterableDataset, Parquet, Arrow and JSONL of
the same rows give the same corpus, for every num_proc, streaming (rows read lazily, in
batches)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from lmobjectives import MissingDependencyError, TokenCorpus
from lmobjectives.corpus import _encoder
from lmobjectives.corpus._default import fingerprint
from lmobjectives.corpus._format import CHECKSUM_KEY, IDS_FILE, read_manifest

datasets = pytest.importorskip("datasets")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def rows(n: int = 150, seed: int = 0) -> list[dict[str, object]]:
    """Free text (split into sentences), pre-split sentence lists and empty documents."""
    g = np.random.default_rng(seed)
    out = []
    for d in range(n):
        sentences = [
            " ".join(f"w{w}" for w in g.integers(5, 1000, size=int(g.integers(1, 15)))) + "."
            for _ in range(int(g.integers(1, 8)))
        ]
        # (Paragraphs: the sentence rule splits at blank lines.) Some documents are empty.
        text = "" if d % 37 == 5 else "\n\n".join(sentences)
        out.append({"text": text, "topic": f"t{d % 5}", "other": d})
    return out


def as_columns(data):
    return {k: [r[k] for r in data] for k in data[0]}


@pytest.fixture(scope="module")
def reference(small_tokenizer):
    data = rows()
    return TokenCorpus.from_texts(
        [r["text"] for r in data],
        small_tokenizer,
        labels=[r["topic"] for r in data],
        progress=False,
    )


def same(a: TokenCorpus, b: TokenCorpus) -> None:
    assert fingerprint(a) == fingerprint(b)
    assert a.document_labels == b.document_labels


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    data = rows()
    root = tmp_path_factory.mktemp("sources")
    table = pa.table(as_columns(data))
    # Two Parquet files with small row groups, an Arrow file and an Arrow stream, JSONL.
    pq.write_table(table.slice(0, 70), root / "a.parquet", row_group_size=16)
    pq.write_table(table.slice(70), root / "b.parquet", row_group_size=16)
    with pa.ipc.new_file(root / "t.arrow", table.schema) as w:
        for rb in table.to_batches(max_chunksize=40):
            w.write_batch(rb)
    with pa.ipc.new_stream(root / "s.arrow", table.schema) as w:
        w.write_table(table)
    with open(root / "t.jsonl", "w") as f:
        for i, r in enumerate(data):
            f.write(json.dumps(r) + "\n")
            if i == 3:
                f.write("\n")  # blank lines are skipped
    return root


def test_dataset_iterable_and_files_give_the_corpus_of_the_texts(reference, files, small_tokenizer):
    data = rows()
    ds = datasets.Dataset.from_list(data)
    kw = {"label_column": "topic", "progress": False, "rows_per_batch": 32}
    built = {
        "dataset": TokenCorpus.from_dataset(ds, "text", small_tokenizer, **kw),
        "iterable": TokenCorpus.from_dataset(
            ds.to_iterable_dataset(num_shards=3), "text", small_tokenizer, **kw
        ),
        "rows": TokenCorpus.from_dataset(iter(data), "text", small_tokenizer, **kw),
        "parquet": TokenCorpus.from_parquet(
            [files / "a.parquet", files / "b.parquet"], "text", small_tokenizer, **kw
        ),
        "arrow": TokenCorpus.from_arrow(files / "t.arrow", "text", small_tokenizer, **kw),
        "arrow stream": TokenCorpus.from_arrow(files / "s.arrow", "text", small_tokenizer, **kw),
        "jsonl": TokenCorpus.from_jsonl(files / "t.jsonl", "text", small_tokenizer, **kw),
    }
    assert reference.num_documents == 150 - 4  # rows 5, 42, 79 and 116 are empty
    assert reference.num_sentences > 2 * reference.num_documents
    for name, corpus in built.items():
        same(corpus, reference), name
    assert built["parquet"].source.startswith("parquet: ")
    unlabelled = TokenCorpus.from_jsonl(files / "t.jsonl", "text", small_tokenizer, progress=False)
    assert unlabelled.document_labels is None
    assert fingerprint(unlabelled) == fingerprint(reference)


def test_num_proc_gives_identical_files(files, small_tokenizer, tmp_path):
    kw = {"label_column": "topic", "progress": False, "rows_per_batch": 16}
    one = TokenCorpus.from_parquet(
        [files / "a.parquet", files / "b.parquet"],
        "text",
        small_tokenizer,
        out=tmp_path / "1",
        **kw,
    )
    two = TokenCorpus.from_parquet(
        [files / "a.parquet", files / "b.parquet"],
        "text",
        small_tokenizer,
        out=tmp_path / "2",
        num_proc=2,
        **kw,
    )
    for name in (
        "ids.npy",
        "sentence_offsets.npy",
        "document_offsets.npy",
        "document_labels.json",
        "tokenizer.json",
    ):
        assert (tmp_path / "1" / name).read_bytes() == (tmp_path / "2" / name).read_bytes(), name
    assert one.num_documents == two.num_documents == 146
    m1, m2 = (
        read_manifest(tmp_path / "1" / "manifest.json"),
        read_manifest(tmp_path / "2" / "manifest.json"),
    )
    assert m1["files"][IDS_FILE][CHECKSUM_KEY] == m2["files"][IDS_FILE][CHECKSUM_KEY]


def test_pre_split_sentences_and_class_labels(small_tokenizer):
    features = datasets.Features(
        {
            "sents": datasets.Sequence(datasets.Value("string")),
            "label": datasets.ClassLabel(names=["news", "code"]),
        }
    )
    ds = datasets.Dataset.from_dict(
        {"sents": [["w5 w6", "w7"], [], ["w8"]], "label": [1, 0, 0]}, features=features
    )
    corpus = TokenCorpus.from_dataset(ds, "sents", small_tokenizer, label_column="label",
                                      progress=False)  # fmt: skip
    ref = TokenCorpus.from_texts([["w5 w6", "w7"], ["w8"]], small_tokenizer, progress=False)
    assert fingerprint(corpus) == fingerprint(ref)
    assert corpus.document_labels == ("code", "news")  # the empty document dropped its label
    assert corpus.num_sentences == 3  # sentence boundaries kept as given


def test_a_generator_is_read_lazily_in_batches(small_tokenizer, tmp_path, monkeypatch):
    """Streaming: the first sentences are tokenized (and written) long before the generator is
    exhausted, and rows are never read more than a few batches ahead of the tokenizer."""
    events: list[tuple[str, int]] = []
    read = 0

    def generate():
        nonlocal read
        for r in rows(400, seed=3):
            read += 1
            yield r

    encode = _encoder.Encoder._encode_pending

    def spy(self):
        events.append((read, self.documents_added))  # rows read, documents fed so far
        return encode(self)

    monkeypatch.setattr(_encoder.Encoder, "_encode_pending", spy)
    corpus = TokenCorpus.from_dataset(
        generate(),
        "text",
        small_tokenizer,
        rows_per_batch=20,
        batch_size=50,
        progress=False,
        out=tmp_path / "c",
    )
    assert read == 400 and corpus.num_documents > 380
    assert len(events) > 20
    # Whenever a batch of sentences is tokenized (and written), at most one batch of rows has
    # been read beyond the documents fed: the source is consumed lazily, 20 rows at a time.
    assert events[0][0] < 100
    assert all(0 <= r - fed <= 20 for r, fed in events), events
    # The same with a streaming IterableDataset built from a generator.
    events.clear()
    read = 0
    stream = datasets.IterableDataset.from_generator(generate)
    TokenCorpus.from_dataset(stream, "text", small_tokenizer, rows_per_batch=20, batch_size=50,
                             progress=False)  # fmt: skip
    assert events[0][1] < 400 and read == 400


def test_bad_rows_and_columns_are_named(files, small_tokenizer, tmp_path):
    ds = datasets.Dataset.from_list([{"text": "w5.", "n": 1}, {"text": None, "n": 2}])
    with pytest.raises(TypeError, match=r"dataset row 1: column 'text' must hold a str"):
        TokenCorpus.from_dataset(ds, "text", small_tokenizer, progress=False)
    with pytest.raises(ValueError, match=r"column: the dataset has no column 'body'"):
        TokenCorpus.from_dataset(ds, "body", small_tokenizer, progress=False)
    with pytest.raises(ValueError, match=r"label_column: .* no column 'topics'"):
        TokenCorpus.from_parquet(files / "a.parquet", "text", small_tokenizer,
                                 label_column="topics", progress=False)  # fmt: skip
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "w5."}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"bad.jsonl: line 2: expected a JSON object"):
        TokenCorpus.from_jsonl(bad, "text", small_tokenizer, progress=False)
    bad.write_text('{"text": "w5.", "topic": "a"}\n{"text": "w6.", "topic": 1.5}\n')
    with pytest.raises(TypeError, match=r"bad.jsonl: row 1: label_column 'topic' must hold"):
        TokenCorpus.from_jsonl(bad, "text", small_tokenizer, label_column="topic",
                               progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="not a readable Parquet file"):
        TokenCorpus.from_parquet(bad, "text", small_tokenizer, progress=False)
    with pytest.raises(ValueError, match="not an Arrow IPC file or stream"):
        TokenCorpus.from_arrow(bad, "text", small_tokenizer, progress=False)
    with pytest.raises(FileNotFoundError, match=r"paths\[1\]"):
        TokenCorpus.from_jsonl([bad, tmp_path / "none.jsonl"], "text", small_tokenizer)
    with pytest.raises(ValueError, match="num_proc"):
        TokenCorpus.from_dataset(ds, "text", small_tokenizer, num_proc=0)
    with pytest.raises(ValueError, match="rows_per_batch"):
        TokenCorpus.from_dataset(ds, "text", small_tokenizer, rows_per_batch=0)
    with pytest.raises(TypeError, match="dataset: expected"):
        TokenCorpus.from_dataset("text", "text", small_tokenizer)
    empty = datasets.Dataset.from_list([{"text": ""}])
    with pytest.raises(ValueError, match="no non-empty sentence"):
        TokenCorpus.from_dataset(empty, "text", small_tokenizer, progress=False)
    # A bad row in a worker process is reported the same way.
    with pytest.raises(TypeError, match=r"dataset row 1: column 'text'"):
        TokenCorpus.from_dataset(ds, "text", small_tokenizer, num_proc=2, progress=False)


def test_the_builders_without_pyarrow_name_the_extra(monkeypatch, tmp_path, small_tokenizer):
    path = tmp_path / "rows.parquet"
    path.write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if pyarrow were not installed
    for build in (TokenCorpus.from_parquet, TokenCorpus.from_arrow):
        with pytest.raises(MissingDependencyError, match=r"pip install 'lmobjectives\[datasets\]'"):
            build(path, "text", small_tokenizer, progress=False)
    # Control: JSON Lines needs no pyarrow.
    path.write_text('{"text": "w5 w6 w7"}\n')
    assert TokenCorpus.from_jsonl(path, "text", small_tokenizer, progress=False).num_tokens == 3
