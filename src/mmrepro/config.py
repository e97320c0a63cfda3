"""params.yaml: load, validate against a typed schema, resolve one paper's config for the profile.

A bad file is reported as one line naming the key and the problem (`ParamsError`); the stage
entry points turn it into exit code 2 before anything is written.
"""

from __future__ import annotations

import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from mmrepro.datasets import DatasetSettings
from mmrepro.papers import REGISTRY, get_paper
from mmrepro.papers.base import TrainConfig

PROFILES = ("smoke", "cpu", "full")
Profile = Literal["smoke", "cpu", "full"]


class ParamsError(ValueError):
    """A params.yaml problem, phrased as `<key>: <problem>`."""


# numpy takes seeds below 2**32 and the training loop reseeds torch with seed * 100_003 + epoch,
# which stays far inside torch's 64-bit range for these.
SEED_MAX = 2**32 - 1
# Upper bounds on paper config integers by field name (suffix match): a value past these would exhaust
# memory or time long before it finished, so it is a typo, not a setting. Epochs and batch sizes are
# bounded in TrainConfig itself; every other integer is capped at INT_MAX.
INT_LIMITS = {
    "image_size": 4096, "_size": 1 << 20, "n_train": 50_000_000, "n_val": 10_000_000, "n_test": 10_000_000,
    "n_dev": 10_000_000, "_dim": 65_536, "d_model": 65_536, "_layers": 1024, "n_layer": 1024, "_heads": 1024,
    "n_head": 1024, "_per_epoch": 100_000_000, "_bytes": 1 << 40, "context": 1 << 20, "_steps": 100_000_000,
}
INT_MAX = 2**31 - 1


def _int_limit(key: str) -> int:
    return next((v for k, v in INT_LIMITS.items() if key == k or (k.startswith("_") and key.endswith(k))), INT_MAX)


def _scalar_kinds(annotation: Any) -> set[type]:
    """The scalar types a field's annotation admits (int | None -> {int}; bool stays bool)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return set().union(*(_scalar_kinds(a) for a in typing.get_args(annotation)))
    return {annotation} if annotation in (bool, int, float) else set()


def check_scalars(model: type[BaseModel], data: Any, where: str) -> None:
    """What pydantic's lax mode lets through: a boolean as a number (`epochs: true` is 1), an infinite
    or NaN float, an integer too large to run. Raises ParamsError naming the key."""
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        field = model.model_fields.get(key)
        if key == "variant_recipes" and isinstance(value, dict):
            for variant, overrides in value.items():
                check_scalars(model, overrides, f"{where}.{key}.{variant}")
        if field is None:
            continue
        kinds, loc = _scalar_kinds(field.annotation), f"{where}.{key}"
        if isinstance(value, bool) and kinds and bool not in kinds:
            raise ParamsError(f"{loc}: expected a number, got a boolean ({value!r})")
        if isinstance(value, float) and float in kinds and not math.isfinite(value):
            raise ParamsError(f"{loc}: must be a finite number (got {value!r})")
        if isinstance(value, int) and not isinstance(value, bool) and int in kinds and value > _int_limit(key):
            raise ParamsError(f"{loc}: {value} is above the limit {_int_limit(key)}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that rejects a key given twice in one mapping (YAML keeps the last; DVC refuses)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                mark = key_node.start_mark
                raise ParamsError(f"line {mark.line + 1}, column {mark.column + 1}: duplicate key {key!r}")
            seen[key] = True
        return super().construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _UniqueKeyLoader.construct_mapping)


class MlflowParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    experiment: str = Field(min_length=1, description="MLflow experiment name")
    # the tracking client's budget per call ($MLFLOW_HTTP_REQUEST_TIMEOUT / _MAX_RETRIES override these)
    timeout_s: int = Field(default=10, gt=0, le=600, description="seconds per tracking-server request")
    retries: int = Field(default=2, ge=0, le=10, description="retries of a failed tracking-server request")
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
    seeds: list[StrictInt] = Field(min_length=1, description="training seeds; one MLflow run each")
    data_seed: StrictInt = Field(ge=0, le=SEED_MAX, description="seed of data generation and splits")
    mlflow: MlflowParams
    train: TrainParams = TrainParams()
    papers: dict[str, dict[str, dict[str, Any]]] = Field(min_length=1)

    @field_validator("seeds")
    @classmethod
    def _distinct_non_negative(cls, seeds: list[int]) -> list[int]:
        if any(s < 0 or s > SEED_MAX for s in seeds):
            raise ValueError(f"seeds must be in [0, {SEED_MAX}]")
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
        raise ParamsError("top level must be a mapping")
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
    check_scalars(cls, params.papers[name][profile], f"papers.{name}.{profile}")
    try:
        return cls.model_validate(params.papers[name][profile])
    except ValidationError as exc:
        raise ParamsError(_first_error(exc, ("papers", name, profile))) from None


def load_params(path: Path | str = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError("file not found")
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ParamsError(f"{where}not valid YAML ({getattr(exc, 'problem', None) or exc.__class__.__name__})") from None
    return validate_params(raw)
