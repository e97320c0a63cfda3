"""Reconstruction metrics: bits/dim of the VQ-VAE bound against a hand computation, PSNR, perplexity."""

import math

import pytest
import torch

from mmrepro.metrics.reconstruction import (
    bits_per_dim,
    codebook_perplexity,
    discretized_gaussian_nll,
    fit_sigma,
    mse,
    psnr,
)


def test_bits_per_dim_matches_hand_computation():
    # one 1x1x2 image: pixel levels 0 and 128; decoder means 0.0 and 0.5; sigma 0.1; 1 latent, K = 4
    x = torch.tensor([0.0, 128 / 255]).view(1, 1, 1, 2)
    mu = torch.tensor([0.0, 0.5]).view(1, 1, 1, 2)
    # P(0)   = Phi((0.5/255 - 0) / 0.1)                             (open lower bin)
    # P(128) = Phi((128.5/255 - 0.5)/0.1) - Phi((127.5/255 - 0.5)/0.1)
    p0, p128 = 0.5078218964408742, 0.01564078629101573
    nll = discretized_gaussian_nll(x, mu, 0.1).flatten()
    assert nll[0].item() == pytest.approx(-math.log(p0), rel=1e-9)
    assert nll[1].item() == pytest.approx(-math.log(p128), rel=1e-9)
    expected = (-math.log(p0) - math.log(p128) + 1 * math.log(4)) / (2 * math.log(2))
    assert expected == pytest.approx(4.488074320157724, rel=1e-12)
    assert bits_per_dim(x, mu, 0.1, n_latents_per_image=1, codebook_size=4) == pytest.approx(expected, rel=1e-9)


def test_discretized_gaussian_is_a_distribution_over_256_levels():
    levels = torch.arange(256, dtype=torch.float64) / 255
    for mean in (-0.2, 0.0, 0.37, 1.0, 1.3):
        mu = torch.full_like(levels, mean)
        for sigma in (0.002, 0.05, 0.5):
            total = torch.exp(-discretized_gaussian_nll(levels, mu, sigma)).sum().item()
            assert total == pytest.approx(1.0, abs=1e-9)


def test_bits_per_dim_latent_term_only_when_decoder_is_sharp():
    # a perfect reconstruction with tiny sigma costs ~0 nats, leaving L log2 K / N bits per dim
    x = torch.randint(0, 256, (3, 3, 8, 8)).double() / 255
    got = bits_per_dim(x, x.clone(), 1e-4, n_latents_per_image=4, codebook_size=512)
    assert got == pytest.approx(4 * 9 / (3 * 8 * 8), abs=1e-6)


def test_psnr_and_mse_hand_values():
    x = torch.zeros(2, 1, 2, 2)
    y = torch.zeros(2, 1, 2, 2)
    y[0] += 0.1  # image 0: MSE 0.01 -> 20 dB
    y[1, 0, 0, 0] = 0.1  # image 1: MSE 0.0025 -> 26.0206 dB
    assert mse(x, y) == pytest.approx((0.01 * 4 + 0.01) / 8)
    assert psnr(x, y) == pytest.approx((20.0 + 10 * math.log10(400)) / 2, rel=1e-6)
    assert fit_sigma(x, y) == pytest.approx(math.sqrt((0.01 * 4 + 0.01) / 8))
    with pytest.raises(ValueError):
        psnr(x, y[:1])


def test_codebook_perplexity():
    assert codebook_perplexity(torch.tensor([3, 3, 3]), 8) == pytest.approx(1.0)
    assert codebook_perplexity(torch.arange(8).repeat(5), 8) == pytest.approx(8.0)
    # p = (1/2, 1/4, 1/4): H = 1.5 ln 2 -> 2^1.5
    assert codebook_perplexity(torch.tensor([0, 0, 1, 2]), 4) == pytest.approx(2**1.5)
