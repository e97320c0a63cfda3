"""MLflow in one place.

Tracking URI: `MLFLOW_TRACKING_URI` when set (a tracking server), else an embedded SQLite file
`sqlite:///<repo>/mlflow.db` with artifacts under `<repo>/mlartifacts`. One run per
(paper, profile, seed) spans the train and evaluate stages: train writes the run ids into its
output (`artifacts/<paper>/runs.json`) and evaluate reopens those runs.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from mmrepro.environment import environment

_BATCH = 500  # MLflow's log_batch limit is 1000 metrics; stay well below it
# The tracking client's budget per call: MLflow's defaults (120 s timeout, 7 retries with backoff 2) spend
# ~4 minutes on each call to an unreachable server. Ours: seconds. Each can be set in the environment
# under MLflow's own name; mlflow.timeout_s / mlflow.retries in params.yaml are the defaults otherwise.
CLIENT_BUDGET = {"MLFLOW_HTTP_REQUEST_TIMEOUT": 10, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": 2,
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": 1, "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": 0.5}


# MLflow's SQL store logs every database error with a full traceback before raising it; the stages report
# each failure themselves, in one line (mmrepro.publish.tracking_failure).
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def set_client_budget(timeout_s: int | None = None, retries: int | None = None) -> None:
    """Bound every tracking-client call (before the first one; an explicit environment value wins)."""
    chosen = {**CLIENT_BUDGET, **({"MLFLOW_HTTP_REQUEST_TIMEOUT": timeout_s} if timeout_s else {}),
              **({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": retries} if retries is not None else {})}
    for name, value in chosen.items():
        os.environ.setdefault(name, str(value))


def describe_failure(exc: BaseException) -> str:
    """The last line of the innermost cause: 'Connection refused', 'database is locked', ..."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text[-200:]}"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def display_uri() -> str:
    """The tracking URI as recorded in outputs: the default local store without this checkout's path."""
    uri = tracking_uri()
    local = f"sqlite:///{Path.cwd().resolve()}/"
    return "sqlite:///<repo>/" + uri[len(local):] if uri.startswith(local) else uri


def experiment_id(name: str) -> str:
    """Point MLflow at our store and return the experiment's id, creating it if needed."""
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
    """Start a new run (run_name) or reopen an existing one (run_id); the run is FAILED if the body raises.
    The run is tagged with this process (host, pid) so that a later stage can close it if it crashed."""
    exp_id = experiment_id(experiment)
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name, experiment_id=exp_id) as run:
        mlflow.set_tags({**(tags or {}), "mmrepro.host": socket.gethostname(), "mmrepro.pid": str(os.getpid())})
        yield run


def close_crashed_runs(experiment: str, paper: str | None = None, keep: str | None = None) -> list[str]:
    """Mark FAILED the RUNNING runs of `paper` (None: of any paper) whose process (on this host) is gone,
    except `keep` (a run that is being continued). Runs of other hosts and of live processes (parallel
    workers) are left alone."""
    from mmrepro.provenance import pid_alive

    client = MlflowClient(tracking_uri())
    closed = []
    query = "attributes.status = 'RUNNING'" + (f" and tags.paper = '{paper}'" if paper else "")
    for run in client.search_runs([experiment_id(experiment)], query):
        tags = run.data.tags
        if run.info.run_id == keep or "paper" not in tags or tags.get("mmrepro.host") != socket.gethostname():
            continue
        if not tags.get("mmrepro.pid", "").isdigit() or not pid_alive(int(tags["mmrepro.pid"])):
            client.set_terminated(run.info.run_id, "FAILED")
            closed.append(run.info.run_id)
    if closed:
        print(f"[{paper or 'all papers'}] closed as FAILED the runs of crashed attempts: {', '.join(closed)}")
    return closed


def log_params(params: Mapping[str, Any]) -> None:
    items = list(flatten(params).items())
    for start in range(0, len(items), 100):
        mlflow.log_params(dict(items[start : start + 100]))


class MetricBuffer:
    """Per-step metrics, flushed in batches: one SQLite transaction per step would dominate a CPU run."""

    def __init__(self, run_id: str, flush_every: int = 50, continued: bool = False):
        self.client = MlflowClient(mlflow.get_tracking_uri())
        self.run_id = run_id
        self.flush_every = flush_every
        self.pending: list[Metric] = []
        # a continued run (resume after a crash, a replay) may already hold some points: skip those
        self.logged: dict[str, set[tuple[int, float]]] | None = {} if continued else None

    def log(self, key: str, value: float, step: int) -> None:
        self.pending.append(Metric(key=key, value=float(value), timestamp=int(time.time() * 1000), step=step))
        if len(self.pending) >= self.flush_every:
            self.flush()

    def _new(self, metric: Metric) -> bool:
        if self.logged is None:
            return True
        if metric.key not in self.logged:
            self.logged[metric.key] = {(m.step, m.value) for m in self.client.get_metric_history(self.run_id, metric.key)}
        return (metric.step, metric.value) not in self.logged[metric.key]

    def flush(self) -> None:
        self.pending = [m for m in self.pending if self._new(m)]
        for start in range(0, len(self.pending), _BATCH):
            self.client.log_batch(self.run_id, metrics=self.pending[start : start + _BATCH])
        self.pending = []


def metric_key(*parts: str) -> str:
    """MLflow metric names allow [A-Za-z0-9_-. /]; anything else becomes '_'."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-. /")
    return "/".join("".join(c if c in allowed else "_" for c in p) for p in parts if p)
