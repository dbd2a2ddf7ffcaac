"""RL bookkeeping: the Rust kernels of :mod:`lmobjectives.rl` against the straightforward torch
implementations of :mod:`lmobjectives.torch.rl_reference` (TRL's loops: ``masked_whiten``,
the PPO GAE loop over time, ``view(-1, G)`` group statistics) on the same CPU tensors, in one
run. The workload is a GRPO-sized rollout batch: 32 prompts × 8 completions of up to 512
tokens (right-padded, float32). Every benchmark checks that both give the same numbers.

Self-BLEU is timed against NLTK's ``sentence_bleu`` (the definition it is pinned to) on 64
samples, each scored against the other 63.

Both sides run on one thread (``torch.set_num_threads(1)``, ``num_threads=1``): the ratios
compare the work, not the core count (and torch's OpenMP pool spins badly on a shared machine).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmobjectives import rl
from lmobjectives.torch import rl_reference as ref

PROMPTS, GROUP, SEQ = 32, 8, 512
BATCH = PROMPTS * GROUP
CONTENDERS = ["lmobjectives", "torch"]
ONE = {"num_threads": 1}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def rollouts():
    """Completions with an EOS somewhere in the second half of each row (some none),
    padding after it, random rewards, values and log-probabilities."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (BATCH, SEQ), generator=g)
    ends = torch.randint(SEQ // 2, SEQ + 40, (BATCH,), generator=g)
    cols = torch.arange(SEQ)
    for i, e in enumerate(ends.tolist()):
        if e < SEQ:
            ids[i, e] = 2  # EOS
            ids[i, e + 1 :] = 0  # PAD
    mask, last, _ = ref.completion_mask(ids, 2)
    rewards = torch.zeros(BATCH, SEQ)
    rewards[torch.arange(BATCH), last] = torch.randn(BATCH, generator=g)
    return {
        "ids": ids,
        "mask": mask,
        "cols": cols,
        "rewards": rewards - 0.05 * torch.rand(BATCH, SEQ, generator=g) * mask,
        "values": torch.randn(BATCH, SEQ, generator=g),
        "logprobs": -torch.rand(BATCH, SEQ, generator=g) * 3,
        "ref_logprobs": -torch.rand(BATCH, SEQ, generator=g) * 3,
        "scores": torch.randn(BATCH, generator=g),
    }


def _same(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


@pytest.mark.benchmark(group=f"rl-completion-mask-{BATCH}x{SEQ}")
@pytest.mark.parametrize("contender", CONTENDERS)
def test_completion_mask(benchmark, rollouts, contender):
    ids = rollouts["ids"]
    if contender == "torch":
        mask = benchmark(lambda: ref.completion_mask(ids, 2)[0])
    else:
        mask = benchmark(lambda: rl.completion_mask(ids, 2, **ONE).mask)
    _same(mask, rollouts["mask"])


@pytest.mark.benchmark(group=f"rl-returns-{BATCH}x{SEQ}")
@pytest.mark.parametrize("contender", CONTENDERS)
def test_discounted_returns(benchmark, rollouts, contender):
    r, m = rollouts["rewards"], rollouts["mask"]
    if contender == "torch":
        out = benchmark(ref.discounted_returns, r, m, 0.99)
    else:
        out = benchmark(lambda: rl.discounted_returns(r, m, gamma=0.99, **ONE))
    _same(out, ref.discounted_returns(r.double(), m, 0.99), 1e-4)


@pytest.mark.benchmark(group=f"rl-gae-{BATCH}x{SEQ}")
@pytest.mark.parametrize("contender", CONTENDERS)
def test_gae(benchmark, rollouts, contender):
    r, v, m = rollouts["rewards"], rollouts["values"], rollouts["mask"]
    if contender == "torch":
        adv, _ = benchmark(ref.gae, r, v, m, 1.0, 0.95)
    else:
        adv, _ = benchmark(lambda: rl.gae(r, v, m, gamma=1.0, lam=0.95, **ONE))
    _same(adv, ref.gae(r.double(), v.double(), m, 1.0, 0.95)[0], 1e-3)


@pytest.mark.benchmark(group=f"rl-whiten-{BATCH}x{SEQ}")
@pytest.mark.parametrize("contender", CONTENDERS)
def test_whiten(benchmark, rollouts, contender):
    v, m = rollouts["values"], rollouts["mask"]
    if contender == "torch":
        out = benchmark(ref.whiten, v, m)
    else:
        out = benchmark(lambda: rl.whiten(v, m, **ONE))
    _same(out, ref.whiten(v.double(), m), 1e-4)


@pytest.mark.benchmark(group=f"rl-kl-k3-{BATCH}x{SEQ}")
@pytest.mark.parametrize("contender", CONTENDERS)
def test_kl_estimate(benchmark, rollouts, contender):
    p, q, m = rollouts["logprobs"], rollouts["ref_logprobs"], rollouts["mask"]
    if contender == "torch":
        k, _ = benchmark(ref.kl_estimate, p, q, m, "k3")
    else:
        k, _ = benchmark(lambda: rl.kl_estimate(p, q, m, estimator="k3", **ONE))
    _same(k, ref.kl_estimate(p.double(), q.double(), m, "k3")[0], 1e-5)


@pytest.mark.benchmark(group=f"rl-grpo-advantages-{PROMPTS}x{GROUP}")
@pytest.mark.parametrize("contender", CONTENDERS)
def test_group_advantages(benchmark, rollouts, contender):
    s = rollouts["scores"]
    if contender == "torch":
        out = benchmark(ref.group_advantages, s, GROUP)
    else:
        out = benchmark(lambda: rl.grpo_advantages(s, GROUP))
    _same(out, ref.group_advantages(s.double(), GROUP), 1e-5)


@pytest.fixture(scope="module")
def samples():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 30, int(rng.integers(15, 25))).tolist() for _ in range(64)]


@pytest.mark.benchmark(group="rl-self-bleu4-64")
@pytest.mark.parametrize("contender", ["lmobjectives", "nltk"])
def test_self_bleu(benchmark, samples, contender):
    if contender == "nltk":
        from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

        smooth = SmoothingFunction().method1

        def nltk_self_bleu():
            return [
                sentence_bleu(samples[:i] + samples[i + 1 :], s, smoothing_function=smooth)
                for i, s in enumerate(samples)
            ]

        out = benchmark(nltk_self_bleu)
    else:
        out = benchmark(rl.self_bleu, samples, **ONE)
    _same(out, rl.self_bleu(samples, num_threads=1), 1e-12)
