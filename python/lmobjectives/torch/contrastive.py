"""Contrastive losses: InfoNCE with in-batch, hard and cross-rank negatives; CPC; SimCSE.

Layout of the candidates of :func:`info_nce_loss` (the documented contract, the one
sentence-transformers' ``MultipleNegativesRankingLoss`` uses since its PR #3453)::

    columns = [ P_all | N1_all | N2_all | … | Nn_all ]        X_all = cat(X_rank0, X_rank1, …)

Row ``i`` of rank ``r`` (global row ``g = offset_r + i``, ``offset_r`` the rows of the ranks
before it) is scored against every column; its target is column ``g`` (its own positive). Each
rank scores only its own rows, so the logits are ``B_local × (B_global · (1 + n))`` — never the
global square.

Cross-rank negatives (``gather=True``) gather every column over ``torch.distributed`` *with
gradients*: the backward pass sums each rank's gradient for a gathered row back to the rank
that owns it. Per-rank batch sizes may differ (rows are padded for the collective and the
padding dropped). The loss each rank returns is scaled by ``world_size · B_local / B_global``,
so that the mean over ranks is the global-batch loss and DDP's gradient averaging yields
exactly the global-batch gradient (a 2-process test checks both); with equal batch sizes this is
the plain local mean.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmobjectives._core import InvalidArgumentError
from lmobjectives.torch._checks import check_positive_scale, scale_from_temperature

__all__ = [
    "CPCHead",
    "InfoNCELoss",
    "SimCSE",
    "all_gather_with_grad",
    "cpc_loss",
    "info_nce_loss",
]

DEFAULT_SCALE = 20.0  # temperature 0.05, as sentence-transformers and SimCSE


# -- cross-rank gathering ----------------------------------------------------------------------


def _dist() -> Any:
    import torch.distributed as dist

    return dist


class _GatherWithGrad(torch.autograd.Function):
    """all_gather of ragged rows; backward sums every rank's gradient into the owner's rows."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, group: Any, sizes: list[int]) -> Tensor:  # type: ignore[override]
        dist = _dist()
        world, rank = dist.get_world_size(group), dist.get_rank(group)
        width = max(sizes)
        padded = x.new_zeros((width, *x.shape[1:]))
        padded[: x.shape[0]] = x
        bufs = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(bufs, padded.contiguous(), group=group)
        ctx.group, ctx.sizes, ctx.rank, ctx.width = group, sizes, rank, width
        return torch.cat([b[:s] for b, s in zip(bufs, sizes, strict=True)])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        dist = _dist()
        padded = grad.new_zeros((len(ctx.sizes), ctx.width, *grad.shape[1:]))
        start = 0
        for r, s in enumerate(ctx.sizes):
            padded[r, :s] = grad[start : start + s]
            start += s
        dist.all_reduce(padded, op=dist.ReduceOp.SUM, group=ctx.group)
        return padded[ctx.rank, : ctx.sizes[ctx.rank]].contiguous(), None, None


def _gathered_sizes(rows: int, device: torch.device, group: Any) -> list[int]:
    dist = _dist()
    n = torch.tensor([rows], dtype=torch.int64, device=device)
    out = [torch.zeros_like(n) for _ in range(dist.get_world_size(group))]
    dist.all_gather(out, n, group=group)
    return [int(v) for v in torch.cat(out).tolist()]  # one host sync for all ranks


def all_gather_with_grad(
    x: Tensor, group: Any = None, sizes: list[int] | None = None
) -> tuple[Tensor, int]:
    """Concatenates ``x`` (rows may differ per rank) from every rank in rank order, keeping
    gradients: ``(gathered, offset)`` with ``offset`` the rows of the ranks before this one.
    Without an initialised process group: ``(x, 0)``."""
    dist = _dist()
    if not (dist.is_available() and dist.is_initialized()):
        return x, 0
    if sizes is None:
        sizes = _gathered_sizes(x.shape[0], x.device, group)
    rank = dist.get_rank(group)
    return _GatherWithGrad.apply(x, group, sizes), sum(sizes[:rank])


