"""Resume checkpoints that fail safe: a file that cannot be loaded safely is set aside, never fatal.

A checkpoint resumes training only when it loads with `weights_only=True` and was written for the
same fingerprint (code, config and verified data). A corrupt, truncated, tampered (pickled code) or
foreign file is renamed to `<name>.bad-<UTC timestamp>` with one warning line naming both paths, and
training starts fresh; torch's advice to retry with `weights_only=False` is never shown, because
following it would execute whatever the file holds.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import torch

REQUIRED = ("fingerprint", "epoch", "step", "model", "optimizer", "scheduler", "losses", "validation")


def _set_aside(path: Path, why: str) -> None:
    bad = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    path.replace(bad)
    print(f"warning: checkpoint {path} {why}; moved to {bad.name}, training starts fresh", file=sys.stderr)


def _reason(exc: Exception) -> str:
    """torch's error in a few words, without its advice to retry with weights_only=False."""
    text = " ".join(str(exc).split())
    if "WeightsUnpickler error:" in text:  # the safe unpickler refused something: say what, not the advice
        refused = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0].strip()
        return f"not tensors only: {refused}"
    return text.split(". ", 1)[0].rstrip(".")[:160] or exc.__class__.__name__


def load_resumable(path: Path, fingerprint: str, device: torch.device) -> dict | None:
    """The checkpoint's state when it is safe and written for `fingerprint`; else None.

    A checkpoint of another fingerprint is left in place (it is overwritten at the end of the first
    epoch); one that cannot be loaded safely is moved aside."""
    if not path.is_file():
        return None
    try:
        with warnings.catch_warnings():  # torch's warnings about a foreign pickle also quote weights_only
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to load is the same verdict: not usable
        _set_aside(path, f"cannot be loaded safely ({_reason(exc)})")
        return None
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED):
        _set_aside(path, "is not a training checkpoint of this project")
        return None
    if state["fingerprint"] != fingerprint:
        print(f"checkpoint {path} is for another code, config or data; starting fresh")
        return None
    return state
