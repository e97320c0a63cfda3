"""DVC stage `prepare@<paper>`: see mmrepro.pipeline.prepare. Usage: python stages/prepare.py <paper>"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this checkout's code, not an installed copy

from mmrepro.threads import apply_thread_policy  # noqa: E402

apply_thread_policy()  # before torch loads: OpenMP reads its thread settings once (see mmrepro.threads)

from mmrepro import pipeline  # noqa: E402
from mmrepro.cli import run_stage  # noqa: E402

if __name__ == "__main__":
    run_stage(lambda params, args: pipeline.prepare(params, *args), __doc__)
