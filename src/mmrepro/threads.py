"""CPU thread policy of the stages: how many threads torch uses and how OpenMP's idle threads wait.

torch's default on CPU is one OpenMP thread per core with libgomp's spinning wait: after every parallel
region the workers busy-wait for the next one. When another CPU-bound process shares the cores, the
spinning workers take CPU time from the thread doing the work, and every parallel region waits at its
barrier for a worker the kernel has descheduled: a Conformer step was measured 10-20x slower on a shared
2-core machine. With `OMP_WAIT_POLICY=PASSIVE` idle workers sleep instead of spinning, which removes the
collapse (see `benchmarks/thread_policy.py` for the measured slowdowns, quiet and under a competing process).

The thread count is the CPUs this process may use (its affinity mask, capped by a cgroup v2 CPU quota),
not a guess from the machine's load: the count changes floating-point reduction order, so a load-dependent
count would make a result depend on what else ran at the time. Settings given in the environment win
(`OMP_NUM_THREADS=1`, `OMP_WAIT_POLICY=ACTIVE`, torchrun's per-process `OMP_NUM_THREADS`).

OpenMP reads these variables once, when torch's libraries load, so `apply_thread_policy()` must run before
`import torch`; the stage entry points (`stages/*.py`) call it first.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

__all__ = ["apply_thread_policy", "cpu_budget"]


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


def apply_thread_policy(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Set `OMP_NUM_THREADS` (the CPU budget) and `OMP_WAIT_POLICY=PASSIVE` unless already set; returns both.

    Raises RuntimeError when torch is already imported, because OpenMP would ignore the settings.
    """
    if environ is os.environ and "torch" in sys.modules:
        raise RuntimeError("apply_thread_policy() must run before torch is imported (OpenMP reads it at load)")
    environ.setdefault("OMP_NUM_THREADS", str(cpu_budget()))
    environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return {key: environ[key] for key in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
