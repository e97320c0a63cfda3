"""RNN-T loss: time against T and peak memory beyond the logits, the function-merged loss
(`mmrepro.losses.rnnt.rnnt_loss`) beside the previous autograd implementation (`_reference_rnnt_loss`,
kept in tests/test_rnnt_loss_memory.py).

    python benchmarks/rnnt_loss.py            # CPU defaults, a few minutes on one thread
    python benchmarks/rnnt_loss.py --quick    # seconds: tiny settings (used by the tests)

Two parts, printed as tables and written to `benchmarks/results/rnnt_loss.json` (temp file, then rename):
 1. Scaling: forward + backward (torch.autograd.grad w.r.t. the logits) of both implementations for T in
    `--t` (default 200 ... 1000) at B=4, U=50, C=129, float32, full-length utterances; repetitions are
    interleaved (new, old, new, old, ...) after one warm-up each and the median is kept. Reported: ms of
    process CPU time per call (which other load on a shared machine disturbs less than wall time; wall time
    is in the JSON too), µs per lattice cell (B·T·U), and the fitted log-log exponent of time in T
    (1 = linear).
 2. Memory: peak live tensor bytes created by forward + backward (`LiveTensorBytes(exclude=[logits])`,
    deterministic, any device: every storage an aten op returns, counted until Python frees it; the
    returned gradient counts), beyond the logits, as bytes and as a multiple of the logits' bytes, at a few
    sizes, and extrapolated to the Conformer-L full profile (batch 32, T=613 frames = 24.5 s after 4x
    subsampling, U=200, C=1025, float32) by the multiple measured at that profile's U and C with B=1 and a
    short T (the multiple does not grow with B or T: everything but the chunk temporaries scales with B·T,
    and the chunks are capped, so for the new loss this is an upper bound).
Absolute times from a shared CPU are upper bounds; the ratios and exponents are what to quote. On CPU each
call's fresh logits-sized gradient costs a page fault per 4 KiB page (glibc returns large blocks to the
kernel), about a quarter of the new loss's time here, and whether old blocks get reused depends on what ran
before; `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (transparent huge pages) makes the numbers steadier. The
JSON records the faults per call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mmrepro.losses.rnnt import rnnt_loss  # noqa: E402
from mmrepro.metrics.efficiency import LiveTensorBytes, loglog_slope  # noqa: E402

CONFORMER_L_FULL = {"b": 32, "t": 613, "u": 200, "c": 1025}


def _reference():
    """The previous implementation, kept only in the tests (imported as the `tests` package it lives in)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.test_rnnt_loss_memory import _reference_rnnt_loss

    return _reference_rnnt_loss


def _inputs(b: int, t: int, u: int, c: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, u + 1, c, generator=g).requires_grad_(True)
    targets = torch.randint(1, c, (b, u), generator=g)
    return logits, targets, torch.full((b,), t), torch.full((b,), u)


def _fwd_bwd(fn, logits, targets, t_lens, u_lens) -> torch.Tensor:
    loss = fn(logits, targets, t_lens, u_lens)
    (grad,) = torch.autograd.grad(loss, logits)
    return grad


def scaling_part(impls: dict, ts: list[int], b: int, u: int, c: int, repeats: int) -> dict:
    rows = []
    for t in ts:
        args = _inputs(b, t, u, c)
        cpu: dict[str, list[float]] = {name: [] for name in impls}
        wall: dict[str, list[float]] = {name: [] for name in impls}
        for fn in impls.values():  # warm-up
            _fwd_bwd(fn, *args)
        faults = {name: 0 for name in impls}
        for _ in range(repeats):
            for name, fn in impls.items():
                f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                t0, c0 = time.perf_counter(), time.process_time()
                _fwd_bwd(fn, *args)
                cpu[name].append(time.process_time() - c0)
                wall[name].append(time.perf_counter() - t0)
                faults[name] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
        row: dict = {"t": t, "cells": b * t * u}
        for name in impls:
            ms = 1e3 * statistics.median(cpu[name])
            row[f"{name}_ms"] = round(ms, 3)
            row[f"{name}_us_per_cell"] = round(1e3 * ms / (b * t * u), 5)
            row[f"{name}_wall_ms"] = round(1e3 * statistics.median(wall[name]), 3)
            # minor page faults per call, per 4 KiB page of the logits (~1: the fresh gradient's pages)
            row[f"{name}_faults_per_logits_page"] = round(faults[name] / repeats / (args[0].numel() * 4 / 4096), 3)
        row["speedup"] = round(row["old_ms"] / row["new_ms"], 2)
        rows.append(row)
        print(f"  scaling T={t}: new {row['new_ms']:.1f} ms, old {row['old_ms']:.1f} ms", flush=True)
    out = {"b": b, "u": u, "c": c, "dtype": "float32", "repeats": repeats,
           "statistic": "median of process CPU time (wall time beside it), interleaved", "rows": rows}
    for name in impls:
        out[f"{name}_time_exponent"] = loglog_slope([r["t"] for r in rows], [r[f"{name}_ms"] for r in rows])
        out[f"{name}_wall_time_exponent"] = loglog_slope([r["t"] for r in rows], [r[f"{name}_wall_ms"] for r in rows])
    return out


def peak_beyond_logits(fn, b: int, t: int, u: int, c: int) -> tuple[int, int]:
    """(peak live bytes of forward + backward excluding the logits, logits bytes)."""
    args = _inputs(b, t, u, c)
    tracker = LiveTensorBytes(exclude=[args[0]])  # slices of the logits are not new memory
    with tracker:
        _fwd_bwd(fn, *args)
    return tracker.peak, args[0].numel() * args[0].element_size()


