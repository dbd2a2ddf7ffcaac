"""The ``lmobjectives`` command.

``lmobjectives`` (= ``lmobjectives bench``) loads the embedded corpus (building and caching it
on first use), runs the MLM pipeline against Hugging Face's collator and a NumPy reference on
the same batches, and prints the throughput table (``--objective`` picks other groups).
``lmobjectives pretrain`` trains a small model with any objective on the corpus
(:mod:`lmobjectives.lab.pretrain`); ``lmobjectives compare`` trains several objectives at
equal compute and probes the encoders (:mod:`lmobjectives.lab.compare`); ``lmobjectives
gan-bench`` runs the text-GAN comparison on the synthetic oracle
(:mod:`lmobjectives.lab.gan_bench`); ``lmobjectives corpus`` prints the corpus statistics.
``python -m lmobjectives`` does the same.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lmobjectives._optional import require

if TYPE_CHECKING:
    from lmobjectives.lab.bench.runner import BenchResult

__all__ = ["main"]

PROG = "lmobjectives"
OBJECTIVE_NAMES = ("mlm", "wwm", "span", "nsp", "sop", "rtd", "t5", "bart", "ul2", "infonce")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _threads(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0 (0 = all CPUs), got {value}")
    return value


def _version() -> str:
    from lmobjectives import __version__

    return __version__


def _add_cache_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="where the built corpus is cached (default: $LMOBJECTIVES_CACHE, else the user "
        "cache directory)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Fast, exact, reproducible data pipelines for language-model training "
        "objectives. Without a command, runs 'bench'.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_bench(sub)
    _add_pretrain(sub)
    _add_compare(sub)
    _add_gan_bench(sub)
    _add_corpus(sub)
    return parser


def _add_bench(sub: Any) -> None:
    bench = sub.add_parser(
        "bench",
        help="MLM collation throughput against Hugging Face and NumPy (the default); "
        "--objective mining: exact top-k retrieval against faiss, torch and NumPy",
        description="Masks the same batches of the embedded corpus with lmobjectives' "
        "MLMCollator, Hugging Face's DataCollatorForLanguageModeling and a NumPy reference, "
        "alternating between them, and prints batches/s, tokens/s and the speed-up ratios "
        "(median over rounds). With --objective mining: exact top-k retrieval over the same "
        "embeddings with lmobjectives, faiss IndexFlatIP, sentence-transformers' torch "
        "approach and NumPy, against NumPy's bare sgemm (the machine's roofline).",
    )
    bench.add_argument(
        "--case",
        choices=("small", "large"),
        default="small",
        help="mining: small = 1k x 20k x 384, k=11 (default); large = 10k x 200k x 384, "
        "k=100 (minutes, ~3 GB)",
    )
    bench.add_argument(
        "--no-memory",
        action="store_true",
        help="mining: skip the per-contender peak-memory processes",
    )
    bench.add_argument(
        "--objective",
        choices=("mlm", "wwm", "packing", "pairs", "t5", "bart", "all", "mining"),
        default="mlm",
        help="what to measure: MLM masking (default), whole-word masking, packing, NSP/SOP "
        "pairs, T5 span corruption (against Hugging Face's Flax collator and vectorised "
        "NumPy), BART noising (against a port of fairseq's), or all of those; mining: exact "
        "top-k retrieval (its own table)",
    )
    bench.add_argument(
        "--batch-size", type=_positive_int, default=32, metavar="N", help="default: 32"
    )
    bench.add_argument(
        "--rounds",
        type=_positive_int,
        default=None,
        metavar="N",
        help="alternating rounds per workload (default: 15, or 3 with --quick)",
    )
    bench.add_argument("--quick", action="store_true", help="a run of a few seconds")
    bench.add_argument("--markdown", action="store_true", help="print a Markdown table")
    bench.add_argument("--no-hf", action="store_true", help="leave out Hugging Face's collator")
    bench.add_argument("--no-dataloader", action="store_true", help="leave out the DataLoader runs")
    bench.add_argument(
        "--threads",
        type=_threads,
        default=None,
        metavar="N",
        help="threads per lmobjectives batch (and torch intra-op threads); 0 = all CPUs "
        "(default: $LMOBJECTIVES_NUM_THREADS, else all CPUs)",
    )
    _add_cache_dir(bench)


def _add_pretrain(sub: Any) -> None:
    pre = sub.add_parser(
        "pretrain",
        help="train a small model on the corpus with any objective (needs torch)",
        description="Builds (or loads) the corpus, trains a small model built from a config "
        "with the objective's dataset, collator and loss, evaluates on held-out documents, "
        "and writes metrics.json, loss.png (with matplotlib) and checkpoint.pt to --out. "
        "Reports how much of each step the data path took.",
    )
    pre.add_argument("--objective", choices=OBJECTIVE_NAMES, default="mlm", help="default: mlm")
    pre.add_argument("--steps", type=_positive_int, default=800, metavar="N", help="default: 800")
    pre.add_argument(
        "--corpus",
        metavar="PATH",
        help="a saved TokenCorpus directory (default: the embedded corpus)",
    )
    pre.add_argument(
        "--out",
        metavar="DIR",
        help="where metrics, plot and checkpoint go (default: ./pretrain-<objective>)",
    )
    pre.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    pre.add_argument(
        "--resume", action="store_true", help="continue from DIR/checkpoint.pt (same stream)"
    )
    pre.add_argument(
        "--batch-size", type=_positive_int, default=16, metavar="N", help="default: 16"
    )
    pre.add_argument(
        "--seq-length", type=_positive_int, default=64, metavar="N", help="default: 64"
    )
    pre.add_argument(
        "--hidden-size", type=_positive_int, default=128, metavar="N", help="default: 128"
    )
    pre.add_argument("--layers", type=_positive_int, default=2, metavar="N", help="default: 2")
    pre.add_argument("--lr", type=float, default=1e-3, metavar="X", help="default: 1e-3")
    pre.add_argument("--seed", type=_threads, default=0, metavar="N", help="default: 0")
    pre.add_argument(
        "--num-workers", type=_threads, default=0, metavar="N", help="DataLoader workers (0)"
    )
    pre.add_argument(
        "--eval-every", type=_positive_int, default=None, metavar="N", help="default: steps/5"
    )
    pre.add_argument(
        "--precision", choices=("fp32", "bf16"), default="fp32", help="bf16: autocast (fp32)"
    )
    pre.add_argument("--compile", action="store_true", help="torch.compile the model")
    pre.add_argument(
        "--mlm-selection",
        choices=("auto", "compact", "fixed"),
        default="auto",
        help="MLM head: compact (boolean mask), fixed (no host sync); auto: fixed off the CPU",
    )
    _add_threads(pre)
    _add_cache_dir(pre)


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=_threads,
        default=1,
        metavar="N",
        help="torch intra-op threads (1: the models are small, and on a shared machine more "
        "threads only spin against each other; 0 = torch's default)",
    )


def _objective_list(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in OBJECTIVE_NAMES]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {', '.join(OBJECTIVE_NAMES)}; got {text!r}"
        )
    return names


def _seed_list(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(n) for n in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct seeds >= 0, got {text!r}")
    return seeds


def _flops(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of FLOPs, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of FLOPs, got {text!r}")
    return value


def _add_compare(sub: Any) -> None:
    from lmobjectives.lab.compare import DEFAULT_OBJECTIVES

    cmp = sub.add_parser(
        "compare",
        help="which objective, for what: train several objectives at equal compute and probe "
        "the encoders (needs torch)",
        description="Trains each objective's encoder for the same number of training FLOPs "
        "(per seed) on the embedded corpus minus a set of held-out documents, then probes it "
        "on those documents: which standard-library package a chunk is from (linear probe "
        "and short fine-tune), next sentence, sentence order and next-chunk retrieval, "
        "against random-init encoders and a bag of words. Writes compare.md, metrics.json "
        "and compare.png (with matplotlib) to --out. The defaults take about 10 minutes on "
        "2 CPU cores.",
    )
    cmp.add_argument(
        "--objectives",
        type=_objective_list,
        default=DEFAULT_OBJECTIVES,
        metavar="A,B,...",
        help=f"comma-separated, from {', '.join(OBJECTIVE_NAMES)} "
        f"(default: {','.join(DEFAULT_OBJECTIVES)})",
    )
    cmp.add_argument(
        "--seeds", type=_seed_list, default=(0, 1), metavar="S,S,...", help="default: 0,1"
    )
    cmp.add_argument(
        "--flops",
        type=_flops,
        default=None,
        metavar="X",
        help="training FLOPs per encoder (default: 1e12; e.g. 1e14 for a longer run)",
    )
    cmp.add_argument(
        "--points", type=_positive_int, default=3, metavar="N", help="probe points per run (3)"
    )
    cmp.add_argument(
        "--hidden-size", type=_positive_int, default=128, metavar="N", help="default: 128"
    )
    cmp.add_argument("--layers", type=_positive_int, default=2, metavar="N", help="default: 2")
    cmp.add_argument(
        "--batch-size", type=_positive_int, default=16, metavar="N", help="default: 16"
    )
    cmp.add_argument(
        "--seq-length", type=_positive_int, default=64, metavar="N", help="default: 64"
    )
    cmp.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    cmp.add_argument(
        "--out", default="compare", metavar="DIR", help="where the files go (default: ./compare)"
    )
    cmp.add_argument("--no-plot", action="store_true", help="do not plot (no matplotlib needed)")
    cmp.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run of a minute or so: 2e10 FLOPs, 4 probe documents per label",
    )
    _add_threads(cmp)
    _add_cache_dir(cmp)


def _add_gan_bench(sub: Any) -> None:
    gan = sub.add_parser(
        "gan-bench",
        help="text GANs (SeqGAN, LeakGAN, MaskGAN) against MLE, temperature and "
        "constant-reward controls on the synthetic LSTM oracle",
        description="Builds (once, then caches) SeqGAN's synthetic oracle benchmark, "
        "pretrains an LSTM by MLE, then compares SeqGAN, LeakGAN and MaskGAN with MLE at "
        "temperatures 1..0.8 and constant-reward policy gradient. Prints NLL-oracle, "
        "NLL-test (held-out), entropy and unique-sample ratio together, and saves the "
        "(NLL-oracle, NLL-test) plot. CPU-sized defaults: a few minutes.",
    )
    gan.add_argument(
        "--quick", action="store_true", help="a smoke run of seconds (vocab 500, tiny budgets)"
    )
    gan.add_argument("--mle-epochs", type=_positive_int, metavar="N", help="MLE epochs (5)")
    gan.add_argument(
        "--adv-steps", type=_positive_int, metavar="N", help="SeqGAN / control PG steps (40)"
    )
    gan.add_argument(
        "--rollouts", type=_positive_int, metavar="N", help="SeqGAN MC rollouts (8; paper 16)"
    )
    gan.add_argument(
        "--vocab-size", type=_positive_int, metavar="N", help="oracle vocabulary (5000)"
    )
    gan.add_argument(
        "--train-samples", type=_positive_int, metavar="N", help="oracle training samples (10000)"
    )
    gan.add_argument("--no-leakgan", action="store_true", help="skip LeakGAN")
    gan.add_argument("--no-maskgan", action="store_true", help="skip MaskGAN")
    gan.add_argument("--seed", type=int, default=0, help="seed of everything (0)")
    gan.add_argument(
        "--plot",
        default="gan-bench.png",
        metavar="PATH",
        help="where to save the (NLL-oracle, NLL-test) plot (gan-bench.png)",
    )
    gan.add_argument("--no-plot", action="store_true", help="do not plot (no matplotlib needed)")
    gan.add_argument(
        "--threads",
        type=_threads,
        default=1,
        metavar="N",
        help="torch intra-op threads (1: the models are tiny; 0 = torch's default)",
    )
    _add_cache_dir(gan)


def _add_corpus(sub: Any) -> None:
    corpus = sub.add_parser(
        "corpus",
        help="build (or load) the embedded corpus and print its statistics",
        description="Builds the embedded corpus from the standard library's documentation "
        "on first use, caches it, and prints its statistics.",
    )
    corpus.add_argument("--rebuild", action="store_true", help="rebuild even if cached")
    _add_cache_dir(corpus)


def _load_corpus(cache_dir: str | None, rebuild: bool = False) -> Any:
    from lmobjectives.corpus import TokenCorpus

    return TokenCorpus.default(cache_dir=cache_dir, rebuild=rebuild)


def _corpus_summary(corpus: Any) -> str:
    where = f" ({corpus.path})" if getattr(corpus, "path", None) is not None else ""
    return (
        f"corpus: {corpus.num_documents:,} documents, {corpus.num_sentences:,} sentences, "
        f"{corpus.num_tokens:,} tokens, vocabulary {corpus.vocab_size:,}{where}"
    )


def _corpus_stats(corpus: Any) -> str:
    s = corpus.stats()
    lines = [_corpus_summary(corpus)]
    lines.append(f"  ids: {s['ids_dtype']}, {s['nbytes'] / 2**20:.1f} MiB with offsets")
    for key, label in (
        ("tokens_per_sentence", "tokens per sentence"),
        ("sentences_per_document", "sentences per document"),
        ("tokens_per_document", "tokens per document"),
    ):
        d = s[key]
        lines.append(
            f"  {label}: min {d['min']:,}, median {d['median']:,.0f}, mean {d['mean']:,.1f}, "
            f"max {d['max']:,}"
        )
    if s.get("source"):
        lines.append(f"  source: {s['source']}")
    return "\n".join(lines)


def _versions() -> str:
    import numpy

    parts = [f"{PROG} {_version()}", f"python {platform.python_version()}"]
    parts.append(f"numpy {numpy.__version__}")
    for name in ("torch", "transformers", "faiss"):
        try:
            module = require(name)
        except ImportError:  # not installed (or broken): nothing to report
            continue
        parts.append(f"{name} {module.__version__}")
    parts.append(f"{os.cpu_count()} CPUs")
    return ", ".join(parts)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The benchmark settings the ``bench`` options give."""
    return {
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "quick": args.quick,
        "include_hf": not args.no_hf,
        "include_dataloader": not args.no_dataloader,
        "num_threads": args.threads,
    }


