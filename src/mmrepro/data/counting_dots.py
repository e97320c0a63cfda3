"""`counting-dots`: StarCapNet's synthetic numerosity data.

Grayscale images with 0-9 non-overlapping filled discs ("stars") of random radius and position on a
black background, optional Gaussian noise, each with >= 5 varied reference captions drawn from
templates, so that n-gram metrics (CIDEr in particular) have consensus to measure against.
Deterministic in the seed. On disk: `<split>.npz` (images uint8 (N,H,W), counts int64 (N,)) and
`<split>.json` (`[{"id", "count", "captions": [...]}, ...]`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# {n}: number word, {s}: plural suffix, {are}: is/are. Zero and one get their own natural phrasings.
TEMPLATES = (
    "there {are} {n} star{s}",
    "{n} white dot{s} on a black background",
    "an image with {n} dot{s}",
    "i can see {n} star{s} in the dark",
    "{n} bright spot{s} on black",
    "a picture of {n} white circle{s}",
    "the sky has {n} star{s}",
    "{n} small disc{s} in the image",
)
ZERO_CAPTIONS = (
    "there are no stars",
    "an empty black background",
    "zero white dots on a black background",
    "an image with no dots",
    "the sky has zero stars",
    "a dark picture with nothing in it",
)
ONE_EXTRA = ("a single star on black", "one lonely white dot")


def captions_for(count: int, rng: np.random.Generator, n_refs: int) -> list[str]:
    if count == 0:
        pool = list(ZERO_CAPTIONS)
    else:
        plural = count != 1
        pool = [t.format(n=NUMBER_WORDS[count], s="s" if plural else "", are="are" if plural else "is")
                for t in TEMPLATES]
        if count == 1:
            pool += ONE_EXTRA
    return [pool[i] for i in rng.permutation(len(pool))[:n_refs]]


@dataclass(frozen=True)
class DotsSpec:
    image_size: int = 64
    max_count: int = 9
    min_radius: float = 2.5
    max_radius: float = 5.0
    noise_std: float = 0.0  # Gaussian pixel noise, in [0, 255] units
    n_refs: int = 5


def render(count: int, spec: DotsSpec, rng: np.random.Generator) -> np.ndarray:
    """One (H, W) uint8 image with `count` discs that neither overlap nor touch the border."""
    size = spec.image_size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    image = np.zeros((size, size), dtype=np.float32)
    placed: list[tuple[float, float, float]] = []
    attempts = 0
    while len(placed) < count:
        attempts += 1
        if attempts > 10_000:
            raise RuntimeError(f"cannot place {count} discs in a {size}px image; lower max_radius")
        r = rng.uniform(spec.min_radius, spec.max_radius)
        cy, cx = rng.uniform(r + 1, size - r - 1, size=2)
        if all((cy - y) ** 2 + (cx - x) ** 2 > (r + rr + 2) ** 2 for y, x, rr in placed):
            placed.append((cy, cx, r))
            image[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 255.0
    if spec.noise_std > 0:
        image += rng.normal(0.0, spec.noise_std, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def generate_split(n: int, spec: DotsSpec, seed: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Counts are balanced (uniform over 0..max_count) and shuffled."""
    if n <= 0:
        raise ValueError(f"split size must be positive, got {n}")
    rng = np.random.default_rng(seed)
    counts = rng.permutation(np.arange(n) % (spec.max_count + 1))
    images = np.stack([render(int(c), spec, rng) for c in counts])
    records = [{"id": f"{seed}-{i}", "count": int(c), "captions": captions_for(int(c), rng, spec.n_refs)}
               for i, c in enumerate(counts)]
    return images, counts.astype(np.int64), records


def write_dataset(out_dir: Path, sizes: dict[str, int], spec: DotsSpec, seed: int) -> None:
    for k, (split, n) in enumerate(sizes.items()):
        images, counts, records = generate_split(n, spec, seed * 1000 + k)
        np.savez_compressed(out_dir / f"{split}.npz", images=images, counts=counts)
        (out_dir / f"{split}.json").write_text(json.dumps(records))


def read_split(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    with np.load(data_dir / f"{split}.npz") as arrays:
        images, counts = arrays["images"], arrays["counts"]
    records = json.loads((data_dir / f"{split}.json").read_text())
    return images, counts, records
