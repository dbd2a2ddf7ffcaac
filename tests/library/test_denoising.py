"""Denoising collators (T5 span corruption, BART, UL2): length arithmetic, exact
reconstruction, parity with the reference constructions, statistics with controls, the
collator contracts, bad input, and models that train on the batches."""

from __future__ import annotations

import copy
import doctest
import itertools
import math
import pickle
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lmobjectives
from lmobjectives import denoising
from lmobjectives.denoising import (
    UL2_DENOISERS,
    BartDenoisingCollator,
    CorpusChunks,
    Denoiser,
    T5SpanCorruptionCollator,
    UL2Collator,
    compute_input_and_target_lengths,
    word_start_table,
)
from lmobjectives.lab.baselines.fairseq import FairseqBartNoiser
from lmobjectives.lab.baselines.t5 import HFT5MLMCollator, shift_tokens_right

import reference_streams as ref

V = 1000  # model vocabulary of the small tests: ids 5..899 are words, 900..999 sentinels
EOS, PAD = 1, 0
BOS, MASK = 2, 4
SENTINELS = [V - 1 - k for k in range(100)]
KEYS = ["input_ids", "attention_mask", "labels", "decoder_input_ids", "decoder_attention_mask"]


def t5(**kw) -> T5SpanCorruptionCollator:
    base = {"vocab_size": V, "eos_token_id": EOS, "pad_token_id": PAD, "seed": 7}
    base.update(kw)
    return T5SpanCorruptionCollator(**base)


def bart(**kw) -> BartDenoisingCollator:
    base = {
        "vocab_size": V,
        "bos_token_id": BOS,
        "eos_token_id": EOS,
        "pad_token_id": PAD,
        "mask_token_id": MASK,
        "special_token_ids": [3],
        "seed": 7,
    }
    base.update(kw)
    return BartDenoisingCollator(**base)


def ul2(**kw) -> UL2Collator:
    base = {"vocab_size": V, "eos_token_id": EOS, "pad_token_id": PAD, "seed": 7}
    base.update(kw)
    if "mode_token_ids" not in base and base.get("mode_tokens", True):
        base["mode_token_ids"] = {"R": 5, "X": 6, "S": 7}
    return UL2Collator(**base)


def rows_of(n: int, lo: int, hi: int, seed: int = 0, top: int = 800) -> list[list[int]]:
    """Rows of ids in [10, top): below every sentinel (UL2 at 512 uses 127 of them)."""
    g = np.random.default_rng(seed)
    return [g.integers(10, top, size=int(k)).tolist() for k in g.integers(lo, hi + 1, size=n)]


def valid(batch, i, key="input_ids", mask="attention_mask") -> list[int]:
    """Row i of ``key`` without its padding."""
    row = np.asarray(batch[key][i])
    if key == "labels":
        return row[row != -100].tolist()
    return row[np.asarray(batch[mask][i]) == 1].tolist()


def reconstruct(inputs: list[int], targets: list[int], sentinels) -> list[int]:
    """Fills every input sentinel with the target tokens after the same sentinel (both end
    with EOS, which rows may also contain)."""
    sset = set(sentinels)
    body = targets[:-1]
    out = []
    for x in inputs[:-1]:
        if x in sset:
            j = body.index(x) + 1
            while j < len(body) and body[j] not in sset:
                out.append(body[j])
                j += 1
        else:
            out.append(x)
    return out


def noise_runs(inputs: list[int], targets: list[int], sentinels) -> list[tuple[int, int]]:
    """The noise runs (start, length) of a row, read back from its inputs and targets."""
    sset = set(sentinels)
    seg: dict[int, int] = {}
    current = None
    for x in targets[:-1]:
        if x in sset:
            current = x
            seg[x] = 0
        else:
            seg[current] += 1
    runs, pos = [], 0
    for x in inputs[:-1]:
        if x in sset:
            runs.append((pos, seg[x]))
            pos += seg[x]
        else:
            pos += 1
    return runs


def chi2_critical(dof: int, z: float = 4.9) -> float:
    """Upper critical value of chi-square (Wilson–Hilferty), z = 4.9 ≈ p 5e-7."""
    a = 2.0 / (9.0 * dof)
    return dof * (1 - a + z * math.sqrt(a)) ** 3


def chi2(counts, expected) -> float:
    counts, expected = np.asarray(counts, float), np.asarray(expected, float)
    return float(((counts - expected) ** 2 / expected).sum())


# -- T5 length arithmetic ----------------------------------------------------------------------


def helper_lengths(n: int, d: float, mu: float) -> tuple[int, int]:
    """(inputs, targets) of n raw tokens in T5's random_spans_helper."""
    noise = round(n * d)
    spans = round(noise / mu)
    return n - noise + spans + 1, noise + spans + 1


def t5_helper(inputs_length: int, d: float, mu: float, start: int | None = None):
    """T5's random_spans_helper(…, 1, 1), transcribed (start = HF's starting point)."""

    def f(n):
        return helper_lengths(n, d, mu)

    n = inputs_length - 1 if start is None else start
    while f(n + 1)[0] <= inputs_length:
        n += 1
    inputs, targets = f(n)
    if d == 0.5 and targets > inputs:
        n -= 1
        targets -= 1
    return n, targets


@pytest.mark.parametrize(
    ("length", "d", "mu", "raw", "targets"),
    [
        (512, 0.15, 3.0, 568, 114),
        (512, 0.15, 8.0, 588, 100),
        (512, 0.5, 3.0, 766, 512),
        (512, 0.5, 8.0, 908, 512),
        (512, 0.15, 64.0, 600, 92),
        (512, 0.5, 64.0, 1006, 512),
        (512, 0.15, 32.0, 598, 94),
        (1024, 0.15, 3.0, 1137, 229),
        (1024, 0.5, 3.0, 1534, 1024),
        (2048, 0.15, 3.0, 2274, 456),
        (128, 0.15, 3.0, 141, 29),
        (114, 0.5, 8.0, 201, 113),
    ],
)
def test_lengths_match_the_reference_table(length, d, mu, raw, targets):
    assert compute_input_and_target_lengths(length, d, mu) == (raw, targets)


def test_lengths_match_the_reference_formula_over_a_grid():
    for length in (64, 114, 128, 512, 568, 1024, 2048):
        for d in (0.15, 0.3, 0.5, 0.8):
            for mu in (1.0, 3.0, 8.0, 32.0, 64.0):
                want = t5_helper(length, d, mu)
                assert compute_input_and_target_lengths(length, d, mu) == want
                assert helper_lengths(want[0], d, mu)[0] <= length
                # Hugging Face starts its search one higher: the same answer whenever that
                # start fits; otherwise (e.g. μ = 1 at d = 0.8) HF's inputs overflow.
                hf = t5_helper(length, d, mu, start=length)
                if helper_lengths(length, d, mu)[0] <= length:
                    assert hf == want
                else:
                    assert helper_lengths(hf[0], d, mu)[0] > length


def test_density_zero_follows_t5_not_hugging_face():
    assert compute_input_and_target_lengths(512, 0.0, 3.0) == (511, 1)
    assert t5_helper(512, 0.0, 3.0) == (511, 1)
    assert t5_helper(512, 0.0, 3.0, start=512) == (512, 1)  # HF: inputs would be 513


