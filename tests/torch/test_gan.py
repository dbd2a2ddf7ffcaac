"""Text GANs (lmobjectives.torch.gan): oracle data and metrics, SeqGAN's rollout bookkeeping,
MaskGAN's masked actor-critic, LeakGAN's manager/worker pieces — tiny configurations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lmobjectives.torch.gan import (
    CNNDiscriminator,
    Generator,
    LSTMGenerator,
    OracleConfig,
    SeqGAN,
    SeqGANConfig,
    TransformerDiscriminator,
    TransformerGenerator,
    evaluate,
    mc_rewards,
    oracle_data,
    pg_loss,
    rank_rescale,
)
from lmobjectives.torch.gan.leakgan import (
    LeakGAN,
    LeakGANConfig,
    LeakGANGenerator,
    intrinsic_rewards,
    manager_cosines,
)
from lmobjectives.torch.gan.maskgan import (
    InfillModel,
    MaskGAN,
    MaskGANConfig,
    TokenDiscriminator,
    evaluate_infill,
    make_masks,
    mask_mle_loss,
    maskgan_returns,
    token_logprobs,
)
from lmobjectives.torch.gan.models import sample_tokens

V, T = 23, 8
TINY = OracleConfig(vocab_size=V, hidden_size=8, length=T, num_train=256, num_test=128, seed=3)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: intra-op threads only add synchronisation (100× slower on a busy box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    return oracle_data(TINY, cache_dir=tmp_path_factory.mktemp("gan"))


def oracle_as_generator(data) -> LSTMGenerator:
    """An LSTMGenerator holding the oracle's exact weights (begin token moved to id V)."""
    o = data.oracle
    g = LSTMGenerator(data.vocab_size, 8, 8)
    with torch.no_grad():
        g.embedding.weight[: data.vocab_size] = o.embedding.weight[1:]
        g.embedding.weight[data.vocab_size] = o.embedding.weight[0]
        g.lstm.load_state_dict(o.lstm.state_dict())
        g.output.load_state_dict(o.output.state_dict())
    return g


def hash_score(tokens: torch.Tensor) -> torch.Tensor:
    """A deterministic "discriminator": a hash of the whole sequence in (0, 1)."""
    w = torch.tensor([(31**i) % 1009 for i in range(tokens.shape[1])])
    return ((tokens * w).sum(1) % 997).double() / 997 + 1e-3


# -- oracle data and metrics -------------------------------------------------------------------


def test_oracle_data_is_cached_and_deterministic(tmp_path) -> None:
    a = oracle_data(TINY, cache_dir=tmp_path)
    assert a.path is not None and a.path.exists()
    b = oracle_data(TINY, cache_dir=tmp_path)  # from the cache
    c = oracle_data(TINY, cache=False)  # rebuilt
    assert torch.equal(a.train, b.train) and torch.equal(a.train, c.train)
    assert torch.equal(a.test, c.test)
    assert a.train.shape == (256, T) and a.test.shape == (128, T)
    assert int(a.train.min()) >= 0 and int(a.train.max()) < V
    assert not torch.equal(a.train[:128], a.test)  # independent streams
    assert a.entropy_rate == pytest.approx(a.oracle.nll_per_token(a.test))
    other = oracle_data(OracleConfig(**{**TINY.__dict__, "seed": 4}), cache=False)
    assert not torch.equal(a.train, other.train)
    a.path.write_bytes(b"broken")  # a broken cache entry is rebuilt, not trusted
    assert torch.equal(oracle_data(TINY, cache_dir=tmp_path).train, a.train)


def test_oracle_config_validation() -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        OracleConfig(vocab_size=1)
    with pytest.raises(ValueError, match="num_train"):
        OracleConfig(num_train=0)
    with pytest.raises(TypeError, match="config"):
        oracle_data({"vocab_size": 5})  # type: ignore[arg-type]


