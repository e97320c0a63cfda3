"""Log a paper's results that are on disk into MLflow: `python -m mmrepro.replay <paper> [<paper> ...]`.

For a stage whose MLflow logging failed (unreachable, read-only or locked store): the results were
written to reports/ first, and this logs them once the store works, into the runs recorded in
artifacts/<paper>/runs.json, or into new runs when the current store ($MLFLOW_TRACKING_URI) is another.
Points already logged are not duplicated, so replaying twice is harmless.
"""

from __future__ import annotations

import sys

from mmrepro.cli import run_stage
from mmrepro.publish import publish_evaluation, tracking_failure
from mmrepro.tracking import set_client_budget


def replay(params, names: list[str]) -> None:
    set_client_budget(params.mlflow.timeout_s, params.mlflow.retries)
    for name in names:
        with tracking_failure(f"nothing changed on disk; retry: python -m mmrepro.replay {name}"):
            runs = publish_evaluation(params, name)
        print(f"[{name}] logged to MLflow: " + ", ".join(f"seed {s} -> run {r}" for s, r in runs.items()))


if __name__ == "__main__":
    run_stage(replay, __doc__, n_args=len(sys.argv[1:]) or 1, many=True)