# -- InfoNCE -----------------------------------------------------------------------------------


def _resolve_scale(scale: Any, temperature: Any) -> Any:
    """The logit scale from ``scale`` or ``temperature`` (one of them), checked without reading
    any tensor's value: a float must be finite and positive, and so must the reciprocal of a
    temperature in float32; a tensor scale must hold one element (its value is not read, that
    would be a host sync)."""
    if scale is not None and temperature is not None:
        raise InvalidArgumentError("scale, temperature: give one of them (scale = 1 / temperature)")
    if isinstance(scale, Tensor):
        if scale.numel() != 1:
            raise InvalidArgumentError(
                f"scale: expected a number or a one-element tensor, got shape {tuple(scale.shape)}"
            )
        return scale
    if temperature is not None:
        return scale_from_temperature(temperature)
    if scale is None:
        return DEFAULT_SCALE
    return check_positive_scale(scale, "scale")


def _negative_columns(negatives: Any, rows: int, dim: int) -> list[Tensor]:
    if negatives is None:
        return []
    if isinstance(negatives, Tensor):
        if negatives.dim() == 2:
            cols = [negatives]
        elif negatives.dim() == 3:
            cols = list(negatives.unbind(1))
        else:
            raise ValueError(
                f"negatives: expected [B, d] or [B, n, d], got shape {tuple(negatives.shape)}"
            )
    elif isinstance(negatives, Sequence):
        cols = list(negatives)
    else:
        raise TypeError(f"negatives: expected a tensor or a list of tensors, got {type(negatives)}")
    for j, col in enumerate(cols):
        if not isinstance(col, Tensor) or tuple(col.shape) != (rows, dim):
            shape = tuple(col.shape) if isinstance(col, Tensor) else type(col).__name__
            raise ValueError(f"negatives[{j}]: expected shape {(rows, dim)}, got {shape}")
    return cols


def _similarity(a: Tensor, b: Tensor, similarity: str) -> Tensor:
    if similarity == "cosine":
        a, b = F.normalize(a, p=2, dim=1), F.normalize(b, p=2, dim=1)
    return a @ b.T


# long: the docstring documents eleven arguments; the body is twelve lines
def info_nce_loss(
    queries: Tensor,
    positives: Tensor,
    negatives: Tensor | Sequence[Tensor] | None = None,
    *,
    scale: float | Tensor | None = None,
    temperature: float | None = None,
    similarity: Literal["cosine", "dot"] = "cosine",
    symmetric: bool = False,
    gather: bool = False,
    group: Any = None,
    duplicates: Tensor | None = None,
    reduction: Literal["mean", "sum", "none"] = "mean",
    batch_sizes: Sequence[int] | None = None,
) -> Tensor:
    """InfoNCE (multiple-negatives ranking) loss with in-batch, hard and cross-rank negatives.

    Row ``i`` is scored against every positive of the (global) batch and every hard-negative
    column (layout in the module docstring); the loss is the cross-entropy of its own positive:
    ``−s(q_i, p_i)·scale + logsumexp_j s(q_i, c_j)·scale``.

    Args:
        queries: ``[B, d]`` anchor embeddings.
        positives: ``[B, d]``; row ``i`` is the positive of query ``i``.
        negatives: hard negatives: ``[B, n, d]``, or ``n`` tensors ``[B, d]`` (column ``j`` of
            row ``i`` is a negative of query ``i``, and an in-batch negative of every other).
        scale: logit scale (default 20, i.e. temperature 0.05), a float or a 0-d tensor (a
            learnable scale gets its gradient); or give ``temperature``.
        similarity: ``"cosine"`` (default) or ``"dot"``.
        symmetric: also the document→query term, averaged: ``½·CE(q_i → all docs) +
            ½·CE(p_i → all queries)`` (sentence-transformers' MultipleNegativesSymmetricRanking).
        gather: add the other ranks' rows as negatives (``torch.distributed``, with gradients;
            see the module docstring for the scaling under DDP).
        group: the process group (default: the world).
        duplicates: int ``[B]`` group ids (e.g. a hash of the anchor text): positives of other
            rows with the same id as row ``i`` are masked out of row ``i``'s candidates (and
            their queries out of the symmetric term), so identical texts in a batch are not
            each other's negatives. Hard-negative columns are never masked.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per local row).
        batch_sizes: with ``gather``, every rank's batch size when known in advance (e.g.
            ``[B] * world_size`` with equal batches): skips the exchange of sizes, the one host
            synchronisation of a gathered call. Without ``gather`` the loss never syncs.

    Raises :class:`~lmobjectives.InvalidArgumentError` for an empty batch and for a
    non-finite or non-positive ``scale``/``temperature`` (or a temperature whose reciprocal
    overflows float32); a tensor ``scale`` is not read (that would be a host sync).

    Example:
        >>> import torch
        >>> from lmobjectives.torch import info_nce_loss
        >>> q, p = torch.randn(8, 16), torch.randn(8, 16)
        >>> loss = info_nce_loss(q, p, torch.randn(8, 2, 16))
        >>> loss.shape
        torch.Size([])
    """
    s = _resolve_scale(scale, temperature)
    neg_cols, duplicates = _check_info_nce(
        queries, positives, negatives, duplicates, similarity, reduction, gather
    )
    batch = _global_batch(
        queries, positives, neg_cols, duplicates, gather, symmetric, group, batch_sizes
    )
    if batch.total == 0:
        raise InvalidArgumentError("queries: empty batch on every rank (global B = 0)")
    loss = _info_nce_rows(queries, positives, duplicates, batch, s, similarity, symmetric)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() * (batch.world / batch.total)


