"""Limited-context attention against full attention: training-step time against length, on CPU.

    python benchmarks/limited_attention.py              # ~5 min on 1 thread
    python benchmarks/limited_attention.py --lengths 250 1000 --repeats 3

One relative-position attention layer (`RelPosMultiHeadAttention`, d 144, 4 heads: the cpu profile's Fast
Conformer width) in train mode, forward + backward of the mean square of its output, for:
    full       full T x T attention
    limited    window |i - j| <= w (w = 128, NeMo's default) + one global token, as the model computes it now
               (masked full attention while T <= 2w + w/4, then chunks of w/4 queries)
    previous   the earlier limited implementation (chunks of w queries against 3w keys and 4w - 1 distances,
               kept as the reference in tests/test_conformer_equivalence.py)
The headline row is batch 8 x 250 frames (issue 15: the previous code took 1.43x full attention there);
the scaling rows use batch 1 at each length (full attention only up to --full-max frames, for memory).
Repetitions are interleaved after a warm-up; medians of times and of per-repetition ratios are printed, with
the log-log slope of time against T over the last lengths (1 = linear). Results go to
`benchmarks/results/limited_attention.json`. Timings on a shared machine are noisy: quote the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from mmrepro.metrics.efficiency import loglog_slope, median_ratio  # noqa: E402
from mmrepro.models.conformer import RelPosMultiHeadAttention  # noqa: E402
from tests.test_conformer_equivalence import reference_attention  # noqa: E402

D, HEADS, W = 144, 4, 128


def measure(batch: int, t: int, repeats: int, with_full: bool) -> dict[str, list[float]]:
    torch.manual_seed(0)
    full = RelPosMultiHeadAttention(D, HEADS)
    limited = RelPosMultiHeadAttention(D, HEADS, limited=True, context=W)
    limited.load_state_dict(full.state_dict())
    x = torch.randn(batch, t, D)
    mask = torch.ones(batch, t, dtype=torch.bool)
    fns = {"limited": lambda: limited(x, mask), "previous": lambda: reference_attention(limited, x, mask)}
    if with_full:
        fns = {"full": lambda: full(x, mask), **fns}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for rep in range(repeats + 1):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn().square().mean().backward()
            if rep:  # the first round is the warm-up
                times[name].append(time.perf_counter() - start)
        full.zero_grad(set_to_none=True)
        limited.zero_grad(set_to_none=True)
    return times


def _ratio(times: dict[str, list[float]], a: str, b: str) -> float | None:
    """Median of the per-repetition ratios a / b (None when b was not measured)."""
    if a not in times or b not in times:
        return None
    return median_ratio(times[a], times[b])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[250, 500, 1000, 2000, 4000, 8000])
    ap.add_argument("--full-max", type=int, default=4000, help="longest T for full attention (memory)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "limited_attention.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"d {D}, {HEADS} heads, w {W}, 1 global token; train step (fwd + bwd); {args.threads} thread(s), "
          f"{args.repeats} interleaved repetitions, load {os.getloadavg()[0]:.1f}")
    print(f"{'B x T':>12}{'full ms':>10}{'limited ms':>12}{'previous ms':>13}{'limited/full':>14}{'previous/full':>15}"
          f"{'limited/previous':>18}")
    rows = []
    for batch, t in [(8, 250)] + [(1, t) for t in args.lengths]:
        times = measure(batch, t, args.repeats, with_full=t <= args.full_max)
        row = {"batch": batch, "t": t, **{f"{k}_ms": 1e3 * statistics.median(v) for k, v in times.items()}}

        row.update({"limited_over_full": _ratio(times, "limited", "full"),
                    "previous_over_full": _ratio(times, "previous", "full"),
                    "limited_over_previous": _ratio(times, "limited", "previous")})
        rows.append(row)

        def cell(value: float | None, width: int, fmt: str) -> str:
            return f"{'-':>{width}}" if value is None else f"{value:>{width}{fmt}}"

        print(f"{f'{batch} x {t}':>12}{cell(row.get('full_ms'), 10, '.1f')}{row['limited_ms']:>12.1f}"
              f"{row['previous_ms']:>13.1f}{cell(row['limited_over_full'], 13, '.2f')}x"
              f"{cell(row['previous_over_full'], 14, '.2f')}x{row['limited_over_previous']:>17.2f}x", flush=True)
    scaling = [r for r in rows if r["batch"] == 1]
    tail = scaling[-3:]
    slopes = {k: loglog_slope([r["t"] for r in tail], [r[f"{k}_ms"] for r in tail]) for k in ("limited", "previous")}
    full_rows = [r for r in scaling if "full_ms" in r][-3:]
    slopes["full"] = loglog_slope([r["t"] for r in full_rows], [r["full_ms"] for r in full_rows])
    print("log-log slope of time in T over the last three lengths: "
          + ", ".join(f"{k} {v:.2f}" for k, v in slopes.items() if v is not None))
    record = {"threads": args.threads, "repeats": args.repeats, "load_avg": os.getloadavg(), "d": D, "heads": HEADS,
              "w": W, "rows": rows, "slopes": slopes}
    sys.path.insert(0, str(ROOT / "src"))
    from mmrepro.fileio import write_json_atomic

    write_json_atomic(args.out, record)


if __name__ == "__main__":
    main()