@pytest.mark.parametrize(
    ("args", "exc", "match"),
    [
        ((512, 1.0, 3.0), ValueError, "noise_density"),
        ((512, -0.1, 3.0), ValueError, "noise_density"),
        ((512, float("nan"), 3.0), ValueError, "noise_density"),
        ((512, 0.15, 0.5), ValueError, "mean_noise_span_length"),
        ((512, 0.15, float("inf")), ValueError, "mean_noise_span_length"),
        ((0, 0.15, 3.0), ValueError, "inputs_length"),
        (("512", 0.15, 3.0), TypeError, "inputs_length"),
        ((512, "0.15", 3.0), TypeError, "noise_density"),
    ],
)
def test_length_arithmetic_rejects_bad_arguments(args, exc, match):
    with pytest.raises(exc, match=match):
        compute_input_and_target_lengths(*args)


def test_collator_lengths_fit_the_mask_where_t5_miscounts():
    # noise/μ < 0.5: T5's helper counts no span, every row has one; the collator shortens the
    # raw length so that the inputs still fit.
    c = t5(input_length=64, mean_noise_span_length=64.0)
    assert c.raw_length < compute_input_and_target_lengths(64, 0.15, 64.0)[0]
    b = c(rows_of(8, c.raw_length, c.raw_length))
    assert b["input_ids"].shape[1] == 64
    assert b["labels"].shape[1] == c.target_length


# -- T5 batches ---------------------------------------------------------------------------------


def test_t5_defaults_give_t5s_shapes_and_sentinels():
    c = t5()
    assert (c.raw_length, c.target_length, c.vocab_size) == (568, 114, V)
    assert c.sentinel_ids == SENTINELS
    data = rows_of(16, 568, 568)
    b = c(data)
    assert sorted(b) == sorted(KEYS)
    assert b["input_ids"].shape == (16, 512)
    assert b["labels"].shape == (16, 114)
    assert (b["attention_mask"] == 1).all()
    assert (b["decoder_attention_mask"] == 1).all()
    assert (b["input_ids"][:, -1] == EOS).all()
    assert (b["labels"][:, -1] == EOS).all()
    assert (b["labels"][:, 0] == V - 1).all(), "targets start with <extra_id_0>"
    for i, row in enumerate(data):
        inputs, labels = b["input_ids"][i].tolist(), b["labels"][i].tolist()
        assert reconstruct(inputs, labels, SENTINELS) == row
        runs = noise_runs(inputs, labels, SENTINELS)
        assert sum(n for _, n in runs) == 85
        assert len(runs) == 28
        assert runs[0][0] > 0
        assert sum(runs[-1]) == 568
        used = [x for x in inputs if x in set(SENTINELS)]
        assert used == SENTINELS[: len(used)], "sentinels counted down in order"


@pytest.mark.parametrize("roll", [False, True])
def test_t5_inputs_and_targets_reconstruct_every_row(roll):
    c = t5(input_length=128, random_roll=roll)
    data = rows_of(200, 1, c.raw_length, seed=1)
    b = c(data)
    for i, row in enumerate(data):
        inputs, labels = valid(b, i), valid(b, i, "labels")
        assert inputs[-1] == EOS
        assert labels[-1] == EOS
        assert reconstruct(inputs, labels, SENTINELS) == row
        noise, _clean, spans = ref.t5_counts(len(row), 0.15, 3.0)
        runs = noise_runs(inputs, labels, SENTINELS)
        if len(row) > 1:
            assert sum(n for _, n in runs) == noise
            assert len(runs) in ((spans, spans + 1) if roll else (spans,))
        assert len(inputs) <= 128
        assert len(labels) <= c.target_length


def test_t5_construction_equals_hugging_faces_for_the_same_mask():
    c = t5()
    data = np.asarray(rows_of(8, 568, 568, seed=2))
    b = c(data)
    hf = HFT5MLMCollator(vocab_len=V, eos_token_id=EOS, pad_token_id=PAD, decoder_start_token_id=0)
    mask = np.zeros(data.shape, dtype=bool)
    for i in range(len(data)):
        for s, n in noise_runs(b["input_ids"][i].tolist(), b["labels"][i].tolist(), SENTINELS):
            mask[i, s : s + n] = True
    inputs = hf.filter_input_ids(data, hf.create_sentinel_ids(mask.astype(np.int8)))
    labels = hf.filter_input_ids(data, hf.create_sentinel_ids((~mask).astype(np.int8)))
    np.testing.assert_array_equal(b["input_ids"], inputs)
    np.testing.assert_array_equal(b["labels"], labels)
    np.testing.assert_array_equal(b["decoder_input_ids"], shift_tokens_right(labels, PAD, PAD))


def test_decoder_inputs_equal_the_models_own_shift():
    import torch
    import transformers

    c = t5(input_length=64)
    b = c(rows_of(6, 5, c.raw_length, seed=3))
    cfg = transformers.T5Config(
        vocab_size=V,
        d_model=16,
        d_kv=8,
        d_ff=32,
        num_layers=1,
        num_heads=2,
        decoder_start_token_id=0,
        pad_token_id=0,
    )
    model = transformers.T5ForConditionalGeneration(cfg)
    shifted = model._shift_right(torch.from_numpy(b["labels"]))
    np.testing.assert_array_equal(shifted.numpy(), b["decoder_input_ids"])
    bb = bart()(rows_of(6, 5, 60, seed=3))
    want = transformers.models.bart.modeling_bart.shift_tokens_right(
        torch.from_numpy(bb["labels"]), PAD, EOS
    )
    np.testing.assert_array_equal(want.numpy(), bb["decoder_input_ids"])


def test_t5_noise_span_lengths_are_uniform_compositions():
    # Rows of 40 tokens: noise = 6 in m = 2 spans, clean = 34 in 2 parts. The first noise
    # span has P(k) = C(n−k−1, m−2)/C(n−1, m−1) = 1/5 for k = 1..5; the first clean span 1/33.
    c = t5(input_length=64, seed=11)
    counts_noise, counts_clean = Counter(), Counter()
    for batch in range(10):
        data = rows_of(500, 40, 40, seed=100 + batch)
        b = c(data)
        for i in range(len(data)):
            runs = noise_runs(valid(b, i), valid(b, i, "labels"), SENTINELS)
            assert len(runs) == 2
            counts_noise[runs[0][1]] += 1
            counts_clean[runs[0][0]] += 1
    n = sum(counts_noise.values())
    noise = [counts_noise[k] for k in range(1, 6)]
    assert chi2(noise, [n / 5] * 5) < chi2_critical(4)
    clean = [counts_clean[k] for k in range(1, 34)]
    assert chi2(clean, [n / 33] * 33) < chi2_critical(32)
    # Control: a law favouring short spans (P(k) ∝ 6 − k) must be rejected.
    assert chi2(noise, [n * (6 - k) / 15 for k in range(1, 6)]) > chi2_critical(4)


def test_random_roll_spreads_the_noise_over_positions():
    def position_rates(roll):
        c = t5(input_length=64, random_roll=roll, seed=5)
        hits = np.zeros(50)
        for batch in range(8):
            data = rows_of(500, 50, 50, seed=200 + batch)
            b = c(data)
            for i in range(len(data)):
                for s, n in noise_runs(valid(b, i), valid(b, i, "labels"), SENTINELS):
                    hits[s : s + n] += 1
        return hits, 8 * 500

    hits, n = position_rates(True)
    p = 8 / 50  # round(50 · 0.15) = 8 noise tokens per row
    z = (hits - n * p) / math.sqrt(n * p * (1 - p))
    assert np.abs(z).max() < 5, z
    hits, n = position_rates(False)  # control: unrolled masks always end noisy
    assert hits[-1] == n
    assert hits[0] == 0


