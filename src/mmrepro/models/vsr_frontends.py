"""Visual front ends for lip reading, and the visual Conformer recogniser built on them.

Chang et al., "Conformers are All You Need for Visual Speech Recognition", ICASSP 2024
(arXiv 2302.10915): a *linear projection* (LP) of each flattened mouth crop feeding a large
Conformer encoder reads lips as well as the usual deep visual front end, at equal encoder size.

    LP front end     (B, T, H*W) -> Linear(H*W -> d)                                   (B, T, d)
    conv front end   (B, T, H*W) -> (B, 1, T, H, W) -> Conv3d 5x7x7 stride (1,2,2), BN, ReLU,
                     MaxPool (1,3,3)/(1,2,2) -> per frame ResNet-18 trunk (4 stages x 2 BasicBlocks,
                     widths w, 2w, 4w, 8w) -> global average pool -> Linear(8w -> d)   (B, T, d)
                     (the 3D-conv + ResNet-18 baseline of Stafylakis & Tzimiropoulos 2017 / Ma et
                     al. 2021-2023 that the paper replaces; w = 64 there)
    encoder          `mmrepro.models.conformer.ConformerEncoder` with the front end plugged in
                     (no temporal subsampling: one encoder frame per video frame, 25 fps)
    head             CTC (`mmrepro.models.ctc.CTCHead`) or transducer (`TransducerHead`) over
                     character tokens; blank = id `vocab_size` (the tokenizers' convention)

Both front ends take frames flattened to `(B, T, H*W)` (uint8 or float) so that the encoder's
`(B, T, F)` input contract holds; pixels are scaled to [0, 1] and standardised with fixed
`pixel_mean` / `pixel_std`.

`VSRConfig.full()` is the paper's size: 16 Conformer layers, d = 1024 (8 heads, kernel 32,
feed-forward 4d) on 64x64 frames. Its parameter count is derived analytically in
`tests/test_vsr_models.py`. Differences from the paper, stated: the paper projects RGB crops
(64x64x3 = 12288 inputs); we use grayscale (4096 inputs), as most LRS3 pipelines do; the number
of heads is not taken from the paper.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from mmrepro.models.temporal_conv import temporal_conv3d

__all__ = ["Conv3dResNetFrontEnd", "LinearProjectionFrontEnd", "VSRConfig", "VisualConformer"]


@dataclass(frozen=True)
class VSRConfig:
    frontend: str = "lp"  # "lp" (linear projection) | "conv" (3D conv + ResNet-18 trunk)
    image_size: int = 64  # H = W of the mouth crops
    d_model: int = 144  # Conformer dimension d (also the front end's output size)
    num_layers: int = 4  # Conformer blocks
    num_heads: int = 4  # attention heads
    ff_mult: int = 4  # feed-forward inner size = ff_mult * d
    conv_kernel: int = 15  # depthwise kernel of the Conformer conv module (frames at 25 fps)
    dropout: float = 0.1  # dropout in front end and encoder
    resnet_width: int = 64  # conv front end: channels of the first stage w (ResNet-18: 64)
    head: str = "ctc"  # "ctc" | "transducer"
    vocab_size: int = 28  # real tokens V (characters), blank excluded
    pred_dim: int = 320  # transducer: prediction-network LSTM size
    joint_dim: int = 0  # transducer: joint size (0 = pred_dim)
    embed_dim: int = 0  # transducer: label embedding size (0 = pred_dim)
    pixel_mean: float = 0.42  # pixel standardisation after scaling to [0, 1] (pixel_norm="fixed")
    pixel_std: float = 0.17
    pixel_norm: str = "fixed"  # "fixed" (mean/std above) | "clip" (minus the clip's mean frame, / the clip's std)

    def __post_init__(self) -> None:
        if self.frontend not in ("lp", "conv"):
            raise ValueError(f"frontend must be 'lp' or 'conv', got {self.frontend!r}")
        if self.head not in ("ctc", "transducer"):
            raise ValueError(f"head must be 'ctc' or 'transducer', got {self.head!r}")
        if min(self.image_size, self.d_model, self.num_layers, self.num_heads, self.resnet_width, self.vocab_size) <= 0:
            raise ValueError(f"sizes must be positive, got {self}")
        if self.image_size < 16 and self.frontend == "conv":
            raise ValueError("the conv front end needs image_size >= 16")
        if self.pixel_std <= 0:
            raise ValueError("pixel_std must be > 0")
        if self.pixel_norm not in ("fixed", "clip"):
            raise ValueError(f"pixel_norm must be 'fixed' or 'clip', got {self.pixel_norm!r}")

    @classmethod
    def full(cls, **overrides) -> VSRConfig:
        """The paper's size: 16 layers, d = 1024, transducer head, 64x64 crops."""
        base = cls(frontend="lp", image_size=64, d_model=1024, num_layers=16, num_heads=8, ff_mult=4,
                   conv_kernel=32, resnet_width=64, head="transducer", pred_dim=640, joint_dim=640, embed_dim=320)
        return replace(base, **overrides)


