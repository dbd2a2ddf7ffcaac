"""Straightforward torch implementations of the :mod:`lmobjectives.rl` kernels.

They run on any device (so a trainer whose rollouts live on the GPU can keep them there), they
are the baselines the Rust kernels are benchmarked against in the same run, and the tests hold
the two to the same numbers. Each is the vectorised-over-rows, loop-over-time form trainers
write (TRL's ``masked_whiten``, its PPO GAE loop, ``view(-1, G)`` group statistics); none is
differentiable-by-design (the bookkeeping is done under ``torch.no_grad`` in a trainer), but
nothing stops autograd from running through them.

The masked-step semantics are those of :mod:`lmobjectives.rl`: discounting moves from one
masked position to the next and unmasked positions are never read (they are replaced by 0
before use) and are 0 in the outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "completion_mask",
    "discounted_returns",
    "gae",
    "group_advantages",
    "kl_estimate",
    "whiten",
]


def completion_mask(
    ids: torch.Tensor,
    eos_token_id: int | Sequence[int],
    *,
    attention_mask: torch.Tensor | None = None,
    include_eos: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded completions (TRL's formula): the mask up to and including the first EOS
    (``& attention_mask`` when given), the last masked column (−1 when empty) and the
    truncation flags. Returns ``(mask, last, truncated)``."""
    eos = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    is_eos = torch.zeros_like(ids, dtype=torch.bool)
    for e in eos:
        is_eos |= ids == e
    b, t = ids.shape
    has = is_eos.any(dim=1)
    # a where, not first[has] = ...: boolean indexing would be a host sync on a device
    first = torch.where(has, is_eos.int().argmax(dim=1), t)
    cols = torch.arange(t, device=ids.device).expand(b, t)
    mask = cols <= first[:, None] if include_eos else cols < first[:, None]
    if attention_mask is not None:
        mask &= attention_mask.bool()
    last = torch.where(
        mask.any(dim=1), t - 1 - mask.flip(1).int().argmax(dim=1), torch.full_like(first, -1)
    )
    return mask, last, ~has


def discounted_returns(
    rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0
) -> torch.Tensor:
    """Reward-to-go over each row's masked steps (a loop over time, rows in parallel)."""
    m = mask.bool()
    r = torch.where(m, rewards, torch.zeros_like(rewards))
    out = torch.zeros_like(r)
    g = torch.zeros_like(r[:, 0]) if r.shape[1] else r.new_zeros(r.shape[0])
    for t in range(r.shape[1] - 1, -1, -1):
        g = torch.where(m[:, t], r[:, t] + gamma * g, g)
        out[:, t] = torch.where(m[:, t], g, torch.zeros_like(g))
    return out


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
    bootstrap: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over each row's masked steps, TRL PPO's loop made mask-aware: ``(advantages,
    returns)``."""
    m = mask.bool()
    zero = torch.zeros_like(rewards)
    r = torch.where(m, rewards, zero)
    v = torch.where(m, values, zero)
    b = rewards.shape[0]
    next_v = bootstrap.to(rewards) if bootstrap is not None else rewards.new_zeros(b)
    last = rewards.new_zeros(b)
    adv = torch.zeros_like(r)
    for t in range(r.shape[1] - 1, -1, -1):
        delta = r[:, t] + gamma * next_v - v[:, t]
        step = delta + gamma * lam * last
        last = torch.where(m[:, t], step, last)
        next_v = torch.where(m[:, t], v[:, t], next_v)
        adv[:, t] = torch.where(m[:, t], step, torch.zeros_like(step))
    return adv, torch.where(m, adv + v, zero)


def whiten(
    values: torch.Tensor,
    mask: torch.Tensor,
    shift_mean: bool = True,
    unbiased: bool = True,
    eps: float = 1e-8,
) -> torch.Tensor:
    """TRL's ``masked_whiten`` (Bessel-corrected variance), 0 outside the mask."""
    m = mask.to(values.dtype)
    n = m.sum()
    mean = (values * m).sum() / n
    var = (((values - mean) ** 2) * m).sum() / n
    if unbiased:
        var = var * n / (n - 1)
    out = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * m


def group_advantages(
    scores: torch.Tensor,
    group_size: int,
    baseline: str = "mean",
    scale: str = "group",
    eps: float = 1e-4,
) -> torch.Tensor:
    """GRPO/RLOO advantages with ``view(-1, G)`` statistics, as TRL computes them."""
    g = scores.view(-1, group_size)
    if baseline == "mean":
        b = g.mean(dim=1, keepdim=True).expand_as(g)
    else:
        b = (g.sum(dim=1, keepdim=True) - g) / (group_size - 1)
    adv = (g - b).reshape(-1)
    if scale == "group":
        adv = adv / (g.std(dim=1).repeat_interleave(group_size) + eps)
    elif scale == "batch":
        adv = adv / (scores.std() + eps)
    return adv


def kl_estimate(
    logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor, estimator: str = "k1"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token k1/k2/k3 (0 outside the mask) and per-row sums."""
    m = mask.bool()
    d = torch.where(m, ref_logprobs - logprobs, torch.zeros_like(logprobs))
    if estimator == "k1":
        k = -d
    elif estimator == "k2":
        k = 0.5 * d * d
    else:
        k = torch.expm1(d) - d
    k = torch.where(m, k, torch.zeros_like(k))
    return k, k.sum(dim=1)
