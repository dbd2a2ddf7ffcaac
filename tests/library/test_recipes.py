"""Recipes across the API: which classes each applies to (and that the guide's table says so),
defaults and overrides, errors, pickling and threads, BART's and T5's recipes, and the corpus
token counts SpanBERT's recipe draws from. The upstream comparisons are in
``test_recipe_google_bert.py``, ``test_recipe_albert.py`` and ``test_recipe_spanbert.py``."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from recipe_rows import corpus, pair_rows, word_rows
from recipe_stats import same_categories

import lmobjectives
from lmobjectives import (
    BartDenoisingCollator,
    MLMCollator,
    SentencePairDataset,
    T5SpanCorruptionCollator,
    TokenCorpus,
    UL2Collator,
    _core,
)
from lmobjectives.corpus import _format

RECIPES = [
    "lmobjectives",
    "google-bert",
    "albert",
    "spanbert",
    "huggingface",
    "fairseq",
    "t5",
    "bart",
    "ul2",
]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "guide" / "recipes.md"


def build(cls: str, recipe: str):
    c = corpus()
    tok = c.tokenizer
    if cls == "MLMCollator":
        return MLMCollator(tok, recipe=recipe, token_counts=c if recipe == "spanbert" else None)
    if cls == "SentencePairDataset":
        task = "sop" if recipe == "albert" else "nsp"
        return SentencePairDataset(c.documents(0, 20), task, recipe=recipe)
    if cls == "T5SpanCorruptionCollator":
        return T5SpanCorruptionCollator(tok, recipe=recipe)
    if cls == "UL2Collator":
        return UL2Collator(tok, recipe=recipe)
    return BartDenoisingCollator(tok, recipe=recipe)


CLASSES = [
    "MLMCollator",
    "SentencePairDataset",
    "T5SpanCorruptionCollator",
    "UL2Collator",
    "BartDenoisingCollator",
]


def documented_table() -> dict[tuple[str, str], bool]:
    """The guide's "which recipe applies where" table: ``(recipe, class) → applies``."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## Where each recipe applies", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip(" `") for cell in lines[0].strip("|").split("|")]
    out = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        recipe = cells[0].strip("`")
        for cls, cell in zip(header[1:], cells[1:], strict=True):
            out[(recipe, cls)] = cell.startswith("✓")
    return out


def test_every_recipe_is_named_in_order():
    assert _core.recipe_names() == RECIPES


def test_recipes_apply_where_the_guide_says_and_raise_elsewhere():
    table = documented_table()
    assert {r for r, _ in table} == set(RECIPES)
    assert {c for _, c in table} == set(CLASSES)
    for (recipe, cls), applies in table.items():
        if applies:
            assert build(cls, recipe).recipe == recipe
        else:
            with pytest.raises(ValueError, match=r"^recipe: .*" + re.escape(cls)):
                build(cls, recipe)


def test_google_bert_has_no_sentence_order_task():
    with pytest.raises(ValueError, match="recipe: 'google-bert' defines next-sentence"):
        SentencePairDataset(corpus().documents(0, 5), "sop", recipe="google-bert")


@pytest.mark.parametrize(
    ("recipe", "unit", "exact", "replace_by"),
    [
        ("lmobjectives", "token", False, "unit"),
        ("google-bert", "token", True, "token"),
        ("albert", "ngram", True, "token"),
        ("spanbert", "span", True, "run"),
        ("huggingface", "token", False, "token"),
    ],
)
def test_recipe_defaults(recipe, unit, exact, replace_by):
    c = build("MLMCollator", recipe)
    assert (c.unit, c.exact_budget, c.replace_by) == (unit, exact, replace_by)