def _check_info_nce(
    queries: Tensor,
    positives: Tensor,
    negatives: Tensor | Sequence[Tensor] | None,
    duplicates: Tensor | None,
    similarity: str,
    reduction: str,
    gather: bool,
) -> tuple[list[Tensor], Tensor | None]:
    """The arguments of :func:`info_nce_loss` checked: ``(hard-negative columns, duplicates on
    the queries' device)``."""
    if similarity not in ("cosine", "dot"):
        raise ValueError(f"similarity: must be 'cosine' or 'dot', got {similarity!r}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction: must be 'mean', 'sum' or 'none', got {reduction!r}")
    if queries.dim() != 2:
        raise ValueError(f"queries: expected [B, d], got shape {tuple(queries.shape)}")
    b, d = queries.shape
    if b == 0 and not gather:
        raise InvalidArgumentError("queries: empty batch (B = 0), the loss has no rows to average")
    if tuple(positives.shape) != (b, d):
        raise ValueError(f"positives: expected shape {(b, d)}, got {tuple(positives.shape)}")
    neg_cols = _negative_columns(negatives, b, d)
    if duplicates is None:
        return neg_cols, None
    if duplicates.shape != (b,) or duplicates.dtype.is_floating_point:
        raise ValueError(
            f"duplicates: expected [B] integer ids, got {duplicates.dtype} "
            f"{tuple(duplicates.shape)}"
        )
    return neg_cols, duplicates.to(queries.device)


class _GlobalBatch(NamedTuple):
    """The candidates of :func:`info_nce_loss`: this rank's, or every rank's with ``gather``."""

    positives: Tensor
    negatives: list[Tensor]
    queries: Tensor
    duplicates: Tensor | None
    offset: int  # this rank's first row in the global batch
    total: int  # rows of the global batch
    world: int


