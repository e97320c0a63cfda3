"""MLflow in one place.

Tracking URI: `MLFLOW_TRACKING_URI` when set (a tracking server), else an embedded SQLite file
`sqlite:///<repo>/mlflow.db` with artifacts under `<repo>/mlartifacts` (<repo>: the repository DVC runs
in, also for queued experiments, which run in temporary copies). One training run per
(paper, profile, seed): train writes the run ids into its output (`artifacts/<paper>/runs.json`);
evaluate starts a child run of each (`mlflow.parentRunId`) so that the training run's duration is the
training's, and copies the test metrics onto the training run for comparison in the runs table.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrepro.environment import environment

if TYPE_CHECKING:
    import mlflow
    from mlflow.entities import Metric

# mlflow is imported inside the functions that use it: importing it costs ~1.2 s of CPU, which the stages
# that never log (locate, prepare) should not pay at start-up.

_BATCH = 500  # MLflow's log_batch limit is 1000 metrics; stay well below it
# MLflow's own tag names (mlflow.utils.mlflow_tags), spelled out so that this module loads without mlflow
MLFLOW_GIT_COMMIT, MLFLOW_GIT_DIRTY = "mlflow.source.git.commit", "mlflow.source.git.dirty"
MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE = "mlflow.parentRunId", "mlflow.note.content"
# MLflow 3's UI opens an experiment in the view this tag names; without it, it may pick the GenAI view.
EXPERIMENT_KIND, TRAINING_VIEW = "mlflow.experimentKind", "custom_model_development"


def repo_root() -> Path:
    """The repository the pipeline belongs to: DVC_ROOT, which `dvc exp run --queue` sets to the user's
    repository while its stages run in a temporary copy (whose files are deleted afterwards), else cwd."""
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


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
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlflow.db'}"


def store_may_hold_runs() -> bool:
    """False only for the default local store before its file exists: no run to look at, and no reason to pay
    MLflow's import (~2 s of CPU) to find that out."""
    return bool(os.environ.get("MLFLOW_TRACKING_URI")) or (repo_root() / "mlflow.db").is_file()


def display_uri() -> str:
    """The tracking URI as recorded in outputs: the default local store without this checkout's path."""
    uri = tracking_uri()
    local = f"sqlite:///{repo_root()}/"
    return "sqlite:///<repo>/" + uri[len(local):] if uri.startswith(local) else uri


def experiment_id(name: str) -> str:
    """Point MLflow at our store and return the experiment's id, creating it if needed."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.tags.get(EXPERIMENT_KIND) != TRAINING_VIEW:
            client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND, TRAINING_VIEW)
        return exp.experiment_id
    artifact_location = None
    if uri.startswith("sqlite:"):  # local store: keep artifacts beside the database, not in ./mlruns
        artifact_location = (repo_root() / "mlartifacts").as_uri()
    try:
        return client.create_experiment(name, artifact_location=artifact_location, tags={EXPERIMENT_KIND: TRAINING_VIEW})
    except mlflow.exceptions.MlflowException:
        # another process (a parallel queue worker) created it since the lookup above
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


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
        **source_tags(env),
        "dvc_stage": stage,
        "python": env["python"],
        "device": env["device"],
        "cuda": env["cuda"],
    }
    tags.update({f"pkg.{k}": v for k, v in env["packages"].items()})
    tags.update(dvc_experiment_tags())
    tags.update(extra or {})
    return tags


def source_tags(env: Mapping[str, Any]) -> dict[str, str]:
    """MLflow's own source tags (the UI shows them as the run's commit); MLflow sets the commit itself only
    for a new run whose script it can trace to git, and never the dirty flag."""
    return {MLFLOW_GIT_COMMIT: env["git_sha"], MLFLOW_GIT_DIRTY: str(env["git_dirty"]).lower()}


def dvc_experiment_tags() -> dict[str, str]:
    """The DVC experiment a run belongs to, from what `dvc exp run` puts in its stages' environment."""
    tags = {}
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp"] = os.environ["DVC_EXP_NAME"]
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        tags["dvc_exp_baseline"] = os.environ["DVC_EXP_BASELINE_REV"]
    return tags


