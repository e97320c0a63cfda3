"""Audio front-end in plain torch (torchaudio cannot be installed here): log-mel filterbanks,
SpecAugment, band-limited resampling, and WAV/FLAC loading.

Features follow the Conformer paper (Gulati et al. 2020, "Conformer: Convolution-augmented
Transformer for Speech Recognition", Sec. 3.1): 80-channel log-mel filterbank features computed
from a 25 ms window with a 10 ms stride, and SpecAugment (Park et al. 2019) with two frequency
masks of maximum width F = 27 and ten time masks with maximum time-mask ratio pS = 0.05 (the
maximum size of a time mask is pS times the utterance length).

Mel scale: HTK, mel(f) = 2595 * log10(1 + f / 700), triangular filters with peak 1 placed at
equally spaced mel points between `f_min` and `f_max` (no area normalisation), applied to the power
spectrum of a Hann-windowed 512-point FFT; log(x + 1e-6); optionally per-utterance, per-channel
mean/variance normalisation (NeMo's `normalize: per_feature`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from mmrepro.datasets import DatasetError, shown_path, unreadable

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class FbankConfig:
    sample_rate: int = SAMPLE_RATE  # Hz of the input waveform
    n_mels: int = 80  # filterbank channels (Conformer: 80)
    win_ms: float = 25.0  # analysis window length (Conformer: 25 ms)
    hop_ms: float = 10.0  # frame stride (Conformer: 10 ms)
    n_fft: int = 512  # FFT size (>= window length in samples)
    f_min: float = 0.0  # lowest filter edge, Hz
    f_max: float | None = None  # highest filter edge, Hz; None = Nyquist
    log_eps: float = 1e-6  # floor inside the log
    normalize: bool = True  # per-utterance, per-channel mean/variance normalisation

    @property
    def win_length(self) -> int:
        return round(self.sample_rate * self.win_ms / 1000)

    @property
    def hop_length(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)


def hz_to_mel(f: float | np.ndarray) -> float | np.ndarray:
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m: float | np.ndarray) -> float | np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def _mel_matrix_cached(n_fft: int, n_mels: int, sample_rate: int, f_min: float, f_max: float) -> torch.Tensor:
    n_freqs = n_fft // 2 + 1
    fft_freqs = np.linspace(0.0, sample_rate / 2, n_freqs)
    mel_points = np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2)
    hz_points = mel_to_hz(mel_points)
    lower, centre, upper = hz_points[:-2, None], hz_points[1:-1, None], hz_points[2:, None]
    up = (fft_freqs[None, :] - lower) / (centre - lower)
    down = (upper - fft_freqs[None, :]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(up, down))  # (n_mels, n_freqs)
    return torch.from_numpy(weights.T.astype(np.float32)).contiguous()  # (n_freqs, n_mels)


def mel_matrix(n_fft: int = 512, n_mels: int = 80, sample_rate: int = SAMPLE_RATE,
               f_min: float = 0.0, f_max: float | None = None) -> torch.Tensor:
    """HTK triangular mel filterbank, shape (n_fft // 2 + 1, n_mels); column m peaks at 1 on the
    m-th interior mel point."""
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate/2, got {f_min}, {f_max}, {sample_rate}")
    if n_mels <= 0 or n_fft <= 0:
        raise ValueError(f"n_mels and n_fft must be positive, got {n_mels}, {n_fft}")
    return _mel_matrix_cached(n_fft, n_mels, sample_rate, float(f_min), float(f_max)).clone()


def num_frames(n_samples: int, cfg: FbankConfig = FbankConfig()) -> int:
    """Frames produced by `log_mel` for a waveform of `n_samples` (centred frames, as torch.stft)."""
    return n_samples // cfg.hop_length + 1


def log_mel(wave: torch.Tensor, cfg: FbankConfig = FbankConfig()) -> torch.Tensor:
    """Log-mel filterbank features.

    wave: (N,) or (B, N) float waveform at `cfg.sample_rate`.
    Returns (T, n_mels) or (B, T, n_mels) with T = N // hop + 1 (centred, reflect-padded frames).
    """
    if cfg.win_length > cfg.n_fft:
        raise ValueError(f"window ({cfg.win_length} samples) longer than n_fft ({cfg.n_fft})")
    squeeze = wave.dim() == 1
    if squeeze:
        wave = wave[None]
    if wave.dim() != 2:
        raise ValueError(f"wave must be (N,) or (B, N), got shape {tuple(wave.shape)}")
    wave = wave.float()
    if wave.shape[-1] <= cfg.n_fft // 2:  # reflect padding needs more samples than the pad
        wave = torch.nn.functional.pad(wave, (0, cfg.n_fft // 2 + 1 - wave.shape[-1]))
    window = torch.hann_window(cfg.win_length, periodic=True, device=wave.device)
    spec = torch.stft(wave, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                      window=window, center=True, pad_mode="reflect", return_complex=True)
    power = spec.real.square() + spec.imag.square()  # (B, F, T)
    mel = mel_matrix(cfg.n_fft, cfg.n_mels, cfg.sample_rate, cfg.f_min, cfg.f_max).to(wave.device)
    feats = torch.log(power.transpose(1, 2) @ mel + cfg.log_eps)  # (B, T, n_mels)
    if cfg.normalize:
        feats = (feats - feats.mean(dim=1, keepdim=True)) / (feats.std(dim=1, keepdim=True) + 1e-5)
    return feats[0] if squeeze else feats


@dataclass(frozen=True)
class SpecAugmentConfig:
    freq_masks: int = 2  # number of frequency masks (Conformer: 2)
    freq_width: int = 27  # maximum frequency-mask width F, in channels (Conformer: 27)
    time_masks: int = 10  # number of time masks (Conformer: 10)
    time_ratio: float = 0.05  # maximum time-mask width as a fraction of the utterance (pS = 0.05)


def spec_augment(feats: torch.Tensor, lengths: torch.Tensor | None = None,
                 cfg: SpecAugmentConfig = SpecAugmentConfig(),
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """SpecAugment frequency and time masking (no time warping), masks set to 0 (the mean of
    normalised features). Returns a new tensor.

    feats: (B, T, F) features; lengths: (B,) valid frames per utterance (default: all T). Each
    mask width is drawn uniformly from [0, max]; time-mask max = floor(time_ratio * length).
    """
    if feats.dim() != 3:
        raise ValueError(f"feats must be (B, T, F), got shape {tuple(feats.shape)}")
    if cfg.freq_width < 0 or cfg.time_ratio < 0 or cfg.freq_masks < 0 or cfg.time_masks < 0:
        raise ValueError(f"SpecAugment settings must be non-negative, got {cfg}")
    b, t, f = feats.shape
    if lengths is None:
        lengths = torch.full((b,), t, dtype=torch.long)
    out = feats.clone()
    freq_idx = torch.arange(f)
    time_idx = torch.arange(t)
    for i in range(b):
        length = int(lengths[i])
        for _ in range(cfg.freq_masks):
            width = int(torch.randint(0, min(cfg.freq_width, f) + 1, (1,), generator=generator))
            start = int(torch.randint(0, f - width + 1, (1,), generator=generator))
            out[i, :, (freq_idx >= start) & (freq_idx < start + width)] = 0.0
        max_t = math.floor(cfg.time_ratio * length)
        for _ in range(cfg.time_masks):
            width = int(torch.randint(0, max_t + 1, (1,), generator=generator))
            start = int(torch.randint(0, max(1, length - width + 1), (1,), generator=generator))
            out[i, (time_idx >= start) & (time_idx < start + width), :] = 0.0
    return out


def vtlp(feats: torch.Tensor, factors: torch.Tensor, cfg: FbankConfig = FbankConfig(),
         boundary_hz: float = 4800.0) -> torch.Tensor:
    """Vocal tract length perturbation (Jaitly & Hinton 2013, "Vocal Tract Length Perturbation (VTLP)
    improves speech recognition"), applied to log-mel features: utterance i's spectrum is warped
    by factor alpha_i, f -> alpha f up to a boundary and piecewise-linearly above it so that the Nyquist
    frequency maps to itself, by reading each output channel at the warped source frequency
    (linear interpolation between the neighbouring channels). It simulates speakers with shorter or
    longer vocal tracts (alpha in [0.9, 1.1] in the paper).

    feats: (B, T, n_mels) features made with `cfg`; factors: (B,) warp factors alpha. Returns a new tensor.
    """
    if feats.dim() != 3 or feats.shape[2] != cfg.n_mels:
        raise ValueError(f"feats must be (B, T, {cfg.n_mels}), got shape {tuple(feats.shape)}")
    if factors.shape != (feats.shape[0],) or bool((factors <= 0).any()):
        raise ValueError(f"factors must be ({feats.shape[0]},) positive warp factors")
    nyquist = cfg.sample_rate / 2
    f_max = cfg.f_max or nyquist
    m_lo, m_hi = float(hz_to_mel(cfg.f_min)), float(hz_to_mel(f_max))
    step = (m_hi - m_lo) / (cfg.n_mels + 1)
    centres = torch.from_numpy(mel_to_hz(m_lo + step * np.arange(1, cfg.n_mels + 1))).float()  # (n_mels,)
    inv = 1.0 / factors.float()[:, None]  # the source of output frequency f is warp(f, 1 / alpha)
    edge = boundary_hz * torch.clamp(inv, max=1.0) / inv
    upper = nyquist - (nyquist - edge * inv) / (nyquist - edge) * (nyquist - centres)
    source = torch.where(centres <= edge, centres * inv, upper).clamp(cfg.f_min, f_max)
    source_mel = torch.from_numpy(hz_to_mel(source.numpy())).float()
    pos = ((source_mel - m_lo) / step - 1.0).clamp(0, cfg.n_mels - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=cfg.n_mels - 1)
    w = (pos - lo).to(feats.dtype)[:, None, :]
    t = feats.shape[1]
    take = lambda idx: feats.gather(2, idx[:, None, :].expand(-1, t, -1))  # noqa: E731
    return take(lo) * (1 - w) + take(hi) * w


def resample(wave: np.ndarray | torch.Tensor, orig_sr: int, new_sr: int,
             lowpass_width: int = 16, rolloff: float = 0.95) -> torch.Tensor:
    """Band-limited (Hann-windowed sinc) resampling, as torchaudio's `sinc_interp_hann`.

    wave: (N,) float waveform. Returns (ceil(N * new_sr / orig_sr),) float32.
    """
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr}, {new_sr}")
    x = torch.as_tensor(wave, dtype=torch.float64)
    if x.dim() != 1:
        raise ValueError(f"wave must be 1-D, got shape {tuple(x.shape)}")
    if orig_sr == new_sr:
        return x.float()
    g = math.gcd(orig_sr, new_sr)
    orig, new = orig_sr // g, new_sr // g
    base = min(orig, new) * rolloff  # cut-off, in units of the reduced rates
    width = math.ceil(lowpass_width * orig / base)
    idx = torch.arange(-width, width + orig, dtype=torch.float64)[None] / orig  # (1, K)
    t = torch.arange(0, -new, -1, dtype=torch.float64)[:, None] / new + idx  # (new, K)
    t = (t * base).clamp(-lowpass_width, lowpass_width)
    window = torch.cos(t * math.pi / lowpass_width / 2) ** 2
    t = t * math.pi
    kernels = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t) * window * (base / orig)
    n = x.shape[0]
    padded = torch.nn.functional.pad(x[None, None], (width, width + orig))
    out = torch.nn.functional.conv1d(padded, kernels[:, None], stride=orig)  # (1, new, frames)
    out = out[0].t().reshape(-1)
    target = math.ceil(new * n / orig)
    return out[:target].float()


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Read a WAV/FLAC file (soundfile) as a mono float32 waveform at `sample_rate`: (N,)."""
    import soundfile as sf

    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:  # corrupt, truncated, not audio: name the file
        raise unreadable(path, f"{Path(path).suffix.lstrip('.').upper() or 'audio'} file", exc) from None
    if data.shape[0] == 0:
        raise DatasetError(f"{shown_path(path)}: no audio samples")
    mono = data.mean(axis=1)
    if sr != sample_rate:
        return resample(mono, sr, sample_rate)
    return torch.from_numpy(np.ascontiguousarray(mono))
