"""LeakGAN (Guo et al., AAAI 2018): a manager/worker generator reading the discriminator's
leaked features, after the paper (not the released code's unsorted "rank").

Notation (:class:`LeakGANGenerator`): ``f_t`` is the discriminator's feature of the first
``t`` tokens (padded), ``t = 0..T``. At step ``t`` the manager LSTM reads ``f_t`` and emits a
unit goal ``g_t`` (size = feature size); the worker's goal embedding is
``w_t = normalize(ψ·Σ_{i=t−c+1..t} g_i)`` (``c`` = ``step_size`` 4, size ``goal_size`` 16); the
worker LSTM outputs ``O_t`` (vocab × goal_size) and ``p(x_t) = softmax(O_t·w_t)``.

- Worker: MLE pretraining; adversarially REINFORCE with the intrinsic reward
  ``r^I_t = (1/c)·Σ_{i=1..c} cos(f_{t+1} − f_{t+1−i}, g_{t+1−i})`` (terms before the start
  omitted) — :func:`intrinsic_rewards`.
- Manager: pretrained to maximise ``cos(f_{t+c} − f_t, g_t)`` on real data (``f`` clamped at
  ``f_T``); adversarially ``Q_t·cos(f_{t+c} − f_t, g_t)`` — :func:`manager_cosines`.
- Rewards: Monte-Carlo rollouts (4) every ``c`` tokens, then rank rescaling with δ = 16 from
  the true rank (:func:`~lmobjectives.torch.gan.seqgan.rank_rescale`;
  ``released_rescale=True`` reproduces the released code's unsorted ramp).
- Interleaved MLE every ``mle_every`` adversarial steps (the paper's COCO schedule: 15).
- Evaluation at temperature 1 and with the released code's ×1.5 logit trick (temperature 2/3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lmobjectives.torch.gan.models import Generator, draw_device, sample_tokens
from lmobjectives.torch.gan.seqgan import (
    discriminator_probs,
    mc_rewards,
    rank_rescale,
    train_discriminator,
)

__all__ = [
    "LeakGAN",
    "LeakGANConfig",
    "LeakGANGenerator",
    "intrinsic_rewards",
    "manager_cosines",
]

#: The released code's evaluation trick: logits × 1.5, i.e. temperature 2/3.
LOGIT_TRICK_TEMPERATURE = 1 / 1.5

_CPU = torch.device("cpu")


def manager_cosines(
    features: torch.Tensor, goals: torch.Tensor, step_size: int = 4
) -> torch.Tensor:
    """``cos(f_{min(t+c, T)} − f_t, g_t)`` ``[batch, T]`` from ``features [batch, T+1, F]``
    and ``goals [batch, T, F]``."""
    t_len = goals.shape[1]
    idx = torch.clamp(torch.arange(t_len, device=features.device) + step_size, max=t_len)
    delta = features[:, idx] - features[:, :t_len]
    return F.cosine_similarity(delta, goals, dim=-1, eps=1e-8)


def intrinsic_rewards(
    features: torch.Tensor, goals: torch.Tensor, step_size: int = 4
) -> torch.Tensor:
    """The worker's ``r^I_t = (1/c)·Σ_{i=1..c, t+1−i ≥ 0} cos(f_{t+1} − f_{t+1−i}, g_{t+1−i})``
    ``[batch, T]`` (``features [batch, T+1, F]``, ``goals [batch, T, F]``)."""
    b, t_len, _ = goals.shape
    out = torch.zeros(b, t_len, dtype=features.dtype, device=features.device)
    for t in range(t_len):
        for i in range(1, step_size + 1):
            j = t + 1 - i
            if j < 0:
                break
            out[:, t] += F.cosine_similarity(
                features[:, t + 1] - features[:, j], goals[:, j], dim=-1, eps=1e-8
            )
    return out / step_size


class LeakGANGenerator(Generator):
    """Manager/worker generator (see the module docstring). ``discriminator`` provides
    ``features(tokens)`` (padding id ``vocab_size``) and ``feature_size``; it is read without
    gradients (the leak), in eval mode."""

    def __init__(
        self,
        vocab_size: int,
        length: int,
        discriminator: Any,
        *,
        embedding_size: int = 32,
        hidden_size: int = 32,
        goal_size: int = 16,
        step_size: int = 4,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.length = length
        self.goal_size = goal_size
        self.step_size = step_size
        self._disc: list[Any] = [discriminator]  # not a submodule: its parameters are D's
        feat = int(discriminator.feature_size)
        self.manager = nn.LSTM(feat, hidden_size, batch_first=True)
        self.goal = nn.Linear(hidden_size, feat)
        self.embedding = nn.Embedding(vocab_size + 1, embedding_size)
        self.worker = nn.LSTM(embedding_size, hidden_size, batch_first=True)
        self.worker_out = nn.Linear(hidden_size, vocab_size * goal_size)
        self.psi = nn.Linear(feat, goal_size, bias=False)

    @property
    def discriminator(self) -> Any:
        """The discriminator whose ``features`` leak into the manager."""
        return self._disc[0]

    @torch.no_grad()
    def leaked_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """``f_t`` for ``t = 0..T`` ``[batch, T+1, F]``: features of every padded prefix."""
        b, t_len = tokens.shape
        pad = self.vocab_size
        ar = torch.arange(max(self.length, t_len + 1), device=tokens.device)
        keep = ar[None, : self.length] < ar[: t_len + 1, None]  # [T+1, L]
        full = torch.full((b, self.length), pad, dtype=torch.long, device=tokens.device)
        full[:, :t_len] = tokens
        prefixes = torch.where(keep[None], full[:, None, :], torch.full_like(full[:, None, :], pad))
        d = self.discriminator
        was = d.training
        d.eval()
        f = d.features(prefixes.reshape(-1, self.length)).reshape(b, t_len + 1, -1)
        d.train(was)
        return f

    def _goals(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.goal(self.manager(features)[0]), dim=-1)

    def _window(self, goals: torch.Tensor) -> torch.Tensor:
        """``w_t = normalize(ψ·Σ_{i=t−c+1..t} g_i)`` from detached goals ``[batch, T, F]``."""
        c = torch.cumsum(goals.detach(), dim=1)
        shifted = F.pad(c, (0, 0, self.step_size, 0))[:, : c.shape[1]]
        return F.normalize(self.psi(c - shifted), dim=-1)

    def _logits(self, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``O·w`` with ``O = reshape(worker_out(h), [vocab, goal_size])``, computed as one
        matmul of ``w ⊗ h`` (never materialising the ``[…, vocab, goal_size]`` tensor)."""
        k, hid = self.goal_size, h.shape[-1]
        weight = self.worker_out.weight.view(self.vocab_size, k * hid)
        bias = self.worker_out.bias.view(self.vocab_size, k)
        outer = (w.unsqueeze(-1) * h.unsqueeze(-2)).flatten(-2)  # [..., k·hidden], k-major
        return outer @ weight.T + w @ bias.T

    def outputs(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """Teacher-forced ``logits [B, T, V]``, ``goals [B, T, F]``, ``features [B, T+1, F]``."""
        t_len = tokens.shape[1]
        f = self.leaked_features(tokens)
        goals = self._goals(f[:, :t_len])
        begin = torch.full_like(tokens[:, :1], self.vocab_size)
        h = self.worker(self.embedding(torch.cat([begin, tokens[:, :-1]], dim=1)))[0]
        logits = self._logits(h, self._window(goals))
        return {"logits": logits, "goals": goals, "features": f}

    def forward(self, tokens: torch.Tensor, cond: Any = None) -> torch.Tensor:
        return self.outputs(tokens)["logits"]

    @torch.no_grad()
    def sample(
        self,
        num: int,
        length: int,
        *,
        prefix: torch.Tensor | None = None,
        cond: Any = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        if not temperature > 0:
            raise ValueError(f"temperature: must be positive, got {temperature!r}")
        if length != self.length:
            raise ValueError(f"length: this generator makes {self.length} tokens, got {length}")
        p = 0 if prefix is None else prefix.shape[1]
        device = next(self.parameters()).device
        out = torch.full((num, length), self.vocab_size, dtype=torch.long, device=device)
        if prefix is not None:
            out[:, :p] = prefix
        m_state = w_state = None
        goals: list[torch.Tensor] = []
        tok = torch.full((num,), self.vocab_size, dtype=torch.long, device=device)
        d = self.discriminator
        was = d.training
        d.eval()
        for t in range(length):
            partial = torch.where(
                torch.arange(length, device=device)[None] < t,
                out,
                torch.full_like(out, self.vocab_size),
            )
            f = d.features(partial)
            hm, m_state = self.manager(f[:, None], m_state)
            goals.append(F.normalize(self.goal(hm[:, 0]), dim=-1))
            window = torch.stack(goals[-self.step_size :], 0).sum(0)
            w = F.normalize(self.psi(window), dim=-1)
            hw, w_state = self.worker(self.embedding(tok)[:, None], w_state)
            logits = self._logits(hw[:, 0], w)
            if t >= p:
                out[:, t] = sample_tokens(logits, temperature, generator)
            tok = out[:, t]
        d.train(was)
        return out


@dataclass
class LeakGANConfig:
    """LeakGAN's synthetic defaults (``Main.py``): 4 rollouts every c = 4 tokens, δ = 16,
    generator Adam 0.0015 (clip 5), discriminator Adam 5e-5, 5 × 3 discriminator epochs."""

    batch_size: int = 64
    num_rollouts: int = 4
    delta: float = 16.0
    released_rescale: bool = False
    g_lr: float = 0.0015
    grad_clip: float = 5.0
    d_lr: float = 5e-5
    d_l2: float = 0.2
    d_steps: int = 5
    d_epochs: int = 3
    d_batch_size: int = 64
    d_negatives: int = 10_000
    mle_every: int = 0
    seed: int = 0


class LeakGAN:
    """The LeakGAN loop around a :class:`LeakGANGenerator` and its discriminator."""

    def __init__(
        self,
        generator: LeakGANGenerator,
        train: torch.Tensor,
        config: LeakGANConfig | None = None,
    ) -> None:
        self.config = c = config or LeakGANConfig()
        self.generator = generator
        self.discriminator = generator.discriminator
        self.train = train
        self.rng = torch.Generator().manual_seed(c.seed)
        worker = [
            *generator.embedding.parameters(),
            *generator.worker.parameters(),
            *generator.worker_out.parameters(),
            *generator.psi.parameters(),
        ]
        manager = [*generator.manager.parameters(), *generator.goal.parameters()]
        self.worker_params, self.manager_params = worker, manager
        self.w_opt = torch.optim.Adam(worker, lr=c.g_lr)
        self.m_opt = torch.optim.Adam(manager, lr=c.g_lr)
        self.d_opt = torch.optim.Adam(self.discriminator.parameters(), lr=c.d_lr)
        self.steps = 0

    def _update(self, worker_loss: torch.Tensor, manager_loss: torch.Tensor) -> None:
        self.w_opt.zero_grad()
        self.m_opt.zero_grad()
        (worker_loss + manager_loss).backward()
        nn.utils.clip_grad_norm_(self.worker_params, self.config.grad_clip)
        nn.utils.clip_grad_norm_(self.manager_params, self.config.grad_clip)
        self.w_opt.step()
        self.m_opt.step()

    def pretrain_generator(self, epochs: int = 1) -> list[float]:
        """Worker MLE plus manager goal alignment on real data; returns the mean MLE losses."""
        c, g = self.config, self.generator
        losses = []
        for _ in range(epochs):
            order = torch.randperm(
                self.train.shape[0], generator=self.rng, device=draw_device(self.rng, _CPU)
            )
            total, n = 0.0, 0
            for s in range(0, len(order), c.batch_size):
                x = self.train[order[s : s + c.batch_size].to(self.train.device)]
                out = g.outputs(x)
                mle = F.cross_entropy(out["logits"].reshape(-1, g.vocab_size), x.reshape(-1))
                align = -manager_cosines(out["features"], out["goals"], g.step_size).mean()
                self._update(mle, align)
                total += float(mle.detach()) * x.shape[0]
                n += x.shape[0]
            losses.append(total / n)
        return losses

    def discriminator_round(self) -> float:
        c = self.config
        n = min(c.d_negatives, self.train.shape[0])
        fake = self.generator.sample(n, self.train.shape[1], generator=self.rng)
        return train_discriminator(
            self.discriminator,
            self.d_opt,
            self.train,
            fake,
            epochs=c.d_epochs,
            batch_size=c.d_batch_size,
            l2_reg=c.d_l2,
            rng=self.rng,
        )

    def rewards(self, samples: torch.Tensor) -> torch.Tensor:
        """Rank-rescaled MC rewards per step ``[batch, T]``: each step ``t`` gets the (rescaled)
        reward of the end of its c-window, ``Q`` at prefix length ``min((t//c + 1)·c, T)``."""
        c, g = self.config, self.generator
        t_len = samples.shape[1]
        ends = sorted({min((t // g.step_size + 1) * g.step_size, t_len) for t in range(t_len)})
        q = mc_rewards(
            g,
            discriminator_probs(self.discriminator),
            samples,
            c.num_rollouts,
            rng=self.rng,
            prefix_lengths=[e for e in ends if e < t_len],
        )
        cols = torch.tensor([e - 1 for e in ends], device=q.device)
        scaled = rank_rescale(q[:, cols], c.delta, released=c.released_rescale)
        which = torch.tensor(
            [ends.index(min((t // g.step_size + 1) * g.step_size, t_len)) for t in range(t_len)],
            device=q.device,
        )
        return scaled[:, which]

    def generator_step(self) -> dict[str, float]:
        c, g = self.config, self.generator
        samples = g.sample(c.batch_size, self.train.shape[1], generator=self.rng)
        q = self.rewards(samples)
        out = g.outputs(samples)
        lp = (
            torch.log_softmax(out["logits"].float(), -1)
            .gather(-1, samples.unsqueeze(-1))
            .squeeze(-1)
        )
        r_int = intrinsic_rewards(out["features"], out["goals"].detach(), g.step_size)
        worker_loss = -(r_int.detach() * lp).mean()
        manager_loss = -(q * manager_cosines(out["features"], out["goals"], g.step_size)).mean()
        self._update(worker_loss, manager_loss)
        return {
            "worker_loss": float(worker_loss.detach()),
            "manager_loss": float(manager_loss.detach()),
            "reward": float(q.mean()),
        }

    def step(self) -> dict[str, float]:
        c = self.config
        stats = self.generator_step()
        for _ in range(c.d_steps):
            stats["d_loss"] = self.discriminator_round()
        self.steps += 1
        if c.mle_every and self.steps % c.mle_every == 0:
            stats["mle_loss"] = self.pretrain_generator(1)[0]
        return stats
