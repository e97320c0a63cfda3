"""External datasets: one root, one folder per dataset, identity checks against the official releases.

Every real dataset (LibriSpeech, Flickr8k/30k/COCO Karpathy splits, LRS3, CIFAR-10, LongCrawl64) lives
in its official unpacked layout under one root, `datasets.root` in params.yaml (default `datasets/`),
which the environment variable `MMREPRO_DATASETS` overrides. What each split must be is recorded in
`references/datasets.yaml`: the example count of the official release and, where verified, a content
fingerprint (`split_identity`: sha256 over the sorted ids and their reference texts).

Readers call `DatasetSettings.check` for every split they use *before* any expensive decoding. A split
that differs from the release is one line (`DatasetError`): the dataset, the params key, what was found
against what was expected, and where to get it. With `datasets.identity: warn` the line is printed and
preparation goes on (a partial copy for a rehearsal); the report then says `not comparable` and why.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

ENV_ROOT = "MMREPRO_DATASETS"
IDENTITIES = Path("references/datasets.yaml")


class DatasetError(ValueError):
    """An external dataset is missing, malformed or not the official release; the message is one line."""


def shown_path(path: str | Path) -> str:
    """A file as one-line errors name it: relative to the working directory (the checkout) when inside it."""
    path = Path(path)
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def unreadable(path: str | Path, what: str, exc: BaseException) -> DatasetError:
    """`<file>: not a readable <what> (<the decoder's reason, on one line>)`."""
    reason = " ".join(str(exc).split()) or exc.__class__.__name__
    return DatasetError(f"{shown_path(path)}: not a readable {what} ({reason})")


def split_identity(items: Iterable[tuple[str, str | Sequence[str]]]) -> dict:
    """{"n": count, "sha256": fingerprint} of a split given (example id, reference text(s)) pairs.

    The fingerprint is the sha256 of the lines `id<TAB>ref1<TAB>ref2...` (references sorted), sorted by
    id, each ending in a newline: the same for any reading order, and it changes with any id or text."""
    lines = []
    for example_id, refs in items:
        refs = [refs] if isinstance(refs, str) else sorted(refs)
        lines.append("\t".join([str(example_id), *refs]) + "\n")
    lines.sort()
    digest = hashlib.sha256("".join(lines).encode()).hexdigest()
    return {"n": len(lines), "sha256": digest}


def load_identities(path: Path = IDENTITIES) -> dict:
    """references/datasets.yaml: {dataset: {source, license, folder, ..., splits: {split: {n, sha256}}}}."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the official split identities are missing")
    return yaml.safe_load(path.read_text()) or {}


def expected_split(dataset: str, split: str, identities: dict | None = None) -> dict | None:
    """The recorded identity of dataset/split ({"n": ..., "sha256": ... or None}), None when unknown."""
    identities = load_identities() if identities is None else identities
    return (identities.get(dataset) or {}).get("splits", {}).get(split)


def identity_problems(found: dict, expected: dict | None) -> list[str]:
    """Why `found` ({"n", "sha256"}) is not the recorded official split; [] when it verifiably is."""
    if expected is None:
        return ["no official identity recorded"]
    problems = []
    if found.get("n") != expected.get("n"):
        problems.append(f"{found.get('n')} examples, the official split has {expected.get('n')}")
    elif "words" in found and expected.get("words") is not None and found["words"] != expected["words"]:
        problems.append(f"{found['words']} words, the official split has {expected['words']}")
    if not expected.get("sha256"):
        problems.append("official content fingerprint not recorded in references/datasets.yaml")
    elif found.get("sha256") != expected["sha256"]:
        problems.append(f"content fingerprint {str(found.get('sha256'))[:12]} != official {expected['sha256'][:12]}")
    return problems


