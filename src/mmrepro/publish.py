"""Logging a paper's results to MLflow from what is on disk, so that nothing computed depends on the
tracking store: the evaluate stage calls `publish_evaluation` after writing its results, and
`python -m mmrepro.replay <paper>` calls it again later (after a failure, or into another store).

Idempotent: a metric point already in the run (same key, step and value) is not logged twice, and a
run that is not in the current store is found by its fingerprint tag or created there, with the
training's params and curves, so that re-evaluating against a different store never fails.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import mlflow
import requests
import sqlalchemy.exc
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mmrepro.config import Params
from mmrepro.errors import TrackingError
from mmrepro.pipeline import artifacts_dir, data_dir, eval_dir, metrics_path, plots_dir, provenance_path, read_info
from mmrepro.tracking import (
    MLFLOW_PARENT_RUN_ID,
    MetricBuffer,
    close_crashed_runs,
    describe_failure,
    display_uri,
    experiment_id,
    log_dataset_inputs,
    log_params,
    metric_key,
    open_run,
    run_tags,
    set_client_budget,
    tracking_uri,
)

TRACKING_ERRORS = (MlflowException, requests.exceptions.RequestException, sqlalchemy.exc.SQLAlchemyError)


@contextmanager
def tracking_failure(kept: str, also: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Turn a tracking-store failure into one line: the store, what went wrong, what was kept."""
    try:
        yield
    except (*TRACKING_ERRORS, *also) as exc:
        raise TrackingError(f"mlflow: logging to {display_uri()} failed ({describe_failure(exc)}); {kept}") from None


def _find_run(client: MlflowClient, experiment: str, run_id: str | None, fingerprint: str | None) -> str | None:
    if run_id:
        try:
            return client.get_run(run_id).info.run_id
        except MlflowException as exc:
            if "RESOURCE_DOES_NOT_EXIST" not in str(exc.error_code):
                raise
    if fingerprint:
        found = client.search_runs([experiment_id(experiment)], f"tags.`mmrepro.fingerprint` = '{fingerprint}'",
                                   max_results=1, order_by=["attributes.start_time DESC"])
        if found:
            return found[0].info.run_id
    return None


def _log_training(name: str, seed: int, record: dict, buffer: MetricBuffer) -> None:
    """A run created here (another store) gets what training recorded on disk: params, curves, weights."""
    log_params({"paper": name, "profile": record["profile"], "seed": seed, "dataset": record["dataset"],
                "cfg": {k: v for k, v in record["config"].items() if k not in record.get("decoding", {})}})
    for path in sorted(plots_dir(name).glob(f"*_seed{seed}.csv")):
        variant = path.stem.split("_", 2 if path.stem.startswith("train_loss") else 1)[-1].rsplit("_seed", 1)[0]
        prefix = "" if variant == "main" else variant
        with path.open() as handle:
            for row in csv.DictReader(handle):
                if path.stem.startswith("train_loss"):
                    buffer.log(metric_key(prefix, "train_loss"), float(row["loss"]), int(row["step"]))
                else:
                    for key, value in row.items():
                        if key not in ("epoch", "step"):
                            buffer.log(metric_key(prefix, "val", key), float(value), int(float(row["epoch"])))
    buffer.flush()
    weights = artifacts_dir(name) / f"seed{seed}"
    if weights.is_dir():
        mlflow.log_artifacts(str(weights), artifact_path="model")


def _log_once(run_id: str, metrics: dict[str, float], continued: bool) -> None:
    """Step-0 points into `run_id` without reopening it; a continued run skips the points it holds."""
    buffer = MetricBuffer(run_id, continued=continued)
    for metric, value in metrics.items():
        buffer.log(metric, value, 0)
    buffer.flush()


