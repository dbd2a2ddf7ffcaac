"""ELECTRA replaced-token detection: masking, sampling, labels, losses, sharing, and a tiny run
that learns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lmobjectives import MLMCollator
from lmobjectives.lab.pretrain import roc_auc
from lmobjectives.torch.electra import (
    ElectraRTD,
    generator_config,
    gumbel_sample,
    share_embeddings,
)
from lmobjectives.torch.models import TinyEncoder
from lmobjectives.torch.oracle import LSTMOracle

from conftest import CLS, MASK, PAD, SEP, make_rows

SPECIALS = [PAD, 1, CLS, SEP, MASK]


class OneHot(torch.nn.Module):
    """A "generator" whose logits put all mass on a fixed token per position."""

    def __init__(self, target: torch.Tensor, vocab: int) -> None:
        super().__init__()
        self.target, self.vocab = target, vocab
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        return F_one_hot(self.target, self.vocab) * 1e4 + self.dummy


def F_one_hot(t, v):
    return torch.nn.functional.one_hot(t, v).float()


class ConstDisc(torch.nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(logits.clone())

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        return self.logits


def masked_batch(vocab=50, seed=0):
    c = MLMCollator.electra(
        vocab_size=vocab,
        mask_token_id=MASK,
        pad_token_id=PAD,
        special_token_ids=SPECIALS,
        seed=seed,
        return_tensors="pt",
    )
    rows = [[CLS, *(np.arange(5, 25) % (vocab - 5) + 5).tolist(), SEP] for _ in range(6)]
    return c(rows)


# -- data side --------------------------------------------------------------------------------


def test_electra_masking_is_85_15_with_no_random_tokens():
    c = MLMCollator.electra(
        vocab_size=1000,
        mask_token_id=MASK,
        pad_token_id=PAD,
        special_token_ids=SPECIALS,
        max_seq_length=128,
        seed=1,
    )
    rows = make_rows(2000, 40, 128, seed=2)
    b = c(rows)
    sel = b["labels"] != -100
    k = int(sel.sum())
    masked = int((b["input_ids"][sel] == MASK).sum())
    kept = int((b["input_ids"][sel] == b["labels"][sel]).sum())
    assert masked + kept == k, "a selected token became something else: no random branch"
    assert abs(masked - 0.85 * k) / math.sqrt(k * 0.85 * 0.15) < 5
    for i, r in enumerate(rows):
        n = len(r) - 2
        assert int(sel[i].sum()) == min(19, max(1, round(0.15 * n)))  # 19 = int(0.155 * 128)
        assert not np.isin(np.asarray(r)[sel[i, : len(r)]], SPECIALS).any()


def test_reference_position_sampling_is_behind_a_flag():
    kw = {
        "vocab_size": 1000,
        "mask_token_id": MASK,
        "pad_token_id": PAD,
        "special_token_ids": SPECIALS,
        "seed": 3,
    }
    rows = make_rows(500, 128, 128, seed=4)
    clean = MLMCollator.electra(**kw)(rows)
    ref = MLMCollator.electra(position_sampling="with_replacement", **kw)(rows)
    k = round(0.15 * 126)
    assert ((clean["labels"] != -100).sum(1) == k).all()
    distinct = (ref["labels"] != -100).sum(1)
    assert (distinct <= k).all()
    assert distinct.mean() < k  # duplicates collapse
    with pytest.raises(ValueError, match="position_sampling"):
        MLMCollator(position_sampling="with_replacement", **kw)


# -- model side -------------------------------------------------------------------------------


def test_gumbel_max_samples_exactly_from_the_softmax():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5])
    g = torch.Generator().manual_seed(0)
    n = 200_000
    draws = gumbel_sample(logits.expand(n, -1), 1.0, generator=g)
    counts = torch.bincount(draws, minlength=5).double()
    p = torch.softmax(logits.double(), 0)
    chi2 = float(((counts - n * p) ** 2 / (n * p)).sum())
    assert chi2 < 30  # 4 dof; p ≈ 5e-6
    hot = gumbel_sample(logits.expand(n, -1), 0.5, generator=g)
    counts = torch.bincount(hot, minlength=5).double()
    q = torch.softmax(logits.double() / 0.5, 0)
    assert float(((counts - n * q) ** 2 / (n * q)).sum()) < 30
    assert float(((counts - n * p) ** 2 / (n * p)).sum()) > 1000  # control: τ matters


def test_label_rule_with_a_generator_forced_onto_the_true_token():
    b = masked_batch()
    original = torch.where(b["labels"] != -100, b["labels"], b["input_ids"])
    disc = ConstDisc(torch.zeros(original.shape))
    for equal_is_original in (True, False):
        rtd = ElectraRTD(
            OneHot(original, 50),
            disc,
            tie_embeddings=False,
            equal_counts_as_original=equal_is_original,
        )
        out = rtd(b["input_ids"], b["labels"], b["attention_mask"])
        torch.testing.assert_close(out.corrupted_ids, original)
        masked = (b["labels"] != -100).float()
        want = torch.zeros_like(masked) if equal_is_original else masked
        torch.testing.assert_close(out.is_replaced, want)
        assert float(out.gen_accuracy) == 1.0


def test_disc_loss_is_the_masked_mean_bce_and_total_weighted():
    b = masked_batch(seed=5)
    original = torch.where(b["labels"] != -100, b["labels"], b["input_ids"])
    wrong = (original + 1) % 50  # the generator always samples something else
    logits = torch.randn(original.shape, generator=torch.Generator().manual_seed(1))
    rtd = ElectraRTD(OneHot(wrong, 50), ConstDisc(logits), tie_embeddings=False)
    attn = b["attention_mask"].clone()
    attn[:, -3:] = 0  # pretend the tail is padding
    out = rtd(b["input_ids"], b["labels"], attn)
    y = (b["labels"] != -100).float()
    real = attn.bool()
    x = logits[real]
    t = y[real]
    by_hand = (torch.clamp(x, min=0) - x * t + torch.log1p(torch.exp(-x.abs()))).mean()
    torch.testing.assert_close(out.disc_loss, by_hand)
    torch.testing.assert_close(out.loss, out.mlm_loss + 50.0 * out.disc_loss)


def test_no_discriminator_gradient_reaches_the_generator_and_embeddings_are_one():
    torch.manual_seed(0)
    d = TinyEncoder(50, 32, 1, 2, max_length=64, head="token")
    g = TinyEncoder(50, 16, 1, 1, max_length=64, head="mlm", embedding_size=32)
    rtd = ElectraRTD(g, d)
    assert g.embeddings is d.embeddings
    assert g.decoder.weight is d.embeddings.token.weight
    names = {id(p) for p in rtd.parameters()}
    assert len(names) == len(list(rtd.parameters()))
    b = masked_batch()
    out = rtd(b["input_ids"], b["labels"], b["attention_mask"])
    out.disc_loss.backward()
    gen_only = [
        p
        for n, p in g.named_parameters()
        if not n.startswith("embeddings") and n != "decoder.weight"
    ]
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in gen_only)
    assert any(p.grad is not None and torch.count_nonzero(p.grad) for p in d.parameters())


class FullLogits(torch.nn.Module):
    """A TinyEncoder generator seen through the plain call only (no ``masked_logits``)."""

    def __init__(self, inner: TinyEncoder) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        return self.inner(input_ids, attention_mask, token_type_ids)


def test_a_tiny_generator_projects_only_the_masked_positions():
    torch.manual_seed(0)
    d = TinyEncoder(50, 32, 1, 2, max_length=64, head="token")
    g = TinyEncoder(50, 16, 1, 1, max_length=64, head="mlm", embedding_size=32)
    b = masked_batch()
    masked = b["labels"] != -100
    full = g(b["input_ids"], b["attention_mask"])
    torch.testing.assert_close(
        g.masked_logits(b["input_ids"], masked, b["attention_mask"]), full[masked]
    )
    with pytest.raises(ValueError, match="head='mlm'"):
        d.masked_logits(b["input_ids"], masked)
    # the same step either way: losses, samples, labels
    fast, slow = ElectraRTD(g, d), ElectraRTD(FullLogits(g), d, tie_embeddings=False)
    outs = [
        m(
            b["input_ids"],
            b["labels"],
            b["attention_mask"],
            generator=torch.Generator().manual_seed(3),
        )
        for m in (fast, slow)
    ]
    torch.testing.assert_close(outs[0].loss, outs[1].loss)
    assert torch.equal(outs[0].corrupted_ids, outs[1].corrupted_ids)
    assert torch.equal(outs[0].is_replaced, outs[1].is_replaced)


def test_transformers_electra_models_with_a_derived_generator():
    import transformers

    dcfg = transformers.ElectraConfig(
        vocab_size=50,
        embedding_size=32,
        hidden_size=128,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=256,
        max_position_embeddings=64,
    )
    gcfg = generator_config(dcfg)
    assert (gcfg.hidden_size, gcfg.num_attention_heads, gcfg.intermediate_size) == (32, 1, 128)
    assert gcfg.embedding_size == dcfg.embedding_size
    torch.manual_seed(0)
    rtd = ElectraRTD(
        transformers.ElectraForMaskedLM(gcfg), transformers.ElectraForPreTraining(dcfg)
    )
    assert rtd.generator.electra.embeddings is rtd.discriminator.electra.embeddings
    b = masked_batch()
    out = rtd(
        b["input_ids"], b["labels"], b["attention_mask"], generator=torch.Generator().manual_seed(0)
    )
    assert torch.isfinite(out.loss)
    out.loss.backward()
    with pytest.raises(ValueError, match="fraction"):
        generator_config(dcfg, 0.0)


def test_bad_arguments():
    d = TinyEncoder(50, 16, 1, 1, head="token")
    g = TinyEncoder(50, 16, 1, 1, head="mlm")
    with pytest.raises(ValueError, match="temperature"):
        ElectraRTD(g, d, temperature=0.0)
    with pytest.raises(ValueError, match="disc_weight"):
        ElectraRTD(g, d, disc_weight=-1.0)
    with pytest.raises(TypeError, match="share_embeddings"):
        share_embeddings(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    rtd = ElectraRTD(g, d)
    with pytest.raises(ValueError, match="labels"):
        rtd(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long))


@pytest.mark.slow
def test_a_tiny_electra_learns_on_a_synthetic_oracle():
    """ELECTRA's smallest faithful experiment: an LSTM oracle (vocab 100, τ = 0.5, length 20),
    D 2×64, G 2×16 sharing D's embeddings, batch 64, lr 1e-3."""
    torch.manual_seed(0)
    oracle = LSTMOracle(100, 32, seed=0, temperature=0.5)
    data = oracle.sample(20_000, 20, generator=torch.Generator().manual_seed(1)) + 5
    rows = torch.cat([torch.full((len(data), 1), CLS), data, torch.full((len(data), 1), SEP)], 1)
    vocab = 105
    collate = MLMCollator.electra(
        vocab_size=vocab,
        mask_token_id=MASK,
        pad_token_id=PAD,
        special_token_ids=SPECIALS,
        seed=0,
        return_tensors="pt",
    )
    d = TinyEncoder(vocab, 64, 2, 2, max_length=32, head="token")
    g = TinyEncoder(vocab, 16, 2, 1, max_length=32, head="mlm", embedding_size=64)
    rtd = ElectraRTD(g, d)
    opt = torch.optim.AdamW(rtd.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(2)
    held = collate(rows[:512].numpy())
    aucs, accs = [], []
    for step in range(1500):
        i = (step * 64) % (len(rows) - 576) + 512
        batch = collate(rows[i : i + 64].numpy())
        out = rtd(batch["input_ids"], batch["labels"], batch["attention_mask"], generator=gen)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        if (step + 1) % 500 == 0:
            with torch.no_grad():
                ev = rtd(
                    held["input_ids"],
                    held["labels"],
                    held["attention_mask"],
                    generator=torch.Generator().manual_seed(3),
                )
            real = held["attention_mask"].bool()
            aucs.append(roc_auc(ev.disc_logits[real].numpy(), ev.is_replaced[real].numpy()))
            accs.append(float(ev.gen_accuracy))
            p = float(ev.is_replaced[real].mean())
            entropy = -(p * math.log(p) + (1 - p) * math.log(1 - p))
            last_disc, last_entropy = float(ev.disc_loss), entropy
    assert aucs == sorted(aucs), aucs  # rises monotonically
    assert aucs[-1] >= 0.65, aucs
    assert accs[-1] >= 0.35, accs
    assert last_disc < last_entropy, (last_disc, last_entropy)


# -- max_predictions: the fixed-size, sync-free selection (issue 19) ---------------------------


@pytest.mark.parametrize("full_logits", [False, True])
@pytest.mark.parametrize(
    ("disallow_correct", "equal_counts_as_original"), [(False, True), (True, True), (False, False)]
)
def test_max_predictions_equals_the_mask_selection(
    full_logits, disallow_correct, equal_counts_as_original
):
    torch.manual_seed(0)
    d = TinyEncoder(50, 32, 1, 2, max_length=64, head="token")
    g = TinyEncoder(50, 16, 1, 1, max_length=64, head="mlm", embedding_size=32)
    b = masked_batch(seed=1)
    labels = b["labels"].clone()
    labels[2] = -100  # a row without masked positions
    p = int((labels != -100).sum(1).max()) + 2
    gen = FullLogits(g) if full_logits else g
    kw = {
        "disallow_correct": disallow_correct,
        "equal_counts_as_original": equal_counts_as_original,
        "tie_embeddings": not full_logits,
    }
    legacy, fixed = ElectraRTD(gen, d, **kw), ElectraRTD(gen, d, max_predictions=p, **kw)
    outs, grads = [], []
    for m in (legacy, fixed):
        out = m(
            b["input_ids"], labels, b["attention_mask"], generator=torch.Generator().manual_seed(5)
        )
        outs.append(out)
        grads.append(torch.autograd.grad(out.loss, list(m.parameters()), allow_unused=True))
    a, f = outs
    assert torch.equal(a.corrupted_ids, f.corrupted_ids)  # the same Gumbel samples
    assert torch.equal(a.is_replaced, f.is_replaced)
    assert a.is_replaced.sum() > 0  # the control: something was replaced
    for name in ("loss", "mlm_loss", "disc_loss", "gen_accuracy", "disc_logits"):
        torch.testing.assert_close(getattr(f, name), getattr(a, name), msg=name)
    for ga, gf in zip(*grads, strict=True):
        assert (ga is None) == (gf is None)
        if ga is not None:
            torch.testing.assert_close(gf, ga, rtol=1e-4, atol=1e-6)


def test_max_predictions_rejects_a_row_with_more_masked_positions():
    from lmobjectives import InvalidArgumentError

    torch.manual_seed(0)
    d = TinyEncoder(50, 32, 1, 2, max_length=64, head="token")
    g = TinyEncoder(50, 16, 1, 1, max_length=64, head="mlm", embedding_size=32)
    b = masked_batch()
    most = int((b["labels"] != -100).sum(1).max())
    with pytest.raises(InvalidArgumentError, match="more than max_predictions"):
        ElectraRTD(g, d, max_predictions=most - 1)(b["input_ids"], b["labels"])
    ElectraRTD(g, d, max_predictions=most)(b["input_ids"], b["labels"])  # the control
    with pytest.raises(ValueError, match="max_predictions"):
        ElectraRTD(g, d, max_predictions=0)


def test_masked_logits_takes_an_index_of_positions():
    from lmobjectives.torch import labelled_positions

    torch.manual_seed(0)
    g = TinyEncoder(50, 16, 1, 1, max_length=64, head="mlm")
    b = masked_batch()
    p = int((b["labels"] != -100).sum(1).max())
    positions, targets = labelled_positions(b["labels"], p)
    by_index = g.masked_logits(b["input_ids"], positions, b["attention_mask"])
    by_mask = g.masked_logits(b["input_ids"], b["labels"] != -100, b["attention_mask"])
    assert by_index.shape == (b["labels"].shape[0], p, 50)
    torch.testing.assert_close(by_index[targets != -100], by_mask)
