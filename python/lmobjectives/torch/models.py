"""Small models built from a few numbers (no downloads): for tests, examples and ``pretrain``.

:class:`TinyEncoder` is a BERT/ELECTRA-style bidirectional transformer encoder with token,
position and token-type embeddings (optionally of a different size than the hidden state,
projected, as ELECTRA-Small does) and one of three heads: ``"mlm"`` (logits over the
vocabulary, decoder tied to the token embeddings), ``"token"`` (one logit per token, e.g. the
ELECTRA discriminator) or ``None`` (hidden states).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Embeddings", "TinyEncoder", "TinySeq2Seq"]


class Embeddings(nn.Module):
    """Token + position + token-type embeddings, LayerNorm, dropout."""

    def __init__(
        self,
        vocab_size: int,
        size: int,
        max_length: int,
        type_vocab_size: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.token = nn.Embedding(vocab_size, size)
        self.position = nn.Embedding(max_length, size)
        self.token_type = nn.Embedding(type_vocab_size, size)
        self.norm = nn.LayerNorm(size)
        self.dropout = nn.Dropout(dropout)
        for e in (self.token, self.position, self.token_type):
            nn.init.normal_(e.weight, std=0.02)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if input_ids.shape[1] > self.position.num_embeddings:
            raise ValueError(
                f"input_ids: {input_ids.shape[1]} positions, the model has "
                f"{self.position.num_embeddings}"
            )
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
        x = self.token(input_ids) + self.position(position_ids)
        if token_type_ids is not None:
            x = x + self.token_type(token_type_ids)
        return self.dropout(self.norm(x))


class TinyEncoder(nn.Module):
    """A small bidirectional transformer encoder.

    Args:
        vocab_size: token ids in ``[0, vocab_size)``.
        hidden_size, num_layers, num_heads: the transformer (64, 2, 2).
        max_length: positions (512).
        intermediate_size: feed-forward width (4 × hidden).
        embedding_size: embedding width (default: hidden); when different the embeddings are
            projected to the hidden size.
        head: ``"mlm"``, ``"token"`` or ``None`` (see the module docstring).
        dropout: dropout everywhere (0.0).
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int = 64,
        num_layers: int = 2,
        num_heads: int = 2,
        *,
        max_length: int = 512,
        intermediate_size: int | None = None,
        embedding_size: int | None = None,
        head: Literal["mlm", "token"] | None = "mlm",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if head not in ("mlm", "token", None):
            raise ValueError(f"head: must be 'mlm', 'token' or None, got {head!r}")
        embedding_size = embedding_size or hidden_size
        self.head_kind = head
        self.embeddings = Embeddings(vocab_size, embedding_size, max_length, dropout=dropout)
        self.project = (
            nn.Linear(embedding_size, hidden_size) if embedding_size != hidden_size else None
        )
        layer = nn.TransformerEncoderLayer(
            hidden_size,
            num_heads,
            intermediate_size or 4 * hidden_size,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        if head == "mlm":
            self.transform = nn.Linear(hidden_size, embedding_size)
            self.transform_norm = nn.LayerNorm(embedding_size)
            self.decoder = nn.Linear(embedding_size, vocab_size)
            self.tie_output()
        elif head == "token":
            self.dense = nn.Linear(hidden_size, hidden_size)
            self.classifier = nn.Linear(hidden_size, 1)

    def tie_output(self) -> None:
        """Ties the MLM decoder to the token embeddings (after embeddings are shared)."""
        if self.head_kind == "mlm":
            self.decoder.weight = self.embeddings.token.weight

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = self.embeddings(input_ids, token_type_ids, position_ids)
        if self.project is not None:
            x = self.project(x)
        pad = None if attention_mask is None else attention_mask == 0
        return self.encoder(x, src_key_padding_mask=pad)

    def masked_logits(
        self,
        input_ids: torch.Tensor,
        masked: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The MLM head's logits at the masked positions only, without projecting every other
        position onto the vocabulary (ELECTRA's generator gathers the masked positions first
        too). ``masked`` is either a boolean ``[batch, seq]`` mask — ``forward(...)[masked]``,
        ``[n_masked, vocab]``, a data-dependent shape (one host sync on an accelerator) — or
        an integer index ``[batch, P]`` of positions (e.g. from
        :func:`~lmobjectives.torch.labelled_positions`) — ``[batch, P, vocab]``, no sync."""
        if self.head_kind != "mlm":
            raise ValueError(
                f"masked_logits: needs head='mlm', this encoder has {self.head_kind!r}"
            )
        h = self.hidden_states(input_ids, attention_mask, token_type_ids)
        if masked.dtype == torch.bool:
            return self._mlm(h[masked])
        index = masked.long().unsqueeze(-1).expand(*masked.shape, h.shape[-1])
        return self._mlm(h.gather(1, index))

    def _mlm(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform_norm(F.gelu(self.transform(h))))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h = self.hidden_states(input_ids, attention_mask, token_type_ids, position_ids)
        if self.head_kind == "mlm":
            return self._mlm(h)
        if self.head_kind == "token":
            return self.classifier(F.gelu(self.dense(h))).squeeze(-1)
        return h


class TinySeq2Seq(nn.Module):
    """A small encoder–decoder transformer (T5/BART-shaped) for the denoising objectives.

    Token embeddings are shared by the encoder, the decoder and the output projection (tied);
    each side has its own learned positions. ``forward(input_ids, attention_mask,
    decoder_input_ids, decoder_attention_mask)`` returns logits ``[batch, target, vocab]`` —
    the decoder is causal, padding is masked on both sides.

    Args:
        vocab_size: token ids in ``[0, vocab_size)`` (for T5 batches: the collator's
            ``vocab_size``, which counts the sentinels).
        hidden_size, num_layers, num_heads: per side (64, 2, 2).
        max_length: positions per side (512).
        intermediate_size: feed-forward width (4 × hidden).
        dropout: dropout everywhere (0.0).
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int = 64,
        num_layers: int = 2,
        num_heads: int = 2,
        *,
        max_length: int = 512,
        intermediate_size: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        width = intermediate_size or 4 * hidden_size
        self.embeddings = Embeddings(vocab_size, hidden_size, max_length, dropout=dropout)
        self.decoder_embeddings = Embeddings(vocab_size, hidden_size, max_length, dropout=dropout)
        self.decoder_embeddings.token = self.embeddings.token  # one token table
        enc = nn.TransformerEncoderLayer(
            hidden_size, num_heads, width, dropout=dropout, activation="gelu", batch_first=True
        )
        dec = nn.TransformerDecoderLayer(
            hidden_size, num_heads, width, dropout=dropout, activation="gelu", batch_first=True
        )
        self.encoder = nn.TransformerEncoder(enc, num_layers, enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(dec, num_layers)
        self.norm = nn.LayerNorm(hidden_size)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The encoder's hidden states ``[batch, seq, hidden]``: what the decoder attends to
        (and what a probe of the encoder reads)."""
        pad = None if attention_mask is None else attention_mask == 0
        return self.encoder(self.embeddings(input_ids, token_type_ids), src_key_padding_mask=pad)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if decoder_input_ids is None:
            raise ValueError("decoder_input_ids: required (the collators return them)")
        src_pad = None if attention_mask is None else attention_mask == 0
        tgt_pad = None if decoder_attention_mask is None else decoder_attention_mask == 0
        memory = self.encode(input_ids, attention_mask)
        t = decoder_input_ids.shape[1]
        causal = torch.triu(torch.full((t, t), float("-inf"), device=input_ids.device), diagonal=1)
        h = self.decoder(
            self.decoder_embeddings(decoder_input_ids),
            memory,
            tgt_mask=causal,
            tgt_is_causal=True,  # said, not detected: detecting compares on the host (a sync)
            tgt_key_padding_mask=None if tgt_pad is None else _float_mask(tgt_pad),
            memory_key_padding_mask=None if src_pad is None else _float_mask(src_pad),
        )
        return F.linear(self.norm(h), self.embeddings.token.weight, self.bias)


def _float_mask(pad: torch.Tensor) -> torch.Tensor:
    """A boolean padding mask as the additive float mask (so it matches a float ``tgt_mask``)."""
    return torch.zeros(pad.shape, device=pad.device).masked_fill(pad, float("-inf"))
