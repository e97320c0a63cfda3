"""openclipart adapter on generated SVG files in the package's format (RDF metadata, Inkscape style)."""

import shutil

import numpy as np
import pytest

from mmrepro.data.openclipart import build_test_set, clean_caption, rasterise, read_metadata, scan

SVG = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<svg xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:cc="http://web.resource.org/cc/"
     xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://www.w3.org/2000/svg"
     width="200" height="100" viewBox="0 0 200 100">
  <metadata>
    <rdf:RDF>
      <cc:Work rdf:about="">
        <dc:title>{title}</dc:title>
        <dc:description>{desc}</dc:description>
        <dc:creator><cc:Agent><dc:title>{author}</dc:title></cc:Agent></dc:creator>
        <dc:publisher><cc:Agent><dc:title>Open Clip Art Library</dc:title></cc:Agent></dc:publisher>
      </cc:Work>
    </rdf:RDF>
  </metadata>
  <rect x="0" y="0" width="200" height="100" fill="#ff0000"/>
</svg>
"""


def _svg(path, title, desc="", author="Jane Doe"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SVG.format(title=title, desc=desc, author=author))
    return path


def test_read_metadata_skips_agent_titles(tmp_path):
    p = _svg(tmp_path / "a.svg", "Red Apple &amp; Pear", "A shiny red apple. Drawn in Inkscape.")
    assert read_metadata(p) == ("Red Apple & Pear", "A shiny red apple. Drawn in Inkscape.", "Jane Doe")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Full_Moon", "full moon"),
        ("The full moon as it looks from Earth. Because it is bright...", "the full moon as it looks from earth"),
        ("Lemon SVG theme", None),
        ("EPS converted from http://aiga.org", None),
        ("fc23", None),
        ("Barattolo di pillole", None),
        ("Jane Doe", None),
        ("assault rifle", None),
        ("caf\u00e9 table", None),
        ("", None),
    ],
)
def test_clean_caption(text, expected):
    assert clean_caption(text, creator="Jane Doe") == expected


def test_scan_filters_collections_and_duplicates(tmp_path):
    _svg(tmp_path / "animals" / "cat.svg", "Sleeping cat", "A grey cat asleep on a cushion.")
    _svg(tmp_path / "animals" / "pets" / "cat.svg", "Sleeping cat")  # same file in a sub-category
    for k in range(3):  # a collection name shared by 3 files is boilerplate
        _svg(tmp_path / "computer" / f"icon{k}.svg", "Lemon theme")
    _svg(tmp_path / "food" / "bread.svg", "Bread loaf", author="Someone")
    _svg(tmp_path / "people" / "x.svg", "Yoga", author="Architetto Francesco Rollandin")
    items = scan(tmp_path)
    assert [(i.category, i.references) for i in items] == [
        ("animals", ("sleeping cat", "a grey cat asleep on a cushion")),
        ("food", ("bread loaf",)),
    ]


@pytest.mark.skipif(shutil.which("rsvg-convert") is None, reason="librsvg2-bin not installed")
def test_rasterise_keeps_aspect_on_white(tmp_path):
    img = rasterise(_svg(tmp_path / "r.svg", "Red box"), 32)
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    red = (img[:, :, 0] > 200) & (img[:, :, 1] < 60)
    assert red[8:24].all() and not red[:7].any() and not red[25:].any()  # 2:1 drawing, centred
    assert (img[0] == 255).all()
    _svg(tmp_path / "s.svg", "Second box")
    images, items = build_test_set(2, 32, seed=0, root=tmp_path)
    assert images.shape == (2, 32, 32, 3) and len(items) == 2
    with pytest.raises(ValueError, match="only 2"):
        build_test_set(3, 32, seed=0, root=tmp_path)