def test_metrics_of_the_oracle_itself(data) -> None:
    """A generator equal to the oracle: NLL-test is the oracle's NLL of the held-out set
    (its entropy rate), and NLL-oracle equals the generator's own-sample entropy."""
    g = oracle_as_generator(data)
    m = evaluate(g, data, num_samples=512)
    assert m["nll_test"] == pytest.approx(data.entropy_rate, rel=1e-5)
    assert m["nll_oracle"] == pytest.approx(m["entropy"], rel=1e-5)
    assert abs(m["nll_oracle"] - data.entropy_rate) < 0.15  # same distribution, MC noise
    assert 0 < m["unique"] <= 1
    cold = evaluate(g, data, num_samples=512, temperature=0.7)
    assert cold["entropy"] < m["entropy"] - 0.2  # temperature lowers entropy ...
    assert cold["nll_test"] > m["nll_test"]  # ... and costs coverage
    assert cold["nll_oracle"] < m["nll_oracle"]  # ... while "improving" NLL-oracle
    fresh = evaluate(LSTMGenerator(V, 8, 8), data, num_samples=512)
    assert fresh["nll_test"] == pytest.approx(math.log(V), abs=0.15)  # N(0, 0.1²) ≈ uniform
    with pytest.raises(ValueError, match="temperature"):
        evaluate(g, data, temperature=0)


def test_bleu_metrics(data) -> None:
    m = evaluate(oracle_as_generator(data), data, num_samples=64, bleu=True, bleu_samples=32)
    assert 0 <= m["bleu"] <= 1 and 0 <= m["self_bleu"] <= 1


def test_sample_tokens_distribution() -> None:
    logits = torch.tensor([[0.0, math.log(3.0), -math.inf, math.log(6.0)]]).expand(20000, 4)
    g = torch.Generator().manual_seed(0)
    tok = sample_tokens(logits, generator=g)
    freq = torch.bincount(tok, minlength=4).double() / 20000
    expect = torch.tensor([0.1, 0.3, 0.0, 0.6], dtype=torch.float64)
    assert freq[2] == 0  # a zero-probability token is never drawn
    assert torch.allclose(freq, expect, atol=4 * math.sqrt(0.25 / 20000))
    hot = sample_tokens(logits, temperature=0.5, generator=g)
    assert (hot == 3).double().mean() > 0.7  # p ∝ (1, 9, 0, 36)/46 → 0.78


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_generators_sample_and_score_consistently(kind: str) -> None:
    torch.manual_seed(0)
    g: Generator = (
        LSTMGenerator(V, 8, 8, init_std=0.5)
        if kind == "lstm"
        else TransformerGenerator(V, 16, 1, 2, noise_size=4)
    )
    rng = torch.Generator().manual_seed(1)
    cond = g.draw_cond(5, rng)
    if kind == "transformer":
        assert cond.shape == (5, 4)  # the noise z the decoder is conditioned on
        x0 = torch.zeros(5, T, dtype=torch.long)
        assert not torch.allclose(g(x0, cond=cond), g(x0, cond=cond + 1.0))
    else:
        assert cond is None
    x = g.sample(5, T, cond=cond, generator=rng)
    assert x.shape == (5, T) and x.dtype == torch.long
    full = g(x, cond=cond)
    for t in range(T):  # incremental decoding agrees with teacher forcing
        logits, _ = g._start(x[:, :t], cond)
        assert torch.allclose(logits, full[:, t], atol=1e-5)
    prefix = x[:, :3]
    y = g.sample(5, T, prefix=prefix, cond=cond, generator=rng)
    assert torch.equal(y[:, :3], prefix)
    with pytest.raises(ValueError, match="prefix"):
        g.sample(4, T, prefix=prefix)
    with pytest.raises(ValueError, match="temperature"):
        g.sample(2, T, temperature=0.0)