@contextmanager
def open_run(
    experiment: str, run_name: str | None = None, run_id: str | None = None, tags: Mapping[str, str] | None = None
) -> Iterator[mlflow.ActiveRun]:
    """Start a new run (run_name) or reopen an existing one (run_id); the run is FAILED if the body raises.
    The run is tagged with this process (host, pid) so that a later stage can close it if it crashed."""
    import mlflow

    exp_id = experiment_id(experiment)
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name, experiment_id=exp_id) as run:
        mlflow.set_tags({**(tags or {}), "mmrepro.host": socket.gethostname(), "mmrepro.pid": str(os.getpid())})
        yield run


def split_context(split: str) -> str:
    """What a split is used for, as MLflow's dataset context: training and validation splits are read by
    the train stage, every other split (test, heldout, ...) only by evaluate."""
    if split.startswith("train"):
        return "training"
    return "validation" if split.startswith(("val", "dev")) else "evaluation"


def log_dataset_inputs(info: Mapping[str, Any], data_path: Path, contexts: tuple[str, ...]) -> None:
    """The prepared splits used in `contexts` as MLflow dataset inputs of the active run (the run page's
    "Datasets used"): name `<dataset>/<split>`, digest the split's content fingerprint where prepare
    recorded one, else the prepared data's."""
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    from mmrepro.datasets import shown_path

    with warnings.catch_warnings():  # a file URI matches two registered local sources; either is right
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(shown_path(data_path))  # relative to the checkout: no local path
    for split, n_examples in info["splits"].items():
        if split_context(split) not in contexts:
            continue
        key = f"{info['dataset']}/{split}"
        fingerprint = info.get("identity", {}).get(key, {}).get("sha256") or info["fingerprint"]
        dataset = MetaDataset(source, name=key, digest=fingerprint[:32])  # MLflow keeps at most 36 chars
        tags = {"split": split, "n_examples": str(n_examples)}
        try:
            mlflow.log_input(dataset, context=split_context(split), tags=tags)
        except mlflow.exceptions.MlflowException:
            # The store creates a dataset on first use by check-then-insert: two runs logging the same
            # dataset at once (two queue workers) can collide on its unique key. Then it exists: link it.
            time.sleep(1.0)
            mlflow.log_input(dataset, context=split_context(split), tags=tags)


def log_trained_model(model, name: str) -> str:
    """The trained model as an MLflow PyTorch model of the active run, moved to the CPU first (so that it
    loads on any machine); returns its URI (`mlflow.pytorch.load_model(uri)` loads it back where mmrepro is
    importable). Pickled, not 'pt2':
    pt2 traces forward with one example input, and our models' forward signatures differ per paper."""
    import mlflow.pytorch
    import torch

    pytorch_logger = logging.getLogger("mlflow.pytorch")
    level = pytorch_logger.level
    pytorch_logger.setLevel(logging.ERROR)  # its pickle warning on every run: the choice is deliberate (above)
    requirements = [f"torch=={torch.__version__.split('+')[0]}"]
    try:
        with _only_pinned_packages_checked(requirements):
            info = mlflow.pytorch.log_model(model.to("cpu"), name=name, serialization_format="pickle",
                                            pip_requirements=requirements)
    finally:
        pytorch_logger.setLevel(level)
    return info.model_uri


@contextmanager
def _only_pinned_packages_checked(requirements: list[str]) -> Iterator[None]:
    """MLflow checks a logged model's requirements against the installed versions through a module ->
    package map of every installed distribution (importlib.metadata.packages_distributions(): 1.5 s of
    every train stage, a third of a smoke train stage's own work). Our requirements are given, not
    inferred (`name==version` pins, to which MLflow adds its own), so the map needs only their packages: it
    is seeded for the call and put back after it (MLflow's inference of other models' requirements in this
    process still sees every package).
    A private MLflow global: where an MLflow release renames it, this does nothing and MLflow scans."""
    try:
        from mlflow.utils import requirements_utils
    except ImportError:  # pragma: no cover - an MLflow without the module: nothing to seed
        yield
        return
    if getattr(requirements_utils, "_MODULES_TO_PACKAGES", ()) is not None:  # renamed, or already scanned
        yield
        return
    packages = {pin.split("==")[0] for pin in requirements} | {"mlflow"}
    requirements_utils._MODULES_TO_PACKAGES = {package: [package] for package in packages}
    try:
        yield
    finally:
        requirements_utils._MODULES_TO_PACKAGES = None
        requirements_utils._PACKAGES_TO_MODULES = None