def _global_batch(
    queries: Tensor,
    positives: Tensor,
    neg_cols: list[Tensor],
    duplicates: Tensor | None,
    gather: bool,
    symmetric: bool,
    group: Any,
    batch_sizes: Sequence[int] | None = None,
) -> _GlobalBatch:
    b = queries.shape[0]
    if not gather:
        return _GlobalBatch(positives, neg_cols, queries, duplicates, 0, b, 1)
    dist = _dist()
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("gather: needs an initialised torch.distributed process group")
    if batch_sizes is None:
        sizes = _gathered_sizes(b, queries.device, group)
    else:
        sizes = [int(n) for n in batch_sizes]
        world, rank = dist.get_world_size(group), dist.get_rank(group)
        if len(sizes) != world or sizes[rank] != b or min(sizes) < 0:
            raise InvalidArgumentError(
                f"batch_sizes: expected {world} sizes with this rank's ({rank}) equal to B = {b}, "
                f"got {list(batch_sizes)}"
            )
    pos_all, offset = all_gather_with_grad(positives, group, sizes)
    neg_all = [all_gather_with_grad(n, group, sizes)[0] for n in neg_cols]
    q_all = all_gather_with_grad(queries, group, sizes)[0] if symmetric else queries
    dup_all = all_gather_with_grad(duplicates, group, sizes)[0] if duplicates is not None else None
    return _GlobalBatch(pos_all, neg_all, q_all, dup_all, offset, sum(sizes), len(sizes))


def _info_nce_rows(
    queries: Tensor,
    positives: Tensor,
    duplicates: Tensor | None,
    batch: _GlobalBatch,
    scale: Any,
    similarity: str,
    symmetric: bool,
) -> Tensor:
    """The loss of each local row (``[B]``), duplicates masked out of the candidates."""
    b = queries.shape[0]
    docs = (
        torch.cat([batch.positives, *batch.negatives], dim=0)
        if batch.negatives
        else batch.positives
    )
    logits = _similarity(queries, docs, similarity) * scale  # [B, total·(1+n)]
    rows = torch.arange(b, device=queries.device)
    targets = rows + batch.offset
    mask = None
    if batch.duplicates is not None:
        assert duplicates is not None
        same = duplicates[:, None] == batch.duplicates[None, :]  # [B, total]
        same[rows, targets] = False
        mask = same
        pad = torch.zeros((b, docs.shape[0] - batch.total), dtype=torch.bool, device=queries.device)
        logits = logits.masked_fill(torch.cat([same, pad], dim=1), float("-inf"))
    loss = F.cross_entropy(logits, targets, reduction="none")
    if symmetric:
        back = _similarity(positives, batch.queries, similarity) * scale  # [B, total]
        if mask is not None:
            back = back.masked_fill(mask, float("-inf"))
        loss = 0.5 * loss + 0.5 * F.cross_entropy(back, targets, reduction="none")
    return loss


class InfoNCELoss(nn.Module):
    """:func:`info_nce_loss` as a module: ``InfoNCELoss(...)(queries, positives, negatives)``.

    ``scale`` is fixed unless ``learnable_scale=True``, which learns ``log scale`` (initialised
    from ``scale``/``temperature``; CLIP-style, clamped to at most ``max_scale``).
    """

    def __init__(
        self,
        *,
        scale: float | None = None,
        temperature: float | None = None,
        similarity: Literal["cosine", "dot"] = "cosine",
        symmetric: bool = False,
        gather: bool = False,
        group: Any = None,
        learnable_scale: bool = False,
        max_scale: float = 100.0,
    ) -> None:
        super().__init__()
        value = _resolve_scale(scale, temperature)
        self.similarity = similarity
        self.symmetric = symmetric
        self.gather = gather
        self.group = group
        self.max_scale = max_scale
        log_scale = torch.tensor(float(value)).log()
        if learnable_scale:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    @property
    def scale(self) -> float:
        return float(self.log_scale.detach().exp().clamp(max=self.max_scale))

    def forward(
        self,
        queries: Tensor,
        positives: Tensor,
        negatives: Tensor | Sequence[Tensor] | None = None,
        duplicates: Tensor | None = None,
    ) -> Tensor:
        return info_nce_loss(
            queries,
            positives,
            negatives,
            scale=self.log_scale.exp().clamp(max=self.max_scale),
            similarity=self.similarity,
            symmetric=self.symmetric,
            gather=self.gather,
            group=self.group,
            duplicates=duplicates,
        )

    def extra_repr(self) -> str:
        return (
            f"scale={self.scale:.4g}, similarity={self.similarity!r}, symmetric={self.symmetric}, "
            f"gather={self.gather}"
        )


# -- SimCSE ------------------------------------------------------------------------------------