def _evaluation_run(client: MlflowClient, experiment: str, train_run: str, results_digest: str) -> str | None:
    """The evaluation run already logged for these results (a replay continues it instead of adding one)."""
    query = f"tags.train_run_id = '{train_run}' and tags.`mmrepro.results` = '{results_digest}'"
    found = client.search_runs([experiment_id(experiment)], query, max_results=1)
    return found[0].info.run_id if found else None


def publish_evaluation(params: Params, name: str) -> dict[str, str]:
    """Log reports/{provenance,metrics}/<paper>.json and reports/eval/<paper>/ for each seed: an evaluation run, a child
    of the seed's training run (so the training run's duration stays the training's), with the test splits
    as dataset inputs, the test metrics and the evaluation files; the test metrics are also copied onto the
    training run (without reopening it) for the runs table. {seed: training run id}."""
    provenance = provenance_path(name)
    record = json.loads(provenance.read_text())
    results_digest = hashlib.sha256(provenance.read_bytes()).hexdigest()[:32]
    fingerprints = record.get("run_fingerprints", {})
    experiment = params.mlflow.experiment
    client = MlflowClient(tracking_uri())
    info = read_info(name)
    logged = {}
    for seed in record["seeds"]:
        key = str(seed)
        train_run = _find_run(client, experiment, record["mlflow_runs"].get(key), fingerprints.get(key))
        close_crashed_runs(experiment, name, keep=train_run)
        if train_run is None:  # not in this store: a training run there, keyed by the same fingerprint
            tags = run_tags("train", {
                "paper": name, "profile": record["profile"], "seed": key, "dataset": record["dataset"],
                "data_fingerprint": record["data_fingerprint"], "code_hash": str(record.get("code_hash")),
                "mmrepro.fingerprint": str(fingerprints.get(key))})
            with open_run(experiment, f"{name}-{record['profile']}-seed{seed}", None, tags) as run:
                _log_training(name, seed, record, MetricBuffer(run.info.run_id, continued=True))
                train_run = run.info.run_id
        test_metrics = {}
        for row in record["results"]:
            value = row["per_seed"].get(key)
            if value is not None:
                variant = row["variant"] if row["variant"] != "main" else ""
                test_metrics[metric_key("test", variant, row["dataset"], row["split"], row["metric"])] = value
        previous = _evaluation_run(client, experiment, train_run, results_digest)
        tags = run_tags("evaluate", {"paper": name, "profile": record["profile"], "seed": key,
                                     "train_run_id": train_run, MLFLOW_PARENT_RUN_ID: train_run,
                                     "mmrepro.results": results_digest})
        with open_run(experiment, f"{name}-{record['profile']}-seed{seed}-evaluate", previous, tags) as run:
            if previous is None:
                log_dataset_inputs(info, data_dir(name), ("evaluation",))
                # how the models were decoded: a training run's params leave these out (they do not train)
                log_params({"decode": record.get("decoding", {})})
            _log_once(run.info.run_id, test_metrics, continued=previous is not None)
            seed_out = eval_dir(name) / f"seed{seed}"
            if seed_out.is_dir():
                mlflow.log_artifacts(str(seed_out), artifact_path="evaluation")
            mlflow.log_artifact(str(metrics_path(name)), artifact_path="metrics")
            mlflow.log_artifact(str(provenance), artifact_path="provenance")
        _log_once(train_run, test_metrics, continued=True)  # beside the training run's params in the runs table
        logged[key] = train_run
    return logged


def close_runs_of_crashed_stages(params: Params) -> None:
    """Best effort, for the validate stage (which calls it only when `store_may_hold_runs()`: a store that
    does not exist yet has no runs to close): a store that fails is reported in one line without failing
    validation (the next train/evaluate retries)."""
    set_client_budget(params.mlflow.timeout_s, params.mlflow.retries)
    try:
        close_crashed_runs(params.mlflow.experiment)
    except TRACKING_ERRORS as exc:
        print(f"warning: could not check {display_uri()} for runs of crashed stages ({describe_failure(exc)})",
              file=sys.stderr)
