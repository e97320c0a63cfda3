"""The real pipeline end to end: `dvc exp run -S profile=smoke` in a temporary git repo holding a copy
of this checkout, a real MLflow SQLite store, real Java for METEOR, then a real `mlflow server`.
Only StarCapNet is kept in params.yaml so that this test times the backbone, not every paper."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from .conftest import VENV_BIN, copy_repo, stage_env, start_mlflow_server

pytestmark = pytest.mark.slow
PAPER = "starcapnet"


def _run(cmd: list[str], cwd: Path, **env: str) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=stage_env(**env), timeout=900)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = copy_repo(tmp_path_factory.mktemp("repo"))
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["run"] = [PAPER]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(["git", "commit", "-qam", "only starcapnet"], root)
    _run([str(VENV_BIN / "dvc"), "exp", "run", "-S", "profile=smoke"], root)
    return root


def test_report_has_starcapnet_rows_with_numbers(repo):
    environment = json.loads((repo / "reports/comparison.json").read_text())["environment"]
    assert environment["profile"] == "smoke" and len(environment["git sha"].split()[0]) == 40
    with (repo / "reports/comparison.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_metric = {r["metric"]: r for r in rows if r["paper"] == PAPER}
    for metric in ("count_accuracy", "exact_match", "bleu1", "bleu4", "meteor", "rouge_l", "cider_d"):
        value = float(by_metric[metric]["ours"])
        assert 0.0 <= value <= (1.0 if metric in ("count_accuracy", "exact_match") else 1000.0), metric
        assert by_metric[metric]["dataset"] == "counting-dots" and by_metric[metric]["n_seeds"] == "1"
        assert by_metric[metric]["verdict"].startswith("no published number")
    assert by_metric["bleu1"]["scale"] == "x100" and float(by_metric["bleu1"]["ours"]) > 1.0
    assert by_metric["spice"]["ours"] == "" and by_metric["spice"]["verdict"].startswith("not measured")
    md = (repo / "reports/comparison.md").read_text()
    assert f"| [{PAPER}](#{PAPER}) | count_accuracy |" in md and f"\n## {PAPER}\n" in md
    assert f'<section class="paper" id="{PAPER}">' in (repo / "reports/comparison.html").read_text()
    # each stage's cost (mmrepro.compute), a DVC output of its own stage, and the report's line from them
    costs = [json.loads((repo / "reports/compute" / PAPER / f"{stage}.json").read_text())
             for stage in ("prepare", "train", "evaluate")]
    assert all(c["wall_s"] > 1.0 and c["cpu_s"] > 0.5 and c["device"] == "cpu" for c in costs)
    assert costs[1]["resumed"] is False and costs[1]["processes"] == 1
    assert "\n- Compute: prepare " in md and ", train " in md and "Compute of the stages that made these results: " in md


def test_mlflow_run_holds_params_metrics_artifacts_and_tags(repo):
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mmrepro")
    runs = client.search_runs([exp.experiment_id], f"tags.paper = '{PAPER}' and tags.dvc_stage = 'train'")
    assert len(runs) == 1
    run = runs[0]
    evaluation = client.search_runs([exp.experiment_id], f"tags.train_run_id = '{run.info.run_id}'")
    assert len(evaluation) == 1 and evaluation[0].data.tags["dvc_stage"] == "evaluate"
    assert run.data.params["profile"] == "smoke" and run.data.params["seed"] == "0"
    assert run.data.params["variant_seeds.main"] == "0"  # the seed each variant trained with
    assert run.data.params["cfg.lr"] == "0.003" and run.data.params["cfg.n_train"] == "256"
    losses = client.get_metric_history(run.info.run_id, "train_loss")
    assert len(losses) == 8 and [m.step for m in losses] == list(range(8))  # 256 images / batch 32, 1 epoch
    assert "val/count_accuracy" in run.data.metrics
    assert 0.0 <= run.data.metrics["test/counting-dots/test/count_accuracy"] <= 1.0
    tags = run.data.tags
    # `dvc exp run -S profile=smoke` rewrote params.yaml: that is not dirty code
    assert len(tags["mlflow.source.git.commit"]) == 40 and tags["mlflow.source.git.dirty"] == "false"
    assert tags["dvc_exp"] and tags["dvc_stage"] == "train" and tags["pkg.torch"].startswith("2.14")
    prepared = json.loads((repo / "data" / PAPER / "info.json").read_text())
    assert tags["data_fingerprint"] == prepared["fingerprint"] and tags["device"].startswith("cpu")

    def listing():
        return listing_of(client, run.info.run_id)

    assert {"plots/curves_seed0.png"} <= set(listing())
    assert {"metrics/starcapnet.json", "evaluation/predictions.jsonl", "evaluation/captions_results.json"} <= set(
        listing_of(client, evaluation[0].info.run_id))
    report_runs = client.search_runs([exp.experiment_id], "tags.dvc_stage = 'report'")
    assert {a.path for a in client.list_artifacts(report_runs[0].info.run_id, "report")} == {
        "report/comparison.csv", "report/comparison.md", "report/comparison.html", "report/comparison.json",
        "report/results"}


def listing_of(client: MlflowClient, run_id: str, path: str | None = None) -> list[str]:
    found = []
    for item in client.list_artifacts(run_id, path):
        found += listing_of(client, run_id, item.path) if item.is_dir else [item.path]
    return found


def test_second_repro_reruns_nothing_and_params_are_per_paper_and_profile(repo):
    out = _run([str(VENV_BIN / "dvc"), "repro"], repo)
    # only validate runs (always: it stats the external dataset); its outputs are unchanged, so nothing
    # after it reruns
    ran = [line for line in out.splitlines() if line.startswith("Running stage")]
    assert ran == ["Running stage 'validate':"], out
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert set(lock["stages"][f"train@{PAPER}"]["params"]["params.yaml"]) == {"profile", "seeds", "train"}
    assert f"data/config/{PAPER}.json" in [d["path"] for d in lock["stages"][f"train@{PAPER}"]["deps"]]
    metrics = _run([str(VENV_BIN / "dvc"), "metrics", "show", "--json"], repo)
    assert f"reports/metrics/{PAPER}.json" in metrics
    # an edit to another profile's recipe leaves every stage but validate up to date (validate is always run
    # and checks any edit of configs/; the paper's resolved smoke config, data/config/<paper>.json, is unchanged)
    recipes = yaml.safe_load((repo / "configs" / f"{PAPER}.yaml").read_text())
    recipes["full"]["epochs"] = 99
    (repo / "configs" / f"{PAPER}.yaml").write_text(yaml.safe_dump(recipes, sort_keys=False))
    status = _run([str(VENV_BIN / "dvc"), "status", "--json"], repo)
    assert sorted(json.loads(status.strip().splitlines()[-1])) == ["validate"]


def test_decoding_change_reruns_evaluate_not_training(repo):
    """A decoding key (`decode_keys`: here the caption beam) reruns evaluate and the report, not prepare or train;
    the new evaluation run logs its decoding (`decode.beam_size`), the training run is the same one.
    It leaves the repo at beam 1 (the tracking-server test below does not depend on it)."""
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mmrepro").experiment_id
    train_runs = client.search_runs([exp], f"tags.paper = '{PAPER}' and tags.dvc_stage = 'train'")
    assert "cfg.beam_size" not in train_runs[0].data.params  # decoding is not a training param
    before = json.loads((repo / "reports/provenance" / f"{PAPER}.json").read_text())
    assert before["decoding"] == {"beam_size": 2} and before["config"]["beam_size"] == 2  # the smoke recipe
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["papers"] = {PAPER: {"beam_size": 1}}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = _run([str(VENV_BIN / "dvc"), "repro"], repo)
    ran = [line for line in out.splitlines() if line.startswith("Running stage")]
    assert ran == ["Running stage 'validate':", f"Running stage 'evaluate@{PAPER}':", "Running stage 'report':"], out
    after = json.loads((repo / "reports/provenance" / f"{PAPER}.json").read_text())
    assert after["decoding"] == {"beam_size": 1} and after["mlflow_runs"] == before["mlflow_runs"]
    details = {r["metric"]: r["details"] for r in after["results"]}
    assert details["count_accuracy"]["decoding"] == "beam search, beam 1"
    assert len(client.search_runs([exp], f"tags.paper = '{PAPER}' and tags.dvc_stage = 'train'")) == 1
    evaluations = client.search_runs([exp], f"tags.train_run_id = '{train_runs[0].info.run_id}'",
                                     order_by=["attributes.start_time DESC"])
    assert [e.data.params.get("decode.beam_size") for e in evaluations] == ["1", "2"]


def test_tracking_server_via_environment(repo, tmp_path):
    server, uri = start_mlflow_server(tmp_path)
    try:
        for stage in ("train", "evaluate"):
            _run([sys.executable, f"stages/{stage}.py", PAPER], repo, MLFLOW_TRACKING_URI=uri)
        client = MlflowClient(uri)
        runs = client.search_runs([client.get_experiment_by_name("mmrepro").experiment_id], "tags.dvc_stage = 'train'")
        assert len(runs) == 1
        assert "test/counting-dots/test/cider_d" in runs[0].data.metrics
        models = client.search_logged_models([runs[0].info.experiment_id], f"source_run_id = '{runs[0].info.run_id}'")
        assert [m.name for m in models] == ["main-seed0"]
        assert json.loads((repo / "artifacts" / PAPER / "runs.json").read_text())["tracking_uri"] == uri
    finally:
        server.terminate()
        server.wait(timeout=30)

