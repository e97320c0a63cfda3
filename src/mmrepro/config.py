"""params.yaml and the papers' recipes: load, validate against typed schemas, resolve one paper's config.

`params.yaml` says what a run covers and how it runs; `configs/<paper>.yaml` holds the paper's recipe for
each profile (smoke, cpu, full); `papers.<paper>` in params.yaml overrides keys of the active profile's
recipe for one run. A paper's config is its recipe with those overrides, validated by the paper's schema.
The recipes live outside params.yaml so that `dvc exp show` lists params.yaml's few keys (and an
experiment's overrides) rather than every key of every recipe; the validate stage writes each selected
paper's resolved config to data/config/<paper>.json, which that paper's stages depend on.

A bad file is reported as one line naming the file, the key and the problem (`ParamsError`); the stage
entry points turn it into exit code 2 before anything is written.
"""

from __future__ import annotations

import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StrictInt, ValidationError, field_validator

from mmrepro.datasets import DatasetSettings
from mmrepro.papers import REGISTRY, get_paper
from mmrepro.papers.base import TrainConfig

PROFILES = ("smoke", "cpu", "full")
Profile = Literal["smoke", "cpu", "full"]


RECIPES = Path("configs")  # configs/<paper>.yaml, beside params.yaml


class ParamsError(ValueError):
    """A params.yaml or recipe problem, phrased as `<key>: <problem>`; `source` is the file it is in."""

    def __init__(self, message: str, source: str = "params.yaml"):
        super().__init__(message)
        self.source = source


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
    # overrides of the active profile's recipe, per paper: {<paper>: {<key>: value}}
    papers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    _recipes: dict[str, dict[str, dict[str, Any]]] = PrivateAttr(default_factory=dict)  # configs/<paper>.yaml

    @property
    def recipes(self) -> dict[str, dict[str, dict[str, Any]]]:
        """{paper: {profile: recipe}} as read from configs/, in registry order."""
        return self._recipes

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


def validate_params(raw: Any, recipes: dict[str, Any] | None = None, papers: list[str] | None = None) -> Params:
    """Validate params.yaml's content and every paper's recipe under every profile (`recipes`: {paper:
    {profile: recipe}}; default: read from configs/). `papers`: check only these papers' recipes, for a
    stage of one paper: the validate stage checked them all before it, and checking a paper imports its
    module (its models: ~0.2 s of CPU for the nine, in each of a run's ~28 stage processes)."""
    if not isinstance(raw, dict):
        raise ParamsError("top level must be a mapping")
    recipes = load_recipes() if recipes is None else recipes
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(_first_error(exc)) from None
    params._recipes = _checked_recipes(recipes)
    for name in params.run or []:
        if name not in params.recipes:
            raise ParamsError(f"run: {name!r} has no recipe file {RECIPES / f'{name}.yaml'} "
                              f"(have: {', '.join(params.recipes)})")
    if params.run is not None and len(set(params.run)) != len(params.run):
        raise ParamsError("run: papers must be distinct")
    for name, overrides in params.papers.items():
        if name not in params.recipes:
            raise ParamsError(f"papers.{name}: unknown paper (known: {', '.join(sorted(params.recipes))})")
        if not isinstance(overrides, dict):
            raise ParamsError(f"papers.{name}: must be a mapping of recipe keys to values (got {overrides!r})")
    checked = [name for name in params.recipes if papers is None or name in papers]
    for name in checked:
        for profile in PROFILES:
            paper_config(params, name, profile)
    for name in selected_papers(params):  # the active profile's recipes must split over the processes
        if name in checked:
            _check_nproc(params, name)
    return params


def _checked_recipes(recipes: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """The recipes in registry order, after checking that each names a known paper and every profile."""
    for name, profiles in recipes.items():
        source = str(RECIPES / f"{name}.yaml")
        if name not in REGISTRY:
            raise ParamsError(f"unknown paper {name!r} (known: {', '.join(sorted(REGISTRY))})", source)
        if not isinstance(profiles, dict):
            raise ParamsError("top level must be a mapping of profiles to recipes", source)
        for profile in profiles:
            if profile not in PROFILES:
                raise ParamsError(f"{profile}: unknown profile (known: {', '.join(PROFILES)})", source)
        for profile in PROFILES:
            if not isinstance(profiles.get(profile), dict):
                raise ParamsError(f"{profile}: missing (every profile needs a recipe mapping)", source)
    if not recipes:
        raise ParamsError(f"no recipes: every paper needs {RECIPES}/<paper>.yaml", str(RECIPES))
    return {name: recipes[name] for name in REGISTRY if name in recipes}


def load_recipes(root: Path = RECIPES) -> dict[str, Any]:
    """{paper: {profile: recipe}} from `root`/<paper>.yaml (duplicate keys rejected, YAML errors located)."""
    if not root.is_dir():
        raise ParamsError(f"folder not found (every paper's recipes are in {RECIPES}/<paper>.yaml)", str(root))
    return {path.stem: _read_yaml(path, str(RECIPES / path.name)) for path in sorted(root.glob("*.yaml"))}


def _read_yaml(path: Path, source: str) -> Any:
    try:
        return yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except ParamsError as exc:  # a duplicate key
        raise ParamsError(str(exc), source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        raise ParamsError(f"{where}not valid YAML ({problem})", source) from None


def _check_nproc(params: Params, name: str) -> None:
    cfg, nproc = paper_config(params, name), params.train.nproc
    for variant in (None, *cfg.variant_recipes):
        acc = (cfg.recipe_for(variant) if variant else cfg).accumulation
        if acc % nproc:
            where = f"{RECIPES / name}.yaml's {params.profile}" + (f".variant_recipes.{variant}" if variant else "")
            raise ParamsError(f"train.nproc: {nproc} processes do not divide {where}.accumulation = {acc} "
                              f"(each step takes accumulation micro-batches over all processes: for {nproc}, set batch_size / "
                              f"{nproc // math.gcd(acc, nproc)} and accumulation x the same)")


def selected_papers(params: Params) -> list[str]:
    """The papers this run covers: `run:` when given, else every paper with a recipe file."""
    return list(params.run) if params.run is not None else list(params.recipes)


def dataset_settings(params: Params) -> DatasetSettings:
    return DatasetSettings.resolve(params.datasets.root, params.datasets.identity)


def paper_config(params: Params, name: str, profile: str | None = None) -> TrainConfig:
    """The typed config of paper `name` under `profile` (default: the active profile): its recipe, with
    params.yaml's overrides when `profile` is the active one."""
    profile = profile or params.profile
    recipe = params.recipes[name][profile]
    overrides = params.papers.get(name, {}) if profile == params.profile else {}
    cls, source = get_paper(name).Config, str(RECIPES / f"{name}.yaml")
    try:
        check_scalars(cls, recipe, profile)
    except ParamsError as exc:
        raise ParamsError(str(exc), source) from None
    check_scalars(cls, overrides, f"papers.{name}")
    try:
        return cls.model_validate({**recipe, **overrides})
    except ValidationError as exc:
        if exc.errors()[0]["loc"][:1] and exc.errors()[0]["loc"][0] in overrides:
            raise ParamsError(_first_error(exc, ("papers", name))) from None
        raise ParamsError(_first_error(exc, (profile,)), source) from None


def load_params(path: Path | str = "params.yaml", papers: list[str] | None = None) -> Params:
    """params.yaml and the recipes in configs/ beside it, validated (`papers`: only these papers' recipes)."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError("file not found")
    raw = _read_yaml(path, "params.yaml")
    return validate_params(raw, load_recipes(path.parent / RECIPES), papers)
