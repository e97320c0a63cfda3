"""Sharing runs beyond one machine, with the real tools: a DVC remote on S3 (a real moto S3 server on
127.0.0.1, the only stand-in: no cloud here), a real `mlflow server` process that every stage logs to,
and DVC's experiment queue running two experiments as two parallel workers. One prepared repository
(StarCapNet only, smoke profile) serves every test of the module; the tests run in file order."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import boto3
import mlflow.pytorch
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from .conftest import VENV_BIN, copy_repo, free_port, stage_env, start_mlflow_server, wait_for_port

pytestmark = pytest.mark.slow
PAPER = "starcapnet"
BUCKET = "mmrepro-shared"
# moto accepts any credentials; dvc-s3 (botocore) reads them from the environment like a real deployment
REPRO_COMMIT: dict[str, str] = {}  # the commit the repo fixture's `dvc repro` ran at
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _run(cmd: list[str], cwd: Path, timeout: int = 600, **env: str) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=stage_env(**env), timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def _dvc(*args: str, cwd: Path, **env: str) -> str:
    return _run([str(VENV_BIN / "dvc"), *args], cwd, **env)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server with one empty bucket; yields its endpoint URL."""
    port = free_port()
    server = subprocess.Popen([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=stage_env())
    try:
        wait_for_port(port, server)
        endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=endpoint, **_boto_credentials()).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=30)


def _boto_credentials() -> dict[str, str]:
    return {"aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"],
            "region_name": S3_ENV["AWS_DEFAULT_REGION"]}


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    server, uri = start_mlflow_server(tmp_path_factory.mktemp("mlflow"))
    try:
        yield uri
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def repo(tmp_path_factory, s3, tracking) -> Path:
    """A copy of this checkout reduced to StarCapNet's smoke profile, with the S3 remote configured as the
    README says, after one `dvc repro` logged to the tracking server."""
    root = copy_repo(tmp_path_factory.mktemp("repo"))
    params = yaml.safe_load((root / "params.yaml").read_text())
    params.update(profile="smoke", run=[PAPER], papers={PAPER: params["papers"][PAPER]})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _dvc("remote", "add", "-d", "shared", f"s3://{BUCKET}/dvc", cwd=root)
    _dvc("remote", "modify", "shared", "endpointurl", s3, cwd=root)
    _run(["git", "commit", "-qam", "starcapnet smoke, S3 remote"], root)
    REPRO_COMMIT["sha"] = _run(["git", "rev-parse", "HEAD"], root).strip()
    _dvc("repro", cwd=root, MLFLOW_TRACKING_URI=tracking)
    return root


def _runs(uri: str, where: str) -> list:
    client = MlflowClient(uri)
    return client.search_runs([client.get_experiment_by_name("mmrepro").experiment_id], where)


def test_mlflow_views_of_a_pipeline_run(repo, tracking):
    client = MlflowClient(tracking)
    exp = client.get_experiment_by_name("mmrepro")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI's training view
    [train] = _runs(tracking, f"tags.dvc_stage = 'train' and tags.paper = '{PAPER}'")
    tags = train.data.tags
    assert tags["mlflow.source.git.commit"] == REPRO_COMMIT["sha"]
    assert tags["mlflow.source.git.dirty"] == "false" and "git_sha" not in tags and "git_dirty" not in tags
    assert "dvc_exp" not in tags  # a plain `dvc repro` is no DVC experiment

    info = json.loads((repo / "data" / PAPER / "info.json").read_text())
    inputs = {i.dataset.name: (i.dataset.digest, {t.key: t.value for t in i.tags}) for i in train.inputs.dataset_inputs}
    assert set(inputs) == {"counting-dots/train", "counting-dots/val"}
    assert inputs["counting-dots/train"][1]["mlflow.data.context"] == "training"
    assert inputs["counting-dots/val"][1]["mlflow.data.context"] == "validation"
    assert inputs["counting-dots/train"][1]["n_examples"] == str(info["splits"]["train"]) == "256"
    assert inputs["counting-dots/train"][0] == info["fingerprint"][:32]

    # evaluation: a child run, started after training ended, so the training run's duration is training's
    [evaluation] = _runs(tracking, f"tags.train_run_id = '{train.info.run_id}'")
    assert evaluation.data.tags["mlflow.parentRunId"] == train.info.run_id
    assert evaluation.data.tags["dvc_stage"] == "evaluate"
    assert train.info.end_time <= evaluation.info.start_time
    assert [i.dataset.name for i in evaluation.inputs.dataset_inputs] == ["counting-dots/test"]
    test_metrics = {k: v for k, v in evaluation.data.metrics.items() if k.startswith("test/")}
    assert len(test_metrics) >= 7 and {k: train.data.metrics[k] for k in test_metrics} == test_metrics
    record = json.loads((repo / "reports" / "metrics" / f"{PAPER}.json").read_text())
    assert test_metrics["test/counting-dots/test/bleu1"] == pytest.approx(
        record["summary"]["counting-dots.test.bleu1"], abs=1e-4)

    # the trained model as an MLflow model, loaded back equal to the stage's weights
    [model] = client.search_logged_models([exp.experiment_id], f"source_run_id = '{train.info.run_id}'")
    assert model.name == "main-seed0"
    mlflow.set_tracking_uri(tracking)
    loaded = mlflow.pytorch.load_model(f"models:/{model.model_id}")
    weights = torch.load(repo / "artifacts" / PAPER / "seed0" / "main.pt", weights_only=True)
    state = loaded.state_dict()
    assert state.keys() == weights.keys() and all(torch.equal(state[k], weights[k]) for k in weights)
    assert sum(p.numel() for p in loaded.parameters()) == train.data.metrics["n_parameters"]

    [report] = _runs(tracking, "tags.dvc_stage = 'report'")
    assert report.data.tags[f"runs.{PAPER}"] == train.info.run_id
    assert f"{tracking}/#/experiments/{exp.experiment_id}/runs/{train.info.run_id}" in report.data.tags[
        "mlflow.note.content"]


