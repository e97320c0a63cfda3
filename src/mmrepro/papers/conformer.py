"""Conformer (Gulati et al. 2020, "Conformer: Convolution-augmented Transformer for Speech
Recognition", Interspeech 2020, arXiv 2005.08100), CTC and transducer variants.

The encoder is `mmrepro.models.conformer.ConformerEncoder`: S/M/L from the paper's Table 1 in the full
profile (LibriSpeech 960 h, 1k word pieces; published Table 2 WERs in `references/conformer.yaml`),
and a "tiny" size in smoke/cpu that keeps every part of the architecture (4x conv2d subsampling,
macaron FFNs, relative-position MHSA, conv module with depthwise kernel 32, final LayerNorm) at a
width and depth that trains on 2 CPU cores (`tts-speech`, character tokens). Shared logic:
`mmrepro.papers.common.speech`.

Departures on cpu (params.yaml): the transducer only, SpecAugment with 2 time masks instead of 10,
and VTLP (warp 0.9-1.1) added; each measured to lower the unseen-voice WER at the same compute.
"""

from __future__ import annotations

from torch import nn

from mmrepro.models.conformer import ConformerConfig, ConformerEncoder
from mmrepro.papers.common.speech import SpeechConfig, SpeechPaper


class Conformer(SpeechPaper):
    name = "conformer"
    title = "Gulati et al. 2020, Conformer"
    Config = SpeechConfig

    def build_encoder(self, cfg: SpeechConfig) -> nn.Module:
        if cfg.subsampling_factor not in (0, 4):
            raise ValueError(f"conformer: subsampling_factor {cfg.subsampling_factor} is not supported; the paper's "
                             "encoder subsamples 4x (two stride-2 convs), use 0 or 4")
        if cfg.size == "tiny":
            enc_cfg = ConformerConfig(d_model=cfg.d_model, num_layers=cfg.num_layers, num_heads=cfg.num_heads,
                                      conv_kernel=cfg.conv_kernel or 32, dropout=cfg.dropout,
                                      subsampling_channels=cfg.subsampling_channels)
        else:
            enc_cfg = ConformerConfig.preset(cfg.size, dropout=cfg.dropout)
        return ConformerEncoder(enc_cfg)
