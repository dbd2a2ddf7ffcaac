"""Sequence packing: plans, outputs, isolation between examples, masking inside examples."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from lmobjectives import MLMCollator, PackingCollator, TokenCorpus, pack_sequences

from conftest import CLS, MASK, PAD, SEP, VOCAB, make_rows


def test_rows_layout_outputs():
    b = pack_sequences([[5, 6, 7], [8, 9], [10, 11, 12, 13]], max_length=5)
    assert b["input_ids"].tolist() == [[5, 6, 7, 8, 9], [10, 11, 12, 13, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    assert b["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 3, 0]]
    assert b["labels"].tolist() == [[-100, 6, 7, -100, 9], [-100, 11, 12, 13, -100]]
    extra = pack_sequences(
        [[5, 6, 7], [8, 9], [10, 11, 12, 13]],
        max_length=5,
        return_sequence_ids=True,
        return_cu_seqlens=True,
    )
    assert extra["sequence_ids"].tolist() == [[0, 0, 0, 1, 1], [2, 2, 2, 2, -1]]
    # Each example is a segment, and so is a row's padding tail.
    assert extra["cu_seqlens"].tolist() == [0, 3, 5, 9, 10]
    assert extra["cu_seqlens"].dtype == np.int32
    assert extra["max_seqlen"] == 4


def test_flat_layout_matches_hugging_face_flattening():
    from transformers import DataCollatorWithFlattening

    rows = make_rows(12, 5, 40, seed=1)
    ours = pack_sequences(rows, layout="flat", return_flash_attn_kwargs=True)
    hf = DataCollatorWithFlattening(return_flash_attn_kwargs=True)(
        [{"input_ids": r} for r in rows], return_tensors="np"
    )
    for k in ("input_ids", "labels", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k"):
        np.testing.assert_array_equal(ours[k], hf[k], err_msg=k)
    assert ours["max_length_q"] == hf["max_length_q"]


def test_ffd_plan_uses_every_example_once_and_fits_rows():
    rows = make_rows(200, 3, 120, seed=2)
    b = pack_sequences(rows, max_length=128, return_sequence_ids=True)
    seq, ids = b["sequence_ids"], b["input_ids"]
    assert ids.shape[1] == 128
    seen = sorted(set(seq[seq >= 0].tolist()))
    assert seen == list(range(200))
    for e, row in enumerate(rows):
        where = np.argwhere(seq == e)
        assert len(set(where[:, 0].tolist())) == 1, "an example was split across rows"
        r, cols = where[0, 0], where[:, 1]
        assert ids[r, cols].tolist() == row
        assert b["position_ids"][r, cols].tolist() == list(range(len(row)))
    # Rows read in input order: the first example of each row increases.
    firsts = [int(s[s >= 0].min()) for s in seq]
    assert firsts == sorted(firsts)
    # FFD never needs more rows than greedy.
    greedy = pack_sequences(rows, max_length=128, strategy="greedy", return_sequence_ids=True)
    assert ids.shape[0] <= greedy["input_ids"].shape[0]
    assert greedy["sequence_ids"][greedy["sequence_ids"] >= 0].tolist() == sorted(
        greedy["sequence_ids"][greedy["sequence_ids"] >= 0].tolist()
    )


def test_packing_efficiency_on_the_embedded_corpus_exceeds_95_percent():
    corpus = TokenCorpus.default()
    docs = [[CLS, *corpus.document(d).tolist(), SEP] for d in range(corpus.num_documents)]
    packer = PackingCollator(max_length=512, overflow="split", pad_token_id=PAD)
    for i in range(0, len(docs), 256):
        packer(docs[i : i + 256])
    assert packer.efficiency > 0.95, packer.efficiency


def test_overflow_modes():
    long = list(range(10, 23))  # 13 tokens
    with pytest.raises(ValueError, match="max_length=5"):
        pack_sequences([long], max_length=5)
    t = pack_sequences([long, [7, 8]], max_length=5, overflow="truncate")
    assert t["input_ids"].tolist() == [[10, 11, 12, 13, 14], [7, 8, 0, 0, 0]]
    s = pack_sequences([long], max_length=5, overflow="split", return_sequence_ids=True)
    assert s["input_ids"][s["sequence_ids"] >= 0].tolist() == long
    assert sorted(s["position_ids"][s["sequence_ids"] >= 0].tolist()) == sorted(
        [0, 1, 2, 3, 4] * 2 + [0, 1, 2]
    )
    with pytest.raises(ValueError, match="max_length"):
        pack_sequences([long, long], layout="flat", max_length=20)


def test_aligned_columns_travel_with_their_tokens():
    rows = [[CLS, 10, 11, SEP], [CLS, 12, SEP]]
    tt = [[0, 0, 1, 1], [0, 1, 1]]
    b = PackingCollator(max_length=8, pad_token_id=PAD)(
        [{"input_ids": r, "token_type_ids": t} for r, t in zip(rows, tt, strict=True)]
    )
    assert b["input_ids"].tolist() == [[CLS, 10, 11, SEP, CLS, 12, SEP, PAD]]
    assert b["token_type_ids"].tolist() == [[0, 0, 1, 1, 0, 1, 1, 0]]


def test_block_diagonal_attention_isolates_examples_exactly():
    """A BERT run over packed rows with a block-diagonal mask and restarting positions gives
    each example the hidden states it gets alone."""
    import torch
    import transformers

    rows = make_rows(7, 4, 20, seed=3)
    cfg = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    model = transformers.BertModel(cfg).eval()
    packer = PackingCollator(
        max_length=48,
        pad_token_id=PAD,
        labels="none",
        attention="block_diagonal",
        return_sequence_ids=True,
        return_tensors="pt",
    )
    b = packer(rows)
    seq = b.pop("sequence_ids")
    with torch.no_grad():
        packed = model(**b).last_hidden_state
        for e, row in enumerate(rows):
            alone = model(input_ids=torch.tensor([row])).last_hidden_state[0]
            torch.testing.assert_close(packed[seq == e], alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("unit", ["token", "word", "span", "ngram"])
def test_masking_inside_packed_rows_never_crosses_examples(unit):
    # Every token continues a word, so each example is one single word: a unit that crossed
    # an example boundary would mask parts of two examples.
    masker = MLMCollator(
        vocab_size=VOCAB,
        mask_token_id=MASK,
        pad_token_id=PAD,
        unit=unit,
        word_starts=np.zeros(VOCAB, dtype=bool),
        mlm_probability=0.5,
        seed=4,
    )
    rows = [list(range(10 + i, 14 + i)) for i in range(0, 200, 5)]
    b = PackingCollator(max_length=32, masking=masker, return_sequence_ids=True)(rows)
    seq, lab = b["sequence_ids"], b["labels"]
    assert (lab[seq < 0] == -100).all()
    for e in range(len(rows)):
        sel = lab[seq == e] != -100
        if unit != "token":
            assert sel.all() or not sel.any(), f"example {e} partly masked"
    assert (lab != -100).any()


def test_packed_masking_is_deterministic_resumable_and_picklable():
    masker = MLMCollator(vocab_size=VOCAB, mask_token_id=MASK, pad_token_id=PAD, seed=0)
    data = [make_rows(40, 5, 60, seed=s) for s in range(4)]
    a = PackingCollator(max_length=128, masking=masker, seed=9)
    want = [a(d)["labels"] for d in data]
    b = PackingCollator(max_length=128, masking=masker, seed=9, num_threads=2)
    b(data[0])
    clone = pickle.loads(pickle.dumps(b))
    for d, w in zip(data[1:], want[1:], strict=True):
        np.testing.assert_array_equal(clone(d)["labels"], w)
    c = PackingCollator(max_length=128, masking=masker, seed=9)
    c.load_state_dict(a.state_dict())
    c.set_epoch(0, batch_index=2)
    np.testing.assert_array_equal(c(data[2])["labels"], want[2])


def test_causal_lm_trains_on_packed_rows():
    import torch
    import transformers

    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=1, n_head=2, n_positions=64)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg)
    b = PackingCollator(max_length=64, pad_token_id=PAD, return_tensors="pt")(
        make_rows(10, 4, 30, seed=5)
    )
    assert b["position_ids"].dtype == torch.int64
    out = model(**b)
    assert torch.isfinite(out.loss)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"layout": "rows"}, ValueError, "max_length"),
        ({"max_length": 8, "layout": "stacked"}, ValueError, "layout"),
        ({"max_length": 8, "strategy": "best"}, ValueError, "strategy"),
        ({"max_length": 8, "overflow": "wrap"}, ValueError, "overflow"),
        ({"max_length": 8, "labels": "mlm"}, ValueError, "labels"),
        ({"max_length": 8, "attention": "full"}, ValueError, "attention"),
        ({"max_length": 0}, ValueError, "max_length"),
        ({"max_length": 8, "masking": "yes"}, TypeError, "masking"),
        ({"max_length": 8, "return_sequence_ids": 1}, TypeError, "return_sequence_ids"),
    ],
)
def test_bad_configuration(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        PackingCollator(pad_token_id=PAD, **kwargs)


def test_masking_owns_the_labels():
    masker = MLMCollator(vocab_size=VOCAB, mask_token_id=MASK, pad_token_id=PAD)
    with pytest.raises(ValueError, match="labels"):
        PackingCollator(max_length=8, masking=masker, labels="causal")


@pytest.mark.parametrize(
    ("examples", "exc", "match"),
    [
        ([], ValueError, "empty"),
        ([[5, 6], []], ValueError, "row 1 is empty"),
        ([[5, 6.5]], TypeError, "examples"),
        ([{"input_ids": [5, 6], "attention_mask": [1, 0]}], ValueError, "attention_mask"),
        ([{"input_ids": [5, 6], "token_type_ids": [0]}], ValueError, "token_type_ids"),
    ],
)
def test_bad_batches(examples, exc, match):
    with pytest.raises(exc, match=match):
        PackingCollator(max_length=8, pad_token_id=PAD)(examples)


def test_inputs_are_not_mutated():
    rows = make_rows(20, 3, 30, seed=6)
    copy = [list(r) for r in rows]
    masker = MLMCollator(vocab_size=VOCAB, mask_token_id=MASK, pad_token_id=PAD, seed=1)
    PackingCollator(max_length=64, masking=masker)(rows)
    assert rows == copy


def test_outputs_are_zero_copy_rust_buffers():
    b = pack_sequences(make_rows(10, 3, 30, seed=7), max_length=64, return_cu_seqlens=True)
    for k in ("input_ids", "attention_mask", "position_ids", "labels", "cu_seqlens"):
        assert type(b[k].base).__name__ == "PySliceContainer", k


@pytest.mark.slow
def test_same_packed_batches_for_0_and_2_dataloader_workers():
    from torch.utils.data import DataLoader

    masker = MLMCollator(vocab_size=VOCAB, mask_token_id=MASK, pad_token_id=PAD, unit="token")
    data = make_rows(96, 5, 60, seed=8)

    def run(workers):
        collate = PackingCollator(max_length=128, masking=masker, seed=3, return_tensors="pt")
        loader = DataLoader(data, batch_size=16, collate_fn=collate, num_workers=workers)
        return [b["labels"].numpy() for b in loader]

    for a, b in zip(run(0), run(2), strict=True):
        np.testing.assert_array_equal(a, b)