def test_push_then_fresh_clone_pulls_and_reruns_nothing(repo, s3, tmp_path):
    out = _run(["scripts/push.sh"], repo, **S3_ENV)
    assert "committed dvc.lock" in out  # the pushed outputs are the ones the commit's lock names
    assert _run(["git", "status", "--porcelain", "--", "dvc.lock"], repo) == ""
    listed = boto3.client("s3", endpoint_url=s3, **_boto_credentials()).list_objects_v2(Bucket=BUCKET)
    assert listed["KeyCount"] > 10

    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    assert not (clone / "reports" / "comparison.md").exists()
    _dvc("pull", cwd=clone, **S3_ENV)
    out = _dvc("repro", cwd=clone)  # no tracking URI: a stage that ran would log to a new store
    ran = [line for line in out.splitlines() if line.startswith("Running stage")]
    assert ran == [f"Running stage 'locate@{PAPER}':"], out  # locate always runs; its record is unchanged
    status = json.loads(_dvc("status", "--json", cwd=clone).strip().splitlines()[-1])
    assert list(status) == [f"locate@{PAPER}"]  # always_changed, nothing else
    assert not (clone / "mlflow.db").exists()
    for path in ("reports/comparison.csv", "reports/comparison.md", "reports/comparison.html",
                 f"reports/metrics/{PAPER}.json", f"artifacts/{PAPER}/seed0/main.pt"):
        assert (clone / path).read_bytes() == (repo / path).read_bytes(), path


def test_queue_runs_a_grid_with_two_workers_against_one_server(repo, tracking):
    before = {r.info.run_id for r in _runs(tracking, "")}
    names = {"seed1": 1, "seed2": 2}
    for name, seed in names.items():
        _dvc("exp", "run", "--queue", "-n", name, "-S", f"seeds=[{seed}]", cwd=repo)
    started = time.monotonic()
    _dvc("queue", "start", "-j", "2", cwd=repo, MLFLOW_TRACKING_URI=tracking)
    while True:
        status = _dvc("queue", "status", cwd=repo)
        if not any(word in status for word in ("Queued", "Running")):
            break
        assert time.monotonic() - started < 900, status
        time.sleep(3)
    assert status.count("Success") == 2, status + _dvc("queue", "logs", "seed1", cwd=repo)

    shown = json.loads(_dvc("exp", "show", "--json", cwd=repo))
    experiments = {exp["name"]: exp for row in shown for group in (row.get("experiments") or []) for exp in group["revs"]}
    assert set(names) <= set(experiments)
    trains = {}
    for name, seed in names.items():
        [train] = _runs(tracking, f"tags.dvc_exp = '{name}' and tags.dvc_stage = 'train'")
        [evaluation] = _runs(tracking, f"tags.dvc_exp = '{name}' and tags.dvc_stage = 'evaluate'")
        assert train.data.params["seed"] == str(seed) and train.data.tags["seed"] == str(seed)
        assert evaluation.data.tags["mlflow.parentRunId"] == train.info.run_id
        # -S rewrote params.yaml in the experiment's copy: not dirty code
        assert train.data.tags["mlflow.source.git.dirty"] == "false"
        # the experiment's own metrics file names this run and holds this run's numbers
        record = experiments[name]["data"]["metrics"][f"reports/metrics/{PAPER}.json"]["data"]
        assert record["mlflow_runs"] == {str(seed): train.info.run_id}
        assert train.data.metrics["test/counting-dots/test/bleu1"] == pytest.approx(
            record["summary"]["counting-dots.test.bleu1"], abs=1e-4)
        trains[name] = train
    # nothing lost, nothing extra: two training runs, two evaluations and two reports
    new = [r for r in _runs(tracking, "") if r.info.run_id not in before]
    assert sorted(r.data.tags["dvc_stage"] for r in new) == ["evaluate"] * 2 + ["report"] * 2 + ["train"] * 2
    # two workers: the two trainings overlapped in time
    first, second = sorted(trains.values(), key=lambda r: r.info.start_time)
    assert second.info.start_time < first.info.end_time
