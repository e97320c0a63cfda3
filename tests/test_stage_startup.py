"""Stage start-up (issue 15): a stage imports only what it needs (mlflow ~1.2 s of CPU, torchvision ~1.2 s stay
out of a speech paper's prepare; benchmarks/stage_startup.py measures the time), and it sets torch's threads
and OpenMP's wait policy before torch loads (benchmarks/thread_policy.py measures the effect)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mmrepro.threads import apply_thread_policy, cpu_budget

from .conftest import REPO, stage_env

PROBE = """
import json, os, runpy, sys
runpy.run_path("stages/prepare.py", run_name="startup_probe")
from mmrepro.config import load_params
from mmrepro.papers import get_paper
load_params("params.yaml")
get_paper("conformer")
import torch
print(json.dumps({"heavy": sorted(m for m in ("mlflow", "torchvision", "matplotlib", "dvc") if m in sys.modules),
                  "threads": torch.get_num_threads(), "wait": os.environ.get("OMP_WAIT_POLICY")}))
"""


def test_prepare_start_up_imports_no_mlflow_torchvision_matplotlib_or_dvc_and_applies_the_thread_policy():
    env = stage_env()
    for key in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY"):  # let the policy decide
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, env=env, check=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"heavy": [], "threads": cpu_budget(), "wait": "PASSIVE"}


def test_thread_policy_keeps_what_the_environment_says():
    env = {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "ACTIVE"}
    assert apply_thread_policy(env) == {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "ACTIVE"}
    env = {}
    assert apply_thread_policy(env) == {"OMP_NUM_THREADS": str(cpu_budget()), "OMP_WAIT_POLICY": "PASSIVE"}


def test_thread_policy_refuses_to_run_after_torch_is_imported():
    import torch  # noqa: F401  (the test process has it already; OpenMP would ignore the settings)

    with pytest.raises(RuntimeError, match="before torch is imported"):
        apply_thread_policy()


def test_cpu_budget_is_the_affinity_mask_capped_by_the_cgroup_quota(tmp_path):
    cores = len(os.sched_getaffinity(0))
    quota = tmp_path / "cpu.max"
    quota.write_text("max 100000\n")
    assert cpu_budget(quota) == cores
    quota.write_text("150000 100000\n")  # 1.5 CPUs -> 1 thread
    assert cpu_budget(quota) == 1
    quota.write_text(f"{100000 * (cores + 4)} 100000\n")  # a quota above the mask: the mask decides
    assert cpu_budget(quota) == cores
    assert cpu_budget(tmp_path / "missing") == cores
