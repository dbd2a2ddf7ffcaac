"""The synthetic-oracle benchmark's data and metrics (SeqGAN's protocol, made reproducible).

:func:`oracle_data` builds (once, then loads from the cache) an :class:`LSTMOracle` and its
training and held-out samples. :func:`evaluate` measures a generator with the four numbers that
must always be read together, because NLL-oracle alone rewards collapse:

- ``nll_oracle``: the oracle's mean per-token NLL of generator samples (quality);
- ``nll_test``: the generator's mean per-token NLL of *held-out* oracle samples (coverage;
  Texygen and RelGAN compute it on the training set by mistake);
- ``entropy``: the generator's NLL of its own samples, a Monte-Carlo estimate of its entropy
  rate (the oracle's own is :attr:`OracleData.entropy_rate`, 5.75 for SeqGAN's oracle);
- ``unique``: the fraction of distinct samples;

and optionally BLEU against held-out data and self-BLEU (Texygen's definitions, through
:func:`lmobjectives.rl.bleu`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmobjectives.torch.oracle import LSTMOracle

__all__ = ["OracleConfig", "OracleData", "evaluate", "generator_nll", "oracle_data"]

#: Bumped when the way the data is generated changes (part of the cache key).
DATA_VERSION = 1


@dataclass(frozen=True)
class OracleConfig:
    """The oracle experiment (defaults: SeqGAN's — vocab 5000, embedding/hidden 32, length 20,
    N(0, 1) weights, 10,000 training samples — plus a held-out set of 5,000 for NLL-test)."""

    vocab_size: int = 5000
    hidden_size: int = 32
    length: int = 20
    num_train: int = 10_000
    num_test: int = 5_000
    seed: int = 0
    std: float = 1.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "length", "num_train", "num_test"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size: must be at least 2, got {self.vocab_size}")
        if not self.std > 0:
            raise ValueError(f"std: must be positive, got {self.std!r}")

    def key(self) -> str:
        text = json.dumps({**asdict(self), "version": DATA_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class OracleData:
    """An oracle and its samples: ``train`` ``[num_train, length]`` and ``test``
    ``[num_test, length]`` int64 token ids, drawn at temperature 1 from independent seeded
    streams; ``entropy_rate`` is the oracle's NLL of ``test`` (nats/token)."""

    config: OracleConfig
    oracle: LSTMOracle
    train: torch.Tensor
    test: torch.Tensor
    entropy_rate: float
    path: Path | None = None

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def length(self) -> int:
        return self.config.length


def _cache_root(cache_dir: str | os.PathLike[str] | None) -> Path:
    from lmobjectives.corpus import default_cache_dir

    return default_cache_dir(cache_dir) / "gan-oracle"


def oracle_data(
    config: OracleConfig | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    cache: bool = True,
) -> OracleData:
    """The oracle of ``config`` and its training/held-out samples, generated on first use and
    cached (``cache_dir``, default ``$LMOBJECTIVES_CACHE`` else ``~/.cache/lmobjectives``, in
    ``gan-oracle/<hash of the config>.pt``). Generation is deterministic (weights from
    ``seed``, training samples from ``seed + 1``, held-out from ``seed + 2``), so a cache
    miss rebuilds exactly the same tensors; ``cache=False`` never touches the disk."""
    config = config or OracleConfig()
    if not isinstance(config, OracleConfig):
        raise TypeError(f"config: expected an OracleConfig, got {type(config).__name__}")
    oracle = LSTMOracle(config.vocab_size, config.hidden_size, seed=config.seed, std=config.std)
    path = _cache_root(cache_dir) / f"{config.key()}.pt" if cache else None
    if path is not None and path.exists():
        try:
            saved = torch.load(path, weights_only=True)
            train, test = saved["train"], saved["test"]
            if train.shape == (config.num_train, config.length) and test.shape == (
                config.num_test,
                config.length,
            ):
                return OracleData(config, oracle, train, test, float(saved["entropy_rate"]), path)
        except Exception:  # any unreadable file
            pass  # broken cache entry: rebuild and replace it
    train = oracle.sample(
        config.num_train,
        config.length,
        generator=torch.Generator().manual_seed(config.seed + 1),
    )
    test = oracle.sample(
        config.num_test,
        config.length,
        generator=torch.Generator().manual_seed(config.seed + 2),
    )
    entropy = oracle.nll_per_token(test)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"train": train, "test": test, "entropy_rate": entropy}, tmp)
        os.replace(tmp, path)
    return OracleData(config, oracle, train, test, entropy, path)


@torch.no_grad()
def generator_nll(
    generator: Any,
    tokens: torch.Tensor,
    *,
    temperature: float = 1.0,
    batch_size: int = 1024,
    cond: torch.Tensor | None = None,
) -> float:
    """Mean per-token NLL (nats) of ``tokens`` under ``generator`` sampled at ``temperature``
    (its logits divided by it). A noise-conditioned generator is scored with fresh noise (or
    ``cond``), i.e. ``-log p(x | z)`` for one z per sequence — a bound on ``-log p(x)``."""
    was = generator.training
    generator.eval()
    total = 0.0
    for s in range(0, tokens.shape[0], batch_size):
        x = tokens[s : s + batch_size]
        c = None if cond is None else cond[s : s + batch_size]
        logits = generator(x, cond=c) / temperature
        lp = torch.log_softmax(logits.float(), dim=-1).gather(-1, x.unsqueeze(-1))
        total -= float(lp.sum())
    generator.train(was)
    return total / tokens.numel()


@torch.no_grad()
def evaluate(
    generator: Any,
    data: OracleData,
    *,
    num_samples: int = 2000,
    temperature: float = 1.0,
    seed: int = 12345,
    num_test: int | None = None,
    bleu: bool = False,
    bleu_n: int = 4,
    bleu_samples: int = 200,
) -> dict[str, float]:
    """The benchmark's metrics of ``generator`` sampled at ``temperature`` (see the module
    docstring): ``num_samples`` generator samples (seeded by ``seed``) for NLL-oracle,
    entropy and uniqueness; the first ``num_test`` (default all) held-out sequences for
    NLL-test. ``bleu=True`` adds ``bleu`` (BLEU-``bleu_n`` of ``bleu_samples`` samples against
    the held-out set, NLTK method1) and ``self_bleu`` (of ``bleu_samples`` samples)."""
    if not temperature > 0:
        raise ValueError(f"temperature: must be positive, got {temperature!r}")
    if num_samples < 1:
        raise ValueError(f"num_samples: must be positive, got {num_samples!r}")
    g = torch.Generator().manual_seed(seed)
    was = generator.training
    generator.eval()
    samples = generator.sample(num_samples, data.length, temperature=temperature, generator=g)
    test = data.test if num_test is None else data.test[:num_test]
    out = {
        "nll_oracle": data.oracle.nll_per_token(samples),
        "nll_test": generator_nll(generator, test, temperature=temperature),
        "entropy": generator_nll(generator, samples, temperature=temperature),
        "unique": len({tuple(r) for r in samples.tolist()}) / samples.shape[0],
    }
    if bleu:
        from lmobjectives import rl

        hyp = samples[:bleu_samples].numpy()
        ref = test[: max(bleu_samples, 500)].numpy()
        out["bleu"] = float(np.mean(rl.bleu(hyp, ref, max_n=bleu_n)))
        out["self_bleu"] = float(np.mean(rl.self_bleu(hyp, max_n=bleu_n)))
    generator.train(was)
    return out
