"""StarCapNet: numerosity-aware image captioning (CNN encoder + GRU decoder).

Follows the project's StarCapNet notebook: a small convolutional encoder turns a grayscale image of
0-9 "stars" into one feature vector that initialises a GRU language decoder, trained with teacher
forcing and decoded greedily or with beam search (the captioners' shared `CaptionDecoding`).
One change from the notebook, for counting: the encoder keeps the 4x4 spatial grid (flatten, not global
average pooling), so the feature vector can still tell where, and therefore how many, discs there are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mmrepro.data.caption_vocab import PAD
from mmrepro.models.beam_search import CaptionDecoding


@dataclass(frozen=True)
class StarCapNetConfig:
    vocab_size: int
    image_size: int = 64  # square grayscale input; must be divisible by 16
    channels: tuple[int, ...] = (16, 32, 32, 64)  # conv stages (3x3 conv, BN, ReLU, 2x2 max-pool)
    embed_dim: int = 64  # word embedding size
    hidden_dim: int = 256  # GRU state size = image feature size
    dropout: float = 0.1


class StarCapNet(CaptionDecoding, nn.Module):
    def __init__(self, cfg: StarCapNetConfig):
        super().__init__()
        if cfg.image_size % (2 ** len(cfg.channels)):
            raise ValueError(f"image_size {cfg.image_size} not divisible by 2^{len(cfg.channels)}")
        self.cfg = cfg
        layers, c_in = [], 1
        for c_out in cfg.channels:
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c_out
        grid = cfg.image_size // 2 ** len(cfg.channels)
        self.encoder = nn.Sequential(*layers, nn.Flatten(), nn.Dropout(cfg.dropout),
                                     nn.Linear(c_in * grid * grid, cfg.hidden_dim), nn.Tanh())
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=PAD)
        self.gru = nn.GRU(cfg.embed_dim, cfg.hidden_dim, batch_first=True)
        self.out = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden_dim, cfg.vocab_size))

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor]:
        """(B, H, W) uint8 or float in [0, 1] -> (initial GRU state (B, hidden),)."""
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        return (self.encoder(images.unsqueeze(1)),)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: tokens (B, L) starting with <bos> -> logits (B, L-1, V) for tokens[:, 1:]."""
        (h0,) = self.encode(images)
        states, _ = self.gru(self.embed(tokens[:, :-1]), h0.unsqueeze(0))
        return self.out(states)

    def loss(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        logits = self.forward(images, tokens)
        return nn.functional.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], ignore_index=PAD)

    def _log_step(self, tokens: torch.Tensor, state: tuple[torch.Tensor]) -> tuple[torch.Tensor, tuple[torch.Tensor]]:
        """One decoding step for the shared search: tokens (N,), state ((N, hidden),) -> log-probs (N, V)."""
        out, h = self.gru(self.embed(tokens[:, None]), state[0].unsqueeze(0))
        return self.out(out[:, 0]).log_softmax(-1), (h[0],)