def test_discriminators_shapes_and_padding() -> None:
    x = torch.randint(0, V, (6, T))
    for d in (
        CNNDiscriminator(V, T, filter_sizes=(2, 3, 20), num_filters=(4, 5, 6)),
        TransformerDiscriminator(V, T, hidden_size=16, num_layers=1),
    ):
        d.eval()
        assert d(x).shape == (6,)
        assert d.features(x).shape == (6, d.feature_size)
        pad = torch.full((2, T), V)  # all padding: finite
        assert torch.isfinite(d(pad)).all()
    assert CNNDiscriminator(V, T, filter_sizes=(2, 3, 20), num_filters=(4, 5, 6)).feature_size == 9
    assert CNNDiscriminator(5000, 20).feature_size == 1720  # SeqGAN/LeakGAN's
    with pytest.raises(ValueError, match="filter_sizes"):
        CNNDiscriminator(V, 2, filter_sizes=(3,), num_filters=(4,))


# -- SeqGAN: Monte-Carlo rewards -------------------------------------------------------------------


class CountingGenerator(Generator):
    """A deterministic stub: continues a prefix with ``x_t = (Σ x_{<t}·7 + t) mod V``."""

    def __init__(self) -> None:
        super().__init__()
        self.vocab_size = V
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    @staticmethod
    def complete(prefix: list[int], length: int) -> list[int]:
        out = list(prefix)
        while len(out) < length:
            out.append((sum(out) * 7 + len(out)) % V)
        return out

    def sample(self, num, length, *, prefix=None, cond=None, temperature=1.0, generator=None):  # type: ignore[override]
        rows = [[] for _ in range(num)] if prefix is None else prefix.tolist()
        return torch.tensor([self.complete(r, length) for r in rows])


def test_mc_rewards_against_a_direct_loop() -> None:
    """Q[b, t-1] = D(completion of sample b's first t tokens), computed one by one, for a
    deterministic policy and a hash discriminator: catches any batch/time/rollout mix-up."""
    samples = torch.randint(0, V, (7, T), generator=torch.Generator().manual_seed(0))
    q = mc_rewards(CountingGenerator(), hash_score, samples, num_rollouts=3)
    for b in range(7):
        for t in range(1, T):
            full = CountingGenerator.complete(samples[b, :t].tolist(), T)
            expect = float(hash_score(torch.tensor([full]))[0])
            assert float(q[b, t - 1]) == pytest.approx(expect, rel=1e-6)
        assert float(q[b, T - 1]) == pytest.approx(
            float(hash_score(samples[b : b + 1])[0]), rel=1e-6
        )


def test_mc_rewards_rollouts_keep_prefix_and_average_their_own_scores() -> None:
    torch.manual_seed(0)
    g = LSTMGenerator(V, 8, 8, init_std=0.5)
    samples = g.sample(5, T, generator=torch.Generator().manual_seed(2))
    q, plan, rollouts = mc_rewards(
        g, hash_score, samples, 4, rng=torch.Generator().manual_seed(3), return_rollouts=True
    )
    assert q.shape == (5, T)
    assert len(plan.sample) == 5 * (T - 1) * 4
    for b in range(5):
        for t in range(1, T):
            rows = np.nonzero((plan.sample == b) & (plan.prefix_length == t))[0]
            assert len(rows) == 4
            r = rollouts[torch.from_numpy(rows)]
            assert torch.equal(r[:, :t], samples[b, :t].expand(4, t))  # prefix kept
            expect = float(hash_score(r).mean())
            assert float(q[b, t - 1]) == pytest.approx(expect, rel=1e-6)
    # reward at t = T is D(Y) itself
    assert torch.allclose(q[:, -1], hash_score(samples).float())
    # rollouts are random: not all completions of a prefix coincide
    first = rollouts[torch.from_numpy(np.nonzero(plan.prefix_length == 1)[0])]
    assert len({tuple(r) for r in first.tolist()}) > 1


