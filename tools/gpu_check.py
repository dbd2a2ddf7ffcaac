"""The GPU checks of the torch side in one run (``make gpu-check``; under 8 minutes on one GPU).

1. The ``cuda``-marked tests (``pytest -m cuda``): every torch module on the device, losses
   equal to their CPU results, trainers stepping, ``pretrain --device cuda`` end to end, no
   host synchronisation inside the losses (``torch.cuda.set_sync_debug_mode("error")``).
2. Benchmarks, each against a baseline measured in the same run on the same device:

   - ``info_nce_loss`` and the ELECTRA loss (:class:`~lmobjectives.torch.ElectraRTD`), forward +
     backward at batch 4,096 × 768, against hand-written torch references (target: within
     1.2× of the reference);
   - mining a 1 M × 768 corpus on the GPU (:func:`lmobjectives.mine_hard_negatives` with CUDA
     tensors) against torch ``matmul`` + ``topk`` over the same chunks;
   - ``pretrain`` tokens/s and the share of the step spent on the data path.

Writes ``gpu_check.json`` and ``gpu_check.md`` (for ``docs/benchmarks.md``) to ``--out``.
``--dry-run`` runs every benchmark at toy sizes on the CPU (the tests run it that way, so the
script is known to work on a machine without a GPU); it skips the pytest step.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: Benchmark sizes: the real run and the dry run.
SIZES = {
    "full": {
        "batch": 4096,
        "dim": 768,
        "vocab": 30522,
        "seq": 128,
        "corpus": 1_000_000,
        "queries": 4096,
        "corpus_chunk": 131072,
        "pretrain_steps": 300,
        "pretrain_batch": 64,
        "repeats": 20,
    },
    "dry": {
        "batch": 64,
        "dim": 32,
        "vocab": 100,
        "seq": 16,
        "corpus": 3000,
        "queries": 32,
        "corpus_chunk": 1024,
        "pretrain_steps": 4,
        "pretrain_batch": 4,
        "repeats": 2,
    },
}
TARGET_RATIO = 1.2


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Median seconds of ``fn`` over ``repeats`` calls after two warm-up calls."""
    for _ in range(2):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def bench_info_nce(size: dict[str, int], device: torch.device) -> dict[str, Any]:
    from lmobjectives.torch import info_nce_loss

    g = torch.Generator(device).manual_seed(0)
    b, d = size["batch"], size["dim"]
    q = torch.randn(b, d, device=device, generator=g, requires_grad=True)
    p = torch.randn(b, d, device=device, generator=g, requires_grad=True)

    def ours() -> None:
        info_nce_loss(q, p, scale=20.0).backward()

    def reference() -> None:  # what one writes by hand: cosine logits, cross-entropy
        logits = F.normalize(q, dim=1) @ F.normalize(p, dim=1).T * 20.0
        F.cross_entropy(logits, torch.arange(b, device=device)).backward()

    return _pair("info_nce fwd+bwd", f"{b}x{d}", ours, reference, device, size["repeats"])


class _TokenModel(nn.Module):
    """Embedding + linear head: the cheapest model that exercises the ELECTRA loss."""

    def __init__(self, vocab: int, dim: int, out: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, out)

    def forward(self, input_ids: torch.Tensor, attention_mask: Any = None) -> torch.Tensor:
        return self.head(self.emb(input_ids)).squeeze(-1)


def bench_electra(size: dict[str, int], device: torch.device) -> dict[str, Any]:
    from lmobjectives.torch.electra import ElectraRTD, gumbel_sample

    torch.manual_seed(0)
    vocab, dim, seq = size["vocab"], size["dim"], size["seq"]
    rows = size["batch"] // seq
    gen = _TokenModel(vocab, dim, vocab).to(device)
    disc = _TokenModel(vocab, dim, 1).to(device)
    model = ElectraRTD(gen, disc, tie_embeddings=False)
    ids = torch.randint(5, vocab, (rows, seq), device=device)
    labels = torch.where(torch.rand(rows, seq, device=device) < 0.15, ids, -100)
    mask = torch.ones_like(ids)

    def ours() -> None:
        model(ids, labels, mask).loss.backward()

    def reference() -> None:  # the same step written out: MLM CE + Gumbel sample + BCE
        masked = labels != -100
        logits = gen(ids)[masked]
        mlm = F.cross_entropy(logits.float(), labels[masked])
        with torch.no_grad():
            corrupted = ids.clone()
            corrupted[masked] = gumbel_sample(logits.detach())
            replaced = (corrupted != ids).float()
        disc_loss = F.binary_cross_entropy_with_logits(disc(corrupted).float(), replaced)
        (mlm + 50.0 * disc_loss).backward()

    return _pair("electra fwd+bwd", f"{rows * seq}x{dim}", ours, reference, device, size["repeats"])


def _pair(
    name: str,
    shape: str,
    ours: Callable[[], None],
    reference: Callable[[], None],
    device: torch.device,
    repeats: int,
) -> dict[str, Any]:
    t_ours = _time(ours, device, repeats)
    t_ref = _time(reference, device, repeats)
    ratio = t_ours / t_ref
    return {
        "name": name,
        "shape": shape,
        "ours_ms": t_ours * 1e3,
        "reference_ms": t_ref * 1e3,
        "ratio": ratio,
        "target": TARGET_RATIO,
        "ok": ratio <= TARGET_RATIO,
    }


