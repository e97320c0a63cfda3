"""shapes-scenes: synthetic captioning scenes of 1-3 coloured primitives on a black canvas.

A scene places objects in distinct cells of a 3x3 grid over a square canvas (with a little
jitter inside the cell). Each object has a shape (circle, square, triangle, diamond, cross),
one of 8 colours and one of 2 sizes. Objects are ordered left-to-right (then top-to-bottom);
consecutive objects are related by "left of" (different columns) or "above" (same column),
so every caption is fully determined by the image.

Two caption grammars:
  "scenes"   at least 5 varied reference captions per image ("a large red circle left of a small
             blue square", "a small blue square right of a large red circle", "there is ...", ...),
             for the attention captioner and Karpathy & Fei-Fei's alignment model.
  "geocap"   GeoCapNet's one canonical caption, colour and shape only, joined by "and"
             ("a red circle and a blue square"), for exact-match evaluation.

On disk (`write_split` / `read_split`), one split is:
  <root>/<split>_images.npy    uint8 (N, S, S, 3)
  <root>/<split>.json          {"captions": [[str, ...], ...], "scenes": [[{object}, ...], ...]}
Everything is deterministic in (seed, split).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond", "cross")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 25, 25),
    "green": (30, 180, 40),
    "blue": (40, 70, 235),
    "yellow": (240, 225, 30),
    "purple": (150, 40, 200),
    "cyan": (30, 215, 225),
    "orange": (250, 140, 20),
    "white": (245, 245, 245),
}
SIZES = ("small", "large")
GRAMMARS = ("scenes", "geocap")
_SPLIT_OFFSET = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class ShapesScenesConfig:
    """What a generated split looks like."""

    image_size: int = 48  # canvas side in pixels (3x3 grid of cells)
    min_objects: int = 1  # objects per scene, drawn uniformly from [min_objects, max_objects]
    max_objects: int = 3
    grammar: str = "scenes"  # "scenes" (>= 5 varied references) or "geocap" (one canonical caption)
    n_refs: int = 5  # references per image for the "scenes" grammar
    jitter: int = 2  # max pixel offset of an object inside its cell
    object_weights: tuple[float, ...] = field(default=())  # P(n objects); () = uniform

    def __post_init__(self) -> None:
        if self.image_size < 24 or self.image_size % 3:
            raise ValueError(f"image_size must be a multiple of 3 and >= 24, got {self.image_size}")
        if not 1 <= self.min_objects <= self.max_objects <= 3:
            raise ValueError(f"need 1 <= min_objects <= max_objects <= 3, got {self.min_objects}, {self.max_objects}")
        if self.grammar not in GRAMMARS:
            raise ValueError(f"grammar must be one of {GRAMMARS}, got {self.grammar!r}")
        if self.grammar == "scenes" and not 5 <= self.n_refs <= 7:
            raise ValueError(f"n_refs must be in [5, 7] for the scenes grammar, got {self.n_refs}")
        n_choices = self.max_objects - self.min_objects + 1
        if self.object_weights and len(self.object_weights) != n_choices:
            raise ValueError(f"object_weights needs {n_choices} entries, got {len(self.object_weights)}")


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    row: int  # grid cell, 0..2 top to bottom
    col: int  # grid cell, 0..2 left to right


# --------------------------------------------------------------------------- scenes


def sample_scene(rng: np.random.Generator, cfg: ShapesScenesConfig) -> list[SceneObject]:
    """Objects in reading order: sorted by column, then row."""
    counts = np.arange(cfg.min_objects, cfg.max_objects + 1)
    p = np.asarray(cfg.object_weights, dtype=float) if cfg.object_weights else None
    n = int(rng.choice(counts, p=None if p is None else p / p.sum()))
    cells = rng.choice(9, size=n, replace=False)
    objs = [
        SceneObject(
            shape=SHAPES[rng.integers(len(SHAPES))],
            colour=list(COLOURS)[rng.integers(len(COLOURS))],
            size=SIZES[rng.integers(len(SIZES))],
            row=int(c) // 3,
            col=int(c) % 3,
        )
        for c in cells
    ]
    return sorted(objs, key=lambda o: (o.col, o.row))


def _shape_mask(shape: str, half: float, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Boolean mask of `shape` centred at 0 with half-extent `half` on coordinate grids."""
    ay, ax = np.abs(yy), np.abs(xx)
    if shape == "circle":
        return yy**2 + xx**2 <= half**2
    if shape == "square":
        return (ay <= half * 0.85) & (ax <= half * 0.85)
    if shape == "diamond":
        return ay + ax <= half
    if shape == "cross":
        bar = half * 0.38
        return ((ay <= bar) & (ax <= half)) | ((ax <= bar) & (ay <= half))
    if shape == "triangle":  # apex up
        top, bottom = -half, half * 0.8
        width_at = (yy - top) / (bottom - top) * half
        return (yy >= top) & (yy <= bottom) & (ax <= width_at)
    raise ValueError(f"unknown shape {shape!r}")


