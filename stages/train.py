"""DVC stage `train@<paper>`: see mmrepro.pipeline.train. Usage: python stages/train.py <paper>
With train.nproc > 1 in params.yaml the stage reruns itself under torchrun (mmrepro.distributed)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this checkout's code, not an installed copy

from mmrepro.threads import apply_thread_policy  # noqa: E402

apply_thread_policy()  # before torch loads: OpenMP reads its thread settings once (see mmrepro.threads)

from mmrepro import pipeline  # noqa: E402
from mmrepro.cli import run_stage  # noqa: E402
from mmrepro.distributed import relaunch_under_torchrun  # noqa: E402


def _train(params, args):
    relaunch_under_torchrun(params.train.nproc)  # returns only in a torchrun worker or with nproc 1
    return pipeline.train(params, *args)


if __name__ == "__main__":
    run_stage(_train, __doc__)
