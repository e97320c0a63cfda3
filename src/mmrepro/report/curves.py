"""The training curves of every paper in two long tables for `dvc plots show` (dvc.yaml's top-level
`plots:`): reports/curves/train_loss.csv (panel, series, step, loss) and reports/curves/validation.csv
(panel, series, step, value). A panel is a paper (training loss) or a paper's validation metric; a series
is one variant and seed. The `series_by_panel` template (.dvc/plots/) draws one chart per panel with a line
per series, so that variants and seeds of a paper are compared on one set of axes."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from mmrepro.fileio import write_text_atomic

_CURVE = re.compile(r"^(train_loss|val)_(?P<variant>.+)_seed(?P<seed>\d+)\.csv$")


def write_curves(papers: list[str], plots: Path, out_dir: Path) -> dict[str, Path]:
    loss, validation = [], []
    for paper in papers:
        for path in sorted((plots / paper).glob("*.csv")):
            found = _CURVE.match(path.name)
            if not found:
                continue
            frame = pd.read_csv(path)
            series = f"{found['variant']} seed{found['seed']}"
            if found[1] == "train_loss":
                loss.append(frame[["step", "loss"]].assign(panel=paper, series=series))
                continue
            metrics = [c for c in frame.columns if c not in ("epoch", "step")]
            long = frame.melt(id_vars=["step"], value_vars=metrics, var_name="metric", value_name="value").dropna()
            validation.append(long.assign(panel=paper + ": " + long.pop("metric"), series=series))
    paths = {"train_loss": out_dir / "train_loss.csv", "validation": out_dir / "validation.csv"}
    for name, frames, y in (("train_loss", loss, "loss"), ("validation", validation, "value")):
        table = pd.concat(frames) if frames else pd.DataFrame(columns=["panel", "series", "step", y])
        write_text_atomic(paths[name], table[["panel", "series", "step", y]].to_csv(index=False))
    return paths
