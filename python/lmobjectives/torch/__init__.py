"""Thin PyTorch wrappers. This is the only part of lmobjectives that needs torch (importing
it without torch raises :class:`~lmobjectives._optional.MissingDependencyError`).

- :func:`to_torch`: a batch of NumPy arrays as tensors sharing the same memory.
- :class:`MLMHead` and :func:`masked_lm_loss`: the MLM objective's model side; the head
  projects only the labelled positions (about 15% of tokens), not the whole sequence;
  :func:`labelled_positions` selects them into a fixed-size index without a host sync.
- :class:`SentencePairHead` and :func:`sentence_pair_loss`: NSP/SOP.
- :mod:`lmobjectives.torch.electra`: ELECTRA replaced-token detection (:class:`ElectraRTD`).
- :mod:`lmobjectives.torch.models`: small models from a few numbers (:class:`TinyEncoder`).
- :mod:`lmobjectives.torch.oracle`: a seeded LSTM oracle for synthetic-corpus experiments.
- :mod:`lmobjectives.torch.gan`: text GANs (SeqGAN, LeakGAN, MaskGAN) on the oracle benchmark.
- :func:`seq2seq_loss`: the denoising objectives' (T5, BART, UL2) token cross-entropy over
  the decoder's labelled positions, with optional label smoothing.
- Contrastive losses (:mod:`lmobjectives.torch.contrastive`): :func:`info_nce_loss` /
  :class:`InfoNCELoss` (in-batch, hard and cross-rank negatives), :func:`cpc_loss` /
  :class:`CPCHead`, :class:`SimCSE`.
"""

from __future__ import annotations

from typing import Any

from lmobjectives._constants import IGNORE_INDEX
from lmobjectives._optional import require
from lmobjectives._torch_bridge import SharedMemoryAllocator, to_torch

# The one check of the subpackage: every module of lmobjectives.torch imports this package
# first, so without torch `import lmobjectives.torch...` names the extra to install.
require("torch", "lmobjectives.torch")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from lmobjectives._core import InvalidArgumentError  # noqa: E402
from lmobjectives.torch._checks import check_token_ids, reads_values  # noqa: E402

__all__ = [
    "IGNORE_INDEX",
    "CPCHead",
    "ElectraRTD",
    "InfoNCELoss",
    "MLMHead",
    "SentencePairHead",
    "SharedMemoryAllocator",
    "SimCSE",
    "TinyEncoder",
    "TinySeq2Seq",
    "all_gather_with_grad",
    "cpc_loss",
    "info_nce_loss",
    "labelled_positions",
    "masked_lm_loss",
    "sentence_pair_loss",
    "seq2seq_loss",
    "to_torch",
]


