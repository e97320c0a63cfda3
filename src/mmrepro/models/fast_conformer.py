"""Fast Conformer encoder.

Rekesh et al., "Fast Conformer with Linearly Scalable Attention for Efficient Speech Recognition",
ASRU 2023, https://arxiv.org/abs/2305.05084 . Changes to the Conformer (`mmrepro.models.conformer`):
    * 8x subsampling: a 3x3 stride-2 conv2d (1 -> 256 channels) then two depthwise-separable stages
      (3x3 stride-2 depthwise conv + 1x1 pointwise conv, 256 channels), ReLU after each, linear to d
      (NeMo's `dw_striding`, `conv_channels=256`);
    * depthwise kernel 9 in the conv module;
    * attention either full (relative positions, as the Conformer) or limited context: a sliding window
      |i - j| <= w (NeMo's att_context_size [w, w], w = 128 by default) plus one global token (the first
      frame attends to and is attended by every frame, Longformer style), computed in chunks of w/4 queries
      so its time and memory grow linearly with length (see `RelPosMultiHeadAttention._limited`); an input
      of at most 4w frames runs as full attention restricted to the window, which was measured faster there.
Fast-Conformer-L is the Conformer-L body (17 layers, d = 512, 8 heads) with these changes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from mmrepro.models.conformer import ConformerConfig, ConformerEncoder, lengths_to_mask

__all__ = ["FastConformerConfig", "FastConformerEncoder"]


@dataclass(frozen=True)
class FastConformerConfig:
    input_dim: int = 80  # feature size F (80 log-mel bins)
    d_model: int = 512  # encoder dimension d
    num_layers: int = 17  # Fast Conformer blocks
    num_heads: int = 8  # attention heads
    ff_mult: int = 4  # feed-forward inner size = ff_mult * d
    conv_kernel: int = 9  # depthwise kernel of the conv module (paper: 9)
    subsampling_channels: int = 256  # channels of the depthwise-separable subsampling convs
    subsampling_factor: int = 8  # 2 ** (number of stride-2 stages); 8 in the paper (4 and 16 also valid)
    attention: str = "rel_pos"  # "rel_pos" (full, quadratic) | "limited" (sliding window + global token, linear)
    att_context: int = 128  # limited-context half-window w in frames after subsampling
    global_tokens: int = 1  # limited context: number of global tokens (0 or 1)
    dropout: float = 0.1  # residual / attention / front-end dropout

    def __post_init__(self) -> None:
        if self.subsampling_factor not in (2, 4, 8, 16):
            raise ValueError(f"subsampling_factor must be a power of 2 in [2, 16], got {self.subsampling_factor}")
        if self.subsampling_channels <= 0:
            raise ValueError(f"subsampling_channels must be positive, got {self.subsampling_channels}")
        self.body()  # validates the remaining fields

    def body(self) -> ConformerConfig:
        """The Conformer-block settings of this encoder."""
        return ConformerConfig(
            input_dim=self.input_dim, d_model=self.d_model, num_layers=self.num_layers, num_heads=self.num_heads,
            ff_mult=self.ff_mult, conv_kernel=self.conv_kernel, dropout=self.dropout, attention=self.attention,
            att_context=self.att_context, global_tokens=self.global_tokens,
        )

    @classmethod
    def preset(cls, size: str, **overrides) -> FastConformerConfig:
        """Fast Conformer sizes (NeMo configs; the paper's models are L): S d=176 16 layers, M d=256 16 layers,
        L d=512 17 layers 8 heads (the Conformer-L body), XL d=1024 24 layers."""
        table = {
            "S": {"d_model": 176, "num_layers": 16, "num_heads": 4},
            "M": {"d_model": 256, "num_layers": 16, "num_heads": 4},
            "L": {"d_model": 512, "num_layers": 17, "num_heads": 8},
            "XL": {"d_model": 1024, "num_layers": 24, "num_heads": 8},
        }
        if size not in table:
            raise ValueError(f"unknown Fast Conformer size {size!r}; expected one of {sorted(table)}")
        return replace(cls(**table[size]), **overrides)


class _DepthwiseStridingSubsampling(nn.Module):
    """8x (or 2^k x) subsampling with depthwise-separable convs. (B, T, F) -> (B, T', d).

    Every stage is 3x3, stride 2, padding 1, so T -> (T - 1) // 2 + 1 per stage. Frames past each
    sequence's length are zeroed between stages so that valid outputs do not depend on the padding.
    """

    def __init__(self, input_dim: int, d_model: int, channels: int, factor: int, dropout: float) -> None:
        super().__init__()
        stages = factor.bit_length() - 1
        self.convs = nn.ModuleList([nn.Conv2d(1, channels, 3, stride=2, padding=1)])
        for _ in range(stages - 1):
            self.convs.append(nn.Sequential(
                nn.Conv2d(channels, channels, 3, stride=2, padding=1, groups=channels),  # depthwise
                nn.Conv2d(channels, channels, 1),  # pointwise
            ))
        freq = input_dim
        for _ in range(stages):
            freq = (freq - 1) // 2 + 1
        self.out = nn.Linear(channels * freq, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.masked_fill(~lengths_to_mask(lengths, x.shape[1])[..., None], 0.0).unsqueeze(1)  # (B, 1, T, F)
        for conv in self.convs:
            x = torch.relu(conv(x))
            lengths = (lengths - 1) // 2 + 1
            x = x.masked_fill(~lengths_to_mask(lengths, x.shape[2])[:, None, :, None], 0.0)
        b, c, t, f = x.shape
        return self.dropout(self.out(x.transpose(1, 2).reshape(b, t, c * f))), lengths


class FastConformerEncoder(ConformerEncoder):
    """Fast Conformer encoder: `(features (B, T, F), lengths (B,)) -> (encoded (B, T', d), lengths' (B,))`,
    T' = T / 8 (rounded up per stage). Same masking behaviour as `ConformerEncoder`.

    Args:
        cfg: `FastConformerConfig` (`FastConformerConfig.preset("L", attention="limited")` for the
            paper's limited-context Fast-Conformer-L).
    """

    def __init__(self, cfg: FastConformerConfig) -> None:
        front = _DepthwiseStridingSubsampling(
            cfg.input_dim, cfg.d_model, cfg.subsampling_channels, cfg.subsampling_factor, cfg.dropout
        )
        super().__init__(cfg.body(), front_end=front)
        self.fast_cfg = cfg
