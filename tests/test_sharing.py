"""Sharing runs beyond one machine, with the real tools: a DVC remote on S3 (a real moto S3 server on
127.0.0.1, the only stand-in: no cloud here), a real `mlflow server` process that every stage logs to,
and DVC's experiment queue running two experiments as two parallel workers. One prepared repository serves
every test: the symmetric-power paper alone (the cheapest smoke pipeline: no Java) on the smoke profile, two
seeds run from the queue against one server, seed 0 applied to the workspace; then it is pushed and cloned."""

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
PAPER = "sympow"
DATASET = "python-stdlib-bytes"
VARIANTS = ("softmax", "sympow_p2", "sympow_p4", "conformal_p4")
SEEDS = {"seed0": 0, "seed1": 1}  # DVC experiment name -> its seed (0: the committed params)
METRIC = "loss_nats_ctx4x"  # the headline (references/sympow.yaml): the metric file's `<variant>.<metric>` keys
BUCKET = "mmrepro-shared"
# moto accepts any credentials; dvc-s3 (botocore) reads them from the environment like a real deployment
BASELINE: dict[str, str] = {}  # the commit the queued experiments ran from
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
    """A copy of this checkout reduced to one paper's smoke profile, with the S3 remote configured as the
    README says; a grid of two seeds queued and run by two workers logging to the tracking server (the
    README's commands), and the seed-0 experiment applied to the workspace."""
    root = copy_repo(tmp_path_factory.mktemp("repo"))
    params = yaml.safe_load((root / "params.yaml").read_text())
    params.update(profile="smoke", run=[PAPER], seeds=[0])
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _dvc("remote", "add", "-d", "shared", f"s3://{BUCKET}/dvc", cwd=root)
    _dvc("remote", "modify", "shared", "endpointurl", s3, cwd=root)
    _run(["git", "commit", "-qam", f"{PAPER} smoke, S3 remote"], root)
    BASELINE["sha"] = _run(["git", "rev-parse", "HEAD"], root).strip()
    for name, seed in SEEDS.items():
        _dvc("exp", "run", "--queue", "-n", name, "-S", f"seeds=[{seed}]", cwd=root)
    started = time.monotonic()
    _dvc("queue", "start", "-j", "2", cwd=root, MLFLOW_TRACKING_URI=tracking)
    while True:
        status = _dvc("queue", "status", cwd=root)
        if not any(word in status for word in ("Queued", "Running")):
            break
        assert time.monotonic() - started < 900, status
        time.sleep(3)
    assert status.count("Success") == len(SEEDS), status + _dvc("queue", "logs", "seed1", cwd=root)
    _dvc("exp", "apply", "seed0", cwd=root)
    return root


def _runs(uri: str, where: str) -> list:
    client = MlflowClient(uri)
    return client.search_runs([client.get_experiment_by_name("mmrepro").experiment_id], where)


def test_queue_ran_each_experiment_once_with_its_own_params_and_numbers(repo, tracking):
    shown = json.loads(_dvc("exp", "show", "--json", cwd=repo))
    experiments = {exp["name"]: exp for row in shown for group in (row.get("experiments") or []) for exp in group["revs"]}
    assert set(SEEDS) <= set(experiments)
    trains = {}
    for name, seed in SEEDS.items():
        [train] = _runs(tracking, f"tags.dvc_exp = '{name}' and tags.dvc_stage = 'train'")
        [evaluation] = _runs(tracking, f"tags.dvc_exp = '{name}' and tags.dvc_stage = 'evaluate'")
        assert train.data.params["seed"] == str(seed) and train.data.tags["seed"] == str(seed)
        assert evaluation.data.tags["mlflow.parentRunId"] == train.info.run_id
        assert train.data.tags["dvc_exp_baseline"] == BASELINE["sha"]
        # the experiment's own metrics file holds this run's numbers (and the seeds' numbers differ, below)
        numbers = experiments[name]["data"]["metrics"][f"reports/metrics/{PAPER}.json"]["data"]
        for variant in VARIANTS:
            assert train.data.metrics[f"test/{variant}/{DATASET}/test/{METRIC}"] == pytest.approx(
                numbers[f"{variant}.{METRIC}"], abs=1e-4)
        trains[name] = train
    # different seeds trained different models (no run logged the other's numbers)
    key = f"test/softmax/{DATASET}/test/{METRIC}"
    assert trains["seed0"].data.metrics[key] != trains["seed1"].data.metrics[key]
    # nothing lost, nothing extra: per experiment one training run, one evaluation and one report
    stages = sorted(r.data.tags["dvc_stage"] for r in _runs(tracking, ""))
    assert stages == ["evaluate"] * 2 + ["report"] * 2 + ["train"] * 2
    # two workers: the two trainings overlapped in time
    first, second = sorted(trains.values(), key=lambda r: r.info.start_time)
    assert second.info.start_time < first.info.end_time


