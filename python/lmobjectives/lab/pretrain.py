"""``lmobjectives pretrain``: small models trained end to end with any objective of the library.

The data path is one straight line for every objective::

    TokenCorpus ─ documents(…) ─▶ dataset (CorpusChunks | SentencePairDataset)
        ─ DataLoader(batch_sampler=seeded order, collate_fn=<the objective's collator>) ─▶
        model (TinyEncoder | TinySeq2Seq | ElectraRTD) ─▶ loss (lmobjectives.torch)

The last ``held_out`` share of the corpus's documents is kept for evaluation. The batch of
step ``s`` is a pure function of ``(seed, s)``: the sample order of every pass comes from
``(seed, epoch)``, the collator's streams from ``(seed, epoch, sample idx)``. A checkpoint
stores the step (plus model, optimiser and schedule), so :func:`pretrain` with ``resume=True``
continues with exactly the batches an uninterrupted run would have seen.

Use it from Python::

    from lmobjectives.lab.pretrain import PretrainConfig, pretrain
    result = pretrain(PretrainConfig(objective="sop", steps=200), out="runs/sop")
    result["eval"][-1]  # {"step": 200, "loss": ..., "pair_accuracy": ..., ...}

or from the shell: ``lmobjectives pretrain --objective sop --steps 200 --out runs/sop``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from lmobjectives import IGNORE_INDEX
from lmobjectives._optional import require
from lmobjectives._progress import Progress
from lmobjectives.torch import MLMHead, SentencePairHead, labelled_positions, seq2seq_loss
from lmobjectives.torch.models import TinyEncoder, TinySeq2Seq

if TYPE_CHECKING:
    import torch
    import torch.nn.functional as F
    from torch import nn
else:  # through require, as every optional import (lmobjectives.torch has checked it is there)
    torch = require("torch", "lmobjectives.lab.pretrain")
    F = require("torch.nn.functional")
    nn = torch.nn

__all__ = ["OBJECTIVES", "PretrainConfig", "pretrain", "unigram_baseline"]

#: Every objective ``pretrain`` trains, in the order the CLI lists them.
OBJECTIVES = ("mlm", "wwm", "span", "nsp", "sop", "rtd", "t5", "bart", "ul2", "infonce")

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
PLOT = "loss.png"

#: The values of :attr:`PretrainConfig.precision`.
PRECISIONS = ("fp32", "bf16")
#: how the MLM head picks the labelled positions (see ``PretrainConfig.mlm_selection``)
MLM_SELECTIONS = ("auto", "compact", "fixed")

# Fields that must match for a checkpoint to continue the same run (the rest — steps, eval and
# checkpoint cadence, workers, device, precision, compile — may change on resume).
_RUN_FIELDS = (
    "objective",
    "batch_size",
    "seq_length",
    "hidden_size",
    "num_layers",
    "num_heads",
    "learning_rate",
    "weight_decay",
    "seed",
    "held_out",
)


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """One pretraining run.

    Args:
        objective: one of :data:`OBJECTIVES`.
        steps: optimiser steps (800).
        batch_size: rows per step (16). The defaults (800 steps of 16 × 64 tokens, 2 layers of
            128, peak rate 1e-3) train in about 2 minutes on a 2-core machine (4 when it is
            busy), enough for the held-out MLM accuracy to double the unigram baseline's
            (docs/evidence/pretrain.md).
        seq_length: tokens per row (64); for T5/UL2 the encoder input length, for NSP/SOP the
            longest ``[CLS] A [SEP] B [SEP]``.
        hidden_size, num_layers, num_heads: the model (128, 2, 2); ELECTRA's generator is a
            quarter of the discriminator's width, as the paper recommends.
        learning_rate: AdamW peak rate (1e-3), linear warm-up over ``warmup`` of the steps
            (0.1) then linear decay to 0; ``weight_decay`` 0.01; gradients clipped at
            ``max_grad_norm`` (1.0).
        seed: seeds the model, the sample order and every collator stream (0).
        held_out: share of the corpus's documents kept for evaluation (0.02, the last ones).
        eval_every: evaluate every this many steps (default: 5 times per run), on
            ``eval_batches`` fixed held-out batches (8).
        checkpoint_every: write ``checkpoint.pt`` every this many steps (default: at each
            evaluation) and always at the end.
        num_workers: DataLoader worker processes (0: collate in the training process).
        device: ``"cpu"`` or ``"cuda"`` (or any torch device string).
        precision: ``"fp32"`` (default) or ``"bf16"``: the forward pass under
            ``torch.autocast(device, torch.bfloat16)`` (weights, optimiser state and the losses'
            softmax stay float32).
        compile: run the model's forward through ``torch.compile`` (default off).
        mlm_selection: how the MLM head of the i.i.d. masking objectives (mlm, wwm, span, nsp,
            sop) reaches the labelled positions. ``"compact"``: a boolean mask, the head runs
            on the labelled positions only (fewest FLOPs, but a data-dependent shape: one host
            synchronisation a step on an accelerator and a graph break under
            ``torch.compile``). ``"fixed"``: ``MLMHead(max_predictions=seq_length)`` — every
            row's labels gathered into ``seq_length`` fixed slots (the same loss; no sync,
            compiles whole; the head's FLOPs of every position, like Hugging Face's
            ``BertForMaskedLM``). These rows have no tighter label bound: their masking draws
            each position independently. ``"auto"`` (default): ``"fixed"`` on a device other
            than the CPU or with ``compile``, else ``"compact"`` (on the CPU a sync costs
            nothing). ELECTRA (rtd) always uses its exact budget, ``ceil(0.15·seq_length)``.
        log_every: record the training loss every this many steps (10). Between these
            points a step never waits for the device: the losses add up there and are read
            (and checked to be finite) only then, and at evaluations.
    """

    objective: str = "mlm"
    steps: int = 800
    batch_size: int = 16
    seq_length: int = 64
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 2
    learning_rate: float = 1e-3
    warmup: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 0
    held_out: float = 0.02
    eval_every: int | None = None
    eval_batches: int = 8
    checkpoint_every: int | None = None
    num_workers: int = 0
    device: str = "cpu"
    log_every: int = 10
    precision: str = "fp32"
    compile: bool = False
    mlm_selection: str = "auto"

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(
                f"objective: must be one of {list(OBJECTIVES)}, got {self.objective!r}"
            )
        for name in ("steps", "batch_size", "hidden_size", "num_layers", "num_heads"):
            _check_int(name, getattr(self, name), 1)
        _check_int("seq_length", self.seq_length, 16)
        _check_int("eval_batches", self.eval_batches, 1)
        _check_int("log_every", self.log_every, 1)
        _check_int("num_workers", self.num_workers, 0)
        _check_int("seed", self.seed, 0)
        for name in ("eval_every", "checkpoint_every"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1)
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size: must be a multiple of num_heads ({self.num_heads}), got "
                f"{self.hidden_size}"
            )
        if self.objective == "rtd" and self.hidden_size % (4 * self.num_heads):
            raise ValueError(
                f"hidden_size: rtd's generator is hidden_size/4 wide, so hidden_size must be a "
                f"multiple of 4·num_heads = {4 * self.num_heads}, got {self.hidden_size}"
            )
        for name, lo, hi in (
            ("learning_rate", 0.0, math.inf),
            ("held_out", 0.0, 0.5),
        ):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not lo < v <= hi:
                raise ValueError(f"{name}: must be in ({lo}, {hi}], got {v!r}")
        for name in ("warmup", "weight_decay"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
                raise ValueError(f"{name}: must be in [0, 1), got {v!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision: must be one of {PRECISIONS}, got {self.precision!r}")
        if not isinstance(self.compile, bool):
            raise ValueError(f"compile: must be a bool, got {self.compile!r}")
        if self.mlm_selection not in MLM_SELECTIONS:
            raise ValueError(
                f"mlm_selection: must be one of {MLM_SELECTIONS}, got {self.mlm_selection!r}"
            )
        if not isinstance(self.max_grad_norm, (int, float)) or not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm: must be positive, got {self.max_grad_norm!r}")

    @property
    def mlm_max_predictions(self) -> int | None:
        """``MLMHead``'s ``max_predictions`` for the i.i.d. masking objectives: ``None``
        (boolean selection) or ``seq_length`` (fixed slots), from ``mlm_selection``."""
        fixed = self.mlm_selection == "fixed" or (
            self.mlm_selection == "auto"
            and (self.compile or torch.device(self.device).type != "cpu")
        )
        return self.seq_length if fixed else None

    @property
    def evaluate_every(self) -> int:
        return self.eval_every or max(1, self.steps // 5)

    @property
    def save_every(self) -> int:
        return self.checkpoint_every or self.evaluate_every


def _check_int(name: str, value: Any, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < lo:
        raise ValueError(f"{name}: must be >= {lo}, got {value}")


# -- objectives ------------------------------------------------------------------------------------


class _Task:
    """An objective: its dataset, collator, model and loss. Subclasses fill in the parts."""

    def __init__(self, cfg: PretrainConfig, corpus: Any) -> None:
        self.cfg = cfg
        self.corpus = corpus
        self.tokenizer = corpus.tokenizer

    def dataset(self, corpus: Any, seed: int) -> Any:
        from lmobjectives import CorpusChunks

        return CorpusChunks(corpus, self.chunk_length())

    def chunk_length(self) -> int:
        return self.cfg.seq_length

    def collator(self, seed: int) -> Any:
        raise NotImplementedError

    def model(self) -> nn.Module:
        raise NotImplementedError

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor], generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """``(loss, metrics)``: the metrics are 0-d tensors on the device (or host arrays for
        keys starting with ``_``), read only at evaluation points."""
        raise NotImplementedError

    def eval_extra(self, outputs: list[dict[str, Any]]) -> dict[str, float]:
        """Metrics over the whole evaluation (beyond averaged per-batch ones)."""
        return {}

    @staticmethod
    def tokens(batch: dict[str, torch.Tensor]) -> int:
        mask = batch.get("attention_mask", batch.get("anchor_attention_mask"))
        return int(mask.sum()) if mask is not None else 0


class _Encoder(nn.Module):
    """TinyEncoder + BERT heads evaluated only where they are needed."""

    def __init__(self, cfg: PretrainConfig, vocab_size: int, pair_head: bool) -> None:
        super().__init__()
        self.encoder = TinyEncoder(
            vocab_size,
            cfg.hidden_size,
            cfg.num_layers,
            cfg.num_heads,
            max_length=cfg.seq_length,
            head=None,
        )
        self.mlm = MLMHead(
            cfg.hidden_size,
            vocab_size,
            embedding=self.encoder.embeddings.token,
            max_predictions=cfg.mlm_max_predictions,
        )
        self.pair = SentencePairHead(cfg.hidden_size) if pair_head else None

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.encoder(
            batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")
        )


def _accuracy(
    logits: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor | None = None
) -> torch.Tensor:
    """The share of ``labels`` (where ``keep``) that ``logits`` get right, as a 0-d tensor on
    their device (NaN without any label): read on the host only at evaluation points."""
    hit = (logits.argmax(-1) == labels).float()
    if keep is None:
        return hit.mean() if labels.numel() else hit.new_full((), float("nan"))
    k = keep.float()
    return ((hit * k).sum() / k.sum()).detach()


def _mlm(
    model: nn.Module, hidden: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The MLM loss and accuracy at the labelled positions, with the head's selection."""
    head: MLMHead = model.mlm  # type: ignore[assignment]
    loss, logits = head(hidden, labels)
    if head.max_predictions is None:
        return loss, _accuracy(logits, labels[labels != IGNORE_INDEX])
    _, targets = labelled_positions(labels, head.max_predictions)  # the head's slot order
    return loss, _accuracy(logits, targets, targets != IGNORE_INDEX)


