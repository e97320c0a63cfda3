"""Stage start-up imports only what the stage needs: mlflow (~1.2 s of CPU) and torchvision (~1.2 s) stay out
of a locate/prepare start-up of a speech paper (benchmarks/stage_startup.py measures the time)."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import REPO, stage_env

PROBE = """
import json, runpy, sys
runpy.run_path("stages/prepare.py", run_name="startup_probe")
from mmrepro.config import load_params
from mmrepro.papers import get_paper
load_params("params.yaml")
get_paper("conformer")
print(json.dumps(sorted(m for m in ("mlflow", "torchvision", "matplotlib", "dvc") if m in sys.modules)))
"""


def test_prepare_start_up_imports_no_mlflow_torchvision_matplotlib_or_dvc():
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, env=stage_env(),
                          check=True)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