def test_constant_discriminator_gives_constant_rewards() -> None:
    g = LSTMGenerator(V, 8, 8)
    samples = g.sample(4, T)
    q = mc_rewards(g, lambda x: torch.full((x.shape[0],), 0.37), samples, 2)
    assert torch.allclose(q, torch.full((4, T), 0.37))
    q = mc_rewards(g, lambda x: torch.full((x.shape[0],), 0.37), samples, 2, prefix_lengths=[4])
    assert torch.allclose(q[:, [3, T - 1]], torch.full((4, 2), 0.37))
    assert (q[:, [0, 1, 2, 4, 5, 6]] == 0).all()
    with pytest.raises(ValueError, match="num_rollouts"):
        mc_rewards(g, hash_score, samples, 0)


def test_pg_loss_gradient_is_minus_q_grad_logp() -> None:
    torch.manual_seed(0)
    g = LSTMGenerator(V, 8, 8, init_std=0.5)
    x = g.sample(3, T)
    q = torch.rand(3, T)
    loss = pg_loss(g, x, q)
    grads = torch.autograd.grad(loss, list(g.parameters()))
    lp = torch.log_softmax(g(x), -1).gather(-1, x.unsqueeze(-1)).squeeze(-1)
    manual = torch.autograd.grad(-(q * lp).sum(), list(g.parameters()))
    for a, b in zip(grads, manual, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert float(loss.detach()) == pytest.approx(float(-(q * lp).sum().detach()), rel=1e-5)


def test_rank_rescale() -> None:
    r = torch.tensor([[0.3, 5.0], [0.9, 1.0], [0.1, 3.0], [0.5, 2.0]])
    out = rank_rescale(r, 16.0)
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    ramp = [sig(16 * (k / 4 - 0.5)) for k in range(1, 5)]
    assert out[:, 0].tolist() == pytest.approx([ramp[1], ramp[3], ramp[0], ramp[2]], rel=1e-6)
    assert out[:, 1].tolist() == pytest.approx([ramp[3], ramp[0], ramp[2], ramp[1]], rel=1e-6)
    # invariant to increasing transforms of the rewards, monotone, inside (σ(−8), σ(8)]
    assert torch.equal(rank_rescale(3 * r - 1), out)
    assert torch.equal(rank_rescale(torch.exp(r)), out)
    assert float(out.min()) > sig(-8) and float(out.max()) <= sig(8) + 1e-7
    # the released loop: a ramp over batch position that ignores the values
    rel = rank_rescale(r, 16.0, released=True)
    assert rel[:, 0].tolist() == pytest.approx(ramp, rel=1e-6)
    assert torch.equal(rank_rescale(-r, 16.0, released=True), rel)
    # its mean is the constant of CR-Gjx/LeakGAN#17 (0.5078 at B = 64)
    big = rank_rescale(torch.rand(64, 1), 16.0, released=True)
    assert float(big.mean()) == pytest.approx(0.5078072601542115, rel=1e-6)
    with pytest.raises(ValueError, match="rewards"):
        rank_rescale(torch.zeros(3))


# -- SeqGAN: training loop ---------------------------------------------------------------------


def test_constant_reward_control_needs_no_discriminator(data) -> None:
    """Q ≡ 1 (the LantaoYu/SeqGAN#21 control): every reward is the constant, the loss is
    −Σ log G of the batch, and the generator moves."""
    torch.manual_seed(0)
    g = LSTMGenerator(V, 16, 16)
    cfg = SeqGANConfig(reward="constant", constant_reward=2.0, batch_size=32)
    trainer = SeqGAN(g, None, data.train, cfg)
    x = g.sample(4, T)
    assert torch.equal(trainer.rewards(x), torch.full((4, T), 2.0))
    before = [p.detach().clone() for p in g.parameters()]
    stats = trainer.step()
    assert stats["reward"] == 2.0 and "d_loss" not in stats
    assert any(not torch.equal(a, b) for a, b in zip(before, g.parameters(), strict=True))


@pytest.mark.parametrize("variant", ["lstm-cnn-ema", "transformer-transformer-rank"])
def test_seqgan_runs_and_is_reproducible(data, variant: str) -> None:
    def run() -> tuple[dict[str, float], torch.Tensor]:
        torch.manual_seed(0)
        if variant.startswith("lstm"):
            g: Generator = LSTMGenerator(V, 8, 8)
            d: torch.nn.Module = CNNDiscriminator(V, T, filter_sizes=(2, 3), num_filters=(8, 8))
            cfg = SeqGANConfig(
                rollout_policy="ema",
                num_rollouts=2,
                batch_size=16,
                d_steps=1,
                d_epochs=1,
                d_negatives=64,
                pretrain_d_rounds=1,
            )
        else:
            g = TransformerGenerator(V, 16, 1, 2, noise_size=4)
            d = TransformerDiscriminator(V, T, hidden_size=16, num_layers=1)
            cfg = SeqGANConfig(
                rescale="rank",
                num_rollouts=2,
                batch_size=16,
                d_steps=1,
                d_epochs=1,
                d_negatives=64,
                pretrain_d_rounds=1,
                mle_every=2,
            )
        tr = SeqGAN(g, d, data.train, cfg)
        tr.pretrain_generator(1)
        tr.pretrain_discriminator()
        stats = [tr.step() for _ in range(2)][-1]
        return stats, g.sample(4, T, generator=torch.Generator().manual_seed(9))

    s1, x1 = run()
    s2, x2 = run()
    assert s1 == s2 and torch.equal(x1, x2)
    assert 0 < s1["reward"] < 1 and math.isfinite(s1["d_loss"])
    if "ema" in variant:
        assert "mle_loss" not in s1
    else:
        assert "mle_loss" in s1  # interleaved MLE every 2 steps


def test_seqgan_config_errors() -> None:
    with pytest.raises(ValueError, match="rollout_policy"):
        SeqGANConfig(rollout_policy="delayed")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rescale"):
        SeqGANConfig(rescale="sort")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_rollouts"):
        SeqGANConfig(num_rollouts=0)
    with pytest.raises(ValueError, match="discriminator"):
        SeqGAN(LSTMGenerator(V), None, torch.zeros(4, T, dtype=torch.long))


# -- MaskGAN ------------------------------------------------------------------------------------


def test_masks() -> None:
    rng = torch.Generator().manual_seed(0)
    m = make_masks(500, 20, kind="contiguous", rng=rng)
    missing = ~m
    assert (missing.sum(1) == 9).all()  # int((1 − 0.5)·20) − 1
    assert m[:, 0].all()  # the block starts at position ≥ 1
    first = missing.int().argmax(1)
    for row, s in zip(missing, first.tolist(), strict=True):  # one contiguous block
        assert row[s : s + 9].all()
    assert len(set(first.tolist())) > 5
    r = make_masks(400, 20, kind="random", present_rate=0.3, rng=rng)
    assert abs(float(r.double().mean()) - 0.3) < 4 * math.sqrt(0.21 / 8000)
    with pytest.raises(ValueError, match="kind"):
        make_masks(2, 20, kind="block")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="present_rate"):
        make_masks(2, 20, present_rate=1.5)


