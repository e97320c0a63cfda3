"""Show, Attend and Tell with soft attention.

Xu, Ba, Kiros, Cho, Courville, Salakhutdinov, Zemel, Bengio, "Show, Attend and Tell: Neural Image
Caption Generation with Visual Attention", ICML 2015 (arXiv 1502.03044).

CNN grid features a_i (L locations), an LSTM decoder whose input at step t is the previous word's
embedding and the attention context z_t = beta_t * sum_i alpha_ti a_i (eq. 4-6, gating scalar
beta_t = sigmoid(f_beta(h_{t-1})), section 4.2.1), initial state from the mean annotation
(section 3.1.2), a deep output layer p(y_t) ~ exp(L_o(E y_{t-1} + L_h h_t + L_z z_t)) (eq. 7), and
the doubly stochastic regulariser lambda * sum_i (1 - sum_t alpha_ti)^2 (eq. 14).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmrepro.data.caption_vocab import BOS, EOS, PAD
from mmrepro.models.beam_search import CaptionDecoding
from mmrepro.models.image_encoder import ImageEncoder, ImageEncoderConfig


@dataclass(frozen=True)
class AttentionCaptionerConfig:
    vocab_size: int  # including the 4 specials
    encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)  # annotation vectors a_i
    embed_dim: int = 128  # word embedding size m
    hidden_dim: int = 256  # LSTM state size n
    attn_dim: int = 128  # size of the attention MLP's hidden layer
    dropout: float = 0.3  # before the deep output layer
    alpha_reg: float = 1.0  # lambda of the doubly stochastic regulariser (0 = off)

    def __post_init__(self) -> None:
        if self.vocab_size < 5:
            raise ValueError(f"vocab_size must cover the 4 specials and >= 1 word, got {self.vocab_size}")
        if min(self.embed_dim, self.hidden_dim, self.attn_dim) < 1:
            raise ValueError("embed_dim, hidden_dim and attn_dim must be >= 1")
        if not 0.0 <= self.dropout < 1.0 or self.alpha_reg < 0:
            raise ValueError(f"need 0 <= dropout < 1 and alpha_reg >= 0, got {self.dropout}, {self.alpha_reg}")


class AttentionCaptioner(CaptionDecoding, nn.Module):
    """Images (B, 3, H, W) + captions (B, T) -> next-word logits (B, T-1, V) and attention (B, T-1, L)."""

    def __init__(self, cfg: AttentionCaptionerConfig):
        super().__init__()
        self.cfg = cfg
        d, n, m = cfg.encoder.dim, cfg.hidden_dim, cfg.embed_dim
        self.encoder = ImageEncoder(cfg.encoder)
        self.embed = nn.Embedding(cfg.vocab_size, m, padding_idx=PAD)
        self.init_h = nn.Linear(d, n)
        self.init_c = nn.Linear(d, n)
        self.att_feat = nn.Linear(d, cfg.attn_dim)
        self.att_hid = nn.Linear(n, cfg.attn_dim)
        self.att_out = nn.Linear(cfg.attn_dim, 1)
        self.f_beta = nn.Linear(n, 1)
        self.lstm = nn.LSTMCell(m + d, n)
        self.l_h = nn.Linear(n, m)
        self.l_z = nn.Linear(d, m)
        self.l_o = nn.Linear(m, cfg.vocab_size)
        self.drop = nn.Dropout(cfg.dropout)

    # ---- pieces
    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Initial decoder state: (h (B, n), c (B, n), a (B, L, d), projected a (B, L, attn_dim))."""
        a = self.encoder(images)
        mean = a.mean(dim=1)
        return torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean)), a, self.att_feat(a)

    def _attend(self, h: torch.Tensor, a: torch.Tensor, pa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.att_out(torch.tanh(pa + self.att_hid(h)[:, None])).squeeze(-1)  # (B, L)
        alpha = e.softmax(dim=-1)
        z = torch.sigmoid(self.f_beta(h)) * (alpha[:, :, None] * a).sum(dim=1)  # (B, d)
        return z, alpha

    def _step(self, tokens: torch.Tensor, state: tuple[torch.Tensor, ...]):
        h, c, a, pa = state
        emb = self.embed(tokens)
        z, alpha = self._attend(h, a, pa)
        h, c = self.lstm(torch.cat([emb, z], dim=-1), (h, c))
        logits = self.l_o(self.drop(emb + self.l_h(h) + self.l_z(z)))
        return logits, alpha, (h, c, a, pa)

    def _log_step(self, tokens: torch.Tensor, state: tuple[torch.Tensor, ...]):
        logits, _, state = self._step(tokens, state)
        return logits.log_softmax(-1), state

    # ---- training
    def forward(self, images: torch.Tensor, captions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """captions (B, T) start with <bos>; returns logits (B, T-1, V) for captions[:, 1:] and alphas (B, T-1, L)."""
        state = self.encode(images)
        logits, alphas = [], []
        for t in range(captions.shape[1] - 1):
            lg, al, state = self._step(captions[:, t], state)
            logits.append(lg)
            alphas.append(al)
        return torch.stack(logits, 1), torch.stack(alphas, 1)

    def loss(self, images: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
        """Cross-entropy per word + lambda * doubly stochastic penalty (mean over the batch)."""
        logits, alphas = self(images, captions)
        target = captions[:, 1:]
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=PAD)
        mask = (target != PAD).float()[:, :, None]
        reg = ((1.0 - (alphas * mask).sum(dim=1)) ** 2).sum(dim=1).mean()
        return ce + self.cfg.alpha_reg * reg / alphas.shape[-1]

    # ---- inspection
    @torch.no_grad()
    def attention_maps(self, images: torch.Tensor, tokens: list[int]) -> torch.Tensor:
        """Attention (T+1, grid, grid) of one image (1, 3, H, W) while emitting `tokens` then <eos>."""
        caption = torch.tensor([[BOS, *tokens, EOS]], device=images.device)
        _, alphas = self(images[:1], caption)
        g = self.cfg.encoder.grid
        return alphas[0].view(-1, g, g)
