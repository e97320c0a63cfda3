"""Conformer encoder.

Gulati et al., "Conformer: Convolution-augmented Transformer for Speech Recognition", Interspeech 2020,
https://arxiv.org/abs/2005.08100 . Table 1 gives the S/M/L sizes (see `ConformerConfig.preset`).

Layout (paper Fig. 1-4):
    features (B, T, F) -> 4x conv2d subsampling (two 3x3 stride-2 convs + ReLU) -> linear to d -> dropout
    -> N x ConformerBlock:
         x = x + 1/2 FFN(x)          macaron half-step feed-forward (LN, linear 4d, Swish, dropout, linear d)
         x = x + MHSA(x)             relative sinusoidal positional encoding, Transformer-XL style (u, v biases)
         x = x + Conv(x)             LN, pointwise 2d + GLU, depthwise kernel K, BatchNorm, Swish, pointwise
         x = x + 1/2 FFN(x)
         x = LayerNorm(x)

The front end is pluggable (`ConformerConfig.input_layer`):
    "conv2d"  the paper's 4x subsampling of (B, T, F) filterbanks;
    "linear"  a linear projection F -> d, no subsampling (e.g. per-frame visual features);
    "none"    the input is already (B, T, d) (e.g. a visual front end projected outside the encoder);
or pass any module through `ConformerEncoder(cfg, front_end=...)` that maps
`(x (B, T, F), lengths (B,)) -> (x (B, T', d), lengths' (B,))`.

The attention module is shared with the Fast Conformer (`mmrepro.models.fast_conformer`), which swaps the
front end and can swap full attention for limited-context attention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConformerConfig", "ConformerEncoder"]


@dataclass(frozen=True)
class ConformerConfig:
    input_dim: int = 80  # feature size F of the input (80 log-mel bins); d_model when input_layer="none"
    d_model: int = 144  # encoder dimension d
    num_layers: int = 16  # number of Conformer blocks
    num_heads: int = 4  # attention heads (d_model must divide by it)
    ff_mult: int = 4  # feed-forward inner size = ff_mult * d_model
    conv_kernel: int = 32  # depthwise convolution kernel size in the conv module
    dropout: float = 0.1  # P_drop of the paper (each module's output before the residual, FFN inner, front end)
    input_layer: str = "conv2d"  # "conv2d" (4x subsampling) | "linear" | "none"
    subsampling_channels: int = 0  # conv channels of the 4x subsampling; 0 = d_model
    subsampling_padding: int = 0  # 0: valid 3x3 convs (ESPnet/Gulati counts); 1: NeMo "striding" (the
    #                               Conformer-L baseline of the Fast Conformer paper, its 143.2 GMACs)
    attention: str = "rel_pos"  # "rel_pos" (full) | "limited" (sliding window + global token, linear cost)
    att_context: int = 128  # limited-context half-window w (frames after subsampling): keys |i-j| <= w
    global_tokens: int = 1  # limited-context: the first `global_tokens` frames attend / are attended globally

    def __post_init__(self) -> None:
        if self.d_model <= 0 or self.num_layers <= 0 or self.num_heads <= 0 or self.input_dim <= 0:
            raise ValueError(f"sizes must be positive, got {self}")
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by num_heads={self.num_heads}")
        if self.subsampling_padding not in (0, 1):
            raise ValueError(f"subsampling_padding must be 0 or 1, got {self.subsampling_padding}")
        if self.conv_kernel < 1:
            raise ValueError(f"conv_kernel must be >= 1, got {self.conv_kernel}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.input_layer not in ("conv2d", "linear", "none"):
            raise ValueError(f"input_layer must be 'conv2d', 'linear' or 'none', got {self.input_layer!r}")
        if self.input_layer == "none" and self.input_dim != self.d_model:
            raise ValueError("input_layer='none' needs input_dim == d_model")
        if self.attention not in ("rel_pos", "limited"):
            raise ValueError(f"attention must be 'rel_pos' or 'limited', got {self.attention!r}")
        if self.att_context < 1 or self.global_tokens not in (0, 1):
            raise ValueError("att_context must be >= 1 and global_tokens 0 or 1")

    @classmethod
    def preset(cls, size: str, **overrides) -> ConformerConfig:
        """Table 1 of Gulati et al. 2020: S (10.3M), M (30.7M), L (118.8M) with their transducer decoders."""
        table = {
            "S": {"d_model": 144, "num_layers": 16, "num_heads": 4},
            "M": {"d_model": 256, "num_layers": 16, "num_heads": 4},
            "L": {"d_model": 512, "num_layers": 17, "num_heads": 8},
        }
        if size not in table:
            raise ValueError(f"unknown Conformer size {size!r}; expected one of {sorted(table)}")
        return replace(cls(**table[size]), **overrides)


# --------------------------------------------------------------------------------------------- helpers


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) lengths -> (B, T) bool mask, True on valid frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def relative_sinusoid(positions: torch.Tensor, d_model: int) -> torch.Tensor:
    """Sinusoidal embedding of (possibly negative) relative distances: (N,) -> (N, d_model)."""
    half = torch.arange(0, d_model, 2, device=positions.device, dtype=torch.float32)
    inv_freq = torch.exp(-math.log(10000.0) * half / d_model)
    angles = positions.to(torch.float32)[:, None] * inv_freq[None, :]
    pe = torch.zeros(positions.shape[0], d_model, device=positions.device)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles)
    return pe


class Dropout(nn.Dropout):
    """`nn.Dropout` with a cheaper mask on CPU: uniform draws compared with p, the same distribution as
    `torch.bernoulli` (keep with probability 1 - p, scale kept values by 1 / (1 - p)). torch's CPU
    `bernoulli_` was a quarter of a Conformer training step's profile; this mask costs about half as much.
    Other devices use torch's fused dropout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu":
            return super().forward(x)
        return x * torch.rand_like(x).ge_(self.p).mul_(1.0 / (1.0 - self.p))