def test_infill_keeps_present_tokens_and_zeroes_them_in_rewards(data) -> None:
    torch.manual_seed(0)
    g = InfillModel(V, 8, 8)
    x = data.train[:16]
    present = make_masks(16, T, kind="random", rng=torch.Generator().manual_seed(1))
    filled = g.fill(x, present, rng=torch.Generator().manual_seed(2))
    assert torch.equal(filled[present], x[present])  # present tokens byte-identical
    assert not torch.equal(filled, x)
    # the missing tokens of the input are never read
    scrambled = torch.where(present, x, (x + 5) % V)
    again = g.fill(scrambled, present, rng=torch.Generator().manual_seed(2))
    assert torch.equal(again, filled)
    trainer = MaskGAN(g, TokenDiscriminator(V, 8, 8), data.train, MaskGANConfig(batch_size=16))
    out = trainer.generator_losses(filled, present)
    assert (out["rewards"][present] == 0).all() and (out["rewards"][~present] < 0).all()
    assert (out["logprobs"][present] == 0).all() and (out["logprobs"][~present] < 0).all()
    assert (out["advantages"][present] == 0).all()
    assert out["advantages"].abs().max() <= 5.0


def test_maskgan_returns_equal_a_hand_loop() -> None:
    g = torch.Generator().manual_seed(0)
    r = -torch.rand(4, 9, generator=g)
    missing = torch.rand(4, 9, generator=g) < 0.5
    got = maskgan_returns(r, missing, 0.9)
    for b in range(4):
        for t in range(9):
            expect = sum(0.9 ** (s - t) * float(r[b, s]) for s in range(t, 9) if missing[b, s])
            assert float(got[b, t]) == pytest.approx(expect, rel=1e-6, abs=1e-12)


