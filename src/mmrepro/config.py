"""params.yaml: load, validate against a typed schema, resolve one paper's config for the profile.

A bad file is reported as one line naming the key and the problem (`ParamsError`); the stage
entry points turn it into exit code 2 before anything is written.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mmrepro.datasets import DatasetSettings
from mmrepro.papers import REGISTRY, get_paper
from mmrepro.papers.base import TrainConfig

PROFILES = ("smoke", "cpu", "full")
Profile = Literal["smoke", "cpu", "full"]


class ParamsError(ValueError):
    """A params.yaml problem, phrased as `<key>: <problem>`."""


class MlflowParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    experiment: str = Field(min_length=1, description="MLflow experiment name")
    # The tracking URI is not a param: it comes from MLFLOW_TRACKING_URI or defaults to
    # sqlite:///<repo>/mlflow.db, so that changing servers never invalidates DVC's cache.


class DatasetsParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    root: str = Field(default="datasets", min_length=1, description="external datasets; $MMREPRO_DATASETS overrides")
    identity: Literal["strict", "warn"] = Field(
        default="strict", description="strict: a split unlike the official release stops prepare; warn: go on")


class TrainParams(BaseModel):
    """How the train stage runs; none of it changes what a CPU run computes (README, "Training on several GPUs")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nproc: int = Field(default=1, ge=1, le=1024, description="processes (GPUs) on this node; > 1 runs under torchrun")
    checkpoint_steps: int | None = Field(default=None, gt=0, description="step checkpoint every N optimizer steps")
    checkpoint_minutes: float | None = Field(default=None, gt=0, description="step checkpoint every M minutes")
    loader_workers: int = Field(default=0, ge=0, le=256,
                                description="DataLoader workers per process for data decoded on the fly")


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: Profile
    run: list[str] | None = Field(default=None, min_length=1, description="papers to run; null = all")
    datasets: DatasetsParams = DatasetsParams()
    seeds: list[int] = Field(min_length=1, description="training seeds; one MLflow run each")
    data_seed: int = Field(ge=0, description="seed of data generation and splits")
    mlflow: MlflowParams
    train: TrainParams = TrainParams()
    papers: dict[str, dict[str, dict[str, Any]]] = Field(min_length=1)

    @field_validator("seeds")
    @classmethod
    def _distinct_non_negative(cls, seeds: list[int]) -> list[int]:
        if any(s < 0 for s in seeds):
            raise ValueError("seeds must be >= 0")
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds must be distinct")
        return seeds


def _loc(parts: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in parts)


def _first_error(exc: ValidationError, prefix: tuple[Any, ...] = ()) -> str:
    err = exc.errors()[0]
    loc = _loc(prefix + tuple(err["loc"]))
    got = "" if err["type"] == "missing" else f" (got {err['input']!r})"
    msg = "missing key" if err["type"] == "missing" else err["msg"]
    return f"{loc}: {msg}{got}"


def validate_params(raw: Any) -> Params:
    """Validate the whole file, including every paper's config under every profile."""
    if not isinstance(raw, dict):
        raise ParamsError("params.yaml: top level must be a mapping")
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(_first_error(exc)) from None
    for name in params.run or []:
        if name not in params.papers:
            raise ParamsError(f"run: {name!r} is not a paper under papers: (have: {', '.join(params.papers)})")
    if params.run is not None and len(set(params.run)) != len(params.run):
        raise ParamsError("run: papers must be distinct")
    for name, profiles in params.papers.items():
        if name not in REGISTRY:
            raise ParamsError(f"papers.{name}: unknown paper (known: {', '.join(sorted(REGISTRY))})")
        for profile in profiles:
            if profile not in PROFILES:
                raise ParamsError(f"papers.{name}.{profile}: unknown profile (known: {', '.join(PROFILES)})")
        for profile in PROFILES:
            if profile not in profiles:
                raise ParamsError(f"papers.{name}.{profile}: missing key")
            paper_config(params, name, profile)
    for name in selected_papers(params):  # the active profile's recipes must split over the processes
        _check_nproc(params, name)
    return params


def _check_nproc(params: Params, name: str) -> None:
    cfg, nproc = paper_config(params, name), params.train.nproc
    for variant in (None, *cfg.variant_recipes):
        acc = (cfg.recipe_for(variant) if variant else cfg).accumulation
        if acc % nproc:
            where = f"papers.{name}.{params.profile}" + (f".variant_recipes.{variant}" if variant else "")
            raise ParamsError(f"train.nproc: {nproc} processes do not divide {where}.accumulation = {acc} "
                              f"(each step takes accumulation micro-batches over all processes: for {nproc}, set batch_size / "
                              f"{nproc // math.gcd(acc, nproc)} and accumulation x the same)")


def selected_papers(params: Params) -> list[str]:
    """The papers this run covers: `run:` when given, else every paper in params.yaml, in file order."""
    return list(params.run) if params.run is not None else list(params.papers)


def dataset_settings(params: Params) -> DatasetSettings:
    return DatasetSettings.resolve(params.datasets.root, params.datasets.identity)


def paper_config(params: Params, name: str, profile: str | None = None) -> TrainConfig:
    """The typed config of paper `name` under `profile` (default: the active profile)."""
    profile = profile or params.profile
    cls = get_paper(name).Config
    try:
        return cls.model_validate(params.papers[name][profile])
    except ValidationError as exc:
        raise ParamsError(_first_error(exc, ("papers", name, profile))) from None


def load_params(path: Path | str = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    return validate_params(raw)
