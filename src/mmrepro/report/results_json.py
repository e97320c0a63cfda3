"""One results file per paper run (reports/results/<paper>.json) in the shape lm-evaluation-harness
writes (`results`, `configs`, `versions`, `n-samples`, `config`, `git_hash`, `date`), so that tools
reading lm-eval output read ours.

A task is one evaluated (variant, dataset, split) of the paper: `<paper>/<variant>/<dataset>/<split>`.
Metric keys are lm-eval's `"<metric>,none"` (no filter) with `"<metric>_stderr,none"`: the standard error
of the mean over training seeds (sample std / sqrt(n)), or "N/A" for one seed, as lm-eval writes it when it
has no stderr. A task's version is the content fingerprint of its test split when prepare recorded one
(what changes the number), else the prepared data's fingerprint.
"""

from __future__ import annotations

import math
import time


def _task(paper: str, result: dict) -> str:
    return "/".join((paper, result["variant"], result["dataset"], result["split"]))


def results_document(provenance: dict) -> dict:
    paper = provenance["paper"]
    results: dict[str, dict] = {}
    configs: dict[str, dict] = {}
    versions: dict[str, str] = {}
    n_samples: dict[str, dict] = {}
    for r in provenance["results"]:
        task = _task(paper, r)
        entry = results.setdefault(task, {"alias": task})
        entry[f"{r['metric']},none"] = r["value"]
        stderr = r["std"] / math.sqrt(r["n_seeds"]) if r["std"] is not None and r["n_seeds"] > 1 else "N/A"
        entry[f"{r['metric']}_stderr,none"] = stderr
        identity = provenance.get("identity", {}).get(f"{r['dataset']}/{r['split']}", {})
        versions[task] = (identity.get("sha256") or provenance.get("data_fingerprint") or "unknown")[:12]
        config = configs.setdefault(task, {"task": task, "dataset_path": r["dataset"], "test_split": r["split"],
                                           "metric_list": [], "metadata": {}})
        config["metric_list"].append({"metric": r["metric"], "higher_is_better": r["higher_is_better"]})
        config["metadata"][r["metric"]] = {"scale": r["scale"], "per_seed": r["per_seed"], "details": r["details"]}
        if r.get("n_samples") is not None:
            n_samples[task] = {"original": r["n_samples"], "effective": r["n_samples"]}
    return {
        "results": results, "configs": configs, "versions": versions, "n-samples": n_samples,
        "config": {"model": paper, "model_args": provenance.get("config"), "profile": provenance.get("profile"),
                   "seeds": provenance.get("seeds"), "device": provenance.get("device"),
                   "training": provenance.get("training"), "mlflow_runs": provenance.get("mlflow_runs")},
        "git_hash": provenance.get("git_sha"), "date": time.time(),
        "package_versions": provenance.get("packages", {}),
        "python": provenance.get("python"), "torch": provenance.get("torch"), "cuda": provenance.get("cuda"),
    }
