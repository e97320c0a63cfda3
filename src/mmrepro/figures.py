"""Grids of image tiles with short text labels, drawn with numpy and Pillow.

The evaluate stages save pictures made of image tiles (attention maps, originals over reconstructions). Drawing
them as matplotlib subplots with tight_layout cost seconds per figure, most of it in layout and text machinery
these pictures do not need; pasting arrays and drawing a few words with PIL costs milliseconds, and keeps
matplotlib out of the stages' imports. Charts with axes stay on matplotlib.

Layout, top to bottom: MARGIN, an optional title strip, then each grid row as a label strip (only as tall as that
row's labels need; none when the row has no labels) over its tiles, rows separated by GAP, then MARGIN.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MARGIN = 4  # px around the whole picture
GAP = 4  # px between tiles, and between a row's tiles and the next row's label strip
FONT_PX = 12  # label size; a label wider than its tile is drawn smaller, down to MIN_FONT_PX
MIN_FONT_PX = 7
LINE_PX = 15  # height of one text line: FreeType default font at 12 px has ascent 12 + descent 3
MIN_TILE_PX = 96  # small (32-64 px) images are upscaled to at least this width so that a word fits over them
BACKGROUND = 255  # white, as the matplotlib figures were
INK = (0, 0, 0)


def upscale_factor(width: int) -> int:
    """The integer nearest-neighbour factor that makes a tile `width` px wide at least MIN_TILE_PX wide."""
    return max(1, -(-MIN_TILE_PX // width))


@lru_cache(maxsize=None)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    # load_default(size=...) needs Pillow >= 10.1 built with FreeType; without it, the fixed-size bitmap font
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _draw_centred(draw: ImageDraw.ImageDraw, text: str, centre_x: int, top: int, width: int) -> None:
    """`text` (lines split at newlines) centred on centre_x from `top` down, one LINE_PX per line; a line wider
    than `width` is drawn in a smaller font so that it does not run into its neighbours' labels."""
    for i, line in enumerate(text.split("\n")):
        size = FONT_PX
        font = _font(size)
        while draw.textlength(line, font=font) > width and size > MIN_FONT_PX:
            size -= 1
            font = _font(size)
        draw.text((centre_x - draw.textlength(line, font=font) / 2, top + i * LINE_PX), line, fill=INK, font=font)


def tile_grid(rows: Sequence[Sequence[np.ndarray]], labels: Sequence[Sequence[str] | None] | None = None,
              title: str | None = None) -> Image.Image:
    """One RGB picture of image tiles: rows[r][c] is an (H, W, 3) uint8 array, all of one size, upscaled by
    `upscale_factor(W)` (nearest neighbour, so every source pixel stays a uniform block); labels[r][c], when
    given and not empty, is drawn centred over its tile (may hold newlines); title is one line over everything.
    Rows may be shorter than the widest one (left-aligned)."""
    first = np.asarray(rows[0][0])
    height, width = first.shape[:2]
    scale = upscale_factor(width)
    tile_h, tile_w = height * scale, width * scale
    labels = labels if labels is not None else [None] * len(rows)
    # label strip of each row: as many lines as its tallest label
    strips = [LINE_PX * max((len(t.split("\n")) for t in row_labels if t), default=0) if row_labels else 0
              for row_labels in labels]
    title_h = LINE_PX + GAP if title else 0
    cols = max(len(row) for row in rows)
    canvas = np.full((2 * MARGIN + title_h + sum(strips) + len(rows) * tile_h + (len(rows) - 1) * GAP,
                      2 * MARGIN + cols * tile_w + (cols - 1) * GAP, 3), BACKGROUND, dtype=np.uint8)
    label_at = []  # (text, centre x, top y) of every label, drawn once the tiles are in
    y = MARGIN + title_h
    for row, row_labels, strip in zip(rows, labels, strips, strict=True):
        for c, tile in enumerate(row):
            tile = np.asarray(tile)
            if tile.shape != first.shape or tile.dtype != np.uint8:
                raise ValueError(f"tiles must all be {first.shape} uint8, got {tile.shape} {tile.dtype}")
            x = MARGIN + c * (tile_w + GAP)
            canvas[y + strip : y + strip + tile_h, x : x + tile_w] = tile.repeat(scale, 0).repeat(scale, 1)
            if row_labels and row_labels[c]:
                label_at.append((row_labels[c], x + tile_w // 2, y))
        y += strip + tile_h + GAP
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for text, centre_x, top in label_at:
        _draw_centred(draw, text, centre_x, top, tile_w + GAP)
    if title:
        _draw_centred(draw, title, canvas.shape[1] // 2, MARGIN, canvas.shape[1] - 2 * MARGIN)
    return image