class _MaskedLM(_Task):
    unit: Literal["token", "word", "span", "ngram"] = "token"

    def collator(self, seed: int) -> Any:
        from lmobjectives import MLMCollator

        return MLMCollator(self.tokenizer, unit=self.unit, seed=seed, return_tensors="pt")

    def model(self) -> nn.Module:
        return _Encoder(self.cfg, self.corpus.vocab_size, pair_head=False)

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor], generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        mlm_loss, accuracy = _mlm(model, model(batch), batch["labels"])
        return mlm_loss, {"mlm_accuracy": accuracy}


class _WholeWord(_MaskedLM):
    unit = "word"


class _Span(_MaskedLM):
    unit = "span"


class _SentencePair(_MaskedLM):
    task: Literal["nsp", "sop"] = "nsp"

    def dataset(self, corpus: Any, seed: int) -> Any:
        from lmobjectives import SentencePairDataset

        return SentencePairDataset(
            corpus, self.task, max_seq_length=self.cfg.seq_length, seed=seed, num_threads=1
        )

    def model(self) -> nn.Module:
        return _Encoder(self.cfg, self.corpus.vocab_size, pair_head=True)

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor], generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        hidden = model(batch)
        mlm_loss, mlm_accuracy = _mlm(model, hidden, batch["labels"])
        pair_labels = batch["next_sentence_label" if self.task == "nsp" else "sentence_order_label"]
        pair_loss, pair_logits = model.pair(hidden, pair_labels)  # type: ignore[operator]
        return mlm_loss + pair_loss, {
            "mlm_loss": mlm_loss.detach(),
            "pair_loss": pair_loss.detach(),
            "mlm_accuracy": mlm_accuracy,
            "pair_accuracy": _accuracy(pair_logits, pair_labels),
        }


