"""GeoCapNet: a CNN encoder and a GRU decoder that describe scenes of geometric primitives.

The project's "GeoCapNet" notebook model (no paper): the pooled CNN feature initialises the GRU
state and is also fed with every input word (as in Cho et al. 2014's conditional GRU decoder);
trained with teacher forcing and cross-entropy, decoded greedily or by beam search into its
grammar "a red circle and a blue square".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmrepro.data.caption_vocab import PAD
from mmrepro.models.beam_search import CaptionDecoding
from mmrepro.models.image_encoder import ImageEncoder, ImageEncoderConfig


@dataclass(frozen=True)
class GeoCapNetConfig:
    vocab_size: int  # including the 4 specials
    encoder: ImageEncoderConfig = field(default_factory=lambda: ImageEncoderConfig(grid=3))
    embed_dim: int = 64  # word embedding size
    hidden_dim: int = 256  # GRU state size
    dropout: float = 0.1  # on the GRU output

    def __post_init__(self) -> None:
        if self.vocab_size < 5:
            raise ValueError(f"vocab_size must cover the 4 specials and >= 1 word, got {self.vocab_size}")
        if min(self.embed_dim, self.hidden_dim) < 1:
            raise ValueError("embed_dim and hidden_dim must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class GeoCapNet(CaptionDecoding, nn.Module):
    """Images (B, 3, H, W) + captions (B, T) -> next-word logits (B, T-1, V)."""

    def __init__(self, cfg: GeoCapNetConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.encoder.dim * cfg.encoder.grid**2
        self.encoder = ImageEncoder(cfg.encoder)
        self.img_to_h = nn.Linear(d, cfg.hidden_dim)
        self.img_to_x = nn.Linear(d, cfg.embed_dim)
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=PAD)
        self.gru = nn.GRU(2 * cfg.embed_dim, cfg.hidden_dim, batch_first=True)
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.hidden_dim, cfg.vocab_size)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(h0 (B, hidden), image context (B, embed)); the grid cells are concatenated, keeping layout."""
        f = self.encoder(images).flatten(1)
        return torch.tanh(self.img_to_h(f)), self.img_to_x(f)

    def forward(self, images: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
        h0, ctx = self.encode(images)
        x = self.embed(captions[:, :-1])
        x = torch.cat([x, ctx[:, None].expand(-1, x.shape[1], -1)], dim=-1)
        y, _ = self.gru(x, h0[None])
        return self.out(self.drop(y))

    def loss(self, images: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
        logits = self(images, captions)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), captions[:, 1:].reshape(-1), ignore_index=PAD)

    def _step(self, tokens: torch.Tensor, state: tuple[torch.Tensor, ...]):
        h, ctx = state
        x = torch.cat([self.embed(tokens), ctx], dim=-1)[:, None]
        y, h = self.gru(x, h[None])
        return self.out(y[:, 0]), (h[0], ctx)

    def _log_step(self, tokens: torch.Tensor, state: tuple[torch.Tensor, ...]):
        logits, state = self._step(tokens, state)
        return logits.log_softmax(-1), state


