"""DVC stage `report`: see mmrepro.report.stage. Usage: python stages/report.py"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this checkout's code, not an installed copy

from mmrepro.threads import apply_thread_policy  # noqa: E402

apply_thread_policy()  # before torch loads: OpenMP reads its thread settings once (see mmrepro.threads)

from mmrepro.cli import run_stage  # noqa: E402
from mmrepro.report.stage import build_report  # noqa: E402

if __name__ == "__main__":
    run_stage(lambda params, args: build_report(params), __doc__, n_args=0)
