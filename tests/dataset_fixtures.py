"""Small copies of every external dataset in its official on-disk layout, under one datasets root.

Each maker writes `<root>/<folder>` exactly as the release unpacks (the folder names of
references/datasets.yaml) with real encoded media (FLAC via soundfile, JPEG via Pillow, mp4 via PyAV,
CIFAR binary records, Zarr v2 chunks), and returns the split counts it wrote. The defaults are what the
paper's `full`-profile prepare reads, so a full-profile rehearsal can run on them with
`datasets.identity: warn` (the counts differ from the releases):

    from tests.dataset_fixtures import make_all
    make_all(Path("datasets"))      # then: dvc exp run -S profile=full -S datasets.identity=warn

`identities(...)` builds a references/datasets.yaml-like mapping whose counts match a fixture, for
tests that need a check to pass on some splits and fail on others.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

WORDS = ("HE HOPED THERE WOULD BE STEW FOR DINNER TURNIPS AND CARROTS AND BRUISED POTATOES AND FAT MUTTON "
         "PIECES TO BE LADLED OUT IN THICK PEPPERED FLOUR FATTENED SAUCE").split()

LIBRISPEECH_SUBSETS = {"train-clean-100": 4, "train-clean-360": 2, "train-other-500": 2, "dev-other": 2,
                       "test-clean": 3, "test-other": 3}


def _sentence(rng: np.random.Generator, lo: int = 3, hi: int = 8) -> str:
    return " ".join(rng.choice(WORDS, size=int(rng.integers(lo, hi))).tolist())


# ---------------------------------------------------------------------------------------- LibriSpeech
def make_librispeech(root: Path, subsets: dict[str, int] | None = None, seed: int = 0) -> dict[str, int]:
    """<root>/LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac + <spk>-<chapter>.trans.txt;
    utterances of 0.1-0.3 s noise + tone, 16 kHz FLAC. Speakers differ per subset (as in the release).
    Default: every subset the full profile reads (train-clean-100/360, train-other-500, dev-other,
    test-clean, test-other)."""
    import soundfile as sf

    subsets = dict(LIBRISPEECH_SUBSETS if subsets is None else subsets)
    rng = np.random.default_rng(seed)
    for s_index, (subset, n) in enumerate(subsets.items()):
        by_chapter: dict[tuple[str, str], list[str]] = {}
        for k in range(n):
            spk, chap = str(100 + 10 * s_index + k % 2), str(5000 + 10 * s_index + k % 2)
            by_chapter.setdefault((spk, chap), []).append(_sentence(rng))
        for (spk, chap), texts in by_chapter.items():
            d = root / "LibriSpeech" / subset / spk / chap
            d.mkdir(parents=True, exist_ok=True)
            lines = []
            for u, text in enumerate(texts):
                uid = f"{spk}-{chap}-{u:04d}"
                t = np.arange(int(16000 * (0.1 + 0.1 * (u % 3)))) / 16000
                audio = 0.3 * np.sin(2 * np.pi * (200 + 50 * u) * t) + 0.05 * rng.standard_normal(len(t))
                sf.write(d / f"{uid}.flac", audio.astype(np.float32), 16000, format="FLAC", subtype="PCM_16")
                lines.append(f"{uid} {text}\n")
            (d / f"{spk}-{chap}.trans.txt").write_text("".join(lines))
    return subsets


# ------------------------------------------------------------------------------------------- Karpathy
KARPATHY_IMAGES = {"flickr8k": "Flicker8k_Dataset", "flickr30k": "flickr30k-images", "coco": ""}


def make_karpathy(root: Path, name: str = "flickr8k", n: dict[str, int] | None = None, seed: int = 0,
                  size: int = 40) -> dict[str, int]:
    """<root>/<name>/dataset_<name>.json in Karpathy's released schema (raw + tokens per sentence, 5 a
    image) and real JPEGs where its filepath/filename resolve: flickr8k/Flicker8k_Dataset/<file>,
    flickr30k/flickr30k-images/<file>, coco/<filepath = train2014|val2014>/<file>."""
    from PIL import Image

    n = dict({"train": 6, "val": 2, "test": 3} if n is None else n)
    rng = np.random.default_rng(seed)
    folder = root / name
    images, sentid = [], 0
    for split, count in n.items():
        for _ in range(count):
            k = len(images)
            sents = []
            for _j in range(5):
                tokens = _sentence(rng).lower().split()
                raw = " ".join(tokens).capitalize() + " ."
                sents.append({"tokens": tokens, "raw": raw, "imgid": k, "sentid": sentid})
                sentid += 1
            im = {"imgid": k, "split": split, "sentences": sents, "sentids": [s["sentid"] for s in sents]}
            if name == "coco":
                sub = "val2014" if split in ("val", "test", "restval") else "train2014"
                im.update(filepath=sub, filename=f"COCO_{sub}_{k:012d}.jpg", cocoid=100000 + k)
                image_dir = folder / sub
            else:
                im["filename"] = f"{1000 + k}_{k:06x}.jpg"
                image_dir = folder / KARPATHY_IMAGES[name]
            image_dir.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, size=(size, size + 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(image_dir / im["filename"], format="JPEG", quality=90)
            images.append(im)
    (folder / f"dataset_{name}.json").write_text(json.dumps({"images": images, "dataset": name}))
    return n


# ----------------------------------------------------------------------------------------------- LRS3
def _frames(rng: np.random.Generator, t: int, side: int = 96) -> np.ndarray:
    frames = np.full((t, side, side), 40, np.uint8)
    x0 = int(rng.integers(0, side // 2))
    for i in range(t):
        frames[i, side // 2 : side // 2 + 20, (x0 + 3 * i) % (side - 20) : (x0 + 3 * i) % (side - 20) + 20] = 220
    return frames


def make_lrs3(root: Path, n: dict[str, int] | None = None, speakers: int = 3, seed: int = 0) -> dict[str, int]:
    """<root>/LRS3/{pretrain,trainval,test}/<speaker>/<clip>.mp4 + <clip>.txt ("Text:  ..." then Conf and
    word lines, as released); 8-12 frame 96x96 clips at 25 fps written with PyAV. Speaker ids are
    YouTube-like 11-character names; trainval has >= 2 speakers (prepare holds some out for dev)."""
    from mmrepro.data.lrs3 import write_mp4

    n = dict({"pretrain": 2, "trainval": 6, "test": 3} if n is None else n)
    rng = np.random.default_rng(seed)
    for s_index, (split, count) in enumerate(n.items()):
        for k in range(count):
            spk = f"{split[:2]}Spk{s_index}{k % speakers:05d}"[:11]
            d = root / "LRS3" / split / spk
            d.mkdir(parents=True, exist_ok=True)
            clip = f"{50001 + k:05d}"
            write_mp4(d / f"{clip}.mp4", _frames(rng, int(rng.integers(8, 13))))
            text = _sentence(rng, 2, 5)
            words = "\n".join(f"{w} {0.1 * i:.2f} {0.1 * i + 0.08:.2f} 1.0" for i, w in enumerate(text.split()))
            (d / f"{clip}.txt").write_text(f"Text:  {text}\nConf:  3\n\nWORD START END ASDSCORE\n{words}\n")
    return n


# ------------------------------------------------------------------------------------------- CIFAR-10
def cifar_records(n: int, seed: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """n records of the binary version: label byte, then 1024 R, 1024 G, 1024 B bytes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    raw = np.concatenate([labels[:, None], images.reshape(n, -1)], 1).astype(np.uint8).tobytes()
    return raw, images, labels


