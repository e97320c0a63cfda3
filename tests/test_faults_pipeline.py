"""Fault injection on the real pipeline: StarCapNet's smoke profile (the fastest paper) in a temporary git
repo, one real `dvc repro`, then real stage processes under faults: an unreachable tracking server
(127.0.0.1, closed port), another tracking store, corrupted and truncated prepared files, a tampered
checkpoint, a code edit, SIGKILL mid-training, a bad params.yaml. Each case asserts the exact outcome:
exit code, the one line on stderr, the files on disk and the MLflow runs' states. Nothing is mocked.

The cases share one prepared and trained copy; each restores what it changed (or runs last)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from mmrepro.config import load_params
from mmrepro.pipeline import verified_inputs
from mmrepro.provenance import DataIntegrityError
from mmrepro.publish import publish_evaluation

from .conftest import REPO, VENV_BIN, copy_repo, free_port, stage_env, stderr_lines, wait_for_port

pytestmark = pytest.mark.slow
PAPER = "starcapnet"
SMOKE = {"epochs": 1, "batch_size": 32, "lr": 0.003, "n_train": 256, "n_val": 40, "n_test": 40, "hidden_dim": 64,
         "beam_size": 2}


def _closed_port() -> int:
    with socket.socket() as sock:  # bound then closed: nothing listens there
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stage(repo: Path, stage: str, **env: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, f"stages/{stage}.py", PAPER]
    return subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=600,
                          env=stage_env(OMP_NUM_THREADS="1", PYTHONPATH=str(repo / "src"), **env))


def _ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _last_line(proc: subprocess.CompletedProcess) -> str:
    """The stage's own message: the last stderr line (tqdm and MLflow's INFO lines come before it)."""
    return proc.stderr.strip().splitlines()[-1]


def _client(repo: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")


def _runs(repo: Path) -> dict[str, str]:
    """{run id: status} of every run in the repo's store."""
    client = _client(repo)
    exp = client.get_experiment_by_name("mmrepro")
    return {r.info.run_id: r.info.status for r in client.search_runs([exp.experiment_id], f"tags.paper = '{PAPER}'")}


