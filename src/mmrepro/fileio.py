"""Atomic writes: a stage that fails leaves no half-written output."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


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