def test_explicit_arguments_override_the_recipe_defaults():
    tok = corpus().tokenizer
    c = MLMCollator(tok, recipe="google-bert", unit="word", replace_by="unit")
    assert (c.unit, c.replace_by, c.recipe) == ("word", "unit", "google-bert")
    assert MLMCollator(tok, recipe="huggingface", unit="word", exact_budget=True).exact_budget
    assert MLMCollator(tok, unit="word").exact_budget  # ours: word units fill a budget
    assert MLMCollator(tok, unit="span", replace_by="run").replace_by == "run"


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"recipe": "bert"}, ValueError, "recipe: must be one of 'lmobjectives'"),
        ({"recipe": 3}, TypeError, "recipe"),
        ({"recipe": "t5"}, ValueError, "recipe: 't5' does not apply to MLMCollator"),
        ({"recipe": "spanbert"}, ValueError, "token_counts: required"),
        ({"recipe": "spanbert", "unit": "word"}, ValueError, "unit: recipe 'spanbert'"),
        ({"recipe": "google-bert", "unit": "ngram"}, ValueError, "unit: recipe 'google-bert'"),
        ({"recipe": "huggingface", "unit": "span"}, ValueError, "unit"),
        ({"token_counts": [1, 2, 3]}, ValueError, "token_counts: needs one count per id"),
        ({"token_counts": np.full(30522, -1)}, ValueError, "token_counts: counts must be"),
        ({"token_counts": np.zeros(30522, int)}, ValueError, "token_counts: every count is 0"),
        ({"token_counts": np.ones(30522)}, TypeError, "token_counts"),
        ({"token_counts": "counts"}, TypeError, "token_counts"),
        ({"replace_by": "run"}, ValueError, "replace_by: 'run'"),
        ({"replace_by": "span"}, ValueError, "replace_by"),
    ],
)
def test_bad_recipe_arguments_raise_naming_the_argument(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        MLMCollator(corpus().tokenizer, **kwargs)


@pytest.mark.parametrize("cls", CLASSES[1:])
def test_bad_recipe_names_for_the_other_classes(cls):
    with pytest.raises(ValueError, match="recipe: must be one of"):
        build(cls, "BERT")
    with pytest.raises(TypeError, match="recipe"):
        build(cls, None)  # type: ignore[arg-type]


def test_spanbert_needs_no_counts_without_random_replacements():
    c = MLMCollator(corpus().tokenizer, recipe="spanbert", random_replace_prob=0.0)
    assert c.recipe == "spanbert"


# -- contracts ----------------------------------------------------------------------------------


RECIPE_COLLATORS = {
    "google-bert-word": {"recipe": "google-bert", "unit": "word"},
    "albert": {"recipe": "albert"},
    "spanbert": {"recipe": "spanbert", "token_counts": "corpus"},
    "huggingface-word": {"recipe": "huggingface", "unit": "word"},
    "run": {"unit": "ngram", "replace_by": "run"},
}


def recipe_collator(name: str, **kw) -> MLMCollator:
    args = dict(RECIPE_COLLATORS[name])
    if args.get("token_counts") == "corpus":
        args["token_counts"] = corpus()
    return MLMCollator(corpus().tokenizer, seed=11, **args, **kw)


@pytest.mark.parametrize("name", list(RECIPE_COLLATORS))
def test_same_batches_for_any_thread_count_and_after_pickling(name):
    rows = word_rows(400, seed=5) * 4  # ~300k tokens: several threads really run
    one = recipe_collator(name, num_threads=1)(rows)
    for threads in (2, 4):
        got = recipe_collator(name, num_threads=threads)(rows)
        np.testing.assert_array_equal(got["input_ids"], one["input_ids"])
        np.testing.assert_array_equal(got["labels"], one["labels"])
    c = recipe_collator(name)
    clone = pickle.loads(pickle.dumps(c))
    assert repr(clone) == repr(c) and clone.recipe == c.recipe
    np.testing.assert_array_equal(clone(rows[:50])["labels"], c(rows[:50])["labels"])


def test_recipes_respect_packing_boundaries_and_padding():
    """Words run across [SEP] under Google's rules, never across packed examples (whose first
    piece after [CLS] may continue a word) or padding."""
    from lmobjectives import PackingCollator

    rows = word_rows(48, seed=6)
    kw = {"mlm_probability": 1.0, "mask_replace_prob": 0.5, "random_replace_prob": 0.0}
    masking = MLMCollator(
        corpus().tokenizer, recipe="albert", unit="word", replace_by="unit", seed=1, **kw
    )
    pack = PackingCollator(max_length=512, masking=masking, return_sequence_ids=True, seed=1)
    signature = 0
    for epoch in range(48):
        pack.set_epoch(epoch)
        packed = pack(rows)
        marks = np.asarray(packed["input_ids"]) == 4
        signature = signature * 2 + marks.astype(object)
    ids, labels = np.asarray(packed["input_ids"]), np.asarray(packed["labels"])
    original = np.where(labels != -100, labels, ids)
    sequence = np.asarray(packed["sequence_ids"])
    units: dict[tuple[int, int], list[int]] = {}
    for i, t in zip(*np.nonzero(labels != -100), strict=True):
        units.setdefault((int(i), signature[i, t]), []).append(int(t))
    assert all(len(set(sequence[i][u])) == 1 for (i, _), u in units.items())
    # ... while words still run across [SEP] inside an example.
    assert any((original[i][u[0] : u[-1]] == 3).any() for (i, _), u in units.items())
    left = MLMCollator(corpus().tokenizer, recipe="albert", padding_side="left", seed=1)
    right = MLMCollator(corpus().tokenizer, recipe="albert", seed=1)
    a, b = left(rows), right(rows)
    for i, r in enumerate(rows):
        np.testing.assert_array_equal(a["labels"][i, -len(r) :], b["labels"][i, : len(r)])


def test_pair_dataset_recipe_repr_and_state():
    ds = SentencePairDataset(corpus().documents(0, 30), "sop", recipe="albert", seed=3)
    assert "recipe='albert'" in repr(ds)
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.recipe == "albert" and len(clone) == len(ds)
    assert clone[5]["input_ids"].tolist() == ds[5]["input_ids"].tolist()
    shard = ds.shard(1, 2)
    assert shard.recipe == "albert"


def test_default_recipe_is_unchanged():
    """Naming our recipe is the same as naming none, bit for bit."""
    rows = pair_rows("nsp", 200, recipe="lmobjectives")
    tok = corpus().tokenizer
    for unit in ("token", "word", "span", "ngram"):
        a = MLMCollator(tok, unit=unit, seed=2)(rows)
        b = MLMCollator(tok, unit=unit, seed=2, recipe="lmobjectives")(rows)
        np.testing.assert_array_equal(a["input_ids"], b["input_ids"])
        np.testing.assert_array_equal(a["labels"], b["labels"])


# -- denoising ----------------------------------------------------------------------------------


@pytest.mark.parametrize("recipe", ["t5", "huggingface"])
def test_t5_recipes_are_t5s_rules(recipe):
    tok = corpus().tokenizer
    rows = [corpus().ids[i * 568 : (i + 1) * 568].astype(np.int64) for i in range(8)]
    a = T5SpanCorruptionCollator(tok, seed=1)(rows)
    b = T5SpanCorruptionCollator(tok, seed=1, recipe=recipe)(rows)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert UL2Collator(tok, recipe="ul2", seed=0).recipe == "ul2"


def bart_random_ids(recipe: str | None, reference: bool = False) -> list[int]:
    """The ids of a BART row all of whose words became random tokens."""
    kw = {
        "mask_ratio": 1.0,
        "random_ratio": 1.0,
        "mask_length": "word",
        "replace_length": -1,
        "permute_sentence_ratio": 0.0,
        "word_starts": np.ones(12, dtype=bool),
    }
    ids = {"vocab_size": 12, "bos_token_id": 2, "eos_token_id": 3, "pad_token_id": 0}
    rows = [list(range(5, 12)) * 4] * 400
    if reference:
        from lmobjectives.lab.baselines.fairseq import FairseqBartNoiser

        noiser = FairseqBartNoiser(mask_token_id=4, seed=0, **ids, **kw)
        batch = noiser(rows)
    else:
        collate = BartDenoisingCollator(
            mask_token_id=4, special_token_ids=[1], seed=0, recipe=recipe, **ids, **kw
        )
        batch = collate(rows)
    return np.asarray(batch["input_ids"])[:, 1:-1].ravel().tolist()


def test_bart_recipes_draw_random_tokens_as_fairseq_does():
    """fairseq draws random tokens with ``torch.randint(1, len(vocab))`` — every id but 0, mask,
    EOS and padding included: the same law as the lab's port of fairseq's noising; ours draws
    only non-special ids, which the same test rejects."""
    want = bart_random_ids(None, reference=True)
    for recipe in ("bart", "fairseq"):
        got = bart_random_ids(recipe)
        assert 0 not in got and {1, 3, 4} <= set(got)
        assert same_categories(got, want)
    assert not same_categories(bart_random_ids("lmobjectives"), want)


# -- corpus token counts ------------------------------------------------------------------------


@pytest.fixture
def saved(small_tokenizer, tmp_path) -> Path:
    docs = [f"w{5 + d} w{6 + d} w7 w7. w{8 + d % 3} w9." for d in range(40)]
    c = TokenCorpus.from_texts(docs, small_tokenizer)
    return c.save(tmp_path / "corpus")


def test_token_counts_are_a_bincount_computed_once(small_tokenizer, saved, monkeypatch):
    memory = TokenCorpus.from_texts(["w5 w6 w7 w7. w9."], small_tokenizer)
    counts = memory.token_counts()
    assert counts.dtype == np.int64 and counts.shape == (memory.vocab_size,)
    np.testing.assert_array_equal(counts, np.bincount(memory.ids, minlength=memory.vocab_size))
    assert not counts.flags.writeable
    assert memory.token_counts() is counts
    c = TokenCorpus.load(saved)
    counts = c.token_counts()
    np.testing.assert_array_equal(counts, np.bincount(np.asarray(c.ids), minlength=c.vocab_size))
    # Cached with the corpus, covered by the manifest; later loads read it back.
    manifest = json.loads((saved / "manifest.json").read_text())
    entry = manifest["derived"]["token_counts.npy"]
    assert entry["ids_blake2b_256"] == manifest["files"]["ids.npy"]["blake2b_256"]
    assert entry["bytes"] == (saved / "token_counts.npy").stat().st_size

    def no_counting(*a, **k):
        raise AssertionError("counted again")

    monkeypatch.setattr(lmobjectives.corpus._corpus, "count_tokens", no_counting)
    again = TokenCorpus.load(saved)  # checksums verified: the manifest is still valid
    np.testing.assert_array_equal(again.token_counts(), counts)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(again)).token_counts(), counts)