def test_sentinels_from_a_tokenizer_with_extra_ids():
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    vocab.update({f"w{i}": i for i in range(3, 900)})
    vocab.update({f"<extra_id_{k}>": 999 - k for k in range(100)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    c = T5SpanCorruptionCollator(tok, seed=0)
    assert (c.vocab_size, c.eos_token_id, c.pad_token_id) == (1000, 1, 0)
    assert c.sentinel_ids == SENTINELS
    # A tokenizer without extra ids: 100 sentinels appended after its vocabulary.
    plain = {k: v for k, v in vocab.items() if not k.startswith("<extra")}
    tok2 = Tokenizer(models.WordLevel(plain, unk_token="<unk>"))
    c2 = T5SpanCorruptionCollator(tok2, seed=0)
    assert c2.vocab_size == 900 + 100
    assert c2.sentinel_ids[0] == 999
    assert c2.sentinel_ids[-1] == 900


def test_embedded_corpus_tokenizer_configures_t5():
    corpus = lmobjectives.TokenCorpus.default()
    c = T5SpanCorruptionCollator(corpus.tokenizer, seed=0)
    assert c.vocab_size == corpus.vocab_size + 100
    assert c.eos_token_id == corpus.tokenizer.token_to_id("[SEP]")
    assert c.pad_token_id == corpus.tokenizer.token_to_id("[PAD]")
    chunks = CorpusChunks(corpus, c.raw_length, separator=[c.eos_token_id])
    b = c([chunks[i] for i in range(4)])
    assert b["input_ids"].shape == (4, 512)
    assert b["labels"].shape == (4, 114)
    for i in range(4):
        row = chunks[i]["input_ids"].tolist()
        assert (
            reconstruct(b["input_ids"][i].tolist(), b["labels"][i].tolist(), c.sentinel_ids) == row
        )


def test_explicit_sentinels_and_too_few_of_them():
    c = t5(sentinel_ids=[950 + k for k in range(40)])
    b = c(rows_of(4, 568, 568))
    assert b["labels"][0, 0] == 950
    with pytest.raises(ValueError, match=r"28 noise spans.*20 sentinel"):
        t5(sentinel_ids=list(range(950, 970)))
    # UL2's X(50%, 3) at 512 makes 128 spans: more than T5's 100 extra ids.
    with pytest.raises(ValueError, match="128 noise spans"):
        t5(noise_density=0.5)
    with pytest.raises(ValueError, match="sentinel"):
        t5(sentinel_ids=[EOS, 990])
    with pytest.raises(ValueError, match="more than once"):
        t5(sentinel_ids=[990, 990])


def test_t5_padding_truncation_and_attention_mask_input():
    c = t5(input_length=64)
    short = rows_of(5, 3, 40, seed=4)
    b = c(short)
    assert b["input_ids"].shape[1] == max(len(valid(b, i)) for i in range(5))
    fixed = t5(input_length=64, padding="max_length", pad_to_multiple_of=8)(short)
    assert fixed["input_ids"].shape == (5, 64)
    assert fixed["labels"].shape == (5, math.ceil(c.target_length / 8) * 8)
    for i in range(5):
        np.testing.assert_array_equal(valid(b, i), valid(fixed, i))
    too_long = rows_of(2, c.raw_length + 1, c.raw_length + 5)
    with pytest.raises(ValueError, match="truncation=True"):
        c(too_long)
    cut = t5(input_length=64, truncation=True)(too_long)
    for i, row in enumerate(too_long):
        got = reconstruct(valid(cut, i), valid(cut, i, "labels"), SENTINELS)
        assert got == row[: c.raw_length]
    # Pre-padded rows with an attention mask (right or left padding) lose their padding.
    arr = np.zeros((2, 40), dtype=np.int64)
    att = np.zeros((2, 40), dtype=np.int64)
    arr[0, :30], att[0, :30] = np.arange(11, 41), 1  # right padding
    arr[1, 10:], att[1, 10:] = np.arange(50, 80), 1  # left padding
    b = c({"input_ids": arr, "attention_mask": att})
    assert reconstruct(valid(b, 0), valid(b, 0, "labels"), SENTINELS) == list(range(11, 41))
    assert reconstruct(valid(b, 1), valid(b, 1, "labels"), SENTINELS) == list(range(50, 80))
    bad = att.copy()
    bad[1, 20] = 0
    with pytest.raises(ValueError, match="padding between"):
        c({"input_ids": arr, "attention_mask": bad})


# -- corpus chunks -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_corpus(small_tokenizer):
    from lmobjectives.corpus import TokenCorpus

    g = np.random.default_rng(0)
    docs = [
        [" ".join(f"w{i}" for i in g.integers(5, 900, size=n)) for n in g.integers(2, 12, 6)]
        for _ in range(30)
    ]
    return TokenCorpus.from_texts(docs, small_tokenizer, progress=False, source="test")


def test_corpus_chunks_concatenate_documents_with_a_separator(small_corpus):
    sep = [3, 3]
    chunks = CorpusChunks(small_corpus, 50, separator=sep, sentence_starts=True)
    stream = []
    for d in range(small_corpus.num_documents):
        stream += small_corpus.document(d).tolist() + sep
    assert len(chunks) == len(stream) // 50
    for i in range(len(chunks)):
        item = chunks[i]
        assert item["idx"] == i
        assert item["input_ids"].tolist() == stream[i * 50 : (i + 1) * 50]
    # Sentence starts: 1 exactly where a corpus sentence begins in the stream.
    starts = np.zeros(len(stream), dtype=np.uint8)
    pos = 0
    for d in range(small_corpus.num_documents):
        for s in small_corpus.document_sentences(d):
            starts[pos] = 1
            pos += len(s)
        pos += len(sep)
    assert chunks[3]["sentence_starts"].tolist() == starts[150:200].tolist()
    keep = CorpusChunks(small_corpus, 50, separator=sep, drop_last=False)
    assert len(keep) == math.ceil(len(stream) / 50)
    assert keep[-1]["input_ids"].tolist() == stream[(len(keep) - 1) * 50 :]
    plain = CorpusChunks(small_corpus, 7)
    assert plain[0]["input_ids"].tolist() == small_corpus.ids[:7].tolist()
    with pytest.raises(IndexError):
        chunks[len(chunks)]
    with pytest.raises(ValueError, match="length"):
        CorpusChunks(small_corpus, 0)
    with pytest.raises(ValueError, match="separator"):
        CorpusChunks(small_corpus, 5, separator=[small_corpus.vocab_size])
    clone = pickle.loads(pickle.dumps(chunks))
    assert clone[2]["input_ids"].tolist() == chunks[2]["input_ids"].tolist()


# -- BART ------------------------------------------------------------------------------------


def test_bart_outputs_and_invariants():
    data = rows_of(32, 20, 200, seed=5)
    b = bart(insert_ratio=0.05, rotate_ratio=0.5)(data)
    assert sorted(b) == sorted(KEYS)
    for i, row in enumerate(data):
        assert valid(b, i, "labels") == [BOS, *row, EOS]
        noised = valid(b, i)
        assert noised[0] == BOS
        assert noised[-1] == EOS
        assert all(0 <= x < V for x in noised)
        assert not set(noised[1:-1]) & {BOS, EOS, PAD, 3}, "random ids are never special"
    np.testing.assert_array_equal(b["decoder_input_ids"], shift_tokens_right(b["labels"], PAD, EOS))


def test_bart_infilling_one_mask_per_removed_run():
    # Increasing ids: every kept original token is recognisable; without insertions or random
    # ids, each mask stands for a maximal run of removed tokens (overlaps merge).
    c = bart(random_ratio=0.0, permute_sentence_ratio=0.0, poisson_lambda=8.0)
    data = [list(range(10, 10 + n)) for n in (60, 120, 250, 400)] * 10
    b = c(data)
    for i, row in enumerate(data):
        out = valid(b, i)[1:-1]
        kept = [x for x in out if x != MASK]
        assert kept == sorted(kept)
        assert set(kept) <= set(row)
        budget = math.ceil(float(np.float32(len(row)) * np.float32(0.3)))
        assert len(row) - len(kept) <= budget
        # Every gap in the kept tokens has a mask where the removed run was.
        marked = [9, *out, row[-1] + 1]
        where = [j for j, x in enumerate(marked) if x != MASK]
        for a, z in itertools.pairwise(where):
            if marked[z] != marked[a] + 1:
                assert MASK in marked[a + 1 : z], "removed tokens without a mask"


def test_bart_replace_length_zero_deletes_and_minus_one_masks_every_token():
    data = [list(range(10, 110))] * 20
    deleted = bart(replace_length=0, mask_length="subword", permute_sentence_ratio=0.0)(data)
    budget = math.ceil(float(np.float32(100) * np.float32(0.3)))  # 31 in float32
    assert budget == 31
    for i in range(20):
        out = valid(deleted, i)
        assert len(out) == 102 - budget
        assert MASK not in out
    every = bart(replace_length=-1, random_ratio=0.0, permute_sentence_ratio=0.0)(data)
    for i in range(20):
        out = valid(every, i)
        originals = [x for x in out[1:-1] if x != MASK]
        inserted = len(out) - 102
        assert len(out) >= 102
        assert out.count(MASK) - inserted <= budget
        assert originals == sorted(originals)


def test_bart_whole_words_are_masked_together():
    # Word starts: even ids start a word, odd ids continue it (words of two tokens).
    table = np.array([i % 2 == 0 or i < 10 for i in range(V)])
    for mask_length in ("word", "span-poisson"):
        c = bart(
            word_starts=table,
            mask_length=mask_length,
            replace_length=-1,
            random_ratio=0.0,
            permute_sentence_ratio=0.0,
            poisson_lambda=2.0,
        )
        data = [list(range(10, 70))] * 30
        b = c(data)
        for i in range(30):
            out = valid(b, i)
            if len(out) != 62:
                continue  # zero-length spans inserted masks
            words = [(out[j], out[j + 1]) for j in range(1, 61, 2)]
            assert all((a == MASK) == (z == MASK) for a, z in words)
            if mask_length == "word":
                assert sum(a == MASK for a, _ in words) == 9  # ceil(30 · 0.3)


def test_bart_sentence_permutation_preserves_the_sentences(small_corpus):
    chunks = CorpusChunks(small_corpus, 60, sentence_starts=True)
    c = bart(mask_ratio=0.0, permute_sentence_ratio=1.0)
    items = [chunks[i] for i in range(len(chunks))]
    b = c(items)
    moved = 0
    for i, item in enumerate(items):
        ids, starts = item["input_ids"].tolist(), item["sentence_starts"].tolist()
        cuts = [j for j in range(1, len(ids)) if starts[j]]
        sentences = [ids[a:z] for a, z in zip([0, *cuts], [*cuts, len(ids)], strict=False)]
        out = valid(b, i)[1:-1]
        assert sorted(out) == sorted(ids)
        # The output is a concatenation of the same sentences in some order.
        remaining, pos = Counter(map(tuple, sentences)), 0
        while pos < len(out):
            match = next(
                s for s in remaining if remaining[s] and tuple(out[pos : pos + len(s)]) == s
            )
            remaining[match] -= 1
            pos += len(match)
        moved += out != ids
    assert moved > len(items) // 2


def test_bart_rotation_is_a_cyclic_shift_and_insertion_counts():
    data = [list(range(10, 60))] * 50
    rotated = bart(mask_ratio=0.0, permute_sentence_ratio=0.0, rotate_ratio=1.0)(data)
    offsets = set()
    for i in range(50):
        out = valid(rotated, i)[1:-1]
        k = out.index(10)
        assert out[k:] + out[:k] == data[i]
        offsets.add(k)
    assert len(offsets) > 10
    ins = bart(mask_ratio=0.0, permute_sentence_ratio=0.0, insert_ratio=0.1, random_ratio=0.25)
    b = ins(data)
    for i in range(50):
        out = valid(b, i)
        n = math.ceil(52 * 0.1)
        assert len(out) == 52 + n
        assert out.count(MASK) == n - math.ceil(n * 0.25)
        assert out[0] == BOS
        assert out[-1] == EOS


def test_poisson_span_lengths_chi_square_with_a_failing_control():
    c = bart()
    probs = c.span_length_probabilities
    assert len(probs) == 18
    assert abs(probs[0] - math.exp(-3)) < 1e-6
    assert len(bart(poisson_lambda=3.5).span_length_probabilities) == 19
    n = 100_000

    def stat(lengths):
        counts = np.bincount(lengths, minlength=len(probs))[: len(probs)].astype(float)
        tail = slice(10, None)  # pool k >= 10 so every expected count is large
        obs = np.append(counts[:10], counts[tail].sum())
        exp = np.append(probs[:10], probs[tail].sum()) * n
        return chi2(obs, exp)

    assert stat(c._noiser.sample_span_lengths(n, seed=1)) < chi2_critical(10)
    control = bart(poisson_lambda=3.2)._noiser.sample_span_lengths(n, seed=1)
    assert stat(control) > chi2_critical(10)


def masked_shares(batch, rows, n):
    """Per row: share of the n original tokens masked (replace_length=-1, no random ids;
    inserted masks are subtracted)."""
    out = []
    for i in range(rows):
        row = valid(batch, i)
        out.append((row.count(MASK) - (len(row) - n - 2)) / n)
    return np.asarray(out)


def test_bart_masked_token_ratio_matches_fairseq():
    kw = {"replace_length": -1, "random_ratio": 0.0, "permute_sentence_ratio": 0.0}
    data = [list(range(10, 410))] * 80
    # One-token spans: exactly the budget, ceil(400 · 0.3) = 121 in float32 as fairseq.
    sub = masked_shares(bart(mask_length="subword", **kw)(data), 80, 400)
    assert (sub == math.ceil(400 * np.float32(0.3)) / 400).all()
    # Poisson spans overlap, so fewer tokens are masked; fairseq's port agrees on how many.
    ours = masked_shares(bart(**kw)(data), 80, 400)
    assert (ours <= 121 / 400).all()

    def port(ratio):
        noiser = FairseqBartNoiser(
            vocab_size=V,
            bos_token_id=BOS,
            eos_token_id=EOS,
            pad_token_id=PAD,
            mask_token_id=MASK,
            mask_ratio=ratio,
            seed=3,
            **kw,
        )
        return masked_shares(noiser(data), 80, 400)

    def t(a, b):
        return (a.mean() - b.mean()) / math.sqrt(a.var() / len(a) + b.var() / len(b))

    assert abs(t(ours, port(0.3))) < 5
    assert abs(t(ours, port(0.25))) > 5, "control: a lower ratio is detected"


def test_bart_random_span_share():
    # Rows of one repeated token: a random replacement is any other id, a span otherwise
    # leaves one mask (replace_length=1). Overlaps remove spans independently of their flag.
    c = bart(random_ratio=0.1, permute_sentence_ratio=0.0, poisson_lambda=8.0)
    b = c([[10] * 490] * 200)
    masks = randoms = 0
    for i in range(200):
        out = valid(b, i)[1:-1]
        masks += out.count(MASK)
        randoms += sum(x not in (10, MASK) for x in out)
    spans = masks + randoms
    z = (randoms - 0.1 * spans) / math.sqrt(spans * 0.09)
    assert abs(z) < 5, (randoms, spans)


def reference_bart(**kw) -> ref.BartReference:
    base = {"vocab_size": V, "bos": BOS, "eos": EOS, "pad": PAD, "mask": MASK, "specials": [3]}
    base.update(kw)
    return ref.BartReference(**base)


BART_CASES = [
    {"full_stops": [9], "insert_ratio": 0.1, "rotate_ratio": 0.5},
    {"full_stops": [9], "replace_length": 0, "poisson_lambda": 3.5},
    {"full_stops": [9], "replace_length": -1, "mask_length": "word"},
    {"full_stops": [9], "mask_length": "subword", "rotate_ratio": 1.0, "permute_ratio": 0.5},
    {"full_stops": [], "replace_length": 1, "poisson_lambda": 2.0, "insert_ratio": 0.2},
]


def _kw(case):
    """A BartReference case as collator keyword arguments."""
    names = {"full_stops": "full_stop_token_ids", "permute_ratio": "permute_sentence_ratio"}
    return {names.get(k, k): v for k, v in case.items()}


def _bart_rows(seed):
    g = np.random.default_rng(seed)
    rows = []
    for n in g.integers(3, 120, size=12):
        row = g.integers(10, 900, size=int(n))
        row[g.random(int(n)) < 0.12] = 9  # full stops
        rows.append(row.tolist())
    return rows


@pytest.mark.parametrize("case", BART_CASES)
def test_bart_kernel_matches_the_documented_algorithm_draw_for_draw(case):
    table = np.array([i % 3 != 0 or i < 10 for i in range(V)])
    case = {**case, "random_ratio": 0.2, "word_starts": table}
    rows = _bart_rows(1)
    c = bart(seed=31, **_kw(case))
    c.set_epoch(2, batch_index=4)
    got = c(rows)
    reference = reference_bart(**case)
    for i, row in enumerate(rows):
        rng = ref.row_rng(31, 2, "bart", batch=4, row=i)
        assert valid(got, i) == reference.noise([BOS, *row, EOS], rng)


@pytest.mark.parametrize("case", BART_CASES)
def test_bart_equals_fairseq_given_the_same_decisions(case):
    """Replay: the fairseq port, fed the kernel's decisions, produces identical rows."""
    table = np.array([i % 3 != 0 or i < 10 for i in range(V)])
    case = {**case, "random_ratio": 0.0, "word_starts": table}
    rows = _bart_rows(2)
    got = bart(seed=5, **_kw(case))(rows)
    reference = reference_bart(**case)
    for i, row in enumerate(rows):
        src = [BOS, *row, EOS]
        ours = reference.noise(src, ref.row_rng(5, 0, "bart", batch=0, row=i))
        assert valid(got, i) == ours
        replay = ref.ReplayRandom(reference.log)
        fairseq = FairseqBartNoiser(
            vocab_size=V,
            bos_token_id=BOS,
            eos_token_id=EOS,
            pad_token_id=PAD,
            mask_token_id=MASK,
            word_starts=table,
            full_stop_token_ids=case["full_stops"],
            mask_ratio=case.get("mask_ratio", 0.3),
            random_ratio=0.0,
            insert_ratio=case.get("insert_ratio", 0.0),
            rotate_ratio=case.get("rotate_ratio", 0.0),
            permute_sentence_ratio=case.get("permute_ratio", 1.0),
            poisson_lambda=case.get("poisson_lambda", 3.0),
            mask_length=case.get("mask_length", "span-poisson"),
            replace_length=case.get("replace_length", 1),
            rng=replay,
        )
        assert fairseq.noise(np.asarray(src)).tolist() == ours
        assert replay.exhausted()


def test_word_start_tables_from_tokenizers():
    from tokenizers import Tokenizer, models

    wp = Tokenizer(models.WordPiece({"[UNK]": 0, "[CLS]": 1, "play": 2, "##ing": 3, "##s": 4}))
    wp.add_special_tokens(["[CLS]"])
    assert word_start_table(wp).tolist() == [True, True, True, False, False]
    sp = Tokenizer(
        models.WordLevel(
            {"<unk>": 0, "\u2581the": 1, "re": 2, "\u2581cat": 3, ",": 4}, unk_token="<unk>"
        )
    )
    assert word_start_table(sp).tolist() == [False, True, False, True, False]
    sp.add_special_tokens(["<unk>"])
    assert word_start_table(sp)[0]
    bl = Tokenizer(models.BPE({"a": 0, "\u0120the": 1, "ing": 2, "\u0120a": 3}, merges=[]))
    assert word_start_table(bl, vocab_size=6).tolist() == [False, True, False, True, True, True]
    with pytest.raises(ValueError, match="word starts"):
        word_start_table(Tokenizer(models.WordLevel({"a": 0, "b": 1}, unk_token="a")))
    with pytest.raises(ValueError, match="scheme"):
        word_start_table(wp, scheme="bpe")
    with pytest.raises(ValueError, match="vocab_size"):
        word_start_table(wp, vocab_size=2)


def test_bart_takes_word_starts_from_its_tokenizer(small_tokenizer):
    corpus = lmobjectives.TokenCorpus.default()
    c = BartDenoisingCollator(corpus.tokenizer, seed=0)
    table = c.word_starts
    tok = corpus.tokenizer
    assert not table[tok.token_to_id("##s")]
    assert table[tok.token_to_id("the")]
    assert table[tok.token_to_id("[CLS]")]
    assert (c.bos_token_id, c.eos_token_id, c.mask_token_id) == (2, 3, 4)
    assert BartDenoisingCollator(corpus.tokenizer, mask_length="subword").word_starts is None
    with pytest.raises(ValueError, match="word_starts"):
        bart(word_starts=np.ones(10, dtype=bool))
    with pytest.raises(TypeError, match="word_starts"):
        bart(word_starts=np.ones(V, dtype=np.int64))


def test_bart_add_special_tokens_false_checks_the_rows():
    c = bart(add_special_tokens=False, permute_sentence_ratio=0.0)
    rows = [[BOS, *range(10, 40), EOS]]
    b = c(rows)
    assert valid(b, 0, "labels") == rows[0]
    with pytest.raises(ValueError, match="BOS"):
        c([[10, 11, EOS]])


# -- UL2 -----------------------------------------------------------------------------------------


def ul2_task(inputs, labels, c) -> int:
    """Which denoiser made a row of the collator's max raw length."""
    modes = {v: k for k, v in c.mode_token_ids.items()}
    mode = modes[inputs[0]]
    if mode == "S":
        return 6
    runs = noise_runs(inputs[1:], labels, c.sentinel_ids)
    noise, spans = sum(n for _, n in runs), len(runs)
    for j, d in enumerate(c.denoisers[:6]):
        raw = c.raw_lengths[j]
        want = ref.t5_counts(raw, d.noise_density, d.mean_noise_span_length)
        if (noise, spans) == (want[0], want[2]):
            return j
    raise AssertionError(f"no denoiser makes {noise} noise tokens in {spans} spans")


def test_ul2_default_denoisers_lengths_and_mode_tokens():
    c = ul2()
    assert len(c.denoisers) == 7
    assert c.denoisers == UL2_DENOISERS
    # Raw lengths are computed for 511 inputs (one slot for the mode token).
    assert c.raw_lengths[:6] == [
        compute_input_and_target_lengths(511, d.noise_density, d.mean_noise_span_length)[0]
        for d in c.denoisers[:6]
    ]
    assert c.raw_lengths[6] == 510
    assert len(c.sentinel_ids) >= 127
    data = rows_of(140, c.max_raw_length, c.max_raw_length, seed=8)
    b = c(data)
    assert b["input_ids"].shape[1] <= 512
    seen = Counter()
    for i, row in enumerate(data):
        inputs, labels = valid(b, i), valid(b, i, "labels")
        task = ul2_task(inputs, labels, c)
        seen[task] += 1
        d = c.denoisers[task]
        assert inputs[0] == c.mode_token_ids[d.mode]
        raw = row[: c.raw_lengths[task]]
        if d.mode == "S":
            assert inputs[1:-1] + labels[:-1] == raw
            assert len(inputs) >= 3
        else:
            assert reconstruct(inputs[1:], labels, c.sentinel_ids) == raw
    assert len(seen) == 7


def test_ul2_task_frequencies_follow_the_weights():
    def counts(c):
        seen = Counter()
        for batch in range(3):
            data = rows_of(300, c.max_raw_length, c.max_raw_length, seed=300 + batch)
            b = c(data)
            for i in range(len(data)):
                seen[ul2_task(valid(b, i), valid(b, i, "labels"), c)] += 1
        return np.array([seen[k] for k in range(7)])

    uniform = counts(ul2(input_length=128))
    n = uniform.sum()
    assert chi2(uniform, [n / 7] * 7) < chi2_critical(6)
    weights = [4, 1, 1, 1, 1, 1, 3]
    skewed = counts(ul2(input_length=128, weights=weights))
    assert chi2(skewed, [n * w / 12 for w in weights]) < chi2_critical(6)
    assert chi2(skewed, [n / 7] * 7) > chi2_critical(6), "control: not uniform"


def test_ul2_prefix_lengths_are_uniform():
    c = ul2(denoisers=[Denoiser("S", 0.5)], input_length=24)
    assert c.raw_lengths == [22]
    data = rows_of(4000, 22, 22, seed=9)
    b = c(data)
    lengths = Counter(len(valid(b, i)) - 2 for i in range(len(data)))  # minus mode and EOS
    assert set(lengths) == set(range(1, 22))
    assert chi2([lengths[k] for k in range(1, 22)], [4000 / 21] * 21) < chi2_critical(20)


def test_ul2_per_batch_mode_and_options(small_tokenizer):
    c = ul2(per_batch=True, input_length=128)
    data = rows_of(16, c.max_raw_length, c.max_raw_length)
    tasks = set()
    for index in range(12):
        b = c(data)
        found = {ul2_task(valid(b, i), valid(b, i, "labels"), c) for i in range(16)}
        assert len(found) == 1
        assert found == {c.batch_denoiser(index)}
        tasks |= found
    assert len(tasks) > 2
    none = ul2(mode_tokens=False, input_length=128)
    assert none.mode_token_ids == {}
    assert none.raw_lengths[0] == compute_input_and_target_lengths(128, 0.15, 3.0)[0]
    appended = UL2Collator(small_tokenizer, input_length=128)
    assert appended.mode_token_ids == {"R": 1000, "X": 1001, "S": 1002}
    assert appended.vocab_size == 1003 + len(appended.sentinel_ids)
    assert appended.sentinel_ids[0] == appended.vocab_size - 1
    from tokenizers import Tokenizer, models

    vocab = {"[PAD]": 0, "[SEP]": 1, "[UNK]": 2, "[NLU]": 3, "[NLG]": 4, "[S2S]": 5}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    named = UL2Collator(tok, input_length=128)
    assert named.mode_token_ids == {"R": 3, "X": 4, "S": 5}
    assert named.eos_token_id == 1
    with pytest.raises(ValueError, match="weights"):
        ul2(weights=[1, 2])
    with pytest.raises(ValueError, match="weights"):
        ul2(weights=[0] * 7)
    with pytest.raises(ValueError, match="mode_token_ids"):
        ul2(mode_token_ids={"R": 5})
    with pytest.raises(ValueError, match="prefix-LM"):
        ul2(denoisers=[Denoiser("S", 0.7)])
    with pytest.raises(ValueError, match="mean_noise_span_length"):
        Denoiser("X", 0.5)
    with pytest.raises(ValueError, match="mode"):
        Denoiser("Q", 0.5, 3.0)
    with pytest.raises(TypeError, match="denoisers"):
        ul2(denoisers=[(0.15, 3.0)])
    with pytest.raises(ValueError, match="sentinel"):
        ul2(num_sentinels=100)


# -- contracts (all three collators) -------------------------------------------------------------

FACTORIES = {
    "t5": lambda **kw: t5(input_length=128, **kw),
    "bart": lambda **kw: bart(insert_ratio=0.05, rotate_ratio=0.2, **kw),
    "ul2": lambda **kw: ul2(input_length=128, truncation=True, **kw),
}


def contract_rows(name, n=24, seed=0):
    return rows_of(n, 5, 140, seed=seed)


@pytest.mark.parametrize("name", FACTORIES)
def test_same_output_for_any_thread_count(name):
    data = rows_of(400, 100, 140, seed=1)
    ref_batch = FACTORIES[name](num_threads=1)(data)
    for threads in (2, 4, 0):
        got = FACTORIES[name](num_threads=threads)(data)
        for k in KEYS:
            np.testing.assert_array_equal(got[k], ref_batch[k])


@pytest.mark.parametrize("name", FACTORIES)
def test_streams_seeds_epochs_and_sample_keys(name):
    make = FACTORIES[name]
    data = contract_rows(name)
    a = make()
    first, second = a(data), a(data)
    assert not np.array_equal(first["input_ids"], second["input_ids"])
    b = make()
    np.testing.assert_array_equal(b(data)["input_ids"], first["input_ids"])
    assert not np.array_equal(make(seed=99)(data)["input_ids"], first["input_ids"])
    assert not np.array_equal(
        make(seed=None)(data)["input_ids"], make(seed=None)(data)["input_ids"]
    )
    examples = [{"input_ids": r, "idx": 100 + i} for i, r in enumerate(data)]
    whole = make()(examples)
    c = make()
    part = c(examples[7:15])
    for j, i in enumerate(range(7, 15)):
        assert valid(part, j) == valid(whole, i)
        assert valid(part, j, "labels") == valid(whole, i, "labels")
    c.set_epoch(1)
    e1 = c(examples)
    assert not np.array_equal(e1["input_ids"], whole["input_ids"])
    c.set_epoch(0)
    np.testing.assert_array_equal(c(examples)["input_ids"], whole["input_ids"])


@pytest.mark.parametrize("name", FACTORIES)
def test_resume_pickle_and_failed_calls(name):
    make = FACTORIES[name]
    batches = [contract_rows(name, 8, seed=s) for s in range(5)]
    full = make()
    expected = [full(d)["input_ids"] for d in batches]
    run = make()
    for d in batches[:2]:
        run(d)
    resumed = make(seed=1)
    resumed.load_state_dict(run.state_dict())
    for d, want in zip(batches[2:], expected[2:], strict=True):
        np.testing.assert_array_equal(resumed(d)["input_ids"], want)
    c = make()
    c(batches[0])
    clone = pickle.loads(pickle.dumps(c))
    assert repr(clone) == repr(c)
    np.testing.assert_array_equal(clone(batches[1])["labels"], c(batches[1])["labels"])
    fresh, failing = make(), make()
    with pytest.raises(ValueError, match="token id"):
        failing([[10, V]])
    np.testing.assert_array_equal(failing(batches[0])["input_ids"], fresh(batches[0])["input_ids"])


@pytest.mark.parametrize("name", FACTORIES)
def test_zero_copy_int32_torch_and_inputs_untouched(name):
    import torch

    make = FACTORIES[name]
    data = contract_rows(name)
    snapshot = copy.deepcopy(data)
    arr = np.asarray([r[:5] for r in data], dtype=np.int64)
    arr_copy = arr.copy()
    b = make()(data)
    make()(arr)
    assert data == snapshot
    np.testing.assert_array_equal(arr, arr_copy)
    for v in b.values():
        assert type(v.base).__name__ in ("PySliceContainer", "RecycledBuffer")
        assert v.flags.c_contiguous
    small = make(dtype="int32")(data)
    for k in KEYS:
        assert small[k].dtype == np.int32
        np.testing.assert_array_equal(small[k], b[k])
    pt = make(return_tensors="pt")(data)
    for k in KEYS:
        assert isinstance(pt[k], torch.Tensor)
        assert pt[k].dtype == torch.int64
        np.testing.assert_array_equal(pt[k].numpy(), b[k])


def test_dataloader_workers_do_not_change_batches():
    from torch.utils.data import DataLoader

    data = [{"input_ids": r} for r in rows_of(48, 20, 120, seed=6)]

    def epoch(workers):
        loader = DataLoader(
            data, batch_size=8, collate_fn=t5(input_length=128), num_workers=workers
        )
        return [b["input_ids"].copy() for b in loader]

    for a, b in zip(epoch(0), epoch(2), strict=True):
        np.testing.assert_array_equal(a, b)


def test_golden_outputs_for_one_seed():
    # Pins the streams: if these change, STREAM_VERSION must change too.
    row = list(range(10, 44))  # 34 raw tokens fill 32 inputs
    t = t5(input_length=32, seed=2024)([row])
    assert lmobjectives.STREAM_VERSION == 1
    assert t["input_ids"].tolist() == [GOLDEN_T5_INPUTS]
    assert t["labels"].tolist() == [GOLDEN_T5_LABELS]
    bt = bart(seed=2024, rotate_ratio=0.5, insert_ratio=0.1)([row])
    assert bt["input_ids"].tolist() == [GOLDEN_BART_INPUTS]
    u = ul2(
        input_length=16,
        seed=2024,
        denoisers=UL2_DENOISERS[:2] + UL2_DENOISERS[6:],
        truncation=True,
    )
    out = u([row, row, row])
    assert out["input_ids"][:, 0].tolist() == GOLDEN_UL2_MODES


GOLDEN_T5_INPUTS = [*range(10, 24), 999, *range(26, 41), 998, 1]
GOLDEN_T5_LABELS = [999, 24, 25, 998, 41, 42, 43, 1]
GOLDEN_BART_INPUTS = [
    2, 4, 24, 25, 26, 27, 28, 4, 31, 32, 33, 34, 35, 36, 11, 37, 38, 39, 40, 4, 10, 11, 12,
    13, 14, 4, 4, 15, 16, 17, 4, 20, 1,
]  # fmt: skip
GOLDEN_UL2_MODES = [5, 5, 7]


@pytest.mark.parametrize("roll", [False, True])
@pytest.mark.parametrize("keyed_by", ["batch", "sample"])
def test_t5_and_ul2_kernels_match_the_documented_algorithm(roll, keyed_by):
    rows = rows_of(10, 1, 60, seed=12)
    c = ul2(input_length=40, random_roll=roll, seed=77, truncation=True)
    c.set_epoch(3, batch_index=5)
    examples = [{"input_ids": r, "idx": 40 + i} for i, r in enumerate(rows)]
    got = c(examples if keyed_by == "sample" else rows)
    weights = [1.0] * 7
    for i, row in enumerate(rows):
        if keyed_by == "sample":
            rng = ref.row_rng(77, 3, "ul2", sample=40 + i)
        else:
            rng = ref.row_rng(77, 3, "ul2", batch=5, row=i)
        task = ref.mixture_pick(rng.next_u64(), weights)
        d = c.denoisers[task]
        raw = row[: c.raw_lengths[task]]
        mode = c.mode_token_ids[d.mode]
        if d.mode == "S":
            p = ref.prefix_length(rng, len(raw), d.noise_density)
            want = ([mode, *raw[:p], EOS], [*raw[p:], EOS])
        else:
            runs = ref.t5_runs(rng, len(raw), d.noise_density, d.mean_noise_span_length, roll)
            want = ref.t5_row(raw, runs, c.sentinel_ids, EOS, mode)
        assert (valid(got, i), valid(got, i, "labels")) == want


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "kwargs", "exc", "match"),
    [
        (t5, {"noise_density": 0.0}, ValueError, "noise_density"),
        (t5, {"noise_density": 1.0}, ValueError, "noise_density"),
        (t5, {"noise_density": "x"}, TypeError, "noise_density"),
        (t5, {"mean_noise_span_length": 0.5}, ValueError, "mean_noise_span_length"),
        (t5, {"input_length": 2}, ValueError, "input_length"),
        (t5, {"input_length": 0}, ValueError, "input_length"),
        (t5, {"vocab_size": None}, ValueError, "vocab_size"),
        (t5, {"eos_token_id": None}, ValueError, "eos_token_id"),
        (t5, {"eos_token_id": V}, ValueError, "eos_token_id"),
        (t5, {"pad_token_id": -1}, ValueError, "pad_token_id"),
        (t5, {"sentinel_ids": [V]}, ValueError, "sentinel_ids"),
        (t5, {"sentinel_ids": "abc"}, TypeError, "sentinel_ids"),
        (t5, {"num_sentinels": -1}, ValueError, "num_sentinels"),
        (t5, {"padding": "longer"}, ValueError, "padding"),
        (t5, {"pad_to_multiple_of": 0}, ValueError, "pad_to_multiple_of"),
        (t5, {"random_roll": 1}, TypeError, "random_roll"),
        (t5, {"dtype": "float32"}, ValueError, "dtype"),
        (bart, {"mask_ratio": 1.5}, ValueError, "mask_ratio"),
        (bart, {"random_ratio": -0.1}, ValueError, "random_ratio"),
        (bart, {"insert_ratio": -1.0}, ValueError, "insert_ratio"),
        (bart, {"rotate_ratio": 2.0}, ValueError, "rotate_ratio"),
        (bart, {"permute_sentence_ratio": float("nan")}, ValueError, "permute_sentence_ratio"),
        (bart, {"poisson_lambda": 0.0}, ValueError, "poisson_lambda"),
        (bart, {"mask_length": "words"}, ValueError, "mask_length"),
        (bart, {"replace_length": 2}, ValueError, "replace_length"),
        (bart, {"bos_token_id": None}, ValueError, "bos_token_id"),
        (bart, {"mask_token_id": V + 1}, ValueError, "mask_token_id"),
        (bart, {"full_stop_token_ids": [V]}, ValueError, "full_stop_token_ids"),
        (bart, {"special_token_ids": list(range(V))}, ValueError, "random_ratio"),
        (ul2, {"input_length": 3}, ValueError, "input_length"),
        (ul2, {"per_batch": "yes"}, TypeError, "per_batch"),
    ],
)
def test_bad_configuration_raises_naming_the_argument(factory, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        factory(**kwargs)


@pytest.mark.parametrize("factory", [t5, bart, ul2])
@pytest.mark.parametrize(
    ("examples", "exc", "match"),
    [
        ([], ValueError, "empty"),
        ([[]], ValueError, "row 0 is empty"),
        ([[10, V]], ValueError, "token id 1000"),
        ([[10, -1]], ValueError, "token id -1"),
        ([[10, 1.5]], TypeError, r"examples\[0\]\[1\]"),
        ([{"input_ids": [10, 11], "labels": [1]}], ValueError, "labels"),
        ("text", TypeError, "examples"),
    ],
)
def test_bad_batches_raise_naming_the_argument(factory, examples, exc, match):
    with pytest.raises(exc, match=match):
        factory()(examples)


def test_sentence_starts_are_checked():
    c = bart()
    with pytest.raises(ValueError, match="sentence_starts"):
        c([{"input_ids": [10, 11, 12], "sentence_starts": [1, 0]}])
    with pytest.raises(ValueError, match="sentence_starts"):
        t5()([{"input_ids": [10, 11, 12], "sentence_starts": [1, 0, 0]}])


# -- properties -----------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(st.lists(st.integers(5, 899), min_size=1, max_size=60), min_size=1, max_size=6),
    d=st.floats(0.01, 0.99),
    mu=st.floats(1.0, 20.0),
    roll=st.booleans(),
    seed=st.integers(0, 2**64 - 1),
)
def test_t5_reconstruction_holds_for_arbitrary_settings(rows, d, mu, roll, seed):
    c = t5(
        input_length=80,
        noise_density=d,
        mean_noise_span_length=mu,
        random_roll=roll,
        seed=seed,
        truncation=True,
    )
    b = c(rows)
    for i, row in enumerate(rows):
        assert (
            reconstruct(valid(b, i), valid(b, i, "labels"), c.sentinel_ids) == row[: c.raw_length]
        )


