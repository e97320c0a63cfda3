"""The one training loop every paper uses.

Seeds python/numpy/torch, runs on CUDA when present (bf16 autocast there unless the recipe says fp32)
else CPU, builds the recipe's optimizer and LR schedule (`TrainConfig`, per variant), accumulates
gradients over `accumulation` micro-batches per optimizer step, shows tqdm progress, logs the loss of
every optimizer step and per-epoch validation metrics to MLflow, and checkpoints every epoch.
A checkpoint resumes training only when it was written for the same config fingerprint (paper,
variant, seed, resolved config, verified data and code: the fingerprint passed in folds the code hash
in); anything else starts from scratch, and an unloadable file is set aside (mmrepro.checkpoint). Each epoch reseeds from
(seed, epoch), so a resumed run follows the same batches as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mmrepro.checkpoint import load_resumable
from mmrepro.papers.base import Paper, TrainConfig
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
        {"paper": paper, "variant": variant, "seed": seed, "cfg": cfg.model_dump(mode="json"), "data": data_fingerprint},
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
    epochs_done: int = 0
    optimizer_steps: int = 0
    capped: bool = False  # a max_steps / max_steps_per_epoch cap cut training short

    @property
    def completed(self) -> bool:
        return not self.capped


def _save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _optimizer_step(model, optimizer, scheduler, cfg: TrainConfig, step: int) -> int:
    if cfg.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return step + 1


def train_variant(
    paper: Paper,
    cfg: TrainConfig,
    data_dir: Path,
    variant: str,
    seed: int,
    checkpoint_path: Path,
    data_fingerprint: str,
    metrics: MetricBuffer | None = None,
    device: torch.device | None = None,
) -> tuple[torch.nn.Module, TrainHistory]:
    """Train one variant of `paper` to completion (resuming from `checkpoint_path` if it matches)."""
    device = device or (torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    cfg = cfg.recipe_for(variant)
    seed_everything(seed)
    model = paper.build_model(cfg, data_dir, variant).to(device)
    optimizer = build_optimizer(model, cfg)
    batches_per_epoch = paper.steps_per_epoch(cfg, data_dir, variant)
    if batches_per_epoch is not None and cfg.max_steps_per_epoch is not None:
        batches_per_epoch = min(batches_per_epoch, cfg.max_steps_per_epoch)
    steps = -(-batches_per_epoch // cfg.accumulation) if batches_per_epoch else None  # optimizer steps / epoch
    total = steps * cfg.epochs if steps else None
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(
        cfg.warmup_steps, total, cfg.schedule, cfg.min_lr_ratio, steps, cfg.decay_every, cfg.decay_rate))
    fingerprint = config_fingerprint(paper.name, variant, seed, cfg, data_fingerprint)
    history = TrainHistory()
    start_epoch, step, micro = 0, 0, 0

    state = load_resumable(checkpoint_path, fingerprint, device)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, step, micro = int(state["epoch"]), int(state["step"]), int(state.get("micro", 0))
        history.losses = [(int(s), float(v)) for s, v in state["losses"].tolist()]
        history.validation = json.loads(state["validation"])
        history.capped = bool(state.get("capped", False))
        history.resumed_from_epoch = start_epoch
        print(f"[{paper.name}/{variant}] resuming from epoch {start_epoch} ({checkpoint_path})")

    use_bf16 = device.type == "cuda" and cfg.precision == "bf16"
    prefix = "" if variant == "main" else variant
    for epoch in range(start_epoch, cfg.epochs):
        torch.manual_seed(seed * 100_003 + epoch)
        model.train()
        batches = paper.train_batches(cfg, data_dir, variant, epoch, seed)
        bar = tqdm(batches, total=batches_per_epoch, desc=f"{paper.name}/{variant} epoch {epoch + 1}/{cfg.epochs}",
                   leave=False)
        pending, pending_loss = 0, 0.0
        for i, batch in enumerate(bar):
            if cfg.max_steps_per_epoch is not None and i >= cfg.max_steps_per_epoch:
                history.capped = True
                break
            if cfg.max_steps is not None and micro >= cfg.max_steps:
                history.capped = True
                break
            batch = to_device(batch, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss = paper.training_step(model, batch, variant)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{paper.name}/{variant}: loss is {loss.item()} at step {step}")
            (loss / cfg.accumulation).backward()  # gradients of the mean over the accumulated micro-batches
            micro, pending = micro + 1, pending + 1
            pending_loss += float(loss.detach())
            if pending == cfg.accumulation:
                step = _optimizer_step(model, optimizer, scheduler, cfg, step)
                value, pending, pending_loss = pending_loss / pending, 0, 0.0
                history.losses.append((step - 1, value))
                if metrics is not None:
                    metrics.log(metric_key(prefix, "train_loss"), value, step - 1)
                bar.set_postfix(loss=f"{value:.4f}")
        if pending:  # the epoch's last, shorter accumulation group
            step = _optimizer_step(model, optimizer, scheduler, cfg, step)
            history.losses.append((step - 1, pending_loss / pending))
            if metrics is not None:
                metrics.log(metric_key(prefix, "train_loss"), pending_loss / pending, step - 1)
        bar.close()

        model.eval()
        with torch.no_grad():
            val = paper.validate(model, cfg, data_dir, variant)
        history.validation.append({"epoch": epoch + 1, "step": step, **val})
        if metrics is not None:
            for key, value in val.items():
                metrics.log(metric_key(prefix, "val", key), value, epoch + 1)
            metrics.flush()
        shown = ", ".join(f"{k}={v:.4g}" for k, v in val.items())
        last = history.losses[-1][1] if history.losses else float("nan")
        print(f"[{paper.name}/{variant}] seed {seed} epoch {epoch + 1}/{cfg.epochs} loss={last:.4f} {shown}",
              flush=True)
        _save_checkpoint(
            checkpoint_path,
            {
                "fingerprint": fingerprint,
                "epoch": epoch + 1,
                "step": step,
                "micro": micro,
                "capped": history.capped,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "losses": torch.tensor(history.losses, dtype=torch.float64).reshape(-1, 2),
                "validation": json.dumps(history.validation),
            },
        )
        history.epochs_done = epoch + 1
        if cfg.max_steps is not None and micro >= cfg.max_steps:
            history.capped = history.capped or history.epochs_done < cfg.epochs
            break  # the step cap is reached: no further (empty) epochs, validations or checkpoints
    history.epochs_done = max(history.epochs_done, start_epoch)
    history.optimizer_steps = step
    model.eval()
    return model, history