def _set_config(repo: Path, **cfg) -> None:
    """The paper's smoke recipe with `cfg` as params.yaml's overrides (none: the recipe as shipped)."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["papers"] = {PAPER: cfg} if cfg else {}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = copy_repo(tmp_path_factory.mktemp("faults"))
    params = yaml.safe_load((root / "params.yaml").read_text())
    params.update(profile="smoke", run=[PAPER])
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert yaml.safe_load((root / "configs" / f"{PAPER}.yaml").read_text())["smoke"] == SMOKE
    subprocess.run(["git", "commit", "-qam", "smoke, starcapnet only"], cwd=root, check=True, env=stage_env())
    for stage in ("prepare", "train", "evaluate"):  # the stages themselves: DVC's own runs are in the last case
        _ok(_stage(root, stage))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_unreachable_tracking_server_fails_fast_with_one_line_and_keeps_results(repo, monkeypatch):
    metrics = repo / "reports/provenance" / f"{PAPER}.json"
    before = json.loads(metrics.read_text())
    metrics.unlink()
    shutil.rmtree(repo / "reports/eval" / PAPER)
    uri = f"http://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    proc = _stage(repo, "evaluate", MLFLOW_TRACKING_URI=uri)
    elapsed = time.monotonic() - started
    print(f"\nevaluate against a closed port: exit {proc.returncode} after {elapsed:.1f} s (loaded machine)")
    assert proc.returncode == 1 and elapsed < 60
    assert _last_line(proc) == (
        f"mlflow: logging to {uri} failed (ConnectionRefusedError: [Errno 111] Connection refused); results kept in "
        f"reports/provenance/{PAPER}.json, reports/metrics/{PAPER}.json and reports/eval/{PAPER}/; log them later: "
        f"python -m mmrepro.replay {PAPER}")
    assert "Traceback" not in proc.stderr
    after = json.loads(metrics.read_text())  # the results are on disk, the same numbers as before
    assert after["results"] == before["results"] and after["data_fingerprint"] == before["data_fingerprint"]
    assert (repo / "reports/metrics" / f"{PAPER}.json").is_file()
    assert (repo / "reports/eval" / PAPER / "seed0").is_dir()

    started = time.monotonic()
    train = _stage(repo, "train", MLFLOW_TRACKING_URI=uri)
    print(f"train against a closed port: exit {train.returncode} after {time.monotonic() - started:.1f} s")
    assert train.returncode == 1 and time.monotonic() - started < 60
    assert _last_line(train).startswith(f"mlflow: logging to {uri} failed (ConnectionRefusedError")
    assert _last_line(train).endswith(f"rerun `dvc repro train@{PAPER}` when the tracking store is reachable")
    assert (repo / "artifacts" / PAPER / "runs.json").is_file()  # the committed training outputs are untouched
    assert not list(repo.glob("**/*.tmp"))

    # the replay logs the kept results into the run; replaying twice duplicates nothing
    run_id = after["mlflow_runs"]["0"]
    key = "test/counting-dots/test/bleu1"
    replay = subprocess.run([sys.executable, "-m", "mmrepro.replay", PAPER], cwd=repo, capture_output=True,
                            text=True, env=stage_env(OMP_NUM_THREADS="1", PYTHONPATH=str(repo / "src")))
    assert _ok(replay).strip().splitlines()[-1] == f"[{PAPER}] logged to MLflow: seed 0 -> run {run_id}"
    monkeypatch.chdir(repo)  # and a second time (in this process, to save a start-up)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert publish_evaluation(load_params("params.yaml"), PAPER) == {"0": run_id}
    history = _client(repo).get_metric_history(run_id, key)
    bleu1 = next(r for r in after["results"] if r["metric"] == "bleu1")["per_seed"]["0"]
    assert [(m.step, round(m.value, 9)) for m in history] == [(0, round(bleu1, 9))]
    # the training run and one evaluation run, its child: the replay of the same results continued it
    runs = _runs(repo)
    [evaluation] = [r for r in runs if r != run_id]
    assert runs == {run_id: "FINISHED", evaluation: "FINISHED"}
    assert _client(repo).get_run(evaluation).data.tags["mlflow.parentRunId"] == run_id


def test_read_only_store_keeps_results_and_another_store_gets_a_run(repo, tmp_path, monkeypatch):
    # read-only (SQLite's own mode=ro: permissions do not stop root): the run cannot be reopened
    metrics = repo / "reports/provenance" / f"{PAPER}.json"
    metrics.unlink()
    uri = f"sqlite:///file:{repo / 'mlflow.db'}?mode=ro&uri=true"
    proc = _stage(repo, "evaluate", MLFLOW_TRACKING_URI=uri)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert _last_line(proc) == (
        f"mlflow: logging to {uri} failed (OperationalError: attempt to write a readonly database); results kept in "
        f"reports/provenance/{PAPER}.json, reports/metrics/{PAPER}.json and reports/eval/{PAPER}/; log them later: "
        f"python -m mmrepro.replay {PAPER}")
    assert metrics.is_file()

    # another store: the evaluation's logging (mmrepro.publish, run in this process to save a start-up)
    # creates the run there, with the training's params and curves
    uri = f"sqlite:///{tmp_path / 'other.db'}"
    monkeypatch.chdir(repo)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    publish_evaluation(load_params("params.yaml"), PAPER)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("mmrepro").experiment_id
    (run,) = client.search_runs([experiment], "tags.dvc_stage = 'train'")
    (evaluation,) = client.search_runs([experiment], "tags.dvc_stage = 'evaluate'")
    assert evaluation.data.tags["mlflow.parentRunId"] == run.info.run_id
    trained = json.loads((repo / "artifacts" / PAPER / "runs.json").read_text())
    assert run.info.status == "FINISHED" and run.info.run_id != trained["runs"]["0"]
    assert run.data.tags["mmrepro.fingerprint"] == trained["fingerprints"]["0"]
    assert run.data.params["cfg.lr"] == "0.003"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == list(range(8))
    assert "test/counting-dots/test/cider_d" in run.data.metrics


def test_corrupted_and_truncated_prepared_files_stop_with_one_line(repo, tmp_path, monkeypatch):
    data = repo / "data" / PAPER
    backup = tmp_path / "data"
    shutil.copytree(data, backup, copy_function=shutil.copy2)
    try:
        images = data / "test.npz"
        raw = bytearray(images.read_bytes())
        raw[len(raw) // 2] ^= 0xFF  # one garbled byte, same size
        images.write_bytes(bytes(raw))
        proc = _stage(repo, "evaluate")
        assert proc.returncode == 1
        assert stderr_lines(proc) == [
            f"data: data/{PAPER}/test.npz: content differs from the prepare manifest (corrupted or edited after "
            f"prepare); rerun prepare: dvc repro -f prepare@{PAPER}"]
        shutil.copy2(backup / "test.npz", images)
        train = data / "train.npz"
        train.write_bytes(train.read_bytes()[:1000])  # truncated, with an old checkpoint still there
        monkeypatch.chdir(repo)  # the train stage's check (in this process, to save a start-up)
        with pytest.raises(DataIntegrityError) as info:
            verified_inputs(PAPER)
        assert str(info.value) == (
            f"data/{PAPER}/train.npz: 1000 bytes, the prepare manifest says {(backup / 'train.npz').stat().st_size}"
            f" bytes (truncated or replaced); rerun prepare: dvc repro -f prepare@{PAPER}")
        (data / "extra.npz").write_bytes(b"")
        shutil.copy2(backup / "train.npz", train)
        with pytest.raises(DataIntegrityError, match=rf"^data/{PAPER}/extra.npz: not in the prepare manifest"):
            verified_inputs(PAPER)
    finally:
        shutil.rmtree(data)
        shutil.copytree(backup, data, copy_function=shutil.copy2)


class Payload:
    """What a tampered checkpoint smuggles in: unpickling it would run code."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_tampered_checkpoint_is_set_aside_and_training_starts_fresh(repo):
    ckpt = repo / "checkpoints" / PAPER / "seed0" / "main.pt"
    with ckpt.open("wb") as handle:
        pickle.dump({"fingerprint": "x", "model": Payload()}, handle)
    proc = _stage(repo, "train")
    out = _ok(proc)
    bad = sorted(ckpt.parent.glob("main.pt.bad-*"))
    assert len(bad) == 1 and ckpt.is_file() and not (repo / "PWNED").exists()
    warning = [line for line in proc.stderr.splitlines() if line.startswith("warning: checkpoint")]
    assert warning == [f"warning: checkpoint checkpoints/{PAPER}/seed0/main.pt cannot be loaded safely (not tensors "
                       f"only: Unsupported operand 149); moved to {bad[0].name}, training starts fresh"]
    assert "weights_only" not in out and "resuming" not in out


