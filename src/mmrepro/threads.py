"""CPU thread policy of the stages: how many threads torch uses and how OpenMP's idle threads wait.

torch's default on CPU is one OpenMP thread per core with libgomp's spinning wait: after every parallel
region the workers busy-wait for the next one. On a quiet machine that is the fastest choice (the next region
starts without a wake-up). When another CPU-bound process shares the cores, the spinning workers take CPU
time from the thread doing the work, and every parallel region waits at its barrier for a worker the kernel
has descheduled: a Conformer step was measured 10-20x slower on a shared 2-core machine. With
`OMP_WAIT_POLICY=PASSIVE` idle workers sleep instead of spinning, which removes the collapse but costs ~1.2x
on a quiet machine (`benchmarks/thread_policy.py` measures both).

So the wait policy follows the machine: at stage start `free_cpus()` samples /proc/stat for 0.1 s, and when
fewer CPUs are idle than the stage's threads need (budget - 0.5), the stage's workers wait passively;
otherwise libgomp's default (spin, then sleep) is kept. The wait policy changes no result, only speed. It is
chosen once, when torch loads (OpenMP reads it then): a competitor that starts later meets spinning workers.

The thread count is the CPUs this process may use (its affinity mask, capped by a cgroup v2 CPU quota),
not a guess from the machine's load: the count changes floating-point reduction order, so a load-dependent
count would make a result depend on what else ran at the time. Settings given in the environment win
(`OMP_NUM_THREADS=1`, `OMP_WAIT_POLICY=ACTIVE`, torchrun's per-process `OMP_NUM_THREADS`).

OpenMP reads these variables once, when torch's libraries load, so `apply_thread_policy()` must run before
`import torch`; the stage entry points (`stages/*.py`) call it first.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path

__all__ = ["apply_thread_policy", "cpu_budget", "free_cpus"]

PROBE_SECONDS = 0.1  # sampling window of free_cpus(): 10 clock ticks per CPU (USER_HZ 100)


def cpu_budget(cgroup_cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2 quota ("200000 100000" = 2)."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = cgroup_cpu_max.read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, int(quota) // int(period)))
    except (OSError, ValueError):  # no cgroup v2 file (or an unexpected one): the affinity mask decides
        pass
    return cpus


def free_cpus(interval: float = PROBE_SECONDS, proc_stat: Path = Path("/proc/stat")) -> float:
    """Idle CPUs of the machine over the next `interval` seconds (all CPUs, from /proc/stat's `cpu` line),
    not counting this process's own CPU time. Returns inf when /proc/stat cannot be read (not Linux)."""

    def sample() -> tuple[int, int, float]:
        ticks = [int(v) for v in proc_stat.read_text().split("\n", 1)[0].split()[1:9]]
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return sum(ticks), ticks[3] + ticks[4], usage.ru_utime + usage.ru_stime  # total, idle + iowait, own

    try:
        total0, idle0, own0 = sample()
        time.sleep(interval)
        total1, idle1, own1 = sample()
    except (OSError, ValueError, IndexError):
        return float("inf")
    cpus = os.cpu_count() or 1
    if total1 <= total0:
        return float(cpus)
    seconds = (total1 - total0) / cpus  # wall time of the window as the kernel counted it
    return cpus * (idle1 - idle0) / (total1 - total0) + (own1 - own0) / seconds


def apply_thread_policy(environ: MutableMapping[str, str] = os.environ,
                        idle: Callable[[], float] = free_cpus) -> dict[str, str | None]:
    """Set `OMP_NUM_THREADS` (the CPU budget) unless already set, and `OMP_WAIT_POLICY=PASSIVE` when the
    machine has fewer idle CPUs than the threads need (unless a wait policy is already set); returns both
    (None: libgomp's default wait). With one thread there are no waiting workers and nothing is probed.

    Raises RuntimeError when torch is already imported, because OpenMP would ignore the settings.
    """
    if environ is os.environ and "torch" in sys.modules:
        raise RuntimeError("apply_thread_policy() must run before torch is imported (OpenMP reads it at load)")
    environ.setdefault("OMP_NUM_THREADS", str(cpu_budget()))
    threads = int(environ["OMP_NUM_THREADS"]) if environ["OMP_NUM_THREADS"].isdigit() else 1
    if "OMP_WAIT_POLICY" not in environ and threads > 1:
        idle_now = idle()
        if idle_now < threads - 0.5:  # another process holds CPUs our workers would spin on
            environ["OMP_WAIT_POLICY"] = "PASSIVE"
            print(f"[threads] {idle_now:.1f} of the machine's CPUs idle at start, {threads} threads: OpenMP "
                  "workers wait passively (slower when the machine is quiet, no collapse when it is shared)",
                  file=sys.stderr)
    return {key: environ.get(key) for key in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
