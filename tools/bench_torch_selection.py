"""CPU cost of selecting labelled positions without a host sync (issue 19), forward + backward.

Compares, in one run on the same machine:

- ``MLMHead``: the boolean-mask selection (default, one ``nonzero``), the fixed-size gather
  (``max_predictions``, no sync) at the batch's largest row count and at a round bound, and
  the projection of every position with an ignore index (Hugging Face's way, no sync either);
- ``ElectraRTD``: the mask selection against ``max_predictions``;
- ``cpc_loss``: the previous implementation (boolean selection of the valid rows, kept here as
  the reference) against the current one (all rows, padded ones weighted 0).

Each row gives the minimum and the median of ``--repeats`` timed calls after two warm-up
calls, the cases of a block timed in interleaved rounds; ratios are against the block's first
row. Run: ``.venv/bin/python tools/bench_torch_selection.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from lmobjectives.torch import MLMHead, TinyEncoder, cpc_loss, masked_lm_loss
from lmobjectives.torch.electra import ElectraRTD


def _time(cases: dict[str, Callable[[], Any]], repeats: int) -> list[tuple[str, float, float, int]]:
    """``(name, min, median, flops)`` per case (seconds; matmul FLOPs counted by
    ``FlopCounterMode``, which load cannot blur); the cases are timed in interleaved rounds
    so that load from other processes falls on all of them alike."""
    flops = {}
    for name, fn in cases.items():
        fn()
        with FlopCounterMode(display=False) as counter:
            fn()
        flops[name] = counter.get_total_flops()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return [(n, min(t), statistics.median(t), flops[n]) for n, t in times.items()]


def _report(title: str, rows: list[tuple[str, float, float, int]]) -> None:
    print(f"\n{title}")
    print(
        f"  {'':<36} {'min ms':>9} {'ratio':>6} {'median ms':>10} {'ratio':>6}"
        f" {'GFLOP':>7} {'ratio':>6}"
    )
    _, base_min, base_med, base_flops = rows[0]
    for name, lo, med, fl in rows:
        print(
            f"  {name:<36} {lo * 1e3:9.2f} {lo / base_min:5.2f}x "
            f"{med * 1e3:10.2f} {med / base_med:5.2f}x {fl / 1e9:7.3f} {fl / base_flops:5.2f}x"
        )


def _mlm(repeats: int) -> None:
    b, s, h, v = 16, 128, 256, 8192
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, v, (b, s), generator=g)
    labels[torch.rand(b, s, generator=g) >= 0.15] = -100
    most = int((labels != -100).sum(1).max())
    hidden = torch.randn(b, s, h, generator=g, requires_grad=True)
    torch.manual_seed(0)
    heads = {
        "mask selection (default, syncs)": MLMHead(h, v),
        f"max_predictions={most} (row max)": MLMHead(h, v, max_predictions=most),
        "max_predictions=32 (s/4)": MLMHead(h, v, max_predictions=32),
    }
    state = heads["mask selection (default, syncs)"].state_dict()
    for m in heads.values():
        m.load_state_dict(state)
    full = heads["mask selection (default, syncs)"]

    def step(head: MLMHead) -> Callable[[], None]:
        return lambda: head(hidden, labels)[0].backward()

    def every_position() -> None:
        masked_lm_loss(full(hidden), labels).backward()

    cases = {name: step(m) for name, m in heads.items()}
    cases["every position + ignore index"] = every_position
    n = int((labels != -100).sum())
    title = f"MLMHead  batch {b} x {s}, hidden {h}, vocab {v}, {n} labelled (i.i.d. 15%)"
    _report(title, _time(cases, repeats))

    # an exact budget (MLMCollator(exact_budget=True, max_predictions=P)): P labels per row
    p = round(0.15 * s)
    exact = torch.full((b, s), -100)
    order = torch.rand(b, s, generator=g).argsort(dim=1)[:, :p]
    exact.scatter_(1, order, torch.randint(0, v, (b, p), generator=g))
    fixed = MLMHead(h, v, max_predictions=p)
    fixed.load_state_dict(state)
    cases = {
        "mask selection (default, syncs)": lambda: full(hidden, exact)[0].backward(),
        f"max_predictions={p}": lambda: fixed(hidden, exact)[0].backward(),
    }
    title = f"MLMHead  the same, exactly {p} labelled per row ({b * p})"
    _report(title, _time(cases, repeats))


def _electra(repeats: int) -> None:
    b, s, v = 16, 128, 8192
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, v, (b, s), generator=g)
    labels = torch.where(torch.rand(b, s, generator=g) < 0.15, ids, torch.full_like(ids, -100))
    most = int((labels != -100).sum(1).max())
    torch.manual_seed(0)
    gen = TinyEncoder(v, 64, 1, 1, max_length=s, embedding_size=256, head="mlm")
    disc = TinyEncoder(v, 256, 1, 4, max_length=s, head="token")
    models = {
        "mask selection (default, syncs)": ElectraRTD(gen, disc),
        f"max_predictions={most} (row max)": ElectraRTD(gen, disc, max_predictions=most),
        "max_predictions=32 (s/4)": ElectraRTD(gen, disc, max_predictions=32),
    }

    def step(m: ElectraRTD) -> Callable[[], None]:
        return lambda: m(ids, labels, generator=torch.Generator().manual_seed(0)).loss.backward()

    cases = {name: step(m) for name, m in models.items()}
    _report(f"ElectraRTD  batch {b} x {s}, vocab {v}, 15% masked, 1 layer", _time(cases, repeats))


def _cpc_reference(
    z: torch.Tensor, c: torch.Tensor, w: torch.Tensor, mask: torch.Tensor, negatives: str
) -> torch.Tensor:
    """cpc_loss as it was before issue 19: boolean selection of the valid rows."""
    bsz, steps_t, dz = z.shape
    losses = []
    for k in range(1, w.shape[0] + 1):
        n = steps_t - k
        pred, target = c[:, :n] @ w[k - 1].T, z[:, k:]
        valid = mask[:, :n] & mask[:, k:]
        if negatives == "batch":
            scores = torch.einsum("btd,ctd->tbc", pred, target)
            scores = scores.masked_fill(~mask[:, k:].T[:, None, :], float("-inf"))
            labels = torch.arange(bsz).expand(n, bsz)
            keep = valid.T
        else:  # "all"
            scores = pred.reshape(bsz * n, dz) @ target.reshape(bsz * n, dz).T
            scores = scores.masked_fill(~mask[:, k:].reshape(1, -1), float("-inf"))
            labels = torch.arange(bsz * n)
            keep = valid.reshape(-1)
        losses.append(F.cross_entropy(scores[keep], labels[keep]))
    return torch.stack(losses).mean()


def _cpc(repeats: int) -> None:
    b, t, d, k = 16, 64, 64, 4
    g = torch.Generator().manual_seed(2)
    z = torch.randn(b, t, d, generator=g, requires_grad=True)
    c = torch.randn(b, t, d, generator=g, requires_grad=True)
    w = torch.randn(k, d, d, generator=g, requires_grad=True)
    lengths = torch.randint(t // 2, t + 1, (b,), generator=g)
    mask = torch.arange(t)[None] < lengths[:, None]
    for negatives in ("batch", "all"):
        old = _cpc_reference(z, c, w, mask, negatives)
        new = cpc_loss(z, c, w, negatives=negatives, mask=mask)  # type: ignore[arg-type]
        torch.testing.assert_close(new, old)
        cases: dict[str, Callable[[], Any]] = {
            "boolean selection (before)": lambda n=negatives: _cpc_reference(  # type: ignore[misc]
                z, c, w, mask, n
            ).backward(),
            "all rows, padded weighted 0 (now)": lambda n=negatives: cpc_loss(  # type: ignore[misc]
                z, c, w, negatives=n, mask=mask
            ).backward(),
        }
        title = f"cpc_loss negatives={negatives!r}  batch {b} x {t}, dim {d}, K {k}"
        _report(title, _time(cases, repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    _mlm(args.repeats)
    _electra(args.repeats)
    _cpc(args.repeats)


if __name__ == "__main__":
    main()
