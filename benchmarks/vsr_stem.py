"""The lip-reading conv front end's 3D stem: torch's Conv3d against `temporal_conv3d`, on CPU.

    python benchmarks/vsr_stem.py                 # ~2 min on 1 thread
    python benchmarks/vsr_stem.py --threads 2 --repeats 10

At the cpu profile's size (batch 8, 64 x 64 grayscale frames, resnet_width 4, d 144, 4 Conformer layers,
CTC head; frame counts of real batches of `synthetic-lips`: 40, 59, 83, 107), side by side:
    stem        the stem convolution alone, forward + weight gradient (what a training step needs of it:
                the frames need no gradient)
    step        the whole `conv` variant's training step (loss forward + backward), the model as shipped
                against the same model with its stem computed by F.conv3d (the code before `temporal_conv3d`)
Repetitions are interleaved after a warm-up; medians of times and of per-repetition ratios are printed.
Results go to `benchmarks/results/vsr_stem.json`. Timings on a shared machine are noisy: quote the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mmrepro.metrics.efficiency import median_ratio  # noqa: E402
from mmrepro.models import vsr_frontends  # noqa: E402
from mmrepro.models.temporal_conv import temporal_conv3d  # noqa: E402
from mmrepro.models.vsr_frontends import VisualConformer, VSRConfig  # noqa: E402

BATCH, SIZE = 8, 64


def conv3d(x: torch.Tensor, weight: torch.Tensor, stride, padding) -> torch.Tensor:
    """The stem as it was: torch's Conv3d (its weight gradient is the slow part on CPU)."""
    return F.conv3d(x, weight, None, (1, *stride), padding)


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(frames: int, repeats: int) -> dict[str, list[float]]:
    torch.manual_seed(0)
    model = VisualConformer(VSRConfig(frontend="conv", d_model=144, num_layers=4, num_heads=4, conv_kernel=15,
                                      resnet_width=4, pixel_norm="clip"))
    weight = model.front_end.stem[0].weight
    x = torch.randn(BATCH, 1, frames, SIZE, SIZE)
    grad = torch.randn(BATCH, weight.shape[0], frames, SIZE // 2, SIZE // 2)
    clips = torch.randint(0, 256, (BATCH, frames, SIZE * SIZE), dtype=torch.uint8)
    lengths = torch.full((BATCH,), frames)
    targets = torch.randint(0, 28, (BATCH, frames // 3))
    target_lengths = torch.full((BATCH,), frames // 3)

    def stem(conv):
        return lambda: torch.autograd.grad(conv(x, weight, (2, 2), (2, 3, 3)), weight, grad)

    def step(conv):
        def run():
            vsr_frontends.temporal_conv3d = conv
            try:
                model.loss(clips, lengths, targets, target_lengths).backward()
            finally:
                vsr_frontends.temporal_conv3d = temporal_conv3d
            model.zero_grad(set_to_none=True)
        return run

    fns = {"stem_conv3d": stem(conv3d), "stem_temporal": stem(temporal_conv3d),
           "step_conv3d": step(conv3d), "step_temporal": step(temporal_conv3d)}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for rep in range(repeats + 1):
        for name, fn in fns.items():
            elapsed = _time(fn)
            if rep:  # the first round is the warm-up
                times[name].append(elapsed)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[40, 59, 83, 107])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "vsr_stem.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"conv front end, batch {BATCH} x T x {SIZE}x{SIZE}; {args.threads} thread(s), {args.repeats} interleaved "
          f"repetitions, load {os.getloadavg()[0]:.1f}")
    print(f"{'T':>5}{'stem Conv3d ms':>16}{'stem temporal ms':>18}{'ratio':>8}"
          f"{'step Conv3d ms':>16}{'step temporal ms':>18}{'ratio':>8}")
    rows = []
    for frames in args.frames:
        times = measure(frames, args.repeats)
        row = {"frames": frames, **{f"{k}_ms": 1e3 * statistics.median(v) for k, v in times.items()},
               "stem_conv3d_over_temporal": median_ratio(times["stem_conv3d"], times["stem_temporal"]),
               "step_conv3d_over_temporal": median_ratio(times["step_conv3d"], times["step_temporal"])}
        rows.append(row)
        print(f"{frames:>5}{row['stem_conv3d_ms']:>16.1f}{row['stem_temporal_ms']:>18.1f}"
              f"{row['stem_conv3d_over_temporal']:>7.2f}x{row['step_conv3d_ms']:>16.1f}{row['step_temporal_ms']:>18.1f}"
              f"{row['step_conv3d_over_temporal']:>7.2f}x", flush=True)
    from mmrepro.fileio import write_json_atomic

    write_json_atomic(args.out, {"threads": args.threads, "repeats": args.repeats, "load_avg": os.getloadavg(),
                                 "batch": BATCH, "image_size": SIZE, "rows": rows})


if __name__ == "__main__":
    main()
