"""CTC output head (Graves et al. 2006) for an acoustic encoder, with greedy decoding.

Used with the Conformer / Fast Conformer encoders (`mmrepro.models.conformer`, `mmrepro.models.fast_conformer`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CTCHead"]


class CTCHead(nn.Module):
    """Linear projection of encoder frames to `vocab_size + 1` classes (the tokens plus blank).

    Args:
        encoder_dim: encoder output size d.
        vocab_size: number of real tokens V (without blank).
        blank: index of the blank class among the V + 1 outputs (0 by default; token ids then
            occupy the other indices).
    """

    def __init__(self, encoder_dim: int, vocab_size: int, blank: int = 0) -> None:
        super().__init__()
        if encoder_dim <= 0 or vocab_size <= 0:
            raise ValueError(f"encoder_dim and vocab_size must be positive, got {encoder_dim}, {vocab_size}")
        if not 0 <= blank <= vocab_size:
            raise ValueError(f"blank must be in [0, {vocab_size}], got {blank}")
        self.blank = blank
        self.num_classes = vocab_size + 1
        self.proj = nn.Linear(encoder_dim, self.num_classes)

    def forward(self, enc: torch.Tensor) -> torch.Tensor:
        """enc (B, T, d) -> log-probabilities (B, T, V + 1)."""
        return F.log_softmax(self.proj(enc), dim=-1)

    def loss(self, enc: torch.Tensor, enc_lengths: torch.Tensor, targets: torch.Tensor,
             target_lengths: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of the per-utterance CTC loss divided by its target length
        (torch's `reduction="mean"`). targets (B, U) padded, target_lengths (B,)."""
        logp = self(enc).transpose(0, 1)  # (T, B, C)
        return F.ctc_loss(logp, targets, enc_lengths, target_lengths, blank=self.blank, zero_infinity=True)

    @torch.no_grad()
    def greedy_decode(self, enc: torch.Tensor, enc_lengths: torch.Tensor) -> list[list[int]]:
        """Best path: argmax per frame, collapse repeats, drop blanks. -> one list of token ids per utterance."""
        return ctc_greedy(self(enc).argmax(-1), enc_lengths, self.blank)


def ctc_greedy(best: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """best (B, T) argmax ids, lengths (B,) -> collapsed, blank-free id lists."""
    out = []
    for row, n in zip(best.tolist(), lengths.tolist(), strict=True):
        ids, prev = [], None
        for s in row[:n]:
            if s != prev and s != blank:
                ids.append(s)
            prev = s
        out.append(ids)
    return out
