"""Sequence-level RL bookkeeping: the data side of policy-gradient, actor-critic, GRPO/RLOO,
inverse-RL and text-GAN objectives, computed by Rust kernels (GIL released, rows in
parallel).

Every function takes NumPy arrays (float32 or float64, kept; lists are read as float64) or
CPU torch tensors (read through ``.numpy()`` without a copy; then the results are torch
tensors sharing the kernel's memory). Per-token arrays are ``[batch, seq]`` with a boolean
``mask`` of the same shape.

**Masked steps.** The steps of a row are its masked positions in column order. Discounting
goes from one masked position to the next, and values outside the mask are never read (they
may be NaN, a value head's output on padding, TRL's ``INVALID_LOGPROB``); outputs are 0 there.
So a left-padded batch and the same batch right-padded give the same numbers on their real
tokens (TRL #2778, #937), and a row's sequence-level score sits on its **last real token**
(the EOS), never on the padding after it (TRL #3750).

The pieces, each a named choice with the default of the reference that introduced it:

- masks: :func:`completion_mask` (up to and including the first EOS; left or right padding;
  truncation flags), :func:`last_index`, :func:`place_scores`;
- rewards and returns: :func:`token_rewards` (KL in the reward, PPO/RLOO style),
  :func:`discounted_returns`, :func:`gae` (γ = 1, λ = 0.95 as TRL PPO), :func:`whiten`,
  :func:`clip_advantages` (MaskGAN: 5);
- baselines: :func:`group_advantages` (:func:`grpo_advantages`, :func:`rloo_advantages`),
  :func:`scst_advantages`, :class:`EMABaseline`;
- :func:`kl_estimate` (k1, k2, k3);
- metrics: :func:`bleu`, :func:`self_bleu` (NLTK ``sentence_bleu`` with smoothing method 1);
- Monte-Carlo rollouts: :func:`rollout_plan`, :func:`rollout_rewards`.

The losses that consume these are in :mod:`lmobjectives.torch.rl`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import numpy as np

from lmobjectives import _core
from lmobjectives._inputs import RaggedRows
from lmobjectives._seeding import check_num_threads, resolve_num_threads
from lmobjectives._torch_bridge import from_numpy, is_tensor

__all__ = [
    "Completions",
    "EMABaseline",
    "GroupAdvantages",
    "RolloutPlan",
    "bleu",
    "clip_advantages",
    "completion_mask",
    "discounted_returns",
    "gae",
    "group_advantages",
    "grpo_advantages",
    "kl_estimate",
    "last_index",
    "place_scores",
    "rloo_advantages",
    "rollout_plan",
    "rollout_rewards",
    "scst_advantages",
    "self_bleu",
    "token_rewards",
    "whiten",
]


# -- conversions -------------------------------------------------------------------------------


def _numpy(x: Any, name: str) -> np.ndarray:
    """``x`` as a NumPy array; CPU tensors through ``.numpy()`` (no copy)."""
    if is_tensor(x):
        if x.device.type != "cpu":
            raise ValueError(
                f"{name}: a tensor on {x.device}; these kernels run on the CPU — pass "
                f"{name}.cpu(), or use lmobjectives.torch.rl_reference, which runs on any device"
            )
        t = x.detach()
        if str(t.dtype) in ("torch.float16", "torch.bfloat16"):
            t = t.float()
        return t.numpy()
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as e:
        raise TypeError(f"{name}: cannot be read as an array ({e})") from None


class _Io:
    """Collects inputs, picks one float dtype for them, converts outputs back."""

    def __init__(self) -> None:
        self.torch = False

    def floats(self, **named: Any) -> dict[str, np.ndarray | None]:
        arrays: dict[str, np.ndarray | None] = {}
        for name, x in named.items():
            if x is None:
                arrays[name] = None
                continue
            self.torch |= is_tensor(x)
            a = _numpy(x, name)
            if a.dtype.kind not in "fiub":
                raise TypeError(f"{name}: expected real numbers, got dtype {a.dtype}")
            arrays[name] = a
        kinds = [a.dtype for a in arrays.values() if a is not None and a.dtype.kind == "f"]
        dtype = np.float64
        if kinds and all(k.itemsize <= 4 for k in kinds):
            dtype = np.float32  # float16 inputs are computed in float32
        return {
            k: None if a is None else np.ascontiguousarray(a, dtype=dtype)
            for k, a in arrays.items()
        }

    def mask(self, mask: Any, shape: tuple[int, ...], name: str = "mask") -> np.ndarray:
        if mask is None:
            return np.ones(shape, dtype=np.bool_)
        self.torch |= is_tensor(mask)
        m = _numpy(mask, name)
        if m.dtype.kind not in "biuf":
            raise TypeError(f"{name}: expected a bool or 0/1 array, got dtype {m.dtype}")
        if m.shape != shape:
            raise _core.ShapeError(f"{name}: has shape {m.shape} but the values have {shape}")
        return np.ascontiguousarray(m if m.dtype == np.bool_ else m != 0)

    def out(self, x: Any) -> Any:
        if self.torch and isinstance(x, np.ndarray):
            return from_numpy(x)
        return x


def _check_2d(a: np.ndarray, name: str) -> None:
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D [batch, seq] array, got shape {a.shape}")


def _check_1d(a: np.ndarray, name: str) -> None:
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D [batch] array, got shape {a.shape}")


def _threads(num_threads: int | None) -> int:
    return resolve_num_threads(check_num_threads(num_threads))


def _unit(name: str, value: Any) -> float:
    v = float(value)
    if not (math.isfinite(v) and 0.0 <= v <= 1.0):
        raise ValueError(f"{name}: must be in [0, 1], got {value!r}")
    return v


# -- completion masks --------------------------------------------------------------------------


class Completions(NamedTuple):
    """What :func:`completion_mask` returns (NumPy arrays, or tensors for tensor input)."""

    mask: Any
    """``[batch, seq]`` bool: the completion's tokens up to and including the first EOS."""
    lengths: Any
    """``[batch]`` int64: masked tokens per row."""
    first: Any
    """``[batch]`` int64: column of the completion's first token (``seq`` when empty)."""
    last: Any
    """``[batch]`` int64: column of the last masked token (the EOS when there is one) —
    where a sequence-level score goes; ``-1`` when the mask is empty."""
    truncated: Any
    """``[batch]`` bool: no EOS (the generation hit its length limit)."""


