"""`train.nproc: 2` through the real pipeline: `dvc repro train@sympow` (smoke profile, softmax variant, 2 x 2
micro-batches per step) in a temporary git repo relaunches the train stage under the real `torchrun` (two gloo
processes on CPU). The run logs one MLflow run per seed (rank 0 only) and follows the single-process run's
loss curve. Not bit for bit: DDP averages two ranks' gradients in another order
than one process accumulating four micro-batches (tests/test_train_distributed.py checks exact equality on a
toy model where both sums are exact)."""

from __future__ import annotations

import csv
import sqlite3
import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import VENV_BIN, copy_repo, stage_env

pytestmark = pytest.mark.slow
PAPER, VARIANT = "sympow", "softmax"


def _train(root: Path, nproc: int) -> tuple[str, list[float], int]:
    """(stage log, the per-step training losses, MLflow runs of the paper) after `dvc repro train@sympow`."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    params.update(profile="smoke", run=[PAPER],
                  papers={PAPER: {"variants": [VARIANT], "accumulation": 2, "batches_per_epoch": 4}})
    params["train"].update(nproc=nproc, loader_workers=0)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = subprocess.run([str(VENV_BIN / "dvc"), "repro", f"train@{PAPER}"], cwd=root, capture_output=True,
                          text=True, env=stage_env(OMP_NUM_THREADS="1"), timeout=900)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    with (root / "reports" / "plots" / PAPER / f"train_loss_{VARIANT}_seed0.csv").open() as handle:
        losses = [float(row["loss"]) for row in csv.DictReader(handle)]
    with sqlite3.connect(root / "mlflow.db") as db:
        runs = db.execute("SELECT COUNT(*) FROM runs WHERE status = 'FINISHED'").fetchone()[0]
    return log, losses, runs


def test_train_stage_under_torchrun_follows_the_single_process_run(tmp_path):
    one_log, one, _ = _train(copy_repo(tmp_path / "one"), 1)
    two_log, two, runs = _train(copy_repo(tmp_path / "two"), 2)
    assert "torch.distributed.run --standalone --nproc_per_node=2 stages/train.py sympow" in two_log
    assert "torch.distributed.run" not in one_log
    assert runs == 1  # rank 1 logged nothing
    assert len(two) == len(one) == 4
    gaps = [abs(a - b) for a, b in zip(one, two, strict=True)]
    print(f"max |loss(1 process) - loss(torchrun, 2 processes)| over {len(gaps)} steps: {max(gaps):.3g}")
    assert max(gaps) < 1e-4
    assert one[0] != one[-1]  # it trained (not four copies of one number)
