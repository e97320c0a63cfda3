"""Tile grids (mmrepro.figures) and the two figures drawn with them: attention maps and the VQ-VAE grids.

The pictures are read back from the PNG files and compared pixel by pixel with what they must show."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageFont

from mmrepro import figures
from mmrepro.figures import GAP, LINE_PX, MARGIN, tile_grid

from .conftest import REPO, stage_env


def _images(n: int, side: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return list(rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8))


def _read(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _has_ink(region: np.ndarray) -> bool:
    return bool((region < 128).any())  # black text on the white background


def test_grid_size_is_margins_title_label_strips_and_upscaled_tiles(tmp_path):
    # 32 px tiles are upscaled x3 to 96 px; 3 columns; row 0 has a two-line label, row 1 none
    rows = [_images(3, 32), _images(2, 32, seed=1)]
    tile_grid(rows, [["one\ntwo", "", "x"], None], title="title").save(tmp_path / "g.png")
    width = 4 + 96 + 4 + 96 + 4 + 96 + 4
    height = 4 + (15 + 4) + (2 * 15 + 96) + 4 + (0 + 96) + 4
    assert (MARGIN, GAP, LINE_PX) == (4, 4, 15)
    assert Image.open(tmp_path / "g.png").size == (width, height)
    # no labels, no title: the strips are gone
    tile_grid([_images(2, 64)]).save(tmp_path / "bare.png")
    assert Image.open(tmp_path / "bare.png").size == (4 + 128 + 4 + 128 + 4, 4 + 128 + 4)


def test_tiles_are_the_input_images_upscaled_by_nearest_neighbour(tmp_path):
    rows = [_images(3, 32), _images(2, 32, seed=1)]
    tile_grid(rows, [["a", "b", "c"], None], title="t").save(tmp_path / "g.png")
    got = _read(tmp_path / "g.png")
    top_of_row = [MARGIN + LINE_PX + GAP + LINE_PX, MARGIN + LINE_PX + GAP + LINE_PX + 96 + GAP]
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            y, x = top_of_row[r], MARGIN + c * (96 + GAP)
            np.testing.assert_array_equal(got[y : y + 96, x : x + 96], image.repeat(3, 0).repeat(3, 1))
    # the missing third tile of row 1 is background
    assert (got[top_of_row[1] : top_of_row[1] + 96, MARGIN + 2 * 100 : MARGIN + 2 * 100 + 96] == 255).all()


def test_labels_and_title_are_drawn_in_their_strips(tmp_path):
    rows = [_images(2, 32), _images(2, 32, seed=1)]
    tile_grid(rows, [["red", ""], None], title="title").save(tmp_path / "g.png")
    got = _read(tmp_path / "g.png")
    title = got[MARGIN : MARGIN + LINE_PX]
    strip = got[MARGIN + LINE_PX + GAP : MARGIN + LINE_PX + GAP + LINE_PX]
    assert _has_ink(title)
    assert _has_ink(strip[:, MARGIN : MARGIN + 96])  # "red" over tile 0
    assert not _has_ink(strip[:, MARGIN + 96 + GAP :])  # nothing over tile 1


def test_a_label_wider_than_its_tile_is_drawn_smaller_and_stays_over_it(tmp_path):
    long = "small magenta triangle"
    tile_grid([_images(3, 32)], [["", long, ""]]).save(tmp_path / "g.png")
    strip = _read(tmp_path / "g.png")[MARGIN : MARGIN + LINE_PX]
    inked = np.flatnonzero((strip < 128).any(axis=(0, 2)))
    left = MARGIN + 96 + GAP
    assert inked.size and left - GAP // 2 <= inked.min() and inked.max() < left + 96 + GAP // 2


def test_the_default_font_is_used_where_sized_fonts_are_unavailable(tmp_path, monkeypatch):
    original, asked = ImageFont.load_default, []

    def no_freetype(size=None):  # Pillow < 10.1, or built without FreeType
        asked.append(size)
        if size is not None:
            raise ImportError("The _imagingft C module is not installed")
        return original()

    monkeypatch.setattr(ImageFont, "load_default", no_freetype)
    figures._font.cache_clear()
    try:
        tile_grid([_images(1, 32)], [["word"]]).save(tmp_path / "g.png")
    finally:
        figures._font.cache_clear()
    assert asked[:2] == [12, None]
    assert _has_ink(_read(tmp_path / "g.png")[MARGIN : MARGIN + LINE_PX])


def test_tiles_of_different_sizes_are_refused():
    with pytest.raises(ValueError, match="tiles must all be"):
        tile_grid([_images(1, 32) + _images(1, 48)])


class _FixedAttention(torch.nn.Module):
    """Stands in for the captioner: attention all on one cell of the 6 x 6 grid at every word."""

    def __init__(self, hot: tuple[int, int]):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # save_attention_maps reads the device from it
        self.hot = hot

    def attention_maps(self, images: torch.Tensor, tokens: list[int]) -> torch.Tensor:
        maps = torch.zeros(len(tokens) + 1, 6, 6)
        maps[:, self.hot[0], self.hot[1]] = 0.5  # normalised by its max: 1 there, 0 elsewhere
        return maps


def test_an_attention_tile_is_the_image_lit_by_the_upsampled_map(tmp_path):
    from mmrepro.data.caption_vocab import CaptionVocab
    from mmrepro.papers.attention_captioner import save_attention_maps

    vocab = CaptionVocab.build(["a red circle left of a blue square"])
    image = _images(1, 48)[0]  # 48 px: upscaled x2; the 6 x 6 map's cell is 8 px, 16 px in the tile
    tokens = vocab.encode("a red circle left of a blue square", 20)[1:-1]  # 8 words + <eos> + the image: 2 rows
    (path,) = save_attention_maps(_FixedAttention(hot=(2, 3)), torch.from_numpy(image).permute(2, 0, 1)[None],
                                  [tokens], vocab, tmp_path / "attention")
    assert path.name == "test_000.png"
    got = _read(path)
    assert got.shape == (4 + 15 + 96 + 4 + 15 + 96 + 4, 4 + 8 * 96 + 7 * 4 + 4, 3)
    tile = lambda r, c: got[MARGIN + r * (LINE_PX + 96 + GAP) + LINE_PX :][:96, MARGIN + c * (96 + GAP) :][:, :96]  # noqa: E731
    big = image.repeat(2, 0).repeat(2, 1).astype(float)
    np.testing.assert_array_equal(tile(0, 0), big.astype(np.uint8))  # the image itself, titled "image"
    up = np.zeros((96, 96, 1))
    up[2 * 16 : 3 * 16, 3 * 16 : 4 * 16] = 1.0
    want = big * (0.15 + 0.85 * up)
    for r, c in ((0, 1), (0, 7), (1, 1)):  # "a", "blue", "<eos>"
        assert np.abs(tile(r, c).astype(float) - want).max() <= 0.5 + 1e-9
    hot = tile(0, 1)[32:48, 48:64]
    np.testing.assert_array_equal(hot, big[32:48, 48:64].astype(np.uint8))  # the attended cell at full brightness
    assert tile(0, 1)[:32].astype(float).mean() < 0.2 * big[:32].mean()  # the rest dimmed to 0.15
    for r, c in ((0, 0), (0, 1), (1, 1)):  # every tile has its word over it
        assert _has_ink(got[MARGIN + r * (LINE_PX + 96 + GAP) :][:LINE_PX, MARGIN + c * 100 :][:, :96])
    assert not _has_ink(got[MARGIN + LINE_PX + 96 + GAP :][:LINE_PX, MARGIN + 2 * 100 :])  # no third tile on row 1


def test_vqvae_grid_puts_originals_over_their_reconstructions_with_short_labels(tmp_path):
    from mmrepro.papers.vqvae import _save_grid

    torch.manual_seed(0)
    top, bottom = torch.rand(18, 3, 32, 32), torch.rand(18, 3, 32, 32)
    captions = ["a small red circle at the top left"] * 18
    _save_grid(tmp_path / "g.png", top, bottom, "originals (top) / reconstructions (bottom)", captions)
    got = _read(tmp_path / "g.png")
    title_h, strip = LINE_PX + GAP, 2 * LINE_PX  # labels are two lines: "small red circle" / "top left"
    pair_h = strip + 96 + GAP + 96 + GAP
    assert got.shape == (4 + title_h + 2 * pair_h - GAP + 4, 4 + 16 * 96 + 15 * 4 + 4, 3)
    as_uint8 = lambda t: (t.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy().repeat(3, 0).repeat(3, 1)  # noqa: E731
    for i, (pair, col) in ((0, (0, 0)), (15, (0, 15)), (17, (1, 1))):  # 16 a row pair, the 17th wraps
        y, x = MARGIN + title_h + pair * pair_h + strip, MARGIN + col * (96 + GAP)
        np.testing.assert_array_equal(got[y : y + 96, x : x + 96], as_uint8(top[i]))
        np.testing.assert_array_equal(got[y + 96 + GAP : y + 2 * 96 + GAP, x : x + 96], as_uint8(bottom[i]))
        assert _has_ink(got[y - LINE_PX : y, x : x + 96]) and _has_ink(got[y - strip : y - LINE_PX, x : x + 96])


PROBE = """
import json, sys
from pathlib import Path
import torch
from mmrepro.data.caption_vocab import CaptionVocab
from mmrepro.papers.attention_captioner import save_attention_maps
from mmrepro.papers.vqvae import _save_grid

class Uniform(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def attention_maps(self, images, tokens):
        return torch.ones(len(tokens) + 1, 6, 6)

out = Path({out!r})
vocab = CaptionVocab.build(["a red circle"])
tokens = vocab.encode("a red circle", 8)[1:-1]
save_attention_maps(Uniform(), torch.zeros(1, 3, 48, 48, dtype=torch.uint8), [tokens], vocab, out)
_save_grid(out / "grid.png", torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32), "title", ["a red circle at the top"] * 4)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "matplotlib")))
"""


def test_drawing_the_figures_imports_no_matplotlib(tmp_path):
    env = stage_env(PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run([sys.executable, "-c", PROBE.format(out=str(tmp_path))],
                          cwd=REPO, capture_output=True, text=True, env=env, check=True)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "test_000.png"]