def completion_mask(
    ids: Any,
    eos_token_id: int | Sequence[int],
    *,
    pad_token_id: int | None = None,
    attention_mask: Any = None,
    completion_start: int | Sequence[int] = 0,
    padding_side: Literal["right", "left"] = "right",
    include_eos: bool = True,
    mask_truncated: bool = False,
    num_threads: int | None = None,
) -> Completions:
    """Which generated tokens are the policy's actions.

    The completion of row ``r`` starts at column ``completion_start`` (0 for completion-only
    arrays; the prompt width for ``[left-padded prompt | completion]`` as ``generate``
    returns; or one start per row). Its real tokens are found from ``attention_mask`` when
    given (they must be one run), else from ``padding_side``: with right padding (the
    default) everything after the first EOS is padding anyway; with left padding a leading
    run of ``pad_token_id`` is. The mask covers every token up to **and including** the first
    EOS (any of ``eos_token_id`` when a list; ``include_eos=False`` stops before it). A row
    with no EOS is ``truncated``; its mask covers all its real tokens (a trailing run of
    ``pad_token_id`` is dropped with right padding), or nothing with ``mask_truncated=True``
    (TRL GRPO's ``mask_truncated_completions``).

    When ``pad_token_id == eos_token_id`` (GPT-2) and the padding is on the left, pass the
    attention mask: a lone EOS cannot otherwise be told from padding.

    Example:
        >>> import numpy as np
        >>> from lmobjectives.rl import completion_mask
        >>> c = completion_mask(np.array([[5, 6, 2, 0, 0], [5, 6, 7, 8, 9]]), eos_token_id=2)
        >>> c.mask.astype(int).tolist(), c.last.tolist(), c.truncated.tolist()
        ([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], [2, 4], [False, True])
    """
    io = _Io()
    io.torch = is_tensor(ids)
    a = _numpy(ids, "ids")
    _check_2d(a, "ids")
    if a.dtype.kind not in "iu":
        raise TypeError(f"ids: expected an integer array, got dtype {a.dtype}")
    a = np.ascontiguousarray(a)
    eos = _eos_ids(eos_token_id)
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side: must be 'right' or 'left', got {padding_side!r}")
    att = None if attention_mask is None else io.mask(attention_mask, a.shape, "attention_mask")
    starts = _completion_starts(completion_start, a.shape[0])
    out = _core.completion_mask(
        a,
        eos,
        pad_token_id=None if pad_token_id is None else int(pad_token_id),
        attention_mask=att,
        completion_start=starts,
        padding_side=padding_side,
        include_eos=bool(include_eos),
        mask_truncated=bool(mask_truncated),
        num_threads=_threads(num_threads),
    )
    return Completions(*(io.out(out[k]) for k in Completions._fields))