class _NextSentence(_SentencePair):
    task = "nsp"


class _SentenceOrder(_SentencePair):
    task = "sop"


class _ReplacedToken(_Task):
    def collator(self, seed: int) -> Any:
        from lmobjectives import MLMCollator

        return MLMCollator.electra(self.tokenizer, seed=seed, return_tensors="pt")

    def model(self) -> nn.Module:
        from lmobjectives.torch.electra import ElectraRTD

        cfg, vocab = self.cfg, self.corpus.vocab_size
        generator = TinyEncoder(
            vocab,
            cfg.hidden_size // 4,
            cfg.num_layers,
            cfg.num_heads,
            max_length=cfg.seq_length,
            embedding_size=cfg.hidden_size,
            head="mlm",
        )
        discriminator = TinyEncoder(
            vocab,
            cfg.hidden_size,
            cfg.num_layers,
            cfg.num_heads,
            max_length=cfg.seq_length,
            head="token",
        )
        # ELECTRA masks an exact budget, at most ceil(0.15 * seq_length) positions a row: the
        # fixed-size selection needs no host sync (design: no sync per training step).
        budget = max(1, math.ceil(0.15 * cfg.seq_length))
        return ElectraRTD(generator, discriminator, max_predictions=budget)

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor], generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        out = model(
            batch["input_ids"], batch["labels"], batch["attention_mask"], generator=generator
        )
        real = batch["attention_mask"].bool()
        metrics: dict[str, Any] = {
            "mlm_loss": out.mlm_loss.detach(),
            "disc_loss": out.disc_loss.detach(),
            "gen_accuracy": out.gen_accuracy.detach(),
            "replaced": (out.is_replaced * real).sum() / real.sum().clamp(min=1),
        }
        if not model.training:  # the AUC is an evaluation metric: keep the scores only then
            metrics["_scores"] = out.disc_logits[real].detach().float().cpu().numpy()
            metrics["_labels"] = out.is_replaced[real].detach().cpu().numpy()
        return out.loss, metrics

    def eval_extra(self, outputs: list[dict[str, Any]]) -> dict[str, float]:
        scores = np.concatenate([o["_scores"] for o in outputs])
        labels = np.concatenate([o["_labels"] for o in outputs])
        return {"disc_auc": roc_auc(scores, labels)}