@dataclass(frozen=True)
class DatasetSettings:
    """Where external datasets live and how strictly their identity is enforced."""

    root: Path = Path("datasets")
    identity: Literal["strict", "warn"] = "strict"

    @classmethod
    def resolve(cls, root: str, identity: Literal["strict", "warn"] = "strict") -> DatasetSettings:
        """The params' root unless $MMREPRO_DATASETS names another."""
        return cls(Path(os.environ.get(ENV_ROOT) or root), identity)

    def folder(self, name: str) -> Path:
        return self.root / name

    def where(self, dataset: str) -> str:
        entry = load_identities().get(dataset) or {}
        return entry.get("source", "see README, Datasets")

    def missing(self, dataset: str, key: str, path: Path) -> DatasetError:
        return DatasetError(f"{dataset}: {path} not found (params {key}; root {self.root}, "
                            f"${ENV_ROOT} overrides it); get it from {self.where(dataset)}")

    def check(self, dataset: str, split: str, found: dict, key: str, counts_only: bool = False) -> list[str]:
        """Compare a split's identity with the official one. Returns the problems (printed) under
        `identity: warn`; raises DatasetError under `strict`. `counts_only` checks only the count
        (training splits, where no fingerprint is recorded and none is needed for the verdict)."""
        expected = expected_split(dataset, split)
        if expected is None:
            problems = [f"no official identity recorded for {dataset}/{split}"]
        elif counts_only:
            problems = identity_problems({**found, "sha256": "-"}, {**expected, "sha256": "-"})
        else:
            problems = identity_problems(found, expected)
            # an unrecorded official fingerprint is the verdict's business, not an error in the data
            problems = [p for p in problems if not p.startswith("official content fingerprint not recorded")]
        if problems and self.identity == "strict":
            raise DatasetError(f"{dataset}/{split}: {'; '.join(problems)} (params {key}; "
                               f"datasets.identity: warn to go on anyway); get it from {self.where(dataset)}")
        for problem in problems:
            print(f"warning: {dataset}/{split}: {problem} (datasets.identity: warn)")
        return problems


def stat_fingerprint(root: Path, paths: Sequence[Path]) -> dict:
    """A cheap fingerprint of the external files under `paths` (folders or files below `root`): the
    relative path, size and mtime_ns of every file, hashed in sorted order. No file is opened, so a
    LibriSpeech tree of ~300k files takes seconds. -> {"<relative path>": {"files", "bytes", "sha256"}
    or "missing"}: a changed, added or removed file changes its entry."""
    record: dict = {}
    for path in paths:
        rel = os.path.relpath(path, root)
        if path.is_file():
            st = path.stat()
            lines = [f"{path.name}\t{st.st_size}\t{st.st_mtime_ns}\n"]
            total = st.st_size
        elif path.is_dir():
            lines, total = [], 0
            stack = [path]
            while stack:
                with os.scandir(stack.pop()) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=True):
                            stack.append(Path(entry.path))
                        elif entry.is_file(follow_symlinks=True):
                            st = entry.stat(follow_symlinks=True)
                            total += st.st_size
                            lines.append(f"{os.path.relpath(entry.path, path)}\t{st.st_size}\t{st.st_mtime_ns}\n")
            lines.sort()
        else:
            record[rel] = "missing"
            continue
        record[rel] = {"files": len(lines), "bytes": total,
                       "sha256": hashlib.sha256("".join(lines).encode()).hexdigest()}
    return record


def portable_paths(obj, datasets_root: Path):
    """`obj` (JSON-like) with no absolute local path in its strings: a path under the datasets root becomes
    `$MMREPRO_DATASETS/...` (or relative to the checkout when the root is inside it), one under the checkout
    (the working directory) becomes relative to it. For what stages write to reports/, info.json and MLflow:
    results must not carry one machine's folders."""
    checkout = Path.cwd().resolve()
    root = Path(datasets_root).resolve()
    inside = root == checkout or checkout in root.parents
    swaps = [(f"{checkout}/", ""), (str(checkout), ".")]
    if not inside:  # first: the longer prefix wins when the root lies under the checkout's parent
        swaps[:0] = [(f"{root}/", f"${ENV_ROOT}/"), (str(root), f"${ENV_ROOT}")]

    def clean(value):
        if isinstance(value, str):
            for absolute, shown in swaps:
                value = value.replace(absolute, shown)
            return value
        if isinstance(value, dict):
            return {clean(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return clean(obj)
