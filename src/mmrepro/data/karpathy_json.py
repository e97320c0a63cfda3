"""Reader for Karpathy's split files: dataset_flickr8k.json, dataset_flickr30k.json, dataset_coco.json.

The files (from Karpathy & Fei-Fei 2015's release) hold
    {"dataset": "coco", "images": [{"filepath": "val2014", "filename": "COCO_val2014_...jpg",
      "imgid": 0, "cocoid": 391895, "split": "test", "sentids": [...],
      "sentences": [{"raw": "A man ...", "tokens": ["a", "man", ...], "imgid": 0, "sentid": 0}, ...]}, ...]}
`filepath` exists only for COCO. Images live under an image root: <image root>/<filepath>/<filename>.
COCO's "restval" images are training images (Karpathy's setup); `restval_in_train` folds them in.

Layout under <datasets root> (README, Datasets), one folder per dataset:
    flickr8k/dataset_flickr8k.json    + flickr8k/Flicker8k_Dataset/<filename>   (the Flickr8k image zip's folder)
    flickr30k/dataset_flickr30k.json  + flickr30k/flickr30k-images/<filename>
    coco/dataset_coco.json            + coco/train2014/<filename>, coco/val2014/<filename> (the JSON's filepath)

Captions are the released `tokens` joined by spaces (`caption`), not a re-tokenisation of `raw`. A
split's identity (`split_identity_of`) is the count and the fingerprint of (filename, its captions).
The papers' test sizes (Flickr8k and Flickr30k 1000 test images, COCO 5000; Karpathy & Fei-Fei Table 1
also reports a COCO 1000-image test subset: `KarpathySplit.head(1000)`) are checked by the caller
against references/datasets.yaml.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmrepro.datasets import DatasetError, split_identity, unreadable

DATASETS = ("flickr8k", "flickr30k", "coco")
SPLITS = ("train", "val", "test")
TEST_SIZES = {"flickr8k": 1000, "flickr30k": 1000, "coco": 5000}
IMAGE_FOLDERS = {"flickr8k": "Flicker8k_Dataset", "flickr30k": "flickr30k-images", "coco": ""}


def json_path(folder: Path, dataset: str) -> Path:
    """<datasets root>/<dataset>/dataset_<dataset>.json"""
    return Path(folder) / f"dataset_{dataset}.json"


def image_root(folder: Path, dataset: str) -> Path:
    """Where the JSON's <filepath>/<filename> resolve: flickr8k/Flicker8k_Dataset, flickr30k/flickr30k-images,
    coco/ (its filepath is train2014 or val2014)."""
    return Path(folder) / IMAGE_FOLDERS[dataset]


@dataclass(frozen=True)
class KarpathyImage:
    image_id: int  # cocoid for COCO, imgid otherwise
    path: Path  # <root>/<filepath>/<filename>
    sentences: tuple[str, ...]  # the "raw" references
    tokens: tuple[tuple[str, ...], ...]  # the released tokenisation, one tuple per sentence


@dataclass(frozen=True)
class KarpathySplit:
    dataset: str
    split: str
    images: tuple[KarpathyImage, ...]

    def __len__(self) -> int:
        return len(self.images)

    def head(self, n: int) -> KarpathySplit:
        """The first `n` images (e.g. COCO's 1k test subset of Table 1)."""
        if not 1 <= n <= len(self.images):
            raise ValueError(f"n must be in [1, {len(self.images)}], got {n}")
        return KarpathySplit(self.dataset, self.split, self.images[:n])

    def captions(self) -> list[list[str]]:
        """Per image, its sentences' released tokens joined by spaces."""
        return [[" ".join(t) for t in im.tokens] for im in self.images]

    def references(self) -> dict[int, list[str]]:
        """{image_id: [raw sentences]}, the input of the caption evaluator."""
        return {im.image_id: list(im.sentences) for im in self.images}


def read_release(json_path: Path | str, image_root: Path | str) -> tuple[str, dict[str, list[KarpathyImage]]]:
    """(dataset, {JSON split label ("train", "restval", "val", "test"): images in file order}).
    A malformed file is a one-line DatasetError naming it."""
    json_path, image_root = Path(json_path), Path(image_root)
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{json_path}: not readable JSON ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict) or "images" not in data:
        raise DatasetError(f"{json_path}: not a Karpathy split file (no 'images')")
    dataset = data.get("dataset")
    if dataset not in DATASETS:
        raise DatasetError(f"{json_path}: dataset must be one of {DATASETS}, got {dataset!r}")
    splits: dict[str, list[KarpathyImage]] = {}
    for n, im in enumerate(data["images"]):
        try:
            sentences = im["sentences"]
            image = KarpathyImage(
                image_id=int(im.get("cocoid", im["imgid"])),
                path=image_root / im.get("filepath", "") / im["filename"],
                sentences=tuple(s["raw"].strip() for s in sentences),
                tokens=tuple(tuple(s["tokens"]) for s in sentences),
            )
            splits.setdefault(im["split"], []).append(image)
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{json_path}: images[{n}] lacks {exc}") from None
        if not sentences:
            raise DatasetError(f"{json_path}: images[{n}] has no sentences")
    return dataset, splits


def split_identity_of(images: list[KarpathyImage] | tuple[KarpathyImage, ...]) -> dict:
    """mmrepro.datasets.split_identity over (image filename, its captions = released tokens joined by spaces)."""
    return split_identity((im.path.name, [" ".join(t) for t in im.tokens]) for im in images)


def read_karpathy_json(
    json_path: Path | str,
    image_root: Path | str,
    split: str,
    *,
    restval_in_train: bool = True,
    enforce_sizes: bool = True,
) -> KarpathySplit:
    """One split of a Karpathy JSON file. Raises ValueError on a malformed file or a test split
    whose size differs from the papers' (unless `enforce_sizes=False`)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    dataset, release = read_release(json_path, image_root)
    wanted = ("train", "restval") if split == "train" and restval_in_train else (split,)
    images = [im for label in wanted for im in release.get(label, [])]
    if enforce_sizes and split == "test" and len(images) != TEST_SIZES[dataset]:
        raise DatasetError(
            f"{json_path}: {dataset} test split has {len(images)} images; the papers use {TEST_SIZES[dataset]}"
        )
    return KarpathySplit(dataset, split, tuple(images))


def load_images(split: KarpathySplit, size: int) -> np.ndarray:
    """(N, size, size, 3) uint8: every image resized (bilinear, no crop) to size x size."""
    from PIL import Image

    out = np.zeros((len(split), size, size, 3), dtype=np.uint8)
    for i, im in enumerate(split.images):
        if not im.path.is_file():
            raise DatasetError(f"{im.path}: image missing (check the image root)")
        try:
            with Image.open(im.path) as img:
                out[i] = np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR))
        except OSError as exc:  # PIL.UnidentifiedImageError, truncated file
            raise unreadable(im.path, "image", exc) from None
    return out


def missing_images(images) -> list[Path]:
    """The image files named by the JSON that are not on disk (a stat each, nothing decoded)."""
    return [im.path for im in images if not im.path.is_file()]