def _eos_ids(eos_token_id: int | Sequence[int]) -> list[int]:
    eos = [eos_token_id] if isinstance(eos_token_id, (int, np.integer)) else list(eos_token_id)
    if not eos or not all(isinstance(e, (int, np.integer)) for e in eos):
        raise TypeError(f"eos_token_id: expected an int or a list of ints, got {eos_token_id!r}")
    return [int(e) for e in eos]


def _completion_starts(completion_start: int | Sequence[int], rows: int) -> list[int]:
    """One start column per row, from one int or one per row."""
    if isinstance(completion_start, (int, np.integer)):
        if completion_start < 0:
            raise ValueError(f"completion_start: must be >= 0, got {completion_start}")
        return [int(completion_start)] * rows
    s = _numpy(completion_start, "completion_start")
    if s.ndim != 1 or s.dtype.kind not in "iu" or (s < 0).any():
        raise ValueError(
            "completion_start: expected an int or one non-negative int per row, got "
            f"{completion_start!r}"
        )
    return [int(x) for x in s.tolist()]


def last_index(mask: Any) -> np.ndarray:
    """Column of the last ``True`` of each row of a ``[batch, seq]`` mask (``-1`` when none):
    where a sequence-level score goes."""
    m = _numpy(mask, "mask")
    _check_2d(m, "mask")
    m = m != 0
    cols = m.shape[1]
    if cols == 0:
        return np.full(m.shape[0], -1, dtype=np.int64)
    last = cols - 1 - np.argmax(m[:, ::-1], axis=1)
    return np.where(m.any(axis=1), last, -1).astype(np.int64)


def place_scores(scores: Any, mask: Any) -> Any:
    """A ``[batch, seq]`` reward array with each row's sequence-level score on its last masked
    token (the EOS for finished rows) and 0 elsewhere. A row with an empty mask cannot take a
    score: that is an error."""
    io = _Io()
    s = io.floats(scores=scores)["scores"]
    assert s is not None
    _check_1d(s, "scores")
    m = _numpy(mask, "mask")
    io.torch |= is_tensor(mask)
    _check_2d(m, "mask")
    if m.shape[0] != s.shape[0]:
        raise _core.ShapeError(f"scores: has {s.shape[0]} rows but mask has {m.shape[0]}")
    if not np.isfinite(s).all():
        i = int(np.flatnonzero(~np.isfinite(s))[0])
        raise _core.InvalidArgumentError(f"scores: non-finite value {s[i]} at row {i}")
    last = last_index(m)
    empty = np.flatnonzero(last < 0)
    if empty.size:
        raise _core.InvalidArgumentError(
            f"mask: row {int(empty[0])} has no masked token to put its score on"
        )
    out = np.zeros(m.shape, dtype=s.dtype)
    out[np.arange(m.shape[0]), last] = s
    return io.out(out)


# -- rewards, returns, advantages --------------------------------------------------------------


def _per_token_rewards(rewards: np.ndarray, mask: Any) -> np.ndarray:
    """Sequence-level rewards ``[batch]`` placed on each row's last masked token."""
    if rewards.ndim == 1:
        if mask is None:
            raise ValueError("mask: sequence-level rewards [batch] need the mask to place them")
        return _numpy(place_scores(rewards, _numpy(mask, "mask")), "rewards")
    _check_2d(rewards, "rewards")
    return rewards


