"""Shared entry-point wrapper: a params or dataset problem is one line on stderr and exit code 2; a
prepared file that fails verification, an MLflow failure or a full disk is one line and exit code 1."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn

from mmrepro.config import Params, ParamsError, load_params
from mmrepro.datasets import DatasetError
from mmrepro.papers import REGISTRY
from mmrepro.provenance import DataIntegrityError
from mmrepro.errors import DiskFullError, TrackingError


def run_stage(body: Callable[[Params, list[str]], object], usage: str, n_args: int = 1, many: bool = False) -> None:
    """`many`: one or more paper names (all checked); else exactly `n_args` arguments, the first a paper."""
    args = sys.argv[1:]
    if "-h" in args or "--help" in args:
        print(usage)
        return
    if (len(args) != n_args) if not many else not args:
        print(usage, file=sys.stderr)
        sys.exit(2)
    try:
        papers = args if many else args[:1]
        params = load_params("params.yaml", papers if n_args or many else None)  # validate, report: every paper
        for name in papers:
            if name not in params.recipes:
                if name not in REGISTRY:
                    raise ParamsError(f"{name}: unknown paper (known: {', '.join(sorted(REGISTRY))})")
                raise ParamsError(f"{name}: no recipe file configs/{name}.yaml (have: {', '.join(params.recipes)})")
        body(params, args)
    except ParamsError as exc:
        _fail(f"{exc.source}: {exc}", 2)
    except DataIntegrityError as exc:  # a prepared file changed after prepare: one line naming it
        _fail(f"data: {exc}", 1)
    except TrackingError as exc:  # MLflow failed: what was kept on disk and how to log it later
        _fail(str(exc), 1)
    except DiskFullError as exc:  # not torch's "iostream error": which file, how much it needed, how much was free
        _fail(f"disk: {exc.strerror}", 1)
    except DatasetError as exc:  # a missing, undecodable or non-official external dataset: one line
        _fail(f"dataset: {_one_line(exc)}", 2)


def _fail(message: str, code: int) -> NoReturn:
    """The message on a line of its own, then exit: a progress bar the error interrupted is closed first
    (tqdm leaves the cursor after the bar, and the message would continue its line)."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()
    print(message, file=sys.stderr)
    sys.exit(code)


def _one_line(exc: BaseException) -> str:
    """The error's own message. Raised in a DataLoader worker, torch re-raises it in the main process with
    the worker's traceback as its message ("Caught DatasetError in DataLoader worker process 0. Original
    Traceback ... mmrepro.datasets.DatasetError: <message>"): keep the message, the traceback's last line."""
    lines = str(exc).strip().splitlines()
    if len(lines) > 1 and lines[0].startswith("Caught ") and ": " in lines[-1]:
        return lines[-1].split(": ", 1)[1]
    return str(exc)