def test_mlflow_views_of_a_run(repo, tracking):
    client = MlflowClient(tracking)
    exp = client.get_experiment_by_name("mmrepro")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI's training view
    [train] = _runs(tracking, "tags.dvc_exp = 'seed0' and tags.dvc_stage = 'train'")
    tags = train.data.tags
    assert tags["mlflow.source.git.commit"] == BASELINE["sha"] and "git_sha" not in tags
    # -S rewrote params.yaml in the experiment's copy: that is not dirty code
    assert tags["mlflow.source.git.dirty"] == "false" and "git_dirty" not in tags

    info = json.loads((repo / "data" / PAPER / "info.json").read_text())
    inputs = {i.dataset.name: (i.dataset.digest, {t.key: t.value for t in i.tags}) for i in train.inputs.dataset_inputs}
    assert set(inputs) == {f"{DATASET}/train", f"{DATASET}/val"}
    assert inputs[f"{DATASET}/train"][1]["mlflow.data.context"] == "training"
    assert inputs[f"{DATASET}/val"][1]["mlflow.data.context"] == "validation"
    assert inputs[f"{DATASET}/train"][1]["n_examples"] == str(info["splits"]["train"]) == "32"
    assert inputs[f"{DATASET}/train"][0] == info["fingerprint"][:32]

    # evaluation: a child run, started after training ended, so the training run's duration is training's
    [evaluation] = _runs(tracking, f"tags.train_run_id = '{train.info.run_id}'")
    assert evaluation.data.tags["mlflow.parentRunId"] == train.info.run_id
    assert evaluation.data.tags["dvc_stage"] == "evaluate"
    assert train.info.end_time <= evaluation.info.start_time
    assert [i.dataset.name for i in evaluation.inputs.dataset_inputs] == [f"{DATASET}/test"]
    test_metrics = {k: v for k, v in evaluation.data.metrics.items() if k.startswith("test/")}
    assert len(test_metrics) >= 4 * len(VARIANTS) and {k: train.data.metrics[k] for k in test_metrics} == test_metrics

    # each trained model as an MLflow model, loaded back equal to the stage's weights
    models = client.search_logged_models([exp.experiment_id], f"source_run_id = '{train.info.run_id}'")
    assert sorted(m.name for m in models) == sorted(f"{v}-seed0" for v in VARIANTS)
    mlflow.set_tracking_uri(tracking)
    for model in models:
        loaded = mlflow.pytorch.load_model(f"models:/{model.model_id}")
        weights = torch.load(repo / "artifacts" / PAPER / "seed0" / f"{model.name.removesuffix('-seed0')}.pt",
                             weights_only=True)
        state = loaded.state_dict()
        assert state.keys() == weights.keys() and all(torch.equal(state[k], weights[k]) for k in weights), model.name

    report = _runs(tracking, "tags.dvc_exp = 'seed0' and tags.dvc_stage = 'report'")[0]
    assert report.data.tags[f"runs.{PAPER}"] == train.info.run_id
    assert f"{tracking}/#/experiments/{exp.experiment_id}/runs/{train.info.run_id}" in report.data.tags[
        "mlflow.note.content"]


def test_push_then_fresh_clone_pulls_and_reruns_nothing(repo, s3, tmp_path):
    # the applied experiment's params are the committed ones (seed 0); only its dvc.lock is new (the copy
    # was committed without one). DVC rewrites params.yaml on `exp apply` in its own YAML style (a `null` as
    # an empty value): the same params, so it may show as modified.
    changed = _run(["git", "status", "--porcelain"], repo).splitlines()
    assert set(changed) - {" M params.yaml"} == {"?? dvc.lock"}, changed
    committed = yaml.safe_load(_run(["git", "show", "HEAD:params.yaml"], repo))
    assert yaml.safe_load((repo / "params.yaml").read_text()) == committed
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
    assert ran == ["Running stage 'validate':"], out  # validate always runs; its outputs are unchanged
    status = json.loads(_dvc("status", "--json", cwd=clone).strip().splitlines()[-1])
    assert list(status) == ["validate"]  # always_changed, nothing else
    assert not (clone / "mlflow.db").exists()
    for path in ("reports/comparison.csv", "reports/comparison.md", "reports/comparison.html",
                 f"reports/metrics/{PAPER}.json", f"artifacts/{PAPER}/seed0/softmax.pt"):
        assert (clone / path).read_bytes() == (repo / path).read_bytes(), path
