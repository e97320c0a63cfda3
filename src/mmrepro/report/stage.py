"""The `report` stage: every paper's evaluation record (reports/provenance/<paper>.json) and DVC metrics
(reports/metrics/<paper>.json) + references -> reports/comparison.{html,md,csv,json} and
reports/results/<paper>.json, the curves for `dvc plots` (reports/curves/), logged to MLflow as the artifacts of a report run."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import mlflow
import yaml

from mmrepro.compute import STAGES, compute_path
from mmrepro.config import Params, selected_papers
from mmrepro.datasets import load_identities
from mmrepro.environment import environment
from mmrepro.fileio import atomic_dir, write_json_atomic
from mmrepro.papers import get_paper
from mmrepro.report.comparison import compare, recipe_check
from mmrepro.report.curves import write_curves
from mmrepro.report.references import References, load_references
from mmrepro.report.render import environment_block, write_reports
from mmrepro.report.results_json import results_document
from mmrepro.report.sections import Page, count_outcomes, section, total_compute
from mmrepro.tracking import display_uri, experiment_id, link_runs, open_run, run_tags


def paper_recipe(name: str, refs: References) -> dict | None:
    """The paper's recipe from its references, resolved through the paper's config schema (defaults
    filled in, as the metrics record the trained config); None when none is recorded."""
    if not refs.recipe:
        return None
    return get_paper(name).Config.model_validate(refs.recipe).model_dump(mode="json")


def load_record(name: str, profile: str, reports: Path) -> dict:
    """The paper's evaluation record; its DVC metrics file must be there too and hold the same means."""
    paths = [reports / "provenance" / f"{name}.json", reports / "metrics" / f"{name}.json"]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path} missing: run `dvc repro evaluate@{name}` first")
    record = json.loads(paths[0].read_text())
    if record["profile"] != profile:
        raise ValueError(f"{paths[0]} is from profile {record['profile']!r}, params say {profile!r}")
    means = {round(r["value"], 4) for r in record["results"] if r["value"] is not None}
    stale = [k for k, v in json.loads(paths[1].read_text()).items() if v not in means]
    if stale:
        raise ValueError(f"{paths[1]} does not match {paths[0]} ({', '.join(stale)}): rerun evaluate@{name}")
    return record


def load_costs(name: str, reports: Path) -> list[dict]:
    """The paper's stage cost records (reports/compute/<paper>/<stage>.json, mmrepro.compute) in stage order;
    a stage without one (outputs made before costs were recorded) is left out."""
    paths = [compute_path(name, stage, reports) for stage in STAGES]
    return [json.loads(p.read_text()) for p in paths if p.is_file()]


def concepts(shown: list[str]) -> list[dict]:
    """The overview notebook's concepts (concepts.yaml), each paper marked as in this report or not."""
    listed = yaml.safe_load(resources.files("mmrepro.report").joinpath("concepts.yaml").read_text())
    for concept in listed:
        for paper in concept["papers"]:
            paper["in_report"] = paper["paper"] in shown
    return listed


def build_report(params: Params, out_dir: Path = Path("reports")) -> dict[str, Path]:
    rows, sections, costs = [], [], []
    paper_runs: dict[str, dict[str, str]] = {}  # paper -> {seed: MLflow training run id}, linked from the report run
    identities = load_identities()
    names = selected_papers(params)
    exp_id = experiment_id(params.mlflow.experiment)
    with atomic_dir(out_dir / "results") as results:
        for name in names:
            record = load_record(name, params.profile, out_dir)
            paper_runs[name] = record.get("mlflow_runs", {})
            refs = load_references(name)
            recipe = paper_recipe(name, refs)
            paper_rows = compare(name, record, refs, recipe, identities)
            # the page lists the differing keys in a table of their own: the line says how many
            status = re.sub(r"differs \(([^)]*)\)", lambda m: f"differs in {m[1].count(',') + 1} key(s)",
                            recipe_check(record, recipe).status)
            costs.append(load_costs(name, out_dir))
            sections.append(section(name, paper_rows, refs, record, recipe, status, out_dir, exp_id, costs[-1]))
            rows += paper_rows
            write_json_atomic(results / f"{name}.json", results_document(record))
    write_curves(names, out_dir / "plots", out_dir / "curves")
    env = environment()
    page = Page(environment=environment_block(env, params.profile, params.seeds, display_uri()),
                counts=count_outcomes(rows), sections=sections, concepts=concepts(names),
                compute=total_compute(costs))
    paths = write_reports(rows, page, out_dir)
    with open_run(params.mlflow.experiment, run_name=f"report-{params.profile}",
                  tags=run_tags("report", {"profile": params.profile})):
        for path in paths.values():
            mlflow.log_artifact(str(path), artifact_path="report")
        mlflow.log_artifacts(str(out_dir / "results"), artifact_path="report/results")
        mlflow.log_param("papers", ",".join(names))
        link_runs(paper_runs)
    counts = ", ".join(f"{n} {k}" for k, n in page.counts.items())
    print(f"wrote {', '.join(str(p) for p in paths.values())} and {out_dir / 'results'}/ ({len(rows)} rows: {counts})")
    return paths
