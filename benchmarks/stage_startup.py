"""Stage start-up cost: CPU seconds a DVC stage process spends before its body starts working.

    python benchmarks/stage_startup.py                       # every stage x every paper, 3 repetitions
    python benchmarks/stage_startup.py --papers conformer --stages train --repeats 5
    python benchmarks/stage_startup.py --ref /path/to/other/checkout   # the same table for a second checkout

Each measurement is a fresh `python` process (OMP_NUM_THREADS=1, run in the checkout's root as DVC runs
stages) that does exactly what `stages/<stage>.py <paper>` does up to its body: imports the stage script
(without running its `__main__` block), loads and validates params.yaml and builds the paper. The cost is
the child's user + system CPU time (`resource.getrusage(RUSAGE_CHILDREN)`), which another load on a shared
machine disturbs less than wall time; the median over the repetitions is kept. With `--ref`, the two
checkouts are measured interleaved (ours, ref, ours, ref, ...) and the ratio is printed beside them. The
table also names the heavy packages each start-up imported (mlflow, torchvision, matplotlib, dvc, ...).
Results go to `benchmarks/results/stage_startup.json` (temp file, then rename).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("prepare", "train", "evaluate")
PAPERS = ("starcapnet", "conformer", "fast_conformer", "sympow", "vqvae", "vsr_conformer", "geocapnet",
          "attention_captioner", "karpathy_alignment")
HEAVY = ("mlflow", "torchvision", "matplotlib", "dvc", "pycocoevalcap", "pandas", "skimage", "scipy", "jiwer",
         "torch._dynamo", "torch.utils.flop_counter")

# What stages/<stage>.py <paper> runs before its body; prints the heavy modules it imported.
PROBE = """
import runpy, sys, json
sys.argv = [{script!r}, {paper!r}]
runpy.run_path({script!r}, run_name="startup_probe")
from mmrepro.config import dataset_settings, load_params, paper_config
from mmrepro.papers import get_paper
params = load_params("params.yaml")
get_paper({paper!r}, dataset_settings(params)); paper_config(params, {paper!r})
print(json.dumps([m for m in {heavy!r} if m in sys.modules]))
"""


def startup(checkout: Path, stage: str, paper: str) -> tuple[float, list[str]]:
    """CPU seconds of one fresh stage start-up in `checkout`, and the heavy modules it imported."""
    script = str(checkout / "stages" / f"{stage}.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(checkout / "src")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, "-c", PROBE.format(script=script, paper=paper, heavy=HEAVY)],
                         cwd=checkout, env=env, capture_output=True, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    ap.add_argument("--papers", nargs="+", default=list(PAPERS), choices=PAPERS)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ref", type=Path, help="a second checkout (e.g. a worktree of main) measured alongside")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "stage_startup.json")
    args = ap.parse_args()
    checkouts = {"ours": ROOT} | ({"ref": args.ref.resolve()} if args.ref else {})
    rows = []
    header = f"{'stage':<9}{'paper':<21}" + "".join(f"{k + ' CPU s':>12}" for k in checkouts)
    header += f"{'ratio':>8}  heavy imports (ours)" if args.ref else "  heavy imports"
    print(header)
    for stage in args.stages:
        for paper in args.papers:
            times: dict[str, list[float]] = {k: [] for k in checkouts}
            heavy: dict[str, list[str]] = {}
            for _ in range(args.repeats):  # interleaved: ours, ref, ours, ref, ...
                for key, checkout in checkouts.items():
                    cpu, heavy[key] = startup(checkout, stage, paper)
                    times[key].append(cpu)
            row = {"stage": stage, "paper": paper, **{f"{k}_cpu_s": statistics.median(v) for k, v in times.items()},
                   **{f"{k}_heavy": heavy[k] for k in checkouts}}
            line = f"{stage:<9}{paper:<21}" + "".join(f"{row[f'{k}_cpu_s']:>12.2f}" for k in checkouts)
            if args.ref:
                row["ratio"] = statistics.median(o / r for o, r in zip(times["ours"], times["ref"], strict=True))
                line += f"{row['ratio']:>8.2f}"
            print(f"{line}  {', '.join(heavy['ours']) or '-'}", flush=True)
            rows.append(row)
    for key in checkouts:
        print(f"total CPU s ({key}, sum of medians): {sum(r[f'{key}_cpu_s'] for r in rows):.1f}")
    record = {"python": sys.version.split()[0], "cpu_count": os.cpu_count(), "load_avg": os.getloadavg(),
              "repeats": args.repeats, "rows": rows}
    sys.path.insert(0, str(ROOT / "src"))
    from mmrepro.fileio import write_json_atomic

    write_json_atomic(args.out, record)


if __name__ == "__main__":
    main()
