"""What the captioning papers (StarCapNet, GeoCapNet, Show Attend and Tell, Karpathy & Fei-Fei) share: the
config fields, preparing shapes-scenes / Karpathy-JSON / openclipart splits in one on-disk format
(`mmrepro.data.shapes_scenes.write_split`), caption batches, batched decoding and turning the shared
evaluator's scores into `Result` rows. StarCapNet keeps its own data (`counting-dots`) and reads it
through `CaptionPaper.caption_split`; everything else is this module's.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from mmrepro.data import karpathy_json, openclipart
from mmrepro.data.caption_vocab import CaptionVocab, tokenize
from mmrepro.data.shapes_scenes import ShapesScenesConfig, Split, generate_split, read_split, write_split
from mmrepro.metrics.captions import CaptionScores, evaluate_captions
from mmrepro.datasets import DatasetError, DatasetSettings
from mmrepro.models.image_encoder import ImageEncoderConfig
from mmrepro.papers.base import DataInfo, EpochBatches, Paper, Result, TrainConfig, Variant, iter_minibatches

SYNTHETIC = "shapes-scenes"
OPENCLIPART = "openclipart"


class CaptionConfig(TrainConfig):
    """Fields every captioner has: caption length and test decoding."""

    decode_keys: ClassVar[frozenset[str]] = frozenset({"beam_size"})

    max_caption_len: int = Field(default=24, gt=2, description="tokens incl. <bos>/<eos>")
    beam_size: int = Field(default=3, ge=1, description="test decoding; 1 = greedy")


class CaptionDataConfig(CaptionConfig):
    """Data and image-encoder fields common to the captioners of shapes-scenes and the Karpathy datasets."""

    # real datasets: <datasets root>/<dataset>/dataset_<dataset>.json + its images (mmrepro.data.karpathy_json)
    dataset: Literal["shapes-scenes", "flickr8k", "flickr30k", "coco"] = SYNTHETIC
    n_train: int = Field(default=8000, gt=0, description="shapes-scenes sizes (real datasets: their splits)")
    n_val: int = Field(default=500, gt=0)
    n_test: int = Field(default=1000, gt=0)
    image_size: int = Field(default=48, gt=0)
    min_objects: int = Field(default=1, ge=1, le=3)
    max_objects: int = Field(default=3, ge=1, le=3)
    encoder: Literal["small", "resnet18", "resnet34", "resnet50", "vgg19"] = "small"
    pretrained_path: str | None = Field(default=None, description="local ResNet state dict; never downloaded")
    encoder_width: int = Field(default=32, gt=0, description="first-block channels of the small CNN")
    encoder_dim: int = Field(default=128, gt=0)
    openclipart_n: int = Field(default=0, ge=0, description="openclipart test drawings (0 = none)")

    @model_validator(mode="after")
    def _objects(self):
        if self.min_objects > self.max_objects:
            raise ValueError("min_objects must be <= max_objects")
        return self

    def encoder_config(self, grid: int, datasets_root: Path | None = None) -> ImageEncoderConfig:
        """A relative `pretrained_path` is under the datasets root (README, "Pretrained encoders")."""
        path = self.pretrained_path
        if path is not None and datasets_root is not None and not Path(path).is_absolute():
            path = str(datasets_root / path)
        return ImageEncoderConfig(arch=self.encoder, dim=self.encoder_dim, grid=grid, width=self.encoder_width,
                                  pretrained_path=path)


def karpathy_paths(cfg: CaptionDataConfig, settings: DatasetSettings) -> list[Path]:
    """The external files a real dataset is read from: its JSON and its image folder(s)."""
    folder = settings.folder(cfg.dataset)
    images = [folder / "train2014", folder / "val2014"] if cfg.dataset == "coco" else \
        [karpathy_json.image_root(folder, cfg.dataset)]
    return [karpathy_json.json_path(folder, cfg.dataset), *images]


def read_karpathy_splits(cfg: CaptionDataConfig, settings: DatasetSettings, key: str):
    """{our split: KarpathySplit} of a real dataset, every used JSON split checked against references/
    datasets.yaml (test: count + fingerprint; train, restval, val: count) and every image stat'ed, before
    any image is decoded. -> (splits, identity of the test split)."""
    folder = settings.folder(cfg.dataset)
    path = karpathy_json.json_path(folder, cfg.dataset)
    if not path.is_file():
        raise settings.missing(cfg.dataset, key, path)
    dataset, release = karpathy_json.read_release(path, karpathy_json.image_root(folder, cfg.dataset))
    if dataset != cfg.dataset:
        raise DatasetError(f"{path}: holds dataset {dataset!r}, params {key} says {cfg.dataset!r}")
    parts = {"train": ["train", "restval"] if cfg.dataset == "coco" else ["train"], "val": ["val"], "test": ["test"]}
    for labels in parts.values():
        for label in labels:
            found = karpathy_json.split_identity_of(release.get(label, []))
            settings.check(cfg.dataset, label, found, key, counts_only=label != "test")
    splits = {split: karpathy_json.KarpathySplit(cfg.dataset, split, tuple(
        im for label in labels for im in release.get(label, []))) for split, labels in parts.items()}
    for split in splits.values():
        if not len(split):
            raise DatasetError(f"{path}: no {split.split} images (params {key})")
        if missing := karpathy_json.missing_images(split.images):
            raise DatasetError(f"{cfg.dataset}: {len(missing)} of {len(split)} {split.split} images missing, e.g. "
                               f"{missing[0]} (params {key}); get them from {settings.where(cfg.dataset)}")
    return splits, {f"{cfg.dataset}/test": karpathy_json.split_identity_of(splits["test"].images)}


def prepare_captions(cfg: CaptionDataConfig, data_dir: Path, seed: int, grammar: str = "scenes",
                     settings: DatasetSettings | None = None, key: str = "dataset") -> DataInfo:
    """Write train/val/test (and openclipart) splits and the vocabulary into `data_dir`. A real dataset is
    read from `settings.root/<dataset>` (all splits verified before decoding); its captions are the
    released tokens joined by spaces."""
    identity: dict = {}
    if cfg.dataset == SYNTHETIC:
        scfg = ShapesScenesConfig(image_size=cfg.image_size, min_objects=cfg.min_objects,
                                  max_objects=cfg.max_objects, grammar=grammar)
        sizes = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}
        for split, n in sizes.items():
            write_split(data_dir, split, generate_split(n, split, seed, scfg))
        details = {"generator": {**scfg.__dict__}, "grammar": grammar}
    else:
        settings = settings or DatasetSettings()
        splits, identity = read_karpathy_splits(cfg, settings, key)
        sizes = {}
        for split, ks in splits.items():
            images = karpathy_json.load_images(ks, cfg.image_size)
            write_split(data_dir, split, Split(images, ks.captions(), [[] for _ in ks.images]))
            sizes[split] = len(ks)
        details = {"root": str(settings.folder(cfg.dataset).resolve()), "captions": "released tokens"}
    if cfg.openclipart_n:
        images, items = openclipart.build_test_set(cfg.openclipart_n, cfg.image_size, seed)
        write_split(data_dir, OPENCLIPART, Split(images, [list(i.references) for i in items], [[] for _ in items]))
        (data_dir / f"{OPENCLIPART}_sources.json").write_text(
            json.dumps([{"path": str(i.path), "category": i.category} for i in items], indent=1))
        sizes[OPENCLIPART] = len(items)
    train = read_split(data_dir, "train")
    vocab = CaptionVocab.build(c for caps in train.captions for c in caps)
    vocab.save(data_dir / "vocab.json")
    return DataInfo(dataset=cfg.dataset, splits=sizes, details={"vocab_size": len(vocab), **details},
                    identity=identity)


def load_vocab(data_dir: Path) -> CaptionVocab:
    return CaptionVocab.load(data_dir / "vocab.json")


def images_tensor(split: Split) -> torch.Tensor:
    """(N, 3, S, S) uint8 (the models normalise)."""
    return torch.from_numpy(np.ascontiguousarray(split.images.transpose(0, 3, 1, 2)))


def caption_batches(images: torch.Tensor, captions: list[list[str]], vocab: CaptionVocab, batch_size: int,
                    max_len: int, epoch: int, seed: int, fraction: float = 1.0):
    """Batches {"images": images[idx], "tokens": (B, L)}; one random reference per image per epoch.
    `fraction` < 1 trains on that share of the (re-shuffled every epoch) training images."""
    gen = torch.Generator().manual_seed(seed * 7919 + epoch)
    n = min(len(images), round(len(images) * fraction))
    order = torch.randperm(len(images), generator=gen)[:n]
    for pos in iter_minibatches(n, batch_size, gen):
        idx = order[pos]
        picks = torch.randint(0, 1 << 30, (len(idx),), generator=gen).tolist()
        caps = [captions[i][p % len(captions[i])] for i, p in zip(idx.tolist(), picks, strict=True)]
        yield {"images": images[idx], "tokens": vocab.encode_batch(caps, max_len)}


def decode(model, images: torch.Tensor, vocab: CaptionVocab, beam_size: int, max_len: int, batch: int = 250) -> list[str]:
    """Captions of `images` by `model.generate` (beam search; beam 1 = greedy), in batches."""
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(images), batch):
        ids = model.generate(images[start : start + batch].to(device), beam_size=beam_size, max_len=max_len)
        out += [vocab.decode(row) for row in ids]
    return out


def normalise(caption: str) -> str:
    return " ".join(tokenize(caption))


def exact_match(predictions: list[str], references: list[list[str]]) -> float:
    """Share of predictions equal (after tokenisation) to one of their references."""
    hits = [normalise(p) in {normalise(r) for r in refs} for p, refs in zip(predictions, references, strict=True)]
    return float(np.mean(hits))


def score_split(
    predictions: list[str], references: list[list[str]], out_dir: Path
) -> CaptionScores:
    """The shared evaluator on one split (COCO files, per-image scores into `out_dir`)."""
    ids = [str(i) for i in range(len(predictions))]
    return evaluate_captions(dict(zip(ids, predictions, strict=True)), dict(zip(ids, references, strict=True)), out_dir)


def caption_results(scores: CaptionScores, dataset: str, split: str, variant: str, details: dict) -> list[Result]:
    common = {"dataset": dataset, "split": split, "n_samples": scores.n_images, "scale": scores.scale,
              "variant": variant}
    rows = [Result(m, v, **common, details={**details, "tokenizer": "PTB (pycocoevalcap)"})
            for m, v in scores.corpus.items()]
    rows += [Result(m, None, **common, details={**details, "unavailable": why}) for m, why in scores.unavailable.items()]
    return rows


def write_predictions(path: Path, predictions: list[str], references: list[list[str]]) -> None:
    with path.open("w") as handle:
        for i, (p, refs) in enumerate(zip(predictions, references, strict=True)):
            handle.write(json.dumps({"id": str(i), "prediction": p, "references": refs}) + "\n")


def dataset_label(cfg: CaptionDataConfig, grammar: str = "scenes") -> str:
    """The dataset name our rows carry: the real dataset's, or the synthetic one's with its grammar."""
    if cfg.dataset != SYNTHETIC:
        return cfg.dataset
    return SYNTHETIC if grammar == "scenes" else f"{SYNTHETIC}/{grammar}"


class CaptionData:
    """A prepared captioning data directory as a built paper keeps it: the vocabulary and each split read
    once, on first use (so that building a paper to score or size a model reads no images)."""

    def __init__(self, paper: CaptionPaper, data_dir: Path) -> None:
        self.paper, self.data_dir = paper, Path(data_dir)
        self._splits: dict[str, tuple[torch.Tensor, list[list[str]]]] = {}

    @cached_property
    def vocab(self) -> CaptionVocab:
        return load_vocab(self.data_dir)

    def split(self, name: str) -> tuple[torch.Tensor, list[list[str]]]:
        if name not in self._splits:
            self._splits[name] = self.paper.caption_split(self.data_dir, name)
        return self._splits[name]


class CaptionPaper(Paper):
    """What the captioners share: preparing shapes-scenes / Karpathy-JSON data and the captioning variant
    (`captioner`): one random reference per image per epoch, the model's own `loss(images, tokens)`, greedy
    exact match on the validation split. A paper implements `model(cfg, vocab_size)` (or `make_variants`)."""

    grammar: ClassVar[str] = "scenes"  # caption grammar of the synthetic shapes-scenes data

    def prepare(self, cfg: CaptionDataConfig, data_dir: Path, seed: int) -> DataInfo:
        return prepare_captions(cfg, data_dir, seed, grammar=self.grammar, settings=self.datasets,
                                key=f"{self.params_key}.dataset")

    def external_paths(self, cfg: CaptionDataConfig) -> list[Path]:
        return [] if cfg.dataset == SYNTHETIC else karpathy_paths(cfg, self.datasets)

    def caption_split(self, data_dir: Path, split: str) -> tuple[torch.Tensor, list[list[str]]]:
        """One prepared split: (images as the model takes them, reference captions per image)."""
        data = read_split(data_dir, split)
        return images_tensor(data), data.captions

    def model(self, cfg: CaptionConfig, vocab_size: int) -> torch.nn.Module:
        raise NotImplementedError(f"{self.name}: model() or make_variants()")

    def make_variants(self, cfg: CaptionConfig, data_dir: Path) -> list[Variant]:
        data = CaptionData(self, data_dir)
        return [self.captioner("main", cfg, data, lambda: self.model(cfg, len(data.vocab)))]

    def captioner(self, name: str, cfg: CaptionConfig, data: CaptionData, build, fraction: float = 1.0,
                  validate=None) -> Variant:
        """A variant trained on captions; `fraction` < 1 trains on that share of the (re-shuffled every epoch)
        training images; `validate(model)` defaults to greedy exact match on the validation split."""
        recipe = cfg.recipe_for(name)

        def batches(epoch: int, seed: int) -> EpochBatches:
            images, captions = data.split("train")
            n = min(len(images), round(len(images) * fraction))
            return EpochBatches(-(-n // recipe.batch_size), caption_batches(
                images, captions, data.vocab, recipe.batch_size, cfg.max_caption_len, epoch, seed, fraction))

        def exact_match_on_val(model) -> dict[str, float]:
            images, captions = data.split("val")
            return {"exact_match": exact_match(decode(model, images, data.vocab, 1, cfg.max_caption_len), captions)}

        return Variant(self.name, name, recipe, build, batches, lambda model, batch: model.loss(batch["images"], batch["tokens"]),
                       validate or exact_match_on_val)