def make_cifar10(root: Path, n_train: int = 10, n_test: int = 4, seed: int = 0) -> dict[str, int]:
    """<root>/cifar10/cifar-10-batches-bin/{data_batch_1..5.bin, test_batch.bin, batches.meta.txt};
    n_train records spread over the five data batches (each non-empty: n_train >= 5)."""
    from mmrepro.data import cifar10

    if n_train < 5:
        raise ValueError("n_train must be >= 5 (five data batches)")
    folder = root / "cifar10" / cifar10.FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    per = np.array_split(np.arange(n_train), 5)
    for i, (name, idx) in enumerate(zip(cifar10.TRAIN_FILES, per, strict=True)):
        (folder / name).write_bytes(cifar_records(len(idx), seed + i)[0])
    (folder / "test_batch.bin").write_bytes(cifar_records(n_test, seed + 10)[0])
    (folder / "batches.meta.txt").write_text("\n".join(cifar10.CLASSES) + "\n\n")
    return {"train": n_train, "test": n_test}


def cifar_archive(path: Path, n_per_batch: int = 3, seed: int = 0) -> dict:
    """A cifar-10-binary.tar.gz with the official member layout; -> {member: (images, labels)}."""
    import io
    import tarfile

    from mmrepro.data import cifar10

    buf, expected = io.BytesIO(), {}
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for i, name in enumerate(cifar10.TRAIN_FILES + cifar10.TEST_FILES + ("batches.meta.txt",)):
            if name.endswith(".txt"):
                data = "\n".join(cifar10.CLASSES).encode()
            else:
                data, images, labels = cifar_records(n_per_batch, seed + i)
                expected[name] = (images, labels)
            info = tarfile.TarInfo(f"{cifar10.FOLDER}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return expected


# ---------------------------------------------------------------------------------------- LongCrawl64
def write_zarr(path: Path, array: np.ndarray, chunks: tuple[int, int], compressor: dict | None = None,
               skip: tuple[int, int] | None = None) -> None:
    """A 2-D Zarr v2 array: .zarray + one file per chunk "i.j" (edge chunks stored full size); chunk
    `skip` is left absent (reads as fill_value)."""
    import gzip

    path.mkdir(parents=True, exist_ok=True)
    meta = {"zarr_format": 2, "shape": list(array.shape), "chunks": list(chunks), "dtype": array.dtype.str,
            "compressor": compressor, "fill_value": 0, "filters": None, "order": "C"}
    (path / ".zarray").write_text(json.dumps(meta))
    for i in range(-(-array.shape[0] // chunks[0])):
        for j in range(-(-array.shape[1] // chunks[1])):
            block = np.zeros(chunks, dtype=array.dtype)
            part = array[i * chunks[0] : (i + 1) * chunks[0], j * chunks[1] : (j + 1) * chunks[1]]
            block[: part.shape[0], : part.shape[1]] = part
            data = block.tobytes()
            if compressor and compressor["id"] == "zlib":
                data = zlib.compress(data, compressor.get("level", 1))
            elif compressor and compressor["id"] == "gzip":
                data = gzip.compress(data, compressor.get("level", 1))
            if (i, j) != skip:
                (path / f"{i}.{j}").write_bytes(data)


def make_longcrawl64(root: Path, n_train: int = 4, n_heldout: int = 288, doc_length: int = 65536,
                     seed: int = 0) -> dict[str, int]:
    """<root>/longcrawl64/{train,heldout}.zarr: (docs, doc_length) uint16 GPT-2 token ids, zlib chunks of
    (1 doc, doc_length) like the release's row-major grid. Each document repeats a random 512-token
    phrase, so the files compress ~100x. Default heldout: the full profile's 256 test + 32 val documents."""
    from mmrepro.data.longcrawl64 import VOCAB_SIZE

    rng = np.random.default_rng(seed)
    for name, docs in (("train", n_train), ("heldout", n_heldout)):
        phrases = rng.integers(0, VOCAB_SIZE, size=(docs, 512), dtype=np.uint16)
        tokens = np.tile(phrases, (1, -(-doc_length // 512)))[:, :doc_length]
        write_zarr(root / "longcrawl64" / f"{name}.zarr", np.ascontiguousarray(tokens), (1, doc_length),
                   {"id": "zlib", "level": 1})
    return {"train": n_train, "heldout": n_heldout}


def make_all(root: Path) -> dict[str, dict[str, int]]:
    """Every dataset the full profile reads, at the makers' defaults."""
    return {"librispeech": make_librispeech(root), "flickr8k": make_karpathy(root, "flickr8k"),
            "lrs3": make_lrs3(root), "cifar10": make_cifar10(root), "longcrawl64": make_longcrawl64(root)}


def identities(dataset: str, counts: dict[str, int], sha256: dict[str, str] | None = None) -> dict:
    """references/datasets.yaml entries for `dataset` with the fixture's counts (and fingerprints)."""
    from mmrepro.datasets import load_identities

    real = load_identities()
    entry = {**real[dataset], "splits": {s: {"n": n, "sha256": (sha256 or {}).get(s)} for s, n in counts.items()}}
    return {**real, dataset: entry}


def patch_identities(monkeypatch, dataset: str, counts: dict[str, int], sha256: dict[str, str] | None = None) -> dict:
    """Make mmrepro.datasets see `identities(dataset, counts, sha256)` instead of references/datasets.yaml."""
    import mmrepro.datasets as ds

    table = identities(dataset, counts, sha256)
    monkeypatch.setattr(ds, "load_identities", lambda path=None: table)
    return table