def test_chunked_counting_matches_one_bincount(monkeypatch):
    monkeypatch.setattr(_format, "COUNT_CHUNK", 1000)
    ids = np.asarray(corpus().ids)[:123_457]
    np.testing.assert_array_equal(
        _format.count_tokens(ids, corpus().vocab_size),
        np.bincount(ids, minlength=corpus().vocab_size),
    )


@pytest.mark.parametrize("damage", ["stale", "bytes", "missing", "manifest"])
def test_stale_or_damaged_counts_are_recounted(saved, damage):
    c = TokenCorpus.load(saved)
    want = c.token_counts().copy()
    manifest_path = saved / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    if damage == "stale":  # counted from other ids
        manifest["derived"]["token_counts.npy"]["ids_blake2b_256"] = "0" * 64
        manifest_path.write_text(json.dumps(manifest))
        bad = np.zeros_like(want)
        np.save(saved / "token_counts.npy", bad)
    elif damage == "bytes":
        data = bytearray((saved / "token_counts.npy").read_bytes())
        data[-1] ^= 0xFF
        (saved / "token_counts.npy").write_bytes(bytes(data))
    elif damage == "missing":
        (saved / "token_counts.npy").unlink()
    else:
        manifest["derived"] = "nonsense"
        manifest_path.write_text(json.dumps(manifest))
    again = TokenCorpus.load(saved)
    np.testing.assert_array_equal(again.token_counts(), want)
    # ... and the cache is whole again.
    entry = json.loads(manifest_path.read_text())["derived"]["token_counts.npy"]
    assert _format.file_digest(saved / "token_counts.npy") == (
        entry["bytes"],
        entry["blake2b_256"],
    )


