"""Evidence with real thresholds for the model side: a short SeqGAN run lowers NLL-oracle from
its MLE start, and the contrastive example's trained encoder beats the untrained one on
held-out retrieval — each by more than its measurement noise. Fixed seeds throughout."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lmobjectives.torch.gan import (
    CNNDiscriminator,
    LSTMGenerator,
    OracleConfig,
    SeqGAN,
    SeqGANConfig,
    oracle_data,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_thread():
    """Small models: intra-op threads only add synchronisation on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def nll_oracle_with_error(generator, data, samples: int, groups: int, seed: int):
    """The oracle's NLL per token of ``samples`` generator samples (seeded), and its standard
    error from ``groups`` equal groups of samples."""
    g = torch.Generator().manual_seed(seed)
    generator.eval()
    with torch.no_grad():
        x = generator.sample(samples, data.length, generator=g)
    generator.train()
    per_group = [data.oracle.nll_per_token(part) for part in x.chunk(groups)]
    return float(np.mean(per_group)), float(np.std(per_group, ddof=1) / math.sqrt(groups))


@pytest.mark.slow
@pytest.mark.timeout(1800)  # ~2 min on 2 idle cores; room for a CI machine shared with other jobs
def test_seqgan_lowers_nll_oracle_from_its_mle_start():
    """SeqGAN's claim on its own synthetic benchmark, at ``gan-bench``'s sizes (oracle: vocab
    5,000, hidden 32, length 20, 10,000 training sequences; CNN discriminator with 4 × 32
    filters pretrained for 3 rounds on 2,000 negatives; 8 rollouts): after 5 epochs of MLE, 10
    adversarial steps move the generator's samples towards what the oracle finds likely. The
    same 2,000 evaluation samples' seed before and after; the drop must exceed 4 standard
    errors of the difference. (Measured with 4,000 samples: seed 0, this run, 9.078 → 8.889;
    seed 1 9.121 → 8.801, and 8.728 after 20 steps. At CI-cheaper sizes — vocab 500, or
    5,000 training sequences — the adversarial steps' effect was seed-dependent in both
    directions, so the test keeps the benchmark's sizes. Temperature buys the same NLL-oracle
    more cheaply: docs/evidence/gans.md.)"""
    data = oracle_data(OracleConfig())  # gan-bench's oracle, generated once and cached
    assert (data.vocab_size, data.length, len(data.train)) == (5000, 20, 10_000)
    torch.manual_seed(0)
    g = LSTMGenerator(5000, 32, 32)
    d = CNNDiscriminator(5000, 20, filter_sizes=(2, 3, 4, 5), num_filters=(32,) * 4)
    cfg = SeqGANConfig(batch_size=64, num_rollouts=8, d_steps=1, d_epochs=1, d_negatives=2000)
    trainer = SeqGAN(g, d, data.train, cfg)
    trainer.pretrain_generator(5)
    before, se_before = nll_oracle_with_error(g, data, 2000, 20, seed=7)
    trainer.pretrain_discriminator(3)
    for _ in range(10):
        trainer.step()
    after, se_after = nll_oracle_with_error(g, data, 2000, 20, seed=7)
    noise = math.hypot(se_before, se_after)
    assert before - after > 4 * noise, (before, after, noise)


def _example():
    path = ROOT / "examples" / "contrastive_retrieval.py"
    spec = importlib.util.spec_from_file_location("contrastive_retrieval", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Sparse invariant checks:UserWarning")  # Adagrad, sparse rows
def test_contrastive_example_beats_the_untrained_encoder_on_held_out_retrieval():
    """``examples/contrastive_retrieval.py``'s task (retrieve a held-out sentence's augmented
    copy among 1,000), shortened: 2,000 training sentences, 2 epochs, batches of 64, seed 0.
    Trained and untrained encoders answer the same queries, so the comparison is paired: the
    queries only the trained one gets right must outnumber those only the untrained one gets
    right by more than 4 standard deviations of that difference under "no difference"
    (a sign test: sqrt of the discordant count)."""
    ex = _example()
    from lmobjectives import TokenCorpus

    corpus = TokenCorpus.default()
    train_pairs, test_pairs, positive = ex.make_pairs(corpus, "augment", 2000, 1000)
    untrained = ex.hits(ex.Encoder(corpus.vocab_size, seed=0), test_pairs)
    model = ex.train(
        train_pairs,
        corpus.vocab_size,
        hard=False,
        epochs=2,
        batch_size=64,
        seed=0,
        positive=positive,
    )
    trained = ex.hits(model, test_pairs)
    gained = int((trained & ~untrained).sum())
    lost = int((~trained & untrained).sum())
    margin = 4 * math.sqrt(gained + lost)
    summary = (trained.mean(), untrained.mean(), gained, lost)
    assert gained - lost > margin, summary
