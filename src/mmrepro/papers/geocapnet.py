"""GeoCapNet: CNN encoder + GRU decoder describing geometric primitives (the project's notebook).

No published table exists: the report says so. Our numbers, on shapes-scenes with GeoCapNet's own
grammar ("a red circle and a blue square", one caption per image): exact match of the decoded
caption, and the caption metrics of the shared evaluator (pycocoevalcap, x100).
"""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import Field

from mmrepro.data.shapes_scenes import read_split
from mmrepro.models.geocapnet import GeoCapNet as GeoCapNetModel
from mmrepro.models.geocapnet import GeoCapNetConfig
from mmrepro.papers.common import captioning as cap
from mmrepro.papers.base import Result

GRAMMAR = "geocap"


class Config(cap.CaptionDataConfig):
    embed_dim: int = Field(default=64, gt=0)
    hidden_dim: int = Field(default=256, gt=0)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    grid: int = Field(default=3, gt=0, description="encoder cells, concatenated into the image vector")
    beam_size: int = Field(default=1, ge=1, description="1 = greedy, as the notebook")


class GeoCapNet(cap.CaptionPaper):
    name = "geocapnet"
    title = "GeoCapNet: captioning geometric primitives (project notebook)"
    Config = Config

    grammar = GRAMMAR

    def model(self, cfg: Config, vocab_size: int) -> torch.nn.Module:
        return GeoCapNetModel(GeoCapNetConfig(
            vocab_size=vocab_size, encoder=cfg.encoder_config(cfg.grid, self.datasets.root),
            embed_dim=cfg.embed_dim, hidden_dim=cfg.hidden_dim, dropout=cfg.dropout))

    def evaluate(self, models, cfg: Config, data_dir: Path, out_dir: Path, seed: int) -> list[Result]:
        model, vocab = models["main"], cap.load_vocab(data_dir)
        test = read_split(data_dir, "test")
        preds = cap.decode(model, cap.images_tensor(test), vocab, cfg.beam_size, cfg.max_caption_len)
        cap.write_predictions(out_dir / "predictions.jsonl", preds, test.captions)
        scores = cap.score_split(preds, test.captions, out_dir)
        dataset = cap.dataset_label(cfg, GRAMMAR)
        details = {"decoding": "greedy" if cfg.beam_size == 1 else f"beam search, beam {cfg.beam_size}"}
        return [
            Result("exact_match", cap.exact_match(preds, test.captions), dataset=dataset, split="test",
                   n_samples=len(test), details=details),
            *cap.caption_results(scores, dataset, "test", "main", details),
        ]