class _Denoising(_Task):
    _collator: Any

    def model(self) -> nn.Module:
        cfg = self.cfg
        c = self._collator
        return TinySeq2Seq(
            c.vocab_size,
            cfg.hidden_size,
            cfg.num_layers,
            cfg.num_heads,
            max_length=max(self.input_length(), self.target_length()),
        )

    def input_length(self) -> int:
        return self.cfg.seq_length

    def target_length(self) -> int:
        return self.cfg.seq_length

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor], generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        logits = model(
            batch["input_ids"],
            batch["attention_mask"],
            batch["decoder_input_ids"],
            batch["decoder_attention_mask"],
        )
        labels = batch["labels"]
        keep = labels != IGNORE_INDEX
        return seq2seq_loss(logits, labels), {"token_accuracy": _accuracy(logits, labels, keep)}


class _T5(_Denoising):
    def __init__(self, cfg: PretrainConfig, corpus: Any) -> None:
        super().__init__(cfg, corpus)
        self._collator = self.collator(0)

    def collator(self, seed: int) -> Any:
        from lmobjectives import T5SpanCorruptionCollator

        return T5SpanCorruptionCollator(
            self.tokenizer, input_length=self.cfg.seq_length, seed=seed, return_tensors="pt"
        )

    def chunk_length(self) -> int:
        return int(self._collator.raw_length)

    def target_length(self) -> int:
        return int(self._collator.target_length)


class _UL2(_T5):
    def collator(self, seed: int) -> Any:
        from lmobjectives import UL2Collator

        return UL2Collator(
            self.tokenizer, input_length=self.cfg.seq_length, seed=seed, return_tensors="pt"
        )

    def chunk_length(self) -> int:
        return int(self._collator.max_raw_length)


class _Bart(_Denoising):
    def __init__(self, cfg: PretrainConfig, corpus: Any) -> None:
        super().__init__(cfg, corpus)
        self._collator = self.collator(0)

    def collator(self, seed: int) -> Any:
        from lmobjectives import BartDenoisingCollator

        return BartDenoisingCollator(self.tokenizer, seed=seed, return_tensors="pt")

    def chunk_length(self) -> int:
        return self.cfg.seq_length - 2  # + BOS and EOS

    def dataset(self, corpus: Any, seed: int) -> Any:
        from lmobjectives import CorpusChunks

        return CorpusChunks(corpus, self.chunk_length(), sentence_starts=True)


