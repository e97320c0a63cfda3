"""Our Conformer encoder against lucidrains `conformer==0.3.2`, side by side: step time and parameter count.

    python benchmarks/conformer_peer.py                 # installs the peer on first use, ~2 min on 1 thread
    python benchmarks/conformer_peer.py --repeats 30 --threads 2

The peer is installed from `benchmarks/requirements-peer.txt` with `pip install --no-deps --target
benchmarks/.peer` (ignored by git; it runs on this venv's torch), never into the project's environment.
Size (issue 15): 4 blocks, d 144, 4 heads (d_head 36), FFN 4d, conv kernel 32 with the paper's d -> 2d GLU
(the peer's `conv_expansion_factor=1`), dropout 0.1, batch 8 x 250 frames of d-dimensional input (no front
end). Two peers: `Conformer(...)` as released, whose constructor does not pass its dropout arguments on to
the blocks (it trains without dropout), and the same blocks with dropout 0.1 passed (`ConformerBlock`, the
equal-work comparison). Ours runs as the pipeline runs it: with a padding mask (all frames valid) and the
relative-position bias; the peer has Shaw-style clipped relative positions and no mask.
Steps: "train" = forward + backward of the mean square of the output (train mode); "inference" = forward
in eval mode under `torch.inference_mode()`. Repetitions are interleaved (ours, peer, peer-dropout, ours,
...) after warm-ups; the table gives median times and the medians of the per-repetition ratios.
Results go to `benchmarks/results/conformer_peer.json`. Quote the ratios; absolute CPU times on a shared
machine are upper bounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
PEER_DIR = ROOT / "benchmarks" / ".peer"
sys.path.insert(0, str(ROOT / "src"))

from mmrepro.models.conformer import ConformerConfig, ConformerEncoder  # noqa: E402

D, LAYERS, HEADS, KERNEL, DROPOUT, BATCH, FRAMES = 144, 4, 4, 32, 0.1, 8, 250


def install_peer() -> None:
    if not (PEER_DIR / "conformer").is_dir():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(PEER_DIR),
                        "-r", str(ROOT / "benchmarks" / "requirements-peer.txt")], check=True)
    sys.path.insert(0, str(PEER_DIR))


class _Ours(nn.Module):
    def __init__(self, dropout: float = DROPOUT) -> None:
        super().__init__()
        cfg = ConformerConfig(input_dim=D, d_model=D, num_layers=LAYERS, num_heads=HEADS, conv_kernel=KERNEL,
                              dropout=dropout, input_layer="none")
        self.encoder = ConformerEncoder(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x, torch.full((x.shape[0],), x.shape[1]))[0]


def peers() -> dict[str, nn.Module]:
    from conformer import Conformer, ConformerBlock

    kw = {"dim_head": D // HEADS, "heads": HEADS, "ff_mult": 4, "conv_expansion_factor": 1, "conv_kernel_size": KERNEL}
    released = Conformer(D, depth=LAYERS, attn_dropout=DROPOUT, ff_dropout=DROPOUT, conv_dropout=DROPOUT, **kw)
    with_dropout = nn.Sequential(*(ConformerBlock(dim=D, attn_dropout=DROPOUT, ff_dropout=DROPOUT,
                                                  conv_dropout=DROPOUT, **kw) for _ in range(LAYERS)))
    return {"peer (as released: no dropout)": released, "peer, dropout 0.1": with_dropout}


def step_fn(model: nn.Module, x: torch.Tensor, mode: str):
    if mode == "train":
        model.train()

        def step() -> None:
            model(x).square().mean().backward()
            model.zero_grad(set_to_none=True)
    else:
        model.eval()

        def step() -> None:
            with torch.inference_mode():
                model(x)
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "conformer_peer.json")
    args = ap.parse_args()
    install_peer()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {"ours": _Ours(), **peers(), "ours, dropout 0": _Ours(dropout=0.0)}
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}
    x = torch.randn(BATCH, FRAMES, D)
    rows = []
    print(f"batch {BATCH} x {FRAMES} frames, d {D}, {LAYERS} blocks, {HEADS} heads, kernel {KERNEL}, dropout "
          f"{DROPOUT}; {args.threads} thread(s), {args.repeats} interleaved repetitions, load {os.getloadavg()[0]:.1f}")
    for name, n in counts.items():
        print(f"  parameters {name:<32}{n:>10,}  (ours / this: {counts['ours'] / n:.4f})")
    print(f"\n{'step':<11}{'model':<32}{'median ms':>10}{'ours / model':>14}   (against the released peer: ours "
          "at dropout 0, the same work)")
    for mode in ("train", "inference"):
        steps = {name: step_fn(m, x, mode) for name, m in models.items()}
        for step in steps.values():
            step(), step()  # warm-up
        times: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(args.repeats):
            for name, step in steps.items():
                start = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - start)
        for name, ts in times.items():
            # equal work: ours at dropout 0 against the released peer (which runs without dropout); our own
            # rows are the references, so they get no ratio
            mine = times["ours, dropout 0" if name == "peer (as released: no dropout)" else "ours"]
            ratio = None if name.startswith("ours") else statistics.median(o / t for o, t in zip(mine, ts, strict=True))
            rows.append({"step": mode, "model": name, "median_ms": 1e3 * statistics.median(ts), "ours_over_model": ratio,
                         "parameters": counts[name]})
            shown = f"{ratio:>13.3f}x" if ratio is not None else f"{'-':>14}"
            print(f"{mode:<11}{name:<32}{1e3 * statistics.median(ts):>10.1f}{shown}")
    record = {"threads": args.threads, "repeats": args.repeats, "load_avg": os.getloadavg(), "torch": torch.__version__,
              "size": {"d": D, "layers": LAYERS, "heads": HEADS, "kernel": KERNEL, "dropout": DROPOUT, "batch": BATCH,
                       "frames": FRAMES}, "rows": rows}
    sys.path.insert(0, str(ROOT / "src"))
    from mmrepro.fileio import write_json_atomic

    write_json_atomic(args.out, record)


if __name__ == "__main__":
    main()
