"""Write the comparison table as CSV, Markdown and HTML, each with the environment block on top."""

from __future__ import annotations

import html
import math
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from mmrepro.fileio import write_text_atomic
from mmrepro.report.comparison import COLUMNS, Row


def environment_block(env: dict, profile: str, seeds: list[int], tracking: str) -> dict[str, str]:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "git sha": f"{env['git_sha']}{' (dirty)' if env['git_dirty'] else ''}",
        "python": env["python"],
        "torch": env["torch"],
        "cuda": env["cuda"],
        "device": env["device"],
        "profile": profile,
        "seeds": ", ".join(map(str, seeds)),
        "mlflow": tracking,
    }


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.1f}"
    return str(value)


def to_frame(rows: list[Row]) -> pd.DataFrame:
    frame = pd.DataFrame([r.as_dict() for r in rows], columns=list(COLUMNS))
    return frame.astype({"n_seeds": "Int64", "n_samples": "Int64"})  # counts stay integers beside empty cells


def write_reports(rows: list[Row], env_block: dict[str, str], notes: list[str], out_dir: Path) -> dict[str, Path]:
    frame = to_frame(rows)
    paths = {ext: out_dir / f"comparison.{ext}" for ext in ("csv", "md", "html")}

    header = "".join(f"# {k}: {v}\n" for k, v in env_block.items())
    write_text_atomic(paths["csv"], header + frame.to_csv(index=False))

    shown = frame.map(_fmt)
    lines = ["# mmrepro: replication results", "", "```"]
    lines += [f"{k:9s} {v}" for k, v in env_block.items()]
    lines += ["```", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(v).replace("|", "/") for v in row) + " |" for row in shown.itertuples(index=False)]
    lines += ["", "Scales: `x100` = percent or caption metrics as printed in the papers; `raw` otherwise. "
              "`delta` = ours - published, given only for comparable rows."]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    write_text_atomic(paths["md"], "\n".join(lines) + "\n")

    env_html = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in env_block.items())
    table = shown.to_html(index=False, escape=True, classes="comparison", border=0)
    notes_html = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    write_text_atomic(paths["html"], f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mmrepro comparison</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}} .env th{{background:#f4f4f4}}</style></head>
<body><h1>mmrepro: replication results</h1>
<table class="env">{env_html}</table>
<h2>Comparison</h2>{table}
<p>Scales: x100 = percent or caption metrics as printed in the papers; raw otherwise.
delta = ours - published, given only for comparable rows.</p>
<h2>Notes</h2><ul>{notes_html}</ul></body></html>
""")
    return paths
