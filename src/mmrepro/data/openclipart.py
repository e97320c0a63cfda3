"""openclipart: a small real-world caption test set from Debian's `openclipart-svg` package.

Drawings under /usr/share/openclipart/svg are rasterised with `rsvg-convert` (librsvg2-bin) onto a
white square canvas; their references are the work's <dc:title> and the first sentence of its
<dc:description> from the SVG's RDF metadata, after filtering:
  - boilerplate: collection names shared by several files ("Lemon SVG theme", "gramastar",
    "Part of the Flat Icon Collection ..."), titles equal to the author, file-ish or numbered
    names, URLs, tool/licence words (inkscape, svg, clipart, icon, converted, ...);
  - non-English titles (marker words of Italian/French/Spanish/German, non-ASCII text);
  - unsuitable content (a small blocklist: weapons, nudity, drugs, hate symbols, gore).
The same file is often installed under two category folders; duplicates (same file name) are
kept once. Selection is a seeded shuffle of the eligible drawings, so the set is deterministic.
Every drawing left out by these rules (or because rsvg-convert cannot render it) is recorded with its
reason (mmrepro.data.rejects: `rejects.json` of the prepared data).
"""

from __future__ import annotations

import html
import io
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmrepro.data.rejects import reject

DEFAULT_ROOT = Path("/usr/share/openclipart/svg")
_HEAD_BYTES = 200_000  # the RDF metadata sits near the top of these files
BOILERPLATE = re.compile(
    r"https?:|www\.|\.com|\.svg|\.png|\binkscape|\bsvg\b|clip ?art|\bicons?\b|\btheme\b|collection|"
    r"\bpart of\b|\bconverted\b|\buntitled\b|\blicen[cs]e|public domain|\bversion\b|\btest\b|\bv\d",
    re.I,
)
FOREIGN = frozenset(
    "di del della delle dei con il lo gli per un una vue les des du et avec pour sur une el los las "
    "y en der die das und mit ein eine von zu".split()
)
BLOCKLIST = frozenset(
    "gun guns pistol rifle revolver weapon weapons bomb grenade knife sword nude naked sexy sex erotic "
    "breast breasts bikini lingerie drug drugs cannabis marijuana cigarette beer vodka nazi swastika "
    "hitler blood bloody gore corpse dead death kill killer skull devil satan war".split()
)
_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class ClipartItem:
    path: Path
    category: str  # top-level folder: animals, food, ...
    references: tuple[str, ...]  # 1-2 cleaned captions


def _tag(block: bytes, tag: bytes) -> str:
    m = re.search(rb"<dc:" + tag + rb">(.*?)</dc:" + tag + rb">", block, re.S)
    return " ".join(html.unescape(m.group(1).decode("utf-8", "replace")).split()) if m else ""


def read_metadata(path: Path) -> tuple[str, str, str]:
    """(title, description, creator) of the drawing's cc:Work; empty strings when absent."""
    head = path.read_bytes()[:_HEAD_BYTES]
    work = re.search(rb"<cc:Work.*?</cc:Work>", head, re.S)
    if not work:
        return "", "", ""
    block = work.group(0)
    creator = re.search(rb"<dc:creator>.*?</dc:creator>", block, re.S)
    for agent in (b"creator", b"publisher", b"rights", b"contributor"):  # their dc:title is a name
        block = re.sub(rb"<dc:" + agent + rb">.*?</dc:" + agent + rb">", b"", block, flags=re.S)
    return _tag(block, b"title"), _tag(block, b"description"), _tag(creator.group(0), b"title") if creator else ""


def clean_caption(text: str, creator: str = "") -> str | None:
    """A usable reference from a title/description, or None if it is boilerplate or unsuitable."""
    text = text.replace("_", " ").replace("-", " ").strip()
    text = re.split(r"(?<=[.!?])\s", text)[0].rstrip(".!? ")  # first sentence
    if not text or not text.isascii() or BOILERPLATE.search(text):
        return None
    if re.search(r"\d", text) or (creator and text.lower() == creator.lower()):
        return None
    words = _WORD.findall(text.lower())
    if not 1 <= len(words) <= 20 or len(words) < len(text.split()) - 1:  # mostly real words
        return None
    if FOREIGN.intersection(words) or BLOCKLIST.intersection(words):
        return None
    return " ".join(words)


def scan(root: Path = DEFAULT_ROOT) -> list[ClipartItem]:
    """Every eligible drawing under `root`, sorted by path (duplicates by file name dropped)."""
    files: dict[str, Path] = {}
    for p in sorted(root.rglob("*.svg")):
        if p.name in files:
            reject(p.relative_to(root).as_posix(), f"duplicate of {files[p.name].relative_to(root).as_posix()}")
        files.setdefault(p.name, p)
    metas = {name: read_metadata(p) for name, p in files.items()}
    title_counts = Counter(t.lower() for t, _, _ in metas.values() if t)
    items = []
    for name, p in sorted(files.items(), key=lambda kv: str(kv[1])):
        title, desc, creator = metas[name]
        rel = p.relative_to(root).as_posix()
        if not title:
            reject(rel, "no dc:title")
            continue
        if title_counts[title.lower()] > 2 or "rollandin" in creator.lower():
            reject(rel, "collection title shared by several drawings" if title_counts[title.lower()] > 2
                   else "Italian-titled Rollandin set")
            continue
        refs = []
        for raw in (title, desc):
            cap = clean_caption(raw, creator)
            if cap and cap not in refs:
                refs.append(cap)
        if refs and refs[0] == clean_caption(title, creator):
            items.append(ClipartItem(p, p.relative_to(root).parts[0], tuple(refs)))
        else:
            reject(rel, "title not a usable caption (boilerplate, non-English, numbered or blocklisted)")
    return items


def rasterise(path: Path, size: int) -> np.ndarray:
    """(size, size, 3) uint8: the drawing fitted (aspect kept) and centred on a white square."""
    from PIL import Image

    exe = shutil.which("rsvg-convert")
    if exe is None:
        raise RuntimeError("rsvg-convert not found: install Debian package librsvg2-bin")
    png = subprocess.run(
        [exe, "-w", str(size), "-h", str(size), "-a", "-b", "white", "-f", "png", str(path)],
        check=True, capture_output=True, timeout=60,
    ).stdout
    with Image.open(io.BytesIO(png)) as img:
        img = img.convert("RGB")
        canvas = Image.new("RGB", (size, size), "white")
        canvas.paste(img, ((size - img.width) // 2, (size - img.height) // 2))
    return np.asarray(canvas)


def build_test_set(n: int, size: int, seed: int, root: Path = DEFAULT_ROOT) -> tuple[np.ndarray, list[ClipartItem]]:
    """`n` drawings (seeded choice among the eligible ones) as (n, size, size, 3) uint8 + items.
    Drawings that rsvg-convert cannot render are skipped in favour of the next eligible one."""
    if n < 1 or size < 8:
        raise ValueError(f"need n >= 1 and size >= 8, got {n}, {size}")
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: install Debian package openclipart-svg")
    items = scan(root)
    order = np.random.default_rng(seed).permutation(len(items))
    images, chosen = [], []
    for i in order:
        try:
            images.append(rasterise(items[i].path, size))
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
            reject(items[i].path.relative_to(root).as_posix(), "rsvg-convert cannot render it")
            continue
        chosen.append(items[i])
        if len(chosen) == n:
            break
    if len(chosen) < n:
        raise ValueError(f"only {len(chosen)} renderable eligible drawings under {root}, asked for {n}")
    return np.stack(images), chosen
