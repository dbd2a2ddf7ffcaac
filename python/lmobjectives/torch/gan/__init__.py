"""Text GANs on the synthetic-oracle benchmark: SeqGAN, MaskGAN and LeakGAN, with the
controls that keep their claims honest (MLE, MLE at lower temperatures, constant-reward policy
gradient).

- :mod:`~lmobjectives.torch.gan.data`: the oracle, its cached train/held-out samples and the
  metrics (NLL-oracle, NLL-test, entropy, unique samples, BLEU/self-BLEU).
- :mod:`~lmobjectives.torch.gan.models`: generators (the papers' LSTM; a tiny transformer
  decoder conditioned on Gaussian noise) and discriminators (CNN + highway; transformer).
- :mod:`~lmobjectives.torch.gan.seqgan`: MLE, Monte-Carlo rollout rewards, policy gradient.
- :mod:`~lmobjectives.torch.gan.bench`: the ``lmobjectives gan-bench`` experiment.
"""

from __future__ import annotations

from lmobjectives.torch.gan.data import (
    OracleConfig,
    OracleData,
    evaluate,
    generator_nll,
    oracle_data,
)
from lmobjectives.torch.gan.models import (
    CNNDiscriminator,
    Generator,
    LSTMGenerator,
    TransformerDiscriminator,
    TransformerGenerator,
    discriminator_loss,
)
from lmobjectives.torch.gan.seqgan import (
    SeqGAN,
    SeqGANConfig,
    discriminator_probs,
    mc_rewards,
    mle_epoch,
    pg_loss,
    rank_rescale,
    train_discriminator,
)

__all__ = [
    "CNNDiscriminator",
    "Generator",
    "LSTMGenerator",
    "OracleConfig",
    "OracleData",
    "SeqGAN",
    "SeqGANConfig",
    "TransformerDiscriminator",
    "TransformerGenerator",
    "discriminator_loss",
    "discriminator_probs",
    "evaluate",
    "generator_nll",
    "mc_rewards",
    "mle_epoch",
    "oracle_data",
    "pg_loss",
    "rank_rescale",
    "train_discriminator",
]
