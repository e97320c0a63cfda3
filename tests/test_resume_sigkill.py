"""Exact mid-epoch resume through the real pipeline: `dvc repro` (smoke profile, one small paper, a step
checkpoint after every optimizer step) in a temporary git repo; the real train stage process is SIGKILLed
mid-epoch; a second `dvc repro` resumes from the step checkpoint; its metrics and provenance files equal, byte
for byte, those of an uninterrupted run of the same repo (MLflow run ids aside: each run has its own)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import torch
import yaml

from .conftest import VENV_BIN, copy_repo, stage_env

pytestmark = pytest.mark.slow
PAPER = "geocapnet"
BATCH_SIZE, N_TRAIN = 4, 128  # 32 micro-batches in the epoch: a wide window to kill the stage in
BATCHES = N_TRAIN // BATCH_SIZE
TARGET = f"evaluate@{PAPER}"  # the paper's stages up to its metrics file, not the report


def _dvc(root: Path, *args: str) -> str:
    proc = subprocess.run([str(VENV_BIN / "dvc"), *args], cwd=root, capture_output=True, text=True,
                          env=stage_env(), timeout=900)
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def _train_stage(dvc: subprocess.Popen) -> psutil.Process | None:
    """The `python stages/train.py` process under the running dvc, once it has started. Not the `sh -c` that
    DVC may run it under (dash does not exec a -c command): killing that shell would leave the trainer running,
    orphaned, writing checkpoints while the test reads them."""
    try:
        children = psutil.Process(dvc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return None
    return next((p for p in children if p.name().startswith("python") and "stages/train.py" in p.cmdline()), None)


def _trainers_in(root: Path) -> list[psutil.Process]:
    """Running `stages/train.py` processes whose working directory is `root`."""
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        if "stages/train.py" in (proc.info["cmdline"] or []) and proc.info["cwd"] == str(root):
            found.append(proc)
    return found


def _run_and_kill_mid_epoch(root: Path, checkpoint: Path) -> None:
    dvc = subprocess.Popen([str(VENV_BIN / "dvc"), "repro", TARGET], cwd=root, env=stage_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not checkpoint.is_file():  # the first step checkpoint: written after optimizer step 1
            assert dvc.poll() is None and time.monotonic() < deadline, "dvc repro ended before a step checkpoint"
            time.sleep(0.01)
        stage = _train_stage(dvc)
        assert stage is not None
        stage.send_signal(signal.SIGKILL)
        assert dvc.wait(timeout=120) != 0  # the stage failed: dvc records nothing for it
        stage.wait(timeout=10)  # gone (psutil raises TimeoutExpired if it still runs)
        assert not _trainers_in(root), "a trainer of this repo survived the kill"
    finally:
        if dvc.poll() is None:
            dvc.kill()


def _results(root: Path) -> tuple[bytes, bytes]:
    """The metrics file's bytes, and the provenance file's with its MLflow run ids blanked (a new run has a
    new id)."""
    provenance = (root / "reports" / "provenance" / f"{PAPER}.json").read_bytes()
    for run_id in yaml.safe_load(provenance)["mlflow_runs"].values():
        provenance = provenance.replace(run_id.encode(), b"<run id>")
    return (root / "reports" / "metrics" / f"{PAPER}.json").read_bytes(), provenance


def test_sigkill_mid_epoch_then_dvc_repro_gives_the_uninterrupted_metrics(tmp_path):
    root = copy_repo(tmp_path)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params.update(profile="smoke", run=[PAPER], papers={PAPER: {"batch_size": BATCH_SIZE, "n_train": N_TRAIN}})
    params["train"]["checkpoint_steps"] = 1
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "commit", "-qam", f"smoke {PAPER} with step checkpoints"], cwd=root, check=True,
                   env=stage_env())
    checkpoint = root / "checkpoints" / PAPER / "seed0" / "main.pt"

    _run_and_kill_mid_epoch(root, checkpoint)
    killed_at = torch.load(checkpoint, weights_only=True)
    assert killed_at["epoch"] == 0 and 0 < killed_at["batch"] < BATCHES  # mid-epoch 1, not at its end
    resumed_log = _dvc(root, "repro", TARGET)
    expected = f"resuming from epoch 0, micro-batch {killed_at['batch']} of epoch 1"
    assert expected in resumed_log, f"{expected!r} not in the resumed run's log:\n{resumed_log[-4000:]}"
    resumed = _results(root)

    for stage in ("train", "evaluate"):  # the same repo, trained from scratch without a kill
        if stage == "train":
            checkpoint.unlink()
        _dvc(root, "repro", "--force", "--single-item", f"{stage}@{PAPER}")
    straight = _results(root)
    assert b'"training"' in straight[1] and resumed == straight
