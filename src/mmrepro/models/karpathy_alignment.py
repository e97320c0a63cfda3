"""Karpathy & Fei-Fei's visual-semantic alignment model.

Karpathy, Fei-Fei, "Deep Visual-Semantic Alignments for Generating Image Descriptions", CVPR 2015
(arXiv 1412.2306), section 3.1.

Image regions v_i = W_m CNN(region_i) + b_m: here the CNN's grid cells plus the whole image (the
paper uses the top-19 R-CNN detections plus the whole image). Sentence fragments s_t from a
bidirectional RNN over word embeddings (eq. 2-6): x_t = W_w 1_t, e_t = f(W_e x_t + b_e),
h^f/h^b forward/backward recurrences, s_t = f(W_d (h^f_t + h^b_t) + b_d), f = ReLU.
Image-sentence score S_kl = sum_t max_i v_i^T s_t (eq. 8), and the structured max-margin
ranking objective in both directions (eq. 9):
    C = sum_k [ sum_l max(0, S_kl - S_kk + margin) + sum_l max(0, S_lk - S_kk + margin) ].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from mmrepro.data.caption_vocab import PAD
from mmrepro.models.image_encoder import ImageEncoder, ImageEncoderConfig

CELLS = ("relu", "gru")


@dataclass(frozen=True)
class KarpathyAlignmentConfig:
    vocab_size: int  # including the 4 specials
    encoder: ImageEncoderConfig = field(default_factory=lambda: ImageEncoderConfig(grid=3))  # regions
    embed_dim: int = 128  # multimodal embedding size h (the paper: 1000-1600)
    word_dim: int = 128  # word vector size of x_t (the paper: 300, word2vec-initialised)
    cell: str = "relu"  # BRNN recurrence: "relu" (the paper's eq. 4-5) or "gru"
    margin: float = 1.0  # of the ranking loss
    score_norm: str = "sum"  # "sum" over words (the paper) or "mean" (length-normalised)

    def __post_init__(self) -> None:
        if self.vocab_size < 5:
            raise ValueError(f"vocab_size must cover the 4 specials and >= 1 word, got {self.vocab_size}")
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {self.cell!r}")
        if self.score_norm not in ("sum", "mean"):
            raise ValueError(f"score_norm must be 'sum' or 'mean', got {self.score_norm!r}")
        if self.margin <= 0 or min(self.embed_dim, self.word_dim) < 1:
            raise ValueError("margin must be > 0 and embed_dim, word_dim >= 1")


class KarpathyAlignment(nn.Module):
    """Embeds images into regions (B, R, h) and sentences into fragments (B, T, h); scores pairs."""

    def __init__(self, cfg: KarpathyAlignmentConfig):
        super().__init__()
        self.cfg = cfg
        h = cfg.embed_dim
        self.encoder = ImageEncoder(cfg.encoder)
        self.region = nn.Linear(cfg.encoder.dim, h)  # W_m, b_m
        self.whole = nn.Linear(cfg.encoder.dim, h)  # the whole-image "region"
        self.embed = nn.Embedding(cfg.vocab_size, cfg.word_dim, padding_idx=PAD)  # W_w
        self.w_e = nn.Linear(cfg.word_dim, h)
        if cfg.cell == "relu":
            self.brnn = nn.RNN(h, h, batch_first=True, bidirectional=True, nonlinearity="relu")
        else:
            self.brnn = nn.GRU(h, h, batch_first=True, bidirectional=True)
        self.w_d = nn.Linear(h, h)

    @property
    def n_regions(self) -> int:
        return self.encoder.n_regions + 1

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> region vectors v (B, R, h), R = grid cells + the whole image."""
        cells = self.encoder(images)
        return torch.cat([self.region(cells), self.whole(cells.mean(dim=1, keepdim=True))], dim=1)

    def embed_sentences(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) word ids (no <bos>/<eos>, <pad>-padded) -> fragments s (B, T, h) and mask (B, T)."""
        mask = tokens != PAD
        lengths = mask.sum(dim=1).clamp(min=1).cpu()
        e = torch.relu(self.w_e(self.embed(tokens)))
        packed = nn.utils.rnn.pack_padded_sequence(e, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.brnn(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=tokens.shape[1])
        hf, hb = out.chunk(2, dim=-1)
        s = torch.relu(self.w_d(hf + hb))
        return s * mask[:, :, None], mask

    def scores(self, v: torch.Tensor, s: torch.Tensor, mask: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """S (N_img, N_sent): S_kl = sum_t max_i v_ki . s_lt over the words t of sentence l."""
        rows = []
        for start in range(0, v.shape[0], chunk):
            dots = torch.einsum("krd,ltd->klrt", v[start : start + chunk], s)  # (k, l, R, T)
            best = dots.max(dim=2).values * mask[None]  # (k, l, T)
            total = best.sum(dim=-1)
            if self.cfg.score_norm == "mean":
                total = total / mask.sum(dim=1).clamp(min=1)[None]
            rows.append(total)
        return torch.cat(rows)

    def ranking_loss(self, scores: torch.Tensor) -> torch.Tensor:
        """Eq. 9 for a batch of matching pairs (scores (B, B), diagonal = true pairs), per image."""
        diag = scores.diagonal()[:, None]
        off = ~torch.eye(scores.shape[0], dtype=torch.bool, device=scores.device)
        cost_s = (scores - diag + self.cfg.margin).clamp(min=0) * off  # rank sentences for image k
        cost_i = (scores - diag.T + self.cfg.margin).clamp(min=0) * off  # rank images for sentence l
        return (cost_s.sum() + cost_i.sum()) / scores.shape[0]

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Loss of a batch of B images with one matching sentence each (B, T)."""
        s, mask = self.embed_sentences(tokens)
        return self.ranking_loss(self.scores(self.embed_images(images), s, mask))
