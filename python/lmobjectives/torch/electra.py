"""ELECTRA replaced-token detection as one module: :class:`ElectraRTD`.

Given a batch masked ELECTRA's way (:meth:`lmobjectives.MLMCollator.electra`), the generator
(a small MLM) predicts the masked tokens; replacements are sampled **exactly** from
softmax(logits/τ) with the Gumbel-max trick and scattered, without gradient, into the original
sequence; the discriminator labels every real token original (0) or replaced (1). A sample
equal to the original counts as original (ELECTRA), or as replaced with
``equal_counts_as_original=False`` (Electric). Loss = ``gen_weight``·MLM + ``disc_weight``·BCE
over all real tokens (1.0 and 50.0).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lmobjectives._constants import IGNORE_INDEX
from lmobjectives.torch import labelled_positions

__all__ = [
    "ElectraOutput",
    "ElectraRTD",
    "generator_config",
    "gumbel_sample",
    "share_embeddings",
]


def gumbel_sample(
    logits: torch.Tensor, temperature: float = 1.0, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One exact sample per row of ``logits`` (``[..., vocab]``) from softmax(logits/τ):
    ``argmax(logits/τ + G)`` with G i.i.d. standard Gumbel (``-log E``, E ~ Exp(1))."""
    if not temperature > 0:
        raise ValueError(f"temperature: must be positive, got {temperature}")
    exponential = torch.empty_like(logits, dtype=torch.float32).exponential_(generator=generator)
    return _gumbel_argmax(logits, temperature, exponential)


def _gumbel_argmax(logits: torch.Tensor, temperature: float, exponential: torch.Tensor) -> Any:
    return (logits.float() / temperature - exponential.log()).argmax(dim=-1)


@dataclass
class ElectraOutput:
    """What one :class:`ElectraRTD` step computed."""

    loss: torch.Tensor
    mlm_loss: torch.Tensor
    disc_loss: torch.Tensor
    disc_logits: torch.Tensor  # [batch, seq]
    is_replaced: torch.Tensor  # [batch, seq] float 0/1 labels of the discriminator
    corrupted_ids: torch.Tensor  # [batch, seq] what the discriminator read
    gen_accuracy: torch.Tensor  # share of masked positions the generator got right (argmax)


def _logits(output: Any) -> torch.Tensor:
    return output.logits if hasattr(output, "logits") else output


