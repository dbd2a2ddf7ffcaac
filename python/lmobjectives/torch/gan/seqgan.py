"""SeqGAN (Yu et al., AAAI 2017), following the paper rather than the released code's quirks.

- Generator pretraining by teacher-forced MLE (:func:`mle_epoch`).
- Rewards from Monte-Carlo rollouts (:func:`mc_rewards`): for every prefix length ``t < T``,
  ``Q[b, t-1]`` is the mean discriminator probability of ``num_rollouts`` (16) completions of
  sample ``b``'s first ``t`` tokens by the rollout policy; the last token's ``Q[b, T-1]`` is
  ``D(Y_b)`` itself. The bookkeeping goes through :func:`lmobjectives.rl.rollout_plan` /
  :func:`lmobjectives.rl.rollout_rewards` (explicit index maps, nothing reshaped), so rewards
  cannot be mixed across samples, positions and rollouts (TextGAN-PyTorch #62).
- Policy gradient with SeqGAN's loss ``−Σ_{b,t} Q·log G`` (a sum, no baseline; Adam 0.01,
  global-norm clip 5).
- The rollout policy is the current generator (the paper; the released code's "delayed
  update" never takes effect), or an EMA copy (``rollout_policy="ema"``, the code's intended
  ``update_rate`` 0.8).
- Generic options used by the controls and LeakGAN: ``reward="constant"`` (Q ≡ 1, the
  LantaoYu/SeqGAN#21 control), ``rescale="rank"`` (LeakGAN's bootstrapped rescaled activation,
  :func:`rank_rescale`), interleaved MLE (``mle_every``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lmobjectives import rl
from lmobjectives.torch.gan.models import Generator, discriminator_loss, draw_device
from lmobjectives.torch.rl import reinforce_loss

__all__ = [
    "SeqGAN",
    "SeqGANConfig",
    "discriminator_probs",
    "ema_update_",
    "mc_rewards",
    "mle_epoch",
    "pg_loss",
    "rank_rescale",
    "train_discriminator",
]

Score = Callable[[torch.Tensor], torch.Tensor]

_CPU = torch.device("cpu")


def mle_epoch(
    generator: Generator,
    optimizer: torch.optim.Optimizer,
    train: torch.Tensor,
    *,
    batch_size: int = 64,
    grad_clip: float | None = 5.0,
    rng: torch.Generator | None = None,
) -> float:
    """One epoch of teacher-forced MLE over ``train`` (shuffled with ``rng``); returns the mean
    token cross-entropy. Noise-conditioned generators get fresh noise per batch."""
    generator.train()
    order = torch.randperm(train.shape[0], generator=rng, device=draw_device(rng, _CPU))
    total, count = 0.0, 0
    for s in range(0, train.shape[0], batch_size):
        x = train[order[s : s + batch_size].to(train.device)]
        cond = generator.draw_cond(x.shape[0], rng)
        logits = generator(x, cond=cond)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(generator.parameters(), grad_clip)
        optimizer.step()
        total += float(loss.detach()) * x.shape[0]
        count += x.shape[0]
    return total / max(count, 1)


@torch.no_grad()
def discriminator_probs(disc: nn.Module, batch_size: int = 4096) -> Score:
    """A score function: ``D(x) = σ(disc(x))`` in eval mode (no dropout), in chunks."""

    def score(tokens: torch.Tensor) -> torch.Tensor:
        was = disc.training
        disc.eval()
        out = torch.cat(
            [
                torch.sigmoid(disc(tokens[s : s + batch_size]))
                for s in range(0, len(tokens), batch_size)
            ]
        )
        disc.train(was)
        return out

    return score


@torch.no_grad()
def mc_rewards(
    policy: Generator,
    score: Score,
    samples: torch.Tensor,
    num_rollouts: int = 16,
    *,
    cond: Any = None,
    temperature: float = 1.0,
    rng: torch.Generator | None = None,
    prefix_lengths: list[int] | None = None,
    return_rollouts: bool = False,
) -> Any:
    """SeqGAN's Monte-Carlo rewards ``Q [batch, T]`` of ``samples [batch, T]``.

    ``Q[b, t-1]`` (t < T) is the mean of ``score`` over ``num_rollouts`` completions of
    ``samples[b, :t]`` by ``policy`` (with ``cond[b]``); ``Q[b, T-1] = score(samples)[b]``.
    ``prefix_lengths`` restricts the rollouts to those lengths (LeakGAN: every c tokens;
    columns of the other lengths are 0). Each prefix length is continued as one batch.
    ``return_rollouts=True`` also returns the plan and the rollout sequences (one row per plan
    row) for inspection."""
    b, length = samples.shape
    if num_rollouts < 1:
        raise ValueError(f"num_rollouts: must be positive, got {num_rollouts!r}")
    plan = rl.rollout_plan(np.full(b, length, dtype=np.int64), num_rollouts)
    keep = np.ones(len(plan.sample), dtype=bool)
    if prefix_lengths is not None:
        keep = np.isin(plan.prefix_length, np.asarray(prefix_lengths, dtype=np.int64))
    device = samples.device
    scores = torch.zeros(len(plan.sample), dtype=torch.float64, device=device)
    rollouts = torch.zeros(len(plan.sample), length, dtype=torch.long, device=device)
    for t in np.unique(plan.prefix_length[keep]).tolist():
        idx = torch.from_numpy(np.nonzero((plan.prefix_length == t) & keep)[0]).to(device)
        rows = torch.from_numpy(plan.sample[(plan.prefix_length == t) & keep]).to(device)
        c = None if cond is None else cond[rows]
        full = policy.sample(
            len(idx),
            length,
            prefix=samples[rows, :t],
            cond=c,
            temperature=temperature,
            generator=rng,
        )
        scores[idx] = score(full).double()
        rollouts[idx] = full
    final = score(samples).double()
    if device.type != "cpu" or prefix_lengths is not None:
        out = _scatter_means(scores, plan, keep, final, b, length, num_rollouts)
    else:  # the Rust kernel on the host
        q = rl.rollout_rewards(scores.numpy(), plan, final.numpy(), seq_len=length)
        out = torch.from_numpy(np.ascontiguousarray(q)).float()
    if return_rollouts:
        return out, plan, rollouts
    return out


def _scatter_means(
    scores: torch.Tensor,
    plan: Any,
    keep: np.ndarray,
    final: torch.Tensor,
    batch: int,
    length: int,
    num_rollouts: int,
) -> torch.Tensor:
    """``Q`` from the rollout ``scores`` on their own device: the kept plan rows' means added
    at ``(sample, prefix_length − 1)``, ``final`` in the last column (what
    :func:`lmobjectives.rl.rollout_rewards` computes on the host)."""
    device = scores.device
    at = plan.sample[keep] * length + plan.prefix_length[keep] - 1
    q = torch.zeros(batch * length, dtype=torch.float64, device=device)
    kept = torch.from_numpy(np.nonzero(keep)[0]).to(device)
    q.index_add_(0, torch.from_numpy(at).to(device), scores[kept] / num_rollouts)
    q = q.view(batch, length)
    q[:, length - 1] = final
    return q.float()


def rank_rescale(
    rewards: torch.Tensor, delta: float = 16.0, *, released: bool = False
) -> torch.Tensor:
    """LeakGAN's bootstrapped rescaled activation, per column over the batch: the reward of
    ascending rank ``k`` (1 = lowest of ``B``) becomes ``σ(δ·(k/B − ½))`` — a monotone map onto
    ``(σ(−δ/2), σ(δ/2)]``, invariant to any increasing transform of the rewards (ties are
    ranked by batch position).

    ``released=True`` reproduces the released code's loop (``rescale`` in LeakGAN's
    ``Main.py``, copied into Texygen) for comparison only: it never sorts, so the k-th
    *distinct* value in batch order gets ``σ(δ·(k/B − ½))`` — a ramp over batch position that
    ignores the discriminator."""
    if rewards.ndim != 2:
        raise ValueError(f"rewards: expected [batch, steps], got {list(rewards.shape)}")
    b = rewards.shape[0]
    out = torch.empty_like(rewards, dtype=torch.float32)
    for j in range(rewards.shape[1]):
        col = rewards[:, j]
        if released:
            seen: dict[float, int] = {}
            for v in col.tolist():
                seen.setdefault(v, len(seen) + 1)
            k = torch.tensor(
                [seen[v] for v in col.tolist()], dtype=torch.float32, device=rewards.device
            )
        else:
            order = torch.argsort(col, stable=True)
            k = torch.empty(b, dtype=torch.float32, device=rewards.device)
            k[order] = torch.arange(1, b + 1, dtype=torch.float32, device=rewards.device)
        out[:, j] = torch.sigmoid(delta * (k / b - 0.5))
    return out


def pg_loss(
    generator: Generator, samples: torch.Tensor, rewards: torch.Tensor, cond: Any = None
) -> torch.Tensor:
    """SeqGAN's generator loss ``−Σ_{b,t} Q[b,t]·log G(y_t | Y_{<t})`` (sum, no baseline)."""
    logits = generator(samples, cond=cond)
    lp = torch.log_softmax(logits.float(), -1).gather(-1, samples.unsqueeze(-1)).squeeze(-1)
    mask = torch.ones_like(samples, dtype=torch.bool)
    return reinforce_loss(lp, rewards.detach(), mask, normalize="sum")


