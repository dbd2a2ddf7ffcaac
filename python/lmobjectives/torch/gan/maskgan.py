"""MaskGAN (Fedus, Goodfellow & Dai, ICLR 2018): in-filling with an actor-critic GAN, after the
paper and ``research/maskgan/model_utils/model_losses.py``.

- Masks (:func:`make_masks`): ``"random"`` (each token present with probability
  ``present_rate`` 0.5) or ``"contiguous"`` (one missing block of ``int((1 − p)·T) − 1``
  tokens — 9 at T = 20 — starting at a random position ≥ 1). ``present`` is True where the
  token is given.
- :class:`InfillModel`: the seq2seq generator. A bidirectional LSTM encodes the masked
  sequence (missing tokens replaced by a mask id); an LSTM decoder reads the previous filled
  token and the encoder state of its position. :meth:`InfillModel.fill` copies present
  tokens and samples the missing ones, so present tokens are byte-identical to the input.
- :class:`TokenDiscriminator`: the same architecture reading the filled sequence, giving a
  per-token "real" logit for ``x̃_t`` (it sees ``x̃_{≤t}`` and the masked context);
  ``shift=True`` makes it a critic ``V(x̃_{<t})`` (the value of the state before ``x̃_t``).
- Rewards ``r_t = log D(x̃_t)`` on missing tokens only; returns
  ``R_t = Σ_{s≥t} γ^(s−t)·missing_s·r_s`` (γ = 0.9); baseline ``"critic"`` (MSE on missing
  tokens), ``"ema"`` or ``"none"``; advantages clipped to ±5; generator loss
  ``−Σ missing·A·log G`` (per missing token). MaskMLE (cross-entropy on missing tokens) is the
  pretraining.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from lmobjectives import rl
from lmobjectives.torch import rl_reference
from lmobjectives.torch.gan.models import draw_device, sample_tokens
from lmobjectives.torch.rl import aggregate, maskgan_losses, reinforce_loss

__all__ = [
    "InfillModel",
    "MaskGAN",
    "MaskGANConfig",
    "TokenDiscriminator",
    "evaluate_infill",
    "make_masks",
    "mask_mle_loss",
    "maskgan_returns",
]

_CPU = torch.device("cpu")


def make_masks(
    batch: int,
    length: int,
    *,
    kind: Literal["random", "contiguous"] = "contiguous",
    present_rate: float = 0.5,
    rng: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``present [batch, length]`` bool masks (MaskGAN's ``generate_mask``) on ``device``
    (default: ``rng``'s, else the CPU; drawn on ``rng``'s device, so a seed gives the same
    masks on every device): ``"random"`` Bernoulli(``present_rate``) per token;
    ``"contiguous"`` one missing block of ``int((1 − present_rate)·length) − 1`` tokens (at
    least 1) at a uniform start in ``[1, length − block]``."""
    if not 0 <= present_rate <= 1:
        raise ValueError(f"present_rate: must be in [0, 1], got {present_rate!r}")
    at = draw_device(rng, torch.device("cpu"))
    out = torch.device(at if device is None else device)
    if kind == "random":
        return (torch.rand(batch, length, generator=rng, device=at) < present_rate).to(out)
    if kind != "contiguous":
        raise ValueError(f"kind: 'random' or 'contiguous', got {kind!r}")
    block = max(int((1 - present_rate) * length) - 1, 1)
    if block > length - 1:
        raise ValueError(f"length: {length} too short for a block of {block} after position 0")
    start = torch.randint(1, length - block + 1, (batch,), generator=rng, device=at).to(out)
    pos = torch.arange(length, device=out)[None]
    return ~((pos >= start[:, None]) & (pos < start[:, None] + block))


