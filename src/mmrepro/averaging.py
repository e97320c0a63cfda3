"""Checkpoint averaging: the model's weights averaged over the ends of its last N epochs.

Speech recipes evaluate such an average rather than the last epoch's weights (ESPnet's `average_checkpoints`
over the best or last 10 epochs; NeMo's checkpoint averaging), because it smooths the noise of the last
optimizer steps. Here the training loop keeps a running sum (`EpochAverage`) instead of N files: it is part
of every checkpoint, so that a run resumed after a crash returns the same average as an uninterrupted one.
Floating-point entries of the state dict (parameters and buffers such as BatchNorm's running statistics) are
averaged; integer entries (BatchNorm's batch counter) keep the last epoch's value, as ESPnet does.
"""

from __future__ import annotations

import torch

__all__ = ["EpochAverage"]


class EpochAverage:
    """Running sum of a model's floating-point state over the last `last` of `epochs` epochs.

    `add(model, epoch)` after epoch `epoch` (1-based) ends; only epochs > epochs - last count.
    `apply(model)` loads the average into the model (nothing happens when fewer than two epochs were added:
    the model already holds the only snapshot). `state()` / `load(state)` for checkpoints."""

    def __init__(self, last: int, epochs: int) -> None:
        if last < 1:
            raise ValueError(f"last must be >= 1, got {last}")
        self.first = max(epochs - last, 0) + 1  # first 1-based epoch in the average
        self.sums = self.first < epochs  # two or more epochs to average: keep a running sum (one: the model is it)
        self.total: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, model: torch.nn.Module, epoch: int) -> None:
        if epoch < self.first:
            return
        self.count += 1
        if not self.sums:  # no float64 copy in memory or in the checkpoints of the default recipe (average_last 1)
            return
        with torch.no_grad():
            for name, value in model.state_dict().items():
                if not value.is_floating_point():
                    continue
                if name in self.total:
                    self.total[name] += value.double()
                else:
                    self.total[name] = value.detach().double().clone()  # float64: N sums round once

    def apply(self, model: torch.nn.Module) -> int:
        """Load the average into `model`; returns the number of epochs averaged (0 or 1: model unchanged)."""
        if self.count < 2:
            return self.count
        state = model.state_dict()
        with torch.no_grad():
            for name, total in self.total.items():
                state[name].copy_((total / self.count).to(state[name].dtype))
        return self.count

    def state(self) -> dict:
        return {"count": self.count, "total": self.total}

    def load(self, state: dict | None) -> None:
        """Resume from `state()` of a checkpoint (None, or a checkpoint written before averaging: from scratch)."""
        if not state:
            return
        self.count = int(state["count"])
        self.total = dict(state["total"])
