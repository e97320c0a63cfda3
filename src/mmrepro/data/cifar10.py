"""CIFAR-10 from its binary distribution (`cifar-10-binary.tar.gz`), read without pickle.

Format (https://www.cs.toronto.edu/~kriz/cifar.html, "Binary version"): the archive holds
`cifar-10-batches-bin/data_batch_{1..5}.bin` (10000 images each), `test_batch.bin` (10000) and
`batches.meta.txt` (class names, one a line). Each record is 3073 bytes: 1 label byte (0-9), then
the 32x32 image as 1024 red, 1024 green, 1024 blue bytes, each channel row-major.

`download` fetches the archive and checks it against the official md5 before anything is unpacked.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.request
from pathlib import Path

import numpy as np

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
MD5 = "c32a1d4ab5d03f1284b67883e8d87530"  # official checksum of cifar-10-binary.tar.gz
ARCHIVE = "cifar-10-binary.tar.gz"
FOLDER = "cifar-10-batches-bin"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
RECORD = 1 + 3 * 32 * 32
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def md5sum(path: Path, block: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            h.update(chunk)
    return h.hexdigest()


def download(root: Path, url: str = URL, md5: str = MD5) -> Path:
    """Download (if absent) and verify the archive, unpack it; returns `root/cifar-10-batches-bin`.

    A checksum mismatch raises and removes the bad file; nothing is unpacked from it."""
    root.mkdir(parents=True, exist_ok=True)
    archive = root / ARCHIVE
    if not archive.is_file():
        tmp = archive.with_name(archive.name + ".part")
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out)
        os.replace(tmp, archive)
    got = md5sum(archive)
    if got != md5:
        archive.unlink()
        raise OSError(f"{archive}: md5 {got} != expected {md5}; file removed, download again")
    folder = root / FOLDER
    if not all((folder / f).is_file() for f in TRAIN_FILES + TEST_FILES):
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith(FOLDER + "/")]
            tar.extractall(root, members=members, filter="data")
    return folder


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One .bin file -> images uint8 (N, 3, 32, 32), labels int64 (N,)."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % RECORD:
        raise ValueError(f"{path}: {raw.size} bytes is not a whole number of {RECORD}-byte records")
    records = raw.reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise ValueError(f"{path}: label byte {labels.max()} out of range 0-9")
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), labels


def read_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """split "train" (the five data batches, 50000) or "test" (10000)."""
    files = {"train": TRAIN_FILES, "test": TEST_FILES}.get(split)
    if files is None:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    parts = [read_batch(folder / f) for f in files]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
