"""Pair each paper's measured results with its published entries into comparison rows.

A row is `comparable` only when our dataset and split are the paper's (and the scales agree);
otherwise the verdict says why not, and no delta is computed: a difference between numbers
measured on different data would read as a replication gap that it is not.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmrepro.report.references import PublishedEntry, References

COLUMNS = ("paper", "variant", "metric", "dataset", "split", "ours", "ours_std", "n_seeds", "scale",
           "published", "published_dataset", "published_split", "published_source", "confidence", "delta",
           "verdict")


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
    scale: str
    published: float | None
    published_dataset: str
    published_split: str
    published_source: str
    confidence: str
    delta: float | None
    verdict: str

    def as_dict(self) -> dict:
        return {c: getattr(self, c) for c in COLUMNS}


def verdict(ours: dict, entry: PublishedEntry) -> str:
    if ours["value"] is None:
        return f"not measured: {ours['details'].get('unavailable', 'unavailable')}"
    reasons = []
    if (ours["dataset"], ours["split"]) != (entry.dataset, entry.split):
        reasons.append(f"ours is {ours['dataset']}/{ours['split']}, the paper's is {entry.dataset}/{entry.split}")
    if ours["scale"] != entry.scale:
        reasons.append(f"scales differ ({ours['scale']} vs {entry.scale})")
    return "comparable" if not reasons else "not comparable: " + "; ".join(reasons)


def _matches(ours: dict, entry: PublishedEntry) -> bool:
    return entry.metric == ours["metric"] and entry.variant in (None, ours["variant"])


def compare(paper: str, metrics: dict, refs: References) -> list[Row]:
    """Rows for one paper: each of our results with the published entries of the same metric (those
    on our dataset/split when there are any, else all of them, else none), then the published entries
    that none of our results was paired with."""
    rows: list[Row] = []
    used: set[int] = set()
    for ours in metrics["results"]:
        base = dict(paper=paper, variant=ours["variant"], metric=ours["metric"], dataset=ours["dataset"],
                    split=ours["split"], ours=ours["value"], ours_std=ours["std"], n_seeds=ours["n_seeds"],
                    scale=ours["scale"])
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
            v = verdict(ours, entry)
            delta = ours["value"] - entry.value if v == "comparable" else None
            rows.append(Row(**base, published=entry.value, published_dataset=entry.dataset,
                            published_split=entry.split, published_source=f"{refs.short}, {entry.source}",
                            confidence=entry.confidence, delta=delta, verdict=v))
    for i, entry in enumerate(refs.entries):
        if i not in used:
            rows.append(Row(paper=paper, variant=entry.variant or "", metric=entry.metric, dataset="", split="",
                            ours=None, ours_std=None, n_seeds=0, scale=entry.scale, published=entry.value,
                            published_dataset=entry.dataset, published_split=entry.split,
                            published_source=f"{refs.short}, {entry.source}", confidence=entry.confidence, delta=None,
                            verdict="not measured by this pipeline"))
    return rows