def link_runs(runs: Mapping[str, Mapping[str, str]]) -> None:
    """Link the active (report) run to the runs it summarises: a `runs.<paper>` tag with their ids and a
    note listing them, as links when the tracking URI is a server."""
    import mlflow

    uri = tracking_uri()
    server = uri.rstrip("/") if uri.startswith(("http://", "https://")) else None
    # the paper runs are in the report run's experiment (same name, same store); not looked up, so that a
    # report built from metrics pulled from elsewhere still works
    exp_id = mlflow.active_run().info.experiment_id
    lines = ["Runs summarised by this report:", ""]
    for paper, by_seed in runs.items():
        mlflow.set_tag(f"runs.{paper}", ",".join(by_seed.values()))
        for seed, run_id in by_seed.items():
            target = f"{server}/#/experiments/{exp_id}/runs/{run_id}" if server else None
            label = f"{paper} seed {seed}: {run_id}"
            lines.append(f"- [{label}]({target})" if target else f"- {label}")
    mlflow.set_tag(MLFLOW_RUN_NOTE, "\n".join(lines))


def close_crashed_runs(experiment: str, paper: str | None = None, keep: str | None = None) -> list[str]:
    """Mark FAILED the RUNNING runs of `paper` (None: of any paper) whose process (on this host) is gone,
    except `keep` (a run that is being continued). Runs of other hosts and of live processes (parallel
    workers) are left alone."""
    from mlflow.tracking import MlflowClient

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
    import mlflow

    items = list(flatten(params).items())
    for start in range(0, len(items), 100):
        mlflow.log_params(dict(items[start : start + 100]))


class MetricBuffer:
    """Per-step metrics, flushed in batches: one SQLite transaction per step would dominate a CPU run."""

    def __init__(self, run_id: str, flush_every: int = 50, continued: bool = False, one_per_step: bool = False):
        import mlflow
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        self._metric = Metric
        self.client = MlflowClient(mlflow.get_tracking_uri())
        self.run_id = run_id
        self.flush_every = flush_every
        self.pending: list = []
        # a continued run (resume after a crash, a replay) may already hold some points: skip those. Training
        # (`one_per_step`) skips any step the run holds: a resume recomputes the steps after its checkpoint,
        # which equal the points sent before the crash on CPU, but need not on a GPU (non-deterministic kernels)
        self.logged: dict[str, set] | None = {} if continued else None
        self._point = (lambda m: m.step) if one_per_step else (lambda m: (m.step, m.value))

    def log(self, key: str, value: float, step: int) -> None:
        self.pending.append(self._metric(key=key, value=float(value), timestamp=int(time.time() * 1000), step=step))
        if len(self.pending) >= self.flush_every:
            self.flush()

    def _new(self, metric: Metric) -> bool:
        if self.logged is None:
            return True
        if metric.key not in self.logged:
            self.logged[metric.key] = {self._point(m) for m in self.client.get_metric_history(self.run_id, metric.key)}
        if self._point(metric) in self.logged[metric.key]:
            return False
        self.logged[metric.key].add(self._point(metric))  # and once within this buffer too
        return True

    def flush(self) -> None:
        self.pending = [m for m in self.pending if self._new(m)]
        for start in range(0, len(self.pending), _BATCH):
            self.client.log_batch(self.run_id, metrics=self.pending[start : start + _BATCH])
        self.pending = []


def metric_key(*parts: str) -> str:
    """MLflow metric names allow [A-Za-z0-9_-. /]; anything else becomes '_'."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-. /")
    return "/".join("".join(c if c in allowed else "_" for c in p) for p in parts if p)
