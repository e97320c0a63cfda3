"""Efficiency claims of Fast Conformer (Rekesh et al. 2023, https://arxiv.org/abs/2305.05084), reproduced.

    python benchmarks/efficiency.py                 # CPU defaults, a few minutes on 2 cores
    python benchmarks/efficiency.py --quick         # seconds: tiny settings (used by the tests)
    python benchmarks/efficiency.py --device cuda --batch 128 --minutes 1 2 4 8 16 32 --scaling-layers 17

Three parts, printed as tables and written to `reports/efficiency.json` (temp file, then rename):
 1. GMACs of the Conformer-L and Fast-Conformer-L encoders (multiply-accumulates = FLOPs / 2 from
    `torch.utils.flop_counter.FlopCounterMode`, on the meta device, batch 1) for one utterance of
    `--gmacs-seconds` (30 s = 3001 frames of 10 ms reproduces the paper's 143.2 vs 48.7 GMACs; 10 and
    20 s are listed too). Published ratio 2.94x. The Conformer-L baseline is NeMo's (subsampling convs
    with padding 1, `subsampling_padding=1`), which the paper measured; the valid-conv variant that
    reproduces Gulati et al.'s parameter counts is listed beside it.
 2. Encoder throughput ratio Conformer-L (NeMo baseline) / Fast-Conformer-L on a batch of `--clip-seconds` (20 s)
    clips, both timed side by side in this process, interleaved, best of `--repeats` (paper: 2.8x); on
    CPU the ratio is of process CPU time, which other load on a shared machine disturbs far less than
    wall time (both are recorded).
 3. Peak memory and time against audio length (`--minutes`, 1 minute upward) for the Fast Conformer
    blocks with full vs limited-context attention (w = `--context` frames + one global token), on
    already-subsampled input (B=1, T/8 frames of d=512) so the quadratic term is the attention's,
    not the front end's. Each point runs in a fresh process. Peak memory is measured two ways: peak live
    tensor bytes of the forward (`LiveTensorBytes`, deterministic, any device; the exponents use it), and
    the process's peak (growth of the resident-set high-water mark VmHWM, reset through
    /proc/self/clear_refs, on CPU; `torch.cuda.max_memory_allocated` growth on CUDA). Full attention stops
    at `--full-max-minutes` on CPU (4: about 2 GB at 1 layer) while limited context goes on. The fitted
    log-log slope is the growth exponent (1 = linear, 2 = quadratic); time is CPU time on CPU, wall time
    on CUDA.
Absolute times from a shared CPU are upper bounds; quote the ratios, and absolute times only from a GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mmrepro.metrics.efficiency import LiveTensorBytes, loglog_slope, encoder_gmacs, frames
from mmrepro.models.conformer import ConformerConfig, ConformerEncoder
from mmrepro.models.fast_conformer import FastConformerConfig, FastConformerEncoder

PUBLISHED = {"conformer_l_gmacs": 143.2, "fast_conformer_l_gmacs": 48.7, "gmacs_ratio": 2.94, "throughput_ratio": 2.8}


def gmacs_part(seconds: list[float], main_seconds: float) -> dict:
    """Conformer-L as the Fast Conformer paper's baseline (NeMo "striding" subsampling, padding 1) and with
    the valid-conv subsampling of our Table-1 parameter counts; Fast-Conformer-L full and limited."""
    with torch.device("meta"):
        conf = ConformerEncoder(ConformerConfig.preset("L", subsampling_padding=1))
        conf_valid = ConformerEncoder(ConformerConfig.preset("L"))
        fast = FastConformerEncoder(FastConformerConfig.preset("L"))
        fast_lim = FastConformerEncoder(FastConformerConfig.preset("L", attention="limited"))
    rows = []
    for s in sorted({*seconds, main_seconds}):
        n = frames(s)
        c, cv = encoder_gmacs(conf, n), encoder_gmacs(conf_valid, n)
        f, fl = encoder_gmacs(fast, n), encoder_gmacs(fast_lim, n)
        rows.append({"seconds": s, "frames": n, "conformer_l": round(c, 2), "conformer_l_valid_subsampling":
                     round(cv, 2), "fast_conformer_l": round(f, 2), "fast_conformer_l_limited": round(fl, 2),
                     "ratio": round(c / f, 3), "ratio_valid_subsampling": round(cv / f, 3)})
    main = next(r for r in rows if r["seconds"] == main_seconds)
    return {"input_seconds": main_seconds, "input_frames": main["frames"], "batch": 1,
            "counter": "torch.utils.flop_counter.FlopCounterMode, MACs = FLOPs / 2, encoder only",
            "conformer_l_config": "ConformerConfig.preset('L', subsampling_padding=1) (NeMo striding baseline)",
            "conformer_l": main["conformer_l"], "fast_conformer_l": main["fast_conformer_l"],
            "ratio": main["ratio"], "ratio_valid_subsampling": main["ratio_valid_subsampling"],
            "published": {k: PUBLISHED[k] for k in ("conformer_l_gmacs", "fast_conformer_l_gmacs", "gmacs_ratio")},
            "by_length": rows}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def throughput_part(device: str, batch: int, clip_seconds: float, repeats: int, layers: int | None,
                    precision: str = "fp32") -> dict:
    torch.manual_seed(0)
    over = {} if layers is None else {"num_layers": layers}
    models = {
        "conformer_l": ConformerEncoder(ConformerConfig.preset("L", subsampling_padding=1, **over)).to(device).eval(),
        "fast_conformer_l": FastConformerEncoder(FastConformerConfig.preset("L", **over)).to(device).eval(),
    }
    n = frames(clip_seconds)
    x = torch.randn(batch, n, 80, device=device)
    lengths = torch.full((batch,), n, device=device)
    wall = {k: [] for k in models}
    cpu = {k: [] for k in models}
    bf16 = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")
    with torch.no_grad(), bf16:
        for m in models.values():  # warm-up
            m(x, lengths)
        for _ in range(repeats):  # interleaved, side by side
            for k, m in models.items():
                _sync(device)
                t0, c0 = time.perf_counter(), time.process_time()
                m(x, lengths)
                _sync(device)
                wall[k].append(time.perf_counter() - t0)
                cpu[k].append(time.process_time() - c0)
    best = {k: min(v) for k, v in wall.items()}
    best_cpu = {k: min(v) for k, v in cpu.items()}
    audio = batch * clip_seconds
    on_cpu = not device.startswith("cuda")
    timed = best_cpu if on_cpu else best
    return {"device": device, "batch": batch, "clip_seconds": clip_seconds, "repeats": repeats,
            "layers": layers or "paper (17)", "threads": torch.get_num_threads(), "precision": precision,
            "timing": "best of repeats; on CPU the ratio uses process CPU time (robust to other load)",
            "wall_seconds_per_batch": {k: round(v, 4) for k, v in best.items()},
            "cpu_seconds_per_batch": {k: round(v, 4) for k, v in best_cpu.items()},
            "audio_seconds_per_second": {k: round(audio / v, 2) for k, v in timed.items()},
            "wall_ratio": round(best["conformer_l"] / best["fast_conformer_l"], 3),
            "ratio": round(timed["conformer_l"] / timed["fast_conformer_l"], 3),
            "published_ratio": PUBLISHED["throughput_ratio"]}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_cpu_peak() -> int:
    """Reset the process's resident-set high-water mark (Linux: write 5 to /proc/self/clear_refs) and
    return the current RSS in bytes; falls back to ru_maxrss (not resettable) elsewhere."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_kib("VmRSS") * 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cpu_peak() -> int:
    try:
        return _status_kib("VmHWM") * 1024
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _scaling_point(device: str, attention: str, minutes: float, layers: int, context: int, d_model: int,
                   heads: int, repeats: int, queue) -> None:
    """Runs in a fresh process: peak memory and best-of-`repeats` time of the Fast Conformer blocks."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    torch.manual_seed(0)
    cfg = FastConformerConfig.preset("L", attention=attention, att_context=context, num_layers=layers,
                                     d_model=d_model, num_heads=heads)
    body = ConformerEncoder(ConformerConfig(**{**cfg.body().__dict__, "input_layer": "none",
                                               "input_dim": d_model})).to(device).eval()
    t = math.ceil(frames(minutes * 60) / 8)  # frames after 8x subsampling
    x = torch.randn(1, t, d_model, device=device)
    lengths = torch.tensor([t], device=device)
    with torch.no_grad():
        body(x[:, : min(t, 64)], lengths.clamp(max=64))  # warm-up (lazy init) on a short input
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _reset_cpu_peak()
    best, best_cpu = float("inf"), float("inf")
    try:
        with torch.no_grad():
            for _ in range(repeats):
                _sync(device)
                t0, c0 = time.perf_counter(), time.process_time()
                body(x, lengths)
                _sync(device)
                best = min(best, time.perf_counter() - t0)
                best_cpu = min(best_cpu, time.process_time() - c0)
    except torch.OutOfMemoryError:
        queue.put({"oom": True})
        return
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = _cpu_peak() - base
    tracker = LiveTensorBytes()
    with torch.no_grad(), tracker:
        body(x, lengths)
    on_cpu = not device.startswith("cuda")
    queue.put({"frames": t, "seconds": best_cpu if on_cpu else best, "wall_seconds": best,
               "cpu_seconds": best_cpu, "peak_mib": tracker.peak / 2**20,
               "process_peak_mib": peak / 2**20})


def scaling_part(device: str, minutes: list[float], layers: int, context: int, d_model: int, heads: int,
                 repeats: int, full_max_minutes: float | None = None) -> dict:
    ctx = mp.get_context("spawn")
    out: dict = {"device": device, "layers": layers, "d_model": d_model, "heads": heads, "context": context,
                 "input": "already-subsampled frames (B=1, T/8, d): Fast Conformer blocks only", "rows": []}
    for attention in ("rel_pos", "limited"):
        for m in minutes:
            if attention == "rel_pos" and full_max_minutes is not None and m > full_max_minutes:
                out["rows"].append({"attention": "full", "minutes": m, "skipped": "> --full-max-minutes"})
                continue
            q = ctx.Queue()
            p = ctx.Process(target=_scaling_point, args=(device, attention, m, layers, context, d_model, heads,
                                                        repeats, q))
            p.start()
            p.join()
            res = q.get() if not q.empty() else {"failed": f"exit code {p.exitcode}"}
            out["rows"].append({"attention": "full" if attention == "rel_pos" else "limited", "minutes": m, **res})
            if "seconds" not in res:
                break  # longer inputs will not fit either
    for name in ("full", "limited"):
        rows = [r for r in out["rows"] if r["attention"] == name and "seconds" in r]
        xs = [r["minutes"] for r in rows]
        out[f"{name}_time_exponent"] = loglog_slope(xs, [r["seconds"] for r in rows])
        out[f"{name}_memory_exponent"] = loglog_slope(xs, [r["peak_mib"] for r in rows])
        # the local slope over the two longest lengths, where the leading term dominates
        out[f"{name}_time_exponent_last2"] = loglog_slope(xs[-2:], [r["seconds"] for r in rows][-2:])
        out[f"{name}_memory_exponent_last2"] = loglog_slope(xs[-2:], [r["peak_mib"] for r in rows][-2:])
        out[f"{name}_process_memory_exponent"] = loglog_slope(xs, [r["process_peak_mib"] for r in rows])
    return out


def environment(device: str) -> dict:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, check=False).stdout.strip() or None
    except OSError:
        sha = None
    env = {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
           "cpu_threads": torch.get_num_threads(), "device": device, "git_sha": sha}
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def print_tables(res: dict) -> None:
    g = res["gmacs"]
    print("\n## Encoder GMACs (batch 1; published 143.2 vs 48.7 = 2.94x at 30 s)")
    print("| seconds | frames | Conformer-L (NeMo) | Conformer-L (valid convs) | Fast-Conformer-L "
          "| FC-L limited | ratio | ratio (valid convs) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in g["by_length"]:
        print(f"| {r['seconds']} | {r['frames']} | {r['conformer_l']} | {r['conformer_l_valid_subsampling']} | "
              f"{r['fast_conformer_l']} | {r['fast_conformer_l_limited']} | {r['ratio']} | "
              f"{r['ratio_valid_subsampling']} |")
    if "throughput" in res:
        t = res["throughput"]
        print(f"\n## Encoder throughput, batch {t['batch']} x {t['clip_seconds']} s on {t['device']}, {t['precision']} "
              f"(layers: {t['layers']}, best of {t['repeats']}; published ratio 2.8x)")
        print("| encoder | wall s / batch | CPU s / batch | audio s / s |")
        print("|---|---:|---:|---:|")
        for k, v in t["wall_seconds_per_batch"].items():
            print(f"| {k} | {v} | {t['cpu_seconds_per_batch'][k]} | {t['audio_seconds_per_second'][k]} |")
        print(f"ratio Conformer-L time / Fast-Conformer-L time: {t['ratio']}x (wall: {t['wall_ratio']}x)")
    if "scaling" in res:
        s = res["scaling"]
        print(f"\n## Time and peak memory vs length: Fast Conformer blocks ({s['layers']} layer(s), d={s['d_model']}),"
              f" full vs limited (w={s['context']} + 1 global) on {s['device']}")
        print("| attention | minutes | frames | seconds (CPU time on CPU) | wall s | peak tensor MiB | process peak MiB |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for r in s["rows"]:
            if "seconds" in r:
                print(f"| {r['attention']} | {r['minutes']} | {r['frames']} | {r['seconds']:.4f} | "
                      f"{r['wall_seconds']:.4f} | {r['peak_mib']:.1f} | {r['process_peak_mib']:.1f} |")
            else:
                print(f"| {r['attention']} | {r['minutes']} | - | {r.get('skipped', r)} | - | - | - |")
        for name in ("full", "limited"):
            print(f"{name}: time exponent {s[f'{name}_time_exponent']} (last two: {s[f'{name}_time_exponent_last2']}),"
                  f" tensor-memory exponent {s[f'{name}_memory_exponent']} (last two: "
                  f"{s[f'{name}_memory_exponent_last2']}), process-memory exponent "
                  f"{s[f'{name}_process_memory_exponent']}")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="tiny settings, seconds (for tests)")
    ap.add_argument("--gmacs-seconds", type=float, default=30.0)
    ap.add_argument("--batch", type=int, default=None,
                    help="throughput batch (default 1 on CPU, 128 on CUDA as the published A100 figures)")
    ap.add_argument("--clip-seconds", type=float, default=20.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="throughput forward in fp32 or under bf16 autocast (the trainer's CUDA precision)")
    ap.add_argument("--throughput-layers", type=int, default=None, help="encoder depth for throughput (default 17)")
    ap.add_argument("--minutes", type=float, nargs="+", default=None, help="lengths in minutes (default 1 2 4; more on a GPU)")
    ap.add_argument("--scaling-layers", type=int, default=1)
    ap.add_argument("--full-max-minutes", type=float, default=None,
                    help="longest input for full attention (default 4 on CPU, unlimited on CUDA)")
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (1: least disturbed by other load)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["throughput", "scaling"])
    ap.add_argument("--out", type=Path, default=Path("reports/efficiency.json"))
    a = ap.parse_args(argv)
    if a.device.startswith("cuda") and not torch.cuda.is_available():  # one line, not a CUDA traceback
        print(f"--device {a.device}: no CUDA device on this machine; use --device cpu", file=sys.stderr)
        sys.exit(2)
    torch.set_num_threads(a.threads)
    os.environ["BENCH_THREADS"] = str(a.threads)
    cuda = a.device.startswith("cuda")
    batch = a.batch or (128 if cuda else 1)
    minutes = a.minutes or ([1, 2, 4, 8, 16] if not cuda else [1, 2, 4, 8, 16, 32, 64])
    full_max = a.full_max_minutes if a.full_max_minutes is not None else (None if cuda else 4.0)
    d_model, heads, tp_layers, clip = 512, 8, a.throughput_layers, a.clip_seconds
    if a.quick:
        batch, clip, tp_layers, a.repeats = 1, 2.0, 1, 1
        minutes, d_model, heads, a.context = a.minutes or [0.25, 0.5, 1.0], 64, 4, 16
    res: dict = {"paper": "fast_conformer", "benchmark": "efficiency", "quick": a.quick,
                 "environment": environment(a.device)}
    res["gmacs"] = gmacs_part([10.0] if a.quick else [10.0, 20.0, 30.0], a.gmacs_seconds)
    if "throughput" not in a.skip:
        res["throughput"] = throughput_part(a.device, batch, clip, a.repeats, tp_layers, a.precision)
    if "scaling" not in a.skip:
        res["scaling"] = scaling_part(a.device, minutes, a.scaling_layers, a.context, d_model, heads,
                                      max(2, a.repeats), full_max)
    print_tables(res)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(res, indent=2))
    tmp.replace(a.out)
    print(f"\nwrote {a.out}")
    return res


if __name__ == "__main__":
    main()
