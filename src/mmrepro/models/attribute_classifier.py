"""Attribute classifier: reads shape, colour, size and position back from an image.

A small CNN with one linear head per attribute, trained on real (rendered) images only, used as the
judge of text-to-image generation: the attributes named in a held-out caption are compared with
what the classifier reads from the image generated for it (the "classifier accuracy" protocol of
conditional generative models, e.g. the CAS score of Ravuri & Vinyals 2019, reversed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AttributeClassifier"]


class AttributeClassifier(nn.Module):
    """forward(images (B, 3, H, W) in [0, 1]) -> {attribute: logits (B, n_classes)}."""

    def __init__(self, n_classes: dict[str, int], width: int = 32) -> None:
        super().__init__()
        if not n_classes or any(n < 2 for n in n_classes.values()) or width <= 0:
            raise ValueError("need >= 1 attribute with >= 2 classes each and width > 0")
        self.n_classes = dict(n_classes)
        c = width
        self.features = nn.Sequential(
            nn.Conv2d(3, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        )
        self.heads = nn.ModuleDict({k: nn.Linear(2 * c * 16, n) for k, n in self.n_classes.items()})

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W), got {tuple(images.shape)}")
        h = self.features(images - 0.5)
        return {k: head(h) for k, head in self.heads.items()}

    def loss(self, images: torch.Tensor, labels: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self(images)
        return sum(F.cross_entropy(logits[k], labels[k]) for k in self.n_classes) / len(self.n_classes)