def test_counts_of_unwritable_old_and_partial_corpora(saved, monkeypatch):
    # Format version 1 (no checksums): still loadable, counts cached all the same.
    manifest = json.loads((saved / "manifest.json").read_text())
    del manifest["files"]
    manifest["format_version"] = 1
    (saved / "manifest.json").write_text(json.dumps(manifest))
    old = TokenCorpus.load(saved)
    want = np.bincount(np.asarray(old.ids), minlength=old.vocab_size)
    np.testing.assert_array_equal(old.token_counts(), want)
    assert "token_counts.npy" in json.loads((saved / "manifest.json").read_text())["derived"]
    assert TokenCorpus.load(saved).num_tokens == old.num_tokens
    # A view counts its own documents and writes nothing.
    view = old.documents(3, 9)
    np.testing.assert_array_equal(
        view.token_counts(), np.bincount(np.asarray(view.ids), minlength=old.vocab_size)
    )
    # A directory that cannot be written keeps the counts in memory.
    (saved / "token_counts.npy").unlink()

    def refuse(*a, **k):
        raise PermissionError("read-only")

    monkeypatch.setattr(_format.os, "replace", refuse)
    ro = TokenCorpus.load(saved)
    np.testing.assert_array_equal(ro.token_counts(), want)
    assert not (saved / "token_counts.npy").exists()
    assert not [p for p in saved.iterdir() if p.name.startswith(".")]
