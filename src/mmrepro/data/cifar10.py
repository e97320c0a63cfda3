"""CIFAR-10 from its binary distribution (`cifar-10-binary.tar.gz`), read without pickle.

Format (https://www.cs.toronto.edu/~kriz/cifar.html, "Binary version"): the archive holds
`cifar-10-batches-bin/data_batch_{1..5}.bin` (10000 images each), `test_batch.bin` (10000) and
`batches.meta.txt` (class names, one a line). Each record is 3073 bytes: 1 label byte (0-9), then
the 32x32 image as 1024 red, 1024 green, 1024 blue bytes, each channel row-major.

Layout under <datasets root>: `cifar10/cifar-10-batches-bin/` (the archive's folder), optionally with
`cifar10/cifar-10-binary.tar.gz`. `locate` uses an unpacked copy as it is (no network); otherwise it
unpacks an archive found there, or downloads one only when asked, after checking the official md5. A
wrong md5 is a one-line DatasetError; no file is ever deleted.

Identity (`split_identity_of`): counts come from file sizes (no decoding); the fingerprint of a split is
mmrepro.datasets.split_identity over (record index, "<label> <sha256 of its 3072 image bytes>").
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.request
from pathlib import Path

import numpy as np

from mmrepro.datasets import DatasetError, split_identity, unreadable

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


def complete(folder: Path) -> bool:
    return all((folder / f).is_file() for f in TRAIN_FILES + TEST_FILES)


def locate(root: Path, download: bool = False, url: str = URL, md5: str = MD5) -> Path:
    """`root/cifar-10-batches-bin`: the unpacked copy when complete (nothing fetched or checked against the
    archive); else `root/cifar-10-binary.tar.gz` unpacked after its md5 is checked, downloading it first
    only when `download`. Raises FileNotFoundError when neither is there and download is off, DatasetError
    on a wrong md5 (the file is left in place)."""
    folder = root / FOLDER
    if complete(folder):
        return folder
    archive = root / ARCHIVE
    if not archive.is_file():
        if not download:
            raise FileNotFoundError(folder)
        root.mkdir(parents=True, exist_ok=True)
        tmp = archive.with_name(archive.name + ".part")
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as exc:
            tmp.unlink(missing_ok=True)  # our own partial download
            raise DatasetError(f"cifar10: download of {url} failed ({exc})") from None
        os.replace(tmp, archive)
    got = md5sum(archive)
    if got != md5:
        raise DatasetError(f"{archive}: md5 {got} != official {md5} (file left in place; remove it and download "
                           f"{url} again)")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith(FOLDER + "/")]
            tar.extractall(root, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:  # corrupt or truncated archive (gzip CRC, short read)
        raise unreadable(archive, "tar.gz archive", exc) from None
    return folder


def download(root: Path, url: str = URL, md5: str = MD5) -> Path:
    """`locate(root, download=True)`."""
    return locate(root, True, url, md5)


def split_files(split: str) -> tuple[str, ...]:
    files = {"train": TRAIN_FILES, "test": TEST_FILES}.get(split)
    if files is None:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return files


def count(folder: Path, split: str) -> int:
    """Records of a split from its file sizes (nothing decoded); a file that is not whole records is an error."""
    n = 0
    for name in split_files(split):
        size = (folder / name).stat().st_size
        if size == 0 or size % RECORD:
            raise DatasetError(f"{folder / name}: {size} bytes is not a whole number of {RECORD}-byte records")
        n += size // RECORD
    return n


def split_identity_of(folder: Path, split: str) -> dict:
    """{"n", "sha256"}: split_identity over (index, "<label> <sha256 of the image bytes>") of every record."""
    items, index = [], 0
    for name in split_files(split):
        raw = (folder / name).read_bytes()
        if not raw or len(raw) % RECORD:
            raise DatasetError(f"{folder / name}: {len(raw)} bytes is not a whole number of {RECORD}-byte records")
        for k in range(0, len(raw), RECORD):
            items.append((str(index), f"{raw[k]} {hashlib.sha256(raw[k + 1 : k + RECORD]).hexdigest()}"))
            index += 1
    return split_identity(items)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One .bin file -> images uint8 (N, 3, 32, 32), labels int64 (N,)."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % RECORD:
        raise DatasetError(f"{path}: {raw.size} bytes is not a whole number of {RECORD}-byte records")
    records = raw.reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DatasetError(f"{path}: label byte {labels.max()} out of range 0-9")
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), labels


def read_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """split "train" (the five data batches, 50000) or "test" (10000)."""
    parts = [read_batch(folder / f) for f in split_files(split)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