def test_maskgan_critic_loss_on_missing_tokens_only(data) -> None:
    torch.manual_seed(0)
    g = InfillModel(V, 8, 8)
    tr = MaskGAN(g, TokenDiscriminator(V, 8, 8), data.train, MaskGANConfig(batch_size=8))
    x = data.train[:8]
    present = make_masks(8, T, kind="random", rng=torch.Generator().manual_seed(1))
    fake = g.fill(x, present)
    from lmobjectives.torch.rl import maskgan_losses

    lp = token_logprobs(g, fake, present)
    r = tr.rewards(fake, present)
    values = torch.randn(8, T, requires_grad=True)
    _, critic, _ = maskgan_losses(lp, r, values, ~present)
    (grad,) = torch.autograd.grad(critic, values)
    assert (grad[present] == 0).all() and (grad[~present] != 0).any()
    moved = values.detach() + present * 100.0  # changing values on present tokens ...
    _, critic2, _ = maskgan_losses(lp, r, moved, ~present)
    assert float(critic2) == pytest.approx(float(critic.detach()))  # ... changes nothing


@pytest.mark.parametrize("baseline", ["critic", "ema", "none"])
def test_maskgan_steps(data, baseline: str) -> None:
    torch.manual_seed(0)
    g = InfillModel(V, 8, 8)
    cfg = MaskGANConfig(batch_size=16, baseline=baseline, mask="contiguous")  # type: ignore[arg-type]
    tr = MaskGAN(g, TokenDiscriminator(V, 8, 8), data.train, cfg)
    losses = tr.pretrain(2)
    assert losses[1] < losses[0]
    for _ in range(2):
        stats = tr.step()
    assert stats["reward"] < 0 and math.isfinite(stats["d_loss"])
    assert ("critic_loss" in stats) == (baseline == "critic")
    m = evaluate_infill(g, data.oracle, data.test[:32])
    assert set(m) == {"nll_oracle", "nll_test", "entropy", "unique"}
    assert float(mask_mle_loss(g, data.test[:8], make_masks(8, T)).detach()) > 0


# -- LeakGAN -------------------------------------------------------------------------------------


def tiny_leakgan() -> LeakGANGenerator:
    torch.manual_seed(0)
    d = CNNDiscriminator(V, T, filter_sizes=(2, 3), num_filters=(6, 6))
    return LeakGANGenerator(V, T, d, embedding_size=8, hidden_size=8, goal_size=4, step_size=4)


