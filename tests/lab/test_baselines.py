"""The baselines: NumpyMLMCollator makes the same decisions as MLMCollator (exactly where they
are deterministic, statistically otherwise), and Hugging Face's collator shows the same
statistics on the same data."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from lmobjectives import MLMCollator
from lmobjectives.lab.baselines.huggingface import hf_mlm_collator
from lmobjectives.lab.baselines.huggingface import hf_tokenizer as wrap_hf_tokenizer
from lmobjectives.lab.baselines.numpy_reference import NumpyMLMCollator

from conftest import CLS, MASK, PAD, SEP, SPECIALS, UNK, VOCAB, make_rows

SPECIAL_IDS = [PAD, UNK, CLS, SEP, MASK]
POOL = VOCAB - len(SPECIAL_IDS)
IDS = {
    "vocab_size": VOCAB,
    "mask_token_id": MASK,
    "pad_token_id": PAD,
    "special_token_ids": [UNK, CLS, SEP],
}


def both(**kw):
    return MLMCollator(**IDS, seed=3, **kw), NumpyMLMCollator(**IDS, seed=3, **kw)


def as_dicts(rows, with_special_mask=True):
    out = []
    for r in rows:
        ex = {"input_ids": list(r)}
        if with_special_mask:
            ex["special_tokens_mask"] = [1] + [0] * (len(r) - 2) + [1]
        out.append(ex)
    return out


def padded(rows, width, pad=PAD, left=False):
    out = np.full((len(rows), width), pad, dtype=np.int64)
    for i, r in enumerate(rows):
        if left:
            out[i, width - len(r) :] = r
        else:
            out[i, : len(r)] = r
    return out


def z(k: int, n: int, p: float) -> float:
    """Standard score of k successes in n Bernoulli(p) trials."""
    return (k - n * p) / math.sqrt(n * p * (1 - p))


def check_batch(batch, original: np.ndarray) -> np.ndarray:
    """Structural invariants of an MLM batch against the padded original; returns the
    selected positions."""
    ids, labels = np.asarray(batch["input_ids"]), np.asarray(batch["labels"])
    assert ids.shape == labels.shape == original.shape
    sel = labels != -100
    np.testing.assert_array_equal(labels[sel], original[sel])
    np.testing.assert_array_equal(ids[~sel], original[~sel])  # unselected: untouched
    assert not np.isin(original[sel], SPECIAL_IDS).any()  # never selects a special
    changed = sel & (ids != original)
    # A changed position is [MASK] or a random non-special id.
    assert not np.isin(ids[changed & (ids != MASK)], SPECIAL_IDS).any()
    return sel


def statistics(batches, originals):
    counts = dict.fromkeys(("eligible", "selected", "mask", "random", "kept"), 0)
    for batch, orig in zip(batches, originals, strict=True):
        ids = np.asarray(batch["input_ids"])
        sel = check_batch(batch, orig)
        counts["eligible"] += int((~np.isin(orig, SPECIAL_IDS)).sum())
        counts["selected"] += int(sel.sum())
        counts["mask"] += int((sel & (ids == MASK)).sum())
        counts["kept"] += int((sel & (ids == orig)).sum())
        counts["random"] += int((sel & (ids != MASK) & (ids != orig)).sum())
    return counts


def assert_rates(counts, p=0.15, mask_p=0.8, rand_p=0.1, pool=POOL, limit=5.0):
    """Selected ≈ p of eligible; of the selected, [MASK] ≈ mask_p, changed to another id
    ≈ rand_p·(1 − 1/pool), kept ≈ the rest (|z| < limit for each)."""
    n, k = counts["eligible"], counts["selected"]
    assert abs(z(k, n, p)) < limit, f"selected {k}/{n}, expected p={p}"
    changed = rand_p * (1 - 1 / pool)
    for name, q in (("mask", mask_p), ("random", changed), ("kept", 1 - mask_p - changed)):
        if q <= 0 or q >= 1:  # degenerate: exact
            assert counts[name] == round(k * q), (name, counts)
        else:
            assert abs(z(counts[name], k, q)) < limit, f"{name}: {counts[name]}/{k}, expected {q}"


# Six batches of 128 rows of 128-512 tokens: ~250k eligible tokens, so the selected share has
# a binomial standard deviation of ~0.0007 and the [MASK] share (of ~37k) ~0.002.
DATA = [make_rows(128, 128, 512, seed=300 + b) for b in range(6)]
ORIGINALS = [padded(rows, max(map(len, rows))) for rows in DATA]


# -- structure: deterministic, identical ---------------------------------------------------------


@pytest.mark.parametrize(
    "form", ["dicts", "dicts+special_tokens_mask", "lists", "arrays", "2-D", "2-D tensor"]
)
def test_same_structure_as_mlm_collator(form):
    rows = make_rows(12, 5, 40, seed=1)
    width = max(map(len, rows))
    if form == "dicts":
        examples = as_dicts(rows, with_special_mask=False)
    elif form == "dicts+special_tokens_mask":
        examples = as_dicts(rows)
    elif form == "lists":
        examples = rows
    elif form == "arrays":
        examples = [np.asarray(r, dtype=np.int64) for r in rows]
    elif form == "2-D":
        examples = padded(rows, width)
    else:
        import torch

        examples = torch.from_numpy(padded(rows, width))
    before = copy.deepcopy(examples)
    ours, ref = both()
    a, b = ours(examples), ref(examples)
    assert sorted(a) == sorted(b) == ["attention_mask", "input_ids", "labels"]
    for key in a:
        assert a[key].shape == b[key].shape == (len(rows), width), key
        assert a[key].dtype == b[key].dtype == np.int64, key
    np.testing.assert_array_equal(a["attention_mask"], b["attention_mask"])
    original = padded(rows, width)
    for batch in (a, b):
        check_batch(batch, original)
        pads = original == PAD
        np.testing.assert_array_equal(batch["input_ids"][pads], PAD)
    if form.startswith("2-D"):  # pads given as tokens keep attention 1, as in MLMCollator
        assert (a["attention_mask"] == 1).all()
    else:
        np.testing.assert_array_equal(a["attention_mask"], (original != PAD).astype(np.int64))
    if form == "2-D tensor":
        assert (examples == before).all()
    elif isinstance(examples, np.ndarray):
        np.testing.assert_array_equal(examples, before)
    else:
        assert all(
            np.array_equal(np.asarray(x), np.asarray(y)) if not isinstance(x, dict) else x == y
            for x, y in zip(examples, before, strict=True)
        )


def test_left_padding_and_attention_mask_input():
    rows = make_rows(6, 5, 30, seed=2)
    width = max(map(len, rows))
    examples = [{"input_ids": r, "attention_mask": [1] * (len(r) - 3) + [0] * 3} for r in rows]
    ours, ref = both(padding_side="left")
    a, b = ours(examples), ref(examples)
    np.testing.assert_array_equal(a["attention_mask"], b["attention_mask"])
    np.testing.assert_array_equal(a["input_ids"] == PAD, b["input_ids"] == PAD)
    original = padded(rows, width, left=True)
    for batch in (a, b):
        check_batch(batch, original)
        # Tokens with attention 0 are never selected.
        assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()


def test_special_tokens_mask_blocks_selection():
    rows = [[CLS, *range(10, 60), SEP]] * 200
    examples = [
        {"input_ids": r, "special_tokens_mask": [1] + [1] * 10 + [0] * 40 + [1]} for r in rows
    ]
    for c in both(mlm_probability=0.5):
        labels = c(examples)["labels"]
        assert (labels[:, :11] == -100).all()
        assert (labels[:, 11:51] != -100).any()


@pytest.mark.parametrize(("p", "max_predictions"), [(0.15, None), (0.15, 20), (0.5, None)])
def test_exact_budget_counts_are_identical(p, max_predictions):
    # 2..600 tokens: includes rows with 0, 1, a few eligible tokens and the ties of p·n.
    rows = make_rows(200, 2, 600, seed=5)
    ours, ref = both(exact_budget=True, mlm_probability=p, max_predictions=max_predictions)
    a, b = ours(as_dicts(rows)), ref(as_dicts(rows))
    ka = (a["labels"] != -100).sum(axis=1)
    kb = (b["labels"] != -100).sum(axis=1)
    np.testing.assert_array_equal(ka, kb)
    n = np.array([len(r) - 2 for r in rows])
    want = [0 if m == 0 else min(m, max(1, round(p * m))) for m in n]  # round: ties to even
    if max_predictions is not None:
        want = [min(w, max_predictions) for w in want]
    np.testing.assert_array_equal(kb, want)
    check_batch(b, padded(rows, max(map(len, rows))))


def test_exact_budget_positions_are_uniform():
    # Each of the 20 eligible positions is chosen with probability round(0.15·20)/20 = 3/20.
    rows = [[CLS, *range(10, 30), SEP]] * 4000
    _, ref = both(exact_budget=True)
    counts = (ref(rows)["labels"][:, 1:21] != -100).sum(axis=0)
    assert all(abs(z(int(k), 4000, 3 / 20)) < 5 for k in counts), counts


# -- statistics ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "mask_p", "rand_p"), [(0.15, 0.8, 0.1), (0.3, 0.0, 1.0), (0.15, 0.5, 0.4)]
)
def test_numpy_rates_match_the_parameters(p, mask_p, rand_p):
    ref = NumpyMLMCollator(
        **IDS, mlm_probability=p, mask_replace_prob=mask_p, random_replace_prob=rand_p, seed=11
    )
    batches = [ref(as_dicts(rows)) for rows in DATA]
    assert_rates(statistics(batches, ORIGINALS), p, mask_p, rand_p)


def test_rate_check_has_power():
    # Control: 0.16 instead of 0.15, or 0.7/0.2 instead of 0.8/0.1, must fail the check.
    for kw in ({"mlm_probability": 0.16}, {"mask_replace_prob": 0.7, "random_replace_prob": 0.2}):
        ref = NumpyMLMCollator(**IDS, seed=12, **kw)
        counts = statistics([ref(rows) for rows in DATA], ORIGINALS)
        with pytest.raises(AssertionError):
            assert_rates(counts)


def test_numpy_and_ours_select_the_same_share():
    ours, ref = both()
    a = statistics([ours(as_dicts(rows)) for rows in DATA], ORIGINALS)
    b = statistics([ref(as_dicts(rows)) for rows in DATA], ORIGINALS)
    assert a["eligible"] == b["eligible"]
    assert_rates(a)
    assert_rates(b)
    # Two-proportion z-tests: selected share, and the [MASK] share of the selected.
    for num, den in (("selected", "eligible"), ("mask", "selected")):
        pa, pb = a[num] / a[den], b[num] / b[den]
        pooled = (a[num] + b[num]) / (a[den] + b[den])
        se = math.sqrt(pooled * (1 - pooled) * (1 / a[den] + 1 / b[den]))
        assert abs(pa - pb) / se < 5, (num, a, b)


def test_numpy_random_ids_are_uniform_over_non_special_ids():
    ref = NumpyMLMCollator(
        **IDS, mlm_probability=0.5, mask_replace_prob=0.0, random_replace_prob=1.0, seed=13
    )
    drawn = []
    for rows in DATA[:3]:
        b = ref(rows)
        drawn.append(b["input_ids"][b["labels"] != -100])
    drawn = np.concatenate(drawn)
    assert not np.isin(drawn, SPECIAL_IDS).any()
    counts = np.bincount(drawn - len(SPECIAL_IDS), minlength=POOL)
    assert counts.sum() == len(drawn)
    # Chi-square over the 995 ids in 199 buckets of 5: df = 198, mean 198, sd ≈ 19.9.
    buckets = counts.reshape(-1, 5).sum(axis=1)
    expected = len(drawn) / len(buckets)
    chi2 = float(((buckets - expected) ** 2 / expected).sum())
    assert abs(chi2 - 198) / math.sqrt(2 * 198) < 5, chi2


def test_hugging_face_shows_the_same_statistics(small_tokenizer):
    import torch  # noqa: F401
    import transformers  # noqa: F401

    hf = hf_mlm_collator(small_tokenizer, seed=7)
    batches = []
    for rows in DATA:
        b = hf(as_dicts(rows))
        assert b["input_ids"].dtype.is_floating_point is False
        batches.append({k: v.numpy() for k, v in b.items()})
        assert b["attention_mask"].shape == b["input_ids"].shape
    counts = dict.fromkeys(("eligible", "selected", "mask"), 0)
    for batch, orig in zip(batches, ORIGINALS, strict=True):
        ids, labels = batch["input_ids"], batch["labels"]
        sel = labels != -100
        np.testing.assert_array_equal(labels[sel], orig[sel])
        assert not np.isin(orig[sel], SPECIAL_IDS).any()
        counts["eligible"] += int((~np.isin(orig, SPECIAL_IDS)).sum())
        counts["selected"] += int(sel.sum())
        counts["mask"] += int((sel & (ids == MASK)).sum())
    assert abs(z(counts["selected"], counts["eligible"], 0.15)) < 5, counts
    assert abs(z(counts["mask"], counts["selected"], 0.8)) < 5, counts


# -- the HF wrappers and bad arguments -----------------------------------------------------------


def test_hf_tokenizer_wraps_a_tokenizers_tokenizer(small_tokenizer):
    import transformers  # noqa: F401

    tok = wrap_hf_tokenizer(small_tokenizer)
    assert len(tok) == VOCAB
    assert sorted(tok.all_special_ids) == SPECIAL_IDS
    assert (tok.pad_token_id, tok.mask_token_id, tok.cls_token_id, tok.sep_token_id) == (
        PAD,
        MASK,
        CLS,
        SEP,
    )
    assert tok.convert_ids_to_tokens(SPECIAL_IDS) == SPECIALS
    assert wrap_hf_tokenizer(tok) is tok
    collator = hf_mlm_collator(tok, seed=1, mlm_probability=0.2, return_tensors="np")
    assert collator.mlm_probability == 0.2
    assert collator.return_tensors == "np"
    batch = collator(as_dicts(make_rows(4, 10, 20)))
    assert isinstance(batch["input_ids"], np.ndarray)


def test_numpy_collator_reads_a_tokenizer(small_tokenizer):
    ref = NumpyMLMCollator(small_tokenizer, seed=0)
    assert (ref.vocab_size, ref.mask_token_id, ref.pad_token_id) == (VOCAB, MASK, PAD)
    assert ref.special_token_ids == SPECIAL_IDS
    assert len(ref.replacement_pool) == POOL
    assert "NumpyMLMCollator(" in repr(ref)


def test_numpy_collator_pt_output():
    import torch

    ref = NumpyMLMCollator(**IDS, seed=0, return_tensors="pt")
    batch = ref(make_rows(3, 5, 9))
    assert all(isinstance(v, torch.Tensor) and v.dtype == torch.int64 for v in batch.values())


@pytest.mark.parametrize(
    ("kw", "arg"),
    [
        ({"mlm_probability": 1.5}, "mlm_probability"),
        ({"mask_replace_prob": -0.1}, "mask_replace_prob"),
        ({"mask_replace_prob": 0.8, "random_replace_prob": 0.3}, "random_replace_prob"),
        ({"special_token_ids": [VOCAB]}, "special_token_ids"),
        ({"max_predictions": 5}, "max_predictions"),
        ({"padding_side": "middle"}, "padding_side"),
        ({"return_tensors": "tf"}, "return_tensors"),
    ],
)
def test_numpy_collator_bad_arguments(kw, arg):
    with pytest.raises(ValueError, match=arg):
        NumpyMLMCollator(**{**IDS, **kw})


def test_numpy_collator_bad_input():
    ref = NumpyMLMCollator(**IDS, seed=0)
    with pytest.raises(ValueError, match="input_ids"):
        ref([[CLS, VOCAB, SEP]])
    with pytest.raises(TypeError, match="examples"):
        ref([])
    with pytest.raises(ValueError, match="2-D"):
        ref(np.zeros(5, dtype=np.int64))
    with pytest.raises(ValueError, match="vocab_size"):
        NumpyMLMCollator(mask_token_id=MASK, pad_token_id=PAD)
