"""``lmobjectives compare``: which objective, for what — equal-compute comparisons on probes.

Every chosen objective trains the same encoder size (:mod:`lmobjectives.lab.pretrain`'s models
and data paths) for the same number of **training FLOPs** — the matrix-multiply and attention
FLOPs of one training step's forward and backward pass, counted by
``torch.utils.flop_counter.FlopCounterMode`` on the objective's first batch, times its steps;
the optimiser, the data path and the evaluation are not counted — with each seed, on the
embedded corpus minus the probe documents. Each encoder is then probed
(:mod:`lmobjectives.lab.probes`): topic (which standard-library package a chunk is from) by a
linear probe and by a short fine-tune, next-sentence and sentence-order pair probes, and
next-chunk retrieval, against two controls: random-init encoders (one per seed) and a bag of
words. The topic linear probe also runs along the way (``points`` times per run), which gives
the plot of probe score against compute.

Written to ``out``: ``compare.md`` (the table), ``metrics.json`` (everything, per seed) and
``compare.png`` (with matplotlib). From Python::

    from lmobjectives.lab.compare import CompareConfig, compare
    result = compare(CompareConfig(objectives=("mlm", "rtd"), flops=5e11), out="runs/compare")
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lmobjectives._optional import require
from lmobjectives.lab.pretrain import OBJECTIVES, PretrainConfig, pretrain
from lmobjectives.lab.probes import (
    PROBES,
    BagOfWords,
    Features,
    ProbeData,
    evaluate_probes,
    probe_data,
    probe_split,
)

if TYPE_CHECKING:
    import torch
    from torch import nn
else:  # through require, as every optional import
    torch = require("torch", "lmobjectives.lab.compare")
    nn = torch.nn

__all__ = ["DEFAULT_OBJECTIVES", "CompareConfig", "compare", "format_table"]

#: What ``lmobjectives compare`` trains by default (any of ``pretrain``'s objectives can be
#: chosen): masked LM, ELECTRA's replaced-token detection, a sentence-pair objective (MLM +
#: sentence order), a denoising encoder–decoder and contrastive learning.
DEFAULT_OBJECTIVES = ("mlm", "rtd", "sop", "t5", "infonce")

METRICS = "metrics.json"
TABLE = "compare.md"
PLOT = "compare.png"
PLOT_PURPOSE = "lmobjectives compare's plot"

_PROBE_TITLES = {
    "topic": "topic, linear probe",
    "finetune": "topic, fine-tuned",
    "nsp": "next sentence",
    "sop": "sentence order",
    "retrieval": "next-chunk retrieval R@1",
}


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """One comparison.

    Args:
        objectives: ``pretrain`` objectives to train (default :data:`DEFAULT_OBJECTIVES`).
        seeds: one run per objective and seed, and one random-init control per seed (0, 1).
        flops: training FLOPs per run (1e12): each objective's steps are this over its FLOPs
            per step.
        points: evaluations of the topic linear probe along each run (3), for the plot.
        probes: which probes run at the end of each run (all of :data:`PROBES`).
        batch_size, seq_length, hidden_size, num_layers, num_heads, learning_rate: the
            encoder and its optimiser, as in :class:`~lmobjectives.lab.pretrain.PretrainConfig`
            (16, 64, 128, 2, 2, 1e-3: ``pretrain``'s defaults).
        per_class, min_documents: probe documents per label, labels with at least that many
            documents (16, 16); half of each label's probe documents train the probes, half
            test them, and no run pretrains on any of them.
        finetune_epochs: epochs of the topic fine-tune (3; AdamW at 1e-3, batches of 16).
        device: ``"cpu"``, ``"cuda"``, ...
    """

    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
    seeds: tuple[int, ...] = (0, 1)
    flops: float = 1e12
    points: int = 3
    probes: tuple[str, ...] = PROBES
    batch_size: int = 16
    seq_length: int = 64
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 2
    learning_rate: float = 1e-3
    per_class: int = 16
    min_documents: int = 16
    finetune_epochs: int = 3
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not self.objectives:
            raise ValueError("objectives: choose at least one")
        for name in self.objectives:
            if name not in OBJECTIVES:
                raise ValueError(f"objectives: {name!r} is not one of {list(OBJECTIVES)}")
        if len(set(self.objectives)) != len(self.objectives):
            raise ValueError(f"objectives: duplicates in {list(self.objectives)}")
        if not set(self.probes) <= set(PROBES) or "topic" not in self.probes:
            raise ValueError(f"probes: need 'topic' and only names of {list(PROBES)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: need distinct seeds, got {list(self.seeds)}")
        if not (
            isinstance(self.flops, (int, float)) and math.isfinite(self.flops) and self.flops > 0
        ):
            raise ValueError(f"flops: must be a positive number, got {self.flops!r}")
        for name in ("points", "per_class", "finetune_epochs"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name}: must be a positive int, got {getattr(self, name)!r}")
        if self.min_documents < 2:
            raise ValueError(f"min_documents: must be >= 2, got {self.min_documents!r}")
        self.pretrain_config("mlm", self.seeds[0], 1)  # checks the model and optimiser fields

    def pretrain_config(self, objective: str, seed: int, steps: int) -> PretrainConfig:
        return PretrainConfig(
            objective=objective,
            steps=steps,
            batch_size=self.batch_size,
            seq_length=self.seq_length,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            learning_rate=self.learning_rate,
            seed=seed,
            eval_every=max(1, math.ceil(steps / self.points)),
            eval_batches=2,
            device=self.device,
        )


# -- the encoder inside each objective's model ----------------------------------------------------


def _tiny_encoder(module: Any, ids: Any, mask: Any, types: Any) -> Any:
    return module(ids, mask, types)


def _pretrain_encoder(module: Any, ids: Any, mask: Any, types: Any) -> Any:
    return module.encoder(ids, mask, types)


def _discriminator(module: Any, ids: Any, mask: Any, types: Any) -> Any:
    return module.discriminator.hidden_states(ids, mask, types)


def _seq2seq_encoder(module: Any, ids: Any, mask: Any, types: Any) -> Any:
    return module.encode(ids, mask)  # (its token-type table is never trained)


def features(objective: str, model: nn.Module) -> Features:
    """The encoder a probe reads in ``objective``'s model (as ``pretrain`` builds it): the
    MLM-family encoder, ELECTRA's discriminator, the seq2seq encoder, the contrastive encoder."""
    if objective == "rtd":
        return Features(model, _discriminator)
    if objective in ("t5", "bart", "ul2"):
        return Features(model, _seq2seq_encoder)
    if objective == "infonce":
        return Features(model, _tiny_encoder)
    return Features(model, _pretrain_encoder)


def flops_per_step(cfg: PretrainConfig, corpus: Any) -> float:
    """Matrix-multiply and attention FLOPs of one training step (forward and backward) of
    ``cfg``'s objective on its first batch (``torch.utils.flop_counter``)."""
    from lmobjectives.lab.pretrain import _TASKS, _batches, _to

    flop_counter = require("torch.utils.flop_counter", "lmobjectives.lab.compare")

    task = _TASKS[cfg.objective](cfg, corpus)
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    model = task.model().to(device)
    stream = _batches(task, task.dataset(corpus, cfg.seed), task.collator(cfg.seed), cfg, 0)
    try:
        _, batch = next(stream)
    finally:
        stream.close()
    gen = torch.Generator(device).manual_seed(cfg.seed)
    with flop_counter.FlopCounterMode(display=False) as counter:
        loss, _ = task.loss(model, _to(batch, device), gen)
        loss.backward()
    return float(counter.get_total_flops())


def _random_init(cfg: CompareConfig, vocab_size: int, seed: int) -> Features:
    """The control: the MLM family's encoder as initialised from ``seed``, never trained."""
    from lmobjectives.lab.pretrain import _Encoder

    torch.manual_seed(seed)
    model = _Encoder(cfg.pretrain_config("mlm", seed, 1), vocab_size, pair_head=False)
    return Features(model.to(torch.device(cfg.device)), _pretrain_encoder)


# -- the run ---------------------------------------------------------------------------------------


def _subset(corpus: Any, docs: np.ndarray) -> Any:
    """The documents ``docs`` (sorted indices) of ``corpus`` as a corpus of their own (copied)."""
    from lmobjectives import TokenCorpus

    so, do = np.asarray(corpus.sentence_offsets), np.asarray(corpus.document_offsets)
    ids, sentence_ends, doc_ends = [], [], []
    tokens = sentences = 0
    for d in docs.tolist():
        first, last = int(do[d]), int(do[d + 1])
        ids.append(np.asarray(corpus.ids[so[first] : so[last]]))
        sentence_ends.append(so[first + 1 : last + 1] - so[first] + tokens)
        tokens += int(so[last] - so[first])
        sentences += last - first
        doc_ends.append(sentences)
    return TokenCorpus(
        np.concatenate(ids),
        np.concatenate([[0], *sentence_ends]).astype(np.int64),
        np.asarray([0, *doc_ends], dtype=np.int64),
        corpus.vocab_size,
        corpus.tokenizer,
        source=corpus.source,
        document_labels=[corpus.document_labels[d] for d in docs.tolist()],
    )


def _log(line: str) -> None:
    print(line, flush=True)


# long: the whole comparison in order — split, FLOPs, runs with probes, controls, summary
def compare(
    config: CompareConfig | None = None,
    *,
    corpus: Any = None,
    out: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] | None = _log,
    plot: bool = True,
) -> dict[str, Any]:
    """Runs the comparison; returns the metrics (also written to ``out``: ``metrics.json``,
    ``compare.md`` and, with matplotlib and ``plot``, ``compare.png``).

    Args:
        config: the comparison (default: :class:`CompareConfig`'s defaults).
        corpus: a :class:`~lmobjectives.TokenCorpus` with ``document_labels`` (default: the
            embedded one).
        out: directory for the files (default: nothing written).
        log: called with one line per finished run (default: print; ``None``: silent).
        plot: write the plot.
    """
    cfg = config or CompareConfig()
    say = log or (lambda line: None)
    if corpus is None:
        from lmobjectives import TokenCorpus

        corpus = TokenCorpus.default()
    if corpus.document_labels is None:
        raise ValueError("corpus: comparing on probes needs a corpus with document_labels")
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {cfg.device!r} requested but CUDA is not available")
    started = time.perf_counter()
    split = probe_split(corpus.document_labels, cfg.per_class, cfg.min_documents)
    data = probe_data(corpus, split, cfg.seq_length)
    train_corpus = _subset(corpus, split.pretrain)
    say(
        f"probe: {len(split.classes)} labels, {len(split.train)} + {len(split.test)} documents "
        f"held out of pretraining; topic {len(data.topic[0].ids)} / {len(data.topic[1].ids)} "
        f"chunks, pairs {len(data.sop[0].ids)} / {len(data.sop[1].ids)}, retrieval "
        f"{len(data.retrieval[0].ids)} queries"
    )
    runs: dict[str, dict[str, Any]] = {}
    for objective in cfg.objectives:
        per_step = flops_per_step(cfg.pretrain_config(objective, cfg.seeds[0], 1), train_corpus)
        steps = max(cfg.points, round(cfg.flops / per_step))
        runs[objective] = {"flops_per_step": per_step, "steps": steps, "seeds": {}}
        for seed in cfg.seeds:
            t0 = time.perf_counter()
            row = _train_and_probe(cfg, objective, seed, steps, per_step, train_corpus, data)
            row["seconds"] = time.perf_counter() - t0
            runs[objective]["seeds"][str(seed)] = row
            probing = row["seconds"] - row["train_seconds"]
            say(
                f"{objective} seed {seed}: {steps} steps x {per_step / 1e9:.2f} GFLOP, "
                f"{row['train_seconds']:.0f} s training + {probing:.0f} s probes: "
                + ", ".join(f"{k} {row['probes'][k]:.3f}" for k in row["probes"])
            )
    controls = _controls(cfg, corpus.vocab_size, data, device, say)
    result = {
        "config": dataclasses.asdict(cfg),
        "compute": "training FLOPs: matmul + attention FLOPs of forward and backward "
        "(torch.utils.flop_counter, one step on the objective's first batch) x steps",
        "device": _device_name(device),
        "threads": torch.get_num_threads(),
        "probe": {
            "classes": list(split.classes),
            "train_documents": len(split.train),
            "test_documents": len(split.test),
            "pretrain_documents": len(split.pretrain),
            "topic_chunks": [len(r.ids) for r in data.topic],
            "pairs": [len(r.ids) for r in data.sop],
            "retrieval_queries": len(data.retrieval[0].ids),
        },
        "runs": runs,
        "controls": controls,
        "summary": _summary(runs, controls, cfg.seeds, cfg.probes),
        "seconds": time.perf_counter() - started,
    }
    if out is not None:
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / METRICS).write_text(json.dumps(result, indent=2, allow_nan=True) + "\n")
        (out_dir / TABLE).write_text(format_table(result) + "\n")
        if plot:
            result["plot"] = plot_compute(result, out_dir / PLOT)
    return result