class _Contrastive(_Task):
    """Unsupervised contrastive sentence embeddings: two augmented views of one chunk are a
    positive pair, the rest of the batch negatives (InfoNCE, mean pooling)."""

    def collator(self, seed: int) -> Any:
        from lmobjectives import Augmentation, ContrastivePairCollator

        return ContrastivePairCollator(
            self.tokenizer,
            anchor=Augmentation(crop=0.5, token_deletion=0.1),
            positive=Augmentation(crop=0.5, token_deletion=0.1),
            seed=seed,
            return_tensors="pt",
        )

    def model(self) -> nn.Module:
        cfg = self.cfg
        return TinyEncoder(
            self.corpus.vocab_size,
            cfg.hidden_size,
            cfg.num_layers,
            cfg.num_heads,
            max_length=cfg.seq_length,
            head=None,
        )

    @staticmethod
    def _embed(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = model(ids, mask)
        m = mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor], generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        from lmobjectives.torch.contrastive import info_nce_loss

        q = self._embed(model, batch["anchor_input_ids"], batch["anchor_attention_mask"])
        p = self._embed(model, batch["positive_input_ids"], batch["positive_attention_mask"])
        loss = info_nce_loss(q, p, duplicates=batch["duplicate_ids"])
        sims = F.normalize(q, dim=-1) @ F.normalize(p, dim=-1).T
        hit = sims.argmax(-1) == torch.arange(len(q), device=q.device)
        return loss, {"retrieval_accuracy": hit.float().mean().detach()}


_TASKS: dict[str, type[_Task]] = {
    "mlm": _MaskedLM,
    "wwm": _WholeWord,
    "span": _Span,
    "nsp": _NextSentence,
    "sop": _SentenceOrder,
    "rtd": _ReplacedToken,
    "t5": _T5,
    "bart": _Bart,
    "ul2": _UL2,
    "infonce": _Contrastive,
}


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (the Mann–Whitney statistic, ties counted half); NaN when only
    one class is present."""
    scores = np.asarray(scores)
    positive = np.asarray(labels).astype(bool)
    pos, neg = int(positive.sum()), int((~positive).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    # Average ranks (1-based) of tied scores: the mean of each tie group's rank range.
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    ranks = ((upper - counts + 1 + upper) / 2.0)[inverse]
    return float((ranks[positive].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


# -- the data stream -------------------------------------------------------------------------------


def _order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The sample order of pass ``epoch``: a permutation drawn from ``(seed, epoch)``."""
    return np.random.default_rng([seed, epoch, 0x9E3779B9]).permutation(n)


def _batches(
    task: _Task, dataset: Any, collator: Any, cfg: PretrainConfig, start: int
) -> Generator[tuple[int, dict[str, Any]], None, None]:
    """``(step, batch)`` from global step ``start`` on, forever: the same batches whatever
    ``start`` is and however many DataLoader workers collate them."""
    DataLoader = require("torch.utils.data").DataLoader

    step = 0
    epoch = 0
    while True:
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        per_epoch = len(dataset) // cfg.batch_size
        if per_epoch == 0:
            raise ValueError(
                f"batch_size: {cfg.batch_size} is more than the {len(dataset)} training "
                f"samples of the corpus"
            )
        if step + per_epoch <= start:  # a pass before the resume point: skip it whole
            step += per_epoch
            epoch += 1
            continue
        first = max(0, start - step)
        order = _order(cfg.seed, epoch, len(dataset))
        index_batches = [
            order[b * cfg.batch_size : (b + 1) * cfg.batch_size].tolist()
            for b in range(first, per_epoch)
        ]
        collator.set_epoch(epoch, batch_index=first)
        loader = DataLoader(
            dataset,
            batch_sampler=index_batches,
            collate_fn=collator,
            num_workers=cfg.num_workers,
            # page-locked batches, so that .to(device, non_blocking=True) really overlaps
            pin_memory=torch.device(cfg.device).type == "cuda",
        )
        for b, batch in enumerate(loader, start=first):
            yield step + b, batch
        step += per_epoch
        epoch += 1


