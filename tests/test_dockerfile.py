"""The Dockerfile, checked statically: hadolint reports nothing, and the image installs what CI tests:
the same lock file, the CUDA version torch is built for, the same system packages as `make setup`, a
non-root user, `dvc repro` as the default command. (`make image-test`, scripts/image_test.py, builds
and runs it for real on a Debian 12 stand-in base; no engine here can pull the CUDA base.)"""

from __future__ import annotations

import re
import subprocess

import torch

from .conftest import REPO, VENV_BIN

DOCKERFILE = (REPO / "Dockerfile").read_text()


def test_hadolint_reports_nothing():
    proc = subprocess.run([str(VENV_BIN / "hadolint"), "--no-color", "Dockerfile"], cwd=REPO, capture_output=True,
                          text=True)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


def test_base_image_matches_torch_cuda_build():
    base = re.search(r"^ARG BASE=nvidia/cuda:(\d+)\.(\d+)\.\d+-\S*runtime-ubuntu\S+$", DOCKERFILE, re.M)
    assert base, "the default base must be an nvidia/cuda runtime image"
    assert f"{base[1]}.{base[2]}" == torch.version.cuda
    assert re.findall(r"^FROM .*$", DOCKERFILE, re.M) == ["FROM ${BASE}"]


def test_no_machine_settings_baked_in():
    """Index URLs, wheel folders and CA bundles reach the build as build args (unset by default) and
    mounts; an ENV or a COPY of them would stay in the image."""
    assert re.findall(r"^ARG (PIP_\w+)$", DOCKERFILE, re.M) == ["PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL",
                                                                "PIP_FIND_LINKS", "PIP_CERT"]
    assert not re.search(r"pip\.conf|ca-certificates\.crt|sources\.list|PIP_\w+=", DOCKERFILE)


def test_installs_the_locked_requirements_on_python_311():
    assert "COPY requirements.lock" in DOCKERFILE and "pip install --no-cache-dir -r /tmp/requirements.lock" in DOCKERFILE
    assert "python3.11 -m venv" in DOCKERFILE
    lock = (REPO / "requirements.lock").read_text()
    for pin in ("torch==2.14.1", "torchvision==0.29.1", "pycocoevalcap==1.2"):
        assert re.search(rf"^{re.escape(pin)}$", lock, re.M), pin
    pip_pin = re.search(r"pip install --no-cache-dir (pip==[\d.]+)", DOCKERFILE)[1]
    assert pip_pin in (REPO / "Makefile").read_text()  # the same pip as `make setup`


def test_system_packages_match_make_setup():
    script = (REPO / "scripts/system_deps.sh").read_text()
    wanted = set(re.search(r"^packages=\(([^)]*)\)", script, re.M)[1].split())
    assert wanted <= set(DOCKERFILE.split())


def test_non_root_user_workdir_and_default_command():
    assert re.search(r"^USER (?!root|0\b)\S+$", DOCKERFILE, re.M)
    assert "WORKDIR /workspace" in DOCKERFILE
    assert DOCKERFILE.rstrip().splitlines()[-1] == 'CMD ["dvc", "repro"]'
