"""MLflow in one place.

Tracking URI: `MLFLOW_TRACKING_URI` when set (a tracking server), else an embedded SQLite file
`sqlite:///<repo>/mlflow.db` with artifacts under `<repo>/mlartifacts`. One run per
(paper, profile, seed) spans the train and evaluate stages: train writes the run ids into its
output (`artifacts/<paper>/runs.json`) and evaluate reopens those runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrepro.environment import environment

if TYPE_CHECKING:
    import mlflow

# mlflow is imported inside the functions that use it: importing it costs ~1.2 s of CPU, which the stages
# that never log (locate, prepare) should not pay at start-up.

_BATCH = 500  # MLflow's log_batch limit is 1000 metrics; stay well below it


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def experiment_id(name: str) -> str:
    """Point MLflow at our store and return the experiment's id, creating it if needed."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    artifact_location = None
    if uri.startswith("sqlite:"):  # local store: keep artifacts beside the database, not in ./mlruns
        artifact_location = (Path.cwd().resolve() / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=artifact_location)


def flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{'a': {'b': 1}} -> {'a.b': '1'} (MLflow params are flat strings)."""
    flat: dict[str, str] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def run_tags(stage: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = environment()
    tags = {
        "git_sha": env["git_sha"],
        "git_dirty": str(env["git_dirty"]).lower(),
        "dvc_stage": stage,
        "python": env["python"],
        "device": env["device"],
        "cuda": env["cuda"],
    }
    tags.update({f"pkg.{k}": v for k, v in env["packages"].items()})
    tags.update(extra or {})
    return tags


@contextmanager
def open_run(
    experiment: str, run_name: str | None = None, run_id: str | None = None, tags: Mapping[str, str] | None = None
) -> Iterator[mlflow.ActiveRun]:
    """Start a new run (run_name) or reopen an existing one (run_id); the run is FAILED if the body raises."""
    import mlflow

    exp_id = experiment_id(experiment)
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name, experiment_id=exp_id) as run:
        if tags:
            mlflow.set_tags(dict(tags))
        yield run


def log_params(params: Mapping[str, Any]) -> None:
    import mlflow

    items = list(flatten(params).items())
    for start in range(0, len(items), 100):
        mlflow.log_params(dict(items[start : start + 100]))


class MetricBuffer:
    """Per-step metrics, flushed in batches: one SQLite transaction per step would dominate a CPU run."""

    def __init__(self, run_id: str, flush_every: int = 50):
        import mlflow
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        self._metric = Metric
        self.client = MlflowClient(mlflow.get_tracking_uri())
        self.run_id = run_id
        self.flush_every = flush_every
        self.pending: list = []

    def log(self, key: str, value: float, step: int) -> None:
        self.pending.append(self._metric(key=key, value=float(value), timestamp=int(time.time() * 1000), step=step))
        if len(self.pending) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        for start in range(0, len(self.pending), _BATCH):
            self.client.log_batch(self.run_id, metrics=self.pending[start : start + _BATCH])
        self.pending = []


def metric_key(*parts: str) -> str:
    """MLflow metric names allow [A-Za-z0-9_-. /]; anything else becomes '_'."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-. /")
    return "/".join("".join(c if c in allowed else "_" for c in p) for p in parts if p)
