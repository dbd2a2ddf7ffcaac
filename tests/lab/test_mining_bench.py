"""``lmobjectives bench --objective mining`` (:mod:`lmobjectives.lab.bench.mining`): the table
it prints, peak memory measured in fresh processes, contenders skipped for a missing package."""

from __future__ import annotations

import pytest


def test_bench_objective_mining_prints_its_table(capsys):
    from lmobjectives.lab.cli import main

    argv = ["bench", "--objective", "mining", "--quick", "--no-memory", "--rounds", "1"]
    assert main([*argv, "--markdown"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    start = lines.index(next(x for x in lines if x.startswith("| case")))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    assert header == [
        "case",
        "contender",
        "queries/s",
        "GFLOP/s",
        "vs faiss",
        "of sgemm",
        "extra MiB",
    ]
    rows = [[c.strip() for c in x.strip("|").split("|")] for x in lines[start + 2 : start + 7]]
    assert [r[1] for r in rows] == ["lmobjectives", "faiss", "torch (ST)", "NumPy", "NumPy sgemm"]
    for r in rows:
        assert r[0] == "256x4kx384 k=11"
        assert float(r[2].replace(",", "")) > 0
        assert r[5].endswith("%")
    assert rows[1][4] == "1.00x"
    assert rows[4][5] == "100%"
    assert "skipped" not in out


def test_run_mining_benchmark_measures_memory_and_skips_missing_packages(monkeypatch):
    import sys

    from lmobjectives.lab.bench import run_benchmark
    from lmobjectives.lab.bench.mining import MiningCase, missing_mining_contenders

    case = MiningCase("t", 64, 3000, 32, 5)
    result = run_benchmark(
        "mining", case=case, rounds=2, include=("lmobjectives", "NumPy"), memory=True
    )
    by = {r.contender: r for r in result.rows}
    assert set(by) == {"lmobjectives", "NumPy"}
    assert by["lmobjectives"].extra["recall"] == 1.0
    assert by["NumPy"].extra["recall"] > 0.99
    assert by["lmobjectives"].extra["extra MiB"] is not None
    assert by["NumPy"].extra["extra MiB"] is not None
    # NumPy's chunk of scores (64 × 3000 float32) is at least what it must hold.
    assert by["NumPy"].extra["extra MiB"] >= 0.5
    assert len(by["NumPy"].samples) == 2
    assert by["NumPy"].ratios["vs faiss"] is None
    monkeypatch.setitem(sys.modules, "faiss", None)
    result = run_benchmark("mining", case=case, rounds=1, memory=False)
    assert "faiss" not in {r.contender for r in result.rows}
    assert missing_mining_contenders() == [
        "faiss: needs faiss-cpu (pip install 'lmobjectives[contrastive]')"
    ]
    assert result.skipped == missing_mining_contenders()
    with pytest.raises(ValueError, match="rounds: expected a positive int"):
        run_benchmark("mining", case=case, rounds=0)


def test_the_distributed_bench_refuses_an_empty_corpus(capsys):
    from lmobjectives.lab.bench.mining import _main

    with pytest.raises(SystemExit) as info:
        _main(["--corpus", "0"])
    assert info.value.code == 2
    assert "--corpus: must be positive, got 0" in capsys.readouterr().err
