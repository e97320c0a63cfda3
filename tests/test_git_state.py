"""git_state's dirty flag in a real git repository: what the pipeline's own tools rewrite is not dirty code."""

from __future__ import annotations

import subprocess

import pytest

from mmrepro.environment import git_state


@pytest.fixture
def repo(tmp_path, monkeypatch):
    for name in ("params.yaml", "dvc.lock", "model.py"):
        (tmp_path / name).write_text("a: 1\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    return tmp_path


def test_clean_checkout_and_untracked_files_are_not_dirty(repo):
    (repo / "new.txt").write_text("x")
    state = git_state()
    assert state["git_dirty"] is False and len(state["git_sha"]) == 40


def test_dvc_lock_is_never_code(repo):
    (repo / "dvc.lock").write_text("a: 2\n")
    assert git_state()["git_dirty"] is False


def test_params_are_code_except_inside_a_dvc_experiment(repo, monkeypatch):
    (repo / "params.yaml").write_text("a: 2\n")
    assert git_state()["git_dirty"] is True  # a hand edit outside `dvc exp run`
    monkeypatch.setenv("DVC_EXP_NAME", "seed1")  # what `dvc exp run -S ...` sets for its stages
    assert git_state()["git_dirty"] is False


def test_changed_code_is_dirty_inside_a_dvc_experiment_too(repo, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "seed1")
    (repo / "model.py").write_text("a: 2\n")
    assert git_state()["git_dirty"] is True
