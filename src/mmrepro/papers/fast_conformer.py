"""Fast Conformer (Rekesh et al. 2023, "Fast Conformer with Linearly Scalable Attention for Efficient
Speech Recognition", ASRU 2023, arXiv 2305.05084), CTC and transducer variants.

The encoder is `mmrepro.models.fast_conformer.FastConformerEncoder` (8x depthwise-separable
subsampling with 256 channels, conv kernel 9, full or limited-context attention with one global token).
Full profile: Fast-Conformer-L on LibriSpeech; smoke/cpu: a "tiny" width/depth of the same
architecture on `tts-speech`. Besides WER, `evaluate` reports the paper's efficiency headline, the
encoder GMACs ratio Conformer-L / Fast-Conformer-L (published 143.2 / 48.7 = 2.94), counted with the
efficiency benchmark's FLOP counter (`benchmarks/efficiency.py: encoder_gmacs`, torch's
FlopCounterMode on the meta device) for one 30 s utterance.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from mmrepro.models.conformer import ConformerConfig, ConformerEncoder
from mmrepro.models.fast_conformer import FastConformerConfig, FastConformerEncoder
from mmrepro.papers._speech import SpeechConfig, SpeechPaper
from mmrepro.papers.base import Result

GMACS_SECONDS = 30.0  # input length of the GMACs comparison (3001 frames of 10 ms)


def _benchmark_module():
    path = Path(__file__).resolve().parents[3] / "benchmarks" / "efficiency.py"
    spec = importlib.util.spec_from_file_location("mmrepro_efficiency_benchmark", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise FileNotFoundError(f"{path}: the efficiency benchmark (its FLOP counter) is missing")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def encoder_gmacs_ratio(seconds: float = GMACS_SECONDS) -> dict[str, float]:
    """GMACs of the Conformer-L and Fast-Conformer-L encoders for one utterance of `seconds`."""
    bench = _benchmark_module()
    n = bench.frames(seconds)
    with torch.device("meta"):
        conf = ConformerEncoder(ConformerConfig.preset("L"))
        fast = FastConformerEncoder(FastConformerConfig.preset("L"))
    c, f = bench.encoder_gmacs(conf, n), bench.encoder_gmacs(fast, n)
    return {"conformer_l_gmacs": c, "fast_conformer_l_gmacs": f, "ratio": c / f, "frames": n, "seconds": seconds}


class FastConformer(SpeechPaper):
    name = "fast_conformer"
    title = "Rekesh et al. 2023, Fast Conformer"
    Config = SpeechConfig

    def build_encoder(self, cfg: SpeechConfig) -> nn.Module:
        if cfg.size == "tiny":
            enc_cfg = FastConformerConfig(
                d_model=cfg.d_model, num_layers=cfg.num_layers, num_heads=cfg.num_heads,
                conv_kernel=cfg.conv_kernel or 9, subsampling_channels=cfg.subsampling_channels or 256,
                attention=cfg.attention, att_context=cfg.att_context, dropout=cfg.dropout)
        else:
            enc_cfg = FastConformerConfig.preset(cfg.size, attention=cfg.attention, att_context=cfg.att_context,
                                                 dropout=cfg.dropout)
        return FastConformerEncoder(enc_cfg)

    def evaluate(self, models, cfg: SpeechConfig, data_dir: Path, out_dir: Path, seed: int) -> list[Result]:
        results = super().evaluate(models, cfg, data_dir, out_dir, seed)
        g = encoder_gmacs_ratio()
        results.append(Result(
            "encoder_gmacs_ratio", g["ratio"], dataset="encoder-flops", split="L-size-30s", n_samples=1,
            scale="raw", variant="main", higher_is_better=True,
            details={"conformer_l_gmacs": round(g["conformer_l_gmacs"], 2),
                     "fast_conformer_l_gmacs": round(g["fast_conformer_l_gmacs"], 2),
                     "input": f"one {g['seconds']:.0f} s utterance, {g['frames']} frames x 80, batch 1",
                     "counter": "torch.utils.flop_counter.FlopCounterMode on meta tensors, MACs = FLOPs / 2, "
                                "encoder only (benchmarks/efficiency.py encoder_gmacs)"}))
        return results
