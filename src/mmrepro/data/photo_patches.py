"""`skimage-photo-patches`: square patches cut from the colour photographs bundled with scikit-image.

Real photographs, offline: scikit-image ships them inside its wheel (`skimage.data`), no download.
The split is by *source photo*, so every test patch comes from a photograph the model never saw.
The motorcycle stereo pair (two views of one scene) stays on one side of the split.

On disk: `<split>.npz` with patches uint8 (N, 3, P, P) and source int64 (N,) (index into PHOTOS).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# scikit-image loaders of the bundled RGB photographs (all shipped in the wheel, no pooch fetch)
PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "hubble_deep_field",
    "immunohistochemistry",
    "motorcycle_left",
    "motorcycle_right",
    "retina",
    "rocket",
)
DEFAULT_SPLIT = {
    "train": ("astronaut", "hubble_deep_field", "immunohistochemistry", "motorcycle_left", "motorcycle_right", "retina"),
    "val": ("coffee",),
    "test": ("chelsea", "rocket"),
}


def load_photo(name: str) -> np.ndarray:
    """(H, W, 3) uint8 photograph from skimage.data."""
    import skimage.data

    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; known: {', '.join(PHOTOS)}")
    loader = {"motorcycle_left": lambda: skimage.data.stereo_motorcycle()[0],
              "motorcycle_right": lambda: skimage.data.stereo_motorcycle()[1]}.get(name, getattr(skimage.data, name, None))
    image = np.asarray(loader())
    if image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"{name} is not an RGB photograph: shape {image.shape}")
    return np.ascontiguousarray(image[..., :3])


def cut_patches(image: np.ndarray, patch: int, stride: int) -> np.ndarray:
    """(H, W, 3) -> (N, 3, patch, patch), a regular grid with the given stride (no padding)."""
    if patch <= 0 or stride <= 0:
        raise ValueError("patch and stride must be > 0")
    h, w, _ = image.shape
    if h < patch or w < patch:
        raise ValueError(f"image {h}x{w} smaller than patch {patch}")
    out = [image[y : y + patch, x : x + patch] for y in range(0, h - patch + 1, stride)
           for x in range(0, w - patch + 1, stride)]
    return np.stack(out).transpose(0, 3, 1, 2).copy()


def write_dataset(
    out_dir: Path,
    patch: int,
    train_stride: int,
    split: dict[str, tuple[str, ...]] | None = None,
    max_per_split: dict[str, int] | None = None,
    seed: int = 0,
    max_per_photo: int | None = None,
) -> dict[str, int]:
    """Cut train patches with `train_stride` (overlapping when < patch) and val/test patches on the
    non-overlapping grid. `max_per_photo` subsamples each *training* photo to at most that many
    patches (so that large, mostly uniform photos do not dominate), then `max_per_split[split]`
    subsamples a whole split."""
    split = split or DEFAULT_SPLIT
    seen: dict[str, str] = {}
    for name, photos in split.items():
        for p in photos:
            if p in seen:
                raise ValueError(f"photo {p!r} is in both {seen[p]!r} and {name!r}")
            seen[p] = name
    rng = np.random.default_rng(seed)
    sizes = {}
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, photos in split.items():
        stride = train_stride if name == "train" else patch
        parts, sources = [], []
        for p in photos:
            pts = cut_patches(load_photo(p), patch, stride)
            if name == "train" and max_per_photo is not None and len(pts) > max_per_photo:
                pts = pts[np.sort(rng.choice(len(pts), size=max_per_photo, replace=False))]
            parts.append(pts)
            sources.append(np.full(len(pts), PHOTOS.index(p), dtype=np.int64))
        patches, source = np.concatenate(parts), np.concatenate(sources)
        cap = (max_per_split or {}).get(name)
        if cap is not None and cap < len(patches):
            keep = np.sort(rng.choice(len(patches), size=cap, replace=False))
            patches, source = patches[keep], source[keep]
        np.savez_compressed(out_dir / f"{name}.npz", patches=patches, source=source)
        sizes[name] = len(patches)
    return sizes


def read_split(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(data_dir / f"{split}.npz") as z:
        return z["patches"], z["source"]
