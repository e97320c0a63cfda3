"""Reader for Karpathy's split files: dataset_flickr8k.json, dataset_flickr30k.json, dataset_coco.json.

The files (from Karpathy & Fei-Fei 2015's release) hold
    {"dataset": "coco", "images": [{"filepath": "val2014", "filename": "COCO_val2014_...jpg",
      "imgid": 0, "cocoid": 391895, "split": "test", "sentids": [...],
      "sentences": [{"raw": "A man ...", "tokens": ["a", "man", ...], "imgid": 0, "sentid": 0}, ...]}, ...]}
`filepath` exists only for COCO. Images live under a user-given root: <root>/<filepath>/<filename>.
COCO's "restval" images are training images (Karpathy's setup); `restval_in_train` folds them in.

The papers' test splits are enforced: Flickr8k and Flickr30k 1000 test images, COCO 5000
(Karpathy & Fei-Fei Table 1 also reports a COCO 1000-image test subset: `KarpathySplit.head(1000)`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATASETS = ("flickr8k", "flickr30k", "coco")
SPLITS = ("train", "val", "test")
TEST_SIZES = {"flickr8k": 1000, "flickr30k": 1000, "coco": 5000}


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

    def references(self) -> dict[int, list[str]]:
        """{image_id: [raw sentences]}, the input of the caption evaluator."""
        return {im.image_id: list(im.sentences) for im in self.images}


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
    json_path, image_root = Path(json_path), Path(image_root)
    data = json.loads(json_path.read_text())
    if not isinstance(data, dict) or "images" not in data:
        raise ValueError(f"{json_path}: not a Karpathy split file (no 'images')")
    dataset = data.get("dataset")
    if dataset not in DATASETS:
        raise ValueError(f"{json_path}: dataset must be one of {DATASETS}, got {dataset!r}")
    wanted = {"train", "restval"} if split == "train" and restval_in_train else {split}
    images = []
    for n, im in enumerate(data["images"]):
        try:
            if im["split"] not in wanted:
                continue
            sentences = im["sentences"]
            images.append(
                KarpathyImage(
                    image_id=int(im.get("cocoid", im["imgid"])),
                    path=image_root / im.get("filepath", "") / im["filename"],
                    sentences=tuple(s["raw"].strip() for s in sentences),
                    tokens=tuple(tuple(s["tokens"]) for s in sentences),
                )
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{json_path}: images[{n}] lacks {exc}") from None
    if any(not im.sentences for im in images):
        raise ValueError(f"{json_path}: an image of split {split!r} has no sentences")
    if enforce_sizes and split == "test" and len(images) != TEST_SIZES[dataset]:
        raise ValueError(
            f"{json_path}: {dataset} test split has {len(images)} images; the papers use {TEST_SIZES[dataset]}"
        )
    return KarpathySplit(dataset, split, tuple(images))


def load_images(split: KarpathySplit, size: int) -> np.ndarray:
    """(N, size, size, 3) uint8: every image resized (bilinear, no crop) to size x size."""
    from PIL import Image

    out = np.zeros((len(split), size, size, 3), dtype=np.uint8)
    for i, im in enumerate(split.images):
        if not im.path.is_file():
            raise FileNotFoundError(f"{im.path}: image missing (check the image root)")
        with Image.open(im.path) as img:
            out[i] = np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR))
    return out