@torch.no_grad()
def ema_update_(target: nn.Module, source: nn.Module, decay: float) -> None:
    """``θ_target ← decay·θ_target + (1 − decay)·θ_source``."""
    for pt, ps in zip(target.parameters(), source.parameters(), strict=True):
        pt.mul_(decay).add_(ps, alpha=1 - decay)


def train_discriminator(
    disc: nn.Module,
    optimizer: torch.optim.Optimizer,
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    epochs: int = 3,
    batch_size: int = 64,
    l2_reg: float = 0.2,
    rng: torch.Generator | None = None,
) -> float:
    """``epochs`` passes over the shuffled union of ``real`` (label 1) and ``fake`` (label 0)
    sequences, batches of ``batch_size`` (half real, half fake); returns the last epoch's mean
    loss."""
    disc.train()
    n = min(real.shape[0], fake.shape[0])
    half = max(batch_size // 2, 1)
    mean = 0.0
    for _ in range(epochs):
        pr = torch.randperm(real.shape[0], generator=rng, device=draw_device(rng, _CPU))
        pr = pr[:n].to(real.device)
        pf = torch.randperm(fake.shape[0], generator=rng, device=draw_device(rng, _CPU))
        pf = pf[:n].to(fake.device)
        total, steps = 0.0, 0
        for s in range(0, n, half):
            loss = discriminator_loss(
                disc, real[pr[s : s + half]], fake[pf[s : s + half]], l2_reg=l2_reg
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            steps += 1
        mean = total / max(steps, 1)
    return mean


@dataclass
class SeqGANConfig:
    """SeqGAN's defaults (``sequence_gan.py``) and the generic trainer options."""

    batch_size: int = 64
    num_rollouts: int = 16
    rollout_policy: Literal["current", "ema"] = "current"
    rollout_decay: float = 0.8
    reward: Literal["discriminator", "constant"] = "discriminator"
    constant_reward: float = 1.0
    rescale: Literal["none", "rank", "rank_released"] = "none"
    rescale_delta: float = 16.0
    g_lr: float = 0.01
    grad_clip: float = 5.0
    d_lr: float = 1e-4
    d_l2: float = 0.2
    d_steps: int = 5
    d_epochs: int = 3
    d_batch_size: int = 64
    d_negatives: int = 10_000
    pretrain_d_rounds: int = 50
    mle_every: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rollout_policy not in ("current", "ema"):
            raise ValueError(f"rollout_policy: 'current' or 'ema', got {self.rollout_policy!r}")
        if self.reward not in ("discriminator", "constant"):
            raise ValueError(f"reward: 'discriminator' or 'constant', got {self.reward!r}")
        if self.rescale not in ("none", "rank", "rank_released"):
            raise ValueError(f"rescale: 'none', 'rank' or 'rank_released', got {self.rescale!r}")
        for name in ("batch_size", "num_rollouts", "d_batch_size", "d_negatives"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be positive, got {getattr(self, name)!r}")
        if not 0 <= self.rollout_decay < 1:
            raise ValueError(f"rollout_decay: must be in [0, 1), got {self.rollout_decay!r}")


class SeqGAN:
    """The SeqGAN training loop around any :class:`Generator` and discriminator.

    ``train`` are the real sequences. :meth:`pretrain_generator` (MLE),
    :meth:`pretrain_discriminator`, then :meth:`step` (one generator PG step, ``d_steps``
    discriminator rounds of ``d_epochs`` on fresh negatives, interleaved MLE every
    ``mle_every`` steps). With ``reward="constant"`` no discriminator is needed (pass
    ``None``)."""

    def __init__(
        self,
        generator: Generator,
        discriminator: nn.Module | None,
        train: torch.Tensor,
        config: SeqGANConfig | None = None,
    ) -> None:
        self.config = c = config or SeqGANConfig()
        if discriminator is None and c.reward == "discriminator":
            raise ValueError("discriminator: required unless reward='constant'")
        self.generator = generator
        self.discriminator = discriminator
        self.train = train
        self.rng = torch.Generator().manual_seed(c.seed)
        self.g_opt = torch.optim.Adam(generator.parameters(), lr=c.g_lr)
        self.mle_opt = torch.optim.Adam(generator.parameters(), lr=c.g_lr)
        self.d_opt = (
            torch.optim.Adam(discriminator.parameters(), lr=c.d_lr)
            if discriminator is not None
            else None
        )
        self.rollout = copy.deepcopy(generator) if c.rollout_policy == "ema" else generator
        self.steps = 0

    # -- phases ---------------------------------------------------------------------------

    def pretrain_generator(self, epochs: int = 1) -> list[float]:
        return [
            mle_epoch(
                self.generator,
                self.mle_opt,
                self.train,
                batch_size=self.config.batch_size,
                grad_clip=self.config.grad_clip,
                rng=self.rng,
            )
            for _ in range(epochs)
        ]

    def discriminator_round(self, epochs: int | None = None) -> float:
        """Fresh negatives (``d_negatives``), then ``d_epochs`` epochs against as many real
        sequences."""
        c = self.config
        if self.discriminator is None or self.d_opt is None:
            return float("nan")
        n = min(c.d_negatives, self.train.shape[0])
        fake = self.generator.sample(n, self.train.shape[1], generator=self.rng)
        return train_discriminator(
            self.discriminator,
            self.d_opt,
            self.train,
            fake,
            epochs=c.d_epochs if epochs is None else epochs,
            batch_size=c.d_batch_size,
            l2_reg=c.d_l2,
            rng=self.rng,
        )

    def pretrain_discriminator(self, rounds: int | None = None) -> list[float]:
        r = self.config.pretrain_d_rounds if rounds is None else rounds
        return [self.discriminator_round() for _ in range(r)]

    def rewards(self, samples: torch.Tensor, cond: Any = None) -> torch.Tensor:
        """Q for ``samples`` under the configured reward and rescaling."""
        c = self.config
        if c.reward == "constant":
            q = torch.full(samples.shape, float(c.constant_reward), device=samples.device)
        else:
            assert self.discriminator is not None
            q = mc_rewards(
                self.rollout,
                discriminator_probs(self.discriminator),
                samples,
                c.num_rollouts,
                cond=cond,
                rng=self.rng,
            )
        if c.rescale != "none":
            q = rank_rescale(q, c.rescale_delta, released=c.rescale == "rank_released")
        return q

    def generator_step(self) -> dict[str, float]:
        c = self.config
        cond = self.generator.draw_cond(c.batch_size, self.rng)
        samples = self.generator.sample(
            c.batch_size, self.train.shape[1], cond=cond, generator=self.rng
        )
        q = self.rewards(samples, cond)
        self.generator.train()
        loss = pg_loss(self.generator, samples, q, cond)
        self.g_opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.generator.parameters(), c.grad_clip)
        self.g_opt.step()
        if self.rollout is not self.generator:
            ema_update_(self.rollout, self.generator, c.rollout_decay)
        return {"pg_loss": float(loss.detach()), "reward": float(q.mean())}

    def step(self) -> dict[str, float]:
        """One adversarial iteration (g-steps 1, d-steps ``d_steps``)."""
        c = self.config
        stats = self.generator_step()
        if c.reward == "discriminator":
            for _ in range(c.d_steps):
                stats["d_loss"] = self.discriminator_round()
        self.steps += 1
        if c.mle_every and self.steps % c.mle_every == 0:
            stats["mle_loss"] = self.pretrain_generator(1)[0]
        return stats
