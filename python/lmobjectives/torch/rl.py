"""Torch side of the sequence-level RL objectives: log-probabilities, policy-gradient and
preference losses, a value head for any causal LM, and the training steps built from them.

Every loss takes already-computed advantages (from :mod:`lmobjectives.rl`, or
:mod:`lmobjectives.torch.rl_reference` on other devices), so baselines mix freely. All
operations are differentiable where they should be (advantages, weights and targets are
detached) and device-agnostic.

**Alignment.** Per-token tensors are ``[batch, seq]`` and aligned with ``input_ids``: column
``t`` holds the quantity for the token ``input_ids[:, t]`` — its log-probability
``log π(x_t | x_<t)`` (:func:`causal_logprobs`), the value of the state it was chosen in
(:class:`ValueHeadModel`), its advantage — so the completion mask of
:func:`lmobjectives.rl.completion_mask` selects them directly, whatever the padding side.

**Normalisation** (``normalize=``) of a per-token loss ``ℓ [batch, seq]`` with mask ``m``:

=============  ===================================  ===========================================
name           value                                TRL ``loss_type``
=============  ===================================  ===========================================
``"token"``    ``Σ ℓ·m / Σ m``                      ``"bnpo"``; ``"dapo"`` (the GRPO default)
                                                    with ``num_tokens=`` the global count
``"sequence"`` ``mean_b (Σ_t ℓ·m / Σ_t m)``         ``"grpo"`` (length-biased)
``"constant"`` ``Σ ℓ·m / constant`` (default         ``"dr_grpo"`` with ``B·max_completion_len``
               ``batch·seq``)
``"sum"``      ``Σ ℓ·m``                            SeqGAN's generator loss
=============  ===================================  ===========================================

Defaults follow TRL: PPO clip 0.2, value clip 0.2, value coefficient 0.1, KL coefficient 0.05
in the reward (k1); GRPO β = 0 (k3 in the loss when β > 0); DPO β = 0.1, sigmoid loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from lmobjectives.torch._checks import check_token_ids

__all__ = [
    "BTLoss",
    "DPOLoss",
    "PolicyLoss",
    "TinyDecoder",
    "TinyDecoderConfig",
    "ValueHeadModel",
    "ValueHeadOutput",
    "aggregate",
    "bradley_terry_loss",
    "causal_logprobs",
    "clipped_surrogate_loss",
    "dpo_loss",
    "irl_advantages",
    "irl_generator_loss",
    "irl_importance_weights",
    "kl_penalty",
    "logprobs_from_hidden",
    "masked_mean",
    "maskgan_losses",
    "maxent_irl_reward_loss",
    "policy_loss",
    "position_ids_from_attention_mask",
    "ppo_step",
    "reinforce_loss",
    "scst_loss",
    "sequence_logprobs",
    "token_entropy",
    "token_logprobs",
    "value_loss",
]

Normalize = Literal["token", "sequence", "constant", "sum"]

#: Elements of one chunk of logits (rows × vocab) processed at a time: 2^24 floats = 64 MiB.
CHUNK_ELEMENTS = 1 << 24


# -- log-probabilities -------------------------------------------------------------------------


def _rows_per_chunk(vocab: int, chunk_size: int | None) -> int:
    if chunk_size is None:
        return max(1, CHUNK_ELEMENTS // max(vocab, 1))
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive int or None, got {chunk_size!r}")
    return chunk_size


def _check_temperature(temperature: float) -> float:
    t = float(temperature)
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"temperature: must be a finite number > 0, got {temperature!r}")
    return t


def token_logprobs(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    *,
    chunk_size: int | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """``log softmax(logits / temperature)[tokens]`` for ``logits [..., vocab]`` and
    ``tokens [...]``, without a full-vocabulary log-softmax copy of the whole batch: rows are
    processed ``chunk_size`` at a time (default: 64 MiB of float32 logits per chunk) as
    ``logit[token] − logsumexp(logits)``, in float32 at least (bf16/fp16 logits are upcast one
    chunk at a time). Equal to ``logits.log_softmax(-1).gather(-1, tokens[..., None])`` up to
    rounding, and differentiable."""
    if logits.dim() < 1 or tokens.shape != logits.shape[:-1]:
        raise ValueError(
            f"tokens: shape {tuple(tokens.shape)} does not match logits {tuple(logits.shape)} "
            "without its vocabulary dimension"
        )
    if tokens.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"tokens: expected an integer tensor, got {tokens.dtype}")
    t = _check_temperature(temperature)
    vocab = logits.shape[-1]
    flat = logits.reshape(-1, vocab)
    idx = tokens.reshape(-1).long()
    check_token_ids(tokens, vocab, "tokens")  # CPU only: elsewhere it would be a host sync
    dtype = torch.promote_types(logits.dtype, torch.float32)
    step = _rows_per_chunk(vocab, chunk_size)
    parts = []
    for i in range(0, flat.shape[0], step):
        chunk = flat[i : i + step].to(dtype)
        if t != 1.0:
            chunk = chunk / t
        picked = chunk.gather(-1, idx[i : i + step, None]).squeeze(-1)
        parts.append(picked - torch.logsumexp(chunk, dim=-1))
    out = torch.cat(parts) if parts else flat.new_zeros(0, dtype=dtype)
    return out.reshape(tokens.shape)


def causal_logprobs(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    *,
    chunk_size: int | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """``out[:, t] = log π(input_ids[:, t] | input_ids[:, :t])`` from a causal LM's logits
    ``[batch, seq, vocab]`` (``logits[:, t]`` predicts token ``t + 1``); column 0 is 0. The
    result lines up with ``input_ids`` and so with its completion mask."""
    if logits.dim() != 3 or logits.shape[:2] != input_ids.shape:
        raise ValueError(
            f"logits: expected [batch, seq, vocab] matching input_ids {tuple(input_ids.shape)}, "
            f"got {tuple(logits.shape)}"
        )
    lp = token_logprobs(
        logits[:, :-1], input_ids[:, 1:], chunk_size=chunk_size, temperature=temperature
    )
    return F.pad(lp, (1, 0))


def logprobs_from_hidden(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    tokens: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    chunk_size: int | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """``log softmax(hidden @ weightᵀ + bias)[tokens]`` without ever holding the logits of the
    whole batch, forward or backward: each chunk of rows computes its logits, keeps only the
    picked log-probability, and is recomputed in the backward pass (activation
    checkpointing). ``hidden [..., H]``, ``weight [vocab, H]`` (an LM head's), ``tokens
    [...]``. Peak extra memory: one chunk of logits instead of ``[batch, seq, vocab]``."""
    if hidden.shape[:-1] != tokens.shape:
        raise ValueError(
            f"tokens: shape {tuple(tokens.shape)} does not match hidden {tuple(hidden.shape)}"
        )
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[-1]:
        raise ValueError(f"weight: expected [vocab, {hidden.shape[-1]}], got {tuple(weight.shape)}")
    t = _check_temperature(temperature)
    vocab = weight.shape[0]
    h = hidden.reshape(-1, hidden.shape[-1])
    idx = tokens.reshape(-1).long()
    check_token_ids(tokens, vocab, "tokens")  # CPU only: elsewhere it would be a host sync
    step = _rows_per_chunk(vocab, chunk_size)

    def piece(hc: torch.Tensor, w: torch.Tensor, ic: torch.Tensor) -> torch.Tensor:
        logits = F.linear(hc, w, bias).float()
        if t != 1.0:
            logits = logits / t
        return logits.gather(-1, ic[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)

    parts = []
    for i in range(0, h.shape[0], step):
        hc, ic = h[i : i + step], idx[i : i + step]
        if torch.is_grad_enabled() and (hc.requires_grad or weight.requires_grad):
            parts.append(checkpoint(piece, hc, weight, ic, use_reentrant=False))
        else:
            parts.append(piece(hc, weight, ic))
    out = torch.cat(parts) if parts else h.new_zeros(0, dtype=torch.float32)
    return out.reshape(tokens.shape)


def token_entropy(logits: torch.Tensor, *, chunk_size: int | None = None) -> torch.Tensor:
    """Entropy of each position's distribution, ``[...]`` from ``logits [..., vocab]``,
    computed a chunk of rows at a time (float32 at least). Differentiable."""
    vocab = logits.shape[-1]
    flat = logits.reshape(-1, vocab)
    dtype = torch.promote_types(logits.dtype, torch.float32)
    step = _rows_per_chunk(vocab, chunk_size)
    parts = []
    for i in range(0, flat.shape[0], step):
        chunk = flat[i : i + step].to(dtype)
        logp = chunk.log_softmax(-1)
        parts.append(-(logp.exp() * logp).sum(-1))
    out = torch.cat(parts) if parts else flat.new_zeros(0, dtype=dtype)
    return out.reshape(logits.shape[:-1])


def sequence_logprobs(token_lp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``Σ_t log π(x_t)`` over each row's mask (DPO's summed completion log-probabilities)."""
    _check_pair(token_lp, mask, "token_lp")
    return (token_lp * mask.to(token_lp.dtype)).sum(-1)


# -- normalisation -----------------------------------------------------------------------------


def _check_pair(x: torch.Tensor, mask: torch.Tensor, name: str) -> None:
    if x.dim() != 2:
        raise ValueError(f"{name}: expected [batch, seq], got shape {tuple(x.shape)}")
    if mask.shape != x.shape:
        raise ValueError(f"mask: shape {tuple(mask.shape)} does not match {name} {tuple(x.shape)}")


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over ``mask`` (0 with a gradient when the mask is empty)."""
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp(min=1.0)


def aggregate(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    normalize: Normalize = "token",
    *,
    constant: float | None = None,
    num_tokens: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """A per-token loss ``[batch, seq]`` reduced to a scalar by ``normalize`` (module docstring
    table). ``num_tokens`` replaces the local token count of ``"token"`` (TRL's "dapo": the
    active tokens of the whole accumulated/distributed batch); ``constant`` the ``batch·seq``
    of ``"constant"``. Empty masks give 0 (with a gradient), never NaN."""
    _check_pair(per_token, mask, "per_token")
    m = mask.to(per_token.dtype)
    total = per_token * m
    if normalize == "token":
        n = m.sum() if num_tokens is None else torch.as_tensor(num_tokens, dtype=m.dtype)
        return total.sum() / n.clamp(min=1.0)
    if normalize == "sequence":
        per_row = total.sum(-1) / m.sum(-1).clamp(min=1.0)
        return per_row.mean() if per_row.numel() else total.sum()
    if normalize == "constant":
        c = float(per_token.numel()) if constant is None else float(constant)
        if not (math.isfinite(c) and c > 0):
            raise ValueError(f"constant: must be a finite number > 0, got {constant!r}")
        return total.sum() / c
    if normalize == "sum":
        return total.sum()
    raise ValueError(
        f"normalize: must be one of ['token', 'sequence', 'constant', 'sum'], got {normalize!r}"
    )


def _per_token_advantages(advantages: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    a = advantages.detach().to(like.dtype)
    if a.dim() == 1:
        if a.shape[0] != like.shape[0]:
            raise ValueError(
                f"advantages: {a.shape[0]} sequence advantages for {like.shape[0]} rows"
            )
        return a[:, None].expand_as(like)
    if a.shape != like.shape:
        raise ValueError(
            f"advantages: shape {tuple(a.shape)} matches neither [batch] nor {tuple(like.shape)}"
        )
    return a


# -- policy-gradient losses --------------------------------------------------------------------


def reinforce_loss(
    logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    normalize: Normalize = "token",
    **kwargs: Any,
) -> torch.Tensor:
    """REINFORCE with any baseline: ``−Σ_t stopgrad(A_t)·log π(a_t|s_t)``, normalised.

    ``advantages`` is ``[batch]`` (one per sequence: ``G − b``) or ``[batch, seq]`` (reward-to-
    go minus a baseline); build it with :mod:`lmobjectives.rl` (group, SCST, EMA, critic). No
    baseline at all (SeqGAN) is ``advantages = reward`` with ``normalize="sum"``."""
    _check_pair(logprobs, mask, "logprobs")
    a = _per_token_advantages(advantages, logprobs)
    return aggregate(-a * logprobs, mask, normalize, **kwargs)


def scst_loss(
    logprobs: torch.Tensor,
    mask: torch.Tensor,
    sample_scores: torch.Tensor,
    greedy_scores: torch.Tensor,
    *,
    normalize: Normalize = "token",
) -> torch.Tensor:
    """Self-critical sequence training (Rennie et al. 2017; ruotianluo's ``RewardCriterion``):
    REINFORCE with ``A = r(sample) − r(greedy)`` on every token of the sample, summed over the
    mask and divided by its size. ``greedy_scores`` has one score per sample or per group of
    consecutive samples of one input."""
    s = sample_scores.detach()
    g = greedy_scores.detach()
    if s.dim() != 1 or g.dim() != 1 or g.numel() == 0 or s.numel() % g.numel():
        raise ValueError(
            f"greedy_scores: {tuple(g.shape)} does not split sample_scores {tuple(s.shape)} "
            "into equal groups"
        )
    a = s - g.repeat_interleave(s.numel() // g.numel())
    return reinforce_loss(logprobs, a, mask, normalize=normalize)


def kl_penalty(
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    estimator: Literal["k1", "k2", "k3"] = "k3",
) -> torch.Tensor:
    """Per-token KL estimate, differentiable in ``logprobs`` (``ref_logprobs`` is detached):
    ``k1 = log π − log π_ref``, ``k2 = ½(log π − log π_ref)²``,
    ``k3 = exp(log π_ref − log π) − (log π_ref − log π) − 1``.

    As a *loss* term under samples from π (GRPO's "KL in the loss"), the gradient of k2 is the
    gradient of KL(π ‖ π_ref); k3's is that of the *reverse* KL(π_ref ‖ π) (its fixed point
    differs from π_ref·exp(r/β)/Z — see the tests); k1's has expectation 0 (no
    regularisation). In the *reward* (PPO/RLOO, :func:`lmobjectives.rl.token_rewards`) all
    three estimate KL(π ‖ π_ref)."""
    d = ref_logprobs.detach() - logprobs
    if estimator == "k1":
        return -d
    if estimator == "k2":
        return 0.5 * d * d
    if estimator == "k3":
        return torch.expm1(d) - d
    raise ValueError(f"estimator: must be 'k1', 'k2' or 'k3', got {estimator!r}")


class PolicyLoss(NamedTuple):
    """A policy loss and what to log about it."""

    loss: torch.Tensor
    pg_loss: torch.Tensor
    kl: torch.Tensor
    """Normalised in-loss KL term (0 without a reference)."""
    clip_fraction: torch.Tensor
    """Share of masked tokens (or sequences) where the clip was active."""
    ratio_mean: torch.Tensor
    approx_kl: torch.Tensor
    """``½·mean((log π − log π_old)²)`` over the mask."""


def clipped_surrogate_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float | None = None,
    level: Literal["token", "sequence", "sequence_mean"] = "token",
    normalize: Normalize = "token",
    **kwargs: Any,
) -> PolicyLoss:
    """PPO's clipped surrogate ``max(−A·ρ, −A·clip(ρ, 1 − ε_low, 1 + ε_high))``.

    ``level="token"`` (PPO, GRPO): ``ρ_t = π(a_t)/π_old(a_t)`` per token.
    ``"sequence"`` (TRL RLOO): one ``ρ = exp(Σ_t log π − Σ_t log π_old)`` per sequence.
    ``"sequence_mean"`` (GSPO, TRL GRPO ``importance_sampling_level="sequence"``): the
    length-normalised ``exp(mean_t(log π − log π_old))``. A sequence ratio's loss is spread
    over its tokens and then normalised like a token loss (``normalize="sequence"`` gives the
    plain mean over sequences). ``clip_high`` defaults to ``clip_low`` (DAPO's asymmetric clip:
    0.2/0.28). ``old_logprobs`` and ``advantages`` are detached."""
    _check_pair(logprobs, mask, "logprobs")
    if old_logprobs.shape != logprobs.shape:
        raise ValueError(
            f"old_logprobs: shape {tuple(old_logprobs.shape)} does not match logprobs "
            f"{tuple(logprobs.shape)}"
        )
    lo = float(clip_low)
    hi = lo if clip_high is None else float(clip_high)
    if not (0 <= lo < 1 and hi >= 0 and math.isfinite(hi)):
        raise ValueError(
            f"clip_low, clip_high: need 0 <= clip_low < 1 and clip_high >= 0, got {lo}, {hi}"
        )
    m = mask.to(logprobs.dtype)
    a = _per_token_advantages(advantages, logprobs)
    diff = (logprobs - old_logprobs.detach()) * m
    if level == "token":
        log_ratio = diff
    elif level == "sequence":
        log_ratio = diff.sum(-1, keepdim=True).expand_as(diff)
    elif level == "sequence_mean":
        log_ratio = (diff.sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp(min=1.0)).expand_as(
            diff
        )
    else:
        raise ValueError(f"level: must be 'token', 'sequence' or 'sequence_mean', got {level!r}")
    ratio = torch.exp(log_ratio)
    clipped = torch.clamp(ratio, 1.0 - lo, 1.0 + hi)
    unclipped_loss, clipped_loss = -a * ratio, -a * clipped
    per_token = torch.maximum(unclipped_loss, clipped_loss)
    pg = aggregate(per_token, mask, normalize, **kwargs)
    with torch.no_grad():
        active = (clipped_loss > unclipped_loss).to(logprobs.dtype)
        stats = (
            masked_mean(active, mask),
            masked_mean(ratio, mask),
            0.5 * masked_mean(diff**2, mask),
        )
    zero = pg.new_zeros(())
    return PolicyLoss(pg, pg, zero, *stats)


def policy_loss(
    logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    old_logprobs: torch.Tensor | None = None,
    ref_logprobs: torch.Tensor | None = None,
    beta: float = 0.0,
    kl_estimator: Literal["k1", "k2", "k3"] = "k3",
    clip_low: float = 0.2,
    clip_high: float | None = None,
    level: Literal["token", "sequence", "sequence_mean"] = "token",
    normalize: Normalize = "token",
    **kwargs: Any,
) -> PolicyLoss:
    """The GRPO/PPO/RLOO policy loss: clipped surrogate plus ``β``·(per-token KL to the
    reference) *in the loss*, both normalised by ``normalize``.

    Without ``old_logprobs`` the samples are taken to come from the current policy
    (``π_old = stopgrad(π)``, TRL's ``num_iterations=1``): ρ = 1 and the gradient is exactly
    REINFORCE's. Defaults are TRL GRPO's (β = 0, ε = 0.2, token-level ratio); with β = 0 and
    group advantages that sum to 0 the loss is exactly 0 at the first step (TRL #2703)."""
    old = logprobs.detach() if old_logprobs is None else old_logprobs
    out = clipped_surrogate_loss(
        logprobs,
        old,
        advantages,
        mask,
        clip_low=clip_low,
        clip_high=clip_high,
        level=level,
        normalize=normalize,
        **kwargs,
    )
    b = float(beta)
    if not (math.isfinite(b) and b >= 0):
        raise ValueError(f"beta: must be a finite number >= 0, got {beta!r}")
    if b == 0.0:
        return out
    if ref_logprobs is None:
        raise ValueError("ref_logprobs: needed when beta > 0")
    kl = aggregate(kl_penalty(logprobs, ref_logprobs, kl_estimator), mask, normalize, **kwargs)
    return out._replace(loss=out.pg_loss + b * kl, kl=kl.detach())


def value_loss(
    values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    *,
    old_values: torch.Tensor | None = None,
    clip: float | None = 0.2,
    normalize: Normalize = "token",
) -> torch.Tensor:
    """``½·max((V − R)², (clip(V, V_old ± clip) − R)²)``, normalised (TRL PPO, clip 0.2);
    ``clip=None`` or no ``old_values``: ``½(V − R)²``. ``returns`` and ``old_values`` are
    detached."""
    _check_pair(values, mask, "values")
    r = returns.detach()
    loss = (values - r) ** 2
    if clip is not None and old_values is not None:
        old = old_values.detach()
        vc = old + torch.clamp(values - old, -float(clip), float(clip))
        loss = torch.maximum(loss, (vc - r) ** 2)
    return 0.5 * aggregate(loss, mask, normalize)


# -- preferences -------------------------------------------------------------------------------


class BTLoss(NamedTuple):
    loss: torch.Tensor
    accuracy: torch.Tensor
    """Share of pairs with ``r_chosen > r_rejected``."""
    margin: torch.Tensor
    """Mean ``r_chosen − r_rejected``."""


def bradley_terry_loss(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    *,
    margin: torch.Tensor | float | None = None,
    center_rewards_coefficient: float | None = None,
) -> BTLoss:
    """Reward-model loss ``−mean log σ(r_c − r_r − margin)`` (Bradley–Terry MLE; TRL
    ``RewardTrainer``), plus ``coef·mean((r_c + r_r)²)`` when ``center_rewards_coefficient``
    is set (TRL recommends 0.01; off by default) to pin the free per-prompt constant."""
    if chosen_rewards.shape != rejected_rewards.shape:
        raise ValueError(
            f"rejected_rewards: shape {tuple(rejected_rewards.shape)} does not match "
            f"chosen_rewards {tuple(chosen_rewards.shape)}"
        )
    diff = chosen_rewards - rejected_rewards
    if margin is not None:
        diff = diff - torch.as_tensor(margin, dtype=diff.dtype, device=diff.device)
    loss = -F.logsigmoid(diff).mean()
    if center_rewards_coefficient:
        loss = (
            loss
            + float(center_rewards_coefficient) * ((chosen_rewards + rejected_rewards) ** 2).mean()
        )
    with torch.no_grad():
        d = chosen_rewards - rejected_rewards
        acc, mean_margin = (d > 0).float().mean(), d.float().mean()
    return BTLoss(loss, acc, mean_margin)


class DPOLoss(NamedTuple):
    loss: torch.Tensor
    """Mean of :attr:`losses`."""
    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    """Implicit rewards ``β(log π − log π_ref)`` of the chosen completions (detached)."""
    rejected_rewards: torch.Tensor


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    loss_type: Literal["sigmoid", "ipo"] = "sigmoid",
    label_smoothing: float = 0.0,
    reference_free: bool = False,
) -> DPOLoss:
    """DPO (Rafailov et al. 2023) on **summed** completion log-probabilities
    (:func:`sequence_logprobs`), as the reference implementation's ``preference_loss``:
    ``h = (log π_c − log π_r) − (log π_ref,c − log π_ref,r)``;

    - ``"sigmoid"``: ``−(1 − ε)·log σ(βh) − ε·log σ(−βh)`` (ε = ``label_smoothing``:
      conservative DPO; 0 = plain DPO);
    - ``"ipo"``: ``(h − 1/(2β))²``.

    ``reference_free`` drops the reference terms. β = 0.1 is TRL's default (the paper's code
    has none: 0.1–0.5 is its advice). At the optimum of the KL-regularised objective,
    ``π = π_ref·exp(r/β)/Z``."""
    b = float(beta)
    if not (math.isfinite(b) and b > 0):
        raise ValueError(f"beta: must be a finite number > 0, got {beta!r}")
    eps = float(label_smoothing)
    if not 0.0 <= eps < 0.5:
        raise ValueError(f"label_smoothing: must be in [0, 0.5), got {label_smoothing!r}")
    shapes = {
        tuple(x.shape)
        for x in (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    }
    if len(shapes) != 1:
        raise ValueError(f"dpo_loss: the four log-probability tensors differ in shape: {shapes}")
    ref_c, ref_r = ref_chosen_logps.detach(), ref_rejected_logps.detach()
    pi = policy_chosen_logps - policy_rejected_logps
    ref = torch.zeros_like(pi) if reference_free else ref_c - ref_r
    h = pi - ref
    if loss_type == "sigmoid":
        losses = -(1 - eps) * F.logsigmoid(b * h) - eps * F.logsigmoid(-b * h)
    elif loss_type == "ipo":
        losses = (h - 1 / (2 * b)) ** 2
    else:
        raise ValueError(f"loss_type: must be 'sigmoid' or 'ipo', got {loss_type!r}")
    chosen = b * (policy_chosen_logps - (0 if reference_free else ref_c)).detach()
    rejected = b * (policy_rejected_logps - (0 if reference_free else ref_r)).detach()
    return DPOLoss(losses.mean(), losses, chosen, rejected)


# -- inverse RL (Shi et al. 2018) --------------------------------------------------------------


def irl_importance_weights(fake_rewards: torch.Tensor, fake_logq: torch.Tensor) -> torch.Tensor:
    """Self-normalised importance weights of generator samples for the MaxEnt partition
    function: ``w_j = softmax_j(R(x_j) − log q(x_j))`` (detached; they sum to 1)."""
    if fake_rewards.shape != fake_logq.shape or fake_rewards.dim() != 1:
        raise ValueError(
            f"fake_logq: expected shape {tuple(fake_rewards.shape)} (one per sample), "
            f"got {tuple(fake_logq.shape)}"
        )
    return torch.softmax((fake_rewards - fake_logq).detach().float(), dim=0).to(fake_rewards.dtype)


def maxent_irl_reward_loss(
    real_rewards: torch.Tensor, fake_rewards: torch.Tensor, fake_logq: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reward approximator's MaxEnt IRL loss (Shi et al. 2018, ``rewarder.py``):
    ``−mean_data R(x) + Σ_j w_j R(x'_j)`` with the self-normalised weights of
    :func:`irl_importance_weights` on generator samples ``x'_j ~ q``; its gradient is
    ``−(E_data[∇R] − E_{p_φ}[∇R])``. ``R`` are sequence rewards (sums of per-token rewards).
    Add the L2 term (1e-5 in the paper's code) through the optimiser's weight decay. Returns
    ``(loss, weights)``."""
    if real_rewards.dim() != 1:
        raise ValueError(f"real_rewards: expected [batch], got {tuple(real_rewards.shape)}")
    w = irl_importance_weights(fake_rewards, fake_logq)
    return -real_rewards.mean() + (w * fake_rewards).sum(), w


def irl_advantages(
    q_values: torch.Tensor,
    logq: torch.Tensor,
    mask: torch.Tensor,
    *,
    entropy_weight: float = 0.09,
    baseline: float = 0.0,
) -> torch.Tensor:
    """The entropy-regularised advantage of Shi et al. (``generator.py``):
    ``Â_t = Q̂_t − w·Σ_{i≥t} log q(a_i) − b`` over each row's masked steps (detached), where
    ``Q̂_t`` is the (MC) reward-to-go and the second term the sample's future surprisal. The
    paper's code uses ``w`` = 0.09 and ``b = 0``."""
    _check_pair(q_values, mask, "q_values")
    m = mask.to(q_values.dtype)
    lq = logq.detach().to(q_values.dtype) * m
    future = lq.flip(-1).cumsum(-1).flip(-1)
    return ((q_values.detach() - float(entropy_weight) * future - float(baseline)) * m).detach()


def irl_generator_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    q_values: torch.Tensor,
    mask: torch.Tensor,
    *,
    entropy_weight: float = 0.09,
    clip: float = 0.2,
    normalize: Normalize = "token",
) -> PolicyLoss:
    """The generator step of Shi et al.: the clipped surrogate (ratio clipped to
    ``[0.8, 1.2]``) with the entropy-regularised advantages of :func:`irl_advantages`
    computed from the sampling policy's log-probabilities ``old_logprobs``."""
    adv = irl_advantages(q_values, old_logprobs, mask, entropy_weight=entropy_weight)
    return clipped_surrogate_loss(
        logprobs, old_logprobs, adv, mask, clip_low=clip, normalize=normalize
    )


# -- MaskGAN critic baseline -------------------------------------------------------------------


def maskgan_losses(
    logprobs: torch.Tensor,
    rewards: torch.Tensor,
    values: torch.Tensor,
    missing: torch.Tensor,
    *,
    gamma: float = 0.9,
    advantage_clip: float | None = 5.0,
    normalize: Normalize = "token",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MaskGAN's REINFORCE with a critic baseline (``model_losses.py``, γ = 0.9, advantages
    clipped to ±5): rewards count only on ``missing`` (in-filled) tokens;
    ``R_t = Σ_{s≥t} γ^(s−t)·missing_s·r_s`` over every position; ``A_t = clip(R_t − V_t)``;
    the generator loss ``−A·log G`` and the critic's ``(R_t − V_t)²`` are taken on missing
    tokens only. Returns ``(generator_loss, critic_loss, advantages)``."""
    _check_pair(logprobs, missing, "logprobs")
    g = float(gamma)
    if not (math.isfinite(g) and 0 <= g <= 1):
        raise ValueError(f"gamma: must be in [0, 1], got {gamma!r}")
    miss = missing.bool()
    r = torch.where(miss, rewards.detach().to(logprobs.dtype), torch.zeros_like(logprobs))
    ret = torch.zeros_like(r)
    run = torch.zeros_like(r[:, 0])
    for t in range(r.shape[1] - 1, -1, -1):
        run = r[:, t] + g * run
        ret[:, t] = run
    adv = ret - values.detach()
    if advantage_clip is not None:
        adv = adv.clamp(-float(advantage_clip), float(advantage_clip))
    gen = reinforce_loss(logprobs, adv, miss, normalize=normalize)
    critic = aggregate((values - ret) ** 2, miss, normalize)
    return gen, critic, torch.where(miss, adv, torch.zeros_like(adv))


# -- models: value head, tiny decoder ----------------------------------------------------------


def position_ids_from_attention_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only (``cumsum(mask) − 1``, 0 on padding), so a
    left-padded row gets the positions it would have unpadded."""
    m = attention_mask.long()
    return (m.cumsum(-1) - 1).clamp(min=0) * m


class ValueHeadOutput(NamedTuple):
    logits: torch.Tensor
    """``[batch, seq, vocab]`` as the model returns them."""
    values: torch.Tensor
    """``[batch, seq]``: ``values[:, t]`` is the value of the state in which token ``t`` was
    chosen (computed from the hidden state at ``t − 1``; column 0 is 0), aligned like
    :func:`causal_logprobs`."""
    hidden_states: torch.Tensor
    """The last layer's hidden states ``[batch, seq, hidden]``."""


class ValueHeadModel(nn.Module):
    """Any causal LM with a scalar value head on its last hidden layer (actor and critic
    sharing a body, as TRL's ``AutoModelForCausalLMWithValueHead``).

    The model must accept ``input_ids``, ``attention_mask``, ``position_ids`` and
    ``output_hidden_states=True`` and return an object with ``.logits`` and
    ``.hidden_states`` — transformers causal LMs (e.g. ``GPT2LMHeadModel``) and
    :class:`TinyDecoder` do. With an attention mask, position ids are computed from it
    (:func:`position_ids_from_attention_mask`), so left and right padding give the same
    numbers on real tokens.
    """

    def __init__(self, model: nn.Module, hidden_size: int | None = None) -> None:
        super().__init__()
        self.model = model
        if hidden_size is None:
            config = getattr(model, "config", None)
            hidden_size = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)
        if not isinstance(hidden_size, int):
            raise ValueError("hidden_size: cannot read it from model.config; pass it")
        self.value_head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> ValueHeadOutput:
        if position_ids is None and attention_mask is not None:
            position_ids = position_ids_from_attention_mask(attention_mask)
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_hidden_states=True,
        )
        hidden = out.hidden_states[-1]
        v = self.value_head(hidden).squeeze(-1)
        return ValueHeadOutput(out.logits, F.pad(v[:, :-1], (1, 0)), hidden)


@dataclass
class TinyDecoderConfig:
    vocab_size: int = 64
    hidden_size: int = 32
    num_layers: int = 2
    num_heads: int = 2
    max_positions: int = 128


class _TinyOutput(NamedTuple):
    logits: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...]


class _Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).unbind(2)
        att = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=allowed
        )
        x = x + self.proj(att.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class TinyDecoder(nn.Module):
    """A small pre-LN causal transformer LM (tied embeddings, learned positions) with the
    transformers call convention, for tests and CPU experiments. Padding (``attention_mask``
    0) is never attended to by real tokens; positions come from ``position_ids``."""

    def __init__(self, config: TinyDecoderConfig | None = None) -> None:
        super().__init__()
        self.config = config or TinyDecoderConfig()
        c = self.config
        if c.hidden_size % c.num_heads:
            raise ValueError("hidden_size: must be a multiple of num_heads")
        self.embed = nn.Embedding(c.vocab_size, c.hidden_size)
        self.pos = nn.Embedding(c.max_positions, c.hidden_size)
        self.blocks = nn.ModuleList(_Block(c.hidden_size, c.num_heads) for _ in range(c.num_layers))
        self.norm = nn.LayerNorm(c.hidden_size)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> _TinyOutput:
        b, t = input_ids.shape
        if t > self.config.max_positions:
            raise ValueError(
                f"input_ids: {t} positions > max_positions={self.config.max_positions}"
            )
        if position_ids is None:
            position_ids = torch.arange(t, device=input_ids.device).expand(b, t)
        x = self.embed(input_ids) + self.pos(position_ids)
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        allowed = causal.expand(b, 1, t, t)
        if attention_mask is not None:
            real = attention_mask.bool()[:, None, None, :]
            eye = torch.eye(t, dtype=torch.bool, device=x.device)
            allowed = allowed & (real | eye)  # padding queries see themselves: no NaN rows
        hidden = [x]
        for block in self.blocks:
            x = block(x, allowed)
            hidden.append(x)
        x = self.norm(x)
        hidden[-1] = x
        logits = x @ self.embed.weight.T
        return _TinyOutput(logits, tuple(hidden) if output_hidden_states else (x,))


# -- a GAE (PPO) training step -----------------------------------------------------------------


def ppo_step(
    model: ValueHeadModel,
    optimizer: torch.optim.Optimizer,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    completion_mask: torch.Tensor,
    scores: torch.Tensor,
    *,
    ref_logprobs: torch.Tensor | None = None,
    kl_coef: float = 0.05,
    gamma: float = 1.0,
    lam: float = 0.95,
    clip: float = 0.2,
    value_clip: float = 0.2,
    vf_coef: float = 0.1,
    epochs: int = 4,
    whiten_advantages: bool = True,
    max_grad_norm: float | None = None,
) -> dict[str, float]:
    """One PPO update with GAE on a batch of finished rollouts (TRL PPO's defaults): the
    sequence ``scores`` go on each row's last completion token, minus ``kl_coef``·k1 per
    token when ``ref_logprobs`` are given (KL in the reward); GAE(γ, λ) over the completion
    mask with the value head's old values; advantages whitened over valid tokens; then
    ``epochs`` full-batch steps of clipped surrogate + ``vf_coef``·clipped value loss. The
    bookkeeping runs in the Rust kernels for CPU tensors (the torch reference elsewhere).
    Returns the last epoch's statistics."""
    mask = completion_mask.bool()
    with torch.no_grad():
        out = model(input_ids, attention_mask)
        old_lp = causal_logprobs(out.logits, input_ids)
        old_v = out.values.float()
    old_lp = old_lp.detach()
    adv, ret = _ppo_advantages(
        scores, mask, old_lp, old_v, ref_logprobs, kl_coef, gamma, lam, whiten_advantages
    )
    stats: dict[str, float] = {}
    for _ in range(int(epochs)):
        out = model(input_ids, attention_mask)
        lp = causal_logprobs(out.logits, input_ids)
        pg = clipped_surrogate_loss(lp, old_lp, adv, mask, clip_low=clip)
        vf = value_loss(out.values, ret, mask, old_values=old_v, clip=value_clip)
        loss = pg.loss + vf_coef * vf
        optimizer.zero_grad()
        loss.backward()
        if max_grad_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        stats = {
            "loss": float(loss.detach()),
            "pg_loss": float(pg.pg_loss.detach()),
            "value_loss": float(vf.detach()),
            "clip_fraction": float(pg.clip_fraction),
            "approx_kl": float(pg.approx_kl),
        }
    return stats


def _ppo_advantages(
    scores: torch.Tensor,
    mask: torch.Tensor,
    old_lp: torch.Tensor,
    old_v: torch.Tensor,
    ref_logprobs: torch.Tensor | None,
    kl_coef: float,
    gamma: float,
    lam: float,
    whiten_advantages: bool,
    kernels: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`ppo_step`'s ``(advantages, returns)``: by the Rust kernels for CPU tensors (in
    float64), by :mod:`lmobjectives.torch.rl_reference` on other devices (``kernels`` forces
    one or the other; the tests hold them to the same numbers)."""
    from lmobjectives import rl

    device = old_lp.device
    if device.type == "cpu" if kernels is None else kernels:
        rewards = rl.place_scores(scores.detach().double(), mask)
        if ref_logprobs is not None:
            k, _ = rl.kl_estimate(old_lp.double(), ref_logprobs.double(), mask)
            rewards = rewards - kl_coef * k
        adv, ret = rl.gae(rewards, old_v.double(), mask, gamma=gamma, lam=lam)
        if whiten_advantages:
            adv = rl.whiten(adv, mask)
        return adv.float(), ret.float()
    from lmobjectives.torch import rl_reference as ref

    last = mask.shape[1] - 1 - mask.flip(1).int().argmax(1)
    rewards = torch.zeros_like(old_lp)
    rewards[torch.arange(mask.shape[0], device=device), last] = scores.to(rewards)
    if ref_logprobs is not None:
        rewards = rewards - kl_coef * ref.kl_estimate(old_lp, ref_logprobs, mask)[0]
    adv, ret = ref.gae(rewards, old_v, mask, gamma, lam)
    if whiten_advantages:
        adv = ref.whiten(adv, mask)
    return adv, ret
