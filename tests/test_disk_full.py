"""A full disk, for real: a 2 MB tmpfs mounted in a private mount namespace (`unshare -rm`, no root needed).
torch's zip writer reports a full disk only as "iostream error" / "unexpected pos" (what CI once met in the
full-size rehearsal); saving a checkpoint or weights must say it in words, leave no partial file, and a stage
must end with one line and exit code 1."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from mmrepro.cli import run_stage
from mmrepro.errors import DiskFullError

from .conftest import REPO, stage_env

PROBE = r"""
import json, sys
from pathlib import Path
import torch
from mmrepro.errors import DiskFullError
from mmrepro.fileio import save_torch_atomic

disk = Path(sys.argv[1])
save_torch_atomic({"w": torch.zeros(1000)}, disk / "small.pt")  # 4 kB: fits
try:
    save_torch_atomic({"model": {"w": torch.zeros(1_000_000)}, "step": 3}, disk / "big.pt")  # 4 MB into 2 MB
except DiskFullError as exc:
    print(json.dumps({"message": exc.strerror, "errno": exc.errno, "cause": repr(exc.__cause__),
                      "left": sorted(p.name for p in disk.iterdir()),
                      "small": torch.load(disk / "small.pt")["w"].shape[0]}))
"""


def test_a_full_disk_is_said_in_words_and_leaves_no_partial_file(tmp_path):
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) to mount a small tmpfs without root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mount_and_run = 'mount -t tmpfs -o size=2m tmpfs "$1" && exec "$2" -c "$3" "$1"'
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", mount_and_run, "sh", str(disk), sys.executable, PROBE],
                          capture_output=True, text=True, env=stage_env(), timeout=120)
    if proc.returncode != 0 and "mount" in proc.stderr and "Traceback" not in proc.stderr:
        pytest.skip(f"this machine allows no tmpfs in a user namespace: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["errno"] == 28 and ("iostream error" in out["cause"] or "unexpected pos" in out["cause"]), out
    assert out["left"] == ["small.pt"] and out["small"] == 1000  # no big.pt, no big.pt.tmp; the earlier file intact
    message = out["message"]
    assert message.startswith(f"no space left on the disk of {disk}/big.pt: it needs ~4 MB, ")
    free_mb = float(message.split(", ")[1].split(" MB were free")[0])
    assert 1.5 <= free_mb <= 2.1, message  # the 2 MB tmpfs less the small file, before the write began


def test_a_stage_ends_with_one_line_and_exit_code_1(monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # its params.yaml and configs/, read by the wrapper before the body runs
    monkeypatch.setattr(sys, "argv", ["train.py", "conformer"])

    def body(params, args):
        raise DiskFullError(28, "no space left on the disk of artifacts/conformer/seed0/main.pt: it needs ~473 MB, "
                                "12 MB are free")

    with pytest.raises(SystemExit) as exit_:
        run_stage(body, "usage")
    assert exit_.value.code == 1
    assert capsys.readouterr().err == ("disk: no space left on the disk of artifacts/conformer/seed0/main.pt: "
                                       "it needs ~473 MB, 12 MB are free\n")
