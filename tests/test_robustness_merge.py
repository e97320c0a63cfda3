"""benchmarks/robustness.py keeps one grid per (paper, thread count): a new grid adds its thread counts to the
stored entry and replaces only the ones it ran, and the verdict covers every stored run."""

import importlib.util
import json
from pathlib import Path

import pytest

SPEC = importlib.util.spec_from_file_location("robustness", Path(__file__).resolve().parents[1] / "benchmarks" / "robustness.py")
robustness = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(robustness)

LABEL = "transducer/wer"  # the Conformer's headline, target <= 15


def _grid(commit: str) -> dict:
    return {"profile": "cpu", "commit": commit, "seeds": [0, 1], "load_avg_at_end": [1.0, 1.0, 1.0]}


def test_a_grid_of_another_thread_count_adds_and_the_same_thread_count_replaces():
    one = robustness.merge_grid(None, "conformer", [1], _grid("a"), {LABEL: {"1": {"0": 14.0, "1": 14.5}}})
    assert one["metrics"][LABEL]["verdict"] == "<= 15: met in every run; met on each thread count's mean"
    two = robustness.merge_grid(one, "conformer", [2], _grid("b"), {LABEL: {"2": {"0": 16.0, "1": 14.0}}})
    metric = two["metrics"][LABEL]
    assert metric["per_threads_seed"] == {"1": {"0": 14.0, "1": 14.5}, "2": {"0": 16.0, "1": 14.0}}
    assert metric["mean"] == pytest.approx(14.625) and metric["std"] == pytest.approx(0.9465, abs=1e-4)  # sample std of the four
    # 16.0 misses in one run; the 2-thread mean (15.0) still holds
    assert metric["verdict"] == "<= 15: NOT met in every run; met on each thread count's mean"
    assert {t: g["commit"] for t, g in two["grids"].items()} == {"1": "a", "2": "b"}
    again = robustness.merge_grid(two, "conformer", [2], _grid("c"), {LABEL: {"2": {"0": 15.5, "1": 15.9}}})
    assert again["metrics"][LABEL]["per_threads_seed"]["2"] == {"0": 15.5, "1": 15.9}
    assert again["metrics"][LABEL]["per_threads_seed"]["1"] == {"0": 14.0, "1": 14.5}  # untouched
    assert again["metrics"][LABEL]["verdict"] == "<= 15: NOT met in every run; NOT met on each thread count's mean"
    assert again["grids"]["2"]["commit"] == "c" and one["grids"] == {"1": _grid("a")}  # inputs not mutated


def test_the_stored_file_is_in_this_format_and_its_verdicts_follow_from_its_runs():
    record = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "robustness.json").read_text())
    for paper, entry in record["papers"].items():
        rebuilt = None
        for t, grid in entry["grids"].items():
            rebuilt = robustness.merge_grid(rebuilt, paper, [int(t)], grid, {
                label: {t: m["per_threads_seed"][t]} for label, m in entry["metrics"].items()})
        assert rebuilt == entry, paper
        assert set(entry["metrics"]) == {f"{v}/{m}" for v, m, _, _ in robustness.HEADLINES[paper]}