class ElectraRTD(nn.Module):
    """ELECTRA pretraining: generator + discriminator in one step.

    Args:
        generator: an MLM taking ``input_ids``/``attention_mask``/``token_type_ids`` keywords
            and returning ``[batch, seq, vocab]`` logits (or an object with ``.logits``), e.g.
            ``transformers.ElectraForMaskedLM`` or :class:`TinyEncoder` with ``head="mlm"``
            (whose ``masked_logits`` projects only the masked positions onto the vocabulary).
        discriminator: the same call returning ``[batch, seq]`` logits (or ``.logits``), e.g.
            ``transformers.ElectraForPreTraining`` or :class:`TinyEncoder` with
            ``head="token"``.
        gen_weight, disc_weight: loss weights (1.0, 50.0).
        temperature: sampling temperature (1.0).
        equal_counts_as_original: label a sample equal to the original 0 (ELECTRA, default) or
            1 (Electric).
        disallow_correct: never sample the original token (the reference's option, off).
        tie_embeddings: share token/position/type embeddings between the two (ELECTRA's
            default), see :func:`share_embeddings`.
        max_predictions: the most masked positions a row can have (e.g. the collator's
            ``max_predictions``, or ``round(p·seq)`` for an exact budget). ``None`` (default)
            selects the masked positions with a boolean mask — a data-dependent shape, so one
            host synchronisation per step on an accelerator and a graph break under
            ``torch.compile``. An int gathers that many slots per row
            (:func:`~lmobjectives.torch.labelled_positions`): no sync, the same losses,
            corrupted ids and (for the same ``generator``, on the CPU) the same samples; a row
            with more masked positions is an error.

    ``forward(input_ids, labels, attention_mask=None, token_type_ids=None, generator=None)``:
    ``input_ids`` is the masked batch, ``labels`` the original ids at masked positions and
    −100 elsewhere (what the collator returns); ``generator`` is an optional
    ``torch.Generator`` for the Gumbel noise.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        *,
        gen_weight: float = 1.0,
        disc_weight: float = 50.0,
        temperature: float = 1.0,
        equal_counts_as_original: bool = True,
        disallow_correct: bool = False,
        tie_embeddings: bool = True,
        max_predictions: int | None = None,
    ) -> None:
        super().__init__()
        if max_predictions is not None and (
            isinstance(max_predictions, bool)
            or not isinstance(max_predictions, int)
            or max_predictions < 1
        ):
            raise ValueError(
                f"max_predictions: expected None or an int >= 1, got {max_predictions!r}"
            )
        self.max_predictions = max_predictions
        if not temperature > 0:
            raise ValueError(f"temperature: must be positive, got {temperature}")
        for name, w in (("gen_weight", gen_weight), ("disc_weight", disc_weight)):
            if not w >= 0:
                raise ValueError(f"{name}: must be non-negative, got {w}")
        self.generator = generator
        self.discriminator = discriminator
        self.gen_weight = gen_weight
        self.disc_weight = disc_weight
        self.temperature = temperature
        self.equal_counts_as_original = equal_counts_as_original
        self.disallow_correct = disallow_correct
        if tie_embeddings:
            share_embeddings(generator, discriminator)

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> ElectraOutput:
        if labels.shape != input_ids.shape:
            raise ValueError(
                f"labels: shape {tuple(labels.shape)} does not match input_ids "
                f"{tuple(input_ids.shape)}"
            )
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        kw = {"attention_mask": attention_mask}
        if token_type_ids is not None:
            kw["token_type_ids"] = token_type_ids
        masked = labels != IGNORE_INDEX
        original = torch.where(masked, labels, input_ids)

        step = self._mask_step if self.max_predictions is None else self._slot_step
        mlm_loss, gen_accuracy, corrupted, is_replaced = step(
            input_ids, labels, masked, original, kw, generator
        )
        disc_logits = _logits(self.discriminator(input_ids=corrupted, **kw))
        if disc_logits.dim() == 3 and disc_logits.shape[-1] == 1:
            disc_logits = disc_logits.squeeze(-1)
        # mean over the real tokens as a weighted sum: no boolean indexing (a host sync)
        real = attention_mask.to(torch.float32)
        per_token = F.binary_cross_entropy_with_logits(
            disc_logits.float(), is_replaced, reduction="none"
        )
        disc_loss = (per_token * real).sum() / real.sum().clamp(min=1)
        loss = self.gen_weight * mlm_loss + self.disc_weight * disc_loss
        return ElectraOutput(
            loss=loss,
            mlm_loss=mlm_loss,
            disc_loss=disc_loss,
            disc_logits=disc_logits,
            is_replaced=is_replaced,
            corrupted_ids=corrupted,
            gen_accuracy=gen_accuracy,
        )

    def _mask_step(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        masked: torch.Tensor,
        original: torch.Tensor,
        kw: dict[str, torch.Tensor],
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The generator's side with the masked positions selected by ``masked``:
        ``(mlm_loss, gen_accuracy, corrupted, is_replaced)``."""
        masked_logits = self._generator_logits(input_ids, masked, kw)  # [n_masked, vocab]
        targets = original[masked]  # data-dependent shape: one sync on a device
        if masked_logits.shape[0] == 0:
            mlm_loss = masked_logits.sum() * 0.0
            gen_accuracy = torch.zeros((), device=input_ids.device)
        else:
            mlm_loss = F.cross_entropy(masked_logits.float(), targets)
            gen_accuracy = (masked_logits.argmax(-1) == targets).float().mean()
        corrupted, is_replaced = self._corrupt(masked_logits, targets, original, masked, generator)
        return mlm_loss, gen_accuracy, corrupted, is_replaced

    def _slot_step(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        masked: torch.Tensor,
        original: torch.Tensor,
        kw: dict[str, torch.Tensor],
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`_mask_step` on ``max_predictions`` fixed slots per row (no host sync)."""
        assert self.max_predictions is not None
        positions, targets = labelled_positions(labels, self.max_predictions)
        slot_logits = self._generator_logits(input_ids, positions, kw)  # [B, P, vocab]
        slot = targets != IGNORE_INDEX
        count = slot.sum().clamp(min=1)
        total = F.cross_entropy(
            slot_logits.reshape(-1, slot_logits.shape[-1]).float(),
            targets.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        gen_accuracy = ((slot_logits.argmax(-1) == targets) & slot).sum() / count
        corrupted, is_replaced = self._corrupt_slots(
            slot_logits, targets, positions, original, masked, generator
        )
        return total / count, gen_accuracy, corrupted, is_replaced

    def _generator_logits(
        self, input_ids: torch.Tensor, masked: torch.Tensor, kw: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """The generator's logits at the masked positions. A generator with a
        ``masked_logits(input_ids, masked, **kw)`` method (:class:`TinyEncoder`) projects only
        those positions onto the vocabulary, as ELECTRA's reference does; any other is run on
        every position and indexed."""
        masked_logits = getattr(self.generator, "masked_logits", None)
        if callable(masked_logits) and getattr(self.generator, "head_kind", None) == "mlm":
            return masked_logits(input_ids, masked, **kw)  # type: ignore[no-any-return]
        logits = _logits(self.generator(input_ids=input_ids, **kw))
        if masked.dtype == torch.bool:
            return logits[masked]
        return logits.gather(1, masked.unsqueeze(-1).expand(*masked.shape, logits.shape[-1]))

    @torch.no_grad()
    def _corrupt(
        self,
        masked_logits: torch.Tensor,
        targets: torch.Tensor,
        original: torch.Tensor,
        masked: torch.Tensor,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The generator's samples scattered into the original ids, without gradient:
        ``(corrupted ids, is_replaced as float)``."""
        sample_logits = masked_logits.detach()
        if self.disallow_correct:
            sample_logits = sample_logits.scatter(
                -1, targets.unsqueeze(-1), torch.finfo(sample_logits.dtype).min
            )
        sampled = gumbel_sample(sample_logits, self.temperature, generator=generator)
        corrupted = original.clone()
        corrupted[masked] = sampled.to(corrupted.dtype)
        if self.equal_counts_as_original:
            is_replaced = (corrupted != original) & masked
        else:
            is_replaced = masked.clone()
        return corrupted, is_replaced.float()

    @torch.no_grad()
    def _corrupt_slots(
        self,
        slot_logits: torch.Tensor,
        targets: torch.Tensor,
        positions: torch.Tensor,
        original: torch.Tensor,
        masked: torch.Tensor,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`_corrupt` for the fixed ``[B, P]`` slots of :func:`labelled_positions`. The
        Gumbel noise is drawn for ``B·P`` rows and row ``r`` goes to the ``r``-th masked
        position in row-major order, the row :meth:`_corrupt` gives it: a CPU generator
        draws the same prefix either way, so the samples are the same."""
        b, p, vocab = slot_logits.shape
        slot = targets != IGNORE_INDEX
        sample_logits = slot_logits.detach()
        if self.disallow_correct:
            sample_logits = sample_logits.scatter(
                -1, targets.clamp(min=0).unsqueeze(-1), torch.finfo(sample_logits.dtype).min
            )
        exponential = torch.empty(
            (b * p, vocab), dtype=torch.float32, device=slot_logits.device
        ).exponential_(generator=generator)
        counts = slot.sum(-1)
        first = counts.cumsum(0) - counts  # rank of each row's first masked position
        rank = (first[:, None] + torch.arange(p, device=counts.device)).clamp(max=b * p - 1)
        noise = exponential.index_select(0, rank.reshape(-1)).reshape(b, p, vocab)
        sampled = _gumbel_argmax(sample_logits, self.temperature, noise)
        corrupted = original.clone()
        keep = original.gather(1, positions)
        # positions are distinct within a row: the scatter is deterministic
        corrupted.scatter_(1, positions, torch.where(slot, sampled.to(keep.dtype), keep))
        if self.equal_counts_as_original:
            is_replaced = (corrupted != original) & masked
        else:
            is_replaced = masked.clone()
        return corrupted, is_replaced.float()


def share_embeddings(generator: Any, discriminator: Any) -> None:
    """Makes the generator use the discriminator's embedding module (token, position and type
    embeddings: one set of parameters, as ELECTRA does) and ties its output layer to the shared
    token embeddings. Works for ``transformers`` ELECTRA models (same ``embedding_size``) and
    :class:`~lmobjectives.torch.models.TinyEncoder`."""
    g, d = generator, discriminator
    if hasattr(g, "electra") and hasattr(d, "electra"):
        shared = d.electra.embeddings
        mine = g.electra.embeddings.word_embeddings.weight.shape
        theirs = shared.word_embeddings.weight.shape
        if mine != theirs:
            raise ValueError(
                "share_embeddings: generator and discriminator embeddings differ in shape "
                f"({tuple(mine)} vs {tuple(theirs)}); give both the same embedding_size"
            )
        g.electra.embeddings = shared
        if getattr(g, "generator_lm_head", None) is not None:
            g.generator_lm_head.weight = shared.word_embeddings.weight
        return
    if hasattr(g, "embeddings") and hasattr(d, "embeddings") and hasattr(g, "tie_output"):
        if g.embeddings.token.weight.shape != d.embeddings.token.weight.shape:
            raise ValueError("share_embeddings: embedding shapes differ")
        g.embeddings = d.embeddings
        g.tie_output()
        return
    raise TypeError(
        "share_embeddings: expected transformers ELECTRA models or lmobjectives TinyEncoders, "
        f"got {type(generator).__name__} and {type(discriminator).__name__}"
    )


def generator_config(discriminator_config: Any, fraction: float = 0.25) -> Any:
    """A generator config at ``fraction`` of the discriminator's width (ELECTRA: ¼): hidden
    size scaled, ``max(1, hidden // 64)`` heads, feed-forward 4× hidden, same depth and
    embedding size (so embeddings can be shared). Works on ``transformers.ElectraConfig``."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction: must be in (0, 1], got {fraction}")
    cfg = copy.deepcopy(discriminator_config)
    heads = max(1, int(cfg.hidden_size * fraction) // 64)
    hidden = max(heads, int(cfg.hidden_size * fraction) // heads * heads)
    cfg.hidden_size = hidden
    cfg.num_attention_heads = heads
    cfg.intermediate_size = 4 * hidden
    return cfg
