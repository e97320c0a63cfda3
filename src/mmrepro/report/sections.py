"""The report's page model: a summary line and a section per paper, built once from the comparison rows
and rendered by both templates (HTML and Markdown), so that the two always say the same thing."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from mmrepro.report.comparison import Row
from mmrepro.report.references import References

FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg")
MAX_FIGURES = 8  # per paper on the page; the rest are listed as links (a smoke run writes dozens of samples)
ARXIV = re.compile(r"arXiv[: ]+(\d{4}\.\d{4,5})")
TABLE = re.compile(r"\b(Table|Tab\.|Figure|Fig\.|Section|Sec\.)\s*[\w.]+")  # "Table 2" in a published entry's source
OUTCOMES = ("comparable", "not comparable", "not measured", "no published number")


def fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:.1f}"


def outcome(verdict: str) -> str:
    """The verdict's category (one of OUTCOMES); the rest of the verdict is its reason."""
    return next(o for o in OUTCOMES if verdict.startswith(o))


def reason(verdict: str, width: int = 120) -> str:
    """The verdict's reason in one line: a "not comparable" verdict's first condition with how many more
    failed, otherwise its explanation, cut at `width` characters."""
    kind, _, rest = verdict.partition(": ")
    if kind == "not comparable":
        reasons = rest.split("; ")
        rest = reasons[0] + (f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else "")
    return rest if len(rest) <= width else rest[: width - 1].rstrip() + "…"


@dataclass
class DetailRow:
    """One comparison row as the page shows it (strings, ready to print)."""

    variant: str
    metric: str
    ours: str  # "14.1 ± 0.3 (n=3)"
    ours_on: str  # "tts-speech/test-unseen-voices"
    published: str
    published_on: str
    source: str
    source_href: str | None  # the paper's PDF when the source is one of its tables or figures (not a blog)
    outcome: str
    verdict: str

    @classmethod
    def of(cls, row: Row, pdf: str | None = None) -> DetailRow:
        ours = fmt(row.ours)
        if ours:
            ours += (f" ± {fmt(row.ours_std)}" if row.ours_std is not None else "") + f" (n={row.n_seeds})"
        return cls(variant=row.variant, metric=row.metric, ours=ours, ours_on=_on(row.dataset, row.split),
                   published=fmt(row.published), published_on=_on(row.published_dataset, row.published_split),
                   source=row.published_source, source_href=pdf if TABLE.search(row.published_source) else None,
                   outcome=outcome(row.verdict), verdict=row.verdict)


def _on(dataset: str, split: str) -> str:
    """"librispeech/test-clean"; a dataset-free measurement (split "-") names only its input."""
    return "/".join(p for p in (dataset, split) if p and p != "-") or ("dataset-free" if dataset else "")


@dataclass
class Link:
    text: str
    href: str


@dataclass
class Section:
    paper: str
    title: str
    citation: str
    links: list[Link]  # the paper, its PDF (the source tables), our copy of the published numbers
    note: str
    claims: list[str]
    data: str  # "counting-dots (train 256, val 40, test 40)"
    headline: DetailRow
    recipe_status: str
    recipe_diff: list[tuple[str, str, str]]  # (key, ours, the paper's) where they differ
    departures: list[str]
    rows: list[DetailRow]  # published comparisons, each measurement once
    folded: list[DetailRow]  # repeated pairings, "no published number" and unmeasured rows
    figures: list[Link]  # href relative to the report
    more_figures: list[Link]
    runs: list[tuple[str, str, str | None]]  # (seed, run id, MLflow URL when the tracking URI is a server)
    compute: str = ""  # "prepare 1.2 min, train 9.3 min, evaluate 48 s: 11.3 min (...)"; mmrepro.compute


@dataclass
class Page:
    environment: dict[str, str]
    counts: dict[str, int]
    sections: list[Section]
    concepts: list[dict]
    compute: str = ""  # every selected paper's stages together (describe_compute)


def pdf_url(refs: References) -> str | None:
    found = ARXIV.search(refs.citation)
    return f"https://arxiv.org/pdf/{found[1]}" if found else None


def paper_links(paper: str, refs: References) -> list[Link]:
    """The paper's arXiv page, its PDF named with the tables the published numbers come from, and our copy
    of those numbers (references/<paper>.yaml, relative to reports/comparison.html)."""
    links = []
    pdf = pdf_url(refs)
    if pdf:
        links.append(Link(f"arXiv {pdf.rsplit('/', 1)[1]}", pdf.replace("/pdf/", "/abs/")))
        tables = ", ".join(dict.fromkeys(m[0] for e in refs.entries if (m := TABLE.search(e.source))))
        links.append(Link(f"PDF ({tables})" if tables else "PDF", pdf))
    links.append(Link("published numbers (references)", f"../references/{paper}.yaml"))
    return links