# -- model side ----------------------------------------------------------------------------------


def test_seq2seq_loss_matches_cross_entropy_and_the_models_loss():
    import torch
    import torch.nn.functional as F
    import transformers

    from lmobjectives.torch import seq2seq_loss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g)
    labels = torch.randint(0, 11, (3, 5), generator=g)
    labels[0, 3:] = -100
    want = F.cross_entropy(logits.reshape(-1, 11), labels.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(seq2seq_loss(logits, labels), want)
    smooth = F.cross_entropy(
        logits.reshape(-1, 11), labels.reshape(-1), ignore_index=-100, label_smoothing=0.1
    )
    torch.testing.assert_close(seq2seq_loss(logits, labels, label_smoothing=0.1), smooth)
    total = F.cross_entropy(
        logits.reshape(-1, 11), labels.reshape(-1), ignore_index=-100, reduction="sum"
    )
    torch.testing.assert_close(seq2seq_loss(logits, labels, reduction="sum"), total)
    empty = torch.randn(2, 3, 4, requires_grad=True)
    zero = seq2seq_loss(empty, torch.full((2, 3), -100))
    zero.backward()
    assert zero.item() == 0.0
    assert empty.grad is not None
    with pytest.raises(ValueError, match="logits"):
        seq2seq_loss(torch.randn(3, 4), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        seq2seq_loss(logits, labels[:, :4])
    with pytest.raises(TypeError, match="labels"):
        seq2seq_loss(logits, labels.float())
    with pytest.raises(ValueError, match="label_smoothing"):
        seq2seq_loss(logits, labels, label_smoothing=1.5)
    # The model's own loss is this loss.
    c = t5(input_length=32, return_tensors="pt")
    batch = c(rows_of(4, 5, c.raw_length, seed=1))
    cfg = transformers.T5Config(
        vocab_size=V,
        d_model=16,
        d_kv=8,
        d_ff=32,
        num_layers=1,
        num_heads=2,
        decoder_start_token_id=0,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    out = transformers.T5ForConditionalGeneration(cfg)(**batch)
    torch.testing.assert_close(out.loss, seq2seq_loss(out.logits, batch["labels"]))


def tiny_t5(vocab_size):
    import transformers

    cfg = transformers.T5Config(
        vocab_size=vocab_size,
        d_model=32,
        d_kv=16,
        d_ff=64,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=2,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=3,
    )
    return transformers.T5ForConditionalGeneration(cfg)


def tiny_bart(vocab_size):
    import transformers

    cfg = transformers.BartConfig(
        vocab_size=vocab_size,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=160,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
        decoder_start_token_id=3,
        forced_eos_token_id=None,
    )
    return transformers.BartForConditionalGeneration(cfg)


@pytest.mark.parametrize("objective", ["t5", "bart", "ul2"])
def test_tiny_models_train_on_the_embedded_corpus(objective):
    """A few dozen steps on the embedded corpus lower the loss on held-out chunks."""
    import torch

    corpus = lmobjectives.TokenCorpus.default()
    tok = corpus.tokenizer
    torch.manual_seed(0)
    if objective == "t5":
        collate = T5SpanCorruptionCollator(tok, input_length=64, seed=0, return_tensors="pt")
        chunks = CorpusChunks(corpus, collate.raw_length, separator=[collate.eos_token_id])
        model = tiny_t5(collate.vocab_size)
    elif objective == "ul2":
        collate = UL2Collator(tok, input_length=32, seed=0, return_tensors="pt")
        chunks = CorpusChunks(corpus, collate.max_raw_length)
        model = tiny_t5(collate.vocab_size)
    else:
        collate = BartDenoisingCollator(tok, seed=0, return_tensors="pt")
        chunks = CorpusChunks(corpus, 14, sentence_starts=True)
        model = tiny_bart(collate.vocab_size)
    held_out = collate([chunks[len(chunks) - 1 - i] for i in range(16)])

    def evaluate():
        model.eval()
        with torch.no_grad():
            return float(model(**held_out).loss)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the output layer is memory-bound: more threads only contend
    try:
        before = evaluate()
        assert math.isfinite(before)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        model.train()
        for step in range(30):
            batch = collate([chunks[16 * step + i] for i in range(16)])
            loss = model(**batch).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        after = evaluate()
    finally:
        torch.set_num_threads(threads)
    assert after < before - 1.0, (before, after)


def test_docstring_examples_run():
    for module in (denoising, lmobjectives._word_starts):
        failures, tried = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert tried > 0
        assert failures == 0


def test_corpus_chunks_batches_equal_their_items(small_corpus):
    from torch.utils.data import DataLoader

    from lmobjectives._inputs import RaggedRows

    for kw in ({}, {"separator": [3]}, {"sentence_starts": True}):
        chunks = CorpusChunks(small_corpus, 40, **kw)
        batch = chunks.__getitems__([5, 0, -1])
        assert batch["idx"].dtype == np.uint64
        assert batch["idx"].tolist() == [5, 0, len(chunks) - 1]
        for j, i in enumerate([5, 0, len(chunks) - 1]):
            assert batch["input_ids"][j].tolist() == chunks[i]["input_ids"].tolist()
            if "sentence_starts" in kw:
                assert batch["sentence_starts"][j].tolist() == chunks[i]["sentence_starts"].tolist()
        with pytest.raises(IndexError):
            chunks.__getitems__([len(chunks)])
    tail = CorpusChunks(small_corpus, 40, drop_last=False)
    batch = tail.__getitems__([0, len(tail) - 1])
    assert isinstance(batch["input_ids"], RaggedRows)
    assert batch["input_ids"][1].tolist() == tail[len(tail) - 1]["input_ids"].tolist()
    # A DataLoader hands the collator these batches; the noise equals the per-item path.
    c = t5(input_length=32, vocab_size=small_corpus.vocab_size + 100)
    chunks = CorpusChunks(small_corpus, c.raw_length, separator=[3])
    loader = DataLoader(chunks, batch_size=8, collate_fn=c)
    first = next(iter(loader))
    again = t5(input_length=32, vocab_size=small_corpus.vocab_size + 100)
    per_item = again([chunks[i] for i in range(8)])
    for k in KEYS:
        np.testing.assert_array_equal(first[k], per_item[k])
