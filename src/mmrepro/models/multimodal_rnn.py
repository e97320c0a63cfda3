"""Karpathy & Fei-Fei's multimodal RNN caption generator.

Karpathy, Fei-Fei, "Deep Visual-Semantic Alignments for Generating Image Descriptions", CVPR 2015
(arXiv 1412.2306), section 3.2, eq. 13-15:
    b_v = W_hi CNN(I)
    h_t = f(W_hx x_t + W_hh h_{t-1} + b_h + 1(t = 1) * b_v)
    y_t = softmax(W_oh h_t + b_o)
The image is injected at the first step only; x_1 is the START vector, f = ReLU (or an LSTM).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmrepro.data.caption_vocab import PAD
from mmrepro.models.beam_search import CaptionDecoding
from mmrepro.models.image_encoder import ImageEncoder, ImageEncoderConfig

CELLS = ("relu", "lstm")


@dataclass(frozen=True)
class MultimodalRNNConfig:
    vocab_size: int  # including the 4 specials
    encoder: ImageEncoderConfig = field(default_factory=lambda: ImageEncoderConfig(grid=3))
    embed_dim: int = 128  # word embedding size of x_t
    hidden_dim: int = 256  # h_t (the paper: 512)
    cell: str = "lstm"  # "relu" (eq. 14) or "lstm" (the paper notes an LSTM also works)
    dropout: float = 0.1  # on h_t before the output layer

    def __post_init__(self) -> None:
        if self.vocab_size < 5:
            raise ValueError(f"vocab_size must cover the 4 specials and >= 1 word, got {self.vocab_size}")
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {self.cell!r}")
        if min(self.embed_dim, self.hidden_dim) < 1 or not 0.0 <= self.dropout < 1.0:
            raise ValueError("embed_dim, hidden_dim must be >= 1 and 0 <= dropout < 1")


class MultimodalRNN(CaptionDecoding, nn.Module):
    """Images (B, 3, H, W) + captions (B, T) -> next-word logits (B, T-1, V)."""

    def __init__(self, cfg: MultimodalRNNConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.encoder.dim * cfg.encoder.grid**2
        self.encoder = ImageEncoder(cfg.encoder)
        self.w_hi = nn.Linear(d, cfg.hidden_dim)  # b_v, the image bias of the first step
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=PAD)
        if cfg.cell == "relu":
            self.w_hx = nn.Linear(cfg.embed_dim, cfg.hidden_dim)
            self.w_hh = nn.Linear(cfg.hidden_dim, cfg.hidden_dim, bias=False)
        else:
            self.cell = nn.LSTMCell(cfg.embed_dim, cfg.hidden_dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.w_oh = nn.Linear(cfg.hidden_dim, cfg.vocab_size)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Initial state (h0, c0, b_v, first-step flag), all with first dimension B."""
        b_v = self.w_hi(self.encoder(images).flatten(1))
        zeros = torch.zeros_like(b_v)
        return zeros, zeros, b_v, torch.ones_like(b_v[:, :1])

    def _step(self, tokens: torch.Tensor, state: tuple[torch.Tensor, ...]):
        h, c, b_v, first = state
        x = self.embed(tokens)
        inject = first * b_v  # 1(t = 1) * b_v
        if self.cfg.cell == "relu":
            h = torch.relu(self.w_hx(x) + self.w_hh(h) + inject)
        else:
            h, c = self.cell(x, (h + inject, c))
        return self.w_oh(self.drop(h)), (h, c, b_v, torch.zeros_like(first))

    def _log_step(self, tokens: torch.Tensor, state: tuple[torch.Tensor, ...]):
        logits, state = self._step(tokens, state)
        return logits.log_softmax(-1), state

    def forward(self, images: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
        state = self.encode(images)
        logits = []
        for t in range(captions.shape[1] - 1):
            lg, state = self._step(captions[:, t], state)
            logits.append(lg)
        return torch.stack(logits, 1)

    def loss(self, images: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
        logits = self(images, captions)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), captions[:, 1:].reshape(-1), ignore_index=PAD)


