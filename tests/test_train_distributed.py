"""Data-parallel training in real processes (torch.multiprocessing, gloo on CPU): 2 processes follow the same
loss sequence and reach the same weights as 1 process with the same global batch, including an epoch whose
last accumulation group is ragged; a mid-epoch checkpoint written by 2 processes (rank 0 SIGKILLed) resumes
in 1 process to the uninterrupted run's result."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from unittest import mock

import pytest
import torch
import yaml
import torch.multiprocessing as mp

from mmrepro.config import ParamsError, load_params, validate_params
from mmrepro.distributed import World, current_world, process_group, torchrun_command
from mmrepro.train import CheckpointEvery, train_variant

from .conftest import REPO
from .test_train_loop import ToyConfig, ToyRegression

# 112 examples / 16 = 7 micro-batches per epoch: with accumulation 4, groups (0-3) and a ragged (4-6),
# where rank 0 holds micro-batches 4 and 6 and rank 1 holds 5
RECIPE = dict(n=112, epochs=3, batch_size=16, accumulation=4, lr=0.5, optimizer="adam", warmup_steps=2,
              schedule="cosine", grad_clip=0.5)


class _Killed(ToyRegression):
    """Rank 0 SIGKILLs itself at its `kill_at`-th training step (a crashed machine, not an exception)."""

    kill_at: int | None = None
    calls = 0

    def loss(self, model, batch):
        self.calls += 1
        if self.calls == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().loss(model, batch)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, size: int, port: int, out: str, kill_at: int | None) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(size),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    world = current_world()  # from the environment, as under torchrun
    assert world == World(rank, size, rank)
    paper = _Killed()
    paper.kill_at = kill_at if rank == 0 else None
    with process_group(world, torch.device("cpu")):
        model, history = train_variant(paper.build(ToyConfig(**RECIPE), Path(out)).variant("main"), 3, Path(out) / "ckpt.pt",
                                       "abc", device=torch.device("cpu"), world=world,
                                       checkpoint_every=CheckpointEvery(steps=1))
    if rank == 0:
        torch.save({"weight": model.weight.detach(), "bias": model.bias.detach(), "losses": history.losses,
                    "resumed_from_epoch": history.resumed_from_epoch}, Path(out) / "result.pt")


def _run(out: Path, size: int, kill_at: int | None = None) -> dict:
    out.mkdir(exist_ok=True)
    if size == 1:
        with mock.patch.dict(os.environ):  # in this process: put back the environment the worker sets
            _worker(0, 1, 0, str(out), kill_at)
    else:
        mp.start_processes(_worker, args=(size, _free_port(), str(out), kill_at), nprocs=size, start_method="spawn")
    return torch.load(out / "result.pt", weights_only=True)


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    one, two = _run(tmp_path / "one", 1), _run(tmp_path / "two", 2)
    assert [s for s, _ in two["losses"]] == [s for s, _ in one["losses"]] == list(range(3 * 2))
    gaps = [abs(a - b) for (_, a), (_, b) in zip(one["losses"], two["losses"], strict=True)]
    print(f"max |loss(1 process) - loss(2 processes)| over {len(gaps)} steps: {max(gaps):.3g}")
    assert max(gaps) < 1e-5
    assert torch.allclose(one["weight"], two["weight"], atol=1e-5, rtol=0)
    assert torch.allclose(one["bias"], two["bias"], atol=1e-5, rtol=0)
    assert one["losses"][-1][1] < 0.5 * one["losses"][0][1]  # it learns (not two equal no-ops)


def test_a_checkpoint_written_by_two_processes_resumes_in_one(tmp_path):
    straight = _run(tmp_path / "straight", 1)
    crashed = tmp_path / "crashed"
    # rank 0 trains micro-batches 0, 2, 4, 6 of epoch 1, then 0, 2 of epoch 2 (the group ends: step 2 and its
    # checkpoint), and dies at its 7th call, on micro-batch 4 of epoch 2
    with pytest.raises(mp.ProcessExitedException, match="SIGKILL"):
        _run(crashed, 2, kill_at=7)
    state = torch.load(crashed / "ckpt.pt", weights_only=True)
    assert (state["epoch"], state["batch"], state["step"], state["world_size"]) == (1, 4, 3, 2)
    resumed = _run(crashed, 1)
    assert resumed["resumed_from_epoch"] == 1
    assert [s for s, _ in resumed["losses"]] == list(range(6))
    gaps = [abs(a - b) for (_, a), (_, b) in zip(straight["losses"], resumed["losses"], strict=True)]
    print(f"max |loss(straight) - loss(2 processes, killed, resumed in 1)|: {max(gaps):.3g}")
    assert max(gaps) < 1e-5
    assert torch.allclose(straight["weight"], resumed["weight"], atol=1e-5, rtol=0)


def test_nproc_must_divide_the_accumulation_of_the_papers_run():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw.update(profile="full", run=["conformer"], train={"nproc": 2})  # conformer full: 16 x 2
    assert validate_params(raw).train.nproc == 2
    raw["train"]["nproc"] = 4
    with pytest.raises(ParamsError, match=r"^train.nproc: 4 processes do not divide configs/conformer.yaml's full.accumulation "
                                          r"= 2 \(.*set batch_size / 2 and accumulation x the same\)$"):
        validate_params(raw)
    assert load_params(REPO / "params.yaml").train.nproc == 1  # the default: one process, no torchrun


def test_torchrun_command_single_node_and_rendezvous(monkeypatch):
    monkeypatch.delenv("MMREPRO_TORCHRUN_ARGS", raising=False)
    assert torchrun_command(8, ["stages/train.py", "conformer"])[1:] == [
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=8", "stages/train.py", "conformer"]
    monkeypatch.setenv("MMREPRO_TORCHRUN_ARGS", "--nnodes=2 --rdzv-backend=c10d --rdzv-endpoint=node1:29400")
    assert torchrun_command(8, ["stages/train.py", "conformer"])[3:6] == [
        "--nnodes=2", "--rdzv-backend=c10d", "--rdzv-endpoint=node1:29400"]
