"""StarCapNet: numerosity-aware captions of images of 0-9 stars (the project's own notebook).

No published table exists for it: the report says so. Our numbers: count accuracy (the number read
back from the caption), exact match against any reference, and the caption metrics of the shared
evaluator (pycocoevalcap, x100).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from pydantic import Field

from mmrepro.data.caption_vocab import CaptionVocab, tokenize
from mmrepro.data.counting_dots import DotsSpec, read_split, write_dataset
from mmrepro.metrics.captions import evaluate_captions
from mmrepro.metrics.counting import count_accuracy, parse_count
from mmrepro.models.starcapnet import StarCapNet as StarCapNetModel
from mmrepro.models.starcapnet import StarCapNetConfig
from mmrepro.papers.base import DataInfo, Paper, Result, TrainConfig, iter_minibatches

DATASET = "counting-dots"


class Config(TrainConfig):
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
    max_caption_len: int = Field(default=12, gt=2)
    beam_size: int = Field(default=3, ge=1)


class StarCapNet(Paper):
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

    def _vocab(self, data_dir: Path) -> CaptionVocab:
        return CaptionVocab.load(data_dir / "vocab.json")

    def build_model(self, cfg: Config, data_dir: Path, variant: str) -> torch.nn.Module:
        return StarCapNetModel(StarCapNetConfig(
            vocab_size=len(self._vocab(data_dir)), image_size=cfg.image_size, embed_dim=cfg.embed_dim,
            hidden_dim=cfg.hidden_dim, dropout=cfg.dropout))

    def steps_per_epoch(self, cfg: Config, data_dir: Path, variant: str) -> int:
        return -(-cfg.n_train // cfg.batch_size)

    def train_batches(self, cfg: Config, data_dir: Path, variant: str, epoch: int, seed: int):
        images, _, records = read_split(data_dir, "train")
        vocab = self._vocab(data_dir)
        gen = torch.Generator().manual_seed(seed * 7919 + epoch)
        images = torch.from_numpy(images)
        for idx in iter_minibatches(len(records), cfg.batch_size, gen):
            # each epoch sees one randomly chosen reference per image
            picks = torch.randint(0, cfg.n_refs, (len(idx),), generator=gen).tolist()
            captions = [records[i]["captions"][p % len(records[i]["captions"])] for i, p in zip(idx.tolist(), picks, strict=True)]
            yield {"images": images[idx], "tokens": vocab.encode_batch(captions, cfg.max_caption_len)}

    def training_step(self, model: StarCapNetModel, batch, variant: str) -> torch.Tensor:
        return model.loss(batch["images"], batch["tokens"])

    def _greedy_captions(self, model: StarCapNetModel, images: np.ndarray, vocab: CaptionVocab, max_len: int) -> list[str]:
        device = next(model.parameters()).device
        captions = []
        for start in range(0, len(images), 256):
            ids = model.greedy(torch.from_numpy(images[start : start + 256]).to(device), max_len)
            captions += [vocab.decode(row.tolist()) for row in ids]
        return captions

    def validate(self, model: StarCapNetModel, cfg: Config, data_dir: Path, variant: str) -> dict[str, float]:
        images, counts, _ = read_split(data_dir, "val")
        captions = self._greedy_captions(model, images, self._vocab(data_dir), cfg.max_caption_len)
        return {"count_accuracy": count_accuracy(captions, counts.tolist())}

    def evaluate(self, models, cfg: Config, data_dir: Path, out_dir: Path, seed: int) -> list[Result]:
        model, vocab = models["main"], self._vocab(data_dir)
        images, counts, records = read_split(data_dir, "test")
        device = next(model.parameters()).device
        greedy = self._greedy_captions(model, images, vocab, cfg.max_caption_len)
        beam = [vocab.decode(model.beam_search(torch.from_numpy(im).to(device), cfg.beam_size, cfg.max_caption_len))
                for im in images]
        references = {r["id"]: r["captions"] for r in records}
        predictions = {r["id"]: c for r, c in zip(records, beam, strict=True)}
        scores = evaluate_captions(predictions, references, out_dir)

        norm = lambda c: " ".join(tokenize(c))  # noqa: E731
        exact = np.mean([norm(predictions[r["id"]]) in {norm(x) for x in r["captions"]} for r in records])
        with (out_dir / "predictions.jsonl").open("w") as handle:
            for r, g, b in zip(records, greedy, beam, strict=True):
                handle.write(json.dumps({"id": r["id"], "count": r["count"], "greedy": g, "beam": b,
                                         "count_read": parse_count(b), "references": r["captions"]}) + "\n")

        n, decoding = len(records), f"beam search, beam {cfg.beam_size}"
        common = {"dataset": DATASET, "split": "test", "n_samples": n}
        results = [
            Result("count_accuracy", count_accuracy(beam, counts.tolist()), **common, details={"decoding": decoding}),
            Result("count_accuracy_greedy", count_accuracy(greedy, counts.tolist()), **common,
                   details={"decoding": "greedy"}),
            Result("exact_match", float(exact), **common, details={"decoding": decoding}),
        ]
        for metric, value in scores.corpus.items():
            results.append(Result(metric, value, **common, scale=scores.scale,
                                  details={"decoding": decoding, "tokenizer": "PTB (pycocoevalcap)"}))
        for metric, reason in scores.unavailable.items():
            results.append(Result(metric, None, **common, scale=scores.scale,
                                  details={"unavailable": reason}))
        return results
