"""A seeded random LSTM language model used as a synthetic "oracle": a source of sequences
whose true likelihood is known, the standard testbed for generative text objectives (SeqGAN's
oracle: vocab 5000, embedding and hidden size 32, length 20, weights N(0, 1)).

Everything is deterministic: the weights come from ``seed``, samples from a
``torch.Generator``, so a corpus is identical on every run and machine (CPU).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["LSTMOracle"]


class LSTMOracle(nn.Module):
    """A one-layer LSTM language model with N(0, ``std``²) weights (SeqGAN's oracle at the
    defaults) that samples sequences and scores their exact log-likelihood.

    Sequences start from a fixed begin token (id 0, never emitted: ids are ``1..vocab_size``
    shifted down by one, so samples lie in ``[0, vocab_size)``).

    Args:
        vocab_size: number of token ids (5000).
        hidden_size: embedding and LSTM size (32).
        seed: seed of the weights.
        std: standard deviation of every weight (1.0, as SeqGAN's oracle).
        temperature: sampling temperature of :meth:`sample` by default (1.0). Lower values give
            a lower-entropy corpus (ELECTRA's tiny experiment uses vocab 100 at 0.5).
    """

    def __init__(
        self,
        vocab_size: int = 5000,
        hidden_size: int = 32,
        *,
        seed: int = 0,
        std: float = 1.0,
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        if vocab_size < 2 or hidden_size < 1:
            raise ValueError(f"vocab_size/hidden_size: too small ({vocab_size}, {hidden_size})")
        if not temperature > 0:
            raise ValueError(f"temperature: must be positive, got {temperature}")
        self.vocab_size = vocab_size
        self.temperature = temperature
        self.embedding = nn.Embedding(vocab_size + 1, hidden_size)  # + the begin token
        self.lstm = nn.LSTM(hidden_size, hidden_size, batch_first=True)
        self.output = nn.Linear(hidden_size, vocab_size)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * std)
        self.requires_grad_(False)

    def _logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token logits for every prefix of ``tokens`` (begin token prepended)."""
        begin = torch.zeros(tokens.shape[0], 1, dtype=torch.long, device=tokens.device)
        inputs = torch.cat([begin, tokens[:, :-1] + 1], dim=1)
        hidden, _ = self.lstm(self.embedding(inputs))
        return self.output(hidden)

    @torch.no_grad()
    def sample(
        self,
        num: int,
        length: int = 20,
        *,
        temperature: float | None = None,
        generator: torch.Generator | None = None,
        batch_size: int = 1024,
    ) -> torch.Tensor:
        """``num`` sequences of ``length`` token ids (int64), sampled ancestrally."""
        t = self.temperature if temperature is None else temperature
        if not t > 0:
            raise ValueError(f"temperature: must be positive, got {t}")
        out = []
        for start in range(0, num, batch_size):
            n = min(batch_size, num - start)
            token = torch.zeros(n, 1, dtype=torch.long, device=self.embedding.weight.device)
            state = None
            seq = []
            for _ in range(length):
                hidden, state = self.lstm(self.embedding(token), state)
                probs = torch.softmax(self.output(hidden[:, -1]) / t, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator)
                seq.append(nxt)
                token = nxt + 1
            out.append(torch.cat(seq, dim=1))
        return torch.cat(out, dim=0)

    @torch.no_grad()
    def log_likelihood(
        self, tokens: torch.Tensor, *, temperature: float | None = None
    ) -> torch.Tensor:
        """Per-sequence log-probability (nats) of ``tokens`` under the oracle at
        ``temperature`` (default: its own)."""
        t = self.temperature if temperature is None else temperature
        logp = torch.log_softmax(self._logits(tokens) / t, dim=-1)
        return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1).sum(-1)

    @torch.no_grad()
    def token_log_probs(
        self, tokens: torch.Tensor, *, temperature: float | None = None
    ) -> torch.Tensor:
        """Per-token log-probabilities ``[batch, length]`` (nats): column ``t`` is
        ``log p(tokens[:, t] | tokens[:, :t])`` under the oracle at ``temperature``."""
        t = self.temperature if temperature is None else temperature
        logp = torch.log_softmax(self._logits(tokens) / t, dim=-1)
        return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)

    def nll_per_token(self, tokens: torch.Tensor, *, temperature: float | None = None) -> float:
        """Mean negative log-likelihood per token (nats) of ``tokens`` (NLL-oracle)."""
        return float(-self.log_likelihood(tokens, temperature=temperature).mean()) / tokens.shape[1]

    def entropy_rate(
        self, *, num: int = 4096, length: int = 20, seed: int = 1, temperature: float | None = None
    ) -> float:
        """Monte-Carlo estimate of the oracle's entropy (nats/token) at ``temperature``: the NLL
        of its own samples."""
        g = torch.Generator().manual_seed(seed)
        sample = self.sample(num, length, temperature=temperature, generator=g)
        return self.nll_per_token(sample, temperature=temperature)

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, temperature={self.temperature}"


def uniform_entropy(vocab_size: int) -> float:
    """Entropy (nats) of the uniform distribution over ``vocab_size`` tokens."""
    return math.log(vocab_size)
