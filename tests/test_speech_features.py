"""Log-mel filterbank, SpecAugment and resampler against independent references."""

import math

import numpy as np
import pytest
import torch

from mmrepro.data.audio_features import (
    FbankConfig,
    SpecAugmentConfig,
    log_mel,
    mel_matrix,
    num_frames,
    resample,
    spec_augment,
    vtlp,
)



def _htk_reference(n_fft=512, n_mels=80, sr=16000):
    """Loop-by-loop HTK filterbank, written independently of the vectorised one."""
    def mel(f):
        return 2595.0 * math.log10(1.0 + f / 700.0)

    def inv(m):
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    top = mel(sr / 2)
    edges = [inv(top * k / (n_mels + 1)) for k in range(n_mels + 2)]
    out = np.zeros((n_fft // 2 + 1, n_mels))
    for b in range(n_fft // 2 + 1):
        f = b * sr / n_fft
        for m in range(n_mels):
            lo, c, hi = edges[m], edges[m + 1], edges[m + 2]
            if lo < f <= c:
                out[b, m] = (f - lo) / (c - lo)
            elif c < f < hi:
                out[b, m] = (hi - f) / (hi - c)
    return out


def test_mel_matrix_matches_loop_reference():
    ref = _htk_reference()
    got = mel_matrix(512, 80, 16000).numpy()
    assert got.shape == (257, 80)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    # HTK anchor: 1000 Hz is 1000 mel (to 0.1 %)
    assert abs(2595 * math.log10(1 + 1000 / 700) - 1000.0) < 1.0


def test_frame_geometry_25ms_10ms():
    cfg = FbankConfig()
    assert (cfg.win_length, cfg.hop_length, cfg.n_mels) == (400, 160, 80)
    feats = log_mel(torch.randn(16000))
    assert feats.shape == (101, 80) and num_frames(16000) == 101
    batch = log_mel(torch.randn(3, 8000))
    assert batch.shape == (3, 51, 80)


def test_sine_energy_lands_in_its_mel_channel():
    sr, f0 = 16000, 1000.0
    t = torch.arange(sr) / sr
    feats = log_mel(torch.sin(2 * math.pi * f0 * t), FbankConfig(normalize=False))
    peak_channel = int(feats.mean(0).argmax())
    centres = np.asarray([2595 * math.log10(1 + 8000 / 700) * (k + 1) / 81 for k in range(80)])
    expected = int(np.argmin(np.abs(centres - 1000.0)))  # 1000 Hz = 1000 mel
    assert abs(peak_channel - expected) <= 1


def test_normalised_features_are_zero_mean_unit_std():
    feats = log_mel(torch.randn(24000) * 0.1)
    assert feats.mean(0).abs().max() < 1e-4
    assert (feats.std(0) - 1).abs().max() < 1e-3


def test_spec_augment_masks_within_paper_limits():
    g = torch.Generator().manual_seed(0)
    x = torch.ones(4, 400, 80)
    lengths = torch.tensor([400, 300, 200, 100])
    y = spec_augment(x, lengths, SpecAugmentConfig(), generator=g)
    for i in range(4):
        zero_cols = int((y[i, : lengths[i]].sum(0) == 0).sum())  # fully masked channels
        assert zero_cols <= 2 * 27
        zero_rows = int((y[i, : lengths[i]].sum(1) == 0).sum())
        assert zero_rows <= 10 * math.floor(0.05 * int(lengths[i]))
    assert not torch.equal(y, x) and torch.equal(x, torch.ones(4, 400, 80))  # input untouched
    none = spec_augment(x, cfg=SpecAugmentConfig(freq_masks=0, time_masks=0))
    assert torch.equal(none, x)
    with pytest.raises(ValueError):
        spec_augment(torch.ones(10, 80))


@pytest.mark.parametrize("orig", [8000, 22050])
def test_resample_preserves_a_sine(orig):
    f = 440.0
    x = np.sin(2 * np.pi * f * np.arange(orig) / orig)
    y = resample(x, orig, 16000).numpy()
    assert len(y) == 16000
    ref = np.sin(2 * np.pi * f * np.arange(16000) / 16000)
    assert np.abs(y[200:-200] - ref[200:-200]).max() < 2e-3
    with pytest.raises(ValueError):
        resample(x, 0, 16000)


def _tone(hz: float, seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(16000 * seconds)) / 16000
    return torch.sin(2 * math.pi * hz * t)


def test_vtlp_identity_and_warp_moves_a_tone_like_a_higher_voice():
    cfg = FbankConfig(normalize=False)
    feats = torch.stack([log_mel(_tone(1000.0), cfg), log_mel(_tone(1000.0), cfg)])
    warped = vtlp(feats, torch.tensor([1.0, 1.2]), cfg)
    assert torch.allclose(warped[0], feats[0], atol=1e-3)  # alpha = 1 leaves the features alone
    # alpha = 1.2 puts the 1 kHz tone's energy where a 1.2 kHz tone's is, not where the 1 kHz one was
    peak = lambda f: int(f.mean(0).argmax())  # noqa: E731
    assert peak(warped[1]) == peak(log_mel(_tone(1200.0), cfg)) != peak(feats[0])
    # below the 4.8 kHz boundary the warp is f -> alpha f: a 0.9 warp brings 2 kHz to 1.8 kHz
    low = vtlp(log_mel(_tone(2000.0), cfg)[None], torch.tensor([0.9]), cfg)[0]
    assert peak(low) == peak(log_mel(_tone(1800.0), cfg))


def test_vtlp_rejects_bad_input():
    with pytest.raises(ValueError, match="feats"):
        vtlp(torch.zeros(2, 5, 40), torch.ones(2))
    with pytest.raises(ValueError, match="factors"):
        vtlp(torch.zeros(2, 5, 80), torch.tensor([1.0, 0.0]))