def test_leakgan_shapes_and_goal_window() -> None:
    g = tiny_leakgan()
    x = torch.randint(0, V, (3, T))
    out = g.outputs(x)
    assert out["logits"].shape == (3, T, V)
    assert out["goals"].shape == (3, T, 12) and out["features"].shape == (3, T + 1, 12)
    assert torch.allclose(out["goals"].norm(dim=-1), torch.ones(3, T), atol=1e-5)
    # f_0 is the all-padding prefix, f_T the full sequence
    d = g.discriminator.eval()
    assert torch.allclose(out["features"][:, 0], d.features(torch.full((3, T), V)), atol=1e-6)
    assert torch.allclose(out["features"][:, T], d.features(x), atol=1e-6)
    w = g._window(out["goals"])
    # logits = O_t·w_t with O_t the worker output reshaped [vocab, goal_size]
    begin = torch.full_like(x[:, :1], V)
    h = g.worker(g.embedding(torch.cat([begin, x[:, :-1]], 1)))[0]
    o = g.worker_out(h).view(3, T, V, 4)
    expect = torch.einsum("btvk,btk->btv", o, w)
    assert torch.allclose(out["logits"], expect, atol=1e-5)
    for t in range(T):
        s = out["goals"][:, max(0, t - 3) : t + 1].sum(1)
        assert torch.allclose(w[:, t], torch.nn.functional.normalize(g.psi(s), dim=-1), atol=1e-5)
    # incremental sampling agrees with teacher forcing: the prefix is kept and every sample
    # is one the teacher-forced model gives positive probability
    y = g.sample(3, T, prefix=x[:, :5], generator=torch.Generator().manual_seed(0))
    assert torch.equal(y[:, :5], x[:, :5])
    with pytest.raises(ValueError, match="length"):
        g.sample(2, T + 1)


def test_intrinsic_and_manager_rewards_by_hand() -> None:
    g = torch.Generator().manual_seed(0)
    f = torch.randn(2, 7, 5, generator=g)
    goals = torch.randn(2, 6, 5, generator=g)
    cos = torch.nn.functional.cosine_similarity
    r = intrinsic_rewards(f, goals, 4)
    m = manager_cosines(f, goals, 4)
    for b in range(2):
        for t in range(6):
            terms = [
                cos(f[b, t + 1] - f[b, t + 1 - i], goals[b, t + 1 - i], dim=0)
                for i in range(1, 5)
                if t + 1 - i >= 0
            ]
            assert float(r[b, t]) == pytest.approx(float(sum(terms)) / 4, rel=1e-5, abs=1e-6)
            assert float(m[b, t]) == pytest.approx(
                float(cos(f[b, min(t + 4, 6)] - f[b, t], goals[b, t], dim=0)), rel=1e-5, abs=1e-6
            )


@pytest.mark.parametrize("released", [False, True])
def test_leakgan_steps(data, released: bool) -> None:
    g = tiny_leakgan()
    cfg = LeakGANConfig(
        batch_size=16,
        num_rollouts=2,
        d_steps=1,
        d_epochs=1,
        d_negatives=64,
        released_rescale=released,
        mle_every=1,
    )
    tr = LeakGAN(g, data.train, cfg)
    tr.pretrain_generator(1)
    tr.discriminator_round()
    q = tr.rewards(g.sample(16, T, generator=torch.Generator().manual_seed(0)))
    assert q.shape == (16, T)
    assert torch.equal(q[:, 0], q[:, 3]) and torch.equal(q[:, 4], q[:, 7])  # one per c-window
    if released:
        assert q[:, 0].tolist() == sorted(q[:, 0].tolist())  # a ramp over batch position
    stats = tr.step()
    assert {"worker_loss", "manager_loss", "d_loss", "mle_loss"} <= set(stats)
    assert all(math.isfinite(v) for v in stats.values())
    m1 = evaluate(g, data, num_samples=64, num_test=32)
    m2 = evaluate(g, data, num_samples=64, num_test=32, temperature=1 / 1.5)
    assert m2["entropy"] < m1["entropy"]