def token_rewards(
    scores: Any,
    mask: Any,
    *,
    logprobs: Any = None,
    ref_logprobs: Any = None,
    kl_coef: float = 0.05,
    kl_estimator: Literal["k1", "k2", "k3"] = "k1",
    truncated: Any = None,
    missing_eos_penalty: float | None = None,
    num_threads: int | None = None,
) -> tuple[Any, Any]:
    """Per-token rewards with the KL in the reward (PPO/RLOO style): ``r_t = −kl_coef·kl_t``
    on every masked token, plus the sequence score on the last one. Returns ``(rewards,
    kl)``. Defaults are TRL PPO's (``kl_coef`` 0.05, k1). ``missing_eos_penalty`` is
    subtracted from the score of ``truncated`` rows (TRL's option of that name). Without
    log-probabilities there is no KL term."""
    io = _Io()
    f = io.floats(scores=scores, logprobs=logprobs, ref_logprobs=ref_logprobs)
    s = f["scores"]
    assert s is not None
    _check_1d(s, "scores")
    if missing_eos_penalty is not None:
        if truncated is None:
            raise ValueError("truncated: missing_eos_penalty needs the truncation flags")
        t = _numpy(truncated, "truncated").astype(bool)
        if t.shape != s.shape:
            raise _core.ShapeError(f"truncated: has shape {t.shape} but scores has {s.shape}")
        s = s - np.asarray(float(missing_eos_penalty), dtype=s.dtype) * t
    m = io.mask(mask, _numpy(mask, "mask").shape)
    _check_2d(m, "mask")
    rewards = _numpy(place_scores(s, m), "rewards")
    lp, ref_lp = f["logprobs"], f["ref_logprobs"]
    if (lp is None) != (ref_lp is None):
        raise ValueError("logprobs, ref_logprobs: give both or neither")
    if lp is None or ref_lp is None:
        return io.out(rewards), io.out(np.zeros_like(rewards))
    k, _ = _core.kl_estimate(
        lp,
        ref_lp,
        m,
        estimator=kl_estimator,
        num_threads=_threads(num_threads),
    )
    rewards = rewards - np.asarray(float(kl_coef), dtype=rewards.dtype) * k
    return io.out(rewards), io.out(k)


def discounted_returns(
    rewards: Any,
    mask: Any = None,
    *,
    gamma: float = 1.0,
    num_threads: int | None = None,
) -> Any:
    """Reward-to-go ``G_t = r_t + γ·G_{t+1}`` over each row's masked steps (0 elsewhere).

    ``rewards`` is per token ``[batch, seq]``, or per sequence ``[batch]`` (placed on each
    row's last masked token, so ``G_t = γ^(steps after t)·R``). γ defaults to 1 (TRL; SeqGAN's
    0.95 is never used by its code, MaskGAN uses 0.9).

    Example:
        >>> import numpy as np
        >>> from lmobjectives.rl import discounted_returns
        >>> mask = np.array([[True, True, True, False]])
        >>> discounted_returns(np.array([2.0]), mask, gamma=0.5).tolist()
        [[0.5, 1.0, 2.0, 0.0]]
    """
    io = _Io()
    r = io.floats(rewards=rewards)["rewards"]
    assert r is not None
    if mask is not None:
        io.torch |= is_tensor(mask)
    r = _per_token_rewards(r, mask)
    m = io.mask(mask, r.shape)
    g = _unit("gamma", gamma)
    return io.out(_core.discounted_returns(r, m, gamma=g, num_threads=_threads(num_threads)))


def gae(
    rewards: Any,
    values: Any,
    mask: Any = None,
    *,
    gamma: float = 1.0,
    lam: float = 0.95,
    bootstrap: Any = None,
    num_threads: int | None = None,
) -> tuple[Any, Any]:
    """GAE(γ, λ) advantages and value targets ``(advantages, returns)`` over each row's
    masked steps.

    ``δ_t = r_t + γ·V_{t+1} − V_t``, ``Â_t = δ_t + γλ·Â_{t+1}``, ``returns = Â + V``. The
    value after a row's last step is ``bootstrap[row]`` (default 0: the completion ended; pass
    the value of the next state for truncated rows if you want to bootstrap them). Values
    outside the mask are never read. Defaults: γ = 1, λ = 0.95 (TRL PPO), which then whitens
    the advantages over valid tokens — :func:`whiten`. ``rewards`` may be ``[batch]``
    sequence scores (placed on each row's last masked token).
    """
    io = _Io()
    f = io.floats(rewards=rewards, values=values, bootstrap=bootstrap)
    r, v = f["rewards"], f["values"]
    assert r is not None and v is not None
    if mask is not None:
        io.torch |= is_tensor(mask)
    r = _per_token_rewards(r, mask)
    _check_2d(v, "values")
    m = io.mask(mask, r.shape)
    b = f["bootstrap"]
    if b is not None:
        _check_1d(b, "bootstrap")
    adv, ret = _core.gae(
        r,
        v,
        m,
        gamma=_unit("gamma", gamma),
        lam=_unit("lam", lam),
        bootstrap=b,
        num_threads=_threads(num_threads),
    )
    return io.out(adv), io.out(ret)


