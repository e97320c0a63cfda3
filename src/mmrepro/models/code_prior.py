"""Text-conditioned autoregressive prior over a VQ-VAE code grid (a small DALL·E).

Papers: A. Ramesh et al., "Zero-Shot Text-to-Image Generation" (DALL·E), ICML 2021 — caption
tokens and image codes modelled as one stream by a decoder-only transformer; the prior over
VQ-VAE codes follows van den Oord et al. 2017 section 3.3 (there a PixelCNN; here a transformer).

The sequence is [caption tokens (L)] [BOS] [code_1 ... code_{N-1}] with causal attention; the
model predicts code_1 ... code_N (raster order of the H' x W' grid). Only image positions carry
the loss; captions are conditioning.

Classifier-free guidance (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance"; used with autoregressive
image-token transformers by Gafni et al. 2022, Make-A-Scene, and Yu et al. 2022, Parti): training replaces
a fraction `cond_dropout` of the captions by the null caption (all padding), so that one model learns both
p(codes | caption) and p(codes); sampling with `guidance` g > 1 draws each code from
softmax(l_null + g (l_caption - l_null)), which pushes the image towards what the caption, and not the
data's average, asks for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CodePrior", "CodePriorConfig"]


@dataclass(frozen=True)
class CodePriorConfig:
    text_vocab: int  # caption token ids, 0 = padding
    text_len: int  # caption tokens per example (padded)
    codebook_size: int  # K of the VQ-VAE
    n_codes: int  # N = H' * W' codes per image
    d_model: int = 128  # residual width
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads
    mlp_ratio: int = 4  # MLP hidden = mlp_ratio * d_model
    dropout: float = 0.0  # dropout in attention and MLP
    cond_dropout: float = 0.0  # training: chance of an example's caption being replaced by the null caption

    def __post_init__(self) -> None:
        for name in ("text_vocab", "text_len", "codebook_size", "n_codes", "d_model", "n_layer", "n_head"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_head ({self.n_head})")


class CodePrior(nn.Module):
    """forward(text (B, L) long, codes (B, N) long) -> logits (B, N, K) for every code position.
    loss(text, codes) -> mean cross-entropy in nats per code (in training mode, a `cond_dropout` share of the
    captions is nulled). sample(text, guidance=g) -> codes (B, N)."""

    NULL_TOKEN = 0  # the padding id: a caption of nothing but padding is the null caption

    def __init__(self, cfg: CodePriorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.text_embed = nn.Embedding(cfg.text_vocab, cfg.d_model)
        self.code_embed = nn.Embedding(cfg.codebook_size + 1, cfg.d_model)  # + BOS
        self.pos = nn.Parameter(torch.zeros(cfg.text_len + cfg.n_codes, cfg.d_model))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(
            cfg.d_model, cfg.n_head, cfg.mlp_ratio * cfg.d_model, cfg.dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, cfg.n_layer, enable_nested_tensor=False)
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.codebook_size)

    @property
    def bos(self) -> int:
        return self.cfg.codebook_size

    def _hidden(self, text: torch.Tensor, codes_in: torch.Tensor) -> torch.Tensor:
        if text.dim() != 2 or text.shape[1] != self.cfg.text_len:
            raise ValueError(f"expected text (B, {self.cfg.text_len}), got {tuple(text.shape)}")
        x = torch.cat([self.text_embed(text), self.code_embed(codes_in)], 1)
        t = x.shape[1]
        x = x + self.pos[:t]
        mask = torch.full((t, t), float("-inf"), device=x.device).triu(1)
        return self.ln_f(self.blocks(x, mask=mask, is_causal=True))

    def forward(self, text: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        if codes.dim() != 2 or codes.shape[1] != self.cfg.n_codes:
            raise ValueError(f"expected codes (B, {self.cfg.n_codes}), got {tuple(codes.shape)}")
        bos = codes.new_full((codes.shape[0], 1), self.bos)
        h = self._hidden(text, torch.cat([bos, codes[:, :-1]], 1))
        return self.head(h[:, self.cfg.text_len :])

    def loss(self, text: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        if self.training and self.cfg.cond_dropout > 0:
            drop = torch.rand(text.shape[0], device=text.device) < self.cfg.cond_dropout
            text = text.masked_fill(drop[:, None], self.NULL_TOKEN)
        logits = self(text, codes)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), codes.reshape(-1))

    @torch.no_grad()
    def sample(
        self, text: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
        generator: torch.Generator | None = None, guidance: float = 1.0,
    ) -> torch.Tensor:
        """Ancestral sampling of N codes per caption -> (B, N) long. guidance 1: p(codes | caption) as
        trained; g != 1: classifier-free guidance against the null caption (module doc), which needs a
        prior trained with cond_dropout > 0."""
        b = text.shape[0]
        guided = guidance != 1.0
        if guided:  # one batch: the captions, then as many null captions
            text = torch.cat([text, torch.full_like(text, self.NULL_TOKEN)])
        codes = text.new_full((text.shape[0], 1), self.bos)
        for _ in range(self.cfg.n_codes):
            logits = self.head(self._hidden(text, codes)[:, -1])
            if guided:
                cond, null = logits[:b], logits[b:]
                logits = null + guidance * (cond - null)
            logits = logits / max(temperature, 1e-6)
            if top_k is not None:
                kth = logits.topk(top_k, -1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = torch.softmax(logits.float(), -1)
            drawn = torch.multinomial(probs, 1, generator=generator)
            codes = torch.cat([codes, drawn.repeat(2, 1) if guided else drawn], 1)
        return codes[:b, 1:]
