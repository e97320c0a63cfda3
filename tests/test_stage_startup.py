"""Stage start-up (issue 15): a stage imports only what it needs (mlflow ~1.2 s of CPU, torchvision ~1.2 s stay
out of a speech paper's prepare; benchmarks/stage_startup.py measures the time), and it sets torch's threads
and OpenMP's wait policy before torch loads: passive when other processes hold the CPUs at start, libgomp's
spinning default otherwise (benchmarks/thread_policy.py measures the effect)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmrepro.threads import apply_thread_policy, cpu_budget, free_cpus

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
    """With every CPU held by a real busy-loop process, the stage's workers must wait passively."""
    env = stage_env()
    for key in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY"):  # let the policy decide
        env.pop(key, None)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(0.3)  # the hogs are running before the stage starts
        proc = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, env=env,
                              check=True)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    want_wait = "PASSIVE" if cpu_budget() > 1 else None  # one thread has no waiting workers: nothing to choose
    assert out == {"heavy": [], "threads": cpu_budget(), "wait": want_wait}
    if want_wait:
        assert "OpenMP workers wait passively" in proc.stderr


def test_thread_policy_keeps_what_the_environment_says():
    env = {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "ACTIVE"}
    assert apply_thread_policy(env, idle=lambda: 0.0) == {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "ACTIVE"}
    env = {"OMP_NUM_THREADS": "4"}
    assert apply_thread_policy(env, idle=lambda: 0.0) == {"OMP_NUM_THREADS": "4", "OMP_WAIT_POLICY": "PASSIVE"}


def test_thread_policy_spins_on_a_quiet_machine_and_waits_passively_on_a_busy_one():
    """4 threads need 3.5 idle CPUs to spin; 1 thread has no workers, so the load is not even probed."""
    assert apply_thread_policy({"OMP_NUM_THREADS": "4"}, idle=lambda: 4.0) == {"OMP_NUM_THREADS": "4",
                                                                               "OMP_WAIT_POLICY": None}
    assert apply_thread_policy({"OMP_NUM_THREADS": "4"}, idle=lambda: 3.6)["OMP_WAIT_POLICY"] is None
    assert apply_thread_policy({"OMP_NUM_THREADS": "4"}, idle=lambda: 3.4)["OMP_WAIT_POLICY"] == "PASSIVE"

    def not_probed() -> float:
        raise AssertionError("probed the load for one thread")

    assert apply_thread_policy({"OMP_NUM_THREADS": "1"}, idle=not_probed) == {"OMP_NUM_THREADS": "1",
                                                                               "OMP_WAIT_POLICY": None}
    env: dict[str, str] = {}
    apply_thread_policy(env, idle=lambda: 0.0)
    assert env["OMP_NUM_THREADS"] == str(cpu_budget())


def test_free_cpus_counts_idle_ticks_and_adds_back_this_process(tmp_path, monkeypatch):
    """/proc/stat's first line: user nice system idle iowait irq softirq steal. Between the two samples the
    2 CPUs counted 100 ticks, 30 of them idle or iowait: 0.6 CPUs idle."""
    stat = tmp_path / "stat"
    samples = iter(["cpu  100 0 100 700 100 0 0 0 0 0\n", "cpu  130 0 130 720 110 10 0 0 0 0\n"])

    def fake_sleep(_):
        stat.write_text(next(samples))

    stat.write_text(next(samples))
    monkeypatch.setattr(time, "sleep", fake_sleep)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    idle = free_cpus(interval=0.5, proc_stat=stat)
    assert idle == pytest.approx(2 * 30 / 100, abs=0.05)  # + this process's own CPU time in the window (~0)
    assert free_cpus(proc_stat=tmp_path / "missing") == float("inf")


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


