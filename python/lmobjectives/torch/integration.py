"""Training loops that never call ``set_epoch`` themselves: :class:`EpochCallback` for
``transformers.Trainer``.

Trainer (through accelerate) starts every epoch on its *sampler* only, so a collator of
lmobjectives would keep epoch 0 for ever: the same masks every epoch for examples with an
``idx``, the same stream per batch slot without one. :class:`EpochCallback` starts each epoch
on the collators and datasets of lmobjectives that the training DataLoader uses, before the
DataLoader is iterated; the epoch reaches its workers (persistent ones, fork or spawn) through
shared memory. This module imports ``transformers`` (the ``bench`` extra); the NumPy library
never does.
"""

from __future__ import annotations

from typing import Any

from lmobjectives._collator import Collator
from lmobjectives._optional import require

TrainerCallback: Any = require("transformers", "lmobjectives.torch.integration").TrainerCallback

__all__ = ["EpochCallback"]


class EpochCallback(TrainerCallback):
    """Starts every epoch of a ``transformers.Trainer`` run on lmobjectives' collators and
    datasets: ``Trainer(..., callbacks=[EpochCallback()])``.

    - At each epoch's start (before the DataLoader is iterated) it calls ``set_epoch(epoch)``
      on the collator of the training DataLoader (found through Trainer's column-removing
      wrapper) and on its dataset when that has a ``set_epoch`` of lmobjectives (e.g.
      :class:`~lmobjectives.SentencePairDataset`, whose pass changes with the epoch), plus on
      any objects given. The epoch reaches DataLoader workers, persistent ones included.
    - Resuming from a checkpoint (``trainer.train(resume_from_checkpoint=...)``), the resumed
      epoch starts at the batch Trainer skips to, so the batches equal an uninterrupted run's
      (with a seeded collator).
    - While Trainer evaluates with the training collator (``eval_strategy``), the collator's
      repeat check is off and its batch counter is restored afterwards, so evaluation neither
      warns nor shifts the training batches' keys; after training the check stays off until
      the next ``set_epoch``.

    Args:
        objects: further collators or datasets to start epochs on (anything with
            ``set_epoch``), e.g. a collator used by a custom ``get_train_dataloader``.
    """

    def __init__(self, *objects: Any) -> None:
        for i, obj in enumerate(objects):
            if not callable(getattr(obj, "set_epoch", None)):
                raise TypeError(
                    f"objects[{i}]: expected a collator or dataset with set_epoch, got "
                    f"{type(obj).__name__}"
                )
        self.objects = list(objects)
        self._targets: list[Any] = []
        self._next = (0, 0)  # (epoch, first batch) of the next epoch to start

    # -- Trainer's events ------------------------------------------------------------------

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        loader = kwargs.get("train_dataloader")
        self._targets = _unique([*self.objects, *_found_in(loader)])
        self._next = _resume_point(args, state, loader)

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        epoch, first = self._next
        for obj in self._targets:
            if isinstance(obj, Collator):
                obj.set_epoch(epoch, first)
            else:
                obj.set_epoch(epoch)
        self._next = (epoch + 1, 0)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if getattr(control, "should_evaluate", False):
            self._evaluation(begin=True)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if getattr(control, "should_evaluate", False):
            self._evaluation(begin=True)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._evaluation(begin=False)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # Evaluation after training reuses the last epoch's keys: no checks until set_epoch.
        self._evaluation(begin=True)

    # -- helpers ---------------------------------------------------------------------------

    def _evaluation(self, *, begin: bool) -> None:
        for obj in self._targets:
            if isinstance(obj, Collator):
                if begin:
                    obj._streams.begin_evaluation()
                else:
                    obj._streams.end_evaluation()

    def __repr__(self) -> str:
        return f"EpochCallback(objects={self.objects!r}, next_epoch={self._next[0]})"


def _found_in(loader: Any) -> list[Any]:
    """The collator (unwrapped from Trainer's ``RemoveColumnsCollator``) and the dataset of
    lmobjectives behind a DataLoader (accelerate's included)."""
    found: list[Any] = []
    collate = getattr(loader, "collate_fn", None)
    for _ in range(4):  # wrappers keep the collator as .data_collator
        if collate is None or isinstance(collate, Collator):
            break
        collate = getattr(collate, "data_collator", None)
    if isinstance(collate, Collator):
        found.append(collate)
    dataset = getattr(loader, "dataset", None)
    if callable(getattr(dataset, "set_epoch", None)) and type(dataset).__module__.startswith(
        "lmobjectives."
    ):
        found.append(dataset)
    return found


def _unique(objects: list[Any]) -> list[Any]:
    seen: set[int] = set()
    out = []
    for obj in objects:
        if id(obj) not in seen:
            seen.add(id(obj))
            out.append(obj)
    return out


def _resume_point(args: Any, state: Any, loader: Any) -> tuple[int, int]:
    """``(epoch, first batch)`` Trainer resumes at: what ``Trainer._init_training_state``
    computes from the checkpoint's global step (``(0, 0)`` for a fresh run)."""
    step = int(getattr(state, "global_step", 0) or 0)
    if step == 0:
        return 0, 0
    accumulation = max(int(getattr(args, "gradient_accumulation_steps", 1)), 1)
    try:
        batches = len(loader)
    except TypeError:
        batches = 0
    if batches:
        per_epoch = max(batches // accumulation + int(batches % accumulation > 0), 1)
    else:
        per_epoch = max(int(getattr(args, "max_steps", 0)), 1)
    epoch = step // per_epoch
    skipped = 0 if getattr(args, "ignore_data_skip", False) else step % per_epoch * accumulation
    return epoch, skipped
