"""``mine_dataset``: a ``datasets.Dataset`` of (anchor, positive) texts and a
sentence-transformers model in, the ``Dataset`` of sentence-transformers 6.3's
``util.mine_hard_negatives`` out — same columns, rows and order for every output format —
with an on-disk embedding cache that a second run reuses and a changed model, text or
normalisation does not.

The model is built here, no download: a ``StaticEmbedding`` over a word-level tokenizer made
in-process, with seeded random weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer
from sentence_transformers.util import mine_hard_negatives as st_mine_hard_negatives

from lmobjectives.mining import EmbeddingCache, mine_dataset

WORDS = [f"w{i}" for i in range(60)]


def tiny_model(seed: int = 0) -> SentenceTransformer:
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "[PAD]": 1, **{w: i + 2 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    weights = np.random.default_rng(seed).standard_normal((len(vocab), 24)).astype(np.float32)
    return SentenceTransformer(modules=[StaticEmbedding(tok, embedding_weights=weights)])


def pairs(seed: int = 1) -> tuple[Dataset, list[str]]:
    """40 rows: 30 distinct anchors (some with two or three positives, one repeated row), two
    anchors that are also corpus texts; and 50 extra corpus texts."""
    g = np.random.default_rng(seed)

    def text() -> str:
        return " ".join(g.choice(WORDS, size=int(g.integers(3, 9))))

    anchors = [text() for _ in range(30)]
    positives = [text() for _ in range(30)]
    rows = list(zip(anchors, positives, strict=True))
    rows += [(anchors[i], text()) for i in (2, 5, 5, 9, 11)]
    rows.append(rows[3])  # the same (anchor, positive) twice
    rows += [(positives[7], text()), (positives[12], positives[20])]  # anchors in the corpus
    rows.append((anchors[0], anchors[0]))  # an anchor that is its own positive
    extra = [text() for _ in range(50)]
    data = Dataset.from_dict({"query": [a for a, _ in rows], "answer": [p for _, p in rows]})
    return data, extra


def theirs(model, data, extra, **kw) -> dict:
    return st_mine_hard_negatives(data, model, corpus=extra, verbose=False, **kw).to_dict()


def assert_same(ours: Dataset, want: dict) -> None:
    got = ours.to_dict()
    assert list(got) == list(want)
    for column, values in want.items():
        if column in ("scores", "score"):
            np.testing.assert_allclose(
                np.asarray(got[column], dtype=object).tolist(), values, rtol=0, atol=2e-6
            )
        else:
            assert got[column] == values, column


FORMATS = ["triplet", "n-tuple", "labeled-pair", "labeled-list"]


@pytest.mark.parametrize("output_format", FORMATS)
@pytest.mark.parametrize("output_scores", [False, True])
def test_same_dataset_as_sentence_transformers(tmp_path, output_format, output_scores):
    model = tiny_model()
    data, extra = pairs()
    kw = {"output_format": output_format, "output_scores": output_scores, "num_negatives": 4}
    ours = mine_dataset(model, data, corpus=extra, cache_dir=tmp_path, **kw)
    assert_same(ours, theirs(model, data, extra, **kw))
    assert len(ours) > 30


@pytest.mark.parametrize(
    "kw",
    [
        {"range_min": 3, "range_max": 15, "relative_margin": 0.05, "num_negatives": 3},
        {"absolute_margin": 0.1, "max_score": 0.9, "min_score": 0.0},
        {"include_positives": True, "num_negatives": 5},
        {"num_negatives": 6, "output_format": "n-tuple"},  # windows that run short
    ],
)
def test_filters_as_sentence_transformers(tmp_path, kw):
    model = tiny_model()
    data, extra = pairs()
    kw = {"output_scores": True, **kw}
    ours = mine_dataset(model, data, corpus=extra, cache_dir=tmp_path, **kw)
    assert_same(ours, theirs(model, data, extra, **kw))


def test_default_corpus_and_column_names(tmp_path):
    model = tiny_model()
    data, _ = pairs()
    data = data.rename_columns({"query": "anchor", "answer": "positive"}).add_column(
        "id", list(range(len(data)))
    )
    ours = mine_dataset(
        model, data, anchor_column="anchor", positive_column="positive", num_negatives=2
    )
    want = st_mine_hard_negatives(
        data,
        model,
        anchor_column_name="anchor",
        positive_column_name="positive",
        num_negatives=2,
        verbose=False,
    )
    assert_same(ours, want.to_dict())
    with pytest.raises(ValueError, match="anchor_column"):
        mine_dataset(model, data, anchor_column="nope")
    with pytest.raises(ValueError, match="output_format"):
        mine_dataset(model, data, output_format="pairs")


class Counting:
    """Counts the texts the model encodes, per role."""

    def __init__(self, model) -> None:
        self.calls = {"query": 0, "document": 0}
        for role in self.calls:
            original = getattr(model, f"encode_{role}")

            def counted(texts, *a, _role=role, _f=original, **kw):
                self.calls[_role] += len(texts)
                return _f(texts, *a, **kw)

            setattr(model, f"encode_{role}", counted)

    def take(self) -> dict[str, int]:
        out, self.calls = self.calls, {"query": 0, "document": 0}
        return out


def test_the_cache_is_reused_and_never_stale(tmp_path):
    model = tiny_model()
    count = Counting(model)
    data, extra = pairs()
    n_queries = len(set(list(data["query"])))
    n_corpus = len(set(extra + list(data["answer"])))

    first = mine_dataset(model, data, corpus=extra, cache_dir=tmp_path, output_scores=True)
    assert count.take() == {"query": n_queries, "document": n_corpus}
    again = mine_dataset(model, data, corpus=extra, cache_dir=tmp_path, output_scores=True)
    assert count.take() == {"query": 0, "document": 0}
    assert again.to_dict() == first.to_dict()
    mine_dataset(model, data, corpus=extra, cache_dir=tmp_path, output_format="labeled-list")
    assert count.take() == {"query": 0, "document": 0}  # other layouts reuse it too

    # One anchor changed: the queries again, not the corpus.
    changed = data.map(
        lambda r, i: {"query": r["query"] + (" w1" if i == 0 else "")}, with_indices=True
    )
    mine_dataset(model, changed, corpus=extra, cache_dir=tmp_path)
    assert count.take() == {"query": len(set(list(changed["query"]))), "document": 0}
    # Without normalisation: another entry.
    mine_dataset(model, data, corpus=extra, cache_dir=tmp_path, normalize_embeddings=False)
    assert count.take() == {"query": n_queries, "document": n_corpus}

    # The same texts through a changed model: re-encoded, and the result is the new model's.
    with torch.no_grad():
        model[0].embedding.weight[2:12] *= -3.0
    after = mine_dataset(model, data, corpus=extra, cache_dir=tmp_path, output_scores=True)
    assert count.take() == {"query": n_queries, "document": n_corpus}
    assert_same(after, theirs(model, data, extra, output_scores=True))
    count.take()  # sentence-transformers' own encoding
    assert after.to_dict()["negative"] != first.to_dict()["negative"]  # the control

    # A model named by the caller skips the fingerprint and reuses what that name cached.
    mine_dataset(model, data, corpus=extra, cache_dir=tmp_path, model_id="mine-v1")
    assert count.take() == {"query": n_queries, "document": n_corpus}
    mine_dataset(model, data, corpus=extra, cache_dir=tmp_path, model_id="mine-v1")
    assert count.take() == {"query": 0, "document": 0}


def test_embedding_cache_files(tmp_path):
    cache = EmbeddingCache(tmp_path / "c", "model-a")
    calls = []

    def encode(texts):
        calls.append(len(texts))
        return np.arange(len(texts) * 3, dtype=np.float32).reshape(-1, 3)

    texts = ["a", "b", "ab", ""]
    x = cache.get("document", texts, True, None, encode)
    y = cache.get("document", texts, True, None, encode)
    assert calls == [4] and cache.encoded == 4
    assert isinstance(y, np.memmap) and np.array_equal(x, y)
    # Keys separate texts that concatenate alike, roles, prompts, models and normalisation.
    keys = {
        cache.key("document", texts, True, None),
        cache.key("document", ["a", "bab", ""], True, None),
        cache.key("query", texts, True, None),
        cache.key("document", texts, True, ("p: ", None)),
        cache.key("document", texts, False, None),
        EmbeddingCache(tmp_path / "c", "model-b").key("document", texts, True, None),
    }
    assert len(keys) == 6
    assert sorted(p.suffix for p in (tmp_path / "c").iterdir()) == [".npy"]  # no temp file left