def headline_row(rows: list[Row], compared: list[str]) -> Row:
    """The summary's row for a paper: its first compared metric, preferring a measured row with a published
    number, then any measured row, then an unmeasured published one."""
    for metric in [*compared, None]:
        pool = [r for r in rows if metric is None or r.metric == metric]
        for good in (lambda r: r.ours is not None and r.published is not None, lambda r: r.ours is not None,
                     lambda r: True):
            found = [r for r in pool if good(r)]
            if found:
                return found[0]
    raise ValueError("a paper with no rows has no headline")


def fold(rows: list[Row]) -> tuple[list[Row], list[Row]]:
    """Shown: each measurement's first pairing with a published number, and published numbers we did not
    measure. Folded: later pairings of the same measurement and rows without a published number."""
    shown, folded, seen = [], [], set()
    for row in rows:
        key = (row.variant, row.metric, row.dataset, row.split)
        if row.published is None or (row.ours is not None and key in seen):
            folded.append(row)
        else:
            shown.append(row)
            seen.add(key)
    return shown, folded


def figures(paper: str, reports: Path) -> list[Link]:
    """Training curves, then the paper's own figures (attention maps, samples, loss by context); each
    href relative to reports/comparison.html, each text relative to the paper's folder."""
    found = []
    for root in (reports / "plots" / paper, reports / "eval" / paper):
        found += [Link(p.relative_to(root).as_posix(), p.relative_to(reports).as_posix())
                  for p in sorted(root.rglob("*")) if p.is_file() and p.suffix.lower() in FIGURE_SUFFIXES]
    return found


def describe_data(provenance: dict) -> str:
    splits = ", ".join(f"{k} {v}" for k, v in provenance.get("splits", {}).items())
    return f"{provenance.get('dataset', '?')} ({splits})" if splits else str(provenance.get("dataset", "?"))


def recipe_diff(config: dict | None, recipe: dict | None) -> list[tuple[str, str, str]]:
    if not config or not recipe:
        return []
    return [(k, str(config.get(k, "-")), str(recipe.get(k, "-")))
            for k in sorted(set(config) | set(recipe)) if config.get(k) != recipe.get(k)]


def run_links(provenance: dict, experiment_id: str | None) -> list[tuple[str, str, str | None]]:
    uri = (provenance.get("tracking_uri") or "").rstrip("/")
    server = uri.startswith(("http://", "https://")) and experiment_id is not None
    return [(seed, run_id, f"{uri}/#/experiments/{experiment_id}/runs/{run_id}" if server else None)
            for seed, run_id in sorted(provenance.get("mlflow_runs", {}).items())]


def section(paper: str, rows: list[Row], refs: References, provenance: dict, recipe: dict | None,
            recipe_status: str, reports: Path, experiment_id: str | None, costs: list[dict] | None = None) -> Section:
    shown, folded = fold(rows)
    found = figures(paper, reports)
    pdf = pdf_url(refs)
    return Section(
        paper=paper, title=provenance.get("title", paper), citation=refs.citation,
        links=paper_links(paper, refs),
        note=refs.note or "", claims=list(refs.claims), data=describe_data(provenance),
        headline=DetailRow.of(headline_row(rows, refs.compared()), pdf), recipe_status=recipe_status,
        recipe_diff=recipe_diff(provenance.get("config"), recipe), departures=list(provenance.get("departures", [])),
        rows=[DetailRow.of(r, pdf) for r in shown], folded=[DetailRow.of(r, pdf) for r in folded],
        figures=found[:MAX_FIGURES], more_figures=found[MAX_FIGURES:], runs=run_links(provenance, experiment_id),
        compute=describe_compute(costs or []),
    )


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def _wall_and_cpu(records: list[dict]) -> str:
    """"11.3 min wall, 22.0 min CPU": the records' wall and CPU seconds summed."""
    return f"{duration(sum(r['wall_s'] for r in records))} wall, {duration(sum(r['cpu_s'] for r in records))} CPU"


def describe_compute(records: list[dict]) -> str:
    """One line from a paper's stage cost records (mmrepro.compute, in stage order): each stage's wall time,
    their sum, the CPU time and where they ran; "not recorded" without records."""
    if not records:
        return "not recorded"
    stages = ", ".join(f"{r['stage']} {duration(r['wall_s'])}" for r in records)
    where = sorted({f"{r['device']}, {r['threads']} thread{'s' if r['threads'] != 1 else ''}" for r in records})
    extra = "; training resumed from a checkpoint: its time is the last attempt's" if any(
        r.get("resumed") for r in records) else ""
    return f"{stages}: {_wall_and_cpu(records)} ({'; '.join(where)}){extra}"


def total_compute(per_paper: list[list[dict]]) -> str:
    """The run's papers together: wall and CPU time summed over every recorded stage, and how many papers
    have no record."""
    records = [r for costs in per_paper for r in costs]
    missing = sum(not costs for costs in per_paper)
    if not records:
        return "not recorded"
    return (f"{_wall_and_cpu(records)} over {len(per_paper) - missing} paper(s)"
            + (f" ({missing} without a record)" if missing else ""))


def count_outcomes(rows: list[Row]) -> dict[str, int]:
    counts = dict.fromkeys(OUTCOMES, 0)
    for row in rows:
        counts[outcome(row.verdict)] += 1
    return counts