def _train_and_probe(
    cfg: CompareConfig,
    objective: str,
    seed: int,
    steps: int,
    per_step: float,
    corpus: Any,
    data: ProbeData,
) -> dict[str, Any]:
    """One run: ``pretrain`` with the topic probe at each evaluation and every probe at the end."""
    device = torch.device(cfg.device)
    curve: list[dict[str, float]] = []
    final: dict[str, float] = {}

    def on_evaluate(step: int, model: nn.Module) -> dict[str, Any]:
        if step == 0:
            return {}
        feats = features(objective, model)
        probes = cfg.probes if step >= steps else ("topic",)
        scores = evaluate_probes(
            data, feats, device, seed, probes, finetune_epochs=cfg.finetune_epochs
        )
        curve.append({"step": step, "flops": step * per_step, "topic": scores["topic"]})
        if step == steps:
            final.update(scores)
        return {f"probe_{k}": v for k, v in scores.items()}

    result = pretrain(
        cfg.pretrain_config(objective, seed, steps),
        corpus=corpus,
        progress=False,
        plot=False,
        on_evaluate=on_evaluate,
    )
    return {
        "probes": final,
        "curve": curve,
        "train_seconds": result["model_s"] + result["data_s"],
        "eval": result["eval"][-1],
    }


def _controls(
    cfg: CompareConfig,
    vocab_size: int,
    data: ProbeData,
    device: torch.device,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """The random-init encoder (per seed) and the bag of words on every probe."""
    random_init = {}
    for seed in cfg.seeds:
        feats = _random_init(cfg, vocab_size, seed)
        random_init[str(seed)] = evaluate_probes(
            data, feats, device, seed, cfg.probes, finetune_epochs=cfg.finetune_epochs
        )
        say(
            f"random init seed {seed}: "
            + ", ".join(f"{k} {v:.3f}" for k, v in random_init[str(seed)].items())
        )
    first = data.topic[0].ids[0]  # [CLS] ... [SEP]
    special = (first[0], first[-1], data.pad_id)
    bow = BagOfWords(data.topic[0].ids, skip=special)
    words = evaluate_probes(data, bow, device, probes=cfg.probes)
    say("bag of words: " + ", ".join(f"{k} {v:.3f}" for k, v in words.items()))
    return {"random_init": random_init, "bag_of_words": words}


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "mean": float(np.mean(values)),
        "min": float(np.min(values)),
        "max": float(np.max(values)),
        "n": len(values),
    }


