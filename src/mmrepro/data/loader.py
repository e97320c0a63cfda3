"""Batches made in DataLoader worker processes, for datasets read from files on the fly (LibriSpeech FLAC + log-mel, LRS3 clips).

A variant's `batches(epoch, seed)` may return a `PlannedBatches`: the epoch's plan, one picklable entry per batch
(the example indices and a seed drawn in order from (seed, epoch)), and a picklable `make(plan) -> batch`
that reads, decodes, augments and collates one batch from its plan alone. A batch is therefore the same
whichever process makes it: the same with 0, 1 or 2 workers. The training loop asks only for the batches
its rank trains on (index % world == rank) and, on a mid-epoch resume, only for those not yet consumed,
so a skipped batch costs nothing (`PlannedBatches.stream`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset


@dataclass(frozen=True)
class LoaderSettings:
    workers: int = 0  # DataLoader worker processes; 0 = make batches in the training process
    prefetch: int = 2  # batches each worker keeps ready
    pin_memory: bool = False  # page-locked batches, so that the copy to the GPU can overlap compute


class _Selected(Dataset):
    def __init__(self, plans: Sequence[Any], make: Callable[[Any], Any], positions: list[int]) -> None:
        self.plans, self.make, self.positions = plans, make, positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, k: int):
        return self.make(self.plans[self.positions[k]])


@dataclass
class PlannedBatches:
    plans: Sequence[Any]  # one entry per batch, in epoch order
    make: Callable[[Any], Any]  # plan -> batch; picklable (a module-level class instance), pure

    def __len__(self) -> int:
        return len(self.plans)

    def __iter__(self) -> Iterator[Any]:
        for _, batch in self.stream(lambda i: True):
            yield batch

    def stream(self, wanted: Callable[[int], bool], settings: LoaderSettings = LoaderSettings()
               ) -> Iterator[tuple[int, Any]]:
        """(index, batch) for every batch of the epoch in order; the batch is made only where `wanted(index)`,
        else it is None. Wanted batches come from a DataLoader with `settings.workers` workers."""
        positions = [i for i in range(len(self.plans)) if wanted(i)]
        kwargs = {"num_workers": settings.workers, "pin_memory": settings.pin_memory and torch.cuda.is_available()}
        if settings.workers:
            kwargs["prefetch_factor"] = settings.prefetch
        made = iter(DataLoader(_Selected(self.plans, self.make, positions), batch_size=None, shuffle=False, **kwargs))
        chosen = set(positions)
        for i in range(len(self.plans)):
            yield i, next(made) if i in chosen else None
