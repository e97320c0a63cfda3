"""The wiring of the image test (scripts/image_test.py, which builds and runs the Docker image for real;
it needs root and minutes, so CI runs it through `make image-test`, not here): CI calls it, the set-up
installs its tools, and this machine's pip sources become build args and read-only mounts, never
settings inside the image."""

from __future__ import annotations

import importlib.util
import re
import shutil

from .conftest import REPO

spec = importlib.util.spec_from_file_location("image_test", REPO / "scripts/image_test.py")
image_test = importlib.util.module_from_spec(spec)
spec.loader.exec_module(image_test)


def test_ci_runs_the_image_test_after_the_suite():
    ci = (REPO / ".ci/run").read_text()
    assert ci.rstrip().splitlines()[-1] == "make image-test"
    target = re.search(r"^image-test:.*\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M)
    assert target and "scripts/system_deps.sh --image-test" in target[1] and "scripts/image_test.py" in target[1]


def test_set_up_installs_buildah_debootstrap_and_acl_for_the_image_test():
    script = (REPO / "scripts/system_deps.sh").read_text()
    assert re.search(r"^image_test_packages=\(buildah debootstrap acl\)$", script, re.M)


def test_pip_sources_become_build_args_and_read_only_mounts():
    listing = ("global.cert='/etc/ssl/certs/ca-certificates.crt'\n"
               "global.extra-index-url='file:///opt/pypi/simple https://mirror.example/simple'\n"
               "global.find-links='/srv/old-wheels'\n"
               "global.constraint='/etc/xdg/pip/constraints.txt'\n"
               ":env:.find-links='/opt/wheels'\n")
    args, mounts = image_test.pip_sources(listing)
    assert args == ["--build-arg", "PIP_CERT=/run/mmrepro-build/ca.crt",
                    "--build-arg", "PIP_EXTRA_INDEX_URL=file:///run/mmrepro-build/opt/pypi/simple "
                                   "https://mirror.example/simple",
                    "--build-arg", "PIP_FIND_LINKS=/run/mmrepro-build/opt/wheels"]
    assert mounts == ["--volume", "/etc/ssl/certs/ca-certificates.crt:/run/mmrepro-build/ca.crt:ro",
                      "--volume", "/opt/pypi:/run/mmrepro-build/opt/pypi:ro",
                      "--volume", "/opt/wheels:/run/mmrepro-build/opt/wheels:ro"]
    assert image_test.pip_sources("global.timeout='60'\n") == ([], [])


def test_a_build_without_the_disk_it_needs_is_skipped_with_the_figures(tmp_path, monkeypatch, capsys):
    """`false inspect ...` / `true inspect ...` stand in for buildah: the image is not / is already built. The
    storage folder is one not yet made, below tmp_path: the free space is read on its nearest parent."""
    monkeypatch.setattr(image_test, "STORAGE", tmp_path / "containers" / "storage")
    free = shutil.disk_usage(tmp_path).free / 1e9
    monkeypatch.setattr(image_test, "COLD_BUILD_GB", free * 2)
    monkeypatch.setattr(image_test, "REBUILD_GB", 0)
    assert image_test.enough_disk(["false"]) is False
    out = capsys.readouterr().out
    assert out.startswith(f"image test: SKIPPED: a cold build needs ~{free * 2} GB free on the disk of "
                          f"{tmp_path}/containers/storage; ") and out.rstrip().endswith(" GB are free")
    assert image_test.enough_disk(["true"]) is True and capsys.readouterr().out == ""
