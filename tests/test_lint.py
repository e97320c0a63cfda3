"""The code base stays clean under the project's ruff rules (pyproject.toml: E, F, W, B)."""

from __future__ import annotations

import subprocess

from .conftest import REPO, VENV_BIN


def test_ruff_reports_nothing():
    proc = subprocess.run([str(VENV_BIN / "ruff"), "check", "--no-cache", "src", "stages", "tests", "benchmarks"],
                          cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
