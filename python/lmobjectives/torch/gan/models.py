"""Generators and discriminators for the text-GAN trainers.

**Generator interface** (:class:`Generator`): an autoregressive model over ``vocab_size``
tokens with an implicit begin token.

- ``generator(tokens, cond=None)`` → logits ``[batch, length, vocab]``; column ``t`` is the
  distribution of ``tokens[:, t]`` given ``tokens[:, :t]`` (teacher forcing).
- ``generator.sample(num, length, prefix=None, cond=None, temperature=1.0, generator=None)``
  → int64 ``[num, length]``; the first ``prefix.shape[1]`` tokens are ``prefix`` (kept as
  they are) and the rest are sampled — what Monte-Carlo rollouts need.
- ``generator.draw_cond(num, generator)`` → the conditioning of ``num`` fresh samples (the
  noise z of :class:`TransformerGenerator`, ``None`` for :class:`LSTMGenerator`); pass it back
  as ``cond`` to continue or score the same samples.

Subclasses implement ``forward``, ``_start`` and ``_step``; :meth:`Generator.sample` is shared.

**Discriminators** map ``[batch, length]`` tokens to one logit per sequence (``> 0``: real)
and expose ``features(tokens)`` (the representation before the classifier: LeakGAN's leaked
feature). :class:`CNNDiscriminator` is SeqGAN's CNN + highway; :class:`TransformerDiscriminator`
a small encoder. Both accept a padding id (``vocab_size``) for partial sequences.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CNNDiscriminator",
    "Generator",
    "LSTMGenerator",
    "TransformerDiscriminator",
    "TransformerGenerator",
    "discriminator_loss",
    "sample_tokens",
]

#: SeqGAN's discriminator: filter widths and numbers of filters (``sequence_gan.py``).
SEQGAN_FILTER_SIZES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20)
SEQGAN_NUM_FILTERS = (100, 200, 200, 200, 200, 100, 100, 100, 100, 100, 160, 160)


def draw_device(generator: torch.Generator | None, like: torch.Tensor | torch.device) -> Any:
    """Where random draws are made: on ``generator``'s device when one is given (a seeded CPU
    generator draws on the CPU whatever the model's device, so a seed gives the same draws
    everywhere; the draws are then moved), else on ``like``'s device."""
    if generator is not None:
        return generator.device
    return like.device if isinstance(like, torch.Tensor) else like


