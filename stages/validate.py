"""DVC stage `validate`: check params.yaml and the recipes in configs/ before any other stage runs, resolve
each selected paper's config and fingerprint the external datasets it reads. Usage: python stages/validate.py

Writes data/config/<paper>.json: the paper's config for the active profile (its recipe with params.yaml's
overrides, defaults filled in by the paper's schema) without its decoding keys, and data/config/<paper>.decode.json:
those keys (the config's `decode_keys`: beam width, sampling temperature, ...), which only evaluate reads. That
paper's stages depend on these files, so DVC reruns them exactly when their resolved config changes (not when
another profile's recipe does; a decoding change reruns evaluate, not training), and a bad file stops
`dvc repro` here (one line, exit 2) before any stage has removed its outputs (a report, trained models).

DVC runs it on every `dvc repro` (always_changed): it writes data/external/<paper>.json, a stat record of the
external dataset files each paper reads (mmrepro.pipeline.locate), so that a changed copy reruns that paper's
prepare; it removes the `.tmp` leftovers of killed stages, also of those DVC then restores from its run-cache;
and it closes as FAILED the MLflow runs that crashed stages left RUNNING (after a params change DVC may
restore the train and evaluate stages from its run-cache, and then no stage of that paper runs to do it).
One process for all papers: a stage process costs seconds of imports, a stat walk does not."""

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
            cfg = paper_config(params, name)
            for file, fields in ((f"{name}.json", cfg.training_fields()), (f"{name}.decode.json", cfg.decode_fields())):
                resolved = {"paper": name, "profile": params.profile, "config": fields}
                (out / file).write_text(json.dumps(resolved, indent=2, sort_keys=True) + "\n")
    from mmrepro.pipeline import locate

    for name in selected_papers(params):
        locate(params, name)
    from mmrepro.tracking import store_may_hold_runs

    if store_may_hold_runs():  # a fresh clone's first run has no store: MLflow is not even imported
        from mmrepro.publish import close_runs_of_crashed_stages

        close_runs_of_crashed_stages(params)


if __name__ == "__main__":
    run_stage(validate, __doc__, n_args=0)
