"""`python-stdlib-bytes`: a byte-level corpus of real text available offline.

The documents are the source files of the running interpreter's standard library (`sysconfig`
'stdlib' path: code, docstrings and comments, plus `pydoc_data/topics.py`, the language reference
text), each file one whole document. Test suites, site-packages and generated tables are excluded.
Files are assigned to train/val/test by a hash of their relative path (seeded), so a document is
never split across sets. The corpus depends on the interpreter's exact version, which
`describe()` records.

On disk: `<split>.bin` (uint8, the documents concatenated) and `<split>.idx.npy` (int64 (n_docs+1,)
document offsets into the .bin).
"""

from __future__ import annotations

import hashlib
import itertools
import platform
import sysconfig
from pathlib import Path

import numpy as np

EXCLUDE_DIRS = {"test", "tests", "idle_test", "site-packages", "__pycache__", "lib2to3", "ensurepip"}


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def list_documents(root: Path | None = None) -> list[Path]:
    """Sorted relative paths of the *.py documents under root."""
    root = root or stdlib_root()
    files = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if EXCLUDE_DIRS.intersection(rel.parts[:-1]) or rel.name.startswith("test_"):
            continue
        files.append(rel)
    return sorted(files)


def split_of(rel: Path, seed: int, fractions: tuple[float, float]) -> str:
    """'val' / 'test' / 'train' from a seeded hash of the path (fractions = (val, test))."""
    h = int.from_bytes(hashlib.sha256(f"{seed}:{rel.as_posix()}".encode()).digest()[:8], "big") / 2**64
    if h < fractions[0]:
        return "val"
    if h < fractions[0] + fractions[1]:
        return "test"
    return "train"


def write_dataset(
    out_dir: Path,
    seed: int,
    fractions: tuple[float, float] = (0.05, 0.1),
    max_bytes: dict[str, int] | None = None,
    root: Path | None = None,
) -> dict[str, dict[str, int]]:
    """Write the three splits; `max_bytes[split]` keeps whole documents (in path order) up to that
    many bytes. Returns {split: {"documents": n, "bytes": n}}."""
    root = root or stdlib_root()
    docs: dict[str, list[bytes]] = {"train": [], "val": [], "test": []}
    for rel in list_documents(root):
        data = (root / rel).read_bytes()
        if data:
            docs[split_of(rel, seed, fractions)].append(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = {}
    for split, items in docs.items():
        cap = (max_bytes or {}).get(split)
        kept, total = [], 0
        for d in items:
            if cap is not None and total + len(d) > cap:
                continue
            kept.append(d)
            total += len(d)
        offsets = np.cumsum([0] + [len(d) for d in kept]).astype(np.int64)
        (out_dir / f"{split}.bin").write_bytes(b"".join(kept))
        np.save(out_dir / f"{split}.idx.npy", offsets)
        stats[split] = {"documents": len(kept), "bytes": int(offsets[-1])}
    return stats


def describe() -> dict[str, str]:
    return {"source": str(stdlib_root()), "python": platform.python_version()}


def read_split(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """-> bytes uint8 (N,) (memory-mapped), offsets int64 (n_docs + 1,)."""
    data = np.memmap(data_dir / f"{split}.bin", dtype=np.uint8, mode="r")
    return data, np.load(data_dir / f"{split}.idx.npy")


def sample_windows(
    data: np.ndarray, offsets: np.ndarray, length: int, n: int, rng: np.random.Generator
) -> np.ndarray:
    """n windows of `length` bytes, each inside one document (documents at least `length` long),
    documents drawn in proportion to their number of windows. -> int64 (n, length)."""
    starts = offsets[:-1]
    spans = np.diff(offsets) - length + 1  # valid start positions per document
    ok = spans > 0
    if not ok.any():
        raise ValueError(f"no document is at least {length} bytes long")
    cum = np.cumsum(np.where(ok, spans, 0))
    pick = rng.integers(0, cum[-1], size=n)
    doc = np.searchsorted(cum, pick, side="right")
    within = pick - (cum[doc] - spans[doc])
    begin = starts[doc] + within
    return np.stack([np.asarray(data[b : b + length], dtype=np.int64) for b in begin])


def window_documents(offsets: np.ndarray, length: int, max_windows: int) -> list[int]:
    """Indices of the documents `document_windows(..., length, max_windows)` takes its windows from."""
    docs, n = [], 0
    for d, (a, b) in enumerate(itertools.pairwise(offsets)):
        k = min(max(0, (int(b) - int(a)) // length), max_windows - n)
        if k:
            docs.append(d)
            n += k
        if n == max_windows:
            break
    return docs


def document_windows(data: np.ndarray, offsets: np.ndarray, length: int, max_windows: int) -> np.ndarray:
    """Deterministic evaluation windows: consecutive non-overlapping `length`-byte windows from the
    start of each document (in order), until `max_windows`. -> int64 (n, length)."""
    out = []
    for a, b in itertools.pairwise(offsets):
        for s in range(a, b - length + 1, length):
            out.append(np.asarray(data[s : s + length], dtype=np.int64))
            if len(out) == max_windows:
                return np.stack(out)
    if not out:
        raise ValueError(f"no document is at least {length} bytes long")
    return np.stack(out)
