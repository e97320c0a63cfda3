"""The one training loop every paper uses.

Seeds python/numpy/torch, runs on CUDA when present (bf16 autocast there unless the recipe says fp32)
else CPU, builds the recipe's optimizer and LR schedule (`TrainConfig`, per variant), accumulates
gradients over `accumulation` micro-batches per optimizer step, shows tqdm progress, logs the loss of
every optimizer step and per-epoch validation metrics to MLflow, and checkpoints at every epoch's end and,
when asked, every N optimizer steps and/or M minutes (`CheckpointEvery`).
A checkpoint resumes training only when it was written for the same config fingerprint (paper,
variant, seed, resolved config, verified data and code: the fingerprint passed in folds the code hash in);
anything else starts from scratch, and an unloadable file is set aside (mmrepro.checkpoint). Each epoch reseeds from
(seed, epoch), so a resumed run follows the same batches as an uninterrupted one; a checkpoint written
mid-epoch records how many of the epoch's micro-batches were consumed and the RNG states, and the resumed
run skips exactly those batches (the paper regenerates them: cheap for index lists, a decode for others).

Under torchrun (`mmrepro.distributed`) the loop is data-parallel: every rank walks the same deterministic
sequence of micro-batches of the epoch and takes those with index % world == rank, so one optimizer step
consumes the recipe's `accumulation` micro-batches in all (accumulation / world per rank) and the effective
batch and LR schedule do not depend on the world size. Gradients are averaged by DistributedDataParallel
(a ragged last group of the epoch by an explicit all-reduce); only rank 0 logs, validates and checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mmrepro.averaging import EpochAverage
from mmrepro.checkpoint import load_resumable
from mmrepro.data.loader import LoaderSettings, PlannedBatches
from mmrepro.distributed import World, all_gather_object, average_gradients, broadcast_object, sum_across
from mmrepro.fileio import save_torch_atomic
from mmrepro.papers.base import TrainConfig, Variant
from mmrepro.tracking import MetricBuffer, metric_key


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def to_device(batch, device: torch.device):
    """Move every tensor inside nested dicts/lists/tuples to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [to_device(v, device) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch


def config_fingerprint(paper: str, variant: str, seed: int, cfg: TrainConfig, data_fingerprint: str) -> str:
    blob = json.dumps(
        {"paper": paper, "variant": variant, "seed": seed, "cfg": cfg.training_fields(), "data": data_fingerprint},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def lr_lambda(warmup: int, total: int | None, schedule: str = "cosine", min_ratio: float = 0.0,
              steps_per_epoch: int | None = None, decay_every: int = 1, decay_rate: float = 1.0):
    """LR factor per optimizer step: linear warm-up, then
    cosine     cosine decay to `min_ratio` over `total` steps (constant when total is unknown),
    noam       the Transformer schedule (Vaswani et al. 2017, 5.3) scaled to peak 1 at `warmup`:
               min((s+1)/warmup, sqrt(warmup/(s+1))), as Gulati et al. 2020 (3.2) use it,
    step       x decay_rate every `decay_every` epochs (needs steps_per_epoch),
    constant   1."""
    if schedule == "step" and not steps_per_epoch:
        raise ValueError("the step schedule needs the number of steps per epoch")

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if schedule == "noam":
            return math.sqrt(max(warmup, 1) / (step + 1))
        if schedule == "step":
            return decay_rate ** ((step // steps_per_epoch) // decay_every)
        if schedule == "constant" or not total or total <= warmup:
            return 1.0
        progress = min(1.0, (step - warmup) / (total - warmup))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The recipe's optimizer over all parameters."""
    params = model.parameters()
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.RMSprop(params, lr=cfg.lr, eps=cfg.eps, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


@dataclass
class TrainHistory:
    losses: list[tuple[int, float]] = field(default_factory=list)  # (global step, loss)
    validation: list[dict[str, float]] = field(default_factory=list)  # one dict per epoch, with "epoch", "step"
    resumed_from_epoch: int = 0
    resumed: bool = False  # a checkpoint was loaded (also one written mid-way through the first epoch)
    epochs_done: int = 0
    optimizer_steps: int = 0
    capped: bool = False  # a max_steps / max_steps_per_epoch cap cut training short
    averaged_epochs: int = 0  # epochs averaged into the returned weights (average_last); 0 or 1: as trained

    @property
    def completed(self) -> bool:
        return not self.capped


def _optimizer_step(model, optimizer, scheduler, cfg: TrainConfig, step: int) -> int:
    if cfg.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return step + 1


@dataclass(frozen=True)
class CheckpointEvery:
    """Step checkpoints besides the one at every epoch's end: every `steps` optimizer steps and/or every
    `minutes` of training (rank 0's clock), whichever comes first; None = off."""

    steps: int | None = None
    minutes: float | None = None


class _StepModule(torch.nn.Module):
    """A variant's `loss` as a module's forward: DDP synchronises the gradients of what runs through its
    wrapped module's forward, whichever model methods the loss calls."""

    def __init__(self, variant: Variant, model: torch.nn.Module) -> None:
        super().__init__()
        self.variant, self.model = variant, model

    def forward(self, batch) -> torch.Tensor:
        return self.variant.loss(self.model, batch)


@dataclass
class _Position:
    """Where training stands: epochs finished, optimizer steps, micro-batches consumed in all and in the
    current epoch (`batch` > 0 only for a step checkpoint written mid-epoch)."""

    epoch: int = 0
    step: int = 0
    micro: int = 0
    batch: int = 0


def _restore(state: dict, model, optimizer, scheduler, history: TrainHistory) -> _Position:
    """Load a checkpoint's state into the model, optimizer, schedule and history; returns its position."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    history.losses = [(int(s), float(v)) for s, v in state["losses"].tolist()]
    history.validation = json.loads(state["validation"])
    history.capped = bool(state.get("capped", False))
    history.resumed_from_epoch = int(state["epoch"])
    history.resumed = True
    return _Position(int(state["epoch"]), int(state["step"]), int(state.get("micro", 0)), int(state.get("batch", 0)))


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def _saved_rng(state: dict | None, world: World, device: torch.device) -> dict[str, torch.Tensor] | None:
    """This rank's RNG state in a mid-epoch checkpoint: exact when the world size is unchanged; otherwise
    rank 0 takes rank 0's and the others keep their (seed, epoch, rank) seeding."""
    if state is None or "rng_cpu" not in state:
        return None
    saved_world = state["rng_cpu"].shape[0]
    if world.rank >= saved_world or (saved_world != world.size and world.rank != 0):
        return None
    out = {"cpu": state["rng_cpu"][world.rank].to(torch.uint8)}
    if "rng_cuda" in state and device.type == "cuda":
        out["cuda"] = state["rng_cuda"][world.rank].to(torch.uint8)
    return out


def _epoch_length(batches_per_epoch: int, cfg: TrainConfig, micro_at_start: int) -> int:
    """Micro-batches this epoch trains on (the caps applied)."""
    n = batches_per_epoch
    if cfg.max_steps is not None:
        n = min(n, max(cfg.max_steps - micro_at_start, 0))
    return n


def _epoch_stream(batches, start: int, limit: int, world: World, loader: LoaderSettings):
    """(index, batch) over the epoch's micro-batches; batch is None where another rank trains on it or it was
    consumed before the checkpoint this run resumed from. A `PlannedBatches` makes only this rank's remaining
    batches, in DataLoader workers; any other iterable is walked whole (skipped batches are made, then dropped)."""

    def wanted(i: int) -> bool:
        return i >= start and i % world.size == world.rank and i < limit

    if isinstance(batches, PlannedBatches):
        yield from batches.stream(wanted, loader)
        return
    for i, batch in enumerate(batches):
        yield i, batch if wanted(i) else None


def train_variant(
    variant: Variant,
    seed: int,
    checkpoint_path: Path,
    data_fingerprint: str,
    metrics: MetricBuffer | None = None,
    device: torch.device | None = None,
    *,
    world: World | None = None,
    checkpoint_every: CheckpointEvery | None = None,
    loader: LoaderSettings | None = None,
) -> tuple[torch.nn.Module, TrainHistory]:
    """Train `variant` (a built paper's model, with its recipe) to completion, resuming from `checkpoint_path`
    if it matches.

    `world`: this process's rank in a torchrun job (default: a single process); its process group must be
    initialised (`mmrepro.distributed.process_group`). Only rank 0 reads and writes `checkpoint_path`.
    `loader`: DataLoader workers, prefetch and pinned memory for papers whose batches are `PlannedBatches`."""
    world = world or World()
    every = checkpoint_every or CheckpointEvery()
    device = device or (torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    cfg = variant.recipe
    label = f"{variant.paper}/{variant.name}"
    if cfg.accumulation % world.size:
        raise ValueError(f"{label}: accumulation {cfg.accumulation} is not a multiple of the {world.size} processes "
                         f"(per-process batch x processes x accumulation per process = the recipe's batch)")
    seed_everything(seed)
    model = variant.build_model().to(device)
    optimizer = build_optimizer(model, cfg)
    batches_per_epoch = len(variant.batches(0, seed))  # the same every epoch
    if cfg.max_steps_per_epoch is not None:
        batches_per_epoch = min(batches_per_epoch, cfg.max_steps_per_epoch)
    steps = -(-batches_per_epoch // cfg.accumulation) or None  # optimizer steps / epoch
    total = steps * cfg.epochs if steps else None
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(
        cfg.warmup_steps, total, cfg.schedule, cfg.min_lr_ratio, steps, cfg.decay_every, cfg.decay_rate))
    fingerprint = config_fingerprint(variant.paper, variant.name, seed, cfg, data_fingerprint)
    history = TrainHistory()
    pos = _Position()
    average = EpochAverage(cfg.average_last, cfg.epochs)

    # loaded on the CPU when it goes to other ranks (a pickled CUDA tensor would come back on rank 0's device)
    load_to = torch.device("cpu") if world.distributed else device
    state = load_resumable(checkpoint_path, fingerprint, load_to) if world.is_main else None
    state = broadcast_object(state, world)  # every rank resumes from rank 0's file (one copy, any node)
    if state is not None:
        pos = _restore(state, model, optimizer, scheduler, history)
        average.load(state.get("average"))
        where = f"epoch {pos.epoch}" + (f", micro-batch {pos.batch} of epoch {pos.epoch + 1}" if pos.batch else "")
        if world.is_main:
            print(f"[{label}] resuming from {where} ({checkpoint_path})")
    # only mid-epoch: an uninterrupted run reseeds at each epoch start (below), so a checkpoint at an epoch's
    # end resumes with that seeding, not with the RNG state it saved after validation
    resume_rng = _saved_rng(state, world, device) if pos.batch else None
    del state

    use_bf16 = device.type == "cuda" and cfg.precision == "bf16"
    prefix = variant.key_prefix
    step_module = _StepModule(variant, model)
    if world.distributed:
        from torch.nn.parallel import DistributedDataParallel

        step_module = DistributedDataParallel(step_module, device_ids=[device.index] if device.type == "cuda" else None)
    acc, procs = cfg.accumulation, world.size
    per_rank = acc / procs  # DDP averages over ranks: dividing by this gives the mean over the group's `acc`
    last_checkpoint = time.monotonic()

    def checkpoint(epoch_done: int, batch: int) -> None:
        """Rank 0 writes the position (all ranks call: the RNG states are gathered from every rank)."""
        rngs = all_gather_object({k: v.cpu() for k, v in _rng_state(device).items()}, world)
        if not world.is_main:
            return
        if metrics is not None:
            metrics.flush()  # MLflow holds every step the checkpoint holds
        state = {
            "fingerprint": fingerprint, "epoch": epoch_done, "step": pos.step, "micro": pos.micro, "batch": batch,
            "capped": history.capped, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "losses": torch.tensor(history.losses, dtype=torch.float64).reshape(-1, 2),
            "validation": json.dumps(history.validation), "world_size": procs,
            "rng_cpu": torch.stack([r["cpu"] for r in rngs]), "average": average.state(),
        }
        if "cuda" in rngs[0]:
            state["rng_cuda"] = torch.stack([r["cuda"] for r in rngs])
        save_torch_atomic(state, checkpoint_path)

    def step_checkpoint_due() -> bool:
        due = every.steps is not None and pos.step % every.steps == 0
        if every.minutes is not None:  # rank 0's clock decides for all ranks
            late = time.monotonic() - last_checkpoint >= every.minutes * 60 if world.is_main else None
            due = broadcast_object(late, world) or due
        return due

    for epoch in range(pos.epoch, cfg.epochs):
        torch.manual_seed(seed * 100_003 + epoch + 1_000_003 * world.rank)
        model.train()
        start = pos.batch
        micro_at_start = pos.micro - start
        n_epoch = _epoch_length(batches_per_epoch, cfg, micro_at_start)
        ragged_from = n_epoch - n_epoch % acc  # the short last group
        batches = variant.batches(epoch, seed)
        bar = tqdm(total=n_epoch, initial=start, desc=f"{label} epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not world.is_main)
        pending, pending_loss, seen = 0, 0.0, start
        for i, batch in _epoch_stream(batches, start, n_epoch, world, loader or LoaderSettings()):
            if (cfg.max_steps_per_epoch is not None and i >= cfg.max_steps_per_epoch) or (
                    cfg.max_steps is not None and micro_at_start + i >= cfg.max_steps):
                history.capped = True
                break
            if i < start:
                continue  # consumed before the checkpoint this run resumed from
            if i == start and resume_rng is not None:
                _set_rng_state(resume_rng, device)
                resume_rng = None
            seen, pos.micro = i + 1, pos.micro + 1
            if batch is not None:  # this rank's
                batch = to_device(batch, device)
                ragged = i >= ragged_from
                sync = world.distributed and not ragged and i % acc >= acc - procs  # this rank's last in the group
                with nullcontext() if sync or not world.distributed else step_module.no_sync():
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                        loss = step_module(batch)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"{label}: loss is {loss.item()} at step {pos.step}")
                    (loss / per_rank).backward()
                pending, pending_loss = pending + 1, pending_loss + float(loss.detach())
            if (i + 1) % acc == 0 or i + 1 == n_epoch:
                value = _end_group(model, optimizer, scheduler, cfg, world, device, pos, pending, pending_loss,
                                   i >= ragged_from)
                pending, pending_loss = 0, 0.0
                history.losses.append((pos.step - 1, value))
                if metrics is not None:
                    metrics.log(metric_key(prefix, "train_loss"), value, pos.step - 1)
                bar.update(acc if (i + 1) % acc == 0 else (i + 1) % acc)
                bar.set_postfix(loss=f"{value:.4f}")
                if step_checkpoint_due():
                    checkpoint(epoch, i + 1)
                    last_checkpoint = time.monotonic()
        if seen < n_epoch and world.distributed:
            raise RuntimeError(f"{label}: epoch {epoch + 1} had {seen} batches, its len() said {n_epoch}")
        if pending:  # the epoch's last, shorter group, when the batches were fewer than their len() said
            value = _end_group(model, optimizer, scheduler, cfg, world, device, pos, pending, pending_loss, False)
            history.losses.append((pos.step - 1, value))
            if metrics is not None:
                metrics.log(metric_key(prefix, "train_loss"), value, pos.step - 1)
        bar.close()
        if resume_rng is not None:  # resumed at the epoch's very end (a step checkpoint after its last group)
            _set_rng_state(resume_rng, device)
            resume_rng = None

        model.eval()
        last = history.losses[-1][1] if history.losses else float("nan")
        val = _validate(variant, model, world, metrics, "val", epoch + 1,
                        f"[{label}] seed {seed} epoch {epoch + 1}/{cfg.epochs} loss={last:.4f}")
        history.validation.append({"epoch": epoch + 1, "step": pos.step, **val})
        pos.epoch, pos.batch = epoch + 1, 0
        average.add(model, epoch + 1)
        checkpoint(epoch + 1, 0)
        last_checkpoint = time.monotonic()
        history.epochs_done = epoch + 1
        if cfg.max_steps is not None and pos.micro >= cfg.max_steps:
            history.capped = history.capped or history.epochs_done < cfg.epochs
            break  # the step cap is reached: no further (empty) epochs, validations or checkpoints
    history.epochs_done = max(history.epochs_done, pos.epoch)
    history.optimizer_steps = pos.step
    model.eval()
    history.averaged_epochs = average.apply(model)
    if history.averaged_epochs > 1:  # the per-epoch `val/<key>` curve is of the weights as trained
        _validate(variant, model, world, metrics, "val_averaged", history.epochs_done,
                  f"[{label}] seed {seed} average of the last {history.averaged_epochs} epochs:")
    return model, history


def _validate(variant: Variant, model, world: World, metrics: MetricBuffer | None, name: str, epoch: int,
              shown_after: str) -> dict[str, float]:
    """Score the validation split, log it as `<name>/<key>` at `epoch` and print it after `shown_after`. The split
    is not sharded: rank 0 scores it, every rank gets the numbers."""
    val = None
    if world.is_main:
        with torch.no_grad():
            val = variant.validate(model)
    val = broadcast_object(val, world)
    if metrics is not None:
        for key, value in val.items():
            metrics.log(metric_key(variant.key_prefix, name, key), value, epoch)
        metrics.flush()
    if world.is_main:
        print(f"{shown_after} " + ", ".join(f"{k}={v:.4g}" for k, v in val.items()), flush=True)
    return val


def _end_group(model, optimizer, scheduler, cfg: TrainConfig, world: World, device: torch.device, pos: _Position,
               pending: int, pending_loss: float, ragged: bool) -> float:
    """One optimizer step on every rank at the end of an accumulation group; returns the group's mean loss."""
    if ragged and world.distributed:  # DDP did not reduce this group (ranks hold unequal numbers of batches)
        average_gradients(model, world)
    loss_sum, count = sum_across([pending_loss, float(pending)], world, device)
    pos.step = _optimizer_step(model, optimizer, scheduler, cfg, pos.step)
    return loss_sum / count
