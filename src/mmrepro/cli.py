"""Shared entry-point wrapper: a params problem is one line on stderr and exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable

from mmrepro.config import Params, ParamsError, load_params
from mmrepro.datasets import DatasetError
from mmrepro.papers import REGISTRY


def run_stage(body: Callable[[Params, list[str]], object], usage: str, n_args: int = 1) -> None:
    args = sys.argv[1:]
    if "-h" in args or "--help" in args:
        print(usage)
        return
    if len(args) != n_args:
        print(usage, file=sys.stderr)
        sys.exit(2)
    try:
        params = load_params("params.yaml")
        if args and args[0] not in params.papers:
            if args[0] not in REGISTRY:
                raise ParamsError(f"{args[0]}: unknown paper (known: {', '.join(sorted(REGISTRY))})")
            raise ParamsError(f"papers.{args[0]}: not in params.yaml (have: {', '.join(params.papers)})")
        body(params, args)
    except ParamsError as exc:
        print(f"params.yaml: {exc}", file=sys.stderr)
        sys.exit(2)
    except DatasetError as exc:  # a missing or non-official external dataset: one line, not a traceback
        print(f"dataset: {exc}", file=sys.stderr)
        sys.exit(2)