class SimCSE(nn.Module):
    """Unsupervised SimCSE (Gao et al. 2021): two dropout views of the same batch are each
    other's positives, the rest of the batch negatives.

    ``SimCSE(encoder)(*inputs)`` runs ``encoder(*inputs)`` twice in training mode (dropout
    draws two different masks) and returns :func:`info_nce_loss` of the two ``[B, d]`` views,
    cosine similarity, temperature 0.05 by default.
    """

    def __init__(
        self,
        encoder: Callable[..., Tensor],
        *,
        temperature: float = 0.05,
        symmetric: bool = False,
        gather: bool = False,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.temperature = temperature
        self.symmetric = symmetric
        self.gather = gather

    def views(self, *args: Any, **kwargs: Any) -> tuple[Tensor, Tensor]:
        """The two embeddings of the same inputs (different dropout masks in training mode)."""
        return self.encoder(*args, **kwargs), self.encoder(*args, **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        z1, z2 = self.views(*args, **kwargs)
        return info_nce_loss(
            z1, z2, temperature=self.temperature, symmetric=self.symmetric, gather=self.gather
        )


# -- CPC ---------------------------------------------------------------------------------------


def cpc_loss(
    z: Tensor,
    c: Tensor,
    weights: Tensor,
    *,
    negatives: Literal["batch", "time", "all"] = "batch",
    mask: Tensor | None = None,
    return_accuracy: bool = False,
) -> Any:
    """Contrastive predictive coding (van den Oord et al. 2018): multi-step InfoNCE.

    Axes: ``z`` ``[B, T, Dz]`` are the encodings of ``T`` steps (tokens, sentences…), ``c``
    ``[B, T, Dc]`` the autoregressive contexts (``c[:, t]`` has seen steps ``≤ t``), and
    ``weights`` ``[K, Dz, Dc]`` one bias-free bilinear map per prediction step ``k = 1..K``.
    For every position ``t`` with a target ``t + k`` in range, the prediction
    ``ẑ = W_k c[b, t]`` scores candidates ``z_j`` by ``z_jᵀ ẑ``; the loss is the cross-entropy
    of the true ``z[b, t + k]`` among the candidates — **a softmax over candidates for a fixed
    context**, the paper's direction. Candidates (the negatives) are:

    - ``"batch"``: ``z[b', t + k]`` for every sequence ``b'`` of the batch (same step);
    - ``"time"``: ``z[b, t']`` for every target step ``t'`` of the same sequence;
    - ``"all"``: every target position ``z[b', t']`` of the batch.

    The loss is the mean over positions of each step, then over steps. ``mask`` ``[B, T]``
    (True = real step) removes padded steps both as positions and as candidates.
    With ``return_accuracy``, also returns the share of positions whose true target scores
    highest (per step, ``[K]``). A step without any valid position counts 0 (with a gradient).

    No host synchronisation: the scores are computed for every position anyway, so the padded
    ones are not selected out (a data-dependent shape) but weighted 0, and the counts stay on
    the device; the loss compiles with ``torch.compile(..., fullgraph=True)``.
    """
    mask = _check_cpc(z, c, weights, negatives, mask)
    losses, accuracies = [], []
    for k in range(1, weights.shape[0] + 1):
        logits, gold, keep = _cpc_step(z, c, weights[k - 1], mask, k, negatives)
        count = keep.sum().clamp(min=1)
        # rows of padded positions may be all -inf: zero them so no NaN reaches the gradient
        logits = logits.masked_fill(~keep[:, None], 0.0)
        total = F.cross_entropy(logits, gold.masked_fill(~keep, -100), reduction="sum")
        losses.append(total / count)
        accuracies.append(((logits.argmax(dim=1) == gold) & keep).sum() / count)
    loss = torch.stack(losses).mean()
    if return_accuracy:
        return loss, torch.stack(accuracies).detach()
    return loss


def _check_cpc(
    z: Tensor, c: Tensor, weights: Tensor, negatives: str, mask: Tensor | None
) -> Tensor:
    """The arguments of :func:`cpc_loss` checked; returns the boolean mask ``[B, T]``."""
    if z.dim() != 3 or c.dim() != 3 or z.shape[:2] != c.shape[:2]:
        raise ValueError(
            f"z, c: expected [B, T, Dz] and [B, T, Dc] with the same B, T, got "
            f"{tuple(z.shape)} and {tuple(c.shape)}"
        )
    bsz, steps_t, dz = z.shape
    dc = c.shape[2]
    if weights.dim() != 3 or tuple(weights.shape[1:]) != (dz, dc):
        raise ValueError(f"weights: expected [K, {dz}, {dc}], got {tuple(weights.shape)}")
    k_steps = weights.shape[0]
    if k_steps < 1 or k_steps >= steps_t:
        raise ValueError(f"weights: K = {k_steps} steps needs 1 <= K < T = {steps_t}")
    if negatives not in ("batch", "time", "all"):
        raise ValueError(f"negatives: must be 'batch', 'time' or 'all', got {negatives!r}")
    if mask is None:
        return torch.ones((bsz, steps_t), dtype=torch.bool, device=z.device)
    if mask.shape != (bsz, steps_t):
        raise ValueError(f"mask: expected shape {(bsz, steps_t)}, got {tuple(mask.shape)}")
    return mask.bool()


def _cpc_step(
    z: Tensor, c: Tensor, weight: Tensor, mask: Tensor, k: int, negatives: str
) -> tuple[Tensor, Tensor, Tensor]:
    """``(logits, gold, keep)`` of prediction step ``k`` (map ``weight`` = ``W_k``) over every
    position, one row each; ``keep`` marks the valid ones (context and target real)."""
    bsz, steps_t, dz = z.shape
    n = steps_t - k
    pred = c[:, :n] @ weight.T  # [B, n, Dz]: W_k c_t
    target = z[:, k:]  # [B, n, Dz]
    valid = mask[:, :n] & mask[:, k:]  # context and target both real
    if negatives == "batch":
        # scores[t, b, b'] = z[b', t+k] · pred[b, t]
        scores = torch.einsum("btd,ctd->tbc", pred, target)
        cand_ok = mask[:, k:].T[:, None, :]  # [n, 1, B]
        scores = scores.masked_fill(~cand_ok, float("-inf"))
        labels = torch.arange(bsz, device=z.device).expand(n, bsz)
        keep = valid.T  # [n, B]
        return scores.reshape(n * bsz, bsz), labels.reshape(-1), keep.reshape(-1)
    if negatives == "time":
        # scores[b, t, t'] = z[b, t'+k] · pred[b, t]
        scores = torch.einsum("btd,bsd->bts", pred, target)
        scores = scores.masked_fill(~mask[:, k:][:, None, :], float("-inf"))
        labels = torch.arange(n, device=z.device).expand(bsz, n)
        return scores.reshape(bsz * n, n), labels.reshape(-1), valid.reshape(-1)
    flat = target.reshape(bsz * n, dz)
    scores = pred.reshape(bsz * n, dz) @ flat.T  # [B·n, B·n]
    scores = scores.masked_fill(~mask[:, k:].reshape(1, -1), float("-inf"))
    labels = torch.arange(bsz * n, device=z.device)
    return scores, labels, valid.reshape(-1)


class CPCHead(nn.Module):
    """The ``K`` bias-free bilinear maps ``W_k`` of CPC, ``weight`` ``[K, Dz, Dc]``;
    ``forward(z, c)`` returns :func:`cpc_loss`."""

    def __init__(
        self,
        encoding_dim: int,
        context_dim: int,
        steps: int,
        *,
        negatives: Literal["batch", "time", "all"] = "batch",
    ) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"steps: must be >= 1, got {steps}")
        self.negatives = negatives
        self.weight = nn.Parameter(torch.empty(steps, encoding_dim, context_dim))
        for w in self.weight:
            nn.init.xavier_uniform_(w)

    def forward(
        self, z: Tensor, c: Tensor, mask: Tensor | None = None, return_accuracy: bool = False
    ) -> Any:
        return cpc_loss(
            z, c, self.weight, negatives=self.negatives, mask=mask, return_accuracy=return_accuracy
        )
