"""`captioned-shapes`: small RGB images of one coloured shape, each with a caption naming it.

Every image holds one filled shape (circle, square, triangle or cross) of one colour (red, green,
blue, yellow, magenta, cyan), small or large, at a random position on a dark background with mild
pixel noise. The caption names the attributes in a fixed order, e.g. "a large red circle at the top
left", so that a text-to-image model can be scored by reading the attributes of what it draws back
with a classifier. Deterministic in the seed.

On disk: `<split>.npz` with images uint8 (N, 3, H, W), shape, colour, size, row, col int64 (N,) and
`<split>.json`, one caption per image (list of strings, same order).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 80, 235),
    "yellow": (235, 220, 40),
    "magenta": (220, 50, 220),
    "cyan": (40, 220, 220),
}
SIZES = ("small", "large")
ROWS = ("top", "bottom")
COLS = ("left", "right")
ATTRIBUTES = {"shape": SHAPES, "colour": tuple(COLOURS), "size": SIZES, "row": ROWS, "col": COLS}


@dataclass(frozen=True)
class ShapesSpec:
    image_size: int = 32  # side in pixels
    small_radius: tuple[float, float] = (0.14, 0.19)  # half-extent range of a small shape, fraction of side
    large_radius: tuple[float, float] = (0.25, 0.30)  # ... of a large shape
    background: int = 20  # background grey level
    noise_std: float = 4.0  # Gaussian pixel noise (0-255 units)

    def __post_init__(self) -> None:
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size}")
        if not 0 < self.small_radius[0] <= self.small_radius[1] < self.large_radius[0] <= self.large_radius[1] < 0.5:
            raise ValueError("need 0 < small_radius <= large_radius < 0.5")


def caption_of(shape: int, colour: int, size: int, row: int, col: int) -> str:
    return f"a {SIZES[size]} {tuple(COLOURS)[colour]} {SHAPES[shape]} at the {ROWS[row]} {COLS[col]}"


def render(shape: int, colour: int, size: int, row: int, col: int, spec: ShapesSpec, rng: np.random.Generator) -> np.ndarray:
    """One (3, H, W) uint8 image. The shape's centre lies in the named quadrant."""
    n = spec.image_size
    lo, hi = spec.large_radius if size else spec.small_radius
    r = rng.uniform(lo, hi) * n
    # centre inside its quadrant and far enough from the border to keep the whole shape visible
    half = n / 2
    cy = rng.uniform(max(r, 0.2 * n), half) if row == 0 else rng.uniform(half, min(n - r, 0.8 * n))
    cx = rng.uniform(max(r, 0.2 * n), half) if col == 0 else rng.uniform(half, min(n - r, 0.8 * n))
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) + 0.5
    dy, dx = yy - cy, xx - cx
    name = SHAPES[shape]
    if name == "circle":
        mask = dy**2 + dx**2 <= r * r
    elif name == "square":
        s = r * 0.85
        mask = (np.abs(dy) <= s) & (np.abs(dx) <= s)
    elif name == "triangle":  # apex up
        mask = (dy >= -r) & (dy <= r * 0.8) & (np.abs(dx) <= (dy + r) * 0.6)
    else:  # cross
        w = r * 0.35
        mask = ((np.abs(dy) <= w) & (np.abs(dx) <= r)) | ((np.abs(dx) <= w) & (np.abs(dy) <= r))
    img = np.full((3, n, n), float(spec.background), dtype=np.float32)
    rgb = np.array(COLOURS[tuple(COLOURS)[colour]], dtype=np.float32)
    img[:, mask] = rgb[:, None]
    if spec.noise_std > 0:
        img += rng.normal(0.0, spec.noise_std, size=img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def heldout_pair(shape: int, colour: int) -> bool:
    """The (shape, colour) pairs kept out of the training split (6 of the 24): a caption naming one
    of them asks for a combination never seen in training."""
    return (shape + colour) % 4 == 0


def generate(
    n: int, spec: ShapesSpec, rng: np.random.Generator, pairs: str = "all"
) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
    """n images with uniformly drawn attributes -> images (n, 3, H, W), attributes, captions.
    pairs: "all", "seen" (no held-out (shape, colour) pair) or "heldout" (only those)."""
    if n <= 0:
        raise ValueError(f"n must be > 0, got {n}")
    if pairs not in ("all", "seen", "heldout"):
        raise ValueError(f"pairs must be all|seen|heldout, got {pairs!r}")
    rows: list[tuple[int, ...]] = []
    while len(rows) < n:
        a = tuple(int(rng.integers(0, len(v))) for v in ATTRIBUTES.values())
        h = heldout_pair(a[0], a[1])
        if pairs == "all" or (pairs == "heldout") == h:
            rows.append(a)
    attrs = {k: np.array([r[i] for r in rows], dtype=np.int64) for i, k in enumerate(ATTRIBUTES)}
    images = np.stack([render(*r, spec=spec, rng=rng) for r in rows])
    captions = [caption_of(*r) for r in rows]
    return images, attrs, captions


def write_dataset(out_dir: Path, sizes: dict[str, int], spec: ShapesSpec, seed: int) -> None:
    """Splits named in `sizes`; "train" and "val" never contain a held-out (shape, colour) pair,
    any other split ("test") draws from all pairs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, (split, n) in enumerate(sizes.items()):
        rng = np.random.default_rng([seed, i])
        images, attrs, captions = generate(n, spec, rng, pairs="seen" if split in ("train", "val") else "all")
        np.savez_compressed(out_dir / f"{split}.npz", images=images, **attrs)
        (out_dir / f"{split}.json").write_text(json.dumps(captions))


def read_split(data_dir: Path, split: str) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
    """-> images uint8 (N, 3, H, W), attributes {name: int64 (N,)}, captions."""
    with np.load(data_dir / f"{split}.npz") as z:
        images = z["images"]
        attrs = {k: z[k].astype(np.int64) for k in ATTRIBUTES}
    captions = json.loads((data_dir / f"{split}.json").read_text())
    return images, attrs, captions


class CaptionTokenizer:
    """Word-level tokens of the fixed caption grammar: id 0 = padding, then the sorted vocabulary."""

    def __init__(self) -> None:
        words = {"a", "at", "the", *SHAPES, *COLOURS, *SIZES, *ROWS, *COLS}
        self.words = ["<pad>", *sorted(words)]
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, caption: str, length: int) -> list[int]:
        ids = [self.index[w] for w in caption.split()]
        if len(ids) > length:
            raise ValueError(f"caption longer than {length} words: {caption!r}")
        return ids + [0] * (length - len(ids))
