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
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field

from mmrepro.datasets import DatasetSettings


class TrainConfig(BaseModel):
    """Fields the training loop reads; every paper's config extends this."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(gt=0, description="passes over the training set")
    batch_size: int = Field(gt=0)
    lr: float = Field(gt=0, description="peak learning rate (AdamW)")
    weight_decay: float = Field(default=0.0, ge=0)
    warmup_steps: int = Field(default=0, ge=0, description="linear warm-up, then cosine decay to 0")
    grad_clip: float | None = Field(default=1.0, gt=0, description="max global grad norm; null = off")
    max_steps_per_epoch: int | None = Field(default=None, gt=0, description="cap; null = whole set")


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
        # params prefix named in dataset errors; the pipeline sets the active profile's
        self.params_key = f"papers.{self.name}.full"

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

    def steps_per_epoch(self, cfg: TrainConfig, data_dir: Path, variant: str) -> int | None:
        """Batches per epoch when known (for the progress bar and the LR schedule)."""
        return None


def iter_minibatches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled index tensors covering range(n); the last one may be short."""
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]
