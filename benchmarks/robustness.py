"""Robustness of the cpu results over training seeds and thread counts: a seeds x threads table per paper.

    python benchmarks/robustness.py --papers conformer --seeds 0 1 2 --threads 1 2
    python benchmarks/robustness.py --papers starcapnet --seeds 0 1 --threads 1 --cores 2

Each (thread count, training seed) is one run: a clone of `--commit` (default: this checkout's HEAD at start;
`--workdir/t<t>-s<seed>`, the venv linked) runs `dvc repro` of the papers on the cpu profile with `seeds: [<seed>]`
(the data seed stays 0) under OMP_NUM_THREADS=<t>, which changes floating-point reduction order and so the
numbers. Runs start while their threads fit the free cores (`--cores`, default all): two 1-thread runs go side by
side, a 2-thread run alone on 2 cores, so no run oversubscribes the machine. The clones of one thread count share
a DVC cache, so prepare (the same for every seed) runs once and the other clones restore it from DVC's run-cache;
each thread count has its own cache, because the run-cache does not see OMP_NUM_THREADS and would hand a 2-thread
run the 1-thread run of the same seed. A clone that
exists is reused: `dvc repro` then reruns only what is missing, so a killed run resumes. Results go to
`benchmarks/results/robustness.json`, one grid per (paper, thread count): a grid at 2 threads adds to the stored
1-thread grid of the same paper, and replaces its stored 2-thread grid. Printed per paper, over every stored
thread count: each headline metric per (threads, seed), mean +- std per thread count and over all runs, and for
a metric with a stated cpu target whether it holds in every run and on each thread count's mean ("a target met
only in some runs is not met").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# paper -> headline rows (variant, metric, dataset or None = the first row of that variant and metric,
# target: (">=" | "<=", value) or None where the cpu profile states none). The targets are the ones the issues
# that built each paper set for its cpu profile (issues 2-6 and 15).
HEADLINES: dict[str, list[tuple[str, str, str | None, tuple[str, float] | None]]] = {
    "conformer": [("transducer", "wer", "tts-speech", ("<=", 15.0))],
    "fast_conformer": [("transducer", "wer", "tts-speech", None)],
    "vsr_conformer": [("lp", "wer", None, ("<=", 30.0)), ("conv", "wer", None, None)],
    "vqvae": [("recon", "psnr_db", None, (">=", 25.0)),
              ("text2image", "gen_acc_shape_seen_pairs", None, (">=", 0.8)),
              ("text2image", "gen_acc_shape_heldout_pairs", None, (">=", 0.5)),
              ("text2image", "gen_acc_all_attributes_seen_pairs", None, (">=", 0.6))],
    "starcapnet": [("main", "count_accuracy", None, (">=", 0.95))],
    "geocapnet": [("main", "exact_match", None, (">=", 0.90))],
    "attention_captioner": [("main", "cider_d", "shapes-scenes", (">=", 150.0)),
                            ("main", "bleu4", "shapes-scenes", None)],
    "karpathy_alignment": [("align", "i2t_r1", None, (">=", 50.0))],
    "sympow": [("softmax", "loss_nats_ctx1x", None, None)],
}


def run_clone(workdir: Path, threads: int, seed: int, papers: list[str], profile: str, head: str) -> Path:
    """Clone commit `head` (or reuse the clone), set the params, run `dvc repro`; returns the clone. Log: repro.log."""
    clone = workdir / f"t{threads}-s{seed}"
    if not clone.exists():
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        subprocess.run(["git", "checkout", "-q", head], cwd=clone, check=True)
        (clone / ".venv").symlink_to(ROOT / ".venv")
        # one DVC cache per thread count: DVC's run-cache keys a stage on its deps and params, not on the
        # environment, so a run at 2 threads would otherwise restore the 1-thread run of the same seed
        subprocess.run([str(ROOT / ".venv" / "bin" / "dvc"), "cache", "dir", "--local",
                        str(workdir / f"dvc-cache-t{threads}")], cwd=clone, check=True)
    have = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True, check=True).stdout
    if have.strip() != head:
        raise SystemExit(f"{clone} is at {have.strip()[:12]}, the grid at {head[:12]}: remove it or use another --workdir")
    params = clone / "params.yaml"
    lines = []
    for line in params.read_text().splitlines():
        key = line.split(":", 1)[0]
        if key == "profile":
            line = f"profile: {profile}"
        elif key == "run":
            line = f"run: [{', '.join(papers)}]"
        elif key == "seeds":
            line = f"seeds: [{seed}]"
        lines.append(line)
    params.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PATH": f"{clone / '.venv' / 'bin'}:{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)  # each clone's own SQLite store
    start = time.monotonic()
    print(f"[{clone.name}] dvc repro (log: {clone / 'repro.log'})", flush=True)
    with open(clone / "repro.log", "ab") as log:
        rc = subprocess.run([str(clone / ".venv" / "bin" / "dvc"), "repro"], cwd=clone, env=env, stdout=log,
                            stderr=subprocess.STDOUT).returncode
    print(f"[{clone.name}] rc {rc} after {(time.monotonic() - start) / 60:.1f} min", flush=True)
    if rc != 0:
        raise SystemExit(f"dvc repro failed in {clone} (rc {rc}); see {clone / 'repro.log'}")
    return clone


class Cores:
    """Start a run only while its threads fit the free cores (a run wider than the machine runs alone)."""

    def __init__(self, total: int) -> None:
        self.free, self.total, self.cond = total, total, threading.Condition()

    def run(self, threads: int, fn):
        need = min(threads, self.total)
        with self.cond:
            self.cond.wait_for(lambda: self.free >= need)
            self.free -= need
        try:
            return fn()
        finally:
            with self.cond:
                self.free += need
                self.cond.notify_all()


def headline_values(clone: Path, paper: str) -> dict[str, dict[str, float | None]]:
    """metric label -> seed -> value, from the paper's provenance file."""
    rows = json.loads((clone / "reports" / "provenance" / f"{paper}.json").read_text())["results"]
    out = {}
    for variant, metric, dataset, _ in HEADLINES[paper]:
        match = [r for r in rows if r["variant"] == variant and r["metric"] == metric
                 and (dataset is None or r["dataset"] == dataset)]
        if not match:
            raise SystemExit(f"{paper}: no result {variant}/{metric} ({dataset or 'any dataset'}) in {clone}")
        out[f"{variant}/{metric}"] = match[0]["per_seed"]
    return out