def _normalise(x: torch.Tensor, mean: float, std: float, lengths: torch.Tensor | None = None,
               mode: str = "fixed") -> torch.Tensor:
    """(B, T, P) pixels -> standardised floats; padded frames (t >= length) become 0 in "clip" mode.

    "fixed": (x / 255 - mean) / std. "clip": subtract the clip's mean frame (over its valid
    frames) and divide by the clip's standard deviation: the static appearance of a speaker (skin,
    lip colour, mouth position) is removed and the motion kept.
    """
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    if mode == "fixed":
        return (x - mean) / std
    if lengths is None:
        lengths = torch.full((x.shape[0],), x.shape[1], device=x.device)
    valid = (torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None])[..., None].to(x.dtype)
    n = valid.sum(dim=1, keepdim=True).clamp_min(1)  # (B, 1, 1)
    centred = (x - (x * valid).sum(dim=1, keepdim=True) / n) * valid
    var = centred.pow(2).sum(dim=(1, 2), keepdim=True) / (n * x.shape[2])
    return centred / (var.sqrt() + 1e-3)


class LinearProjectionFrontEnd(nn.Module):
    """LP front end: `(x (B, T, H*W), lengths (B,)) -> ((B, T, d), lengths)`."""

    def __init__(self, image_size: int, d_model: int, dropout: float = 0.0, pixel_mean: float = 0.42,
                 pixel_std: float = 0.17, pixel_norm: str = "fixed") -> None:
        super().__init__()
        if image_size <= 0 or d_model <= 0:
            raise ValueError(f"image_size and d_model must be positive, got {image_size}, {d_model}")
        self.in_dim, self.mean, self.std, self.norm = image_size * image_size, pixel_mean, pixel_std, pixel_norm
        self.proj = nn.Linear(self.in_dim, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 3 or x.shape[-1] != self.in_dim:
            raise ValueError(f"expected (B, T, {self.in_dim}) frames, got {tuple(x.shape)}")
        return self.dropout(self.proj(_normalise(x, self.mean, self.std, lengths, self.norm))), lengths


class _BasicBlock(nn.Module):
    """ResNet BasicBlock: 3x3 conv, BN, ReLU, 3x3 conv, BN, + shortcut (1x1 conv + BN when shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class Conv3dResNetFrontEnd(nn.Module):
    """3D conv stem + ResNet-18 trunk: `(x (B, T, H*W), lengths) -> ((B, T, d), lengths)`.

    The stem sees 5 frames (temporal kernel 5, stride 1, so T is kept); the trunk runs on every
    frame independently; global average pooling then a linear layer to d. The stem's Conv3d is run by
    `temporal_conv3d` (same forward; the stem 3-5x faster on CPU, `benchmarks/vsr_stem.py`), parameters unchanged.
    """

    def __init__(self, image_size: int, d_model: int, width: int = 64, dropout: float = 0.0,
                 pixel_mean: float = 0.42, pixel_std: float = 0.17, pixel_norm: str = "fixed") -> None:
        super().__init__()
        if image_size < 16 or d_model <= 0 or width <= 0:
            raise ValueError(f"need image_size >= 16, d_model > 0, width > 0; got {image_size}, {d_model}, {width}")
        self.size, self.mean, self.std, self.norm = image_size, pixel_mean, pixel_std, pixel_norm
        self.stem = nn.Sequential(
            nn.Conv3d(1, width, (5, 7, 7), (1, 2, 2), (2, 3, 3), bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        )
        chans = [width, 2 * width, 4 * width, 8 * width]
        blocks, cin = [], width
        for i, c in enumerate(chans):
            blocks += [_BasicBlock(cin, c, 1 if i == 0 else 2), _BasicBlock(c, c, 1)]
            cin = c
        self.trunk = nn.Sequential(*blocks)
        self.proj = nn.Linear(8 * width, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 3 or x.shape[-1] != self.size * self.size:
            raise ValueError(f"expected (B, T, {self.size * self.size}) frames, got {tuple(x.shape)}")
        b, t, _ = x.shape
        # zero padded frames so the temporal stem does not see padding content
        valid = torch.arange(t, device=x.device)[None, :] < lengths[:, None]
        v = _normalise(x, self.mean, self.std, lengths, self.norm).masked_fill(~valid[..., None], 0.0)
        conv = self.stem[0]  # its weight gradient as a 2D convolution over stacked frames (much faster on CPU)
        v = temporal_conv3d(v.view(b, 1, t, self.size, self.size), conv.weight, conv.stride[1:], conv.padding)
        v = self.stem[1:](v)  # (B, w, T, H/4, W/4)
        v = v.transpose(1, 2).reshape(b * t, v.shape[1], v.shape[3], v.shape[4])
        v = self.trunk(v).mean(dim=(2, 3)).view(b, t, -1)  # (B, T, 8w)
        return self.dropout(self.proj(v)), lengths


class VisualConformer(nn.Module):
    """Front end + Conformer encoder + CTC or transducer head over character tokens.

    `forward(frames (B, T, H, W) or (B, T, H*W), lengths (B,)) -> (enc (B, T, d), lengths (B,))`;
    `loss(frames, lengths, targets (B, U), target_lengths (B,))` -> scalar;
    `decode(frames, lengths, beam=1)` -> one list of token ids per clip (greedy; RNN-T beam search for beam > 1).
    """

    def __init__(self, cfg: VSRConfig) -> None:
        super().__init__()
        from mmrepro.models.conformer import ConformerConfig, ConformerEncoder

        self.cfg = cfg
        if cfg.frontend == "lp":
            front = LinearProjectionFrontEnd(cfg.image_size, cfg.d_model, cfg.dropout, cfg.pixel_mean, cfg.pixel_std,
                                             cfg.pixel_norm)
        else:
            front = Conv3dResNetFrontEnd(cfg.image_size, cfg.d_model, cfg.resnet_width, cfg.dropout,
                                         cfg.pixel_mean, cfg.pixel_std, cfg.pixel_norm)
        enc_cfg = ConformerConfig(
            input_dim=cfg.d_model, d_model=cfg.d_model, num_layers=cfg.num_layers, num_heads=cfg.num_heads,
            ff_mult=cfg.ff_mult, conv_kernel=cfg.conv_kernel, dropout=cfg.dropout, input_layer="none",
        )
        self.encoder = ConformerEncoder(enc_cfg, front_end=front)
        if cfg.head == "ctc":
            from mmrepro.models.ctc import CTCHead

            self.head = CTCHead(cfg.d_model, cfg.vocab_size, blank=cfg.vocab_size)
        else:
            from mmrepro.models.transducer import TransducerHead

            self.head = TransducerHead(cfg.d_model, cfg.vocab_size, pred_dim=cfg.pred_dim, joint_dim=cfg.joint_dim,
                                       embed_dim=cfg.embed_dim, dropout=cfg.dropout,
                                       blank=cfg.vocab_size)

    @property
    def front_end(self) -> nn.Module:
        return self.encoder.front_end

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if frames.dim() == 4:
            frames = frames.flatten(2)
        return self.encoder(frames, lengths)

    def loss(self, frames: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor,
             target_lengths: torch.Tensor) -> torch.Tensor:
        enc, enc_lengths = self(frames, lengths)
        return self.head.loss(enc, enc_lengths, targets, target_lengths)

    @torch.no_grad()
    def decode(self, frames: torch.Tensor, lengths: torch.Tensor, beam: int = 1) -> list[list[int]]:
        """Greedy search (beam = 1), or RNN-T beam search of `beam` hypotheses (transducer head only)."""
        enc, enc_lengths = self(frames, lengths)
        if beam > 1:
            if self.cfg.head != "transducer":
                raise ValueError(f"beam search (beam {beam}) is implemented for the transducer head only, "
                                 f"not {self.cfg.head!r}; use beam 1 (greedy)")
            return self.head.beam_search(enc, enc_lengths, beam)
        return self.head.greedy_decode(enc, enc_lengths)
