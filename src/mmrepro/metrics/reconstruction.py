"""Reconstruction metrics for discrete autoencoders: MSE, PSNR, bits/dim, codebook perplexity.

Bits/dim as in van den Oord et al. 2017 (VQ-VAE, section 3.2 and 4.1). The VQ-VAE bound on the
log-likelihood of an image x with a uniform prior p(z) = 1/K over each of the L latents is

    log p(x) >= log p(x | z_q(x)) - KL(q(z|x) || p(z)),   KL = L * ln K   (q is one-hot)

so the negative log-likelihood bound in bits per dimension, for an image of N = C*H*W sub-pixels, is

    bits/dim = ( -ln p(x | z_q(x)) + L * ln K ) / ( N * ln 2 ).

The decoder likelihood p(x | z_q) is a *discretised* Gaussian over the 256 pixel levels with mean
the reconstruction mu (in [0, 1] scale) and one global standard deviation sigma:

    P(v | mu) = Phi((v + 0.5)/255 - mu) / sigma) - Phi(((v - 0.5)/255 - mu) / sigma),  v in 0..255,

with the two end bins open (v = 0 takes everything below 0.5/255, v = 255 everything above 254.5/255),
so the probabilities of the 256 levels sum to one and bits/dim is a true discrete code length.
sigma is not learned by the decoder; `fit_sigma` sets it to its maximum-likelihood value under the
continuous Gaussian, sqrt(MSE), measured on training images (never on the test split).
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "bits_per_dim",
    "codebook_perplexity",
    "discretized_gaussian_nll",
    "fit_sigma",
    "mse",
    "psnr",
]

_LEVELS = 255.0


def mse(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean squared error over every element."""
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch {tuple(x.shape)} vs {tuple(y.shape)}")
    return float((x.double() - y.double()).pow(2).mean())


def psnr(x: torch.Tensor, y: torch.Tensor, max_val: float = 1.0) -> float:
    """Mean over images of 10 log10(max_val^2 / MSE_image); x, y (B, ...) in the same scale."""
    if x.shape != y.shape or x.dim() < 2:
        raise ValueError(f"expected equal (B, ...) shapes, got {tuple(x.shape)} vs {tuple(y.shape)}")
    per = (x.double() - y.double()).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return float((10 * torch.log10(max_val**2 / per)).mean())


def _log_std_normal_cdf(z: torch.Tensor) -> torch.Tensor:
    return torch.special.log_ndtr(z)


def discretized_gaussian_nll(x: torch.Tensor, mu: torch.Tensor, sigma: float) -> torch.Tensor:
    """Per-element -ln P(x | mu) in nats under the discretised Gaussian described in the module doc.

    x: images in [0, 1] on the 1/255 grid; mu: decoder means, same shape; sigma > 0 (in [0, 1] scale).
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if x.shape != mu.shape:
        raise ValueError(f"shape mismatch {tuple(x.shape)} vs {tuple(mu.shape)}")
    x, mu = x.double(), mu.double()
    v = torch.round(x * _LEVELS)
    upper = ((v + 0.5) / _LEVELS - mu) / sigma
    lower = ((v - 0.5) / _LEVELS - mu) / sigma
    log_cdf_up = _log_std_normal_cdf(upper)  # ln Phi(upper)
    log_sf_low = _log_std_normal_cdf(-lower)  # ln (1 - Phi(lower))
    # middle bins: ln(Phi(up) - Phi(low)) computed stably from whichever tail is smaller
    mid = torch.where(
        lower > 0,
        log_sf_low + torch.log1p(-torch.exp(_log_std_normal_cdf(-upper) - log_sf_low).clamp(max=1 - 1e-12)),
        log_cdf_up + torch.log1p(-torch.exp(_log_std_normal_cdf(lower) - log_cdf_up).clamp(max=1 - 1e-12)),
    )
    logp = torch.where(v <= 0, log_cdf_up, torch.where(v >= _LEVELS, log_sf_low, mid))
    return -logp


def bits_per_dim(
    x: torch.Tensor, mu: torch.Tensor, sigma: float, n_latents_per_image: int, codebook_size: int
) -> float:
    """The VQ-VAE bound in bits/dim averaged over the images of x (B, C, H, W):
    ( sum of -ln P(x|mu) + L ln K ) / (N ln 2), N = C*H*W, L latents per image, K codes."""
    if n_latents_per_image <= 0 or codebook_size <= 1:
        raise ValueError("need n_latents_per_image > 0 and codebook_size > 1")
    nll = discretized_gaussian_nll(x, mu, sigma).flatten(1).sum(1)  # (B,) nats
    n_dims = x[0].numel()
    per_image = (nll + n_latents_per_image * math.log(codebook_size)) / (n_dims * math.log(2))
    return float(per_image.mean())


def fit_sigma(x: torch.Tensor, mu: torch.Tensor, floor: float = 1e-3) -> float:
    """Maximum-likelihood global sigma of a Gaussian decoder: sqrt(MSE), floored."""
    return max(math.sqrt(mse(x, mu)), floor)


def codebook_perplexity(indices: torch.Tensor, codebook_size: int) -> float:
    """exp(entropy) of the empirical code-usage distribution: 1 = one code used, K = uniform use."""
    counts = torch.bincount(indices.flatten().long(), minlength=codebook_size).double()
    p = counts / counts.sum()
    nz = p[p > 0]
    return float(torch.exp(-(nz * nz.log()).sum()))