def holds(value: float, target: tuple[str, float]) -> bool:
    op, bound = target
    return value >= bound if op == ">=" else value <= bound


def summarise(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4g}"
    return f"{statistics.fmean(values):.4g} +- {statistics.stdev(values):.2g}"


def merge_grid(entry: dict | None, paper: str, threads: list[int], grid_info: dict,
               new: dict[str, dict[str, dict[str, float]]]) -> dict:
    """A paper's stored entry with a new grid merged in: `new` is metric label -> thread count -> seed -> value.
    The new thread counts replace the stored ones, the others stay; means, spreads and verdicts are recomputed
    over every stored run ("a target met only in some runs is not met")."""
    grids = dict((entry or {}).get("grids", {}))
    grids.update({str(t): grid_info for t in threads})
    metrics = {}
    for variant, metric, _, target in HEADLINES[paper]:
        label = f"{variant}/{metric}"
        per = dict((entry or {}).get("metrics", {}).get(label, {}).get("per_threads_seed", {}))
        per.update(new[label])
        per = dict(sorted(per.items(), key=lambda kv: int(kv[0])))
        every = [v for by_seed in per.values() for v in by_seed.values()]
        verdict = "none stated"
        if target is not None:
            in_all = all(holds(v, target) for v in every)
            on_means = all(holds(statistics.fmean(by_seed.values()), target) for by_seed in per.values())
            verdict = (f"{target[0]} {target[1]:g}: {'met in every run' if in_all else 'NOT met in every run'}"
                       f"; {'met' if on_means else 'NOT met'} on each thread count's mean")
        metrics[label] = {"per_threads_seed": per, "mean": statistics.fmean(every),
                          "std": statistics.stdev(every) if len(every) > 1 else None,
                          "target": list(target) if target else None, "verdict": verdict}
    return {"grids": dict(sorted(grids.items(), key=lambda kv: int(kv[0]))), "metrics": metrics}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--papers", nargs="+", choices=sorted(HEADLINES), required=True)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--profile", default="cpu", choices=["smoke", "cpu"], help="smoke: try the script in seconds")
    ap.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)), help="cores the runs may share")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/mmrepro-robustness"))
    ap.add_argument("--commit", default="HEAD", help="the commit every run checks out (resume a grid at its commit)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "robustness.json")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    # every run at the commit checked out now, even when the checkout moves on while the grid runs
    commit = subprocess.run(["git", "rev-parse", args.commit], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    cores = Cores(args.cores)
    units = sorted(((t, s) for t in args.threads for s in args.seeds), key=lambda u: u[0])  # narrow runs pair up
    with ThreadPoolExecutor(len(units)) as pool:
        futures = {u: pool.submit(cores.run, u[0], lambda u=u: run_clone(args.workdir, u[0], u[1], args.papers,
                                                                               args.profile, commit))
                   for u in units}
        clones = {u: f.result() for u, f in futures.items()}
    # one entry per paper, and within it one grid per thread count: a grid of other papers or of another thread
    # count adds to the file; the grid of the same paper and thread count replaces the stored one
    record = json.loads(args.out.read_text()) if args.out.exists() else {}
    record.setdefault("papers", {})
    grid_info = {"profile": args.profile, "commit": commit, "seeds": args.seeds, "load_avg_at_end": os.getloadavg()}
    for paper in args.papers:
        values = {u: headline_values(clone, paper) for u, clone in clones.items()}
        new = {f"{v}/{m}": {str(t): {str(s): values[(t, s)][f"{v}/{m}"][str(s)] for s in args.seeds}
                            for t in args.threads} for v, m, _, _ in HEADLINES[paper]}
        entry = record["papers"][paper] = merge_grid(record["papers"].get(paper), paper, args.threads, grid_info, new)
        print(f"\n{paper} (every stored thread count: {', '.join(entry['grids'])})")
        for label, metric in entry["metrics"].items():
            print(label)
            for t, by_seed in metric["per_threads_seed"].items():
                print(f"  {t} thread(s): " + "  ".join(f"s{s} {v:.4g}" for s, v in by_seed.items())
                      + f"   mean {summarise(list(by_seed.values()))}")
            every = [v for by_seed in metric["per_threads_seed"].values() for v in by_seed.values()]
            print(f"  all runs: mean {summarise(every)}; {metric['verdict']}")
    sys.path.insert(0, str(ROOT / "src"))
    from mmrepro.fileio import write_json_atomic

    write_json_atomic(args.out, record)


if __name__ == "__main__":
    main()
