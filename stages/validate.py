"""DVC stage `validate`: check params.yaml before any other stage runs. Usage: python stages/validate.py

Every stage depends on its output, so DVC runs it first whenever params.yaml or the schemas change, and a
bad file stops `dvc repro` here (one line, exit 2) before any stage has removed its outputs (a report,
trained models). The output's content is constant, so a valid change reruns only what it affects.

It also closes as FAILED the MLflow runs that crashed stages left RUNNING: after a params change DVC may
restore the train and evaluate stages from its run-cache, and then no stage of that paper runs to do it."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this checkout's code, not an installed copy

from mmrepro.cli import run_stage  # noqa: E402
from mmrepro.fileio import write_text_atomic  # noqa: E402

VALIDATED = Path("data/params.valid")


def validate(params, args) -> None:
    write_text_atomic(VALIDATED, "params.yaml: valid\n")
    from mmrepro.publish import close_runs_of_crashed_stages

    close_runs_of_crashed_stages(params)


if __name__ == "__main__":
    run_stage(validate, __doc__, n_args=0)
