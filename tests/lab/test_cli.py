"""The ``lmobjectives`` command (run in-process) and the benchmark it prints.

The corpus is a small one built here and saved where ``TokenCorpus.default(cache_dir=...)``
looks, so ``--cache-dir`` is exercised end to end without building the embedded corpus.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import lmobjectives
from lmobjectives.lab.bench import run_benchmark
from lmobjectives.lab.bench.runner import format_table, peak_rss_mib
from lmobjectives.lab.bench.workloads import COLLATION_TABLE, make_workloads
from lmobjectives.lab.cli import main

CONTENDERS = ["lmobjectives np", "lmobjectives pt", "HF pt", "NumPy"]
COLUMNS = ["workload", "contender", "batches/s", "tokens/s", "vs HF", "vs NumPy"]
QUICK = ["--quick", "--rounds", "2"]


@pytest.fixture(scope="session")
def small_corpus(small_tokenizer):
    from lmobjectives.corpus import TokenCorpus

    g = np.random.default_rng(0)
    docs = [
        [" ".join(f"w{i}" for i in g.integers(5, 1000, size=n)) for n in g.integers(5, 40, 20)]
        for _ in range(40)
    ]
    return TokenCorpus.from_texts(docs, small_tokenizer, progress=False, source="test")


@pytest.fixture(scope="session")
def cache_dir(small_corpus, tmp_path_factory):
    """A cache directory in which ``TokenCorpus.default`` finds ``small_corpus``."""
    from lmobjectives.corpus import _default

    root = tmp_path_factory.mktemp("cache")
    small_corpus.save(root / _default.default_corpus_name())
    return str(root)


def table_rows(out: str, markdown: bool = False) -> list[list[str]]:
    """The (workload, contender, …) cells of the table printed in ``out``."""
    lines = out.splitlines()
    if markdown:
        start = next(i for i, line in enumerate(lines) if line.startswith("| workload"))
        header = [c.strip() for c in lines[start].strip("|").split("|")]
        assert header == COLUMNS
        assert set(lines[start + 1]) <= set("|-:")
        body = []
        for line in lines[start + 2 :]:
            if not line.startswith("|"):
                break
            body.append([c.strip() for c in line.strip("|").split("|")])
        return body
    start = next(i for i, line in enumerate(lines) if line.startswith("workload"))
    # Column spans from the dashed rule under the header.
    spans, pos = [], 0
    for dashes in lines[start + 1].split("  "):
        if dashes:
            spans.append((pos, pos + len(dashes)))
        pos += len(dashes) + 2

    def cut(line: str) -> list[str]:
        return [line[a:b].strip() for a, b in spans]

    assert cut(lines[start]) == COLUMNS
    body = []
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        body.append(cut(line.ljust(spans[-1][1])))
    return body


def check_rows(rows: list[list[str]], workloads: list[str], contenders: list[str]) -> None:
    assert [(r[0], r[1]) for r in rows] == [(w, c) for w in workloads for c in contenders]
    for r in rows:
        assert len(r) == 6, r
        assert float(r[2].replace(",", "")) > 0
        assert r[3][0].isdigit()
        for ratio in r[4:]:
            assert ratio == "-" or (ratio.endswith("x") and float(ratio[:-1]) > 0), r
        if r[1] == "HF pt":
            assert r[4] == "1.00x"
        if r[1] == "NumPy":
            assert r[5] == "1.00x"


MLM = ["mlm-ragged-32x128-512", "mlm-padded-32x512"]


def test_default_command_is_bench(cache_dir, capsys):
    assert main([*QUICK, "--no-dataloader", "--cache-dir", cache_dir]) == 0
    out = capsys.readouterr().out
    assert out.startswith("corpus: 40 documents, 800 sentences, ")
    assert "vocabulary 1,000" in out
    check_rows(table_rows(out), MLM, CONTENDERS)
    assert "skipped" not in out


def test_bench_markdown_with_dataloader(cache_dir, capsys):
    argv = ["bench", *QUICK, "--markdown", "--batch-size", "8", "--threads", "1"]
    assert main([*argv, "--cache-dir", cache_dir]) == 0
    rows = table_rows(capsys.readouterr().out, markdown=True)
    check_rows(rows[:8], ["mlm-ragged-8x128-512", "mlm-padded-8x512"], CONTENDERS)
    check_rows(rows[8:], ["dataloader w=0", "dataloader w=2"], CONTENDERS[:3])
    for r in rows[8:]:
        assert r[5] == "-"


def test_no_hf(cache_dir, capsys):
    assert main([*QUICK, "--no-hf", "--no-dataloader", "--cache-dir", cache_dir]) == 0
    out = capsys.readouterr().out
    rows = table_rows(out)
    check_rows(rows, MLM, ["lmobjectives np", "lmobjectives pt", "NumPy"])
    assert all(r[4] == "-" for r in rows)
    assert "skipped" not in out  # left out on request, not for a missing dependency


@pytest.mark.parametrize("blocked", [["transformers"], ["torch", "transformers"]])
def test_missing_dependencies_are_skipped_and_reported(cache_dir, capsys, monkeypatch, blocked):
    for name in blocked:
        monkeypatch.setitem(sys.modules, name, None)  # `import name` now raises ImportError
    assert main([*QUICK, "--cache-dir", cache_dir]) == 0
    out = capsys.readouterr().out
    if "torch" in blocked:
        check_rows(table_rows(out), MLM, ["lmobjectives np", "NumPy"])
        assert "skipped: lmobjectives pt: needs torch" in out
        assert "skipped: HF pt: needs torch and transformers" in out
        assert "skipped: DataLoader run: needs torch" in out
    else:
        rows = table_rows(out)
        check_rows(rows[:6], MLM, ["lmobjectives np", "lmobjectives pt", "NumPy"])
        assert [r[1] for r in rows[6:]] == ["lmobjectives np", "lmobjectives pt"] * 2
        assert "skipped: HF pt: needs transformers" in out


def test_corpus_command(cache_dir, capsys):
    assert main(["corpus", "--cache-dir", cache_dir]) == 0
    out = capsys.readouterr().out
    assert out.startswith("corpus: 40 documents, 800 sentences, ")
    assert "tokens per sentence: min " in out
    assert "source: test" in out


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"lmobjectives {lmobjectives.__version__}"


def test_help(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "bench" in out
    assert "corpus" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--batch-size", "0"], "--batch-size: expected a positive integer, got 0"),
        (["bench", "--rounds", "x"], "--rounds: expected a positive integer, got 'x'"),
        (["--threads", "-1"], "--threads: expected an integer >= 0"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["train"], "invalid choice: 'train'"),
        (["corpus", "--quick"], "unrecognized arguments: --quick"),
    ],
)
def test_bad_options_exit_non_zero(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "usage: lmobjectives" in err
    assert message in err


def test_errors_are_reported_not_raised(capsys, monkeypatch):
    from lmobjectives.lab import cli

    def broken(cache_dir, rebuild=False):
        raise OSError(f"cannot write to {cache_dir}")

    monkeypatch.setattr(cli, "_load_corpus", broken)
    assert main(["corpus", "--cache-dir", "/nonexistent"]) == 1
    assert capsys.readouterr().err == "lmobjectives: error: cannot write to /nonexistent\n"


def test_python_m_lmobjectives():
    done = subprocess.run(
        [sys.executable, "-m", "lmobjectives", "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"lmobjectives {lmobjectives.__version__}"


# -- the benchmark modules -------------------------------------------------------------------


def test_workloads_are_deterministic_and_well_formed(small_corpus):
    a = make_workloads(small_corpus, batch_size=8, num_batches=2)
    b = make_workloads(small_corpus, batch_size=8, num_batches=2)
    ragged, padded = a
    assert ragged.batches == b[0].batches
    assert all(np.array_equal(x, y) for x, y in zip(padded.batches, b[1].batches, strict=True))
    for batch in ragged.batches:
        assert len(batch) == 8
        for ex in batch:
            ids, special = ex["input_ids"], ex["special_tokens_mask"]
            assert 128 <= len(ids) <= 512
            assert len(special) == len(ids)
            assert (ids[0], ids[-1], special[0], special[-1]) == (2, 3, 1, 1)
            assert not any(special[1:-1])
            assert min(ids[1:-1]) >= 5
    for batch, hf_batch in zip(padded.batches, padded.hf_batches, strict=True):
        assert batch.shape == (8, 512)
        assert batch.dtype == np.int64
        assert batch.flags.c_contiguous
        assert (batch[:, 0] == 2).all()
        assert (batch[:, -1] == 3).all()
        assert len(hf_batch) == 8
        assert all(np.array_equal(r.numpy(), row) for r, row in zip(hf_batch, batch, strict=True))
    assert padded.tokens == [8 * 512] * 2
    assert ragged.tokens == [sum(len(ex["input_ids"]) for ex in bt) for bt in ragged.batches]


def test_run_mlm_benchmark_rows(small_corpus):
    result = run_benchmark(
        "mlm",
        small_corpus,
        batch_size=4,
        rounds=2,
        quick=True,
        include_dataloader=False,
        progress=False,
    )
    rows = result.rows
    assert [(r.workload, r.contender) for r in rows] == [
        (w, c) for w in ("mlm-ragged-4x128-512", "mlm-padded-4x512") for c in CONTENDERS
    ]
    for r in rows:
        assert len(r.samples) == r.rounds == 2
        assert r.calls_per_round >= 1
        assert r.rate() == pytest.approx(1 / r.seconds)
        assert r.rate("tokens") == pytest.approx(r.per_batch["tokens"] * r.rate())
        assert r.ratios["vs HF"] is not None
        assert r.ratios["vs NumPy"] is not None
    hf = next(r for r in rows if r.contender == "HF pt")
    assert hf.ratios["vs HF"] == pytest.approx(1.0)
    assert result.table is COLLATION_TABLE
    text = format_table(rows, result.table)
    assert text.splitlines()[0].split()[:4] == COLUMNS[:4]
    assert len(text.splitlines()) == 2 + len(rows)
    assert peak_rss_mib() > 0


@pytest.mark.parametrize(
    ("kw", "arg"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"rounds": 0}, "rounds"),
        ({"num_threads": -1}, "num_threads"),
    ],
)
def test_run_mlm_benchmark_bad_arguments(small_corpus, kw, arg):
    with pytest.raises(ValueError, match=arg):
        run_benchmark("mlm", small_corpus, **kw)
