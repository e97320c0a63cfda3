"""VQ-VAE: a convolutional autoencoder with a discrete, vector-quantised bottleneck.

Paper: A. van den Oord, O. Vinyals, K. Kavukcuoglu, "Neural Discrete Representation Learning",
NeurIPS 2017 (arXiv 1711.00937).

What follows the paper (section 3 and 4.1):
- encoder: strided 4x4 convolutions (stride 2) followed by residual blocks
  (ReLU, 3x3 conv, ReLU, 1x1 conv); decoder mirrors it with 4x4 transposed convolutions;
- a codebook of K vectors of dimension D; each encoder output vector is replaced by its nearest
  codebook vector; gradients pass "straight through" the quantiser (dz_q -> dz_e);
- loss = reconstruction + ||sg[z_e] - e||^2 + beta * ||z_e - sg[e]||^2 with beta = 0.25;
- the EMA codebook update of the paper's appendix A.1 as an option (then the codebook term is
  dropped and the codebook follows exponential moving averages of the assigned encoder outputs).

The paper's CIFAR-10 model: two stride-2 convolutions (32x32 -> 8x8), 256 hidden units, two residual
blocks, K = 512. `VQVAEConfig()` defaults are that model except `hidden=128` (see `paper_cifar10`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VQVAE", "VQVAEConfig"]


@dataclass(frozen=True)
class VQVAEConfig:
    in_channels: int = 3  # image channels
    hidden: int = 128  # channels of the conv stack (paper: 256)
    res_hidden: int = 32  # bottleneck channels inside a residual block
    n_res_blocks: int = 2  # residual blocks in encoder and in decoder (paper: 2)
    n_downsample: int = 2  # stride-2 convs; latent grid = image side / 2**n_downsample (paper: 2)
    codebook_size: int = 512  # K (paper: 512)
    code_dim: int = 64  # D, dimension of a codebook vector
    beta: float = 0.25  # commitment cost (paper: 0.25)
    ema: bool = False  # EMA codebook updates (paper appendix A.1) instead of the codebook loss
    ema_decay: float = 0.99  # gamma of the EMA update
    ema_eps: float = 1e-5  # Laplace smoothing of the EMA cluster sizes
    data_init: bool = True  # first training batch: codebook := random encoder outputs (not in the paper)
    restart_below: float = 0.0  # EMA only: re-seed codes whose EMA cluster size falls below this (0 = off)

    def __post_init__(self) -> None:
        for name in ("in_channels", "hidden", "res_hidden", "codebook_size", "code_dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.n_res_blocks < 0 or self.n_downsample < 1:
            raise ValueError("n_res_blocks must be >= 0 and n_downsample >= 1")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")

    @staticmethod
    def paper_cifar10() -> VQVAEConfig:
        """The CIFAR-10 model of section 4.1: 256 hidden units, K = 512, 32x32 -> 8x8 latents."""
        return VQVAEConfig(hidden=256, codebook_size=512, n_downsample=2)


class _ResBlock(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReLU(), nn.Conv2d(channels, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class _Quantizer(nn.Module):
    """Nearest-neighbour vector quantiser with straight-through gradients (and optional EMA)."""

    def __init__(self, cfg: VQVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        k, d = cfg.codebook_size, cfg.code_dim
        self.codebook = nn.Parameter(torch.empty(k, d).uniform_(-1.0 / k, 1.0 / k), requires_grad=not cfg.ema)
        self.register_buffer("initialised", torch.tensor(not cfg.data_init))
        if cfg.ema:
            # each code starts as if one vector equal to its initial value had been assigned to it,
            # so unused codes keep their value instead of ema_sum / eps blowing up
            self.register_buffer("ema_size", torch.ones(k))
            self.register_buffer("ema_sum", self.codebook.detach().clone())

    @torch.no_grad()
    def _seed_codes(self, flat: torch.Tensor, which: torch.Tensor) -> None:
        """Set the codes selected by the bool mask `which` to randomly drawn rows of flat (N, D)."""
        n = int(which.sum())
        pick = flat[torch.randint(0, flat.shape[0], (n,), device=flat.device)]
        self.codebook.data[which] = pick
        if self.cfg.ema:
            self.ema_sum[which] = pick
            self.ema_size[which] = 1.0

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N,) index of the nearest codebook vector, computed in fp32 (see `forward`)."""
        with torch.autocast(z.device.type, enabled=False):
            z, e = z.float(), self.codebook
            dist = z.pow(2).sum(1, keepdim=True) - 2 * z @ e.t() + e.pow(2).sum(1)[None]
            return dist.argmin(1)

    def forward(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """z_e (B, D, H, W) -> z_q (B, D, H, W) straight-through, indices (B, H, W), codebook loss,
        commitment loss (both scalars; the codebook loss is 0 with EMA).

        In fp32 under autocast (the full profile's bf16 on CUDA): bf16's 8-bit mantissa would pick codes by rounded
        distances and round the EMA sums, and the fp32 codebook takes rows of z_e when codes are (re)seeded."""
        with torch.autocast(z_e.device.type, enabled=False):
            return self._quantize(z_e.float())

    def _quantize(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        b, d, h, w = z_e.shape
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, d)
        if self.training and not bool(self.initialised):
            self._seed_codes(flat.detach(), torch.ones(self.cfg.codebook_size, dtype=torch.bool, device=flat.device))
            self.initialised.fill_(True)
        idx = self.indices(flat.detach())
        if self.cfg.ema and self.training:
            with torch.no_grad():
                onehot = F.one_hot(idx, self.cfg.codebook_size).type_as(flat)
                g = self.cfg.ema_decay
                self.ema_size.mul_(g).add_(onehot.sum(0), alpha=1 - g)
                self.ema_sum.mul_(g).add_(onehot.t() @ flat, alpha=1 - g)
                n = self.ema_size.sum()
                size = (self.ema_size + self.cfg.ema_eps) / (n + self.cfg.codebook_size * self.cfg.ema_eps) * n
                self.codebook.data.copy_(self.ema_sum / size[:, None])
                if self.cfg.restart_below > 0:
                    dead = self.ema_size < self.cfg.restart_below
                    if dead.any():
                        self._seed_codes(flat.detach(), dead)
        q = self.codebook[idx]
        codebook_loss = F.mse_loss(q, flat.detach()) if not self.cfg.ema else flat.new_zeros(())
        commit_loss = F.mse_loss(flat, q.detach())
        q = flat + (q - flat).detach()  # straight-through estimator
        z_q = q.view(b, h, w, d).permute(0, 3, 1, 2).contiguous()
        return z_q, idx.view(b, h, w), codebook_loss, commit_loss


class VQVAE(nn.Module):
    """Vector-quantised VAE.

    forward(x): x (B, C, H, W) in [0, 1], H and W divisible by 2**n_downsample ->
        dict(recon (B, C, H, W), indices (B, H', W') long, loss, recon_loss, codebook_loss, commit_loss)
    encode(x) -> indices (B, H', W');  decode(indices) -> images (B, C, H, W).
    Images are centred (x - 0.5) inside the model; reconstructions come back in [0, 1] scale
    (not clamped, so that the Gaussian decoder likelihood is computed on the raw mean).
    """

    def __init__(self, cfg: VQVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, h = cfg.in_channels, cfg.hidden
        enc: list[nn.Module] = []
        ch = c
        for i in range(cfg.n_downsample):
            enc += [nn.Conv2d(ch, h, 4, stride=2, padding=1)]
            if i < cfg.n_downsample - 1:
                enc += [nn.ReLU()]
            ch = h
        enc += [nn.Conv2d(h, h, 3, padding=1)]
        enc += [_ResBlock(h, cfg.res_hidden) for _ in range(cfg.n_res_blocks)]
        enc += [nn.ReLU(), nn.Conv2d(h, cfg.code_dim, 1)]
        self.encoder = nn.Sequential(*enc)
        self.quantizer = _Quantizer(cfg)
        dec: list[nn.Module] = [nn.Conv2d(cfg.code_dim, h, 3, padding=1)]
        dec += [_ResBlock(h, cfg.res_hidden) for _ in range(cfg.n_res_blocks)]
        dec += [nn.ReLU()]
        for i in range(cfg.n_downsample):
            last = i == cfg.n_downsample - 1
            dec += [nn.ConvTranspose2d(h, c if last else h, 4, stride=2, padding=1)]
            if not last:
                dec += [nn.ReLU()]
        self.decoder = nn.Sequential(*dec)

    @property
    def downsample(self) -> int:
        return 2**self.cfg.n_downsample

    def latent_shape(self, height: int, width: int) -> tuple[int, int]:
        if height % self.downsample or width % self.downsample:
            raise ValueError(f"image size {height}x{width} not divisible by {self.downsample}")
        return height // self.downsample, width // self.downsample

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.cfg.in_channels:
            raise ValueError(f"expected (B, {self.cfg.in_channels}, H, W), got {tuple(x.shape)}")
        self.latent_shape(x.shape[2], x.shape[3])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self._check(x)
        z_e = self.encoder(x - 0.5)
        z_q, idx, cb_loss, commit_loss = self.quantizer(z_e)
        recon = self.decoder(z_q) + 0.5
        recon_loss = F.mse_loss(recon, x)
        loss = recon_loss + cb_loss + self.cfg.beta * commit_loss
        return {
            "recon": recon,
            "indices": idx,
            "loss": loss,
            "recon_loss": recon_loss,
            "codebook_loss": cb_loss,
            "commit_loss": commit_loss,
        }

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> code indices (B, H', W')."""
        self._check(x)
        z_e = self.encoder(x - 0.5)
        b, d, h, w = z_e.shape
        return self.quantizer.indices(z_e.permute(0, 2, 3, 1).reshape(-1, d)).view(b, h, w)

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices (B, H', W') -> images (B, C, H, W) in [0, 1] scale (unclamped)."""
        if indices.dim() != 3:
            raise ValueError(f"expected indices (B, H', W'), got {tuple(indices.shape)}")
        z_q = self.quantizer.codebook[indices].permute(0, 3, 1, 2)
        return self.decoder(z_q) + 0.5

    def bits_per_latent(self) -> float:
        """log2 K: the latent term of the bound per latent under a uniform prior over K codes."""
        return math.log2(self.cfg.codebook_size)