def test_code_edit_retrains_in_a_new_run(repo):
    before = json.loads((repo / "artifacts" / PAPER / "runs.json").read_text())
    weights = (repo / "artifacts" / PAPER / "seed0" / "main.pt").read_bytes()
    model = repo / "src/mmrepro/models/starcapnet.py"
    original = model.read_text()
    try:
        model.write_text(original + "\n# an edit that changes no number\n")
        out = _ok(_stage(repo, "train"))
    finally:
        model.write_text(original)
    after = json.loads((repo / "artifacts" / PAPER / "runs.json").read_text())
    assert "resuming" not in out and "is for another code, config or data" in out
    assert after["code_hash"] != before["code_hash"] and after["fingerprints"] != before["fingerprints"]
    assert after["runs"]["0"] != before["runs"]["0"]
    assert _runs(repo)[after["runs"]["0"]] == "FINISHED"
    # the same code, config and data train the same numbers (CPU determinism), in a run of their own
    assert (repo / "artifacts" / PAPER / "seed0" / "main.pt").read_bytes() == weights


def _kill_after_first_epoch(repo: Path) -> int:
    """Start the train stage, SIGKILL it once the first of its 3 epochs is checkpointed; returns the epoch of the
    checkpoint it left. That is 1, or 2 when this process, starved on a loaded machine, saw the checkpoint late
    (an epoch of this paper is ~0.5 s): the stage is stopped (SIGSTOP) before its checkpoint is read, so the
    number is the one a rerun resumes from (a loaded CI run once saw 2)."""
    ckpt = repo / "checkpoints" / PAPER / "seed0" / "main.pt"
    before = ckpt.stat().st_mtime_ns if ckpt.is_file() else 0
    proc = subprocess.Popen([sys.executable, "stages/train.py", PAPER], cwd=repo, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env=stage_env(OMP_NUM_THREADS="1", PYTHONPATH=str(repo / "src")))
    for line in proc.stdout:
        if "epoch 1/3 loss=" in line:  # printed just before the epoch's checkpoint is written
            break
    deadline = time.monotonic() + 120
    while (not ckpt.is_file() or ckpt.stat().st_mtime_ns == before) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # into epoch 2: some of its metric points may be logged already
    proc.send_signal(signal.SIGSTOP)
    epoch = int(torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"])
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert epoch in (1, 2)
    return epoch


def test_sigkill_then_rerun_continues_the_run_without_duplicates(repo):
    _set_config(repo, epochs=3, lr=0.002)
    epoch = _kill_after_first_epoch(repo)
    run_id = json.loads((repo / "checkpoints" / PAPER / "seed0" / "mlflow_run.json").read_text())["run_id"]
    assert _runs(repo)[run_id] == "RUNNING"
    out = _ok(_stage(repo, "train"))
    assert f"resuming from epoch {epoch} (checkpoints/{PAPER}/seed0/main.pt)" in out
    assert json.loads((repo / "artifacts" / PAPER / "runs.json").read_text())["runs"]["0"] == run_id
    assert _runs(repo)[run_id] == "FINISHED"
    steps = [m.step for m in _client(repo).get_metric_history(run_id, "train_loss")]
    assert steps == list(range(24))  # 3 epochs x 8 steps, each once
    assert not list(repo.glob("**/*.tmp"))

    # a crash of one config, then the config before it: the crashed run is closed as FAILED by the first
    # stage that runs, here the validate stage, which runs first after any params change (when DVC then
    # restores train and evaluate from its run-cache, no stage of the paper runs; train and evaluate
    # close such runs with the same call, mmrepro.tracking.close_crashed_runs)
    _set_config(repo, epochs=3, lr=0.001)
    _kill_after_first_epoch(repo)
    crashed = json.loads((repo / "checkpoints" / PAPER / "seed0" / "mlflow_run.json").read_text())["run_id"]
    assert crashed != run_id and _runs(repo)[crashed] == "RUNNING"
    _set_config(repo)
    proc = subprocess.run([sys.executable, "stages/validate.py"], cwd=repo, capture_output=True, text=True,
                          env=stage_env(OMP_NUM_THREADS="1"))
    assert _ok(proc).strip().splitlines()[-1] == f"[all papers] closed as FAILED the runs of crashed attempts: {crashed}"
    assert json.loads((repo / "data/config" / f"{PAPER}.json").read_text())["config"]["epochs"] == SMOKE["epochs"]
    assert _runs(repo)[crashed] == "FAILED"
    assert "RUNNING" not in _runs(repo).values()


def _server(store: Path, port: int) -> subprocess.Popen:
    """A real `mlflow server` on 127.0.0.1:`port` in a session of its own: SIGKILL reaches its workers too."""
    server = subprocess.Popen(
        [str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{store / 'server.db'}", "--artifacts-destination", str(store / "art")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env=stage_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"))
    wait_for_port(port, server, timeout_s=240)
    return server


def _kill_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def _history(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Every metric of the run: its points as (step, value), in step order."""
    keys = client.get_run(run_id).data.metrics
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key)) for key in keys}


def test_tracking_server_lost_mid_training_then_rerun_loses_no_metric_point(repo, tmp_path):
    """The server is SIGKILLed once epoch 1 of 3 is done (its points sent): the stage fails at its next flush
    with one line; the rerun, against the restarted server, resumes and continues the run. Its metric history
    equals that of an uninterrupted training of the same config (another store): no point lost, none twice."""
    _set_config(repo, epochs=3, lr=0.0025)
    store, port = tmp_path / "server", free_port()
    store.mkdir()
    uri = f"http://127.0.0.1:{port}"
    server = _server(store, port)
    try:
        proc = subprocess.Popen([sys.executable, "stages/train.py", PAPER], cwd=repo, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True,
                                env=stage_env(OMP_NUM_THREADS="1", PYTHONPATH=str(repo / "src"), MLFLOW_TRACKING_URI=uri))
        for line in proc.stdout:
            if "epoch 1/3 loss=" in line:  # epoch 1's points are flushed just before this line
                break
        _kill_server(server)
        out = proc.communicate(timeout=300)[0]
        assert proc.returncode == 1, out[-3000:]
        assert out.strip().splitlines()[-1].startswith(f"mlflow: logging to {uri} failed (")
        run_id = json.loads((repo / "checkpoints" / PAPER / "seed0" / "mlflow_run.json").read_text())["run_id"]
        server = _server(store, port)  # the same store, back
        rerun = _ok(_stage(repo, "train", MLFLOW_TRACKING_URI=uri))
        assert f"resuming from epoch 1 (checkpoints/{PAPER}/seed0/main.pt)" in rerun
        assert json.loads((repo / "artifacts" / PAPER / "runs.json").read_text())["runs"]["0"] == run_id
        resumed = _history(MlflowClient(uri), run_id)
    finally:
        _kill_server(server)
    shutil.move(repo / "checkpoints" / PAPER, tmp_path / "checkpoints")  # from scratch, in another store
    reference_uri = f"sqlite:///{tmp_path / 'reference.db'}"
    _ok(_stage(repo, "train", MLFLOW_TRACKING_URI=reference_uri))
    reference = json.loads((repo / "artifacts" / PAPER / "runs.json").read_text())["runs"]["0"]
    uninterrupted = _history(MlflowClient(reference_uri), reference)
    assert [step for step, _ in uninterrupted["train_loss"]] == list(range(24))  # 3 epochs x 8 steps
    assert len(uninterrupted) >= 3 and resumed == uninterrupted


def test_killed_stage_leaves_no_tmp_when_dvc_restores_it_from_the_run_cache(repo):
    """A train stage SIGKILLed mid-epoch leaves its atomic-write temporaries; then `dvc repro` restores the
    stage from DVC's run-cache, so it never runs: validate (always run first) removes them."""
    _set_config(repo)
    subprocess.run(["git", "commit", "-qam", "before the run-cache test"], cwd=repo, env=stage_env())
    dvc = [str(VENV_BIN / "dvc"), "repro", f"train@{PAPER}"]
    _ok(subprocess.run(dvc, cwd=repo, capture_output=True, text=True, timeout=600, env=stage_env(OMP_NUM_THREADS="1")))
    _set_config(repo, epochs=3, lr=0.0015)
    _kill_after_first_epoch(repo)
    left = sorted(p.relative_to(repo).as_posix() for p in repo.glob("**/*.tmp"))
    assert left == [f"artifacts/{PAPER}.tmp", f"reports/plots/{PAPER}.tmp"]
    _set_config(repo)
    shutil.rmtree(repo / "artifacts" / PAPER)  # an output gone: DVC takes the stage's run from its run-cache
    proc = subprocess.run(dvc, cwd=repo, capture_output=True, text=True, timeout=600, env=stage_env(OMP_NUM_THREADS="1"))
    out = _ok(proc)
    assert f"Stage 'train@{PAPER}' is cached - skipping run, checking out outputs" in out
    assert f"[{PAPER}] removed artifacts/{PAPER}.tmp, left by a killed stage" in out
    assert not list(repo.glob("**/*.tmp")) and (repo / "artifacts" / PAPER / "seed0" / "main.pt").is_file()
    (repo / "dvc.lock").unlink()  # the next case is about a copy that never ran `dvc repro`


def test_bad_params_stop_dvc_repro_before_any_output_is_removed(repo):
    """Runs last: it leaves params.yaml bad. Every stage is stale (this copy never ran `dvc repro`), so
    without the validate stage DVC would start removing outputs; a report of an earlier run must survive."""
    report = {name: f"an earlier {name}\n".encode() for name in ("comparison.csv", "comparison.html", "comparison.md")}
    for name, content in report.items():
        (repo / "reports" / name).write_bytes(content)
    _set_config(repo, epochs=True)
    proc = subprocess.run([str(VENV_BIN / "dvc"), "repro"], cwd=repo, capture_output=True, text=True, timeout=600,
                          env=stage_env(OMP_NUM_THREADS="1"))
    assert proc.returncode != 0
    assert f"params.yaml: papers.{PAPER}.epochs: expected a number, got a boolean (True)" in proc.stderr
    assert [line for line in proc.stdout.splitlines() if line.startswith("Running stage")] == [
        "Running stage 'validate':"]
    assert {p.name: p.read_bytes() for p in (repo / "reports").glob("comparison.*")} == report
    assert (repo / "artifacts" / PAPER / "seed0" / "main.pt").is_file()


def test_a_continued_training_run_gets_each_step_once(tmp_path, monkeypatch):
    """What a resume on a GPU may recompute differently (non-deterministic kernels) is not logged twice: in a
    continued training run, a step the run holds is skipped, whatever its value (a real SQLite store)."""
    import mlflow

    from mmrepro.tracking import MetricBuffer

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store.db'}")
    client = MlflowClient(f"sqlite:///{tmp_path / 'store.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'store.db'}")
    run_id = client.create_run(client.create_experiment("buffer")).info.run_id
    first = MetricBuffer(run_id)
    for step, value in ((0, 1.0), (1, 2.0)):
        first.log("train_loss", value, step)
    first.flush()  # then the crash; the resume recomputes step 1 (another value on a GPU) and goes on
    resumed = MetricBuffer(run_id, continued=True, one_per_step=True)
    for step, value in ((1, 2.5), (1, 2.5), (2, 3.0)):
        resumed.log("train_loss", value, step)
    resumed.flush()
    assert sorted((m.step, m.value) for m in client.get_metric_history(run_id, "train_loss")) == [(0, 1.0), (1, 2.0),
                                                                                              (2, 3.0)]


def test_a_committed_dvc_lock_comes_with_a_remote_that_holds_its_outputs():
    """dvc.lock names the outputs of one run by hash. Committed without a DVC remote, a fresh clone can fetch
    none of them and the lock describes a run the clone never had (it went stale as the code moved on): the
    lock is committed by `make push` together with a push to the remote (README, Sharing), never on its own."""
    tracked = subprocess.run(["git", "ls-files", "dvc.lock"], cwd=REPO, capture_output=True, text=True, check=True)
    remotes = subprocess.run(["git", "show", "HEAD:.dvc/config"], cwd=REPO, capture_output=True, text=True).stdout
    assert not tracked.stdout.strip() or "remote" in remotes, "dvc.lock is committed but .dvc/config names no remote"
