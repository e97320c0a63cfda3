"""The `report` stage: every paper's metrics + references -> reports/comparison.{csv,md,html},
logged to MLflow as the artifacts of a report run."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow

from mmrepro.config import Params, selected_papers
from mmrepro.environment import environment
from mmrepro.datasets import load_identities
from mmrepro.papers import get_paper
from mmrepro.report.comparison import compare, recipe_check
from mmrepro.report.references import References, load_references
from mmrepro.report.render import environment_block, write_reports
from mmrepro.tracking import display_uri, link_runs, open_run, run_tags


def paper_recipe(name: str, refs: References) -> dict | None:
    """The paper's recipe from its references, resolved through the paper's config schema (defaults
    filled in, as the metrics record the trained config); None when none is recorded."""
    if not refs.recipe:
        return None
    return get_paper(name).Config.model_validate(refs.recipe).model_dump(mode="json")


def build_report(params: Params, out_dir: Path = Path("reports")) -> dict[str, Path]:
    rows, notes = [], []
    paper_runs: dict[str, dict[str, str]] = {}  # paper -> {seed: MLflow training run id}, linked from the report run
    identities = load_identities()
    for name in selected_papers(params):
        path = Path("reports/metrics") / f"{name}.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} missing: run `dvc repro evaluate@{name}` first")
        metrics = json.loads(path.read_text())
        paper_runs[name] = metrics.get("mlflow_runs", {})
        if metrics["profile"] != params.profile:
            raise ValueError(f"{path} is from profile {metrics['profile']!r}, params say {params.profile!r}")
        refs = load_references(name)
        recipe = paper_recipe(name, refs)
        rows += compare(name, metrics, refs, recipe, identities)
        notes.append(f"{name}: {metrics['title']} — our data: {metrics['dataset']} {metrics['splits']}; "
                     f"published: {refs.citation}" + (f" ({refs.note})" if refs.note else ""))
        check = recipe_check(metrics, recipe)
        notes.append(f"{name}: recipe {check.status}" + (f" — {'; '.join(check.problems)}" if check.problems else ""))
        notes += [f"{name}: published claim (no table value): {claim}" for claim in refs.claims]
    env = environment()
    block = environment_block(env, params.profile, params.seeds, display_uri())
    paths = write_reports(rows, block, notes, out_dir)
    with open_run(params.mlflow.experiment, run_name=f"report-{params.profile}",
                  tags=run_tags("report", {"profile": params.profile})):
        for path in paths.values():
            mlflow.log_artifact(str(path), artifact_path="report")
        mlflow.log_param("papers", ",".join(selected_papers(params)))
        link_runs(paper_runs)
    print(f"wrote {', '.join(str(p) for p in paths.values())} ({len(rows)} rows)")
    return paths