def whiten(
    values: Any,
    mask: Any = None,
    *,
    shift_mean: bool = True,
    unbiased: bool = True,
    eps: float = 1e-8,
    num_threads: int | None = None,
) -> Any:
    """``(x − mean)/sqrt(var + eps)`` with the mean and variance over every masked value of
    the batch (TRL's ``masked_whiten``: Bessel-corrected variance, eps 1e-8;
    ``shift_mean=False`` adds the mean back). 0 outside the mask."""
    io = _Io()
    x = io.floats(values=values)["values"]
    assert x is not None
    _check_2d(x, "values")
    m = io.mask(mask, x.shape)
    out, _, _ = _core.whiten(
        x,
        m,
        shift_mean=bool(shift_mean),
        unbiased=bool(unbiased),
        eps=float(eps),
        num_threads=_threads(num_threads),
    )
    return io.out(out)


def clip_advantages(
    advantages: Any, mask: Any = None, *, clip: float = 5.0, num_threads: int | None = None
) -> Any:
    """``clip(A, −clip, clip)`` on the mask, 0 elsewhere (MaskGAN's ``advantage_clipping``,
    5). ``[batch]`` arrays are clipped as they are."""
    io = _Io()
    a = io.floats(advantages=advantages)["advantages"]
    assert a is not None
    if a.ndim == 1:
        out = _core.clip_masked(
            a[None, :], np.ones((1, a.shape[0]), np.bool_), bound=float(clip), num_threads=1
        )[0]
        return io.out(out)
    _check_2d(a, "advantages")
    m = io.mask(mask, a.shape)
    return io.out(_core.clip_masked(a, m, bound=float(clip), num_threads=_threads(num_threads)))


class GroupAdvantages(NamedTuple):
    """What :func:`group_advantages` returns (one entry per row)."""

    advantages: Any
    baseline: Any
    """The baseline each score was compared with (NaN for unscored rows)."""
    std: Any
    """The standard deviation it was divided by (0 with ``scale="none"``)."""