def memory_part(impls: dict, sizes: list[tuple[int, int, int, int]], profile_probe: tuple[int, int, int, int]) -> dict:
    rows = []
    for b, t, u, c in [*sizes, profile_probe]:
        row: dict = {"b": b, "t": t, "u": u, "c": c}
        for name, fn in impls.items():
            peak, lb = peak_beyond_logits(fn, b, t, u, c)
            row["logits_bytes"] = lb
            row[f"{name}_peak_bytes"] = peak
            row[f"{name}_x_logits"] = round(peak / lb, 4)
        rows.append(row)
        print(f"  memory {b}x{t}x{u + 1}x{c}: new {row['new_x_logits']:.3f}x, old {row['old_x_logits']:.3f}x "
              "the logits", flush=True)
    probe = rows[-1]
    full = dict(CONFORMER_L_FULL)
    full_bytes = full["b"] * full["t"] * (full["u"] + 1) * full["c"] * 4
    full.update({"logits_bytes": full_bytes, "probe": {k: probe[k] for k in "btuc"}})
    for name in impls:
        full[f"{name}_extra_bytes"] = round(probe[f"{name}_x_logits"] * full_bytes)
        full[f"{name}_x_logits"] = probe[f"{name}_x_logits"]
    return {"method": "LiveTensorBytes(exclude=[logits]) peak over forward + torch.autograd.grad, float32",
            "rows": rows[:-1], "conformer_l_probe": probe, "conformer_l_full_extrapolated": full}


def environment() -> dict:
    return {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "processor": platform.processor(), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads()}


def print_tables(res: dict) -> None:
    s = res["scaling"]
    print(f"\n(a) time, forward + backward, B={s['b']} U={s['u']} C={s['c']} {s['dtype']}, "
          f"median process CPU time of {s['repeats']} interleaved, {res['environment']['threads']} thread(s)")
    print("| T | cells B·T·U | new ms | old ms | new µs/cell | old µs/cell | old/new |")
    print("|---|---|---|---|---|---|---|")
    for r in s["rows"]:
        print(f"| {r['t']} | {r['cells']} | {r['new_ms']:.1f} | {r['old_ms']:.1f} | {r['new_us_per_cell']:.4f} | "
              f"{r['old_us_per_cell']:.4f} | {r['speedup']:.2f} |")
    print(f"fitted exponent of time in T: new {s['new_time_exponent']}, old {s['old_time_exponent']} (CPU time); "
          f"wall time: new {s['new_wall_time_exponent']}, old {s['old_wall_time_exponent']}")
    m = res["memory"]
    print("\n(b) peak live tensor bytes of forward + backward beyond the logits (the gradient included)")
    print("| B x T x (U+1) x C | logits MiB | new MiB | new x logits | old MiB | old x logits |")
    print("|---|---|---|---|---|---|")
    for r in [*m["rows"], m["conformer_l_probe"]]:
        print(f"| {r['b']} x {r['t']} x {r['u'] + 1} x {r['c']} | {r['logits_bytes'] / 2**20:.1f} | "
              f"{r['new_peak_bytes'] / 2**20:.1f} | {r['new_x_logits']:.3f} | {r['old_peak_bytes'] / 2**20:.1f} | "
              f"{r['old_x_logits']:.3f} |")
    f = m["conformer_l_full_extrapolated"]
    print(f"Conformer-L full profile (B={f['b']}, T={f['t']}, U={f['u']}, C={f['c']}, float32), extrapolated by "
          f"the multiple at the last row: logits {f['logits_bytes'] / 1e9:.2f} GB; loss extra peak new "
          f"{f['new_extra_bytes'] / 1e9:.2f} GB ({f['new_x_logits']:.3f}x), old {f['old_extra_bytes'] / 1e9:.2f} GB "
          f"({f['old_x_logits']:.3f}x)")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny settings, seconds (for tests)")
    ap.add_argument("--t", type=int, nargs="+", default=None, help="frames T (default 200 400 600 800 1000)")
    ap.add_argument("--b", type=int, default=4)
    ap.add_argument("--u", type=int, default=50)
    ap.add_argument("--c", type=int, default=129)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (1: least disturbed by other load)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "rnnt_loss.json")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    impls = {"new": rnnt_loss, "old": _reference()}
    ts = a.t or [200, 400, 600, 800, 1000]
    sizes = [(2, 100, 30, 257), (4, 200, 50, 129), (2, 200, 100, 513)]
    probe = (1, 40, 200, 1025)
    if a.quick:
        ts = a.t or [20, 40, 80]
        a.b, a.u, a.c, a.repeats = 2, 8, 17, 3
        sizes, probe = [(2, 30, 8, 33)], (1, 4, 200, 1025)
    res: dict = {"benchmark": "rnnt_loss", "quick": a.quick,
                 "environment": {**environment(), "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES", "")},
                 "note": "CPU shared with other work: absolute times are upper bounds"}
    res["scaling"] = scaling_part(impls, ts, a.b, a.u, a.c, a.repeats)
    res["memory"] = memory_part(impls, sizes, probe)
    print_tables(res)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_name(a.out.name + ".tmp")
    tmp.write_text(json.dumps(res, indent=1) + "\n")
    os.replace(tmp, a.out)
    print(f"\nwrote {a.out}")
    return res


if __name__ == "__main__":
    main()
