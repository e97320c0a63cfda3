"""Data-parallel training under `torchrun`: who this process is, the process group, the few collectives
the training loop needs, and the relaunch of a stage under torchrun when `train.nproc` > 1.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK in every worker's environment; a plain `python` run has
none of them and is world 1, rank 0, with no process group (the loop then calls no collective at all).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that logs to MLflow and writes checkpoints and outputs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def current_world() -> World:
    """This process's place in the torchrun job (world 1 when not started by torchrun)."""
    env = os.environ
    return World(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def device_for(world: World) -> torch.device:
    """CUDA device `local_rank` when CUDA is present, else the CPU."""
    if torch.cuda.is_available():
        torch.cuda.set_device(world.local_rank)
        return torch.device("cuda", world.local_rank)
    return torch.device("cpu")


@contextmanager
def process_group(world: World, device: torch.device) -> Iterator[World]:
    """Join the torchrun job's process group (NCCL on CUDA, gloo on CPU) for the duration; no-op in world 1."""
    if not world.distributed or dist.is_initialized():
        yield world
        return
    # rank 0 validates alone at every epoch's end while the others wait: allow a long validation
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(hours=2))
    try:
        yield world
    finally:
        dist.destroy_process_group()


def broadcast_object(obj, world: World):
    """`obj` of rank 0 on every rank (pickled by torch.distributed; used once per resume and per epoch)."""
    if not world.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj, world: World) -> list:
    if not world.distributed:
        return [obj]
    out = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def sum_across(values: list[float], world: World, device: torch.device) -> list[float]:
    """Element-wise sum over ranks (float64, so that 1 and N processes log the same loss)."""
    if not world.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def average_gradients(model: torch.nn.Module, world: World) -> None:
    """Mean of every parameter's gradient over ranks (a rank with no batch contributes zeros): the
    reduction DDP does in backward, for an accumulation group that some ranks have fewer batches of."""
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)
        p.grad.div_(world.size)


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """The torchrun command line that reruns this stage in `nproc` processes on this machine, or with the
    rendezvous flags of $MMREPRO_TORCHRUN_ARGS (several nodes; README, "Training on several GPUs")."""
    extra = os.environ.get("MMREPRO_TORCHRUN_ARGS", "").split()
    launch = extra if extra else ["--standalone"]
    return [sys.executable, "-m", "torch.distributed.run", *launch, f"--nproc_per_node={nproc}", *argv]


def relaunch_under_torchrun(nproc: int) -> None:
    """Replace this process by torchrun running the same stage in `nproc` workers, unless it already is one."""
    if nproc <= 1 or "LOCAL_RANK" in os.environ:
        return
    cmd = torchrun_command(nproc, sys.argv)
    print(f"train: {nproc} processes: {' '.join(cmd[1:])}", flush=True)
    sys.stdout.flush()
    os.execv(cmd[0], cmd)
