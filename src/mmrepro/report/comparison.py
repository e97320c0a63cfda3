"""Pair each paper's measured results with its published entries into comparison rows.

A row is `comparable` only when every condition holds (GUIDE, "Published comparisons are honest"):
  1. our dataset, split and scale are the published entry's;
  2. the evaluated test set *is* the paper's: the number of evaluated examples and the test split's
     content fingerprint (`mmrepro.datasets.split_identity`, found by the reader at prepare time) equal
     the official release's in `references/datasets.yaml`;
  3. the model was trained with the paper's shipped recipe, unchanged (the resolved config equals
     `recipe:` in `references/<paper>.yaml`), to completion (no step cap cut it short), and the paper
     module lists no departure that changes the number (`Paper.departures`).
Dataset-free measurements (split "-": GMACs, parameter counts of an architecture) need only 1.
Otherwise the verdict names every condition that failed, and no delta is computed: a difference between
numbers measured under different conditions would read as a replication gap that it is not.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from mmrepro.datasets import expected_split, identity_problems
from mmrepro.report.references import PublishedEntry, References

COLUMNS = ("paper", "variant", "metric", "dataset", "split", "ours", "ours_std", "n_seeds", "n_samples", "scale",
           "published", "published_dataset", "published_split", "published_source", "confidence", "delta",
           "recipe", "verdict")
DATA_FREE = "-"  # the split of a published entry that needs no dataset (GMACs, parameter counts)
OPERATIONAL_KEYS = frozenset({"download"})  # config keys that change how data arrives, not the result


@dataclass
class Row:
    paper: str
    variant: str
    metric: str
    dataset: str
    split: str
    ours: float | None
    ours_std: float | None
    n_seeds: int
    n_samples: int | None
    scale: str
    published: float | None
    published_dataset: str
    published_split: str
    published_source: str
    confidence: str
    delta: float | None
    recipe: str
    verdict: str

    def as_dict(self) -> dict:
        return {c: getattr(self, c) for c in COLUMNS}


def config_sha256(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


@dataclass
class RecipeCheck:
    """How one paper's models were trained, against the paper's recipe. `problems` is empty only when
    the resolved config is the paper's recipe, training completed and nothing departs from the paper."""

    status: str  # one line for the CSV's `recipe` column
    problems: list[str] = field(default_factory=list)


def recipe_check(metrics: dict, paper_recipe: dict | None) -> RecipeCheck:
    """`paper_recipe`: the paper's recipe resolved through the paper's config schema (defaults filled in),
    or None when the references record none."""
    config = metrics.get("config")
    problems = []
    if config is None:
        return RecipeCheck("unknown (the metrics record no config)", ["the training config was not recorded"])
    if not paper_recipe:
        status = "no paper recipe recorded"
        problems.append("no paper recipe recorded in references")
    else:
        differs = sorted(k for k in (set(config) | set(paper_recipe)) - OPERATIONAL_KEYS
                         if config.get(k) != paper_recipe.get(k))
        status = "paper's" if not differs else f"differs ({', '.join(differs)})"
        if differs:
            problems.append(f"recipe differs ({', '.join(differs)})")
    unfinished = sorted(k for k, t in metrics.get("training", {}).items() if not t.get("completed", False))
    if unfinished or not metrics.get("training"):
        problems.append("training did not complete" + (f" ({', '.join(unfinished)})" if unfinished else ""))
        status += "; training incomplete"
    departures = metrics.get("departures", [])
    if departures:
        problems.append("departs from the paper: " + "; ".join(departures))
        status += f"; {len(departures)} departure(s)"
    return RecipeCheck(status, problems)


