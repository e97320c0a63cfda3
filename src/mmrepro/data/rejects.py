"""Inputs a reader skips on purpose (a filtered drawing, an utterance out of range, ...), recorded so that
what a prepared dataset leaves out is on disk, not only in the reader's code.

`pipeline.prepare` opens a `collecting()` block around the paper's prepare; readers call `reject(item,
reason)` for each input they drop; prepare writes the list to `data/<paper>/rejects.json` and its count
to info.json (`rejected`), which evaluate copies into the provenance file. Outside a `collecting()` block
(a reader used on its own) `reject` records nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_ACTIVE: ContextVar[list[dict[str, str]] | None] = ContextVar("mmrepro_rejects", default=None)


def reject(item: str, reason: str) -> None:
    """Record that input `item` (a path relative to its dataset's root, or an id) was skipped, and why."""
    active = _ACTIVE.get()
    if active is not None:
        active.append({"item": str(item), "reason": reason})


@contextmanager
def collecting() -> Iterator[list[dict[str, str]]]:
    """Yield the list that `reject` appends to while the block runs."""
    records: list[dict[str, str]] = []
    token = _ACTIVE.set(records)
    try:
        yield records
    finally:
        _ACTIVE.reset(token)
