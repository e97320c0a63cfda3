"""Thread policy on a shared machine: a Conformer training step, quiet and beside a competing CPU-bound process.

    python benchmarks/thread_policy.py                  # 3 repetitions x 6 steps per process, a few minutes
    python benchmarks/thread_policy.py --competitors 2 --repeats 5

Policies, each in a fresh process (OpenMP reads its settings when torch loads):
    torch default    no OMP_* variables: one thread per core, libgomp's spinning wait
    mmrepro          `mmrepro.threads.apply_thread_policy()` (what the stages do): threads = the CPU budget,
                     OMP_WAIT_POLICY=PASSIVE only when fewer CPUs are idle at start than the threads need
    always passive   threads = the CPU budget, OMP_WAIT_POLICY=PASSIVE whatever the load (the policy until
                     2026-12-01)
    1 thread         OMP_NUM_THREADS=1 (the old README advice for shared machines)
The step is the issue's size: 4 Conformer blocks, d 144, 4 heads, kernel 32, dropout 0.1, batch 8 x 250
frames, forward + backward + SGD. "competing" starts `--competitors` busy-loop processes (`while True: pass`)
before the policies run and kills them after. Repetitions are interleaved (quiet then competing, each policy
in turn); per process the median wall time of `--steps` steps after one warm-up is kept. Printed: the
medians over repetitions, the slowdown (competing / quiet, median of the per-repetition ratios), each
policy's quiet speed against torch's default, and its competing speed against torch's default on the quiet
machine (the step a user loses to the competitor). Results go to `benchmarks/results/thread_policy.json`.
Timings from a machine that other people's jobs share are noisy: quote the ratios, with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ("torch default", "mmrepro", "always passive", "1 thread")


def child(policy: str, steps: int) -> None:
    """One measurement process: apply `policy`, then time `steps` Conformer training steps."""
    sys.path.insert(0, str(ROOT / "src"))
    for key in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS"):
        os.environ.pop(key, None)
    if policy == "mmrepro":
        from mmrepro.threads import apply_thread_policy

        apply_thread_policy()
    elif policy == "always passive":
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    elif policy == "1 thread":
        os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    from mmrepro.models.conformer import ConformerConfig, ConformerEncoder

    torch.manual_seed(0)
    cfg = ConformerConfig(input_dim=144, d_model=144, num_layers=4, num_heads=4, conv_kernel=32, dropout=0.1,
                          input_layer="none")
    model = ConformerEncoder(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x, lengths = torch.randn(8, 250, 144), torch.full((8,), 250)

    def step() -> None:
        out, _ = model(x, lengths)
        out.square().mean().backward()
        opt.step()
        opt.zero_grad()

    step()  # warm-up
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    print(json.dumps({"threads": torch.get_num_threads(), "step_s": statistics.median(times),
                      "wait": os.environ.get("OMP_WAIT_POLICY", "default")}))


def measure(policy: str, steps: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", policy, "--steps", str(steps)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--competitors", type=int, default=1, help="busy-loop processes in the competing condition")
    ap.add_argument("--child", choices=POLICIES, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "thread_policy.json")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.steps)
        return
    runs: dict[str, dict[str, list[float]]] = {p: {"quiet": [], "competing": []} for p in POLICIES}
    threads: dict[str, int] = {}
    waits: dict[str, dict[str, str]] = {p: {} for p in POLICIES}  # policy -> condition -> OpenMP wait used
    loads = []
    for rep in range(args.repeats):
        for condition in ("quiet", "competing"):
            busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                    for _ in range(args.competitors if condition == "competing" else 0)]
            try:
                for policy in POLICIES:
                    loads.append(os.getloadavg()[0])
                    result = measure(policy, args.steps)
                    runs[policy][condition].append(result["step_s"])
                    threads[policy] = result["threads"]
                    waits[policy][condition] = result["wait"]
                    print(f"  rep {rep} {condition:<9} {policy:<14} {result['step_s']:.3f} s/step "
                          f"(wait {result['wait']})", flush=True)
            finally:
                for proc in busy:
                    proc.kill()
                    proc.wait()
    default_quiet = runs["torch default"]["quiet"]
    rows = []
    print(f"\n{'policy':<16}{'threads':>8}{'wait quiet/competing':>22}{'quiet s':>10}{'competing s':>13}"
          f"{'slowdown':>10}{'quiet vs default':>18}{'competing vs quiet default':>28}")
    for policy in POLICIES:
        quiet, busy = runs[policy]["quiet"], runs[policy]["competing"]
        wait = f"{waits[policy]['quiet']}/{waits[policy]['competing']}"
        row = {"policy": policy, "threads": threads[policy], "wait": wait, "quiet_s": statistics.median(quiet),
               "competing_s": statistics.median(busy),
               "slowdown": statistics.median(b / q for b, q in zip(busy, quiet, strict=True)),
               "quiet_vs_default": statistics.median(q / d for q, d in zip(quiet, default_quiet, strict=True)),
               "competing_vs_quiet_default": statistics.median(b / d for b, d in zip(busy, default_quiet, strict=True)),
               "quiet_runs": quiet, "competing_runs": busy}
        rows.append(row)
        print(f"{policy:<16}{row['threads']:>8}{wait:>22}{row['quiet_s']:>10.3f}{row['competing_s']:>13.3f}"
              f"{row['slowdown']:>9.2f}x{row['quiet_vs_default']:>17.2f}x{row['competing_vs_quiet_default']:>27.2f}x")
    print(f"load average (1 min) during the runs: {min(loads):.1f} .. {max(loads):.1f}; cpu_count {os.cpu_count()}")
    record = {"cpu_count": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "competitors": args.competitors,
              "steps": args.steps, "repeats": args.repeats, "load_avg_range": [min(loads), max(loads)], "rows": rows}
    sys.path.insert(0, str(ROOT / "src"))
    from mmrepro.fileio import write_json_atomic

    write_json_atomic(args.out, record)


if __name__ == "__main__":
    main()
