"""Fast Conformer (Rekesh et al. 2023, "Fast Conformer with Linearly Scalable Attention for Efficient
Speech Recognition", ASRU 2023, arXiv 2305.05084), CTC and transducer variants.

The encoder is `mmrepro.models.fast_conformer.FastConformerEncoder` (8x depthwise-separable
subsampling with 256 channels, conv kernel 9, full or limited-context attention with one global token).
Full profile: Fast-Conformer-L on LibriSpeech; smoke/cpu: a "tiny" width/depth of the same
architecture on `tts-speech`. Departures on cpu (params.yaml): the transducer only, on characters (CTC
runs in smoke/full; char CTC cannot align to 8x frames), and the Conformer's cpu augmentation (2 time
masks, VTLP). Characters at 8x frames are why the cpu WER trails the Conformer's (README, Papers: 65% of
the training utterances have more characters than 80 ms frames; `subsampling_factor: 4` closes the gap).
Besides WER, `evaluate` reports the paper's efficiency headline, the encoder GMACs of Conformer-L and
Fast-Conformer-L and their ratio (published 143.2 / 48.7 = 2.94), from
`mmrepro.metrics.efficiency.gmacs_results` (torch's FlopCounterMode on the meta device, one 30 s
utterance; NeMo's Conformer-L baseline as in the paper).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from mmrepro.metrics.efficiency import gmacs_results
from mmrepro.models.fast_conformer import FastConformerConfig, FastConformerEncoder
from mmrepro.papers.base import Result
from mmrepro.papers.common.speech import SpeechConfig, SpeechPaper

GMACS_SECONDS = 30.0  # input length of the GMACs comparison (3001 frames of 10 ms)


class FastConformer(SpeechPaper):
    name = "fast_conformer"
    title = "Rekesh et al. 2023, Fast Conformer"
    Config = SpeechConfig

    def build_encoder(self, cfg: SpeechConfig) -> nn.Module:
        if cfg.size == "tiny":
            enc_cfg = FastConformerConfig(
                d_model=cfg.d_model, num_layers=cfg.num_layers, num_heads=cfg.num_heads,
                conv_kernel=cfg.conv_kernel or 9, subsampling_channels=cfg.subsampling_channels or 256,
                subsampling_factor=cfg.subsampling_factor or 8,
                attention=cfg.attention, att_context=cfg.att_context, dropout=cfg.dropout)
        else:
            enc_cfg = FastConformerConfig.preset(cfg.size, attention=cfg.attention, att_context=cfg.att_context,
                                                 dropout=cfg.dropout, subsampling_factor=cfg.subsampling_factor or 8)
        return FastConformerEncoder(enc_cfg)

    def evaluate(self, models, cfg: SpeechConfig, data_dir: Path, out_dir: Path, seed: int) -> list[Result]:
        # WER rows, then the efficiency headline: Conformer-L vs Fast-Conformer-L encoder GMACs and their
        # ratio for one 30 s clip (data-independent, counted on meta tensors in seconds)
        return super().evaluate(models, cfg, data_dir, out_dir, seed) + gmacs_results(GMACS_SECONDS)