class _Conv2dSubsampling(nn.Module):
    """4x time subsampling: two 3x3 stride-2 convs with ReLU, then a linear to d.

    (B, T, F) -> (B, T', d) with T' = ((T - 1) // 2 - 1) // 2 for padding 0 (valid convs, the default)
    or T' = ((T - 1) // 2) // 2 + 1 for padding 1 (NeMo's "striding"). Frames past each sequence's
    length are zeroed before each conv, so valid outputs do not depend on the padding.
    """

    def __init__(self, input_dim: int, d_model: int, channels: int, dropout: float, padding: int = 0) -> None:
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(1, channels, 3, stride=2, padding=padding),
                                    nn.Conv2d(channels, channels, 3, stride=2, padding=padding)])
        self.padding = padding
        freq = self._out_len(self._out_len(input_dim))
        if freq < 1:
            raise ValueError(f"input_dim={input_dim} too small for 4x conv subsampling")
        self.out = nn.Linear(channels * freq, d_model)
        self.dropout = Dropout(dropout)

    def _out_len(self, n):
        return (n + 2 * self.padding - 3) // 2 + 1

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.unsqueeze(1)  # (B, 1, T, F)
        for conv in self.convs:
            x = x.masked_fill(~lengths_to_mask(lengths, x.shape[2])[:, None, :, None], 0.0)
            x = torch.relu(conv(x))
            lengths = self._out_len(lengths).clamp(min=0)
        b, c, t, f = x.shape  # (B, C, T', F')
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))
        return self.dropout(x), lengths


class _LinearFrontEnd(nn.Module):
    """No subsampling: linear F -> d and dropout. (B, T, F) -> (B, T, d)."""

    def __init__(self, input_dim: int, d_model: int, dropout: float) -> None:
        super().__init__()
        self.out = nn.Linear(input_dim, d_model)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dropout(self.out(x)), lengths


class _Identity(nn.Module):
    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, lengths


