"""CI's smoke reproduction: every registered paper through `dvc repro` on the smoke profile, in a
temporary git repo, ending in one report. Checks that each paper reports numbers and that no row
measured on our offline data claims to be comparable with a paper's dataset."""

from __future__ import annotations

import csv
import subprocess

import pytest
import yaml

from mmrepro.papers import REGISTRY

from .conftest import VENV_BIN, copy_repo, stage_env

pytestmark = pytest.mark.slow
PAPER_DATASETS = {"librispeech", "lrs3", "cifar10", "flickr8k", "flickr30k", "coco", "longcrawl64"}


def test_every_paper_runs_on_smoke_and_the_report_is_honest(tmp_path):
    repo = copy_repo(tmp_path)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert set(params["papers"]) == set(REGISTRY)
    params["profile"] = "smoke"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = subprocess.run([str(VENV_BIN / "dvc"), "repro"], cwd=repo, capture_output=True, text=True,
                          env=stage_env(), timeout=3600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    lines = (repo / "reports/comparison.csv").read_text().splitlines()
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    for paper in REGISTRY:
        ours = [r for r in rows if r["paper"] == paper and r["ours"] != ""]
        assert ours, f"{paper}: no measured row in the report"
        for row in ours:
            if row["published"] == "":
                continue
            # the smoke profile never reads a paper's real dataset, so nothing measured on data may be
            # comparable; only a data-free measurement (e.g. FLOPs of an architecture) can be
            assert row["dataset"] not in PAPER_DATASETS, row
            if row["verdict"] == "comparable":
                assert (row["dataset"], row["split"]) == (row["published_dataset"], row["published_split"]), row
            else:
                assert row["verdict"].startswith("not comparable: ") and row["delta"] == "", row