class _Seq2Seq(nn.Module):
    """Encoder (bidirectional LSTM over the masked sequence) + decoder LSTM inputs."""

    def __init__(self, vocab_size: int, embedding_size: int, hidden_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.mask_id = vocab_size
        self.begin_id = vocab_size + 1
        self.embedding = nn.Embedding(vocab_size + 2, embedding_size)
        self.encoder = nn.LSTM(embedding_size, hidden_size, batch_first=True, bidirectional=True)
        self.decoder = nn.LSTM(embedding_size + 2 * hidden_size, hidden_size, batch_first=True)

    def encode(self, tokens: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        masked = torch.where(present, tokens, torch.full_like(tokens, self.mask_id))
        return self.encoder(self.embedding(masked))[0]

    def shifted(self, tokens: torch.Tensor) -> torch.Tensor:
        begin = torch.full_like(tokens[:, :1], self.begin_id)
        return torch.cat([begin, tokens[:, :-1]], dim=1)


class InfillModel(_Seq2Seq):
    """MaskGAN's generator (see the module docstring): ``forward(filled, present)`` gives
    teacher-forced logits ``[batch, T, vocab]`` for ``filled`` (column ``t`` predicts
    ``filled[:, t]``), reading the masked context of ``filled`` itself (present tokens are the
    real ones)."""

    def __init__(self, vocab_size: int, embedding_size: int = 32, hidden_size: int = 32) -> None:
        super().__init__(vocab_size, embedding_size, hidden_size)
        self.output = nn.Linear(hidden_size, vocab_size)

    def forward(self, filled: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        enc = self.encode(filled, present)
        inp = torch.cat([self.embedding(self.shifted(filled)), enc], dim=-1)
        return self.output(self.decoder(inp)[0])

    @torch.no_grad()
    def fill(
        self,
        tokens: torch.Tensor,
        present: torch.Tensor,
        *,
        temperature: float = 1.0,
        rng: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Copies ``tokens`` where ``present`` and samples the other positions left to right
        (the missing tokens of ``tokens`` are never read)."""
        if tokens.shape != present.shape:
            raise ValueError("tokens, present: shapes differ")
        enc = self.encode(tokens, present)
        out = tokens.clone()
        prev = torch.full_like(tokens[:, 0], self.begin_id)
        state = None
        for t in range(tokens.shape[1]):
            inp = torch.cat([self.embedding(prev), enc[:, t]], dim=-1)[:, None]
            h, state = self.decoder(inp, state)
            tok = sample_tokens(self.output(h[:, 0]), temperature, rng)
            out[:, t] = torch.where(present[:, t], tokens[:, t], tok)
            prev = out[:, t]
        return out


class TokenDiscriminator(_Seq2Seq):
    """Per-token logits ``[batch, T]`` for ``filled`` given its masked context: position
    ``t`` reads ``filled[:, :t+1]`` (``shift=False``: is ``x̃_t`` real?) or ``filled[:, :t]``
    (``shift=True``: a critic's value of the state before ``x̃_t``)."""

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int = 32,
        hidden_size: int = 32,
        *,
        shift: bool = False,
    ) -> None:
        super().__init__(vocab_size, embedding_size, hidden_size)
        self.shift = shift
        self.output = nn.Linear(hidden_size, 1)

    def forward(self, filled: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        enc = self.encode(filled, present)
        read = self.shifted(filled) if self.shift else filled
        inp = torch.cat([self.embedding(read), enc], dim=-1)
        return self.output(self.decoder(inp)[0]).squeeze(-1)


def token_logprobs(model: InfillModel, filled: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """``log G(x̃_t | …)`` per token ``[batch, T]``, 0 on present tokens (they are copied)."""
    logits = model(filled, present)
    lp = torch.log_softmax(logits.float(), -1).gather(-1, filled.unsqueeze(-1)).squeeze(-1)
    return torch.where(present, torch.zeros_like(lp), lp)


def mask_mle_loss(model: InfillModel, tokens: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """MaskMLE: mean cross-entropy of the real tokens on missing positions only."""
    lp = token_logprobs(model, tokens, present)
    return aggregate(-lp, ~present, "token")


def maskgan_returns(
    rewards: torch.Tensor, missing: torch.Tensor, gamma: float = 0.9
) -> torch.Tensor:
    """``R_t = Σ_{s≥t} γ^(s−t)·missing_s·r_s`` over every position (Rust kernel)."""
    r = torch.where(
        missing, rewards.detach().double(), torch.zeros_like(rewards, dtype=torch.float64)
    )
    ones = torch.ones_like(missing, dtype=torch.bool)
    if r.device.type != "cpu":  # the same recursion in torch, on the device (rl_reference)
        return rl_reference.discounted_returns(r, ones, gamma).to(rewards.dtype)
    return rl.discounted_returns(r, ones, gamma=gamma).to(rewards)


@dataclass
class MaskGANConfig:
    """MaskGAN's defaults (``train_mask_gan.py``; sizes scaled to the oracle task)."""

    batch_size: int = 64
    mask: Literal["random", "contiguous"] = "contiguous"
    present_rate: float = 0.5
    gamma: float = 0.9
    baseline: Literal["critic", "ema", "none"] = "critic"
    ema_decay: float = 0.99
    advantage_clip: float | None = 5.0
    g_lr: float = 5e-4
    d_lr: float = 5e-3
    critic_lr: float = 5e-3
    mle_lr: float = 5e-3
    grad_clip: float = 10.0
    d_steps: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.baseline not in ("critic", "ema", "none"):
            raise ValueError(f"baseline: 'critic', 'ema' or 'none', got {self.baseline!r}")
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"gamma: must be in [0, 1], got {self.gamma!r}")


class MaskGAN:
    """The MaskGAN loop: :meth:`pretrain` (MaskMLE epochs), then :meth:`step` (one generator
    REINFORCE step, ``d_steps`` discriminator steps and one critic step)."""

    def __init__(
        self,
        generator: InfillModel,
        discriminator: TokenDiscriminator,
        train: torch.Tensor,
        config: MaskGANConfig | None = None,
        critic: TokenDiscriminator | None = None,
    ) -> None:
        self.config = c = config or MaskGANConfig()
        self.generator, self.discriminator, self.train = generator, discriminator, train
        v = generator.vocab_size
        self.critic = critic
        if c.baseline == "critic" and critic is None:
            h = generator.decoder.hidden_size
            self.critic = TokenDiscriminator(v, generator.embedding.embedding_dim, h, shift=True)
        self.rng = torch.Generator().manual_seed(c.seed)
        self.g_opt = torch.optim.Adam(generator.parameters(), lr=c.g_lr)
        self.mle_opt = torch.optim.Adam(generator.parameters(), lr=c.mle_lr)
        self.d_opt = torch.optim.Adam(discriminator.parameters(), lr=c.d_lr)
        self.c_opt = (
            torch.optim.Adam(self.critic.parameters(), lr=c.critic_lr)
            if self.critic is not None
            else None
        )
        self.ema = rl.EMABaseline(c.ema_decay)

    def masks(self, n: int) -> torch.Tensor:
        c = self.config
        return make_masks(
            n,
            self.train.shape[1],
            kind=c.mask,
            present_rate=c.present_rate,
            rng=self.rng,
            device=self.train.device,
        )

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(
            0,
            self.train.shape[0],
            (self.config.batch_size,),
            generator=self.rng,
            device=draw_device(self.rng, _CPU),
        )
        x = self.train[idx.to(self.train.device)]
        return x, self.masks(x.shape[0])

    def pretrain(self, epochs: int = 1) -> list[float]:
        """MaskMLE epochs over the training set (fresh masks per batch)."""
        c = self.config
        losses = []
        for _ in range(epochs):
            order = torch.randperm(
                self.train.shape[0], generator=self.rng, device=draw_device(self.rng, _CPU)
            )
            total, n = 0.0, 0
            for s in range(0, len(order), c.batch_size):
                x = self.train[order[s : s + c.batch_size].to(self.train.device)]
                loss = mask_mle_loss(self.generator, x, self.masks(x.shape[0]))
                self.mle_opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.generator.parameters(), c.grad_clip)
                self.mle_opt.step()
                total += float(loss.detach()) * x.shape[0]
                n += x.shape[0]
            losses.append(total / n)
        return losses

    def discriminator_loss(
        self, real: torch.Tensor, fake: torch.Tensor, present: torch.Tensor
    ) -> torch.Tensor:
        """(BCE(D(real), 1) + BCE(D(fake), 0)) / 2 over missing positions only."""
        missing = ~present
        lr = F.binary_cross_entropy_with_logits(
            self.discriminator(real, present),
            real.new_ones(real.shape, dtype=torch.float32),
            reduction="none",
        )
        lf = F.binary_cross_entropy_with_logits(
            self.discriminator(fake, present),
            fake.new_zeros(fake.shape, dtype=torch.float32),
            reduction="none",
        )
        return (aggregate(lr, missing, "token") + aggregate(lf, missing, "token")) / 2

    def rewards(self, fake: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """``log D(x̃_t)`` on missing tokens, 0 on present ones."""
        with torch.no_grad():
            r = F.logsigmoid(self.discriminator(fake, present))
        return torch.where(present, torch.zeros_like(r), r)

    def generator_losses(
        self, fake: torch.Tensor, present: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The generator's REINFORCE loss (and the critic's) for in-fills ``fake``."""
        c = self.config
        missing = ~present
        lp = token_logprobs(self.generator, fake, present)
        r = self.rewards(fake, present)
        if c.baseline == "critic":
            assert self.critic is not None
            values = torch.where(present, torch.zeros_like(r), self.critic(fake, present))
            gen, critic, adv = maskgan_losses(
                lp, r, values, missing, gamma=c.gamma, advantage_clip=c.advantage_clip
            )
            return {
                "generator": gen,
                "critic": critic,
                "advantages": adv,
                "rewards": r,
                "logprobs": lp,
            }
        ret = maskgan_returns(r, missing, c.gamma)
        if c.baseline == "ema":
            adv = self.ema(ret.double().cpu(), missing.cpu()).to(ret)
        else:
            adv = torch.where(missing, ret, torch.zeros_like(ret))
        if c.advantage_clip is not None:
            adv = adv.clamp(-c.advantage_clip, c.advantage_clip)
        gen = reinforce_loss(lp, adv, missing, normalize="token")
        return {"generator": gen, "advantages": adv, "rewards": r, "logprobs": lp}

    def step(self) -> dict[str, float]:
        c = self.config
        x, present = self._batch()
        self.generator.eval()
        fake = self.generator.fill(x, present, rng=self.rng)
        self.generator.train()
        out = self.generator_losses(fake, present)
        self.g_opt.zero_grad()
        out["generator"].backward()
        nn.utils.clip_grad_norm_(self.generator.parameters(), c.grad_clip)
        self.g_opt.step()
        stats = {
            "g_loss": float(out["generator"].detach()),
            "reward": float(out["rewards"][~present].mean()),
        }
        if "critic" in out and self.c_opt is not None:
            self.c_opt.zero_grad()
            out["critic"].backward()
            self.c_opt.step()
            stats["critic_loss"] = float(out["critic"].detach())
        for _ in range(c.d_steps):
            loss = self.discriminator_loss(x, fake, present)
            self.d_opt.zero_grad()
            loss.backward()
            self.d_opt.step()
            stats["d_loss"] = float(loss.detach())
        return stats


@torch.no_grad()
def evaluate_infill(
    generator: InfillModel,
    oracle: Any,
    test: torch.Tensor,
    *,
    temperature: float = 1.0,
    kind: Literal["random", "contiguous"] = "contiguous",
    present_rate: float = 0.5,
    seed: int = 54321,
) -> dict[str, float]:
    """In-filling metrics on held-out ``test`` with seeded masks: ``nll_oracle`` (the oracle's
    NLL of the in-filled tokens, per missing token), ``nll_test`` (the generator's NLL of the
    real missing tokens), ``entropy`` (its NLL of its own in-fills) and ``unique`` (distinct
    in-filled sequences)."""
    rng = torch.Generator().manual_seed(seed)
    present = make_masks(
        test.shape[0], test.shape[1], kind=kind, present_rate=present_rate, rng=rng
    )
    missing = ~present
    was = generator.training
    generator.eval()
    fake = generator.fill(test, present, temperature=temperature, rng=rng)
    n = float(missing.sum())

    def nll(tokens: torch.Tensor) -> float:
        lp = torch.log_softmax(generator(tokens, present).float() / temperature, -1)
        return float(-(lp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) * missing).sum()) / n

    out = {
        "nll_oracle": float(-(oracle.token_log_probs(fake) * missing).sum()) / n,
        "nll_test": nll(test),
        "entropy": nll(fake),
        "unique": len({tuple(r) for r in fake.tolist()}) / fake.shape[0],
    }
    generator.train(was)
    return out