class _FeedForward(nn.Module):
    """LN, linear d->m*d, Swish, dropout, linear m*d->d, dropout. (B, T, d) -> (B, T, d)."""

    def __init__(self, d: int, mult: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(d), nn.Linear(d, mult * d), nn.SiLU(), Dropout(dropout), nn.Linear(mult * d, d),
            Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _ConvModule(nn.Module):
    """LN, pointwise d->2d, GLU, depthwise kernel K, BatchNorm, Swish, pointwise d->d, dropout.

    Padded frames are zeroed before the depthwise conv so valid outputs do not depend on padding.
    An even kernel (the paper's 32) is padded (K-1)//2 on the left and K//2 on the right.
    The pointwise convolutions keep their Conv1d parameters (and checkpoints) but run as linear layers on
    (B, T, d): the same product, without the 1x1 convolution's slow im2col path on CPU.
    """

    def __init__(self, d: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.pointwise1 = nn.Conv1d(d, 2 * d, 1)
        self.depthwise = nn.Conv1d(d, d, kernel, groups=d)
        self.pad = ((kernel - 1) // 2, kernel // 2)
        self.batch_norm = nn.BatchNorm1d(d)
        self.pointwise2 = nn.Conv1d(d, d, 1)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = F.linear(self.norm(x), self.pointwise1.weight[..., 0], self.pointwise1.bias)  # (B, T, 2d)
        x = F.glu(x, dim=-1).masked_fill(~mask[..., None], 0.0).transpose(1, 2)  # (B, d, T)
        x = F.silu(self.batch_norm(self.depthwise(F.pad(x, self.pad)))).transpose(1, 2)  # (B, T, d)
        return self.dropout(F.linear(x, self.pointwise2.weight[..., 0], self.pointwise2.bias))


def _shifted(scores: torch.Tensor, rows: int, cols: int, first: int) -> torch.Tensor:
    """A zero-copy view picking, in row a of `scores` (..., rows, R), the columns first - a .. first - a + cols - 1.

    With the columns of `scores` ordered by decreasing distance, that is the Transformer-XL "rel shift":
    entry [a, m] of the view is the score at column first - a + m. `scores` must be contiguous.
    """
    r = scores.shape[-1]
    size = (*scores.shape[:-2], rows, cols)
    stride = (*scores.stride()[:-2], r - 1, 1)
    return scores.as_strided(size, stride, scores.storage_offset() + first)


class RelPosMultiHeadAttention(nn.Module):
    """Multi-head self-attention with Transformer-XL relative positional encoding (Dai et al. 2019).

    score(i, j) = (q_i + u) . k_j + (q_i + v) . W_p p(i - j), p = sinusoid of the distance i - j,
    scaled by 1/sqrt(d_head). Full attention costs O(T^2); `limited=True` keeps a sliding window
    |i - j| <= w plus `global_tokens` global frame(s), computed chunk by chunk in O(T w) time and memory
    when T is long enough for chunks to pay off (see `_limited`).
    Gulati et al. apply dropout to each module's output before the residual (the block's `att_dropout`),
    not to the attention probabilities, so there is none here.
    """

    def __init__(self, d: int, heads: int, limited: bool = False, context: int = 128, global_tokens: int = 1) -> None:
        super().__init__()
        self.h, self.dk = heads, d // heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.pos = nn.Linear(d, d, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(heads, self.dk))
        self.pos_bias_v = nn.Parameter(torch.zeros(heads, self.dk))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)
        self.limited, self.w, self.g = limited, context, global_tokens
        self.chunk = max(1, context // 4)  # queries per chunk of the limited path (see `_limited`)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, d) -> (B, H, T, dk)
        b, t, _ = x.shape
        return x.view(b, t, self.h, self.dk).transpose(1, 2)

    def _pos(self, distances: torch.Tensor, d: int) -> torch.Tensor:  # (N,) -> (H, N, dk)
        p = self.pos(relative_sinusoid(distances, d))
        return p.view(-1, self.h, self.dk).transpose(0, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, d), mask (B, T) True = valid -> (B, T, d)."""
        b, t, d = x.shape
        q, k, v = self._heads(self.q(x)), self._heads(self.k(x)), self._heads(self.v(x))
        qu = (q + self.pos_bias_u[None, :, None]) / math.sqrt(self.dk)
        qv = (q + self.pos_bias_v[None, :, None]) / math.sqrt(self.dk)
        if self.limited and t > 4 * self.w:
            out = self._limited(qu, qv, k, v, mask, d)
        else:  # up to 4w frames, full attention restricted to the window was measured faster than chunks
            out = self._full(qu, qv, k, v, mask, self.w if self.limited else None, d)
        return self.o(out.transpose(1, 2).reshape(b, t, d))

    def _full(self, qu, qv, k, v, mask, window, d):
        """Attention of every query over the valid keys (mask (B, T)). O(T^2).

        With `window` w (limited context on a short input) only keys |i - j| <= w count, plus frame 0 as
        a global token when `self.g`: the position term is then computed for the 2w + 1 distances in the
        window only, and the distances outside it get the most negative float (weight 0).
        """
        b, h, t, dk = qu.shape
        dev = qu.device
        reach = t - 1 if window is None else min(window, t - 1)  # largest |i - j| scored
        glob = reach < t - 1 and self.g  # the global frame 0 needs the position term at every distance
        if glob:  # one projection of distances T-1 .. -(T-1); the window's rows are a slice of it
            pg = self._pos(torch.arange(t - 1, -t, -1, device=dev), d)
            p = pg[:, t - 1 - reach : t + reach]  # distances reach .. -reach
        else:
            p = self._pos(torch.arange(reach, -reach - 1, -1, device=dev), d)  # distances reach .. -reach
        # (q_i + v) . p, heads first so that p is shared without a copy: (H, B*T, dk) @ (H, dk, 2 reach + 1)
        bd = qv.transpose(0, 1).reshape(h, b * t, dk) @ p.transpose(1, 2)
        if reach < t - 1:
            bd = F.pad(bd, (t - 1 - reach, t - 1 - reach), value=torch.finfo(bd.dtype).min)
        # distances T-1 .. -(T-1) per row; the rel shift is then a view, [b, h, i, j] at distance i - j
        scores = qu @ k.transpose(-1, -2)  # (B, H, T, T)
        scores += _shifted(bd.view(h, b, t, 2 * t - 1), t, t, t - 1).transpose(0, 1)
        if glob:  # global frame 0: its column and its row at every distance
            scores[..., 0] = (qu * k[:, :, :1]).sum(-1) + (qv * pg[:, :t].flip(1)).sum(-1)  # distance i - 0
            row = qu[:, :, :1] @ k.transpose(-1, -2) + qv[:, :, :1] @ pg[:, t - 1 :].transpose(-1, -2)  # 0 - j
            scores[:, :, 0] = row[:, :, 0]
        # Nothing to mask when no key is padding (checked on CPU only: on a GPU it would cost a sync per layer).
        # The most negative float, not -inf: a row without keys (a length-0 sequence) gets no NaN.
        # The fill is the scores' own dtype's minimum: under bf16 autocast they are bf16 while qu is fp32.
        if qu.device.type != "cpu" or not bool(mask.all()):
            scores.masked_fill_(~mask[:, None, None, :], torch.finfo(scores.dtype).min)
        return torch.softmax(scores, dim=-1) @ v

    def _limited(self, qu, qv, k, v, mask, d):
        """Sliding-window attention |i - j| <= w plus one global token (frame 0), in chunks of c queries.

        A chunk of c queries starting at s scores the 2w + c keys s - w .. s + c - 1 + w (plus key 0 when
        there is a global token) and 2w + 2c - 1 relative distances, so a query costs 4w + 3c products
        instead of the 3T of full attention: time and memory O(B H T w dk). c = w / 4 keeps the keys
        scored close to the 2w + 1 a query needs without many tiny chunks.
        """
        b, h, t, dk = qu.shape
        w, c, dev = self.w, self.chunk, qu.device
        n = -(-t // c)  # chunks
        tp, span = n * c, 2 * w + c

        def chunks(z):  # keys/values (B, H, T, dk) -> (B, H, n, span (+1 global), dk)
            zc = F.pad(z, (0, 0, w, tp - t + w)).unfold(2, span, c).transpose(-1, -2)
            if self.g:
                zc = torch.cat([z[:, :, None, :1].expand(b, h, n, 1, dk), zc], dim=3)
            return zc

        quc = F.pad(qu, (0, 0, 0, tp - t)).view(b, h, n, c, dk)
        qvc = F.pad(qv, (0, 0, 0, tp - t))
        scores = quc @ chunks(k).transpose(-1, -2)  # (B, H, n, c, g + span)
        # distances a + w - m (query offset a, key offset m) from w + c - 1 down to -(w + c - 1)
        p = self._pos(torch.arange(w + c - 1, -(w + c), -1, device=dev), d)  # (H, 2w + 2c - 1, dk)
        bd = (qvc.transpose(0, 1).reshape(h, b * tp, dk) @ p.transpose(1, 2)).view(h, b, n, c, 2 * w + 2 * c - 1)
        scores[..., self.g:] += _shifted(bd, c, span, c - 1).transpose(0, 1)
        a = torch.arange(c, device=dev)[:, None]
        m = torch.arange(span, device=dev)[None, :]
        key_pos = (torch.arange(n, device=dev) * c - w)[:, None, None] + m  # (n, 1, span) absolute key position
        valid = F.pad(mask, (w, tp - t + w), value=False).unfold(1, span, c)  # (B, n, span): real, unpadded keys
        keep = ((a + w - m).abs() <= w)[None, None] & valid[:, :, None, :]  # (B, n, c, span)
        if self.g:
            # global key 0: (q_i + u) . k_0 is in column 0 already; add (q_i + v) . W_p p(i - 0)
            pg = self._pos(torch.arange(tp, device=dev), d)  # (H, Tp, dk)
            scores[..., 0] += (qvc * pg[None]).sum(-1).view(b, h, n, c)
            keep = torch.cat([mask[:, :1, None, None].expand(b, n, c, 1), keep & (key_pos != 0)], dim=-1)
        scores.masked_fill_(~keep[:, None], torch.finfo(scores.dtype).min)
        out = (torch.softmax(scores, dim=-1) @ chunks(v)).reshape(b, h, tp, dk)[:, :, :t]
        if self.g:
            # global query 0 attends to every key: O(T)
            pr = self._pos(-torch.arange(t, device=dev), d)  # distance 0 - j
            s0 = qu[:, :, :1] @ k.transpose(-1, -2) + (qv[:, :, :1] @ pr.transpose(-1, -2)[None])  # (B, H, 1, T)
            s0 = s0.masked_fill(~mask[:, None, None, :], torch.finfo(s0.dtype).min)
            out = torch.cat([torch.softmax(s0, dim=-1) @ v, out[:, :, 1:]], dim=2)
        return out


class _ConformerBlock(nn.Module):
    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.ff1 = _FeedForward(d, cfg.ff_mult, cfg.dropout)
        self.att_norm = nn.LayerNorm(d)
        self.att = RelPosMultiHeadAttention(d, cfg.num_heads, cfg.attention == "limited", cfg.att_context,
                                            cfg.global_tokens)
        self.att_dropout = Dropout(cfg.dropout)
        self.conv = _ConvModule(d, cfg.conv_kernel, cfg.dropout)
        self.ff2 = _FeedForward(d, cfg.ff_mult, cfg.dropout)
        self.norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)
        x = x + self.att_dropout(self.att(self.att_norm(x), mask))
        x = x + self.conv(x, mask)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x)


class ConformerEncoder(nn.Module):
    """Conformer encoder: `(features (B, T, F), lengths (B,)) -> (encoded (B, T', d), lengths' (B,))`.

    Frames at or beyond a sequence's length are padding: they are masked out of attention and zeroed
    before every depthwise convolution, so each valid output is independent of the padding (in eval
    mode; in train mode BatchNorm batch statistics see the padded frames, as in the reference
    implementations). Padded output frames are set to 0.

    Args:
        cfg: sizes and options, see `ConformerConfig` (`ConformerConfig.preset("S")` for the paper's S).
        front_end: optional module replacing the configured input layer; it maps
            `(x (B, T, F), lengths (B,)) -> (x (B, T', d), lengths' (B,))`.
    """

    def __init__(self, cfg: ConformerConfig, front_end: nn.Module | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        if front_end is not None:
            self.front_end = front_end
        elif cfg.input_layer == "conv2d":
            ch = cfg.subsampling_channels or cfg.d_model
            self.front_end = _Conv2dSubsampling(cfg.input_dim, cfg.d_model, ch, cfg.dropout,
                                                cfg.subsampling_padding)
        elif cfg.input_layer == "linear":
            self.front_end = _LinearFrontEnd(cfg.input_dim, cfg.d_model, cfg.dropout)
        else:
            self.front_end = _Identity()
        self.layers = nn.ModuleList(_ConformerBlock(cfg) for _ in range(cfg.num_layers))

    @property
    def output_dim(self) -> int:
        return self.cfg.d_model

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 3:
            raise ValueError(f"expected features (B, T, F), got shape {tuple(x.shape)}")
        if lengths.shape != (x.shape[0],):
            raise ValueError(f"lengths must have shape ({x.shape[0]},), got {tuple(lengths.shape)}")
        x, lengths = self.front_end(x, lengths)
        mask = lengths_to_mask(lengths, x.shape[1])
        for layer in self.layers:
            x = layer(x, mask)
        return x.masked_fill(~mask[..., None], 0.0), lengths