def masked_lm_loss(
    logits: torch.Tensor, labels: torch.Tensor, *, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Mean cross-entropy over labelled positions.

    ``logits`` is ``[..., vocab]`` for every position (labels ``[...]``), or ``[n, vocab]``
    for just the ``n`` labelled positions (as :class:`MLMHead` returns them), in which case
    ``labels`` may be the full label tensor. A batch without any label gives a loss of 0
    that still has a gradient (not NaN, unlike ``F.cross_entropy``).

    No host synchronisation: the labelled positions are never counted on the host, so the
    loss runs asynchronously on an accelerator and compiles with ``torch.compile(...,
    fullgraph=True)``. Labels outside ``[0, vocab)`` other than ``ignore_index`` raise
    :class:`~lmobjectives.TokenIdError` naming the first bad position for CPU tensors; on
    other devices (where finding it would be a host sync) the cross-entropy kernel asserts
    the range on the device.
    """
    if logits.dim() < 2:
        raise ValueError(f"logits: expected [..., vocab], got shape {tuple(logits.shape)}")
    if labels.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"labels: expected an integer tensor, got {labels.dtype}")
    vocab = logits.shape[-1]
    check_token_ids(labels, vocab, "labels", ignore_index)
    flat_labels = labels.reshape(-1)
    flat_logits = logits.reshape(-1, vocab)
    keep = flat_labels != ignore_index
    if flat_logits.shape[0] == flat_labels.shape[0]:
        targets = flat_labels
    else:
        targets, keep = _labelled_targets(flat_labels, keep, flat_logits.shape[0])
    total = F.cross_entropy(
        flat_logits.float(), targets.long(), ignore_index=ignore_index, reduction="sum"
    )
    return total / keep.sum().clamp(min=1)


def _labelled_targets(
    flat_labels: torch.Tensor, keep: torch.Tensor, rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The targets of ``rows`` logits computed for the labelled positions only, in order,
    without a host sync: a stable sort puts the labelled positions first (their count is
    checked against ``rows`` for CPU tensors only)."""
    if rows > flat_labels.shape[0]:
        raise ValueError(
            f"logits: {rows} rows match neither the {flat_labels.shape[0]} positions of "
            "labels nor its labelled positions"
        )
    if reads_values(keep):
        labelled = int(keep.sum())
        if labelled != rows:
            raise ValueError(
                f"logits: {rows} rows match neither the {flat_labels.shape[0]} positions of "
                f"labels nor its {labelled} labelled positions"
            )
    order = torch.argsort((~keep).to(torch.uint8), stable=True)[:rows]
    return flat_labels[order], keep[order]


def labelled_positions(
    labels: torch.Tensor, max_predictions: int, *, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor]:
    """The labelled positions of each row of ``labels`` (``[..., seq]``) as a fixed-size index,
    without a host synchronisation: ``(positions, targets)``, both ``[..., max_predictions]``.

    Slot ``j`` of a row holds its ``j``-th labelled position (in order) and that label; the
    slots past a row's last label hold distinct unlabelled positions with target
    ``ignore_index``, so ``hidden.gather`` at ``positions`` followed by a cross-entropy that
    ignores ``ignore_index`` gives exactly the loss over the labelled positions. Google BERT's
    ``masked_lm_positions`` padded to ``max_predictions_per_seq``, computed on the device
    (a stable sort) instead of by the data pipeline.

    A row with more than ``max_predictions`` labels raises
    :class:`~lmobjectives.InvalidArgumentError` for CPU tensors; on other devices (where
    counting on the host would be the sync this avoids) a device-side assertion
    (``torch._assert_async``) fails instead, so labels are never dropped silently.

    >>> import torch
    >>> labels = torch.tensor([[-100, 7, -100, 9], [5, -100, -100, -100]])
    >>> positions, targets = labelled_positions(labels, 2)
    >>> positions.tolist(), targets.tolist()
    ([[1, 3], [0, 1]], [[7, 9], [5, -100]])
    """
    if isinstance(max_predictions, bool) or not isinstance(max_predictions, int):
        raise InvalidArgumentError(
            f"max_predictions: expected an int, got {type(max_predictions).__name__}"
        )
    if labels.dim() < 1:
        raise InvalidArgumentError("labels: expected at least one dimension [..., seq]")
    if not 1 <= max_predictions <= labels.shape[-1]:
        raise InvalidArgumentError(
            f"max_predictions: must be in [1, {labels.shape[-1]}] (the positions per row), "
            f"got {max_predictions}"
        )
    keep = labels != ignore_index
    counts = keep.sum(-1)
    if reads_values(labels):
        over = counts > max_predictions
        if bool(over.any()):
            row = int(over.reshape(-1).to(torch.uint8).argmax())
            raise InvalidArgumentError(
                f"labels: row {row} has {int(counts.reshape(-1)[row])} labelled positions, "
                f"more than max_predictions={max_predictions}"
            )
    else:
        torch._assert_async(
            (counts <= max_predictions).all(), "labels: more labels than max_predictions"
        )
    order = torch.argsort((~keep).to(torch.uint8), dim=-1, stable=True)
    positions = order[..., :max_predictions]
    return positions, labels.gather(-1, positions)


class MLMHead(nn.Module):
    """BERT's MLM prediction head (dense → GELU → LayerNorm → decoder), evaluated only at
    the labelled positions.

    Args:
        hidden_size: encoder width.
        vocab_size: output classes.
        embedding: optional input embedding (``nn.Embedding``) whose weight the decoder ties
            to, as BERT does.
        layer_norm_eps: LayerNorm epsilon.
        max_predictions: the most labelled positions a row can have (Google BERT's
            ``max_predictions_per_seq``); ``None`` (default) selects them with a boolean mask.

    ``forward(hidden_states, labels)`` returns ``(loss, logits)``. With
    ``max_predictions=None`` the ``logits`` are ``[n_labelled, vocab]`` in row-major order —
    a shape that depends on the labels, so selecting them is one host synchronisation (a
    ``nonzero``) on an accelerator and a graph break under ``torch.compile``. With
    ``max_predictions=P`` the head gathers a fixed ``[..., P]`` slots per row
    (:func:`labelled_positions`, no sync, compiles with ``fullgraph=True``) and the
    ``logits`` are ``[..., P, vocab]``, slot ``j`` of a row being its ``j``-th labelled
    position; the loss is the same, and the FLOPs are those of ``P`` positions per row. A row
    with more than ``P`` labels is an error (see :func:`labelled_positions`).
    ``forward(hidden_states)`` returns logits for every position.
    """

    def __init__(
        self,
        hidden_size: int,
        vocab_size: int,
        *,
        embedding: nn.Embedding | None = None,
        layer_norm_eps: float = 1e-12,
        max_predictions: int | None = None,
    ) -> None:
        super().__init__()
        if max_predictions is not None and (
            isinstance(max_predictions, bool)
            or not isinstance(max_predictions, int)
            or max_predictions < 1
        ):
            raise InvalidArgumentError(
                f"max_predictions: expected None or an int >= 1, got {max_predictions!r}"
            )
        self.max_predictions = max_predictions
        self.transform = nn.Linear(hidden_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.decoder = nn.Linear(hidden_size, vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        if embedding is not None:
            if tuple(embedding.weight.shape) != (vocab_size, hidden_size):
                raise ValueError(
                    f"embedding: weight shape {tuple(embedding.weight.shape)} does not match "
                    f"(vocab_size, hidden_size) = {(vocab_size, hidden_size)}"
                )
            self.decoder.weight = embedding.weight

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        h = self.norm(F.gelu(self.transform(hidden)))
        return self.decoder(h) + self.bias

    def forward(self, hidden_states: torch.Tensor, labels: torch.Tensor | None = None) -> Any:
        if labels is None:
            return self.logits(hidden_states)
        if labels.shape != hidden_states.shape[:-1]:
            raise ValueError(
                f"labels: shape {tuple(labels.shape)} does not match hidden_states "
                f"{tuple(hidden_states.shape[:-1])}"
            )
        check_token_ids(labels, self.bias.shape[0], "labels", IGNORE_INDEX)
        if self.max_predictions is not None:
            positions, targets = labelled_positions(labels, self.max_predictions)
            width = hidden_states.shape[-1]
            picked = hidden_states.gather(
                -2, positions.unsqueeze(-1).expand(*positions.shape, width)
            )
            logits = self.logits(picked)
            return masked_lm_loss(logits, targets), logits
        keep = labels != IGNORE_INDEX
        logits = self.logits(hidden_states[keep])  # data-dependent shape: one sync on a device
        return masked_lm_loss(logits, labels), logits

    def extra_repr(self) -> str:
        return "" if self.max_predictions is None else f"max_predictions={self.max_predictions}"


def sentence_pair_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the NSP/SOP decision (``logits`` ``[batch, 2]``, ``labels`` ``[batch]``
    with 1 = random next / swapped, as :class:`~lmobjectives.SentencePairDataset` labels them)."""
    if logits.dim() != 2 or logits.shape[-1] != 2:
        raise ValueError(f"logits: expected [batch, 2], got shape {tuple(logits.shape)}")
    if labels.shape != logits.shape[:1]:
        raise ValueError(
            f"labels: expected shape {tuple(logits.shape[:1])}, got {tuple(labels.shape)}"
        )
    if labels.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"labels: expected an integer tensor, got {labels.dtype}")
    return F.cross_entropy(logits.float(), labels.long())


class SentencePairHead(nn.Module):
    """BERT's next-sentence (or ALBERT's sentence-order) head: the ``[CLS]`` hidden state
    through a tanh pooler and a two-way classifier.

    ``forward(hidden_states, labels=None)`` returns logits ``[batch, 2]``, or ``(loss,
    logits)`` when ``labels`` (``next_sentence_label``/``sentence_order_label``) are given.
    """

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.pooler = nn.Linear(hidden_size, hidden_size)
        self.classifier = nn.Linear(hidden_size, 2)

    def forward(self, hidden_states: torch.Tensor, labels: torch.Tensor | None = None) -> Any:
        if hidden_states.dim() != 3:
            raise ValueError(
                f"hidden_states: expected [batch, seq, hidden], got {tuple(hidden_states.shape)}"
            )
        logits = self.classifier(torch.tanh(self.pooler(hidden_states[:, 0])))
        if labels is None:
            return logits
        return sentence_pair_loss(logits, labels), logits


def seq2seq_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    label_smoothing: float = 0.0,
    ignore_index: int = IGNORE_INDEX,
    reduction: str = "mean",
) -> torch.Tensor:
    """Token cross-entropy of a decoder's ``logits`` ``[batch, length, vocab]`` against
    ``labels`` ``[batch, length]`` (``-100`` = ignore), as the batches of
    :mod:`lmobjectives.denoising` carry them.

    ``reduction="mean"`` averages over the labelled tokens of the whole batch (what
    ``T5ForConditionalGeneration`` and ``BartForConditionalGeneration`` return as ``loss``);
    ``"sum"`` adds them up (divide by a token count of your own, e.g. across gradient
    accumulation steps). ``label_smoothing`` spreads that much probability mass uniformly over
    the vocabulary (fairseq's BART recipe uses 0.1). A batch without labels gives 0 with a
    gradient.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits: expected [batch, length, vocab], got {tuple(logits.shape)}")
    if labels.shape != logits.shape[:2]:
        raise ValueError(
            f"labels: shape {tuple(labels.shape)} does not match logits {tuple(logits.shape[:2])}"
        )
    if labels.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"labels: expected an integer tensor, got {labels.dtype}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing: must be in [0, 1], got {label_smoothing}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction: must be 'mean' or 'sum', got {reduction!r}")
    check_token_ids(labels, logits.shape[-1], "labels", ignore_index)
    flat = labels.reshape(-1)
    total = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        flat.long(),
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        reduction="sum",
    )
    if reduction == "sum":
        return total
    return total / (flat != ignore_index).sum().clamp(min=1)


from lmobjectives.torch import mining as mining  # noqa: E402  (registers its mining backend)
from lmobjectives.torch.contrastive import (  # noqa: E402  (after the MLM side it extends)
    CPCHead,
    InfoNCELoss,
    SimCSE,
    all_gather_with_grad,
    cpc_loss,
    info_nce_loss,
)
from lmobjectives.torch.electra import ElectraRTD  # noqa: E402
from lmobjectives.torch.models import TinyEncoder, TinySeq2Seq  # noqa: E402
