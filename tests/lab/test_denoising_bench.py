"""The denoising benchmarks: ``run_benchmark("t5" | "bart")`` and ``lmobjectives bench
--objective`` (in-process, on a small corpus saved where ``TokenCorpus.default(cache_dir=...)``
looks)."""

from __future__ import annotations

import numpy as np
import pytest

from lmobjectives.lab.bench import run_benchmark
from lmobjectives.lab.bench.denoising import (
    FAIRSEQ,
    HF_FLAX,
    NUMPY_VECTORISED,
    make_denoising_workloads,
)
from lmobjectives.lab.cli import main


@pytest.fixture(scope="module")
def corpus(small_tokenizer):
    from lmobjectives.corpus import TokenCorpus

    g = np.random.default_rng(1)
    docs = [
        [" ".join(f"w{i}" for i in g.integers(5, 1000, size=n)) for n in g.integers(5, 40, 20)]
        for _ in range(40)
    ]
    return TokenCorpus.from_texts(docs, small_tokenizer, progress=False, source="test")


@pytest.fixture(scope="module")
def cache_dir(corpus, tmp_path_factory):
    from lmobjectives.corpus import _default

    root = tmp_path_factory.mktemp("cache")
    corpus.save(root / _default.default_corpus_name())
    return str(root)


def test_workloads_are_corpus_chunks(corpus):
    examples, array = make_denoising_workloads("t5", corpus, batch_size=4, num_batches=2)
    assert examples.label == "t5-examples-4x568" and array.label == "t5-array-4x568"
    for batch, arr in zip(examples.batches, array.batches, strict=True):
        assert arr.shape == (4, 568)
        np.testing.assert_array_equal(arr, np.stack([ex["input_ids"] for ex in batch]))
        stream = np.asarray(corpus.ids)
        first = batch[0]["idx"] * 568
        assert arr[0].tolist() == stream[first : first + 568].tolist()
    again = make_denoising_workloads("t5", corpus, batch_size=4, num_batches=2)
    np.testing.assert_array_equal(again[1].batches[0], array.batches[0])
    (bart,) = make_denoising_workloads("bart", corpus, batch_size=4, num_batches=2)
    assert bart.label == "bart-examples-4x512"
    assert all(len(ex["input_ids"]) == 510 for b in bart.batches for ex in b)
    with pytest.raises(ValueError, match="corpus"):
        make_denoising_workloads("t5", corpus, batch_size=1000, num_batches=8)
    with pytest.raises(ValueError, match="objective"):
        make_denoising_workloads("mlm", corpus)


@pytest.mark.parametrize(
    ("objective", "contenders", "vs_hf", "vs_numpy"),
    [
        ("t5", ["lmobjectives np", "lmobjectives pt", HF_FLAX, NUMPY_VECTORISED], True, True),
        ("bart", ["lmobjectives np", "lmobjectives pt", FAIRSEQ], False, True),
    ],
)
def test_run_denoising_benchmark_rows(corpus, objective, contenders, vs_hf, vs_numpy):
    rows = run_benchmark(objective, corpus, batch_size=4, rounds=2, quick=True, num_threads=1).rows
    workloads = sorted({r.workload for r in rows})
    assert len(rows) == len(workloads) * len(contenders)
    for r in rows:
        assert r.contender in contenders
        assert r.rate() > 0 and r.rate("tokens") > 0
        assert len(r.samples) == r.rounds == 2
        assert (r.ratios["vs HF"] is not None) == vs_hf
        assert (r.ratios["vs NumPy"] is not None) == vs_numpy
    ref = HF_FLAX if vs_hf else FAIRSEQ
    for r in rows:
        if r.contender == ref:
            assert r.ratios["vs HF" if vs_hf else "vs NumPy"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kw", "arg"),
    [
        ({"objective": "xlnet"}, "objective"),
        ({"batch_size": 0}, "batch_size"),
        ({"rounds": 0}, "rounds"),
    ],
)
def test_run_denoising_benchmark_bad_arguments(corpus, kw, arg):
    args = {"objective": "t5", "batch_size": 4, "quick": True, **kw}
    objective = args.pop("objective")
    with pytest.raises(ValueError, match=arg):
        run_benchmark(objective, corpus, **args)


@pytest.mark.parametrize("objective", ["t5", "bart"])
def test_cli_objective(cache_dir, capsys, objective):
    argv = ["bench", "--objective", objective, "--quick", "--rounds", "1", "--batch-size", "4"]
    assert main([*argv, "--markdown", "--cache-dir", cache_dir]) == 0
    out = capsys.readouterr().out
    assert f"| {objective}-" in out
    assert "mlm-" not in out, "the MLM table is not run"
    assert ("HF Flax" in out) == (objective == "t5")
    assert main(["bench", "--objective", "xlnet", "--cache-dir", cache_dir]) != 0
