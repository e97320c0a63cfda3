"""The contract every paper module fulfils.

A paper is one unit of the harness: its per-profile config schema, how its data is prepared,
how its model(s) are built and trained by the one training loop (`mmrepro.train`), and how the
trained model(s) are evaluated into `Result` rows that the report sets beside the published
numbers in `references/<paper>.yaml`.

Stages call, in order:
    prepare    paper.prepare(cfg, data_dir, seed)                 -> DataInfo   (writes data_dir)
    train      for each variant in paper.variants(cfg):
                   model = paper.build_model(cfg, data_dir, variant)
                   loop over paper.train_batches(...) calling paper.training_step(...)
                   paper.validate(...) once per epoch
    evaluate   paper.evaluate(models, cfg, data_dir, out_dir, seed) -> list[Result]

A variant is one trained model of the paper (for example `ctc` and `transducer` for the
Conformer, or `lp` and `conv` front-ends for visual speech). Most papers have one: "main".
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mmrepro.datasets import DatasetSettings


RECIPE_KEYS = ("epochs", "batch_size", "lr", "optimizer", "betas", "eps", "momentum", "weight_decay", "schedule",
               "warmup_steps", "decay_every", "decay_rate", "min_lr_ratio", "accumulation", "precision", "grad_clip",
               "max_steps_per_epoch", "max_steps")


class TrainConfig(BaseModel):
    """Fields the training loop reads (the training recipe); every paper's config extends this.

    A recipe is the optimizer (`optimizer`, `lr`, `betas`, `eps`, `momentum`, `weight_decay`), the LR
    schedule (`schedule`, `warmup_steps`, `decay_every`, `decay_rate`, `min_lr_ratio`), the effective batch
    (`batch_size` per step x `accumulation`), the precision and the length (`epochs`, caps).
    `variant_recipes` overrides any of these for one variant (a paper whose models train differently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(gt=0, le=100_000, description="passes over the training set")
    batch_size: int = Field(gt=0, le=65_536, description="examples per forward/backward (micro-batch)")
    lr: float = Field(gt=0, le=10.0, allow_inf_nan=False, description="peak learning rate")
    optimizer: Literal["adamw", "adam", "sgd", "rmsprop"] = "adamw"
    betas: tuple[float, float] = Field(default=(0.9, 0.999), description="Adam/AdamW betas")
    eps: float = Field(default=1e-8, gt=0, allow_inf_nan=False, description="Adam/AdamW/RMSprop epsilon")
    momentum: float = Field(default=0.0, ge=0, lt=1, description="SGD/RMSprop momentum")
    weight_decay: float = Field(default=0.0, ge=0, allow_inf_nan=False,
                                description="decoupled (AdamW) or L2 (adam, sgd, rmsprop) weight decay")
    schedule: Literal["cosine", "noam", "step", "constant"] = Field(
        default="cosine", description="after linear warm-up: cosine to min_lr_ratio, inverse square root "
                                      "(Transformer/Noam, peak lr at warmup_steps), step decay, or constant")
    warmup_steps: int = Field(default=0, ge=0, description="linear warm-up in optimizer steps")
    decay_every: int = Field(default=1, gt=0, description="step schedule: epochs between decays")
    decay_rate: float = Field(default=1.0, gt=0, le=1, description="step schedule: lr factor per decay")
    min_lr_ratio: float = Field(default=0.0, ge=0, le=1, description="cosine: final lr / peak lr")
    accumulation: int = Field(default=1, gt=0, le=4096,
                              description="micro-batches per optimizer step: effective batch = batch_size x this")
    precision: Literal["bf16", "fp32"] = Field(default="bf16", description="autocast dtype on CUDA; CPU runs fp32")
    grad_clip: float | None = Field(default=1.0, gt=0, description="max global grad norm; null = off")
    max_steps_per_epoch: int | None = Field(default=None, gt=0, description="cap; null = whole set")
    max_steps: int | None = Field(default=None, gt=0, description="cap on micro-batches in all; null = none")
    variant_recipes: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-variant overrides of the recipe keys above")

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in betas):
            raise ValueError("betas must be in [0, 1)")
        return betas

    @field_validator("variant_recipes")
    @classmethod
    def _recipe_keys_only(cls, overrides: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for variant, keys in overrides.items():
            unknown = sorted(set(keys) - set(RECIPE_KEYS))
            if unknown:
                raise ValueError(f"{variant}: not recipe keys: {', '.join(unknown)} (recipe keys: {', '.join(RECIPE_KEYS)})")
        return overrides

    @model_validator(mode="after")
    def _overrides_valid(self) -> TrainConfig:
        for variant in self.variant_recipes:  # validate every override now, not when the variant trains
            try:
                self.recipe_for(variant)
            except ValidationError as exc:
                err = exc.errors()[0]
                raise ValueError(f"variant_recipes.{variant}.{'.'.join(map(str, err['loc']))}: {err['msg']}") from None
        return self

    def recipe_for(self, variant: str) -> TrainConfig:
        """This config with `variant`'s recipe overrides applied (validated)."""
        overrides = self.variant_recipes.get(variant)
        if not overrides:
            return self
        data = {**self.model_dump(), **overrides, "variant_recipes": {}}
        return type(self).model_validate(data)


@dataclass(frozen=True)
class DataInfo:
    """What `prepare` made; saved as `<data_dir>/info.json` and logged to MLflow."""

    dataset: str
    splits: dict[str, int]  # split name -> number of examples
    details: dict[str, Any] = field(default_factory=dict)
    # "<dataset>/<split>" -> {"n", "sha256"} of each evaluated split (mmrepro.datasets.split_identity):
    # the report's identity check compares it with references/datasets.yaml
    identity: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    """One measured number: a row of `reports/metrics/<paper>.json` and of the comparison table.

    `metric` names must match the `metric` of the published entries in `references/<paper>.yaml`
    for the report to pair them; `variant` narrows the pairing when a paper has several models.
    """

    metric: str
    value: float | None  # None = could not be measured here; details["unavailable"] says why
    dataset: str
    split: str
    n_samples: int
    scale: str = "raw"  # "x100" for caption metrics and percentages, "raw" otherwise
    variant: str = "main"
    higher_is_better: bool = True
    details: dict[str, Any] = field(default_factory=dict)  # normalisation, decoding, ...


Batch = Any  # whatever a paper's train_batches yields; the loop moves tensors in it to the device


class Paper(ABC):
    """Base class of a paper module. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]  # registry key, also the params.yaml key and the DVC stage suffix
    title: ClassVar[str]  # "Gulati et al. 2020, Conformer"
    Config: ClassVar[type[TrainConfig]]  # per-profile config schema

    def __init__(self, datasets: DatasetSettings | None = None) -> None:
        self.datasets = datasets or DatasetSettings()  # where external datasets live (full profile)
        # set by the evaluate stage: False when a step cap cut training short; a paper's claims are then
        # reported as "not judged", never supported or contradicted
        self.training_completed = True
        # the recipe key prefix named in dataset errors, DVC's `file:key` form (`dvc exp run -S` takes it);
        # the pipeline sets the active profile's
        self.params_key = f"configs/{self.name}.yaml:full"

    def external_paths(self, cfg: TrainConfig) -> list[Path]:
        """The external folders/files (under `self.datasets.root`) that `prepare` reads with this config:
        the `locate` stage fingerprints them so that DVC notices a changed copy. Default: none."""
        return []

    @abstractmethod
    def prepare(self, cfg: TrainConfig, data_dir: Path, seed: int) -> DataInfo:
        """Write the prepared dataset into the (empty) `data_dir`. Deterministic in `seed`."""

    def variants(self, cfg: TrainConfig) -> list[str]:
        return ["main"]

    @abstractmethod
    def build_model(self, cfg: TrainConfig, data_dir: Path, variant: str) -> torch.nn.Module:
        """A freshly initialised model (the loop seeds torch before calling this)."""

    @abstractmethod
    def train_batches(
        self, cfg: TrainConfig, data_dir: Path, variant: str, epoch: int, seed: int
    ) -> Iterable[Batch]:
        """One epoch of training batches, shuffled deterministically from (seed, epoch)."""

    @abstractmethod
    def training_step(self, model: torch.nn.Module, batch: Batch, variant: str) -> torch.Tensor:
        """The scalar loss of one batch (already on the model's device)."""

    def validate(
        self, model: torch.nn.Module, cfg: TrainConfig, data_dir: Path, variant: str
    ) -> dict[str, float]:
        """Cheap per-epoch validation metrics (model is in eval mode, no grad). Default: none."""
        return {}

    @abstractmethod
    def evaluate(
        self,
        models: dict[str, torch.nn.Module],
        cfg: TrainConfig,
        data_dir: Path,
        out_dir: Path,
        seed: int,
    ) -> list[Result]:
        """Score the trained models on the test split(s); write predictions and other artifacts
        (sample predictions, per-example scores, images) into `out_dir`, which is logged to MLflow."""

    def departures(self, cfg: TrainConfig) -> list[str]:
        """Departures from the paper under `cfg` that change the published number (training data or
        pretraining the paper had and we do not, a different decoder, a missing pretrained encoder).
        Any of them makes every row of the paper `not comparable`. Default: none."""
        return []

    def steps_per_epoch(self, cfg: TrainConfig, data_dir: Path, variant: str) -> int | None:
        """Batches per epoch when known (for the progress bar and the LR schedule)."""
        return None


def iter_minibatches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled index tensors covering range(n); the last one may be short."""
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]
