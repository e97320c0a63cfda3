"""Write the report: comparison.{html,md} from one page model through Jinja2 templates
(templates/comparison.*.j2), comparison.csv (plain: one header line, then the rows) and comparison.json
(the environment, the counts and every row)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from mmrepro.fileio import write_json_atomic, write_text_atomic
from mmrepro.report.comparison import COLUMNS, Row
from mmrepro.report.sections import Page, reason

_BACKTICKS = re.compile(r"`([^`]+)`")


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


def to_frame(rows: list[Row]) -> pd.DataFrame:
    frame = pd.DataFrame([r.as_dict() for r in rows], columns=list(COLUMNS))
    return frame.astype({"n_seeds": "Int64", "n_samples": "Int64"})  # counts stay integers beside empty cells


def _code(text: str) -> Markup:
    """HTML: `name` -> <code>name</code>, everything else escaped."""
    return Markup(_BACKTICKS.sub(r"<code>\1</code>", str(escape(text))))


def _cell(text: str) -> str:
    """Markdown table cell: a pipe or newline would end the cell or the row."""
    return str(text).replace("|", "/").replace("\n", " ")


def _templates() -> Environment:
    env = Environment(loader=PackageLoader("mmrepro.report", "templates"), undefined=StrictUndefined,
                      autoescape=select_autoescape(["html.j2"]), keep_trailing_newline=True)
    env.filters.update(code=_code, cell=_cell, reason=reason)
    return env


def write_reports(rows: list[Row], page: Page, out_dir: Path) -> dict[str, Path]:
    paths = {ext: out_dir / f"comparison.{ext}" for ext in ("csv", "md", "html", "json")}
    frame = to_frame(rows)
    write_text_atomic(paths["csv"], frame.to_csv(index=False))
    templates = _templates()
    for ext in ("md", "html"):
        write_text_atomic(paths[ext], templates.get_template(f"comparison.{ext}.j2").render(page=page))
    write_json_atomic(paths["json"], {"environment": page.environment, "counts": page.counts,
                                      "rows": [r.as_dict() for r in rows]})
    return paths
