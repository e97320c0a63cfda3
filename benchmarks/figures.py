"""Image-grid figures of the evaluate stages: matplotlib subplots (old) vs mmrepro.figures.tile_grid (new).

    python benchmarks/figures.py                  # old = commit e78bc87, the last to draw them with matplotlib
    python benchmarks/figures.py --rev REV --repeats 5

Each measurement is a fresh `python` process (OMP_NUM_THREADS=1, torch already imported, as in a stage) that
imports the paper module and draws one figure: `save_attention_maps` for 8 images of 48 px (the smoke's
shapes-scenes size) with a 7-word caption each, or the VQ-VAE `_save_grid` of 16 captioned 32 px images over 16
others. The clock covers the import of the paper module and the call, so matplotlib's import counts where the
old code pays it. Old is REV's src/ (extracted with `git archive`), new is this checkout's; the two run
interleaved (old, new, old, new, ...) and the medians are printed with their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OLD_REV = "e78bc87"  # the last commit whose attention maps and VQ-VAE grids were drawn with matplotlib

PROBE = """
import json, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from mmrepro.data.caption_vocab import CaptionVocab
from mmrepro.models.attention_captioner import AttentionCaptioner, AttentionCaptionerConfig
from mmrepro.models.image_encoder import ImageEncoderConfig
out, figure = Path(sys.argv[1]), sys.argv[2]
torch.manual_seed(0)
if figure == "attention maps":
    vocab = CaptionVocab.build(["a red circle left of a blue square"])
    model = AttentionCaptioner(AttentionCaptionerConfig(vocab_size=len(vocab), encoder=ImageEncoderConfig(
        dim=32, grid=6, width=8), embed_dim=32, hidden_dim=64, attn_dim=32)).eval()
    images = torch.randint(0, 256, (8, 3, 48, 48), dtype=torch.uint8)
    tokens = [vocab.encode("a red circle left of a blue", 20)[1:-1]] * 8
else:
    top, bottom = torch.rand(16, 3, 32, 32), torch.rand(16, 3, 32, 32)
    captions = ["a small red circle at the top left"] * 16
start, cpu = time.perf_counter(), time.process_time()
with torch.no_grad():
    if figure == "attention maps":
        from mmrepro.papers.attention_captioner import save_attention_maps
        save_attention_maps(model, images, tokens, vocab, out / "attention")
    else:
        from mmrepro.papers.vqvae import _save_grid
        _save_grid(out / "grid.png", top, bottom, "real test image (top) / generated from its caption (bottom)",
                   captions)
print(json.dumps({"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu,
                  "matplotlib": "matplotlib" in sys.modules}))
"""
FIGURES = ("attention maps", "vqvae grid")


def extract(rev: str, dest: Path) -> Path:
    """REV's src/ tree under dest (no checkout or worktree needed)."""
    tar = subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(tar)) as archive:
        archive.extractall(dest, filter="data")
    return dest / "src"


def measure(src: Path, figure: str, scratch: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(src)}
    with tempfile.TemporaryDirectory(dir=scratch) as out:
        proc = subprocess.run([sys.executable, "-c", PROBE, out, figure], cwd=ROOT, env=env, capture_output=True,
                              text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rev", default=OLD_REV, help="git revision whose src/ is the old code")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sides = {"old": extract(args.rev, Path(tmp) / "old"), "new": ROOT / "src"}
        runs: dict[tuple[str, str], list[dict]] = {}
        for _ in range(args.repeats):
            for figure in FIGURES:
                for side, src in sides.items():  # interleaved: old, new, old, new, ...
                    runs.setdefault((figure, side), []).append(measure(src, figure, Path(tmp)))
    print(f"medians of {args.repeats} fresh processes each, old = {args.rev}, new = this checkout")
    print(f"{'figure':<16}{'old wall s':>11}{'new wall s':>11}{'ratio':>8}{'old cpu s':>11}{'new cpu s':>11}"
          f"{'ratio':>8}  matplotlib imported (old, new)")
    for figure in FIGURES:
        old, new = runs[(figure, "old")], runs[(figure, "new")]
        med = {key: (statistics.median(r[key] for r in old), statistics.median(r[key] for r in new))
               for key in ("wall", "cpu")}
        print(f"{figure:<16}{med['wall'][0]:>11.3f}{med['wall'][1]:>11.3f}{med['wall'][0] / med['wall'][1]:>8.1f}"
              f"{med['cpu'][0]:>11.3f}{med['cpu'][1]:>11.3f}{med['cpu'][0] / med['cpu'][1]:>8.1f}"
              f"  {any(r['matplotlib'] for r in old)}, {any(r['matplotlib'] for r in new)}")


if __name__ == "__main__":
    main()
