"""StarCapNet: numerosity-aware captions of images of 0-9 stars (the project's own notebook).

No published table exists for it: the report says so. Our numbers: count accuracy (the number read
back from the caption), exact match against any reference, and the caption metrics of the shared
evaluator (pycocoevalcap, x100). Training, validation, decoding and scoring are the captioning base's
(`papers.common.captioning`); this module adds its data (`counting-dots`) and the count metrics.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from pydantic import Field

from mmrepro.data.caption_vocab import CaptionVocab
from mmrepro.data.counting_dots import DotsSpec, read_split, write_dataset
from mmrepro.metrics.counting import count_accuracy, parse_count
from mmrepro.models.starcapnet import StarCapNet as StarCapNetModel
from mmrepro.models.starcapnet import StarCapNetConfig
from mmrepro.papers.base import DataInfo, Result, Variant
from mmrepro.papers.common import captioning as cap

DATASET = "counting-dots"


class Config(cap.CaptionConfig):
    n_train: int = Field(gt=0)
    n_val: int = Field(gt=0)
    n_test: int = Field(gt=0)
    image_size: int = Field(default=64, gt=0)
    max_count: int = Field(default=9, ge=0, le=9)
    noise_std: float = Field(default=0.0, ge=0)
    n_refs: int = Field(default=5, ge=1)
    hidden_dim: int = Field(default=256, gt=0)
    embed_dim: int = Field(default=64, gt=0)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    max_caption_len: int = Field(default=12, gt=2, description="tokens incl. <bos>/<eos>")


class StarCapNet(cap.CaptionPaper):
    name = "starcapnet"
    title = "StarCapNet: numerosity-aware image captioning (project notebook)"
    Config = Config

    def prepare(self, cfg: Config, data_dir: Path, seed: int) -> DataInfo:
        spec = DotsSpec(image_size=cfg.image_size, max_count=cfg.max_count, noise_std=cfg.noise_std,
                        n_refs=cfg.n_refs)
        sizes = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}
        write_dataset(data_dir, sizes, spec, seed)
        _, _, train_records = read_split(data_dir, "train")
        vocab = CaptionVocab.build(c for r in train_records for c in r["captions"])
        vocab.save(data_dir / "vocab.json")
        return DataInfo(dataset=DATASET, splits=sizes, details={"vocab_size": len(vocab), **spec.__dict__})

    def external_paths(self, cfg: Config) -> list[Path]:
        return []  # synthetic only

    def caption_split(self, data_dir: Path, split: str) -> tuple[torch.Tensor, list[list[str]]]:
        images, _, records = read_split(data_dir, split)
        return torch.from_numpy(images), [r["captions"] for r in records]

    def make_variants(self, cfg: Config, data_dir: Path) -> list[Variant]:
        data = cap.CaptionData(self, data_dir)

        val_counts: list[list[int]] = []  # read once, at the first validation

        def count_accuracy_on_val(model: StarCapNetModel) -> dict[str, float]:
            images, _ = data.split("val")
            val_counts[:] = val_counts or [read_split(data_dir, "val")[1].tolist()]
            captions = cap.decode(model, images, data.vocab, 1, cfg.max_caption_len)
            return {"count_accuracy": count_accuracy(captions, val_counts[0])}

        return [self.captioner("main", cfg, data, lambda: self.model(cfg, len(data.vocab)), validate=count_accuracy_on_val)]

    def model(self, cfg: Config, vocab_size: int) -> StarCapNetModel:
        return StarCapNetModel(StarCapNetConfig(vocab_size=vocab_size, image_size=cfg.image_size,
                                                embed_dim=cfg.embed_dim, hidden_dim=cfg.hidden_dim, dropout=cfg.dropout))

    def evaluate(self, models, cfg: Config, data_dir: Path, out_dir: Path, seed: int) -> list[Result]:
        model, vocab = models["main"], cap.load_vocab(data_dir)
        images, counts, records = read_split(data_dir, "test")
        images, counts, references = torch.from_numpy(images), counts.tolist(), [r["captions"] for r in records]
        greedy = cap.decode(model, images, vocab, 1, cfg.max_caption_len)
        beam = cap.decode(model, images, vocab, cfg.beam_size, cfg.max_caption_len)
        scores = cap.score_split(beam, references, out_dir)
        with (out_dir / "predictions.jsonl").open("w") as handle:
            for r, g, b in zip(records, greedy, beam, strict=True):
                handle.write(json.dumps({"id": r["id"], "count": r["count"], "greedy": g, "beam": b,
                                         "count_read": parse_count(b), "references": r["captions"]}) + "\n")

        details = {"decoding": f"beam search, beam {cfg.beam_size}"}
        common = {"dataset": DATASET, "split": "test", "n_samples": len(records)}
        return [
            Result("count_accuracy", count_accuracy(beam, counts), **common, details=details),
            Result("count_accuracy_greedy", count_accuracy(greedy, counts), **common, details={"decoding": "greedy"}),
            Result("exact_match", cap.exact_match(beam, references), **common, details=details),
            *cap.caption_results(scores, DATASET, "test", "main", details),
        ]