def _groups(n: int, group_size: int | None, groups: Any) -> tuple[np.ndarray, int]:
    if (group_size is None) == (groups is None):
        raise ValueError("group_size, groups: give exactly one")
    if group_size is not None:
        if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)):
            raise TypeError(f"group_size: expected an int, got {group_size!r}")
        if group_size < 1 or n % group_size:
            raise ValueError(
                f"group_size: {n} rows do not split into groups of {group_size} (each prompt's "
                "completions must be consecutive rows)"
            )
        return np.repeat(np.arange(n // group_size, dtype=np.int64), group_size), n // group_size
    g = _numpy(groups, "groups")
    if g.shape != (n,) or g.dtype.kind not in "iu":
        raise ValueError(f"groups: expected {n} integer group labels, got {g.shape} {g.dtype}")
    labels, dense = np.unique(g, return_inverse=True)
    return np.ascontiguousarray(dense.reshape(-1), dtype=np.int64), len(labels)


def group_advantages(
    scores: Any,
    *,
    group_size: int | None = None,
    groups: Any = None,
    baseline: Literal["mean", "leave_one_out"] = "mean",
    scale: Literal["group", "batch", "none"] = "group",
    eps: float = 1e-4,
    nan: Literal["raise", "zero"] = "raise",
) -> GroupAdvantages:
    """Group-baselined advantages of one score per completion.

    Groups are ``group_size`` consecutive rows (how TRL's ``RepeatSampler`` lays out the
    completions of one prompt) or arbitrary integer ``groups`` labels.
    ``A_i = (r_i − b_i)/(s_i + eps)``: ``baseline="mean"`` (GRPO) or ``"leave_one_out"``
    (RLOO: the mean of the group's other members); ``scale="group"`` divides by the group's
    standard deviation (GRPO default), ``"batch"`` by the whole batch's, ``"none"`` not at
    all (Dr. GRPO, RLOO); standard deviations are Bessel-corrected like ``torch.std``;
    ``eps`` = 1e-4 as TRL. A group whose scores are all equal gets advantages of exactly 0.
    NaN scores raise, or with ``nan="zero"`` are left out of the statistics and get 0.
    """
    io = _Io()
    s = io.floats(scores=scores)["scores"]
    assert s is not None
    _check_1d(s, "scores")
    g, n_groups = _groups(len(s), group_size, groups)
    a, b, sd = _core.group_advantages(
        s, g, n_groups, baseline=baseline, scale=scale, eps=float(eps), nan=nan
    )
    return GroupAdvantages(io.out(a), io.out(b), io.out(sd))


def grpo_advantages(
    scores: Any,
    group_size: int,
    *,
    scale: Literal["group", "batch", "none"] = "group",
    eps: float = 1e-4,
    nan: Literal["raise", "zero"] = "raise",
) -> Any:
    """GRPO: ``(r − mean_group(r)) / (std_group(r) + 1e-4)`` (TRL ``scale_rewards``: "group"
    default, "batch", or "none" = Dr. GRPO)."""
    return group_advantages(
        scores, group_size=group_size, baseline="mean", scale=scale, eps=eps, nan=nan
    ).advantages


def rloo_advantages(
    scores: Any, group_size: int, *, nan: Literal["raise", "zero"] = "raise"
) -> Any:
    """RLOO: ``r_i − mean of the group's other rewards`` (TRL ``RLOOTrainer``, no scaling;
    whiten the result to get its ``normalize_advantages=True``)."""
    return group_advantages(
        scores, group_size=group_size, baseline="leave_one_out", scale="none", nan=nan
    ).advantages


def scst_advantages(sample_scores: Any, greedy_scores: Any) -> Any:
    """Self-critical sequence training (Rennie et al. 2017): ``r(sample) − r(greedy)``.

    ``greedy_scores`` has one score per sample, or one per group of consecutive samples of
    the same input (then repeated over the group)."""
    io = _Io()
    f = io.floats(sample_scores=sample_scores, greedy_scores=greedy_scores)
    s, g = f["sample_scores"], f["greedy_scores"]
    assert s is not None and g is not None
    _check_1d(s, "sample_scores")
    _check_1d(g, "greedy_scores")
    if len(g) == 0 or len(s) % len(g):
        raise _core.ShapeError(
            f"greedy_scores: {len(g)} scores do not split {len(s)} samples into equal groups"
        )
    for name, x in (("sample_scores", s), ("greedy_scores", g)):
        if not np.isfinite(x).all():
            i = int(np.flatnonzero(~np.isfinite(x))[0])
            raise _core.InvalidArgumentError(f"{name}: non-finite value {x[i]} at index {i}")
    return io.out(s - np.repeat(g, len(s) // len(g)))


class EMABaseline:
    """An exponential moving average of returns as the baseline (MaskGAN ``baseline_method
    ='ema'``; its README uses decay 0.99).

    ``baseline(returns, mask)`` returns ``returns − b`` where ``b`` is the bias-corrected
    average of the *previous* calls' mean masked return (0 on the first call), then folds this
    call's mean in: ``m ← decay·m + (1 − decay)·mean``, ``b = m / (1 − decay^calls)``. Using
    only past batches keeps the estimator unbiased. Picklable; ``state_dict`` /
    ``load_state_dict`` resume it.
    """

    def __init__(self, decay: float = 0.99) -> None:
        d = float(decay)
        if not (math.isfinite(d) and 0.0 <= d < 1.0):
            raise ValueError(f"decay: must be in [0, 1), got {decay!r}")
        self.decay = d
        self._m = 0.0
        self._calls = 0

    @property
    def value(self) -> float:
        """The current baseline ``b``."""
        return self._m / (1.0 - self.decay**self._calls) if self._calls else 0.0

    def __call__(self, returns: Any, mask: Any = None) -> Any:
        io = _Io()
        r = io.floats(returns=returns)["returns"]
        assert r is not None
        if r.ndim == 1:
            m = np.ones(r.shape, np.bool_) if mask is None else io.mask(mask, r.shape)
        else:
            _check_2d(r, "returns")
            m = io.mask(mask, r.shape)
        valid = r[m]
        if valid.size == 0:
            raise ValueError("mask: no masked return to average")
        if not np.isfinite(valid).all():
            raise _core.InvalidArgumentError("returns: non-finite value inside the mask")
        b = self.value
        out = np.where(m, r - np.asarray(b, dtype=r.dtype), np.zeros((), r.dtype))
        self._m = self.decay * self._m + (1.0 - self.decay) * float(valid.mean())
        self._calls += 1
        return io.out(out)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "m": self._m, "calls": self._calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay, self._m, self._calls = (
            float(state["decay"]),
            float(state["m"]),
            int(state["calls"]),
        )

    def __repr__(self) -> str:
        return f"EMABaseline(decay={self.decay}, value={self.value:.6g}, calls={self._calls})"


# -- KL ----------------------------------------------------------------------------------------


def kl_estimate(
    logprobs: Any,
    ref_logprobs: Any,
    mask: Any = None,
    *,
    estimator: Literal["k1", "k2", "k3"] = "k1",
    num_threads: int | None = None,
) -> tuple[Any, Any]:
    """Per-token estimates of KL(π ‖ π_ref) from the log-probabilities of the sampled tokens,
    and their per-row sums: ``(per_token [batch, seq], per_sequence [batch])``.

    With ``d = ref_logprobs − logprobs``: ``k1 = −d`` (unbiased, can be negative),
    ``k2 = d²/2``, ``k3 = exp(d) − d − 1`` (unbiased, ≥ 0; GRPO's). 0 outside the mask;
    values there are never read (TRL's ``INVALID_LOGPROB`` is fine).
    """
    io = _Io()
    f = io.floats(logprobs=logprobs, ref_logprobs=ref_logprobs)
    p, q = f["logprobs"], f["ref_logprobs"]
    assert p is not None and q is not None
    _check_2d(p, "logprobs")
    _check_2d(q, "ref_logprobs")
    m = io.mask(mask, p.shape)
    k, s = _core.kl_estimate(p, q, m, estimator=estimator, num_threads=_threads(num_threads))
    return io.out(k), io.out(s)


# -- n-gram metrics ----------------------------------------------------------------------------


def _rows(x: Any, mask: Any, name: str) -> Any:
    """Token rows for the BLEU kernels: lists/arrays of rows as they are; a 2-D array with a
    mask becomes the masked tokens of each row."""
    if mask is None:
        if is_tensor(x):
            return np.ascontiguousarray(_numpy(x, name))
        return x
    a = _numpy(x, name)
    m = _numpy(mask, f"{name}_mask") != 0
    if a.ndim != 2 or m.shape != a.shape:
        raise _core.ShapeError(
            f"{name}_mask: has shape {m.shape} but {name} has shape {getattr(a, 'shape', None)}"
        )
    offsets = np.concatenate([[0], np.cumsum(m.sum(axis=1))]).astype(np.int64)
    return RaggedRows(np.ascontiguousarray(a[m]).astype(np.int64, copy=False), offsets)


def _weights(max_n: int, weights: Sequence[float] | None) -> list[float]:
    if weights is not None:
        return [float(w) for w in weights]
    if isinstance(max_n, bool) or not isinstance(max_n, (int, np.integer)) or max_n < 1:
        raise ValueError(f"max_n: expected a positive int, got {max_n!r}")
    return [1.0 / max_n] * int(max_n)


def bleu(
    hypotheses: Any,
    references: Any,
    *,
    max_n: int = 4,
    weights: Sequence[float] | None = None,
    smoothing: Literal["method1", "none"] = "method1",
    epsilon: float = 0.1,
    hypotheses_mask: Any = None,
    references_mask: Any = None,
    num_threads: int | None = None,
) -> np.ndarray:
    """Sentence BLEU-``max_n`` of every hypothesis against the *whole* reference set, as
    Texygen and TextGAN-PyTorch compute it (their BLEU is the mean of this array).

    Pinned to NLTK's ``sentence_bleu(references, hypothesis, weights=(1/N,)*N,
    smoothing_function=SmoothingFunction().method1)`` (checked against NLTK 3.10.4): clipped
    n-gram precisions against the maximum count over references, the closest reference length
    (ties to the shorter) for the brevity penalty, 0 when no unigram matches, zero precisions
    replaced by ``epsilon / max(1, |h| − n + 1)``. ``smoothing="none"`` makes a zero precision
    give BLEU 0 exactly. Sequences are lists of token ids (or any hashable-int rows), a list
    of 1-D arrays, or a 2-D array (with ``*_mask`` selecting each row's tokens).
    """
    h = _rows(hypotheses, hypotheses_mask, "hypotheses")
    r = _rows(references, references_mask, "references")
    return _core.bleu(
        h,
        r,
        weights=_weights(max_n, weights),
        smoothing=smoothing,
        epsilon=float(epsilon),
        num_threads=_threads(num_threads),
    )


def self_bleu(
    samples: Any,
    *,
    max_n: int = 4,
    weights: Sequence[float] | None = None,
    smoothing: Literal["method1", "none"] = "method1",
    epsilon: float = 0.1,
    mask: Any = None,
    num_threads: int | None = None,
) -> np.ndarray:
    """Self-BLEU of every sample: its BLEU (as :func:`bleu`) against all the *other* samples
    (Texygen's ``SelfBleu``; its "fast" mode uses the first 500 samples — slice them yourself).
    Higher means less diverse; the metric is the mean."""
    s = _rows(samples, mask, "samples")
    return _core.self_bleu(
        s,
        weights=_weights(max_n, weights),
        smoothing=smoothing,
        epsilon=float(epsilon),
        num_threads=_threads(num_threads),
    )


# -- Monte-Carlo rollouts ----------------------------------------------------------------------


class RolloutPlan(NamedTuple):
    """One row per (sample, prefix length, rollout): what to generate for MC rewards."""

    sample: np.ndarray
    """int64: which sample the rollout row continues."""
    prefix_length: np.ndarray
    """int64: how many of the sample's tokens it keeps (1 … length − 1)."""
    rollout: np.ndarray
    """int64: which of the ``num_rollouts`` completions it is."""
    lengths: np.ndarray
    """int64: the samples' lengths."""


def rollout_plan(
    lengths: Any,
    num_rollouts: int = 16,
    *,
    order: Literal["prefix_major", "sample_major"] = "prefix_major",
) -> RolloutPlan:
    """The Monte-Carlo rollouts SeqGAN's reward needs: for every sample of length ``L`` and
    every prefix length ``t`` in ``1..L-1``, ``num_rollouts`` (SeqGAN: 16) completions of the
    sample's first ``t`` tokens. ``order="prefix_major"`` lists each prefix length as one
    block (all rollouts of all samples long enough), how a batched generator continues them;
    ``"sample_major"`` lists each sample's rows together. Score every row in any order and
    pass the scores to :func:`rollout_rewards` with the plan: nothing is reshaped, so samples,
    positions and rollouts cannot be mixed up (TextGAN-PyTorch #62)."""
    ln = _numpy(lengths, "lengths")
    if ln.ndim != 1 or ln.dtype.kind not in "iu" or (ln < 0).any():
        raise ValueError(f"lengths: expected non-negative int lengths, got {lengths!r}")
    if isinstance(num_rollouts, bool) or not isinstance(num_rollouts, (int, np.integer)):
        raise TypeError(f"num_rollouts: expected an int, got {num_rollouts!r}")
    sample, prefix, rollout = _core.rollout_plan(ln.tolist(), int(num_rollouts), order=order)
    return RolloutPlan(sample, prefix, rollout, ln.astype(np.int64))


def rollout_rewards(
    scores: Any, plan: RolloutPlan, final_scores: Any, *, seq_len: int | None = None
) -> Any:
    """Per-token rewards ``Q [samples, seq_len]`` from the rollout scores: ``Q[b, t−1]`` is
    the mean score of sample ``b``'s rollouts from prefix length ``t``, the last token's
    ``Q[b, L−1]`` is ``final_scores[b]`` (the full sample's score), 0 past the end. Every
    prefix must have the same number of rollouts."""
    io = _Io()
    f = io.floats(scores=scores, final_scores=final_scores)
    s, fs = f["scores"], f["final_scores"]
    assert s is not None and fs is not None
    _check_1d(s, "scores")
    _check_1d(fs, "final_scores")
    cols = int(plan.lengths.max(initial=0)) if seq_len is None else int(seq_len)
    q = _core.rollout_scatter(
        s,
        np.ascontiguousarray(plan.sample, dtype=np.int64),
        np.ascontiguousarray(plan.prefix_length, dtype=np.int64),
        plan.lengths.tolist(),
        fs,
        cols,
    )
    return io.out(q)