def test_logging_a_model_checks_only_its_pinned_packages_and_puts_mlflows_package_map_back(tmp_path, monkeypatch):
    """log_trained_model must not scan every installed distribution (1.5 s of each train stage): the scan is
    counted here (MLflow swallows errors in its requirement check, so a raising stand-in would prove nothing).
    The logged model still pins torch and mlflow, and MLflow's own map is left unset, so that a later
    inference in the process scans as MLflow intends."""
    import mlflow
    import torch
    from mlflow.utils import requirements_utils

    from mmrepro.tracking import log_trained_model

    scans = []
    real_scan = requirements_utils.importlib_metadata.packages_distributions
    monkeypatch.setattr(requirements_utils.importlib_metadata, "packages_distributions",
                        lambda: scans.append(1) or real_scan())
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("startup")
    with mlflow.start_run():
        uri = log_trained_model(torch.nn.Linear(3, 2), "main-seed0")
    requirements = (Path(mlflow.artifacts.download_artifacts(uri)) / "requirements.txt").read_text().split()
    assert requirements == [f"mlflow=={mlflow.__version__}", f"torch=={torch.__version__.split('+')[0]}"]
    assert scans == []
    assert requirements_utils._MODULES_TO_PACKAGES is None and requirements_utils._PACKAGES_TO_MODULES is None
    requirements_utils._init_modules_to_packages_map()
    assert scans == [1] and "torchvision" in requirements_utils._MODULES_TO_PACKAGES


# A paper stage's start-up through run_stage, as DVC runs it: which paper modules and heavy packages it loaded.
PAPER_STAGE_PROBE = """
import json, sys
sys.argv = ["stages/prepare.py", "starcapnet"]
sys.path.insert(0, "src")
from mmrepro.cli import run_stage
from mmrepro.papers import REGISTRY
run_stage(lambda params, args: print(json.dumps({
    "papers": sorted(n for n in REGISTRY if f"mmrepro.papers.{n}" in sys.modules),
    "validated": args})), "usage")
"""


def test_a_paper_stage_imports_and_validates_only_its_own_paper():
    """Item 5 of issue 15: checking every paper's recipes imported all nine paper modules (and their models) in
    each of a run's ~28 stage processes; the validate stage checks them all once, first."""
    proc = subprocess.run([sys.executable, "-c", PAPER_STAGE_PROBE], cwd=REPO, capture_output=True, text=True,
                          env=stage_env(), check=True)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"papers": ["starcapnet"], "validated": ["starcapnet"]}


def test_a_stage_of_one_paper_does_not_stop_on_another_papers_recipe(tmp_path):
    """The other side of the scoped check: a bad recipe of another paper is the validate stage's to report
    (tests/test_faults_params.py); it stops `dvc repro` there, before any paper stage runs."""
    from mmrepro.config import ParamsError, validate_params

    from .conftest import committed_params, committed_recipes

    recipes = committed_recipes()
    recipes["conformer"]["cpu"]["lr"] = -1.0
    params = validate_params(committed_params(), recipes, papers=["starcapnet"])
    assert params.recipes["conformer"]["cpu"]["lr"] == -1.0
    with pytest.raises(ParamsError, match=r"cpu\.lr: Input should be greater than 0"):
        validate_params(committed_params(), recipes)


def test_validate_in_a_fresh_clone_does_not_import_mlflow(tmp_path):
    """No store yet (the default sqlite file is absent): no crashed run to close, and no ~2 s MLflow import."""
    from .conftest import copy_repo

    repo = copy_repo(tmp_path / "repo")
    probe = ("import runpy, sys; sys.argv = ['stages/validate.py']\n"
             "runpy.run_path('stages/validate.py', run_name='__main__')\n"
             "print('mlflow' in sys.modules)")
    fresh = subprocess.run([sys.executable, "-c", probe], cwd=repo, capture_output=True, text=True, env=stage_env())
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.split()[-1] == "False" and (repo / "data/config/starcapnet.json").is_file()
    (repo / "mlflow.db").touch()  # a store exists: validate looks for the runs of crashed stages
    again = subprocess.run([sys.executable, "-c", probe], cwd=repo, capture_output=True, text=True, env=stage_env())
    assert again.returncode == 0, again.stderr
    assert again.stdout.split()[-1] == "True"
