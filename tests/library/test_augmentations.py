"""Token-level augmentations and the contrastive pair collator (lmobjectives.contrastive):
draw-for-draw equality with the reference statement, rates, keyed reproducibility, errors,
pickling and DataLoader workers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmobjectives import (
    Augmentation,
    ContrastivePairCollator,
    TokenIdError,
    _core,
    neighbour_pairs,
)
from lmobjectives.torch import info_nce_loss

from conftest import CLS, MASK, PAD, SEP, UNK, VOCAB, make_rows
from reference_streams import (
    TAG_BATCH,
    TAG_SAMPLE,
    Xoshiro,
    augment_row,
    hash_words,
    view_purpose,
)

SPECIALS = [PAD, UNK, CLS, SEP, MASK]


def collator(**kw):
    base = {"vocab_size": VOCAB, "pad_token_id": PAD, "special_token_ids": SPECIALS, "seed": 3}
    return ContrastivePairCollator(**{**base, **kw})


def unpad(ids, mask):
    return [row[m.astype(bool)].tolist() for row, m in zip(ids, mask, strict=True)]


rates = st.sampled_from([0.0, 0.1, 0.3, 0.6])
fractions = st.sampled_from([0.0, 0.2, 0.5, 0.9])


@settings(max_examples=120, deadline=None)
@given(
    rows=st.lists(
        st.lists(
            st.sampled_from([PAD, CLS, SEP, MASK, 7, 8, 9, 500, 999]), min_size=1, max_size=30
        ),
        min_size=1,
        max_size=5,
    ),
    aug=st.builds(
        Augmentation,
        crop=fractions,
        span_deletion=fractions,
        token_deletion=rates,
        reorder=fractions,
        substitution=rates,
        insertion=rates,
    ),
    unigram=st.booleans(),
    seed=st.integers(0, 2**64 - 1),
    view=st.integers(0, 1),
    sample=st.booleans(),
)
def test_augmentations_equal_the_reference_statement_draw_for_draw(
    rows, aug, unigram, seed, view, sample
):
    weights = (np.arange(VOCAB) % 7 + 0.5).tolist() if unigram else None
    kernel = _core.TokenAugmenter(VOCAB, SPECIALS, **aug.__dict__, unigram=weights)
    sample_ids = [11 * r + 5 for r in range(len(rows))] if sample else None
    ids, mask = kernel.augment(
        rows, pad_token_id=PAD, seed=seed, epoch=2, batch_index=9, sample_ids=sample_ids, view=view
    )
    got = [row[: int(m.sum())].tolist() for row, m in zip(ids, mask, strict=True)]
    for r, row in enumerate(rows):
        key = [TAG_SAMPLE, sample_ids[r]] if sample else [TAG_BATCH, 9, r]
        rng = Xoshiro(hash_words([seed, 2, view_purpose(view), *key]))
        want = augment_row(
            row, rng, vocab_size=VOCAB, specials=SPECIALS, unigram=weights, **aug.__dict__
        )
        assert got[r] == want


def test_rates_match_their_probabilities_and_specials_are_never_touched():
    rows = make_rows(400, 60, 120, seed=1)  # [CLS] w... [SEP]
    n = sum(len(r) - 2 for r in rows)
    for field, p in (("token_deletion", 0.3), ("insertion", 0.2)):
        c = collator(positive=Augmentation(**{field: p}))
        b = c(rows)
        pos = unpad(b["positive_input_ids"], b["positive_attention_mask"])
        assert all(r[0] == CLS and r[-1] == SEP for r in pos)
        changed = abs(sum(len(r) - 2 for r in pos) - n)
        z = (changed - p * n) / math.sqrt(n * p * (1 - p))
        assert abs(z) < 5, (field, z)
        # Control: the anchor view (no augmentation) is the input itself.
        assert unpad(b["anchor_input_ids"], b["anchor_attention_mask"]) == rows
    c = collator(positive=Augmentation(substitution=0.25))
    b = c(rows)
    pos = unpad(b["positive_input_ids"], b["positive_attention_mask"])
    flat_in, flat_out = np.concatenate(rows), np.concatenate(pos)
    replaced = flat_in != flat_out
    assert not np.isin(flat_out[replaced], SPECIALS).any()
    # A replacement may draw the same token (1 in 995): the rate is p·(1 − 1/995).
    p = 0.25 * (1 - 1 / (VOCAB - len(SPECIALS)))
    z = (replaced.sum() - p * n) / math.sqrt(n * p * (1 - p))
    assert abs(z) < 5, z


def test_views_are_keyed_reproducible_and_independent_of_threads_and_batching():
    rows = make_rows(64, 10, 40, seed=2)
    aug = Augmentation(token_deletion=0.2, reorder=0.3, insertion=0.1)
    examples = [{"input_ids": r, "idx": 1000 + i} for i, r in enumerate(rows)]
    a = collator(anchor=aug, positive=aug, num_threads=1)(examples)
    b = collator(anchor=aug, positive=aug, num_threads=4)(examples)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    # Anchor and positive views differ (independent streams) though both augment the same row.
    assert unpad(a["anchor_input_ids"], a["anchor_attention_mask"]) != unpad(
        a["positive_input_ids"], a["positive_attention_mask"]
    )
    # With idx keys, a row's views do not depend on the rest of the batch.
    half = collator(anchor=aug, positive=aug)(examples[10:20])
    assert (
        unpad(half["positive_input_ids"], half["positive_attention_mask"])
        == unpad(a["positive_input_ids"], a["positive_attention_mask"])[10:20]
    )
    # A new epoch draws new views; state_dict resumes the stream.
    c = collator(positive=aug)
    first = c(rows)
    state = c.state_dict()
    second = c(rows)
    c.load_state_dict(state)
    np.testing.assert_array_equal(c(rows)["positive_input_ids"], second["positive_input_ids"])
    assert not np.array_equal(first["positive_input_ids"], second["positive_input_ids"])


def test_duplicates_pairs_and_tensors():
    rows = [[CLS, 10, 11, SEP], [CLS, 12, SEP], [CLS, 10, 11, SEP], [CLS, 12, SEP]]
    b = collator()(rows)
    assert b["duplicate_ids"].tolist() == [0, 1, 0, 1]
    pairs = [{"input_ids": r, "positive_input_ids": [CLS, 50 + i, SEP]} for i, r in enumerate(rows)]
    p = collator(positive=None, return_tensors="pt")(pairs)
    assert isinstance(p["positive_input_ids"], torch.Tensor)
    assert p["positive_input_ids"].tolist() == [[CLS, 50 + i, SEP] for i in range(4)]
    loss = info_nce_loss(torch.randn(4, 8), torch.randn(4, 8), duplicates=p["duplicate_ids"])
    assert torch.isfinite(loss)


def test_neighbour_pairs_follow_documents():
    class Corpus:
        ids = np.arange(100, 120)
        sentence_offsets = np.array([0, 2, 5, 9, 12, 20])  # 5 sentences
        document_offsets = np.array([0, 2, 3, 5])  # docs: [0, 1], [2], [3, 4]
        num_sentences = 5
        tokenizer = None

        def sentence(self, s):
            return self.ids[self.sentence_offsets[s] : self.sentence_offsets[s + 1]]

    pairs = neighbour_pairs(Corpus(), cls_token_id=CLS, sep_token_id=SEP)
    assert [p["idx"] for p in pairs] == [0, 1, 3, 4]  # sentence 2 is alone in its document
    assert pairs[0]["positive_input_ids"] == [CLS, 102, 103, 104, SEP]  # next sentence
    assert pairs[1]["positive_input_ids"] == [CLS, 100, 101, SEP]  # last: the previous one
    with pytest.raises(ValueError, match="sentences: ids must lie in"):
        neighbour_pairs(Corpus(), [5], cls_token_id=CLS, sep_token_id=SEP)
    with pytest.raises(ValueError, match=r"\[CLS\]: the corpus tokenizer has no"):
        neighbour_pairs(Corpus())


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"positive": Augmentation(crop=1.0)}, ValueError, "crop: must be a fraction"),
        ({"positive": Augmentation(token_deletion=1.5)}, ValueError, "token_deletion"),
        ({"anchor": {"crop": 0.1}}, TypeError, "anchor: expected an Augmentation"),
        ({"unigram": np.ones(5)}, ValueError, "unigram: has 5 weights"),
        ({"unigram": -np.ones(VOCAB)}, ValueError, "unigram: weight -1"),
        ({"special_token_ids": list(range(VOCAB))}, ValueError, "every id is special"),
    ],
)
def test_configuration_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        collator(**kwargs)
    with pytest.raises(TypeError, match="crop: expected a number"):
        Augmentation(crop="a lot")


def test_batch_errors_name_the_row():
    c = collator()
    with pytest.raises(TokenIdError, match="input_ids: token id 5000 at row 1"):
        c([[CLS, 5, SEP], [CLS, 5000, SEP]])
    with pytest.raises(ValueError, match="examples\\[1\\]: missing the 'positive_input_ids'"):
        c([{"input_ids": [5], "positive_input_ids": [6]}, {"input_ids": [7]}])
    with pytest.raises(ValueError, match="row 1 is empty"):
        c([[5], []])


def test_pickles_and_repr():
    import pickle

    c = collator(positive=Augmentation(reorder=0.2), unigram=np.ones(VOCAB))
    c2 = pickle.loads(pickle.dumps(c))
    rows = make_rows(8, 10, 20)
    np.testing.assert_array_equal(c(rows)["positive_input_ids"], c2(rows)["positive_input_ids"])
    assert "reorder=0.2" in repr(c)
    kernel = c._augmenters[1]
    assert repr(pickle.loads(pickle.dumps(kernel))) == repr(kernel)


def test_same_batches_with_dataloader_workers():
    rows = make_rows(48, 8, 30, seed=4)
    aug = Augmentation(token_deletion=0.2, insertion=0.1)

    def run(workers):
        loader = torch.utils.data.DataLoader(
            rows,
            batch_size=8,
            collate_fn=collator(positive=aug, return_tensors="pt"),
            num_workers=workers,
            multiprocessing_context="fork" if workers else None,
        )
        return [b["positive_input_ids"] for b in loader]

    one, two = run(0), run(2)
    assert len(one) == len(two) == 6
    for a, b in zip(one, two, strict=True):
        torch.testing.assert_close(a, b)
