"""The container, built and run for real (`make image-test`, run by CI; needs root, buildah, debootstrap
and setfacl, which `scripts/system_deps.sh --image-test` installs).

No Docker engine runs here and the CUDA base image cannot be pulled, so this builds the project's
Dockerfile with buildah (no daemon) on a stand-in base: Debian 12 made with debootstrap, cached in
buildah's storage as localhost/mmrepro-base:bookworm. The locked wheels (CUDA torch included) come from
wherever this machine's pip takes them: its index settings are passed as build args and its local
wheel folders and CA bundle as read-only build-time mounts, so none of them ends up in the image.
Then it runs the image's default command (`dvc repro`) as the image's non-root user on a fresh clone
of this checkout (its committed HEAD, set to the smoke profile) mounted at /workspace, and checks the
report rows and the MLflow store the run left in the mount, and that the invoking user can still read
every file the container wrote and use git and the store. Prints the image size and the build and run times.

    sudo .venv/bin/python scripts/image_test.py [--keep-clone]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
BASE = "localhost/mmrepro-base:bookworm"
IMAGE = "localhost/mmrepro:image-test"
WORK = Path("/var/tmp/mmrepro-image-test")  # the clone mounted at /workspace (kept with --keep-clone)
IMAGE_UID = 1000  # the Dockerfile's USER
STORAGE = Path("/var/lib/containers/storage")  # buildah's, as root
# Free disk a cold build needs (measured 2026-12-02, overlay: 26.2 GB at its peak, while the 6.6 GB venv layer
# is committed; 7 GB stay, base and image); a rebuild on the cached layers needs little. With less, the test is
# skipped with the figures, as the rehearsal is in `make test`: a machine's limit, not the project's failure.
COLD_BUILD_GB, REBUILD_GB = 30, 3
# The papers run inside the image by default: the smoke pipeline of these two uses every system package
# of the image (espeak-ng, flite and pocketsphinx-testdata for speech; Java, rsvg-convert and openclipart
# for captions) in about 5 minutes (all nine had not finished after 10 here); `make test` already runs every
# paper's smoke on the host.
PAPERS = ["conformer", "attention_captioner"]
BUILD_MOUNTS = "/run/mmrepro-build"  # where a build step sees this machine's wheel folders and CA bundle
# pip settings that say where wheels come from, as this machine's pip resolves them -> Dockerfile build args
PIP_SOURCES = {"index-url": "PIP_INDEX_URL", "extra-index-url": "PIP_EXTRA_INDEX_URL",
               "find-links": "PIP_FIND_LINKS", "cert": "PIP_CERT"}


# The image's command, then a stop of the captioners' METEOR server (mmrepro.metrics.meteor_server), which
# outlives the stages: `--isolation chroot` has no PID namespace to end it with the run, and a second `buildah
# run` mounts the container anew, where the server's socket cannot be reached. Exits with the command's status.
STOP_METEOR_AFTER = ('"$@"; status=$?; echo "image test: METEOR server after the run:'
                     ' $(PYTHONPATH=/workspace/src python -m mmrepro.metrics.meteor_server stop)"; exit $status')


def sh(*cmd: str, **kw) -> str:
    proc = subprocess.run(cmd, text=True, capture_output=True, **kw)
    if proc.returncode != 0:
        sys.exit(f"image test: {' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}")
    return proc.stdout


def storage_driver() -> str:
    """Native overlay where the kernel and file system allow it (layers shared, `buildah from` free);
    vfs otherwise, which copies the whole multi-GB tree for every layer and container."""
    probe = subprocess.run(["buildah", "--storage-driver", "overlay", "images"], capture_output=True)
    return "overlay" if probe.returncode == 0 else "vfs"


def enough_disk(buildah: list[str]) -> bool:
    """Says (and returns False) when the disk of buildah's storage has too little free for the build."""
    cached = subprocess.run([*buildah, "inspect", "--type", "image", IMAGE], capture_output=True).returncode == 0
    need = REBUILD_GB if cached else COLD_BUILD_GB
    where = next(p for p in (STORAGE, *STORAGE.parents) if p.exists())
    free = shutil.disk_usage(where).free / 1e9
    if free < need:
        print(f"image test: SKIPPED: a {'re' if cached else 'cold '}build needs ~{need} GB free on the disk of "
              f"{STORAGE}; {free:.1f} GB are free")
    return free >= need


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (the stand-in base comes from it)."""
    for source in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        text = source.read_text() if source.is_file() else ""
        found = (re.search(r"^URIs:\s*(\S+/debian)\s*$", text, re.M)  # deb822 (.sources)
                 or re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)\s", text, re.M))
        if found:
            return found[1]
    return "http://deb.debian.org/debian"


def ensure_base(buildah: list[str]) -> None:
    if subprocess.run([*buildah, "inspect", "--type", "image", BASE], capture_output=True).returncode == 0:
        print(f"base: {BASE} (cached)")
        return
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        sh("debootstrap", "--variant=minbase", "bookworm", str(rootfs), debian_mirror())
        ctr = sh(*buildah, "from", "scratch").strip()
        sh(*buildah, "copy", ctr, f"{rootfs}/", "/")
        sh(*buildah, "config", "--cmd", "/bin/bash", ctr)
        sh(*buildah, "commit", "-q", ctr, BASE)
        sh(*buildah, "rm", ctr)
    print(f"base: {BASE} made with debootstrap in {time.monotonic() - started:.0f} s")


def pip_sources(listing: str) -> tuple[list[str], list[str]]:
    """Build args and read-only mounts that give a build step this machine's wheel sources, from the
    output of `pip config list`. Each local folder and the CA bundle are mounted under BUILD_MOUNTS,
    where the build args point; buildah leaves only their empty mount points there in the image."""
    settings = {}
    for line in listing.splitlines():  # `global.find-links='/opt/wheels'`; env vars (:env:) win
        key, _, value = line.partition("=")
        name = key.split(".", 1)[1]
        if name in PIP_SOURCES and (name not in settings or key.startswith(":env:")):
            settings[name] = value.strip("'\"")
    args, mounts = [], set()
    for name, value in settings.items():
        if name == "cert":
            mounts.add(f"{value}:{BUILD_MOUNTS}/ca.crt:ro")
            value = f"{BUILD_MOUNTS}/ca.crt"
        else:
            locations = []
            for location in value.split():
                scheme = "file://" if location.startswith("file://") else ""
                path = Path(location.removeprefix(scheme))
                if path.is_absolute():  # a local index's simple/ pages link to the files beside that folder
                    folder = path.parent if path.name == "simple" else path
                    mounts.add(f"{folder}:{BUILD_MOUNTS}{folder}:ro")
                    location = f"{scheme}{BUILD_MOUNTS}{path}"
                locations.append(location)
            value = " ".join(locations)
        args += ["--build-arg", f"{PIP_SOURCES[name]}={value}"]
    return args, [flag for mount in sorted(mounts) for flag in ("--volume", mount)]


def check_no_build_settings(buildah: list[str], ctr: str) -> None:
    """The machine's pip sources and CA bundle reached the build only as build args and mounts: the image's
    environment names none of them and their mount points are left empty."""
    env = json.loads(sh(*buildah, "inspect", ctr))["OCIv1"]["config"]["Env"]
    assert not [e for e in env if e.startswith("PIP_")], f"pip settings in the image's environment: {env}"
    rootfs = Path(sh(*buildah, "mount", ctr).strip())
    try:
        left = [p for p in (rootfs / BUILD_MOUNTS.lstrip("/")).rglob("*") if p.is_file() and p.stat().st_size]
        assert not left, f"build-time mounts left content in the image: {left[:5]}"
    finally:
        sh(*buildah, "umount", ctr)


def fresh_clone(invoker: int) -> Path:
    """A clone of this checkout's HEAD owned by the invoking user, writable by the image's user through
    ACLs (ownership stays the invoker's, so git keeps trusting the repository), and default ACLs that
    leave every file the container writes readable and writable by the invoker."""
    if subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                      text=True).stdout:
        print("image test: uncommitted changes are not in the clone (it tests HEAD)")
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    clone = WORK / "workspace"
    sh("git", "clone", "-q", "--no-hardlinks", str(REPO), str(clone))
    sh("chown", "-R", f"{invoker}:{invoker}", str(WORK))
    sh("setfacl", "-R", "-m", f"u:{IMAGE_UID}:rwX,d:u:{IMAGE_UID}:rwX,d:u:{invoker}:rwX", str(clone))
    return clone


def use_smoke_profile(clone: Path, papers: list[str]) -> list[str]:
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["profile"] = "smoke"
    if papers != ["all"]:
        params["run"] = papers
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (clone / "dvc.lock").unlink(missing_ok=True)  # a pipeline that has never run
    git = ["git", "-c", "user.name=mmrepro-image-test", "-c", "user.email=test@localhost", "-c", "safe.directory=*"]
    sh(*git, "commit", "-qam", "image test: smoke profile", cwd=clone)
    return params["run"]


def check_report(clone: Path, papers: list[str]) -> int:
    environment = json.loads((clone / "reports/comparison.json").read_text())["environment"]
    assert environment["profile"] == "smoke", "report: not the smoke profile"
    with (clone / "reports/comparison.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for paper in papers:
        measured = [r for r in rows if r["paper"] == paper and r["ours"] != ""]
        assert measured, f"report: no measured row for {paper}"
        for row in measured:
            float(row["ours"])
    return len(rows)


def check_mlflow(clone: Path, papers: list[str]) -> int:
    """One finished training run per paper (and seed) in the SQLite store the run left in the mount,
    holding its params, a loss curve and artifacts that lie in the mount too, with a finished evaluation
    run as its child."""
    seeds = yaml.safe_load((clone / "params.yaml").read_text())["seeds"]
    client = MlflowClient(f"sqlite:///{clone / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mmrepro")
    runs = client.search_runs([experiment.experiment_id], "tags.dvc_stage = 'train'", max_results=1000)
    evaluations = client.search_runs([experiment.experiment_id], "tags.dvc_stage = 'evaluate'", max_results=1000)
    assert sorted(r.data.tags["mlflow.parentRunId"] for r in evaluations if r.info.status == "FINISHED") == sorted(
        r.info.run_id for r in runs), "mlflow: one finished evaluation run per training run"
    assert sorted(r.data.tags["paper"] for r in runs) == sorted(papers * len(seeds)), "mlflow: runs per paper"
    for run in runs:
        name = run.data.tags["paper"]
        assert run.info.status == "FINISHED" and run.data.params["profile"] == "smoke", name
        assert run.data.tags["device"].startswith("cpu"), name
        losses = [key for key in run.data.metrics if key.split("/")[-1] == "train_loss"]  # per variant
        assert losses and all(client.get_metric_history(run.info.run_id, k) for k in losses), f"mlflow: {name} loss"
        artifacts = Path(run.info.artifact_uri.removeprefix("file://").replace("/workspace", str(clone), 1))
        assert any(p.is_file() for p in artifacts.rglob("*")), f"mlflow: {name} left no artifacts in the mount"
    return len(runs)


def check_files_usable(clone: Path, before: set[Path], invoker: int) -> tuple[int, list[str]]:
    """Every file the container wrote was written by the image's user (not root); the invoking user can
    read every one of them by the ACLs (what a non-root invoker relies on; root could read anything, so
    the ACLs are what is checked); as the invoker, git works on the clone and the MLflow store takes a
    new run. Paths whose writer gave them no group write (sqlite's mlflow.db is 0644, DVC's cache folders
    0755) stay read-only for a non-root invoker: returned, to be printed."""
    written = [p for p in clone.rglob("*") if p not in before and ".git" not in p.relative_to(clone).parts]
    assert written, "nothing written in the mount"
    owners = {p.lstat().st_uid for p in written}
    assert owners == {IMAGE_UID}, f"files in the mount owned by {owners}, not the image user {IMAGE_UID}"
    unusable, read_only = [], []
    for block in filter(str.strip, sh("getfacl", "-R", "-n", "-p", "-e", str(clone)).split("\n\n")):
        path = Path(re.search(r"^# file: (.*)$", block, re.M)[1])
        if path not in written or path.is_symlink():
            continue
        entry = re.search(rf"^user:{invoker}:(\S+)(?:\s+#effective:(\S+))?", block, re.M)
        perms = entry[2] or entry[1] if entry else ""
        if any(c not in perms for c in ("rx" if path.is_dir() else "r")):
            unusable.append(f"{path.relative_to(clone)} ({perms or 'no entry'})")
        elif "w" not in perms:
            read_only.append(str(path.relative_to(clone)))
    assert not unusable, f"not usable by uid {invoker}: " + ", ".join(unusable[:10])
    sh("setpriv", f"--reuid={invoker}", f"--regid={invoker}", "--clear-groups", "git", "status", "--porcelain",
       cwd=clone)
    if invoker == os.geteuid():
        client = MlflowClient(f"sqlite:///{clone / 'mlflow.db'}")
        run = client.create_run(client.get_experiment_by_name("mmrepro").experiment_id, run_name="image-test")
        client.set_terminated(run.info.run_id)
    return len(written), read_only


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--papers", nargs="+", default=PAPERS,
                        help=f"papers to run (default: {' '.join(PAPERS)}; 'all': params.yaml's run list)")
    parser.add_argument("--keep-clone", action="store_true", help=f"keep {WORK} for a look")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # our lines in order with buildah's, also into a log file
    if os.geteuid() != 0:
        sys.exit("image test: run as root (debootstrap and buildah's storage), e.g. sudo make image-test")
    invoker = int(os.environ.get("SUDO_UID", 0))
    driver = storage_driver()
    buildah = ["buildah", "--storage-driver", driver]
    print(f"image test: buildah {sh('buildah', '--version').split()[2]}, storage driver {driver}")
    if not enough_disk(buildah):
        return
    ensure_base(buildah)
    clone = fresh_clone(invoker)

    build_args, mounts = pip_sources(sh(sys.executable, "-m", "pip", "config", "list"))
    started = time.monotonic()
    subprocess.run([*buildah, "bud", "--isolation", "chroot", "--layers", "--build-arg", f"BASE={BASE}",
                    *build_args, *mounts, "-t", IMAGE, str(clone)], check=True, timeout=3600)
    build_s = time.monotonic() - started
    size = sh(*buildah, "images", "--format", "{{.Size}}", IMAGE).strip()
    print(f"image test: built {IMAGE} ({size}) in {build_s:.0f} s")

    papers = use_smoke_profile(clone, args.papers)
    before = set(clone.rglob("*"))
    cmd = json.loads(sh(*buildah, "inspect", "--type", "image", IMAGE))["OCIv1"]["config"]["Cmd"]
    subprocess.run([*buildah, "rm", "mmrepro-image-test"], capture_output=True)  # a leftover of a killed run
    ctr = sh(*buildah, "from", "--name", "mmrepro-image-test", IMAGE).strip()
    try:
        check_no_build_settings(buildah, ctr)
        started = time.monotonic()
        subprocess.run([*buildah, "run", "--isolation", "chroot", "--user", f"{IMAGE_UID}:{IMAGE_UID}",
                        "--volume", f"{clone}:/workspace", ctr, "--", "sh", "-c", STOP_METEOR_AFTER, "sh", *cmd],
                       check=True, timeout=3600)
        run_s = time.monotonic() - started
    finally:
        sh(*buildah, "rm", ctr)
    rows, runs = check_report(clone, papers), check_mlflow(clone, papers)
    files, read_only = check_files_usable(clone, before, invoker)
    if read_only:
        print(f"image test: {len(read_only)} of the {files} paths written give uid {invoker} no write access by "
              f"ACL (their writers made them so), e.g. {', '.join(read_only[:3])}: a non-root invoker reads them only")
    print(f"image test: ok: `{' '.join(cmd)}` as uid {IMAGE_UID} on the smoke profile ({' '.join(papers)}) "
          f"in {run_s:.0f} s; {rows} report rows, {runs} MLflow runs, {files} files written, usable by uid {invoker}")
    print(f"image test: image size {size}, build {build_s:.0f} s, run {run_s:.0f} s (storage driver {driver})")
    if not args.keep_clone:
        shutil.rmtree(WORK)


if __name__ == "__main__":
    main()
