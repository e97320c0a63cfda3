"""The attention captioner of the "visual grounding" notebook, as Show, Attend and Tell (soft attention).

Xu et al., "Show, Attend and Tell: Neural Image Caption Generation with Visual Attention", ICML 2015.
Rows against Table 1 (soft attention; BLEU-1..4 and METEOR x100 on Flickr8k/30k/COCO). On the cpu
profile the model is trained and scored on synthetic shapes-scenes (rows say `not comparable`) and
scored zero-shot on the real openclipart drawings; the evaluate stage also saves attention maps
(one PNG per test image: the image and the attention over the grid at every emitted word),
which the pipeline logs to MLflow with the rest of the evaluation folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from pydantic import Field

from mmrepro.data.caption_vocab import UNK
from mmrepro.data.shapes_scenes import read_split
from mmrepro.figures import tile_grid
from mmrepro.models.attention_captioner import AttentionCaptioner as AttentionModel
from mmrepro.models.attention_captioner import AttentionCaptionerConfig
from mmrepro.papers.common import captioning as cap
from mmrepro.papers.base import Result


class Config(cap.CaptionDataConfig):
    decode_keys: ClassVar[frozenset[str]] = cap.CaptionDataConfig.decode_keys | {"n_attention_maps"}
    grid: int = Field(default=6, gt=0, description="attention locations per side (grid**2 annotation vectors)")
    embed_dim: int = Field(default=128, gt=0)
    hidden_dim: int = Field(default=256, gt=0)
    attn_dim: int = Field(default=128, gt=0)
    dropout: float = Field(default=0.3, ge=0, lt=1)
    alpha_reg: float = Field(default=1.0, ge=0, description="doubly stochastic attention weight (lambda)")
    n_attention_maps: int = Field(default=8, ge=0, description="test images whose attention maps are saved")


def _lit_by_attention(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The (H, W, 3) uint8 image dimmed where the (g, g) attention `alpha` is low: alpha normalised by its max,
    upsampled to the image by nearest neighbour, pixel * (0.15 + 0.85 * alpha), so unattended regions stay
    faintly visible."""
    size, g = image.shape[0], alpha.shape[-1]
    block = -(-size // g)
    up = np.repeat(np.repeat(alpha / max(float(alpha.max()), 1e-8), block, 0), block, 1)[:size, :size, None]
    return np.round(image * (0.15 + 0.85 * up)).clip(0, 255).astype(np.uint8)


def save_attention_maps(model: AttentionModel, images: torch.Tensor, tokens: list[list[int]], vocab, out_dir: Path) -> list[Path]:
    """One PNG per image: the image, then the image lit by the attention at each emitted word, 8 tiles a row."""
    out_dir.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    paths = []
    for k, (img, toks) in enumerate(zip(images, tokens, strict=True)):
        maps = model.attention_maps(img[None].to(device), toks).cpu().numpy()  # (T+1, g, g)
        words = ["image"] + [vocab.words[t] for t in toks] + ["<eos>"]
        pixels = img.permute(1, 2, 0).numpy()
        tiles = [pixels] + [_lit_by_attention(pixels, alpha) for alpha in maps]
        path = out_dir / f"test_{k:03d}.png"
        tile_grid([tiles[i : i + 8] for i in range(0, len(tiles), 8)],
                  [words[i : i + 8] for i in range(0, len(words), 8)]).save(path)
        paths.append(path)
    return paths


class AttentionCaptioner(cap.CaptionPaper):
    name = "attention_captioner"
    title = "Xu et al. 2015, Show, Attend and Tell (soft attention)"
    Config = Config

    def departures(self, cfg: Config) -> list[str]:
        out = []
        if cfg.encoder != "vgg19":
            out.append(f"{cfg.encoder} encoder (the paper: VGG-19 conv5_4, 14 x 14 x 512)")
        if cfg.pretrained_path is None:
            out.append("no ImageNet-pretrained encoder weights (the paper's encoder is ImageNet-trained)")
        return out

    def model(self, cfg: Config, vocab_size: int) -> torch.nn.Module:
        return AttentionModel(AttentionCaptionerConfig(
            vocab_size=vocab_size, encoder=cfg.encoder_config(cfg.grid, self.datasets.root),
            embed_dim=cfg.embed_dim, hidden_dim=cfg.hidden_dim, attn_dim=cfg.attn_dim, dropout=cfg.dropout,
            alpha_reg=cfg.alpha_reg))

    def evaluate(self, models, cfg: Config, data_dir: Path, out_dir: Path, seed: int) -> list[Result]:
        model, vocab = models["main"], cap.load_vocab(data_dir)
        details = {"decoding": f"beam search, beam {cfg.beam_size}"}
        results = []
        splits = [("test", cap.dataset_label(cfg))] + ([(cap.OPENCLIPART, cap.OPENCLIPART)] if cfg.openclipart_n else [])
        for split, dataset in splits:
            data = read_split(data_dir, split)
            images = cap.images_tensor(data)
            preds = cap.decode(model, images, vocab, cfg.beam_size, cfg.max_caption_len)
            where = out_dir / split
            where.mkdir(parents=True, exist_ok=True)
            cap.write_predictions(where / "predictions.jsonl", preds, data.captions)
            scores = cap.score_split(preds, data.captions, where)
            extra = {} if split == "test" else {"note": f"zero-shot: trained on {cap.dataset_label(cfg)} only"}
            results.append(Result("exact_match", cap.exact_match(preds, data.captions), dataset=dataset,
                                  split="test", n_samples=len(data), details={**details, **extra}))
            results += cap.caption_results(scores, dataset, "test", "main", {**details, **extra})
            if cfg.n_attention_maps:
                n = min(cfg.n_attention_maps, len(data))
                tokens = [[vocab.index.get(w, UNK) for w in p.split()] for p in preds[:n]]
                save_attention_maps(model, images[:n], tokens, vocab, where / "attention")
        return results
