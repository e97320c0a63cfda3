"""What a result depends on, checked rather than trusted: the code hash and the prepared-data manifest.

Code: `code_hash(stage, paper)` hashes the source files that `dvc.yaml` lists as the stage's deps (read
from dvc.yaml itself, so the two cannot drift), so an edit to a model file changes the training
fingerprint: no resume of an old checkpoint, a new MLflow run.

Data: `prepare` writes `manifest.json` beside the prepared files (every file's size and sha256, info.json
included); train and evaluate call `verify_data`, which re-hashes a file only when its size or mtime
changed since the last verification (cache in .mmrepro/verified/, not a DVC output) and stops with one
line naming the file and what is wrong. The data fingerprint is computed from the verified files.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import yaml

from mmrepro.datasets import DatasetError
from mmrepro.fileio import write_json_atomic

MANIFEST = "manifest.json"
CACHE = Path(".mmrepro/verified")
CODE_ROOTS = ("src/", "stages/")  # deps that are code; data/ and artifacts/ deps are verified separately


class DataIntegrityError(DatasetError):
    """A prepared file is missing, changed or unexpected; the message is one line naming it."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


def stage_code_deps(stage: str, paper: str, dvc_yaml: Path = Path("dvc.yaml")) -> list[str]:
    """The code paths (files or folders) `stage` depends on for `paper`, as dvc.yaml lists them."""
    spec = yaml.safe_load(dvc_yaml.read_text())["stages"][stage]
    deps = (spec.get("do") or spec).get("deps", [])
    deps = [next(iter(d)) if isinstance(d, dict) else d for d in deps]
    return [d.replace("${item}", paper) for d in deps if d.startswith(CODE_ROOTS)]


def code_hash(stage: str, paper: str) -> str:
    """sha256 over the relative paths and contents of the stage's code deps (16 hex digits)."""
    digest = hashlib.sha256()
    for dep in stage_code_deps(stage, paper):
        path = Path(dep)
        for file in [path] if path.is_file() else _files(path):
            digest.update(file.as_posix().encode() + b"\0" + _sha256(file).encode() + b"\n")
    return digest.hexdigest()[:16]


def _fingerprint(entries: dict[str, dict]) -> str:
    lines = "".join(f"{rel}\t{e['bytes']}\t{e['sha256']}\n" for rel, e in sorted(entries.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def data_fingerprint(root: Path) -> str:
    """The fingerprint of the data files under `root` (manifest and info.json excluded)."""
    return _fingerprint({rel: e for rel, e in _scan(root).items() if rel not in (MANIFEST, "info.json")})


def _scan(root: Path) -> dict[str, dict]:
    return {f.relative_to(root).as_posix(): {"bytes": f.stat().st_size, "sha256": _sha256(f)}
            for f in _files(root) if f.name != MANIFEST}


def write_manifest(root: Path) -> dict:
    """Record every file under `root` (written last, after info.json)."""
    manifest = {"files": _scan(root)}
    write_json_atomic(root / MANIFEST, manifest)
    return manifest


def verify_data(root: Path, paper: str) -> str:
    """Check every prepared file against the manifest; return the verified data fingerprint."""
    rerun = f"rerun prepare: dvc repro -f prepare@{paper}"
    path = root / MANIFEST
    if not path.is_file():
        raise DataIntegrityError(f"{path}: missing (prepared by an older version or not at all); {rerun}")
    try:
        expected = json.loads(path.read_text())["files"]
    except (ValueError, KeyError, TypeError):
        raise DataIntegrityError(f"{path}: not a valid manifest; {rerun}") from None
    cache_path = CACHE / f"{paper}.json"
    try:
        cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    except ValueError:
        cache = {}
    found = {f.relative_to(root).as_posix() for f in _files(root) if f.name != MANIFEST}
    for rel in sorted(found - set(expected)):
        raise DataIntegrityError(f"{root / rel}: not in the prepare manifest (added after prepare); {rerun}")
    fresh = {}
    for rel, entry in sorted(expected.items()):
        file = root / rel
        if not file.is_file():
            raise DataIntegrityError(f"{file}: missing (listed in {path}); {rerun}")
        st = file.stat()
        if st.st_size != entry["bytes"]:
            raise DataIntegrityError(f"{file}: {st.st_size} bytes, the prepare manifest says {entry['bytes']} bytes "
                                     f"(truncated or replaced); {rerun}")
        key = [st.st_size, st.st_mtime_ns, entry["sha256"]]
        if cache.get(rel) != key:  # changed since the last verification (or never verified): hash it
            if _sha256(file) != entry["sha256"]:
                raise DataIntegrityError(f"{file}: content differs from the prepare manifest (corrupted or edited "
                                         f"after prepare); {rerun}")
        fresh[rel] = key
    if fresh != cache:
        CACHE.mkdir(parents=True, exist_ok=True)
        # the ranks of a torchrun stage verify at once: each writes its own temp file, then renames it
        tmp = cache_path.with_name(f"{cache_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(fresh, indent=2) + "\n")
        os.replace(tmp, cache_path)
    return _fingerprint({rel: e for rel, e in expected.items() if rel != "info.json"})


def run_fingerprint(**parts) -> str:
    """One key for everything a training run depends on (code hash, config, verified data, seed)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
