"""What produced a number: git state, interpreter, package versions, device. Recorded in every
metric file, every MLflow run and above the comparison table."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata

import torch

PACKAGES = ("torch", "torchvision", "dvc", "mlflow", "pandas", "numpy", "pycocoevalcap", "jiwer")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_state() -> dict[str, str | bool]:
    sha = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", *_not_code())
    return {"git_sha": sha or "unknown", "git_dirty": bool(status) if status is not None else True}


def _not_code() -> list[str]:
    """Pathspecs of files the pipeline's own tools rewrite, which therefore do not make the code dirty:
    dvc.lock (written while the pipeline runs) and, inside `dvc exp run` (DVC sets DVC_EXP_NAME for its
    stages), params.yaml and the recipes in configs/, which the experiment's -S options rewrite; their values
    are the run's params and config, and DVC's experiment ref keeps the files."""
    excluded = [":!dvc.lock"]
    if os.environ.get("DVC_EXP_NAME"):
        excluded += [":!params.yaml", ":!configs"]
    return excluded


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def device_name(device: torch.device | None = None) -> str:
    device = device or pick_device()
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def environment() -> dict:
    return {
        **git_state(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else "none (CPU run)",
        "device": device_name(),
        "packages": package_versions(),
    }