def render_scene(objs: list[SceneObject], cfg: ShapesScenesConfig, rng: np.random.Generator) -> np.ndarray:
    """(S, S, 3) uint8 image of the scene."""
    s = cfg.image_size
    cell = s / 3
    img = np.zeros((s, s, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    for o in objs:
        half = cell * (0.45 if o.size == "large" else 0.3)
        slack = max(0, min(cfg.jitter, int(cell / 2 - half)))
        dy, dx = rng.integers(-slack, slack + 1, size=2) if slack else (0, 0)
        cy, cx = (o.row + 0.5) * cell + dy, (o.col + 0.5) * cell + dx
        img[_shape_mask(o.shape, half, yy - cy, xx - cx)] = COLOURS[o.colour]
    return img


# --------------------------------------------------------------------------- captions


def _phrase(o: SceneObject, size_word: str | None = None) -> str:
    return f"a {size_word or o.size} {o.colour} {o.shape}"


def _relation(a: SceneObject, b: SceneObject) -> tuple[str, str]:
    """(relation of a to b, inverse relation) for a before b in reading order."""
    return ("left of", "right of") if a.col < b.col else ("above", "below")


_SYNONYM = {"small": "little", "large": "big"}


def geocap_caption(objs: list[SceneObject]) -> str:
    """GeoCapNet's grammar: colour and shape, objects in reading order joined by "and"."""
    return " and ".join(f"a {o.colour} {o.shape}" for o in objs)


def scene_captions(objs: list[SceneObject], rng: np.random.Generator, n_refs: int = 5) -> list[str]:
    """`n_refs` distinct references for one scene, drawn from its grammar's templates."""
    p = [_phrase(o) for o in objs]
    syn = [_phrase(o, _SYNONYM[o.size]) for o in objs]
    if len(objs) == 1:
        (a,) = p
        pool = [
            a,
            f"there is {a}",
            f"{a} on a black background",
            f"an image with {a}",
            f"{syn[0]}",
            f"one {a[2:]}",
            f"a picture of {a}",
        ]
    elif len(objs) == 2:
        a, b = p
        rel, inv = _relation(*objs)
        pool = [
            f"{a} {rel} {b}",
            f"{b} {inv} {a}",
            f"there is {a} {rel} {b}",
            f"{a} and {b}",
            f"{a} {rel} {b} on a black background",
            f"{syn[0]} {rel} {syn[1]}",
            f"an image with {a} {rel} {b}",
        ]
    else:
        a, b, c = p
        rel1, inv1 = _relation(objs[0], objs[1])
        rel2, inv2 = _relation(objs[1], objs[2])
        pool = [
            f"{a} {rel1} {b} {rel2} {c}",
            f"{a} , {b} and {c}",
            f"there is {a} {rel1} {b} {rel2} {c}",
            f"{c} {inv2} {b} {inv1} {a}",
            f"three shapes , {a} , {b} and {c}",
            f"{syn[0]} {rel1} {syn[1]} {rel2} {syn[2]}",
            f"an image with {a} , {b} and {c}",
        ]
    # the first template is always kept so that every image has its canonical description
    rest = rng.permutation(len(pool) - 1)[: n_refs - 1] + 1
    return [pool[0]] + [pool[i] for i in sorted(rest)]


# --------------------------------------------------------------------------- splits


@dataclass
class Split:
    images: np.ndarray  # (N, S, S, 3) uint8
    captions: list[list[str]]  # N lists of references
    scenes: list[list[SceneObject]]

    def __len__(self) -> int:
        return len(self.captions)


def generate_split(n: int, split: str, seed: int, cfg: ShapesScenesConfig) -> Split:
    """`n` scenes of split `split`; the same (n, split, seed, cfg) always gives the same data."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if split not in _SPLIT_OFFSET:
        raise ValueError(f"split must be one of {tuple(_SPLIT_OFFSET)}, got {split!r}")
    rng = np.random.default_rng([seed, _SPLIT_OFFSET[split], 7919])
    images = np.zeros((n, cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
    captions, scenes = [], []
    for i in range(n):
        objs = sample_scene(rng, cfg)
        images[i] = render_scene(objs, cfg, rng)
        if cfg.grammar == "geocap":
            captions.append([geocap_caption(objs)])
        else:
            captions.append(scene_captions(objs, rng, cfg.n_refs))
        scenes.append(objs)
    return Split(images, captions, scenes)


def write_split(root: Path, split: str, data: Split) -> None:
    """Write `data` as `<root>/<split>_images.npy` and `<root>/<split>.json` (temp file, then rename)."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{split}_images.tmp.npy"
    np.save(tmp, data.images)
    os.replace(tmp, root / f"{split}_images.npy")
    meta = {"captions": data.captions, "scenes": [[asdict(o) for o in s] for s in data.scenes]}
    tmp_json = root / f".{split}.json.tmp"
    tmp_json.write_text(json.dumps(meta))
    os.replace(tmp_json, root / f"{split}.json")


def read_split(root: Path, split: str) -> Split:
    meta = json.loads((root / f"{split}.json").read_text())
    images = np.load(root / f"{split}_images.npy")
    scenes = [[SceneObject(**o) for o in s] for s in meta["scenes"]]
    if len(images) != len(meta["captions"]):
        raise ValueError(f"{root}/{split}: {len(images)} images but {len(meta['captions'])} caption lists")
    return Split(images, meta["captions"], scenes)
