"""LongCrawl64 reader (the symmetric-power papers' dataset), for the `full` profile.

LongCrawl64 (Buckman 2024, https://manifestai.com/articles/longcrawl64/) is distributed from the
bucket gs://longcrawl64/ as two Zarr (format 2) arrays, `train.zarr` and `heldout.zarr`, each of
shape (n_documents, 65536): one row per document of exactly 64 Ki GPT-2 tokens (TikToken GPT-2
BPE, vocabulary 50304). The reference loader opens them with `zarr.open(path, mode='r')` and reads
rectangles [docs, context window] of a row-major chunk grid.

This module reads that layout directly, without the zarr package: the `.zarray` JSON (shape,
chunks, dtype, compressor, fill_value, order, dimension_separator) and one file per chunk named
"i.j" (or "i/j"). Chunks compressed with zlib or gzip are decoded with the standard library;
blosc/zstd/lz4 chunks need `numcodecs` (imported only then, with a clear error if absent).
A missing chunk file reads as fill_value, as in Zarr.
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import ClassVar

import numpy as np

from mmrepro.datasets import DatasetError, shown_path, unreadable

DOC_LENGTH = 65536
VOCAB_SIZE = 50304


def _decoder(compressor: dict | None):
    if compressor is None:
        return lambda b: b
    cid = compressor.get("id")
    if cid == "zlib":
        return zlib.decompress
    if cid == "gzip":
        return gzip.decompress
    try:
        import numcodecs
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"chunks compressed with {cid!r} need numcodecs (pip install numcodecs)") from exc
    codec = numcodecs.get_codec(compressor)
    return lambda b: bytes(codec.decode(b))


class ZarrArray:
    """A read-only 2-D Zarr v2 array on disk. `arr[rows, cols]` with int or slice (step 1)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        meta_path = self.path / ".zarray"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path} missing: not a Zarr v2 array")
        try:
            meta = json.loads(meta_path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise unreadable(meta_path, "Zarr .zarray (JSON)", exc) from None
        if meta.get("zarr_format") != 2:
            raise ValueError(f"{meta_path}: zarr_format {meta.get('zarr_format')} (only 2 is supported)")
        if meta.get("filters"):
            raise ValueError(f"{meta_path}: filters {meta['filters']} are not supported")
        if meta.get("order", "C") != "C":
            raise ValueError(f"{meta_path}: only C order is supported")
        self.shape = tuple(meta["shape"])
        self.chunks = tuple(meta["chunks"])
        if len(self.shape) != 2:
            raise ValueError(f"{meta_path}: expected a 2-D array, got shape {self.shape}")
        self.dtype = np.dtype(meta["dtype"])
        self.fill_value = meta.get("fill_value") or 0
        self.sep = meta.get("dimension_separator", ".")
        self._decode = _decoder(meta.get("compressor"))

    def _chunk(self, i: int, j: int) -> np.ndarray:
        f = self.path / f"{i}{self.sep}{j}"
        if not f.is_file():
            return np.full(self.chunks, self.fill_value, dtype=self.dtype)
        try:
            raw = self._decode(f.read_bytes())
        except (zlib.error, OSError, EOFError, ValueError) as exc:  # gzip.BadGzipFile is an OSError
            raise unreadable(f, "Zarr chunk", exc) from None
        expected = int(np.prod(self.chunks)) * self.dtype.itemsize
        if len(raw) != expected:  # numpy would say "cannot reshape array of size ..." without the file
            raise DatasetError(f"{shown_path(f)}: Zarr chunk of {len(raw)} bytes decoded, {expected} expected "
                               f"(chunks {list(self.chunks)} of {self.dtype})")
        return np.frombuffer(raw, dtype=self.dtype).reshape(self.chunks)

    @staticmethod
    def _range(key, n: int) -> tuple[int, int, bool]:
        if isinstance(key, (int, np.integer)):
            k = int(key) + (n if key < 0 else 0)
            if not 0 <= k < n:
                raise IndexError(f"index {key} out of range for size {n}")
            return k, k + 1, True
        if isinstance(key, slice) and key.step in (None, 1):
            a, b, _ = key.indices(n)
            return a, max(a, b), False
        raise TypeError(f"only ints and step-1 slices are supported, got {key!r}")

    def __getitem__(self, key) -> np.ndarray:
        rows, cols = key if isinstance(key, tuple) else (key, slice(None))
        r0, r1, r_int = self._range(rows, self.shape[0])
        c0, c1, c_int = self._range(cols, self.shape[1])
        out = np.empty((r1 - r0, c1 - c0), dtype=self.dtype)
        ch_r, ch_c = self.chunks
        for i in range(r0 // ch_r, -(-r1 // ch_r)):
            for j in range(c0 // ch_c, -(-c1 // ch_c)):
                block = self._chunk(i, j)
                a0, a1 = max(r0, i * ch_r), min(r1, (i + 1) * ch_r)
                b0, b1 = max(c0, j * ch_c), min(c1, (j + 1) * ch_c)
                out[a0 - r0 : a1 - r0, b0 - c0 : b1 - c0] = block[a0 - i * ch_r : a1 - i * ch_r, b0 - j * ch_c : b1 - j * ch_c]
        if r_int:
            out = out[0]
            if c_int:
                return out[0]
        elif c_int:
            out = out[:, 0]
        return out


class LongCrawl64:
    """The two splits of a LongCrawl64 download: root/train.zarr and root/heldout.zarr."""

    SPLITS: ClassVar[dict[str, str]] = {"train": "train.zarr", "heldout": "heldout.zarr"}

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def split(self, name: str) -> ZarrArray:
        if name not in self.SPLITS:
            raise ValueError(f"split must be one of {tuple(self.SPLITS)}, got {name!r}")
        return ZarrArray(self.root / self.SPLITS[name])

    @staticmethod
    def batch(array: ZarrArray, first_doc: int, docs: int, start: int, context: int) -> np.ndarray:
        """The rectangle of `docs` documents x `context` tokens (as in the reference loader): int64."""
        if start + context > array.shape[1] or first_doc + docs > array.shape[0]:
            raise IndexError("rectangle outside the array")
        return array[first_doc : first_doc + docs, start : start + context].astype(np.int64)
