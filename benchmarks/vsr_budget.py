"""What lip reading's cpu recipe costs to train, by crop size and encoder width: the evidence for its time budget.

    python benchmarks/vsr_budget.py                       # ~1 min on a quiet 2-core machine
    python benchmarks/vsr_budget.py --threads 1 --repeats 5

The cpu profile trains two models (the LP and the 3D-conv + ResNet front end) on the same encoder, each 10
epochs of 250 batches (2000 clips, batch 8), and its 10-minute budget per paper holds prepare (~1 min) and
evaluate too. For each configuration (crop side, Conformer width; 4 layers, 4 heads, kernel 15, CTC head,
resnet_width 4 as shipped) this times one training step (loss forward + backward + AdamW) of each front end on
batches as long as `synthetic-lips`' (35, 53, 94 frames: the 10th, 50th and 90th percentile of the longest clip
of the cpu profile's 250 training batches, epoch 0, data seed 0; their mean, 60.7, is near the batches' 59.6),
interleaved after a warm-up (each timed step after an untimed one of the same model), and prints the median
step times, the two models' training time they imply
(2 x 10 x 250 steps at the mean of the three lengths' times) and its ratio to the shipped recipe. Against the
train stage itself (`reports/compute/vsr_conformer/train.json`, 2 threads, quiet, 2026-12-02): shipped, 15.5 min
here and 14.6 min in `make repro`; 32 x 32 crops at d 96, 8.2 min here and 8.8 min in `dvc repro`.
Results go to `benchmarks/results/vsr_budget.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mmrepro.models.vsr_frontends import VisualConformer, VSRConfig  # noqa: E402

BATCH, FRAMES, STEPS = 8, (35, 53, 94), 2 * 10 * 250  # two models x epochs x batches per epoch
CONFIGS = [(64, 144), (48, 144), (32, 144), (64, 96), (32, 96)]  # (crop side, d_model); the first is shipped


def step_fn(frontend: str, size: int, d_model: int, frames: int):
    torch.manual_seed(0)
    model = VisualConformer(VSRConfig(frontend=frontend, image_size=size, d_model=d_model, num_layers=4, num_heads=4,
                                      conv_kernel=15, resnet_width=4, pixel_norm="clip"))
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    clips = torch.randint(0, 256, (BATCH, frames, size * size), dtype=torch.uint8)
    lengths = torch.full((BATCH,), frames) - torch.arange(BATCH) % 4  # a length bucket's spread
    targets = torch.randint(0, 28, (BATCH, frames // 3))
    target_lengths = torch.full((BATCH,), frames // 3)

    def step() -> None:
        optimizer.zero_grad()
        model.loss(clips, lengths, targets, target_lengths).backward()
        optimizer.step()
    return step


def measure(repeats: int) -> dict[str, dict[str, float]]:
    fns = {(size, d, fe, t): step_fn(fe, size, d, t) for size, d in CONFIGS for fe in ("lp", "conv") for t in FRAMES}
    for fn in fns.values():  # warm-up
        fn()
    times: dict[tuple, list[float]] = {key: [] for key in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            fn()  # back into the caches after the other models' steps; the next step is timed
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    out = {}
    for size, d in CONFIGS:
        per = {fe: statistics.fmean(statistics.median(times[(size, d, fe, t)]) for t in FRAMES) for fe in ("lp", "conv")}
        out[f"{size}x{size}, d {d}"] = {"lp_s": per["lp"], "conv_s": per["conv"],
                                        "train_min": (per["lp"] + per["conv"]) / 2 * STEPS / 60}
    shipped = out[f"{CONFIGS[0][0]}x{CONFIGS[0][0]}, d {CONFIGS[0][1]}"]["train_min"]
    for row in out.values():
        row["vs_shipped"] = row["train_min"] / shipped
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = measure(args.repeats)
    print(f"lip reading, cpu recipe's training cost, {args.threads} thread(s), {args.repeats} repetitions, "
          f"batch {BATCH}, frames {FRAMES}")
    print(f"{'crops, width':<16} {'LP s/step':>10} {'conv s/step':>12} {'2 models x 10 epochs':>21} {'vs shipped':>11}")
    for name, r in rows.items():
        print(f"{name:<16} {r['lp_s']:>10.3f} {r['conv_s']:>12.3f} {r['train_min']:>17.1f} min {r['vs_shipped']:>10.2f}x")
    out = ROOT / "benchmarks" / "results" / "vsr_budget.json"
    out.write_text(json.dumps({"threads": args.threads, "repeats": args.repeats, "batch": BATCH,
                               "frames": list(FRAMES), "rows": rows}, indent=1) + "\n")
    print(f"-> {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
