"""What a stage cost: `stage_cost(stage, paper)` records the stage process's wall and CPU time into
reports/compute/<paper>/<stage>.json, which the report shows per paper (time to prepare, train, evaluate).

Wall time is the process's age when the stage's work is done, read from /proc (so it includes starting Python
and importing torch, a good part of a smoke run), or the time since the block began where /proc is missing. The
work includes logging to MLflow (train logs as it trains; evaluate logs its results last, inside the block).
CPU time is user + system of the process and of the child processes it waited for (prepare's synthesis
workers and the `espeak-ng` / `flite` processes they run, the PTB tokenizer's JVM), so on a CPU machine
cpu_s / wall_s says how many cores the stage kept busy. METEOR's JVM is not counted: it runs in a server
shared by the stages (mmrepro.metrics.meteor_server), or without one as a child kept for the process's life,
so a captioner's evaluate shows less CPU than its scoring used. The record also names the device, torch's
thread count and OpenMP's wait policy
(`mmrepro.threads`), and the CPU (model, family and the widest vector extension: a 2-core VM may move to
another host, and on 2026-12-02 one Conformer step here took 1.5-1.75x as long as the day before): the figures are
only comparable between runs that agree on those.

The file is a DVC output of its own stage, not part of the outputs later stages depend on: prepare's data stays
byte-identical from run to run, so a repeated prepare does not retrain. A stage restored from DVC's run-cache
(or pulled) shows the cost of the run that made it. A training run resumed after a crash shows the attempt that
finished (`resumed` says when checkpoints were reused)."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mmrepro.fileio import write_json_atomic

__all__ = ["STAGES", "compute_path", "cpu_model", "process_age", "stage_cost"]

STAGES = ("prepare", "train", "evaluate")


def compute_path(paper: str, stage: str, reports: Path = Path("reports")) -> Path:
    return reports / "compute" / paper / f"{stage}.json"


def process_age(proc: Path = Path("/proc")) -> float | None:
    """Seconds since this process started, from /proc/self/stat's start time (clock ticks after boot) and
    /proc/uptime; None where they cannot be read."""
    try:
        # field 22 (starttime) counted after the command name, which is in parentheses and may hold spaces
        fields = (proc / "self" / "stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return float((proc / "uptime").read_text().split()[0]) - started
    except (OSError, ValueError, IndexError):
        return None


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """"AMD EPYC (family 25, model 1; avx2)": the first processor's model name, family and model numbers and
    its widest x86 vector extension; "unknown" where /proc/cpuinfo cannot be read."""
    try:
        first = cpuinfo.read_text().split("\n\n", 1)[0]
    except OSError:
        return "unknown"
    fields = dict(line.split(":", 1) for line in first.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    vector = next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), None)
    ids = ", ".join(f"{k.split()[-1]} {fields[k]}" for k in ("cpu family", "model") if k in fields)
    details = "; ".join(x for x in (ids, vector) if x)
    name = fields.get("model name", "unknown")
    return f"{name} ({details})" if details else name


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@contextmanager
def stage_cost(stage: str, paper: str, device: str = "cpu") -> Iterator[dict]:
    """Around a stage's work; on success writes reports/compute/<paper>/<stage>.json. Yields the record, to which
    the stage may add what it knows (e.g. `resumed`). Nothing is written when the block raises."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r} (one of {', '.join(STAGES)})")
    began = time.monotonic()
    record: dict = {"paper": paper, "stage": stage}
    yield record
    age = process_age()
    wall = age if age is not None else time.monotonic() - began
    import torch  # loaded by every stage that has work to time; imported here so this module stays light

    record.update({
        "wall_s": round(wall, 2), "cpu_s": round(_cpu_seconds(), 2), "device": device,
        "threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "cpu": cpu_model(),
    })
    write_json_atomic(compute_path(paper, stage), record)