def _summary(
    runs: dict[str, Any],
    controls: dict[str, Any],
    seeds: tuple[int, ...],
    probes: tuple[str, ...],
) -> dict[str, Any]:
    """Mean, min and max over the seeds of every probe, per objective and for the controls."""
    rows: dict[str, Any] = {}
    for objective, run in runs.items():
        per_seed = [run["seeds"][str(s)]["probes"] for s in seeds]
        rows[objective] = {p: _stats([r[p] for r in per_seed]) for p in probes}
    random_init = [controls["random_init"][str(s)] for s in seeds]
    rows["random init"] = {p: _stats([r[p] for r in random_init]) for p in probes}
    words = controls["bag_of_words"]
    rows["bag of words"] = {p: _stats([words[p]]) for p in probes if p in words}
    return rows


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return str(torch.cuda.get_device_name(device))
    import platform

    return f"{device.type} ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs)"


# -- output ----------------------------------------------------------------------------------------


def _cell(stats: dict[str, float] | None) -> str:
    if stats is None:
        return "—"
    if stats["n"] == 1:
        return f"{stats['mean']:.3f}"
    return f"{stats['mean']:.3f} ({stats['min']:.3f}–{stats['max']:.3f})"


def format_table(result: dict[str, Any]) -> str:
    """The comparison as a Markdown table: each probe's mean over the seeds (min–max)."""
    cfg, runs, summary = result["config"], result["runs"], result["summary"]
    probes = [p for p in PROBES if p in cfg["probes"]]
    head = ["encoder", "steps", "GFLOP/step", *(_PROBE_TITLES[p] for p in probes)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for name, row in summary.items():
        run = runs.get(name)
        steps = str(run["steps"]) if run else "0" if name == "random init" else "—"
        per_step = f"{run['flops_per_step'] / 1e9:.2f}" if run else "—"
        cells = [_cell(row.get(p)) for p in probes]
        lines.append(
            "| " + " | ".join([f"`{name}`" if run else name, steps, per_step, *cells]) + " |"
        )
    probe = result["probe"]
    lines += [
        "",
        f"Training compute: {cfg['flops']:.3g} FLOPs per encoder ({result['compute']}); "
        f"{len(cfg['seeds'])} seeds, mean (min–max). Encoder: {cfg['hidden_size']} wide, "
        f"{cfg['num_layers']} layers, {cfg['batch_size']} x {cfg['seq_length']} tokens per step, "
        f"lr {cfg['learning_rate']:g}. Probes: {len(probe['classes'])} labels, "
        f"{probe['train_documents']} / {probe['test_documents']} held-out documents "
        f"(probe train / test), {probe['topic_chunks'][0]} / {probe['topic_chunks'][1]} topic "
        f"chunks (balanced accuracy; chance {1 / len(probe['classes']):.3f}), "
        f"{probe['pairs'][0]} / {probe['pairs'][1]} sentence pairs (accuracy; chance 0.5), "
        f"{probe['retrieval_queries']} retrieval queries. {result['device']}, "
        f"{result['threads']} thread(s), {result['seconds'] / 60:.1f} min in all.",
    ]
    return "\n".join(lines)


def plot_compute(result: dict[str, Any], path: Path) -> str | None:
    """Topic linear-probe score against training FLOPs (mean over seeds, min–max bars), with
    the controls as horizontal lines; ``None`` (and no file) without matplotlib."""
    try:
        matplotlib = require("matplotlib", PLOT_PURPOSE)
        matplotlib.use("Agg", force=True)
        plt = require("matplotlib.pyplot")
    except ImportError:  # not installed (or a broken install): no plot
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    for objective, run in result["runs"].items():
        curves = [s["curve"] for s in run["seeds"].values()]
        n = min(map(len, curves))
        x = np.array([c["flops"] for c in curves[0][:n]])
        y = np.array([[c["topic"] for c in curve[:n]] for curve in curves])
        mean = y.mean(0)
        ax.errorbar(
            x, mean, yerr=[mean - y.min(0), y.max(0) - mean], marker="o", capsize=3, label=objective
        )
    summary = result["summary"]
    for name, style in (("random init", ":"), ("bag of words", "--")):
        ax.axhline(summary[name]["topic"]["mean"], color="grey", linestyle=style, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel("topic probe, balanced accuracy")
    ax.set_title("lmobjectives compare: linear probe vs compute")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=3, loc="center", bbox_to_anchor=(0.5, 0.75))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)
