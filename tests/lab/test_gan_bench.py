"""``lmobjectives gan-bench`` (:mod:`lmobjectives.lab.gan_bench`): the command end to end at a
tiny size, the frontier gap, the plot's dependency, torch's thread setting restored."""

from __future__ import annotations

import pytest
import torch

# -- the gan-bench command -------------------------------------------------------------------------


TINY_BENCH = [
    "gan-bench",
    "--quick",
    "--vocab-size",
    "40",
    "--train-samples",
    "200",
    "--mle-epochs",
    "2",
    "--adv-steps",
    "2",
    "--rollouts",
    "2",
]


def test_gan_bench_command(tmp_path, capsys) -> None:
    from lmobjectives.lab.cli import main

    plot = tmp_path / "frontier.png"
    argv = [*TINY_BENCH, "--cache-dir", str(tmp_path), "--plot", str(plot), "--no-leakgan"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for name in (
        "MLE early-stopped",
        "τ = 0.9",
        "τ = 0.8",
        "constant-reward PG",
        "SeqGAN (2 rollouts)",
        "MaskMLE",
        "MaskGAN",
        "vs frontier",
    ):
        assert name in out
    assert "LeakGAN" not in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gan_bench_frontier_gap_and_plot_dependency(tmp_path, capsys, monkeypatch) -> None:
    from lmobjectives.lab.cli import main
    from lmobjectives.lab.gan_bench import frontier_gap

    sweep = [(9.0, 7.0), (8.0, 7.5), (7.0, 8.5)]
    assert frontier_gap((8.5, 7.0), sweep) == pytest.approx(-0.25)
    assert frontier_gap((8.0, 7.6), sweep) == pytest.approx(0.1)
    assert frontier_gap((6.0, 9.0), sweep) == pytest.approx(-0.5)  # extrapolated
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    assert main([*TINY_BENCH, "--cache-dir", str(tmp_path)]) == 1
    assert "pip install 'lmobjectives[plot]'" in capsys.readouterr().err


def test_gan_bench_restores_torch_threads(tmp_path, capsys) -> None:
    from lmobjectives.lab.cli import main

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        argv = [*TINY_BENCH, "--cache-dir", str(tmp_path), "--no-plot", "--no-maskgan"]
        assert main([*argv, "--no-leakgan", "--threads", "1"]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert "SeqGAN" in capsys.readouterr().out
