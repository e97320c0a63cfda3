"""Atomic writes: a stage that fails leaves no half-written output."""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mmrepro.errors import DiskFullError


@contextmanager
def atomic_dir(target: Path | str) -> Iterator[Path]:
    """Yield an empty sibling temp dir; on success it replaces `target`, on error it is removed."""
    target = Path(target)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


def write_text_atomic(path: Path | str, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json_atomic(path: Path | str, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_torch_atomic(obj: Any, path: Path | str) -> None:
    """`torch.save` through a sibling temp file, so a crash leaves no half-written checkpoint or weights. A full
    disk is said in words: torch's zip writer reports it only as "iostream error" / "unexpected pos"."""
    import torch  # here, not at the top: the report stage writes JSON through this module without torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    free = shutil.disk_usage(path.parent).free  # before: torch's writer keeps the partial file open on failure
    try:
        torch.save(obj, tmp)
    except (RuntimeError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        need = _tensor_bytes(obj)
        if getattr(exc, "errno", None) == errno.ENOSPC or need >= free:
            raise DiskFullError(errno.ENOSPC, f"no space left on the disk of {path}: it needs ~{need / 1e6:,.0f} MB, "
                                f"{free / 1e6:,.0f} MB were free (a full-size training run writes ~5x its weights: "
                                "checkpoint with optimizer state, weights, MLflow's copy)") from exc
        raise
    os.replace(tmp, path)


def _tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in a (nested) dict / list / tuple: about what torch.save writes."""
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(_tensor_bytes(v) for v in obj)
    nbytes = getattr(obj, "nbytes", None)  # torch.Tensor and numpy arrays
    return int(nbytes) if isinstance(nbytes, int) else 0


def sweep_tmp(*paths: Path | str) -> list[Path]:
    """Remove the stale temporaries a killed writer left: each of `paths` that ends in `.tmp`, and every
    `*.tmp` file or folder below each folder among them. For a stage's start, on its own outputs only: the
    next successful write would replace them, but a stage DVC restores from its run-cache never runs."""
    removed = []
    for path in map(Path, paths):
        found = [path] if path.name.endswith(".tmp") else sorted(path.rglob("*.tmp")) if path.is_dir() else []
        for stale in found:
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            elif stale.exists() or stale.is_symlink():
                stale.unlink(missing_ok=True)
            else:
                continue
            removed.append(stale)
    return removed
