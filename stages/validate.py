"""DVC stage `validate`: check params.yaml and the recipes in configs/ before any other stage runs, and resolve
each selected paper's config. Usage: python stages/validate.py

Writes data/config/<paper>.json: the paper's config for the active profile (its recipe with params.yaml's
overrides, defaults filled in by the paper's schema). That paper's stages depend on this file, so DVC reruns
them exactly when their resolved config changes (not when another profile's recipe does), and a bad file stops
`dvc repro` here (one line, exit 2) before any stage has removed its outputs (a report, trained models).

It also closes as FAILED the MLflow runs that crashed stages left RUNNING: after a params change DVC may
restore the train and evaluate stages from its run-cache, and then no stage of that paper runs to do it."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this checkout's code, not an installed copy

from mmrepro.cli import run_stage  # noqa: E402
from mmrepro.config import paper_config, selected_papers  # noqa: E402
from mmrepro.fileio import atomic_dir  # noqa: E402

RESOLVED = Path("data/config")


def validate(params, args) -> None:
    with atomic_dir(RESOLVED) as out:
        for name in selected_papers(params):
            resolved = {"paper": name, "profile": params.profile, "config": paper_config(params, name).model_dump(mode="json")}
            (out / f"{name}.json").write_text(json.dumps(resolved, indent=2, sort_keys=True) + "\n")
    from mmrepro.publish import close_runs_of_crashed_stages

    close_runs_of_crashed_stages(params)


if __name__ == "__main__":
    run_stage(validate, __doc__, n_args=0)
