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

With `tie_codebook`, a code enters and leaves the transformer through its VQ-VAE codebook vector (standardised per
dimension, frozen; `set_codebook`) instead of an embedding row and an output row of its own: the input is a learnt
projection of the vector, the logit of code k is a learnt projection of the hidden state dotted with vector k, plus
a bias per code. Codes close in the VQ-VAE's latent space (the same edge in two colours) then share what the prior
learns about them. Ours, for the compositional test of `mmrepro.papers.vqvae` (held-out shape-colour pairs).
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
    tie_codebook: bool = False  # codes in and out through the VQ-VAE's codebook vectors (module doc)
    code_dim: int = 0  # D of those vectors (tie_codebook)

    def __post_init__(self) -> None:
        for name in ("text_vocab", "text_len", "codebook_size", "n_codes", "d_model", "n_layer", "n_head"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if self.tie_codebook and self.code_dim <= 0:
            raise ValueError(f"tie_codebook needs code_dim > 0 (the codebook vectors' size), got {self.code_dim}")
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
        if cfg.tie_codebook:
            self.register_buffer("code_vectors", torch.zeros(cfg.codebook_size, cfg.code_dim))  # set_codebook
            self.code_in = nn.Linear(cfg.code_dim, cfg.d_model)
            self.bos_embed = nn.Parameter(torch.zeros(cfg.d_model))
        else:
            self.code_embed = nn.Embedding(cfg.codebook_size + 1, cfg.d_model)  # + BOS
        self.pos = nn.Parameter(torch.zeros(cfg.text_len + cfg.n_codes, cfg.d_model))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(
            cfg.d_model, cfg.n_head, cfg.mlp_ratio * cfg.d_model, cfg.dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, cfg.n_layer, enable_nested_tensor=False)
        self.ln_f = nn.LayerNorm(cfg.d_model)
        if cfg.tie_codebook:
            self.code_out = nn.Linear(cfg.d_model, cfg.code_dim)
            self.code_bias = nn.Parameter(torch.zeros(cfg.codebook_size))
        else:
            self.head = nn.Linear(cfg.d_model, cfg.codebook_size)

    @torch.no_grad()
    def set_codebook(self, codebook: torch.Tensor) -> None:
        """tie_codebook: take the VQ-VAE's (K, D) codebook, standardised per dimension, as the codes' vectors."""
        if not self.cfg.tie_codebook:
            raise ValueError("set_codebook needs a prior built with tie_codebook=True")
        if tuple(codebook.shape) != tuple(self.code_vectors.shape):
            raise ValueError(f"expected a codebook {tuple(self.code_vectors.shape)}, got {tuple(codebook.shape)}")
        self.code_vectors.copy_((codebook - codebook.mean(0)) / codebook.std(0).clamp_min(1e-6))

    def _embed_codes(self, codes: torch.Tensor) -> torch.Tensor:
        if not self.cfg.tie_codebook:
            return self.code_embed(codes)
        vectors = self.code_in(self.code_vectors[codes.clamp(max=self.cfg.codebook_size - 1)])
        return torch.where((codes == self.bos)[..., None], self.bos_embed.expand_as(vectors), vectors)

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if not self.cfg.tie_codebook:
            return self.head(hidden)
        return self.code_out(hidden) @ self.code_vectors.T + self.code_bias

    @property
    def bos(self) -> int:
        return self.cfg.codebook_size

    def _hidden(self, text: torch.Tensor, codes_in: torch.Tensor) -> torch.Tensor:
        if text.dim() != 2 or text.shape[1] != self.cfg.text_len:
            raise ValueError(f"expected text (B, {self.cfg.text_len}), got {tuple(text.shape)}")
        x = torch.cat([self.text_embed(text), self._embed_codes(codes_in)], 1)
        t = x.shape[1]
        x = x + self.pos[:t]
        mask = torch.full((t, t), float("-inf"), device=x.device).triu(1)
        return self.ln_f(self.blocks(x, mask=mask, is_causal=True))

    def forward(self, text: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        if codes.dim() != 2 or codes.shape[1] != self.cfg.n_codes:
            raise ValueError(f"expected codes (B, {self.cfg.n_codes}), got {tuple(codes.shape)}")
        bos = codes.new_full((codes.shape[0], 1), self.bos)
        h = self._hidden(text, torch.cat([bos, codes[:, :-1]], 1))
        return self._logits(h[:, self.cfg.text_len :])

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
            logits = self._logits(self._hidden(text, codes)[:, -1])
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
