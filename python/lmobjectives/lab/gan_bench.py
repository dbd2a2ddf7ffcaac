"""``lmobjectives gan-bench``: the synthetic-oracle comparison of the text GANs against their
controls, at a CPU-sized scale.

One run (everything seeded, so it is reproducible on a given machine):

1. the oracle and its 10k/5k samples (:func:`~lmobjectives.torch.gan.data.oracle_data`);
2. MLE pretraining of the papers' LSTM, evaluated after every epoch: the early-stopped
   checkpoint (best NLL-test) and the last one are reported;
3. the temperature sweep of the last MLE checkpoint (τ = 1, 0.95, 0.9, 0.85, 0.8): the
   frontier a method must beat;
4. from the last MLE checkpoint: constant-reward policy gradient (Q ≡ 1, LantaoYu/SeqGAN#21)
   and SeqGAN, with the same number of generator steps;
5. optionally LeakGAN (its own manager/worker generator, evaluated at temperature 1 and with
   the released code's ×1.5 logits) and MaskGAN (in-filling: its own table, metrics on the
   missing tokens, against MaskMLE at τ = 1 and 0.9).

"vs frontier" is a method's NLL-test minus the temperature sweep's NLL-test at the same
NLL-oracle (piecewise-linear interpolation; extrapolated outside the sweep): negative means a
better (NLL-oracle, NLL-test) point than temperature alone reaches.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lmobjectives._optional import require
from lmobjectives.torch.gan.data import OracleConfig, OracleData, evaluate, oracle_data
from lmobjectives.torch.gan.models import CNNDiscriminator, LSTMGenerator
from lmobjectives.torch.gan.seqgan import SeqGAN, SeqGANConfig

if TYPE_CHECKING:
    import torch
else:  # through require, as every optional import (lmobjectives.torch has checked it is there)
    torch = require("torch", "lmobjectives.lab.gan_bench")

__all__ = ["GanBenchConfig", "format_gan_table", "frontier_gap", "plot_frontier", "run_gan_bench"]

#: What needs matplotlib, as :class:`~lmobjectives.MissingDependencyError` says it.
PLOT_PURPOSE = "gan-bench's plot; --no-plot skips it"


@dataclass
class GanBenchConfig:
    """Sizes of one ``gan-bench`` run (defaults: a few minutes on 2 CPU cores)."""

    vocab_size: int = 5000
    hidden_size: int = 32
    length: int = 20
    num_train: int = 10_000
    num_test: int = 5_000
    mle_epochs: int = 5
    adv_steps: int = 40
    num_rollouts: int = 8
    batch_size: int = 64
    d_pretrain_rounds: int = 3
    d_negatives: int = 2_000
    d_filters: int = 32
    eval_samples: int = 1_000
    eval_test: int = 1_000
    temperatures: tuple[float, ...] = (1.0, 0.95, 0.9, 0.85, 0.8)
    leakgan: bool = True
    leakgan_pretrain_epochs: int = 1
    leakgan_steps: int = 10
    maskgan: bool = True
    maskgan_pretrain_epochs: int = 2
    maskgan_steps: int = 100
    seed: int = 0
    cache_dir: str | None = None
    log: Callable[[str], None] | None = field(default=None, repr=False)

    def oracle(self) -> OracleConfig:
        return OracleConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            length=self.length,
            num_train=self.num_train,
            num_test=self.num_test,
        )


_LOG: list[Callable[[str], None]] = []


def _row(name: str, metrics: dict[str, float], seconds: float, **extra: Any) -> dict[str, Any]:
    for say in _LOG:
        say(
            f"  {name}: NLL-oracle {metrics['nll_oracle']:.3f}, NLL-test "
            f"{metrics['nll_test']:.3f}, entropy {metrics['entropy']:.3f}, unique "
            f"{metrics['unique']:.3f}"
        )
    return {"method": name, **metrics, "seconds": seconds, **extra}


def frontier_gap(point: tuple[float, float], sweep: list[tuple[float, float]]) -> float:
    """NLL-test of ``point`` minus the sweep's NLL-test at the same NLL-oracle (linear
    interpolation between the sweep's points sorted by NLL-oracle; linear extrapolation from
    the two nearest outside them)."""
    pts = sorted(sweep)
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    x = point[0]
    if len(pts) == 1:
        return point[1] - ys[0]
    i = int(np.searchsorted(xs, x))
    i = min(max(i, 1), len(pts) - 1)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    y = y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return point[1] - y


def run_gan_bench(config: GanBenchConfig | None = None) -> dict[str, Any]:
    """Runs the benchmark; returns ``{"rows", "maskgan_rows", "sweep", "data", "config"}``."""
    c = config or GanBenchConfig()
    say = c.log or (lambda _s: None)
    _LOG[:] = [say]
    try:
        return _run(c, say)
    finally:
        _LOG.clear()


def _run(c: GanBenchConfig, say: Callable[[str], None]) -> dict[str, Any]:
    torch.manual_seed(c.seed)
    t0 = time.perf_counter()
    data = oracle_data(c.oracle(), cache_dir=c.cache_dir)
    say(
        f"oracle: vocab {c.vocab_size}, length {c.length}, {c.num_train} train / "
        f"{c.num_test} held-out samples, entropy rate {data.entropy_rate:.3f} nats/token "
        f"({time.perf_counter() - t0:.0f} s)"
    )

    def ev(g: Any, temperature: float = 1.0) -> dict[str, float]:
        return evaluate(
            g,
            data,
            num_samples=c.eval_samples,
            num_test=c.eval_test,
            temperature=temperature,
            seed=c.seed + 1000,
        )

    mle = _mle(c, data, ev, say)
    rows = mle.rows + _controls(c, data, ev, say, mle)
    if c.leakgan:
        rows += _leakgan_rows(c, data, ev, say)
    maskgan_rows = _maskgan_rows(c, data, say) if c.maskgan else []
    for r in rows:
        r["vs_frontier"] = frontier_gap((r["nll_oracle"], r["nll_test"]), mle.sweep)
    return {
        "rows": rows,
        "maskgan_rows": maskgan_rows,
        "sweep": mle.sweep,
        "data": data,
        "config": c,
        "seconds": time.perf_counter() - t0,
    }


@dataclass
class _MLE:
    """What MLE pretraining leaves for the adversarial phase."""

    rows: list[dict[str, Any]]
    sweep: list[tuple[float, float]]  # (NLL-oracle, NLL-test) at each temperature
    pretrained: dict[str, Any]  # the last checkpoint's state dict
    disc: CNNDiscriminator
    base_cfg: SeqGANConfig


def _mle(
    c: GanBenchConfig, data: OracleData, ev: Callable[..., dict[str, float]], say: Any
) -> _MLE:
    """The random-init row, MLE pretraining evaluated after every epoch (the early-stopped row)
    and the temperature sweep of the last checkpoint."""
    rows: list[dict[str, Any]] = []
    g = LSTMGenerator(c.vocab_size, c.hidden_size, c.hidden_size)
    rows.append(_row("random init (N(0, 0.1²))", ev(g), 0.0))
    disc = CNNDiscriminator(
        c.vocab_size,
        c.length,
        filter_sizes=(2, 3, 4, 5),
        num_filters=(c.d_filters,) * 4,
    )
    base_cfg = SeqGANConfig(
        batch_size=c.batch_size,
        num_rollouts=c.num_rollouts,
        d_steps=1,
        d_epochs=1,
        d_negatives=c.d_negatives,
        seed=c.seed,
    )
    mle = SeqGAN(g, disc, data.train, base_cfg)
    best: tuple[float, int, dict[str, float], Any] | None = None
    start = time.perf_counter()
    history = []
    for epoch in range(1, c.mle_epochs + 1):
        loss = mle.pretrain_generator(1)[0]
        m = ev(g)
        history.append((epoch, m))
        say(
            f"MLE epoch {epoch}: train {loss:.3f}, NLL-oracle {m['nll_oracle']:.3f}, "
            f"NLL-test {m['nll_test']:.3f}, entropy {m['entropy']:.3f}"
        )
        if best is None or m["nll_test"] < best[0]:
            best = (m["nll_test"], epoch, m, copy.deepcopy(g.state_dict()))
    mle_seconds = time.perf_counter() - start
    assert best is not None
    rows.append(_row(f"MLE early-stopped (epoch {best[1]}, best NLL-test)", best[2], mle_seconds))
    sweep: list[tuple[float, float]] = []
    for tau in c.temperatures:
        m = history[-1][1] if tau == 1.0 else ev(g, tau)
        sweep.append((m["nll_oracle"], m["nll_test"]))
        rows.append(_row(f"MLE {c.mle_epochs} epochs, τ = {tau:g}", m, 0.0, control=True))
    say("temperature sweep done")
    return _MLE(rows, sweep, copy.deepcopy(g.state_dict()), disc, base_cfg)


def _controls(
    c: GanBenchConfig,
    data: OracleData,
    ev: Callable[..., dict[str, float]],
    say: Any,
    mle: _MLE,
) -> list[dict[str, Any]]:
    """Constant-reward policy gradient (the control) and SeqGAN, from the same checkpoint."""
    const = LSTMGenerator(c.vocab_size, c.hidden_size, c.hidden_size)
    const.load_state_dict(mle.pretrained)
    tr = SeqGAN(
        const,
        None,
        data.train,
        SeqGANConfig(**{**mle.base_cfg.__dict__, "reward": "constant"}),
    )
    start = time.perf_counter()
    for _ in range(c.adv_steps):
        tr.step()
    rows = [
        _row(
            f"constant-reward PG (Q ≡ 1), {c.adv_steps} steps",
            ev(const),
            time.perf_counter() - start,
            control=True,
        )
    ]
    say("constant-reward control done")

    seq = LSTMGenerator(c.vocab_size, c.hidden_size, c.hidden_size)
    seq.load_state_dict(mle.pretrained)
    tr = SeqGAN(seq, mle.disc, data.train, mle.base_cfg)
    start = time.perf_counter()
    tr.pretrain_discriminator(c.d_pretrain_rounds)
    for step in range(1, c.adv_steps + 1):
        stats = tr.step()
        if step % 10 == 0:
            say(f"SeqGAN step {step}: reward {stats['reward']:.3f}, D loss {stats['d_loss']:.3f}")
    rows.append(
        _row(
            f"SeqGAN ({c.num_rollouts} rollouts), {c.adv_steps} steps",
            ev(seq),
            time.perf_counter() - start,
        )
    )
    return rows


def _leakgan_rows(
    c: GanBenchConfig, data: OracleData, ev: Callable[..., dict[str, float]], say: Any
) -> list[dict[str, Any]]:
    from lmobjectives.torch.gan.leakgan import (
        LOGIT_TRICK_TEMPERATURE,
        LeakGAN,
        LeakGANConfig,
        LeakGANGenerator,
    )

    disc = CNNDiscriminator(
        c.vocab_size, c.length, filter_sizes=(2, 3, 4, 5), num_filters=(c.d_filters,) * 4
    )
    g = LeakGANGenerator(c.vocab_size, c.length, disc, hidden_size=c.hidden_size)
    cfg = LeakGANConfig(
        batch_size=c.batch_size,
        d_steps=1,
        d_epochs=1,
        d_negatives=c.d_negatives,
        seed=c.seed,
    )
    tr = LeakGAN(g, data.train, cfg)
    start = time.perf_counter()
    tr.discriminator_round()
    tr.pretrain_generator(c.leakgan_pretrain_epochs)
    rows = [
        _row(f"LeakGAN pretrained ({c.leakgan_pretrain_epochs} epochs), τ = 1", ev(g), 0.0),
    ]
    for _ in range(c.d_pretrain_rounds):
        tr.discriminator_round()
    for step in range(1, c.leakgan_steps + 1):
        stats = tr.step()
        if step % 5 == 0:
            say(f"LeakGAN step {step}: reward {stats['reward']:.3f}")
    seconds = time.perf_counter() - start
    rows.append(_row(f"LeakGAN, {c.leakgan_steps} steps, τ = 1", ev(g), seconds))
    rows.append(
        _row(
            f"LeakGAN, {c.leakgan_steps} steps, ×1.5 logits (released eval)",
            ev(g, LOGIT_TRICK_TEMPERATURE),
            0.0,
        )
    )
    say("LeakGAN done")
    return rows


def _maskgan_rows(c: GanBenchConfig, data: OracleData, say: Any) -> list[dict[str, Any]]:
    from lmobjectives.torch.gan.maskgan import (
        InfillModel,
        MaskGAN,
        MaskGANConfig,
        TokenDiscriminator,
        evaluate_infill,
    )

    torch.manual_seed(c.seed)
    g = InfillModel(c.vocab_size, c.hidden_size, c.hidden_size)
    d = TokenDiscriminator(c.vocab_size, c.hidden_size, c.hidden_size)
    tr = MaskGAN(g, d, data.train, MaskGANConfig(batch_size=c.batch_size, seed=c.seed))
    test = data.test[: c.eval_test]
    start = time.perf_counter()
    tr.pretrain(c.maskgan_pretrain_epochs)
    rows = [
        _row(
            f"MaskMLE {c.maskgan_pretrain_epochs} epochs, τ = {tau:g}",
            evaluate_infill(g, data.oracle, test, temperature=tau),
            time.perf_counter() - start if tau == 1.0 else 0.0,
            control=True,
        )
        for tau in (1.0, 0.9)
    ]
    start = time.perf_counter()
    for _ in range(c.maskgan_steps):
        tr.step()
    rows.append(
        _row(
            f"MaskGAN (critic, γ = 0.9), {c.maskgan_steps} steps",
            evaluate_infill(g, data.oracle, test),
            time.perf_counter() - start,
        )
    )
    say("MaskGAN done")
    return rows


def format_gan_table(rows: list[dict[str, Any]], *, frontier: bool = True) -> str:
    """A Markdown table of benchmark rows."""
    head = "| method | NLL-oracle | NLL-test | entropy | unique |"
    sep = "|---|---:|---:|---:|---:|"
    if frontier:
        head += " vs frontier |"
        sep += "---:|"
    head += " seconds |"
    sep += "---:|"
    lines = [head, sep]
    for r in rows:
        cells = [
            r["method"],
            f"{r['nll_oracle']:.3f}",
            f"{r['nll_test']:.3f}",
            f"{r['entropy']:.3f}",
            f"{r['unique']:.3f}",
        ]
        if frontier:
            cells.append(f"{r.get('vs_frontier', float('nan')):+.3f}")
        cells.append(f"{r['seconds']:.0f}" if r["seconds"] else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_frontier(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Saves the (NLL-oracle, NLL-test) plane: the temperature sweep as a line, every other
    row as a labelled point. Needs matplotlib (``pip install 'lmobjectives[plot]'``)."""
    matplotlib = require("matplotlib", PLOT_PURPOSE)
    matplotlib.use("Agg")
    plt = require("matplotlib.pyplot")
    fig, ax = plt.subplots(figsize=(8, 5.5))
    sweep = sorted(result["sweep"])
    ax.plot([p[0] for p in sweep], [p[1] for p in sweep], "o-", color="gray", label="MLE, τ sweep")
    markers = "sD^v<>pP*Xh"
    k = 0
    for r in result["rows"]:
        if r["method"].startswith("random init") or (
            r.get("control") and "τ" in r["method"] and "MLE" in r["method"]
        ):
            continue
        ax.plot(r["nll_oracle"], r["nll_test"], markers[k % len(markers)], label=r["method"])
        k += 1
    ax.set_xlabel("NLL-oracle (nats/token; lower = closer to the oracle's modes)")
    ax.set_ylabel("NLL-test (nats/token; lower = better coverage)")
    ax.set_title(
        f"Synthetic oracle (entropy rate {result['data'].entropy_rate:.2f}): "
        "down-left of the τ sweep beats MLE",
        fontsize=10,
    )
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
