"""lmobjectives.torch: zero-copy conversion, the MLM head and loss, and a model that learns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lmobjectives import MLMCollator
from lmobjectives.torch import MLMHead, masked_lm_loss, to_torch

from conftest import MASK, PAD, VOCAB, make_rows


def test_to_torch_shares_memory_and_rejects_non_arrays():
    a = np.arange(6, dtype=np.int64).reshape(2, 3)
    t = to_torch({"x": a})["x"]
    a[0, 0] = 99
    assert int(t[0, 0]) == 99
    with pytest.raises(TypeError, match="batch\\['y'\\]"):
        to_torch({"y": [1, 2]})


def test_masked_lm_loss_equals_cross_entropy_over_labelled_positions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=g)
    labels = torch.full((3, 7), -100)
    labels[0, 1], labels[2, 5], labels[1, 0] = 4, 9, 0
    want = torch.nn.functional.cross_entropy(
        logits.reshape(-1, 11), labels.reshape(-1), ignore_index=-100
    )
    torch.testing.assert_close(masked_lm_loss(logits, labels), want)
    keep = labels != -100
    torch.testing.assert_close(masked_lm_loss(logits[keep], labels), want)
    # By hand for one position.
    one = torch.full((1, 7), -100)
    one[0, 3] = 2
    by_hand = -torch.log_softmax(logits[0, 3], -1)[2]
    torch.testing.assert_close(masked_lm_loss(logits[:1], one), by_hand)


def test_masked_lm_loss_without_labels_is_zero_with_a_gradient():
    logits = torch.randn(2, 4, 5, requires_grad=True)
    loss = masked_lm_loss(logits, torch.full((2, 4), -100))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None
    assert torch.all(logits.grad == 0)


def test_masked_lm_loss_bad_shapes():
    with pytest.raises(ValueError, match="logits"):
        masked_lm_loss(torch.randn(5), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="logits"):
        masked_lm_loss(torch.randn(3, 5), torch.tensor([1, 2, -100, -100]))
    with pytest.raises(TypeError, match="labels"):
        masked_lm_loss(torch.randn(2, 5), torch.zeros(2))


def test_mlm_head_scores_only_labelled_positions_and_ties_weights():
    torch.manual_seed(0)
    emb = torch.nn.Embedding(VOCAB, 16)
    head = MLMHead(16, VOCAB, embedding=emb)
    assert head.decoder.weight is emb.weight
    hidden = torch.randn(2, 5, 16)
    labels = torch.full((2, 5), -100)
    labels[0, 2], labels[1, 4] = 17, 23
    loss, logits = head(hidden, labels)
    assert logits.shape == (2, VOCAB)
    full = head(hidden)
    assert full.shape == (2, 5, VOCAB)
    torch.testing.assert_close(logits, full[labels != -100])
    torch.testing.assert_close(loss, masked_lm_loss(full, labels))
    with pytest.raises(ValueError, match="embedding"):
        MLMHead(8, VOCAB, embedding=emb)
    with pytest.raises(ValueError, match="labels"):
        head(hidden, labels[:, :3])


def test_a_tiny_encoder_learns_from_collated_batches():
    """Evidence the pipeline trains: a model fed MLMCollator batches beats the uniform
    baseline on a structured synthetic language within a few seconds of CPU."""
    torch.manual_seed(0)
    g = np.random.default_rng(0)
    # A low-entropy language: 24 fixed sentences over 300 ids. A masked id is only
    # predictable from its context (the unigram entropy is ~5.7 nats, uniform is 6.9).
    templates = g.integers(5, 305, size=(24, 16)).tolist()
    rows = [templates[i] for i in g.integers(0, 24, size=120 * 32)]
    collate = MLMCollator(
        vocab_size=VOCAB,
        mask_token_id=MASK,
        pad_token_id=PAD,
        seed=0,
        return_tensors="pt",
        mlm_probability=0.3,
    )
    dim = 64
    emb = torch.nn.Embedding(VOCAB, dim)
    pos = torch.nn.Embedding(16, dim)
    for e in (emb, pos):
        torch.nn.init.normal_(e.weight, std=0.02)
    layer = torch.nn.TransformerEncoderLayer(dim, 4, 128, dropout=0.0, batch_first=True)
    encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    head = MLMHead(dim, VOCAB, embedding=emb)
    model = torch.nn.ModuleList([emb, pos, encoder, head])  # parameters() dedups the tie
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for step in range(120):
        batch = collate(rows[step * 32 : (step + 1) * 32])
        h = emb(batch["input_ids"]) + pos.weight[None]
        h = encoder(h, src_key_padding_mask=batch["attention_mask"] == 0)
        loss, _ = head(h, batch["labels"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    uniform = math.log(VOCAB)
    first, last = np.mean(losses[:4]), np.mean(losses[-8:])
    assert first > 0.9 * uniform, first
    # Below the unigram entropy by a wide margin: the model uses context.
    assert last < 0.35 * uniform, (first, last)


def test_collated_rows_feed_a_transformers_bert():
    import transformers

    cfg = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    model = transformers.BertForMaskedLM(cfg)
    for dtype in ("int64", "int32"):
        collate = MLMCollator(
            vocab_size=VOCAB,
            mask_token_id=MASK,
            pad_token_id=PAD,
            seed=1,
            return_tensors="pt",
            dtype=dtype,
        )
        batch = collate(make_rows(4, 20, 100))
        if dtype == "int32":  # embeddings take int32 ids; HF's loss wants int64 labels
            batch["labels"] = batch["labels"].long()
        out = model(**batch)
        assert torch.isfinite(out.loss)


def test_sentence_pair_head_and_loss():
    from lmobjectives.torch import SentencePairHead, sentence_pair_loss

    torch.manual_seed(0)
    head = SentencePairHead(8)
    hidden = torch.randn(4, 5, 8)
    labels = torch.tensor([0, 1, 1, 0])
    loss, logits = head(hidden, labels)
    assert logits.shape == (4, 2)
    by_hand = -torch.log_softmax(logits, -1)[torch.arange(4), labels].mean()
    torch.testing.assert_close(loss, by_hand)
    torch.testing.assert_close(head(hidden), logits)
    with pytest.raises(ValueError, match="logits"):
        sentence_pair_loss(torch.randn(4, 3), labels)
    with pytest.raises(ValueError, match="labels"):
        sentence_pair_loss(torch.randn(4, 2), labels[:3])
    with pytest.raises(ValueError, match="hidden_states"):
        head(torch.randn(4, 8))


# -- the fixed-size selection (issue 19: no host sync) ------------------------------------------


def _labels(b: int, s: int, rate: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, VOCAB, (b, s), generator=g)
    labels[torch.rand(b, s, generator=g) >= rate] = -100
    return labels


def test_labelled_positions_against_a_python_reference():
    from lmobjectives.torch import labelled_positions

    for seed in range(5):
        labels = _labels(4, 9, 0.35, seed)
        labels[seed % 4] = -100  # a row without labels
        most = int((labels != -100).sum(1).max())
        p = max(most, 1) + seed % 2
        positions, targets = labelled_positions(labels, p)
        assert positions.shape == targets.shape == (4, p)
        for row, pos, tgt in zip(
            labels.tolist(), positions.tolist(), targets.tolist(), strict=True
        ):
            want = [i for i, v in enumerate(row) if v != -100]
            assert pos[: len(want)] == want
            assert tgt == [row[i] for i in want] + [-100] * (p - len(want))
            assert len(set(pos)) == p  # the padding slots point at distinct positions


def test_labelled_positions_rejects_overflow_and_bad_sizes():
    from lmobjectives import InvalidArgumentError
    from lmobjectives.torch import labelled_positions

    labels = torch.full((3, 6), -100)
    labels[1, :4] = 7
    with pytest.raises(InvalidArgumentError, match="row 1 has 4 labelled positions"):
        labelled_positions(labels, 3)
    assert labelled_positions(labels, 4)[1][1].tolist() == [7] * 4  # the control
    for bad in (0, 7, 2.0, True):
        with pytest.raises(InvalidArgumentError, match="max_predictions"):
            labelled_positions(labels, bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="max_predictions"):
        MLMHead(8, VOCAB, max_predictions=0)


@pytest.mark.parametrize("p_extra", [0, 3])
def test_mlm_head_fixed_size_equals_the_mask_selection(p_extra: int):
    torch.manual_seed(0)
    emb = torch.nn.Embedding(VOCAB, 16)
    legacy = MLMHead(16, VOCAB, embedding=emb)
    labels = _labels(5, 12, 0.2, 1)
    p = int((labels != -100).sum(1).max()) + p_extra
    fixed = MLMHead(16, VOCAB, embedding=emb, max_predictions=p)
    fixed.load_state_dict(legacy.state_dict())
    hidden = torch.randn(5, 12, 16, requires_grad=True)
    before = labels.clone()
    loss_a, logits_a = legacy(hidden, labels)
    grads_a = torch.autograd.grad(loss_a, [hidden, *legacy.parameters()])
    loss_b, logits_b = fixed(hidden, labels)
    grads_b = torch.autograd.grad(loss_b, [hidden, *fixed.parameters()])
    assert torch.equal(labels, before)  # input not mutated
    assert logits_b.shape == (5, p, VOCAB)
    from lmobjectives.torch import labelled_positions

    _, targets = labelled_positions(labels, p)
    torch.testing.assert_close(logits_b[targets != -100], logits_a)
    torch.testing.assert_close(loss_b, loss_a)
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(b, a)
    # no labels at all: 0 with a gradient, as before
    empty = torch.full((5, 12), -100)
    zero = fixed(hidden, empty)[0]
    assert float(zero.detach()) == 0.0 and zero.requires_grad