def bench_mining(size: dict[str, int], device: torch.device) -> dict[str, Any]:
    from lmobjectives import mine_hard_negatives

    g = torch.Generator(device).manual_seed(0)
    n, d, nq, chunk = size["corpus"], size["dim"], size["queries"], size["corpus_chunk"]
    corpus = F.normalize(torch.randn(n, d, device=device, generator=g), dim=1)
    queries = F.normalize(torch.randn(nq, d, device=device, generator=g), dim=1)
    positives = torch.randint(0, n, (nq,), generator=torch.Generator().manual_seed(0)).numpy()
    k = 10

    def ours() -> None:
        mine_hard_negatives(
            queries, corpus, positives, num_negatives=k, corpus_chunk=chunk, progress=False
        )

    def reference() -> None:  # exact top-k by chunks of the corpus, merged
        best_s = torch.full((nq, k + 1), -torch.inf, device=device)
        best_i = torch.zeros((nq, k + 1), dtype=torch.long, device=device)
        for s in range(0, n, chunk):
            scores = queries @ corpus[s : s + chunk].T
            top_s, top_i = scores.topk(min(k + 1, scores.shape[1]), dim=1)
            all_s = torch.cat([best_s, top_s], 1)
            all_i = torch.cat([best_i, top_i + s], 1)
            best_s, pick = all_s.topk(k + 1, dim=1)
            best_i = all_i.gather(1, pick)
        best_i.cpu()

    out = _pair("mining", f"{nq} queries x {n}x{d}", ours, reference, device, 3)
    out.pop("target")
    out.pop("ok")
    return out


def bench_pretrain(size: dict[str, int], device: torch.device, precision: str) -> dict[str, Any]:
    from lmobjectives.lab.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(
        steps=size["pretrain_steps"],
        batch_size=size["pretrain_batch"],
        device=str(device),
        precision=precision,
        eval_every=size["pretrain_steps"],
        eval_batches=2,
        log_every=max(1, size["pretrain_steps"] // 10),
    )
    result = pretrain(cfg, progress=False, plot=False)
    return {
        "name": f"pretrain mlm ({precision})",
        "steps": cfg.steps,
        "batch": f"{cfg.batch_size}x{cfg.seq_length}",
        "tokens_per_s": result["tokens_per_s"],
        "data_share": result["data_share"],
    }


def run_cuda_tests(repo: Path) -> dict[str, Any]:
    """``pytest -m cuda`` over the test suite; its summary line and exit status."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "tests"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    return {"returncode": proc.returncode, "summary": lines[-1] if lines else ""}


def markdown(result: dict[str, Any]) -> str:
    rows = [
        f"GPU check on {result['device_name']} (torch {result['torch']}, {result['mode']} run).",
        "",
    ]
    if "cuda_tests" in result:
        t = result["cuda_tests"]
        rows += [f"`pytest -m cuda`: {t['summary']} (exit {t['returncode']})", ""]
    rows += [
        "| benchmark | shape | lmobjectives (ms) | reference (ms) | ratio | target |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for b in result["losses"] + [result["mining"]]:
        target = f"≤ {b['target']}" if "target" in b else "—"
        rows.append(
            f"| {b['name']} | {b['shape']} | {b['ours_ms']:.2f} | {b['reference_ms']:.2f} | "
            f"{b['ratio']:.2f}× | {target} |"
        )
    rows += [
        "",
        "| pretrain | steps | batch | tokens/s | data-path share |",
        "|---|---:|---|---:|---:|",
    ]
    for p in result["pretrain"]:
        rows.append(
            f"| {p['name']} | {p['steps']} | {p['batch']} | {p['tokens_per_s']:,.0f} | "
            f"{p['data_share']:.1%} |"
        )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="toy sizes on the CPU, no pytest")
    ap.add_argument("--device", default=None, help="default: cuda (cpu with --dry-run)")
    ap.add_argument("--out", default="gpu-check", help="directory for the JSON and markdown")
    ap.add_argument("--skip-tests", action="store_true", help="benchmarks only")
    args = ap.parse_args(argv)
    device = torch.device(args.device or ("cpu" if args.dry_run else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device (use --dry-run to try the script on the CPU)")
        return 2
    size = SIZES["dry" if args.dry_run else "full"]
    result: dict[str, Any] = {
        "mode": "dry" if args.dry_run else "full",
        "device": str(device),
        "device_name": (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else f"CPU ({platform.machine()})"
        ),
        "torch": torch.__version__,
    }
    t0 = time.perf_counter()
    if not (args.dry_run or args.skip_tests):
        result["cuda_tests"] = run_cuda_tests(Path(__file__).resolve().parents[1])
    result["losses"] = [bench_info_nce(size, device), bench_electra(size, device)]
    result["mining"] = bench_mining(size, device)
    precisions = ["fp32", "bf16"] if device.type == "cuda" else ["fp32"]
    result["pretrain"] = [bench_pretrain(size, device, p) for p in precisions]
    result["seconds"] = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "gpu_check.md").write_text(markdown(result))
    print(markdown(result))
    failed = result.get("cuda_tests", {}).get("returncode", 0) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