def _synchronize(device: torch.device) -> None:
    """Waits for the device's queued work (CUDA; a no-op on the CPU, which runs eagerly)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _compiled(model: nn.Module) -> Any:
    """``model`` whose ``forward`` runs through ``torch.compile`` (dynamic shapes: the MLM
    head's labelled rows vary per batch); its attributes (``mlm``, ``pair`` heads) and
    parameters are the model's own, so the optimiser and checkpoints are unchanged."""
    model.forward = torch.compile(model.forward, dynamic=True)  # type: ignore[method-assign]
    return model


def _to(batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    return {
        k: v.to(device, non_blocking=True) for k, v in batch.items() if isinstance(v, torch.Tensor)
    }


# -- the run ---------------------------------------------------------------------------------------


def build(cfg: PretrainConfig, corpus: Any) -> tuple[_Task, Any, Any]:
    """The objective's task and its train / held-out corpora."""
    n = corpus.num_documents
    held = max(1, round(n * cfg.held_out))
    if n - held < 1:
        raise ValueError(f"corpus: {n} documents are too few to hold {cfg.held_out:.0%} out")
    train, held_out = corpus.documents(0, n - held), corpus.documents(n - held, n)
    return _TASKS[cfg.objective](cfg, corpus), train, held_out


def pretrain(
    config: PretrainConfig | None = None,
    *,
    corpus: Any = None,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: bool | None = None,
    on_batch: Callable[[int, dict[str, torch.Tensor]], None] | None = None,
    plot: bool = True,
    on_evaluate: Callable[[int, nn.Module], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Trains a small model with ``config.objective``; returns the metrics (also written to
    ``out/metrics.json``, with ``out/loss.png`` when matplotlib is installed and ``plot``).

    Args:
        config: the run (default: :class:`PretrainConfig` defaults — MLM, 800 steps).
        corpus: a :class:`~lmobjectives.TokenCorpus` (default: the embedded one).
        out: directory for the checkpoint, metrics and plot (default: nothing written).
        resume: continue from ``out/checkpoint.pt`` (same objective, seed and model; the data
            stream continues exactly where it stopped). Without a checkpoint, starts fresh.
        progress: show a progress bar (default: when stderr is a terminal).
        on_batch: called with ``(step, batch)`` before each training step (e.g. to log or
            check the data stream).
        plot: write the loss-curve PNG.
        on_evaluate: called with ``(step, model)`` at each evaluation (after the held-out
            metrics, the model in eval mode); what it returns joins that evaluation's row
            (e.g. a probe of the encoder: ``lmobjectives compare``).
    """
    cfg = config or PretrainConfig()
    if corpus is None:
        from lmobjectives import TokenCorpus

        corpus = TokenCorpus.default()
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {cfg.device!r} requested but CUDA is not available")
    out_dir = Path(out) if out is not None else None
    if resume and out_dir is None:
        raise ValueError("resume: needs out (the directory holding checkpoint.pt)")

    task, train_corpus, eval_corpus = build(cfg, corpus)
    run = _Run.start(cfg, task, device, out_dir)
    run.on_evaluate = on_evaluate
    if resume and out_dir is not None and (out_dir / CHECKPOINT).exists():
        run.resume(out_dir)
    train_set = task.dataset(train_corpus, cfg.seed)
    eval_set = task.dataset(eval_corpus, cfg.seed + 1)
    collator = task.collator(cfg.seed)
    run.eval_batches = _eval_batches(task, eval_set, cfg)
    if run.first_step == 0 and not run.history["eval"]:
        run.history["eval"].append(run.evaluate(0))
    run.train(_batches(task, train_set, collator, cfg, run.first_step), progress, on_batch)
    result = run.report(train_corpus, eval_corpus)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / METRICS).write_text(json.dumps(result, indent=2, allow_nan=True) + "\n")
        if plot:
            result["plot"] = _plot(result, out_dir / PLOT)
    return result


def _optimizer(cfg: PretrainConfig, model: nn.Module) -> tuple[Any, Any]:
    """AdamW (no weight decay on biases and norms) and its warm-up / linear-decay schedule."""
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.learning_rate,
        fused=True,  # one kernel over all parameters: 6x faster than the loop on CPU
    )
    warmup = max(1, int(cfg.warmup * cfg.steps))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (cfg.steps - step) / max(1, cfg.steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


@dataclasses.dataclass
class _Run:
    """One training run: the model and its optimiser, the curves and timings a checkpoint
    stores, and the fixed held-out batches."""

    cfg: PretrainConfig
    task: _Task
    model: nn.Module
    optimizer: Any
    scheduler: Any
    device: torch.device
    out_dir: Path | None
    history: dict[str, Any]
    timing: dict[str, Any]
    first_step: int = 0
    eval_batches: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    on_evaluate: Callable[[int, nn.Module], dict[str, Any]] | None = None
    forward_model: Any = None  # the model, or its torch.compile'd forward (cfg.compile)

    def __post_init__(self) -> None:
        if self.forward_model is None:
            self.forward_model = _compiled(self.model) if self.cfg.compile else self.model

    def autocast(self) -> Any:
        """bf16 autocast on the run's device with ``precision="bf16"``, else a no-op."""
        enabled = self.cfg.precision == "bf16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    @classmethod
    def start(
        cls, cfg: PretrainConfig, task: _Task, device: torch.device, out_dir: Path | None
    ) -> _Run:
        """A fresh run: the model initialised from ``cfg.seed``."""
        torch.manual_seed(cfg.seed)
        model = task.model().to(device)
        optimizer, scheduler = _optimizer(cfg, model)
        history: dict[str, Any] = {"train": [], "eval": []}
        timing = {"data_s": 0.0, "model_s": 0.0, "tokens": 0, "steps": 0}
        return cls(cfg, task, model, optimizer, scheduler, device, out_dir, history, timing)

    def resume(self, out_dir: Path) -> None:
        """Continues from ``out_dir/checkpoint.pt``, which must come from the same run."""
        state = torch.load(out_dir / CHECKPOINT, map_location=self.device, weights_only=False)
        saved = state["config"]
        for name in _RUN_FIELDS:
            if saved.get(name) != getattr(self.cfg, name):
                raise ValueError(
                    f"resume: the checkpoint in {out_dir} was made with {name}="
                    f"{saved.get(name)!r}, this run has {getattr(self.cfg, name)!r}"
                )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.history = state["history"]
        self.timing = state["timing"]
        self.first_step = int(state["step"])

    def evaluate(self, step: int) -> dict[str, Any]:
        """The held-out metrics at ``step``: per-batch ones averaged, plus the task's own."""
        model, task = self.model, self.task
        model.eval()
        sums: dict[str, float] = {}
        outputs = []
        with torch.no_grad():
            for i, batch in enumerate(self.eval_batches):
                b = _to(batch, self.device)
                with self.autocast():
                    loss, metrics = task.loss(
                        self.forward_model, b, torch.Generator(self.device).manual_seed(i)
                    )
                outputs.append(metrics)
                for k, v in {"loss": float(loss), **metrics}.items():
                    if not k.startswith("_"):
                        sums[k] = sums.get(k, 0.0) + float(v)
        row: dict[str, Any] = {"step": step}
        row.update({k: v / len(self.eval_batches) for k, v in sums.items()})
        row.update(task.eval_extra(outputs))
        if self.on_evaluate is not None:
            row.update(self.on_evaluate(step, model))
        model.train()
        return row

    def save(self, step: int) -> None:
        """Writes ``checkpoint.pt`` (atomically) when the run has an output directory."""
        if self.out_dir is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "config": dataclasses.asdict(self.cfg),
            "step": step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "history": self.history,
            "timing": self.timing,
        }
        tmp = self.out_dir / (CHECKPOINT + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.out_dir / CHECKPOINT)

    def train(
        self,
        stream: Generator[tuple[int, dict[str, Any]], None, None],
        progress: bool | None,
        on_batch: Callable[[int, dict[str, torch.Tensor]], None] | None,
    ) -> None:
        """Steps from :attr:`first_step` to ``cfg.steps`` on the batches of ``stream``: logs,
        evaluates and checkpoints on the configured cadence."""
        cfg = self.cfg
        self.model.train()
        bar = Progress(cfg.steps, f"pretrain {cfg.objective}", unit="step", enabled=progress)
        bar.update(self.first_step)
        running: torch.Tensor | None = None
        n_running, last = 0, float("nan")
        try:
            step = self.first_step
            while step < cfg.steps:
                t0 = time.perf_counter()
                step, batch = next(stream)
                tokens = self.task.tokens(batch)  # on the host batch: no device sync
                b = _to(batch, self.device)
                t1 = time.perf_counter()
                if on_batch is not None:
                    on_batch(step, b)
                loss = self.step(step, b)
                # the loss stays on the device; the host reads it only at log points
                running = loss.detach().float() if running is None else running + loss.detach()
                n_running += 1
                step += 1
                log = step % cfg.log_every == 0 or step == cfg.steps
                if log or step % cfg.evaluate_every == 0 or step % cfg.save_every == 0:
                    # the one sync of a log interval (also before any evaluation or checkpoint,
                    # so that a non-finite loss never reaches a checkpoint)
                    mean = float(running) / n_running
                    if not math.isfinite(mean):
                        raise FloatingPointError(
                            f"loss is {mean} over steps {step - n_running}..{step - 1}"
                        )
                    if log:
                        self.history["train"].append({"step": step, "loss": mean})
                        last, running, n_running = mean, None, 0
                    _synchronize(self.device)  # so the timings count the device's work
                t2 = time.perf_counter()
                self.timing["data_s"] += t1 - t0
                self.timing["model_s"] += t2 - t1
                self.timing["tokens"] += tokens
                self.timing["steps"] += 1
                self._after(step, last, bar)
        finally:
            bar.close()
            stream.close()

    def step(self, step: int, b: dict[str, torch.Tensor]) -> torch.Tensor:
        """One optimiser step on batch ``b``, queued on the device without a host
        synchronisation (a non-finite loss is caught at the next log point); returns its
        loss."""
        cfg, device = self.cfg, self.device
        gen = torch.Generator(device).manual_seed(cfg.seed * 1_000_003 + step)
        with self.autocast():
            loss, _ = self.task.loss(self.forward_model, b, gen)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), cfg.max_grad_norm, foreach=device.type != "cpu"
        )
        self.optimizer.step()
        self.scheduler.step()
        return loss

    def _after(self, step: int, last: float, bar: Progress) -> None:
        """The progress bar, then evaluation and checkpoint when ``step`` is due for them."""
        total = self.timing["data_s"] + self.timing["model_s"]
        bar.postfix = f"loss {last:.3f}, {self.timing['tokens'] / max(total, 1e-9):,.0f} tok/s"
        bar.update(1)
        if step % self.cfg.evaluate_every == 0 or step == self.cfg.steps:
            self.history["eval"].append(self.evaluate(step))
        if step % self.cfg.save_every == 0 or step == self.cfg.steps:
            self.save(step)

    def report(self, train_corpus: Any, eval_corpus: Any) -> dict[str, Any]:
        """The metrics of the run (what ``metrics.json`` holds)."""
        timing = self.timing
        total = timing["data_s"] + timing["model_s"]
        baseline = unigram_baseline(self.cfg.objective, train_corpus, self.eval_batches)
        return {
            "config": dataclasses.asdict(self.cfg),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "train_documents": train_corpus.num_documents,
            "held_out_documents": eval_corpus.num_documents,
            "eval_samples": sum(len(next(iter(b.values()))) for b in self.eval_batches),
            "train": self.history["train"],
            "eval": self.history["eval"],
            "baseline": baseline,
            "tokens_per_s": timing["tokens"] / total if total > 0 else 0.0,
            "data_share": timing["data_s"] / total if total > 0 else 0.0,
            "data_s": timing["data_s"],
            "model_s": timing["model_s"],
            "steps_timed": timing["steps"],
        }


#: The objectives whose batches carry MLM labels (the original token at each masked position).
MASKED_LM = ("mlm", "wwm", "span", "nsp", "sop", "rtd")


def unigram_baseline(
    objective: str, train_corpus: Any, eval_batches: list[dict[str, Any]]
) -> dict[str, float]:
    """What knowing only the unigram distribution scores on the held-out batches: for the
    masked-LM objectives, the accuracy of always predicting the training documents' most
    frequent token (``unigram_mlm_accuracy``) and the cross-entropy of predicting their token
    frequencies (add-one smoothed, nats: ``unigram_mlm_loss``) on the ``masked_positions``.
    Empty for the other objectives."""
    if objective not in MASKED_LM or not eval_batches:
        return {}
    counts = np.bincount(np.asarray(train_corpus.ids), minlength=train_corpus.vocab_size) + 1.0
    log_p = np.log(counts / counts.sum())
    labels = np.concatenate([b["labels"].numpy().ravel() for b in eval_batches])
    labels = labels[labels != IGNORE_INDEX]
    if labels.size == 0:
        return {}
    return {
        "unigram_mlm_accuracy": float((labels == int(counts.argmax())).mean()),
        "unigram_mlm_loss": float(-log_p[labels].mean()),
        "masked_positions": int(labels.size),
    }


def _eval_batches(task: _Task, dataset: Any, cfg: PretrainConfig) -> list[dict[str, Any]]:
    """A fixed held-out set: the first ``eval_batches`` batches of its seeded pass 0."""
    collator = task.collator(cfg.seed + 1)
    n = len(dataset)
    size = min(cfg.batch_size, n)
    if size == 0:
        raise ValueError("held_out: the held-out documents give no evaluation samples")
    count = min(cfg.eval_batches, n // size)
    order = _order(cfg.seed + 1, 0, n)
    out = []
    for b in range(count):
        idx = order[b * size : (b + 1) * size].tolist()
        items = dataset.__getitems__(idx)
        out.append(collator(items))
    return out


def _plot(result: dict[str, Any], path: Path) -> str | None:
    """The loss curves as a PNG; ``None`` (and no file) without matplotlib."""
    try:
        matplotlib = require("matplotlib", "pretrain's loss plot")
        matplotlib.use("Agg", force=True)
        plt = require("matplotlib.pyplot")
    except ImportError:  # not installed (or a broken install): no plot, as documented
        return None
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    train, held = result["train"], result["eval"]
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train")
    ax.plot([r["step"] for r in held], [r["loss"] for r in held], "o-", label="held-out")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"lmobjectives pretrain --objective {result['config']['objective']}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)
