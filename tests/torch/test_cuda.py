"""The torch side on a CUDA device (issue 19): every module runs there, losses equal their CPU
results, trainers step, ``pretrain --device cuda`` runs end to end, the losses and the pretrain
step never synchronise with the host, and collators pin their batches.

All of it is marked ``cuda`` and skips without a CUDA device; ``make gpu-check`` runs it.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

pytestmark = pytest.mark.cuda


@pytest.fixture
def cuda() -> torch.device:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    return torch.device("cuda")


def _loss_inputs(device: torch.device) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 50, (4, 9), generator=g)
    labels[torch.rand(4, 9, generator=g) < 0.7] = -100
    tensors = {
        "q": torch.randn(16, 32, generator=g),
        "p": torch.randn(16, 32, generator=g),
        "neg": torch.randn(16, 2, 32, generator=g),
        "dup": torch.arange(16) // 2,
        "logits": torch.randn(4, 9, 50, generator=g),
        "labels": labels,
        "z": torch.randn(3, 7, 8, generator=g),
        "c": torch.randn(3, 7, 6, generator=g),
        "w": torch.randn(2, 8, 6, generator=g),
    }
    return {k: v.to(device) for k, v in tensors.items()}


def _losses(x: dict[str, Any]) -> dict[str, torch.Tensor]:
    from lmobjectives.torch import cpc_loss, info_nce_loss, masked_lm_loss, seq2seq_loss

    keep = x["labels"] != -100
    return {
        "info_nce": info_nce_loss(x["q"], x["p"], x["neg"], duplicates=x["dup"], symmetric=True),
        "masked_lm": masked_lm_loss(x["logits"], x["labels"]),
        "masked_lm_compact": masked_lm_loss(x["logits"][keep], x["labels"]),
        "seq2seq": seq2seq_loss(x["logits"], x["labels"], label_smoothing=0.1),
        "cpc": cpc_loss(x["z"], x["c"], x["w"], negatives="all"),
    }


def test_losses_equal_their_cpu_results(cuda) -> None:
    on_cpu = _losses(_loss_inputs(torch.device("cpu")))
    on_gpu = _losses(_loss_inputs(cuda))
    for name, value in on_gpu.items():
        assert value.device.type == "cuda", name
        torch.testing.assert_close(value.cpu(), on_cpu[name], rtol=1e-4, atol=1e-5, msg=name)


def test_losses_do_not_synchronise(cuda) -> None:
    from lmobjectives.torch import info_nce_loss, masked_lm_loss, seq2seq_loss

    x = _loss_inputs(cuda)
    keep = x["labels"] != -100
    compact = x["logits"][keep]  # the compaction itself syncs: outside the checked block
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        info_nce_loss(x["q"], x["p"], x["neg"], duplicates=x["dup"], symmetric=True)
        info_nce_loss(x["q"], x["p"], temperature=0.05)
        masked_lm_loss(x["logits"], x["labels"])
        masked_lm_loss(compact, x["labels"])
        seq2seq_loss(x["logits"], x["labels"])
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_rl_torch_fallback_on_cuda_tensors(cuda) -> None:
    from lmobjectives.torch import rl_reference
    from lmobjectives.torch.rl import TinyDecoder, ValueHeadModel, ppo_step

    g = torch.Generator().manual_seed(0)
    r, m = torch.randn(4, 6, generator=g), torch.rand(4, 6, generator=g) < 0.8
    v = torch.randn(4, 6, generator=g)
    cpu = rl_reference.gae(r, v, m, 0.99, 0.95)
    gpu = rl_reference.gae(r.to(cuda), v.to(cuda), m.to(cuda), 0.99, 0.95)
    for a, b in zip(cpu, gpu, strict=True):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-5, atol=1e-6)
    torch.manual_seed(0)
    model = ValueHeadModel(TinyDecoder()).to(cuda)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    ids = torch.randint(0, 50, (4, 10), device=cuda)
    mask = torch.zeros(4, 10, dtype=torch.bool, device=cuda)
    mask[:, 5:] = True
    stats = ppo_step(model, opt, ids, torch.ones_like(ids), mask, torch.randn(4, device=cuda))
    assert all(math.isfinite(s) for s in stats.values())


def test_gan_trainers_step_on_the_device(cuda, tmp_path) -> None:
    from lmobjectives.torch.gan import (
        CNNDiscriminator,
        LSTMGenerator,
        OracleConfig,
        SeqGAN,
        SeqGANConfig,
        oracle_data,
    )
    from lmobjectives.torch.gan.leakgan import LeakGAN, LeakGANConfig, LeakGANGenerator
    from lmobjectives.torch.gan.maskgan import (
        InfillModel,
        MaskGAN,
        MaskGANConfig,
        TokenDiscriminator,
    )

    v, t = 12, 8
    data = oracle_data(
        OracleConfig(vocab_size=v, hidden_size=8, length=t, num_train=64, num_test=32, seed=3),
        cache=False,
    )
    train = data.train.to(cuda)
    small = {"batch_size": 8, "num_rollouts": 2, "d_steps": 1, "d_epochs": 1, "d_negatives": 16}
    torch.manual_seed(0)
    disc = CNNDiscriminator(v, t, filter_sizes=(2,), num_filters=(4,)).to(cuda)  # not a submodule
    trainers = [
        SeqGAN(
            LSTMGenerator(v, 8, 8).to(cuda),
            CNNDiscriminator(v, t, filter_sizes=(2, 3), num_filters=(4, 4)).to(cuda),
            train,
            SeqGANConfig(rescale="rank", **small),
        ),
        LeakGAN(
            LeakGANGenerator(v, t, disc, embedding_size=8, hidden_size=8, goal_size=4).to(cuda),
            train,
            LeakGANConfig(**small),
        ),
        MaskGAN(
            InfillModel(v, 8, 8).to(cuda),
            TokenDiscriminator(v, 8, 8).to(cuda),
            train,
            MaskGANConfig(batch_size=8, baseline="none"),
        ),
    ]
    for tr in trainers:
        for _ in range(2):
            stats = tr.step()
        assert all(math.isfinite(s) for s in stats.values()), type(tr).__name__
        assert all(p.device.type == "cuda" for p in tr.generator.parameters())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_pretrain_end_to_end_on_cuda(cuda, tmp_path, precision: str) -> None:
    from lmobjectives.lab.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(steps=20, batch_size=8, device="cuda", precision=precision, eval_every=10)
    result = pretrain(cfg, out=tmp_path, progress=False, plot=False)
    assert len(result["eval"]) == 3 and math.isfinite(result["eval"][-1]["loss"])
    assert result["eval"][-1]["loss"] < result["eval"][0]["loss"]
    assert result["tokens_per_s"] > 0


def test_pretrain_step_does_not_synchronise(cuda) -> None:
    from lmobjectives import TokenCorpus
    from lmobjectives.lab.pretrain import PretrainConfig, _batches, _Run, _to, build

    cfg = PretrainConfig(objective="infonce", steps=3, batch_size=8, device="cuda")
    task, train, _ = build(cfg, TokenCorpus.default())
    run = _Run.start(cfg, task, cuda, None)
    stream = _batches(task, task.dataset(train, 0), task.collator(0), cfg, 0)
    batches = [_to(next(stream)[1], cuda) for _ in range(3)]
    stream.close()
    run.step(0, batches[0])
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        run.step(1, batches[1])
        run.step(2, batches[2])
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_collator_pins_its_batches(cuda, small_tokenizer) -> None:
    from lmobjectives import MLMCollator, PackingCollator

    from conftest import make_rows

    makers = (
        lambda: MLMCollator(small_tokenizer, seed=0, return_tensors="pt"),  # writes in place
        lambda: PackingCollator(max_length=64, pad_token_id=0, return_tensors="pt"),  # one copy
    )
    examples = [{"input_ids": r} for r in make_rows(8, 40, 60)]
    for make in makers:
        plain = make()(examples)
        collator = make()
        collator.pin_memory = True
        assert collator.pins
        pinned = collator(examples)
        for k, v in pinned.items():
            assert v.is_pinned(), k
            assert torch.equal(v, plain[k]), k
            assert torch.equal(v.to(cuda, non_blocking=True).cpu(), plain[k]), k


def _fixed_size_inputs(device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(5, 50, (4, 16), generator=g)
    labels = torch.where(torch.rand(4, 16, generator=g) < 0.25, ids, torch.full_like(ids, -100))
    labels[3] = -100  # a row without labels
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 4:] = mask[2, 2:] = False
    tensors = {
        "ids": ids,
        "labels": labels,
        "hidden": torch.randn(4, 16, 32, generator=g),
        "z": torch.randn(3, 7, 8, generator=g),
        "c": torch.randn(3, 7, 6, generator=g),
        "w": torch.randn(2, 8, 6, generator=g),
        "steps": mask,
    }
    return {k: v.to(device) for k, v in tensors.items()}


def _fixed_size_models(device: torch.device) -> tuple[Any, Any, Any]:
    from lmobjectives.torch import MLMHead, TinyEncoder
    from lmobjectives.torch.electra import ElectraRTD

    torch.manual_seed(0)
    head = MLMHead(32, 50, max_predictions=16)
    gen = TinyEncoder(50, 8, 1, 2, max_length=16, embedding_size=16, head="mlm")
    disc = TinyEncoder(50, 16, 1, 2, max_length=16, head="token")
    fixed, legacy = ElectraRTD(gen, disc, max_predictions=16), ElectraRTD(gen, disc)
    return head.to(device), fixed.to(device), legacy.to(device)


def test_fixed_size_heads_and_masked_cpc_equal_their_cpu_results(cuda) -> None:
    from lmobjectives.torch import cpc_loss

    results = []
    for device in (torch.device("cpu"), cuda):
        x = _fixed_size_inputs(device)
        head, rtd, legacy = _fixed_size_models(device)
        rng = torch.Generator(device=device).manual_seed(0)
        out = rtd(x["ids"], x["labels"], generator=rng)
        ref = legacy(x["ids"], x["labels"], generator=torch.Generator(device=device).manual_seed(0))
        # the generator's loss and accuracy do not depend on the samples: equal to the mask path
        torch.testing.assert_close(out.mlm_loss, ref.mlm_loss, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(out.gen_accuracy, ref.gen_accuracy)
        assert out.corrupted_ids.device.type == device.type
        masked = x["labels"] != -100
        assert torch.equal(out.corrupted_ids[~masked], x["ids"][~masked])
        results.append(
            {
                "mlm_head": head(x["hidden"], x["labels"])[0],
                "electra_mlm": out.mlm_loss,
                **{
                    f"cpc_{n}": cpc_loss(x["z"], x["c"], x["w"], negatives=n, mask=x["steps"])
                    for n in ("batch", "time", "all")
                },
            }
        )
    for name, value in results[1].items():
        assert value.device.type == "cuda", name
        torch.testing.assert_close(value.cpu(), results[0][name], rtol=1e-4, atol=1e-5, msg=name)


def test_fixed_size_heads_and_masked_cpc_do_not_synchronise(cuda) -> None:
    from lmobjectives.torch import cpc_loss, labelled_positions

    x = _fixed_size_inputs(cuda)
    head, rtd, _ = _fixed_size_models(cuda)
    rng = torch.Generator(device=cuda).manual_seed(0)
    head(x["hidden"], x["labels"])  # warm-up outside the checked block (lazy CUDA init)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        labelled_positions(x["labels"], 16)
        head(x["hidden"], x["labels"])[0].backward()
        out = rtd(x["ids"], x["labels"], generator=rng)
        out.loss.backward()
        for n in ("batch", "time", "all"):
            cpc_loss(x["z"], x["c"], x["w"], negatives=n, mask=x["steps"], return_accuracy=True)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_labelled_positions_overflow_is_a_device_assertion(cuda) -> None:
    # on the device the overflow check must not sync: it is a device-side assertion, checked
    # here in a subprocess since a failed one poisons the CUDA context
    import subprocess
    import sys

    code = (
        "import torch\n"
        "from lmobjectives.torch import labelled_positions\n"
        "labels = torch.full((2, 8), -100, device='cuda')\n"
        "labels[1, :5] = 3\n"
        "labelled_positions(labels, {p})\n"
        "torch.cuda.synchronize()\n"
    )
    bad = subprocess.run([sys.executable, "-c", code.format(p=4)], capture_output=True, text=True)
    assert bad.returncode != 0
    assert "max_predictions" in bad.stderr or "assert" in bad.stderr.lower(), bad.stderr
    good = subprocess.run([sys.executable, "-c", code.format(p=5)], capture_output=True, text=True)
    assert good.returncode == 0, good.stderr  # the control