def sample_tokens(
    logits: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One token per row of ``logits [batch, vocab]`` from ``softmax(logits / temperature)``,
    by inverting the cumulative distribution at one uniform draw per row (``u·total`` searched
    in the running sums: a zero-probability token is never chosen). An order of magnitude
    faster than ``torch.multinomial`` on CPU at vocabulary 5000."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    cdf = probs.cumsum(-1)
    u = torch.rand(cdf.shape[0], 1, generator=generator, device=draw_device(generator, cdf))
    u = u.to(cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_max(cdf.shape[-1] - 1).squeeze(1)


class Generator(nn.Module):
    """Base of the autoregressive generators (see the module docstring)."""

    vocab_size: int

    def forward(self, tokens: torch.Tensor, cond: Any = None) -> torch.Tensor:
        raise NotImplementedError

    def draw_cond(self, num: int, generator: torch.Generator | None = None) -> Any:
        return None

    def _start(self, prefix: torch.Tensor, cond: Any) -> tuple[torch.Tensor, Any]:
        """Logits of the token after ``prefix`` (``[batch, t]``, t ≥ 0) and a decoding state."""
        raise NotImplementedError

    def _step(self, token: torch.Tensor, state: Any, cond: Any) -> tuple[torch.Tensor, Any]:
        """Feeds ``token`` ``[batch]``; returns the next logits and state."""
        raise NotImplementedError

    def _repeat_cond(self, cond: Any, repeats: int) -> Any:
        return None if cond is None else cond.repeat_interleave(repeats, dim=0)

    @torch.no_grad()
    def sample(
        self,
        num: int,
        length: int,
        *,
        prefix: torch.Tensor | None = None,
        cond: Any = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``num`` sequences of ``length`` tokens, continuing ``prefix`` when given (its rows
        are kept unchanged; ``prefix.shape[0]`` must be ``num``)."""
        if not temperature > 0:
            raise ValueError(f"temperature: must be positive, got {temperature!r}")
        device = next(self.parameters()).device
        if prefix is None:
            prefix = torch.zeros(num, 0, dtype=torch.long, device=device)
        if prefix.shape[0] != num or prefix.shape[1] > length:
            raise ValueError(f"prefix: expected [{num}, <= {length}], got {list(prefix.shape)}")
        if cond is None:
            cond = self.draw_cond(num, generator)
        out = [prefix]
        if prefix.shape[1] < length:
            logits, state = self._start(prefix, cond)
            for t in range(prefix.shape[1], length):
                tok = sample_tokens(logits, temperature, generator)
                out.append(tok[:, None])
                if t + 1 < length:
                    logits, state = self._step(tok, state, cond)
        return torch.cat(out, dim=1)


class LSTMGenerator(Generator):
    """The papers' generator: a one-layer LSTM LM (SeqGAN: embedding/hidden 32, weights
    N(0, 0.1²) — ``init_std``)."""

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int = 32,
        hidden_size: int = 32,
        *,
        init_std: float | None = 0.1,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size + 1, embedding_size)  # + the begin token
        self.lstm = nn.LSTM(embedding_size, hidden_size, batch_first=True)
        self.output = nn.Linear(hidden_size, vocab_size)
        if init_std is not None:
            with torch.no_grad():
                for p in self.parameters():
                    p.normal_(0.0, init_std)

    def _inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        begin = torch.full_like(tokens[:, :1], self.vocab_size)
        return torch.cat([begin, tokens[:, :-1]], dim=1)

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """LSTM outputs ``[batch, length, hidden]`` (position t has read ``tokens[:, :t]``)."""
        return self.lstm(self.embedding(self._inputs(tokens)))[0]

    def forward(self, tokens: torch.Tensor, cond: Any = None) -> torch.Tensor:
        return self.output(self.hidden(tokens))

    def _start(self, prefix: torch.Tensor, cond: Any) -> tuple[torch.Tensor, Any]:
        begin = torch.full((prefix.shape[0], 1), self.vocab_size, device=prefix.device)
        h, state = self.lstm(self.embedding(torch.cat([begin, prefix], dim=1)))
        return self.output(h[:, -1]), state

    def _step(self, token: torch.Tensor, state: Any, cond: Any) -> tuple[torch.Tensor, Any]:
        h, state = self.lstm(self.embedding(token[:, None]), state)
        return self.output(h[:, -1]), state


class TransformerGenerator(Generator):
    """A tiny causal transformer decoder that maps a Gaussian noise vector z (``noise_size``,
    0 for none) and the previous tokens to the next token: the GAN formulation of a generator
    (z is projected and added to every input position). ``cond`` is z ``[batch, noise_size]``;
    :meth:`draw_cond` draws it from N(0, I)."""

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int = 32,
        num_layers: int = 2,
        num_heads: int = 2,
        *,
        noise_size: int = 16,
        max_length: int = 64,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.noise_size = noise_size
        self.max_length = max_length
        self.embedding = nn.Embedding(vocab_size + 1, hidden_size)
        self.position = nn.Embedding(max_length, hidden_size)
        self.noise = nn.Linear(noise_size, hidden_size) if noise_size > 0 else None
        layer = nn.TransformerEncoderLayer(
            hidden_size,
            num_heads,
            4 * hidden_size,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden_size)
        self.output = nn.Linear(hidden_size, vocab_size)

    def draw_cond(self, num: int, generator: torch.Generator | None = None) -> Any:
        if self.noise is None:
            return None
        device = next(self.parameters()).device
        noise = torch.randn(
            num, self.noise_size, generator=generator, device=draw_device(generator, device)
        )
        return noise.to(device)

    def _run(self, inputs: torch.Tensor, cond: Any) -> torch.Tensor:
        t = inputs.shape[1]
        if t > self.max_length:
            raise ValueError(f"tokens: {t} positions > max_length={self.max_length}")
        pos = torch.arange(t, device=inputs.device)
        x = self.embedding(inputs) + self.position(pos)[None]
        if self.noise is not None:
            z = cond if cond is not None else self.draw_cond(inputs.shape[0])
            x = x + self.noise(z)[:, None, :]
        causal = torch.triu(torch.full((t, t), float("-inf"), device=inputs.device), 1)
        return self.output(self.norm(self.blocks(x, mask=causal)))

    def forward(self, tokens: torch.Tensor, cond: Any = None) -> torch.Tensor:
        begin = torch.full_like(tokens[:, :1], self.vocab_size)
        return self._run(torch.cat([begin, tokens[:, :-1]], dim=1), cond)

    def _start(self, prefix: torch.Tensor, cond: Any) -> tuple[torch.Tensor, Any]:
        begin = torch.full((prefix.shape[0], 1), self.vocab_size, device=prefix.device)
        state = torch.cat([begin, prefix], dim=1)
        return self._run(state, cond)[:, -1], state

    def _step(self, token: torch.Tensor, state: Any, cond: Any) -> tuple[torch.Tensor, Any]:
        state = torch.cat([state, token[:, None]], dim=1)
        return self._run(state, cond)[:, -1], state


class _Highway(nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.transform = nn.Linear(size, size)
        self.gate = nn.Linear(size, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.sigmoid(self.gate(x))
        return t * F.relu(self.transform(x)) + (1 - t) * x


class CNNDiscriminator(nn.Module):
    """SeqGAN's discriminator: embedding (64), one convolution per filter width (ReLU, max over
    time), concatenation, one highway layer, dropout (keep 0.75), then a "real" logit. Widths
    longer than ``length`` are dropped. ``features`` is the highway output (LeakGAN's leaked
    feature, Σ filters = 1720 at length 20 with the defaults). Id ``vocab_size`` is padding."""

    def __init__(
        self,
        vocab_size: int,
        length: int,
        *,
        embedding_size: int = 64,
        filter_sizes: tuple[int, ...] = SEQGAN_FILTER_SIZES,
        num_filters: tuple[int, ...] = SEQGAN_NUM_FILTERS,
        dropout: float = 0.25,
    ) -> None:
        super().__init__()
        if len(filter_sizes) != len(num_filters):
            raise ValueError("filter_sizes, num_filters: must have the same length")
        kept = [(w, n) for w, n in zip(filter_sizes, num_filters, strict=True) if w <= length]
        if not kept:
            raise ValueError(f"filter_sizes: none fits length {length}")
        self.vocab_size = vocab_size
        self.length = length
        self.embedding = nn.Embedding(vocab_size + 1, embedding_size)
        self.convs = nn.ModuleList(nn.Conv1d(embedding_size, n, w) for w, n in kept)
        self.feature_size = sum(n for _, n in kept)
        self.highway = _Highway(self.feature_size)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(self.feature_size, 1)

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embedding(tokens).transpose(1, 2)
        pooled = [F.relu(conv(x)).amax(dim=2) for conv in self.convs]
        return self.highway(torch.cat(pooled, dim=1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.output(self.dropout(self.features(tokens))).squeeze(-1)


class TransformerDiscriminator(nn.Module):
    """A small bidirectional transformer encoder with mean pooling and a "real" logit;
    ``features`` is the pooled vector. Id ``vocab_size`` is padding (not attended to)."""

    def __init__(
        self,
        vocab_size: int,
        length: int,
        *,
        hidden_size: int = 64,
        num_layers: int = 2,
        num_heads: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.length = length
        self.feature_size = hidden_size
        self.embedding = nn.Embedding(vocab_size + 1, hidden_size)
        self.position = nn.Embedding(length, hidden_size)
        layer = nn.TransformerEncoderLayer(
            hidden_size,
            num_heads,
            4 * hidden_size,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden_size)
        self.output = nn.Linear(hidden_size, 1)

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        pad = tokens == self.vocab_size
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.embedding(tokens) + self.position(pos)[None]
        # an all-padding row would attend to nothing: let it see its first position
        pad = pad & ~(pad.all(dim=1, keepdim=True) & (pos == 0)[None])
        h = self.norm(self.encoder(x, src_key_padding_mask=pad))
        keep = (~pad).unsqueeze(-1).to(h.dtype)
        return (h * keep).sum(1) / keep.sum(1).clamp_min(1.0)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.output(self.features(tokens)).squeeze(-1)


def discriminator_loss(
    disc: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    l2_reg: float = 0.0,
) -> torch.Tensor:
    """Binary cross-entropy of ``disc`` on real (label 1) and fake (label 0) sequences, mean
    over the batch, plus ``l2_reg``·½‖output weights‖² (SeqGAN: 0.2)."""
    logits = disc(torch.cat([real, fake], dim=0))
    labels = torch.cat([logits.new_ones(real.shape[0]), logits.new_zeros(fake.shape[0])]).to(
        logits.dtype
    )
    loss = F.binary_cross_entropy_with_logits(logits, labels)
    if l2_reg:
        out = getattr(disc, "output", None)
        if isinstance(out, nn.Linear):
            loss = loss + l2_reg * 0.5 * (out.weight.square().sum() + out.bias.square().sum())
    return loss


def init_normal_(module: nn.Module, std: float) -> nn.Module:
    """Every parameter of ``module`` ~ N(0, std²) (in place); returns the module."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, std)
    return module


def num_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
