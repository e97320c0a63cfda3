"""The contract every paper module fulfils.

A paper is one unit of the harness: its per-profile config schema, how its data is prepared,
the models it trains (its variants) and how the trained models are evaluated into `Result` rows that
the report sets beside the published numbers in `references/<paper>.yaml`.

Stages call, in order:
    prepare    paper.prepare(cfg, data_dir, seed)                      -> DataInfo   (writes data_dir)
    train      built = paper.build(cfg, data_dir)   (once: it keeps what it loads)
               for variant in built.variants: mmrepro.train.train_variant(variant, seed, ...)
                   variant.build_model(), variant.batches(epoch, seed) (sized), variant.loss(model, batch),
                   variant.validate(model) once per epoch, variant.recipe (optimizer, schedule, batch, ...)
    evaluate   built.evaluate(models, out_dir, seed)                   -> list[Result]

A variant is one trained model of the paper (for example `ctc` and `transducer` for the Conformer, or
`lp` and `conv` front-ends for visual speech); a paper with one model names it "main".
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mmrepro.datasets import DatasetSettings


RECIPE_KEYS = ("epochs", "batch_size", "lr", "optimizer", "betas", "eps", "momentum", "weight_decay", "schedule",
               "warmup_steps", "decay_every", "decay_rate", "min_lr_ratio", "accumulation", "precision", "grad_clip",
               "max_steps_per_epoch", "max_steps", "average_last")


class TrainConfig(BaseModel):
    """Fields the training loop reads (the training recipe); every paper's config extends this.

    A recipe is the optimizer (`optimizer`, `lr`, `betas`, `eps`, `momentum`, `weight_decay`), the LR
    schedule (`schedule`, `warmup_steps`, `decay_every`, `decay_rate`, `min_lr_ratio`), the effective batch
    (`batch_size` per step x `accumulation`), the precision, the length (`epochs`, caps) and the weights kept
    (`average_last`).
    `variant_recipes` overrides any of these for one variant (a paper whose models train differently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Fields that only the evaluate stage reads: how a trained model is decoded or sampled, and what is written
    # out. The validate stage resolves them into data/config/<paper>.decode.json, apart from the rest, so that
    # changing one reruns evaluate and not training; neither the training run's fingerprint nor a checkpoint's
    # includes them (`training_fields()`), and the evaluation run logs them (`decode.<key>`).
    decode_keys: ClassVar[frozenset[str]] = frozenset()

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
    average_last: int = Field(default=1, gt=0, description="the trained model is the average of its weights at the "
                              "ends of the last N epochs (checkpoint averaging, mmrepro.averaging); 1 = the last's")
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

    def training_fields(self) -> dict[str, Any]:
        """The config as JSON without its `decode_keys`: what training depends on."""
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in self.decode_keys}

    def decode_fields(self) -> dict[str, Any]:
        """The `decode_keys` as JSON: what only evaluation depends on."""
        return {k: v for k, v in self.model_dump(mode="json").items() if k in self.decode_keys}

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


Batch = Any  # whatever a variant's batches yield; the loop moves tensors in it to the device


class EpochBatches:
    """One epoch's batches with their number known before the first is made (`len()`): the loop sizes its
    LR schedule, progress bar and data-parallel shards from it. `batches` is iterated once, lazily."""

    def __init__(self, n: int, batches: Iterable[Batch]) -> None:
        self.n, self._batches = n, batches

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[Batch]:
        return iter(self._batches)


def _no_validation(model: torch.nn.Module) -> dict[str, float]:
    return {}


@dataclass(frozen=True)
class Variant:
    """One trained model of a built paper: everything the training loop needs, nothing else.

    `batches(epoch, seed)` is one epoch of training batches, shuffled deterministically from (seed, epoch),
    sized (`EpochBatches` or `mmrepro.data.loader.PlannedBatches`); `loss(model, batch)` is the scalar loss of
    one batch already on the model's device; `validate(model)` the cheap per-epoch metrics (model in eval mode,
    no grad); `recipe` this variant's training recipe (the config with its `variant_recipes` applied)."""

    paper: str  # the paper's registry name
    name: str  # checkpoint file name and MLflow key prefix
    recipe: TrainConfig
    build_model: Callable[[], torch.nn.Module]  # a freshly initialised model (the loop seeds torch first)
    batches: Callable[[int, int], Sized]
    loss: Callable[[torch.nn.Module, Batch], torch.Tensor]
    validate: Callable[[torch.nn.Module], dict[str, float]] = _no_validation
    # an evaluation instrument (a judge of other variants' outputs) trains with this seed in every run, so that
    # the metric it defines does not change with the run's training seed; None: the run's seed
    fixed_seed: int | None = None

    def training_seed(self, run_seed: int) -> int:
        return run_seed if self.fixed_seed is None else self.fixed_seed

    @property
    def key_prefix(self) -> str:
        """Prefix of its MLflow metric keys: none for a paper's only model ("main")."""
        return "" if self.name == "main" else self.name


@dataclass(frozen=True)
class BuiltPaper:
    """A paper constructed once with its resolved config and prepared data directory: its variants (built
    from what it loaded) and its evaluation."""

    paper: Paper
    cfg: TrainConfig
    data_dir: Path
    variants: list[Variant]

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"{self.paper.name} has no variant {name!r}; it has {[v.name for v in self.variants]}")

    def evaluate(self, models: dict[str, torch.nn.Module], out_dir: Path, seed: int) -> list[Result]:
        return self.paper.evaluate(models, self.cfg, self.data_dir, out_dir, seed)


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

    def build(self, cfg: TrainConfig, data_dir: Path) -> BuiltPaper:
        """The paper built once with its config and prepared data: its variants and its evaluation."""
        return BuiltPaper(self, cfg, Path(data_dir), self.make_variants(cfg, Path(data_dir)))

    @abstractmethod
    def make_variants(self, cfg: TrainConfig, data_dir: Path) -> list[Variant]:
        """The variants this config trains, each with `cfg.recipe_for(name)` as its recipe. Data is read when
        a variant first needs it (its batches, its validation, a vocabulary for its model), and kept: building
        a paper to size or score a model reads no training data."""

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


def iter_minibatches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled index tensors covering range(n); the last one may be short."""
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]
