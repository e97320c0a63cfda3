"""requirements.lock (what `make setup`, CI and the Docker image install) satisfies every dependency that
pyproject.toml declares, and the installed environment is that lock."""

from __future__ import annotations

import tomllib
from importlib.metadata import version

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import REPO


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, pinned = line.split("==")
            pins[canonicalize_name(name)] = pinned
    return pins


def test_the_lock_pins_every_declared_dependency_within_its_range_and_is_what_runs():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    lock = _lock()
    for req in declared:
        name = canonicalize_name(req.name)
        assert name in lock, f"{req} is declared but not locked"
        assert req.specifier.contains(lock[name]), f"lock pins {name}=={lock[name]}, outside {req}"
        assert version(req.name) == lock[name], f"{name}: installed {version(req.name)}, locked {lock[name]}"


def test_dvc_reads_its_lock_file_with_the_c_yaml_parser():
    # ruamel.yaml.clib: without it every dvc.lock read in `dvc repro` is pure Python (8x slower on the smoke's)
    from ruamel.yaml.main import CParser

    assert CParser is not None
