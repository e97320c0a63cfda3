"""Shared fixtures. The suite runs on CPU; GPU checks are marked `gpu` and skipped without CUDA."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """The models under test are tiny: one intra-op thread is fastest, and on a busy 2-core machine
    two threads per process were measured 10-20x slower (OpenMP oversubscription)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def committed_text(rel: str) -> str:
    """A file as committed (HEAD), not as the workspace has it: after the README's
    `dvc exp run -S profile=smoke` the workspace params.yaml says smoke, and the suite must not follow it."""
    proc = subprocess.run(["git", "show", f"HEAD:{rel}"], cwd=REPO, capture_output=True)
    return proc.stdout.decode() if proc.returncode == 0 else (REPO / rel).read_text()


def committed_params() -> dict:
    return yaml.safe_load(committed_text("params.yaml"))


def committed_recipes() -> dict[str, dict]:
    """configs/<paper>.yaml as committed: {paper: {profile: recipe}}."""
    return {path.stem: yaml.safe_load(committed_text(f"configs/{path.name}"))
            for path in sorted((REPO / "configs").glob("*.yaml"))}


def copy_repo(dest: Path) -> Path:
    """Copy the tracked (and untracked, not ignored) files of this checkout into a fresh git repo, with the
    committed params.yaml."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    (dest / "params.yaml").write_text(committed_text("params.yaml"))  # not an experiment's workspace edit
    for path in ("dvc.lock",):  # start from a pipeline that has never run
        (dest / path).unlink(missing_ok=True)
    git = ["git", "-c", "user.name=mmrepro-test", "-c", "user.email=test@localhost"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "test copy"], cwd=dest, check=True)
    return dest


def stage_env(**extra: str) -> dict[str, str]:
    """Environment for subprocesses: this venv first on PATH (DVC runs `python stages/...`)."""
    # no tracking URI, and no torchrun identity a test left in this process (a worker run in-process sets
    # LOCAL_RANK, which would make a stage think it already is a torchrun worker)
    skip = {"MLFLOW_TRACKING_URI", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}
    env = {k: v for k, v in os.environ.items() if k not in skip}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["SHELL"] = "/bin/sh"  # DVC runs stage commands with $SHELL: the same process tree here and on CI runners
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "mmrepro-test"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "test@localhost"
    env.update(extra)
    return env


def stderr_lines(proc: subprocess.CompletedProcess) -> list[str]:
    """A stage's stderr lines without the thread policy's notice, which a stage prints only when it starts on
    a busy machine (mmrepro.threads): the error-path tests then pass whatever else runs beside them."""
    return [line for line in proc.stderr.strip().splitlines() if not line.startswith("[threads] ")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout_s: float = 120) -> None:
    """Until a server process listens on 127.0.0.1:port; fails if it exits or takes longer."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"server on port {port} exited with {process.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


def start_mlflow_server(store: Path) -> tuple[subprocess.Popen, str]:
    """A real `mlflow server` on 127.0.0.1 (SQLite backend and artifacts under `store`); returns (process, URI)."""
    port = free_port()
    server = subprocess.Popen(
        [str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{store / 'server.db'}", "--artifacts-destination", str(store / "art")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        # no job runner: its ~8 huey consumer processes serve GenAI features, and cost CPU on a 2-core machine
        env=stage_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"))
    wait_for_port(port, server, timeout_s=240)
    return server, f"http://127.0.0.1:{port}"
