"""A 3D convolution whose weight gradient is computed as a 2D convolution over stacked frames.

The lip-reading conv front end starts with a Conv3d of temporal kernel kt (5) and temporal stride 1 on
one-channel video. On CPU, torch's Conv3d forward is fast, but its weight gradient is not: measured
~270 ms of a ~300 ms stem step at the cpu profile's size (batch 8 x ~60 frames of 64 x 64;
`benchmarks/vsr_stem.py`). The same sums are a 2D convolution: output frame t sees input frames
t - pt .. t - pt + kt - 1, so stacking those kt frames as channels (Cin * kt of them) turns the 3D kernel
(Cout, Cin, kt, kh, kw) into a 2D kernel (Cout, Cin * kt, kh, kw) over B * T images, and oneDNN's 2D
weight gradient is several times faster than the 3D one.

`temporal_conv3d(x, weight, stride, padding)` is F.conv3d forward (same values), with that backward for
the weight (same values up to float summation order; `tests/test_temporal_conv.py`) and torch's own 3D
input gradient when the input needs one. Temporal stride and dilation are 1, no bias: what the stem uses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["temporal_conv3d"]


def _stacked_frames(x: torch.Tensor, kt: int, pt: int) -> torch.Tensor:
    """(B, C, T, H, W) -> (B * T_out, C * kt, H, W) in channels-last memory: each output frame's kt input
    frames as channels (channel c * kt + k is input channel c at offset k)."""
    b, c, _, h, w = x.shape
    windows = F.pad(x, (0, 0, 0, 0, pt, pt)).unfold(2, kt, 1)  # (B, C, T_out, H, W, kt)
    t_out = windows.shape[2]
    return windows.permute(0, 2, 3, 4, 1, 5).reshape(b * t_out, h, w, c * kt).permute(0, 3, 1, 2)


def _channels_last_2d(grad: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B * T, C, H, W) in channels-last memory."""
    b, c, t, h, w = grad.shape
    return grad.permute(0, 2, 3, 4, 1).reshape(b * t, h, w, c).permute(0, 3, 1, 2)


class _TemporalConv3d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int],
                padding: tuple[int, int, int]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv3d(x, weight, None, (1, *stride), padding)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        cout, cin, kt, kh, kw = weight.shape
        # under autocast the forward ran in grad's dtype (bf16 on the full profile's GPUs): the backward
        # computes in it too, as torch's own conv3d backward would, and returns each gradient in its input's dtype
        dtype = grad.dtype
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.nn.grad.conv3d_input(x.shape, weight.to(dtype), grad, (1, *ctx.stride),
                                                ctx.padding).to(x.dtype)
        if ctx.needs_input_grad[1]:
            # channels-last operands: oneDNN's 2D weight gradient is ~3x faster on them than on contiguous ones
            frames = _stacked_frames(x.to(dtype), kt, ctx.padding[0])
            grad_w = torch.nn.grad.conv2d_weight(frames, (cout, cin * kt, kh, kw), _channels_last_2d(grad),
                                                 ctx.stride, ctx.padding[1:]).reshape(weight.shape).to(weight.dtype)
        return grad_x, grad_w, None, None


def temporal_conv3d(x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int],
                    padding: tuple[int, int, int]) -> torch.Tensor:
    """F.conv3d(x, weight, None, (1, *stride), padding) with the weight gradient taken as a 2D convolution.

    x (B, Cin, T, H, W), weight (Cout, Cin, kt, kh, kw); stride (sh, sw) spatial only (temporal stride 1);
    padding (pt, ph, pw).
    """
    if x.dim() != 5 or weight.dim() != 5 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"expected x (B, C, T, H, W) and weight (Cout, C, kt, kh, kw), got {tuple(x.shape)}, "
                         f"{tuple(weight.shape)}")
    return _TemporalConv3d.apply(x, weight, tuple(stride), tuple(padding))
