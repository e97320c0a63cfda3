"""CNN image encoder giving a grid of region features, shared by the captioning papers.

Backbones:
  "small"     4 conv blocks (conv3x3-BN-ReLU, max-pool) sized for the 48x48 synthetic scenes;
  "resnet18" / "resnet34" / "resnet50"
              torchvision ResNet (He et al. 2016, "Deep Residual Learning for Image Recognition");
  "vgg19"     torchvision VGG-19 up to conv5_4 (Simonyan & Zisserman 2015), the encoder of Show,
              Attend and Tell: 14 x 14 x 512 annotation vectors at 224 px.
The torchvision ones are randomly initialised; pretrained weights only from a local state-dict file the
user names (`pretrained_path`), loaded with `weights_only=True` - never downloaded.
The final feature map is average-pooled to `grid x grid` cells and projected to `dim`; the cells
are the "regions" of Karpathy & Fei-Fei and the attention locations of Show, Attend and Tell.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

_RESNETS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}
_VGGS = {"vgg19": 512}  # conv5_4 after ReLU, before the last max-pool: 14 x 14 x 512 at 224 px (Xu et al. 2015)
ARCHS = ("small", *_RESNETS, *_VGGS)
# ImageNet statistics, used by every backbone so pretrained ResNets see what they expect.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ImageEncoderConfig:
    arch: str = "small"  # one of ARCHS
    dim: int = 128  # output feature size per region
    grid: int = 6  # regions per side after adaptive average pooling (grid**2 regions)
    width: int = 32  # channels of the first block of the "small" backbone (doubles per block)
    pretrained_path: str | None = None  # local ResNet state dict; None = random init

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.dim < 1 or self.grid < 1 or self.width < 1:
            raise ValueError(f"dim, grid and width must be >= 1, got {self.dim}, {self.grid}, {self.width}")
        if self.pretrained_path is not None and self.arch == "small":
            raise ValueError("pretrained_path is only supported for the torchvision backbones")


def _small_backbone(width: int) -> tuple[nn.Module, int]:
    layers, c_in = [], 3
    for i in range(4):
        c_out = width * 2 ** min(i, 2)
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        if i < 3:
            layers.append(nn.MaxPool2d(2))
        c_in = c_out
    return nn.Sequential(*layers), c_in


def _load_pretrained(net: nn.Module, arch: str, pretrained_path: str | None, head: str) -> None:
    """Load a local torchvision state dict (weights are never downloaded); the classifier head is skipped."""
    if pretrained_path is None:
        return
    path = Path(pretrained_path)
    if not path.is_file():
        raise ValueError(f"pretrained_path {path} is not a file (weights are never downloaded; README: Pretrained encoders)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith(head)}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.startswith(head)]:
        raise ValueError(f"{path}: not a torchvision {arch} state dict (missing {missing[:3]}, unexpected {unexpected[:3]})")


def _torchvision_net(arch: str) -> nn.Module:
    # torchvision is imported here, not at the top: it costs ~1.2 s of CPU (it pulls in torch._dynamo), which
    # every stage importing this module (for its config) would pay although only these backbones need it.
    import torchvision

    return getattr(torchvision.models, arch)(weights=None)


def _vgg_backbone(arch: str, pretrained_path: str | None) -> tuple[nn.Module, int]:
    net = _torchvision_net(arch)
    _load_pretrained(net, arch, pretrained_path, "classifier.")
    return nn.Sequential(*list(net.features.children())[:-1]), _VGGS[arch]  # drop the last max-pool


def _resnet_backbone(arch: str, pretrained_path: str | None) -> tuple[nn.Module, int]:
    net = _torchvision_net(arch)
    _load_pretrained(net, arch, pretrained_path, "fc.")
    body = nn.Sequential(*list(net.children())[:-2])  # drop avgpool and fc
    return body, _RESNETS[arch]


class ImageEncoder(nn.Module):
    """Images (B, 3, H, W) uint8 or float in [0, 1] -> region features (B, grid*grid, dim)."""

    def __init__(self, cfg: ImageEncoderConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.arch == "small":
            self.backbone, c = _small_backbone(cfg.width)
        elif cfg.arch in _VGGS:
            self.backbone, c = _vgg_backbone(cfg.arch, cfg.pretrained_path)
        else:
            self.backbone, c = _resnet_backbone(cfg.arch, cfg.pretrained_path)
        self.pool = nn.AdaptiveAvgPool2d(cfg.grid)
        self.proj = nn.Linear(c, cfg.dim)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def n_regions(self) -> int:
        return self.cfg.grid**2

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, H, W), got {tuple(images.shape)}")
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images
        x = (x - self.mean) / self.std
        fmap = self.pool(self.backbone(x))  # (B, C, g, g)
        return self.proj(fmap.flatten(2).transpose(1, 2))  # (B, g*g, dim)