def _print_results(results: Sequence[BenchResult], markdown: bool) -> None:
    """The versions, then the rows of ``results`` in one table (they share it) and its
    legend."""
    from lmobjectives.lab.bench.runner import format_table

    table = results[0].table
    if any(r.table is not table for r in results):
        raise ValueError("results: benchmarks with different tables cannot share one")
    print(_versions())
    print()
    print(format_table([row for r in results for row in r.rows], table, markdown=markdown))
    print()
    print(table.legend)


def _bench_mining(args: argparse.Namespace) -> int:
    from lmobjectives.lab.bench import run_benchmark
    from lmobjectives.lab.bench.mining import CASES, MiningCase

    case = CASES[args.case]
    if args.quick:  # a run of a few seconds (tests, CI)
        case = MiningCase("quick", 256, 4000, 384, 11)
    print(f"mining: {case.label}, L2-normalised float32 Gaussian embeddings", flush=True)
    result = run_benchmark(
        "mining",
        case=case,
        rounds=args.rounds,
        num_threads=args.threads,
        memory=not args.no_memory,
    )
    _print_results([result], args.markdown)
    for line in result.skipped:
        print(f"skipped: {line}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    if args.objective == "mining":
        return _bench_mining(args)
    from lmobjectives.lab.bench import COLLATION, run_benchmark
    from lmobjectives.lab.bench.runner import peak_rss_mib

    corpus = _load_corpus(args.cache_dir)
    print(_corpus_summary(corpus), flush=True)
    # DataLoader workers fork after the corpus build may have used the tokenizers thread pool;
    # say how the children should behave instead of letting tokenizers warn about it.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    names = COLLATION if args.objective == "all" else (args.objective,)
    results = [run_benchmark(name, corpus, **_settings(args)) for name in names]
    _print_results(results, args.markdown)
    print(f"peak RSS of this process: {peak_rss_mib():,.0f} MiB")
    for line in [note for r in results for note in r.notes]:
        print(f"note: {line}")
    for line in dict.fromkeys(line for r in results for line in r.skipped):
        print(f"skipped: {line}")
    return 0


def _with_threads(args: argparse.Namespace, run: Any) -> int:
    """``run(args)`` with torch's intra-op threads set by ``--threads`` (restored after, so
    in-process callers keep their setting)."""
    torch = require("torch", f"{PROG} {args.command}")
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return int(run(args))
    finally:
        torch.set_num_threads(threads)


def _compare(args: argparse.Namespace) -> int:
    from lmobjectives.lab.compare import CompareConfig, compare

    config = CompareConfig(
        objectives=args.objectives,
        seeds=args.seeds,
        flops=args.flops if args.flops is not None else (2e10 if args.quick else 1e12),
        points=1 if args.quick else args.points,
        batch_size=args.batch_size,
        seq_length=args.seq_length,
        hidden_size=args.hidden_size,
        num_layers=args.layers,
        finetune_epochs=1 if args.quick else 3,
        per_class=4 if args.quick else 16,
        device=args.device,
    )
    corpus = _load_corpus(args.cache_dir)
    print(_corpus_summary(corpus), flush=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    result = compare(config, corpus=corpus, out=args.out, plot=not args.no_plot)
    print()
    from lmobjectives.lab.compare import format_table

    print(format_table(result))
    plot = result.get("plot")
    print(
        f"wrote {args.out}/compare.md, {args.out}/metrics.json"
        + (
            f", {plot}"
            if plot
            else " (no plot)"
            if args.no_plot
            else " (no plot: pip install 'lmobjectives[plot]')"
        )
    )
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from lmobjectives.lab.pretrain import PretrainConfig, pretrain

    config = PretrainConfig(
        objective=args.objective,
        steps=args.steps,
        batch_size=args.batch_size,
        seq_length=args.seq_length,
        hidden_size=args.hidden_size,
        num_layers=args.layers,
        learning_rate=args.lr,
        seed=args.seed,
        num_workers=args.num_workers,
        eval_every=args.eval_every,
        device=args.device,
        precision=args.precision,
        compile=args.compile,
        mlm_selection=args.mlm_selection,
    )
    if args.corpus is not None:
        from lmobjectives.corpus import TokenCorpus

        corpus = TokenCorpus.load(args.corpus)
    else:
        corpus = _load_corpus(args.cache_dir)
    print(_corpus_summary(corpus), flush=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out = args.out if args.out is not None else f"pretrain-{args.objective}"
    result = pretrain(config, corpus=corpus, out=out, resume=args.resume)
    print(format_pretrain(result, out))
    return 0


def format_pretrain(result: dict[str, Any], out: str) -> str:
    """The end-of-run summary of ``pretrain``."""
    cfg = result["config"]
    first, last = result["eval"][0], result["eval"][-1]
    lines = [
        f"objective {cfg['objective']}: {result['parameters']:,} parameters, "
        f"{cfg['steps']} steps of {cfg['batch_size']} x {cfg['seq_length']} tokens, "
        f"{result['train_documents']:,} training / {result['held_out_documents']:,} held-out "
        "documents",
        f"held-out at step {first['step']:>5}: "
        + ", ".join(f"{k} {v:.4g}" for k, v in first.items() if k != "step"),
        f"held-out at step {last['step']:>5}: "
        + ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k != "step"),
    ]
    if result["train"]:
        t0, t1 = result["train"][0], result["train"][-1]
        lines.append(
            f"training loss: {t0['loss']:.4g} (steps to {t0['step']}) -> {t1['loss']:.4g} "
            f"(to step {t1['step']})"
        )
    lines.append(
        f"{result['tokens_per_s']:,.0f} tokens/s; data path {result['data_share']:.1%} of "
        f"step time ({result['data_s']:.2f} s data, {result['model_s']:.2f} s model over "
        f"{result['steps_timed']} steps)"
    )
    baseline = result.get("baseline") or {}
    if "unigram_mlm_accuracy" in baseline:
        key = "mlm_accuracy" if "mlm_accuracy" in last else "gen_accuracy"
        lines.append(
            f"held-out MLM accuracy {last.get(key, float('nan')):.4g} vs "
            f"{baseline['unigram_mlm_accuracy']:.4g} always predicting the most frequent "
            f"training token (unigram baseline; MLM loss {last.get('mlm_loss', last['loss']):.4g} "
            f"vs {baseline['unigram_mlm_loss']:.4g} nats)"
        )
    plot = result.get("plot")
    lines.append(
        f"wrote {out}/metrics.json, {out}/checkpoint.pt"
        + (f", {plot}" if plot else " (no plot: pip install 'lmobjectives[plot]')")
    )
    return "\n".join(lines)


def _gan_bench(args: argparse.Namespace) -> int:
    torch = require("torch", "lmobjectives gan-bench")
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _run_gan_bench(args)
    finally:
        torch.set_num_threads(threads)  # in-process callers keep their setting


def _gan_config(args: argparse.Namespace) -> Any:
    """The ``gan-bench`` options as a :class:`~lmobjectives.lab.gan_bench.GanBenchConfig`."""
    from lmobjectives.lab.gan_bench import GanBenchConfig

    config = GanBenchConfig(seed=args.seed, cache_dir=args.cache_dir)
    if args.quick:
        config = GanBenchConfig(
            vocab_size=500,
            num_train=2_000,
            num_test=1_000,
            mle_epochs=3,
            adv_steps=10,
            num_rollouts=4,
            d_pretrain_rounds=1,
            d_negatives=500,
            d_filters=16,
            eval_samples=500,
            eval_test=500,
            leakgan_pretrain_epochs=1,
            leakgan_steps=3,
            maskgan_pretrain_epochs=1,
            maskgan_steps=20,
            seed=args.seed,
            cache_dir=args.cache_dir,
        )
    for flag, name in (
        ("mle_epochs", "mle_epochs"),
        ("adv_steps", "adv_steps"),
        ("rollouts", "num_rollouts"),
        ("vocab_size", "vocab_size"),
        ("train_samples", "num_train"),
    ):
        if getattr(args, flag) is not None:
            setattr(config, name, getattr(args, flag))
    config.leakgan = not args.no_leakgan
    config.maskgan = not args.no_maskgan
    config.log = lambda line: print(line, flush=True)
    return config


def _run_gan_bench(args: argparse.Namespace) -> int:
    from lmobjectives.lab.gan_bench import format_gan_table, plot_frontier, run_gan_bench

    result = run_gan_bench(_gan_config(args))
    print(_versions())
    print()
    print(format_gan_table(result["rows"]))
    print()
    print(
        "NLL-oracle: the oracle's NLL of generator samples; NLL-test: the generator's NLL of "
        "held-out oracle samples; entropy: its NLL of its own samples (nats/token); unique: "
        "distinct samples. vs frontier: NLL-test minus the MLE temperature sweep's at the same "
        "NLL-oracle (< 0 beats temperature)."
    )
    if result["maskgan_rows"]:
        print()
        print("In-filling (contiguous masks of 9 tokens; metrics on the missing tokens):")
        print(format_gan_table(result["maskgan_rows"], frontier=False))
    if not args.no_plot:
        plot_frontier(result, args.plot)
        print(f"plot: {args.plot}")
    print(f"total: {result['seconds']:.0f} s")
    return 0


def _corpus(args: argparse.Namespace) -> int:
    corpus = _load_corpus(args.cache_dir, rebuild=args.rebuild)
    print(_corpus_stats(corpus))
    return 0


def _check_dependencies(args: argparse.Namespace) -> None:
    """Imports what the command needs beyond NumPy before it does anything, so a missing
    package stops it at once (with the extra to install: :class:`MissingDependencyError`)
    instead of after a corpus build or a training run. Contenders a benchmark can leave out
    (torch, transformers, faiss) are not required: they are skipped and the table says so."""
    command = f"{PROG} {args.command}"
    if args.command == "gan-bench":
        require("torch", command)
        if not args.no_plot:
            from lmobjectives.lab.gan_bench import PLOT_PURPOSE

            require("matplotlib", PLOT_PURPOSE)
        return
    if args.command == "bench" and args.objective == "mining":
        return  # NumPy only: random embeddings, no corpus
    if args.command in ("pretrain", "compare"):
        require("torch", command)
        if args.command == "compare" and not args.no_plot:
            from lmobjectives.lab.compare import PLOT_PURPOSE

            require("matplotlib", PLOT_PURPOSE)
    # Every other command reads the corpus' tokenizer (and builds the corpus when not cached).
    require("tokenizers", f"{command}: the corpus and its tokenizer")
    if args.command == "bench" and args.objective in ("wwm", "all"):
        # The whole-word contenders share one transformers fast tokenizer (word ids).
        require("transformers", f"{command} --objective {args.objective}")


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not args_list or (
        args_list[0].startswith("-") and args_list[0] not in ("-h", "--help", "--version")
    ):
        args_list.insert(0, "bench")  # options without a command are bench's
    try:
        args = parser.parse_args(args_list)
    except SystemExit as e:  # --help, --version, or a usage error (already printed)
        return e.code if isinstance(e.code, int) else 1
    try:
        _check_dependencies(args)
        if args.command == "corpus":
            return _corpus(args)
        if args.command == "pretrain":
            return _with_threads(args, _pretrain)
        if args.command == "compare":
            return _with_threads(args, _compare)
        if args.command == "gan-bench":
            return _gan_bench(args)
        return _bench(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `lmobjectives | head`: stop quietly, like other tools
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # so the exit-time flush cannot fail again
        except (OSError, ValueError):
            pass
        return 141
    except (ValueError, TypeError, OSError, ImportError) as e:
        # A MissingDependencyError (an ImportError) says which extra to install.
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