def verdict(ours: dict, entry: PublishedEntry, recipe: RecipeCheck | None = None, identity: dict | None = None,
            identities: dict | None = None) -> str:
    """`identity`: the metrics' "identity" map ("<dataset>/<split>" -> found {"n", "sha256"});
    `identities`: references/datasets.yaml (loaded when None)."""
    if ours["value"] is None:
        return f"not measured: {ours['details'].get('unavailable', 'unavailable')}"
    reasons = []
    if (ours["dataset"], ours["split"]) != (entry.dataset, entry.split):
        reasons.append(f"ours is {ours['dataset']}/{ours['split']}, the paper's is {entry.dataset}/{entry.split}")
    if ours["scale"] != entry.scale:
        reasons.append(f"scales differ ({ours['scale']} vs {entry.scale})")
    if not reasons and entry.split != DATA_FREE:
        expected = expected_split(entry.dataset, entry.split, identities)
        found = (identity or {}).get(f"{ours['dataset']}/{ours['split']}")
        if found is None:
            reasons.append("test-set identity not recorded at prepare time")
        else:
            reasons += [f"test set: {p}" for p in identity_problems(found, expected)]
        n_samples = ours.get("n_samples")
        if expected is not None and n_samples != expected.get("n"):
            reasons.append(f"evaluated {n_samples} of the official {expected.get('n')} examples")
        reasons += (recipe or RecipeCheck("unknown", ["training recipe unknown"])).problems
    return "comparable" if not reasons else "not comparable: " + "; ".join(dict.fromkeys(reasons))


def _matches(ours: dict, entry: PublishedEntry) -> bool:
    return entry.metric == ours["metric"] and entry.variant in (None, ours["variant"])


def compare(paper: str, metrics: dict, refs: References, paper_recipe: dict | None = None,
            identities: dict | None = None) -> list[Row]:
    """Rows for one paper: each of our results with the published entries of the same metric (those
    on our dataset/split when there are any, else all of them, else none), then the published entries
    that none of our results was paired with. `paper_recipe`: see `recipe_check`."""
    rows: list[Row] = []
    used: set[int] = set()
    recipe = recipe_check(metrics, paper_recipe)
    identity = metrics.get("identity", {})
    for ours in metrics["results"]:
        base = dict(paper=paper, variant=ours["variant"], metric=ours["metric"], dataset=ours["dataset"],
                    split=ours["split"], ours=ours["value"], ours_std=ours["std"], n_seeds=ours["n_seeds"],
                    n_samples=ours.get("n_samples"), scale=ours["scale"], recipe=recipe.status)
        matched = [(i, e) for i, e in enumerate(refs.entries) if _matches(ours, e)]
        # measured on the paper's own dataset/split: pair with those entries only
        same_data = [(i, e) for i, e in matched if (e.dataset, e.split) == (ours["dataset"], ours["split"])]
        matched = same_data or matched
        if not matched:
            why = "no published number" + (f": {refs.note}" if refs.note and not refs.entries else "")
            if ours["value"] is None:
                why = f"not measured: {ours['details'].get('unavailable', 'unavailable')}"
            rows.append(Row(**base, published=None, published_dataset="", published_split="", published_source="",
                            confidence="", delta=None, verdict=why))
        for i, entry in matched:
            used.add(i)
            v = verdict(ours, entry, recipe, identity, identities)
            delta = ours["value"] - entry.value if v == "comparable" else None
            row = dict(base, recipe="n/a (dataset-free)") if entry.split == DATA_FREE else base
            rows.append(Row(**row, published=entry.value, published_dataset=entry.dataset,
                            published_split=entry.split, published_source=f"{refs.short}, {entry.source}",
                            confidence=entry.confidence, delta=delta, verdict=v))
    for i, entry in enumerate(refs.entries):
        if i not in used:
            rows.append(Row(paper=paper, variant=entry.variant or "", metric=entry.metric, dataset="", split="",
                            ours=None, ours_std=None, n_seeds=0, n_samples=None, scale=entry.scale,
                            published=entry.value, published_dataset=entry.dataset, published_split=entry.split,
                            published_source=f"{refs.short}, {entry.source}", confidence=entry.confidence, delta=None,
                            recipe="", verdict="not measured by this pipeline"))
    return rows
