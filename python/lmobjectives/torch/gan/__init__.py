"""Text GANs on the synthetic-oracle benchmark: SeqGAN, MaskGAN and LeakGAN, with the
controls that keep their claims honest (MLE, MLE at lower temperatures, constant-reward policy
gradient).

- :mod:`~lmobjectives.torch.gan.data`: the oracle, its cached train/held-out samples and the
  metrics (NLL-oracle, NLL-test, entropy, unique samples, BLEU/self-BLEU).
- :mod:`~lmobjectives.torch.gan.models`: generators (the papers' LSTM; a tiny transformer
  decoder conditioned on Gaussian noise) and discriminators (CNN + highway; transformer).
- :mod:`~lmobjectives.torch.gan.seqgan`: MLE, Monte-Carlo rollout rewards, policy gradient.
- :mod:`~lmobjectives.torch.gan.maskgan`: in-filling masks, seq2seq generator, per-token
  discriminator, critic, MaskMLE.
- :mod:`~lmobjectives.torch.gan.leakgan`: manager/worker generator with leaked features.

The ``lmobjectives gan-bench`` experiment built on them lives in the lab (not in this package).
"""

from __future__ import annotations

from lmobjectives.torch.gan.data import (
    OracleConfig,
    OracleData,
    evaluate,
    generator_nll,
    oracle_data,
)
from lmobjectives.torch.gan.leakgan import (
    LeakGAN,
    LeakGANConfig,
    LeakGANGenerator,
    intrinsic_rewards,
    manager_cosines,
)
from lmobjectives.torch.gan.maskgan import (
    InfillModel,
    MaskGAN,
    MaskGANConfig,
    TokenDiscriminator,
    evaluate_infill,
    make_masks,
    mask_mle_loss,
    maskgan_returns,
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
    "InfillModel",
    "LSTMGenerator",
    "LeakGAN",
    "LeakGANConfig",
    "LeakGANGenerator",
    "MaskGAN",
    "MaskGANConfig",
    "OracleConfig",
    "OracleData",
    "SeqGAN",
    "SeqGANConfig",
    "TokenDiscriminator",
    "TransformerDiscriminator",
    "TransformerGenerator",
    "discriminator_loss",
    "discriminator_probs",
    "evaluate",
    "evaluate_infill",
    "generator_nll",
    "intrinsic_rewards",
    "make_masks",
    "manager_cosines",
    "mask_mle_loss",
    "maskgan_returns",
    "mc_rewards",
    "mle_epoch",
    "oracle_data",
    "pg_loss",
    "rank_rescale",
    "train_discriminator",
]
