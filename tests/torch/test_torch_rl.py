"""lmobjectives.torch.rl: log-probabilities, policy-gradient, value, preference, inverse-RL and
MaskGAN losses against hand-written statements of their formulas; the value head; a PPO step;
every failure mode. (The behavioural evidence is in test_rl_evidence.py.)"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lmobjectives.torch import rl as trl


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def naive_logprobs(logits, tokens, temperature=1.0):
    return (logits.float() / temperature).log_softmax(-1).gather(-1, tokens[..., None])[..., 0]


# -- log-probabilities --------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [None, 1, 3, 100])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs_equal_the_full_log_softmax(chunk_size, temperature):
    logits = torch.randn(4, 5, 11, requires_grad=True)
    tokens = torch.randint(0, 11, (4, 5))
    got = trl.token_logprobs(logits, tokens, chunk_size=chunk_size, temperature=temperature)
    want = naive_logprobs(logits, tokens, temperature)
    torch.testing.assert_close(got, want)
    (g1,) = torch.autograd.grad(got.sum(), logits)
    (g2,) = torch.autograd.grad(want.sum(), logits)
    torch.testing.assert_close(g1, g2)


def test_token_logprobs_upcast_half_precision():
    logits = torch.randn(3, 7, 50).bfloat16()
    tokens = torch.randint(0, 50, (3, 7))
    got = trl.token_logprobs(logits, tokens, chunk_size=4)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, naive_logprobs(logits, tokens))


def test_causal_logprobs_line_up_with_the_tokens():
    logits = torch.randn(2, 6, 9)
    ids = torch.randint(0, 9, (2, 6))
    lp = trl.causal_logprobs(logits, ids)
    assert lp.shape == ids.shape and torch.equal(lp[:, 0], torch.zeros(2))
    for t in range(1, 6):
        torch.testing.assert_close(lp[:, t], naive_logprobs(logits[:, t - 1], ids[:, t]))


@pytest.mark.parametrize("chunk_size", [None, 2, 5])
def test_logprobs_from_hidden_equal_the_materialised_logits(chunk_size):
    hidden = torch.randn(3, 4, 8, requires_grad=True)
    weight = torch.randn(13, 8, requires_grad=True)
    bias = torch.randn(13)
    tokens = torch.randint(0, 13, (3, 4))
    got = trl.logprobs_from_hidden(hidden, weight, tokens, bias=bias, chunk_size=chunk_size)
    want = naive_logprobs(F.linear(hidden, weight, bias), tokens)
    torch.testing.assert_close(got, want)
    g1 = torch.autograd.grad(got.sum(), (hidden, weight))
    g2 = torch.autograd.grad(want.sum(), (hidden, weight))
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b)


def test_token_entropy_and_sequence_logprobs():
    logits = torch.randn(2, 3, 6)
    p = logits.softmax(-1)
    torch.testing.assert_close(
        trl.token_entropy(logits, chunk_size=2), -(p * p.log()).sum(-1), atol=1e-6, rtol=1e-6
    )
    lp = torch.randn(2, 4)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    torch.testing.assert_close(
        trl.sequence_logprobs(lp, mask), torch.stack([lp[0, :2].sum(), lp[1].sum()])
    )


def test_logprob_errors():
    logits = torch.randn(2, 3, 5)
    with pytest.raises(ValueError, match="tokens"):
        trl.token_logprobs(logits, torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="tokens"):
        trl.token_logprobs(logits, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="tokens"):
        trl.token_logprobs(logits, torch.full((2, 3), 5))
    with pytest.raises(ValueError, match="temperature"):
        trl.token_logprobs(logits, torch.zeros(2, 3, dtype=torch.long), temperature=0.0)
    with pytest.raises(ValueError, match="chunk_size"):
        trl.token_logprobs(logits, torch.zeros(2, 3, dtype=torch.long), chunk_size=0)
    with pytest.raises(ValueError, match="logits"):
        trl.causal_logprobs(logits, torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="weight"):
        trl.logprobs_from_hidden(torch.randn(2, 4), torch.randn(5, 3), torch.zeros(2).long())


# -- normalisation ------------------------------------------------------------------------------


def test_aggregate_normalisations():
    loss = torch.arange(8.0).reshape(2, 4)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
    total = 0 + 1 + 2 + 4
    assert float(trl.aggregate(loss, mask, "token")) == pytest.approx(total / 4)
    assert float(trl.aggregate(loss, mask, "token", num_tokens=10)) == pytest.approx(total / 10)
    assert float(trl.aggregate(loss, mask, "sequence")) == pytest.approx((3 / 3 + 4 / 1) / 2)
    assert float(trl.aggregate(loss, mask, "constant")) == pytest.approx(total / 8)
    assert float(trl.aggregate(loss, mask, "constant", constant=2)) == pytest.approx(total / 2)
    assert float(trl.aggregate(loss, mask, "sum")) == pytest.approx(total)
    empty = torch.zeros_like(mask)
    for how in ("token", "sequence", "constant", "sum"):
        x = torch.ones(2, 4, requires_grad=True)
        out = trl.aggregate(x, empty, how)
        assert float(out.detach()) == 0.0
        out.backward()  # a graph, no NaN
        assert torch.equal(x.grad, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="normalize"):
        trl.aggregate(loss, mask, "mean")
    with pytest.raises(ValueError, match="constant"):
        trl.aggregate(loss, mask, "constant", constant=0)
    with pytest.raises(ValueError, match="mask"):
        trl.aggregate(loss, mask[:, :3], "token")


# -- policy-gradient losses ---------------------------------------------------------------------


def test_reinforce_loss_and_scst():
    lp = torch.randn(3, 4, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    adv = torch.tensor([1.0, -2.0, 0.5])
    want = -(adv[:, None] * lp * mask).sum() / mask.sum()
    torch.testing.assert_close(trl.reinforce_loss(lp, adv, mask), want)
    per_token = torch.randn(3, 4)
    torch.testing.assert_close(
        trl.reinforce_loss(lp, per_token, mask, normalize="sum"), -(per_token * lp * mask).sum()
    )
    scores, greedy = torch.tensor([1.0, 0.0, 2.0, 3.0]), torch.tensor([1.5, 2.0])
    lp4 = torch.randn(4, 4)
    m4 = torch.ones(4, 4, dtype=torch.bool)
    torch.testing.assert_close(
        trl.scst_loss(lp4, m4, scores, greedy),
        trl.reinforce_loss(lp4, torch.tensor([-0.5, -1.5, 0.0, 1.0]), m4),
    )
    with pytest.raises(ValueError, match="advantages"):
        trl.reinforce_loss(lp, torch.ones(2), mask)
    with pytest.raises(ValueError, match="greedy_scores"):
        trl.scst_loss(lp4, m4, scores, torch.ones(3))


def test_clipped_surrogate_formula_and_clipping():
    lp = torch.log(torch.tensor([[0.5, 0.2, 0.3], [0.4, 0.4, 0.1]]))
    old = torch.log(torch.tensor([[0.5, 0.1, 0.6], [0.4, 0.5, 0.1]]))
    adv = torch.tensor([[1.0, 1.0, -1.0], [-1.0, 2.0, 1.0]])
    mask = torch.ones(2, 3, dtype=torch.bool)
    ratio = (lp - old).exp()
    want = torch.maximum(-adv * ratio, -adv * ratio.clamp(0.8, 1.2)).mean()
    out = trl.clipped_surrogate_loss(lp, old, adv, mask)
    torch.testing.assert_close(out.loss, want)
    # clipped where ratio leaves [0.8, 1.2] on the side the advantage pushes: (0,1): 2.0, A>0;
    # (0,2): 0.5, A<0; (1,1): 0.8 exactly (not active).
    assert float(out.clip_fraction) == pytest.approx(2 / 6)
    # ρ = 1: the surrogate is −mean(A) and its gradient REINFORCE's.
    x = torch.randn(2, 3, requires_grad=True)
    same = trl.clipped_surrogate_loss(x, x.detach(), adv, mask)
    torch.testing.assert_close(same.loss, -adv.mean())
    (g1,) = torch.autograd.grad(same.loss, x)
    (g2,) = torch.autograd.grad(trl.reinforce_loss(x, adv, mask), x)
    torch.testing.assert_close(g1, g2)
    # asymmetric clip (DAPO)
    hi = trl.clipped_surrogate_loss(lp, old, adv, mask, clip_high=0.28)
    want_hi = torch.maximum(-adv * ratio, -adv * ratio.clamp(0.8, 1.28)).mean()
    torch.testing.assert_close(hi.loss, want_hi)


def test_sequence_level_ratios():
    lp = torch.randn(2, 3)
    old = lp - torch.tensor([[0.1, 0.2, 0.3], [0.0, -0.1, 5.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    adv = torch.tensor([1.0, -1.0])
    seq = trl.clipped_surrogate_loss(lp, old, adv, mask, level="sequence", normalize="sequence")
    r = torch.tensor([math.exp(0.6), math.exp(-0.1)])
    want = torch.maximum(-adv * r, -adv * r.clamp(0.8, 1.2)).mean()
    torch.testing.assert_close(seq.loss, want)
    gspo = trl.clipped_surrogate_loss(
        lp, old, adv, mask, level="sequence_mean", normalize="sequence"
    )
    r = torch.tensor([math.exp(0.2), math.exp(-0.05)])
    want = torch.maximum(-adv * r, -adv * r.clamp(0.8, 1.2)).mean()
    torch.testing.assert_close(gspo.loss, want)
    with pytest.raises(ValueError, match="level"):
        trl.clipped_surrogate_loss(lp, old, adv, mask, level="row")
    with pytest.raises(ValueError, match="clip_low"):
        trl.clipped_surrogate_loss(lp, old, adv, mask, clip_low=1.5)
    with pytest.raises(ValueError, match="old_logprobs"):
        trl.clipped_surrogate_loss(lp, old[:, :2], adv, mask)


def test_kl_penalty_estimators_and_policy_loss_kl_term():
    lp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    ref = torch.tensor([[-1.5, -1.0]])
    d = ref - lp.detach()
    torch.testing.assert_close(trl.kl_penalty(lp, ref, "k1"), -d, check_dtype=False)
    torch.testing.assert_close(trl.kl_penalty(lp, ref, "k2"), 0.5 * d * d)
    torch.testing.assert_close(trl.kl_penalty(lp, ref, "k3"), d.exp() - d - 1)
    with pytest.raises(ValueError, match="estimator"):
        trl.kl_penalty(lp, ref, "k4")
    mask = torch.ones(1, 2, dtype=torch.bool)
    adv = torch.tensor([1.0])
    out = trl.policy_loss(lp, adv, mask, ref_logprobs=ref, beta=0.1)
    k3 = (d.exp() - d - 1).mean()
    torch.testing.assert_close(out.loss, -1.0 + 0.1 * k3)
    torch.testing.assert_close(out.kl, k3)
    with pytest.raises(ValueError, match="ref_logprobs"):
        trl.policy_loss(lp, adv, mask, beta=0.1)
    with pytest.raises(ValueError, match="beta"):
        trl.policy_loss(lp, adv, mask, ref_logprobs=ref, beta=-1.0)


def test_value_loss_clipping():
    v = torch.tensor([[1.0, 2.0, 0.0]])
    old = torch.tensor([[0.0, 2.1, 0.0]])
    ret = torch.tensor([[2.0, 0.0, 1.0]])
    mask = torch.tensor([[1, 1, 0]], dtype=torch.bool)
    # clipped values 0.2, 2.0: max((1−2)², (0.2−2)²) = 3.24; max(4, 4) = 4
    assert float(trl.value_loss(v, ret, mask, old_values=old)) == pytest.approx(
        0.5 * (3.24 + 4) / 2
    )
    assert float(trl.value_loss(v, ret, mask)) == pytest.approx(0.5 * (1 + 4) / 2)


# -- preferences --------------------------------------------------------------------------------


def test_bradley_terry_loss_margin_and_centring():
    c, r = torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 0.5, 1.0])
    out = trl.bradley_terry_loss(c, r)
    assert float(out.loss) == pytest.approx(-F.logsigmoid(c - r).mean().item())
    assert float(out.accuracy) == pytest.approx(2 / 3)
    assert float(out.margin) == pytest.approx(float((c - r).mean()))
    m = torch.tensor([0.5, 0.0, 1.0])
    assert float(trl.bradley_terry_loss(c, r, margin=m).loss) == pytest.approx(
        -F.logsigmoid(c - r - m).mean().item()
    )
    centred = trl.bradley_terry_loss(c, r, center_rewards_coefficient=0.01).loss
    assert float(centred) == pytest.approx(float(out.loss) + 0.01 * float(((c + r) ** 2).mean()))
    with pytest.raises(ValueError, match="rejected_rewards"):
        trl.bradley_terry_loss(c, r[:2])


def test_dpo_loss_variants():
    pc, pr = torch.tensor([-3.0, -5.0]), torch.tensor([-4.0, -4.0])
    rc, rr = torch.tensor([-3.5, -4.5]), torch.tensor([-3.5, -4.5])
    h = (pc - pr) - (rc - rr)
    out = trl.dpo_loss(pc, pr, rc, rr, beta=0.1)
    torch.testing.assert_close(out.losses, -F.logsigmoid(0.1 * h))
    torch.testing.assert_close(out.chosen_rewards, 0.1 * (pc - rc))
    torch.testing.assert_close(out.rejected_rewards, 0.1 * (pr - rr))
    smooth = trl.dpo_loss(pc, pr, rc, rr, beta=0.1, label_smoothing=0.2)
    torch.testing.assert_close(
        smooth.losses, -0.8 * F.logsigmoid(0.1 * h) - 0.2 * F.logsigmoid(-0.1 * h)
    )
    ipo = trl.dpo_loss(pc, pr, rc, rr, beta=0.1, loss_type="ipo")
    torch.testing.assert_close(ipo.losses, (h - 5.0) ** 2)
    free = trl.dpo_loss(pc, pr, rc, rr, beta=0.1, reference_free=True)
    torch.testing.assert_close(free.losses, -F.logsigmoid(0.1 * (pc - pr)))
    for kw, name in (
        ({"beta": 0.0}, "beta"),
        ({"label_smoothing": 0.5}, "label_smoothing"),
        ({"loss_type": "hinge"}, "loss_type"),
    ):
        with pytest.raises(ValueError, match=name):
            trl.dpo_loss(pc, pr, rc, rr, **kw)
    with pytest.raises(ValueError, match="shape"):
        trl.dpo_loss(pc, pr[:1], rc, rr)


# -- inverse RL, MaskGAN ------------------------------------------------------------------------


def test_irl_importance_weights_and_reward_loss():
    real = torch.tensor([1.0, 2.0], requires_grad=True)
    fake = torch.tensor([0.5, -1.0, 3.0], requires_grad=True)
    logq = torch.tensor([-2.0, -1.0, -4.0])
    w = trl.irl_importance_weights(fake, logq)
    assert float(w.sum()) == pytest.approx(1.0)
    torch.testing.assert_close(w, torch.softmax(fake.detach() - logq, 0))
    loss, w2 = trl.maxent_irl_reward_loss(real, fake, logq)
    torch.testing.assert_close(w2, w)
    assert float(loss.detach()) == pytest.approx(-1.5 + float((w * fake.detach()).sum()))
    loss.backward()
    torch.testing.assert_close(real.grad, torch.tensor([-0.5, -0.5]))
    torch.testing.assert_close(fake.grad, w)  # weights are constants
    with pytest.raises(ValueError, match="fake_logq"):
        trl.irl_importance_weights(fake, logq[:2])


def test_irl_advantages_and_generator_loss():
    q = torch.tensor([[3.0, 2.0, 1.0, 9.0]])
    logq = torch.tensor([[-1.0, -2.0, -0.5, -7.0]])
    mask = torch.tensor([[1, 1, 1, 0]], dtype=torch.bool)
    adv = trl.irl_advantages(q, logq, mask, entropy_weight=0.1)
    future = torch.tensor([[-3.5, -2.5, -0.5, 0.0]])
    torch.testing.assert_close(adv, (q - 0.1 * future) * mask)
    # ρ = 1: the clipped generator loss is the unclipped REINFORCE loss.
    lp = logq.clone().requires_grad_(True)
    out = trl.irl_generator_loss(lp, logq, q, mask, entropy_weight=0.1)
    torch.testing.assert_close(out.loss, -(adv * mask).sum() / mask.sum())
    (g1,) = torch.autograd.grad(out.loss, lp)
    (g2,) = torch.autograd.grad(trl.reinforce_loss(lp, adv, mask), lp)
    torch.testing.assert_close(g1, g2)
    # With R ≡ 0 the advantage is the entropy term alone: an entropy ascent.
    logits = torch.zeros(1, 6, requires_grad=True)
    with torch.no_grad():
        logits[0, 0] = 2.0
    g = torch.Generator().manual_seed(0)
    p0 = logits.detach().softmax(-1)
    h0 = float(-(p0 * p0.log()).sum())
    opt = torch.optim.SGD([logits], lr=0.5)
    for _ in range(50):
        a = torch.multinomial(logits.detach().softmax(-1)[0], 64, replacement=True, generator=g)
        lp = logits.log_softmax(-1)[0, a][:, None]
        loss = trl.irl_generator_loss(
            lp,
            lp.detach(),
            torch.zeros(64, 1),
            torch.ones(64, 1, dtype=torch.bool),
            entropy_weight=1.0,
        ).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    p1 = logits.detach().softmax(-1)
    assert float(-(p1 * p1.log()).sum()) > h0 + 0.2


def test_maskgan_losses_match_the_loop():
    lp = torch.randn(2, 4, requires_grad=True)
    rewards = torch.randn(2, 4)
    values = torch.randn(2, 4, requires_grad=True)
    missing = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    gen, critic, adv = trl.maskgan_losses(
        lp, rewards, values, missing, gamma=0.9, advantage_clip=0.5
    )
    ret = torch.zeros(2, 4)
    for i in range(2):
        run = 0.0
        for t in range(3, -1, -1):
            run = float(rewards[i, t]) * bool(missing[i, t]) + 0.9 * run
            ret[i, t] = run
    want_adv = (ret - values.detach()).clamp(-0.5, 0.5) * missing
    torch.testing.assert_close(adv, want_adv)
    torch.testing.assert_close(gen, -(want_adv * lp * missing).sum() / missing.sum())
    torch.testing.assert_close(critic, (((values - ret) ** 2) * missing).sum() / missing.sum())
    with pytest.raises(ValueError, match="gamma"):
        trl.maskgan_losses(lp, rewards, values, missing, gamma=1.5)


# -- value head, tiny decoder, PPO step ---------------------------------------------------------


def test_value_head_model_alignment_and_ppo_step():
    model = trl.ValueHeadModel(trl.TinyDecoder(trl.TinyDecoderConfig(vocab_size=20)))
    ids = torch.randint(3, 20, (4, 7))
    att = torch.ones(4, 7, dtype=torch.long)
    out = model(ids, att)
    assert out.logits.shape == (4, 7, 20) and out.values.shape == (4, 7)
    assert torch.equal(out.values[:, 0], torch.zeros(4))
    comp = torch.zeros(4, 7, dtype=torch.bool)
    comp[:, 3:] = True
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    stats = trl.ppo_step(model, opt, ids, att, comp, torch.tensor([1.0, 0.0, 0.5, -1.0]), epochs=2)
    assert set(stats) == {"loss", "pg_loss", "value_loss", "clip_fraction", "approx_kl"}
    assert all(math.isfinite(v) for v in stats.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    with pytest.raises(ValueError, match="hidden_size"):
        trl.ValueHeadModel(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="max_positions"):
        model(torch.zeros(1, 200, dtype=torch.long))


def test_position_ids_from_attention_mask():
    att = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0]])
    assert trl.position_ids_from_attention_mask(att).tolist() == [
        [0, 0, 0, 1, 2],
        [0, 1, 2, 0, 0],
    ]
