"""benchmarks/full_memory.py --quick: the JSON's structure, and that each extrapolation is the straight line
through its two measured points (numbers only, no timings)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def blob(tmp_path_factory):
    out = tmp_path_factory.mktemp("full_memory") / "full_memory.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "full_memory.py"), "--quick", "--papers", "vqvae",
                           "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| paper | variant |" in proc.stdout
    return json.loads(out.read_text())


def test_structure(blob):
    full = yaml.safe_load((ROOT / "configs" / "vqvae.yaml").read_text())["full"]
    assert blob["quick"] is True and blob["gpu_bytes"] == 80e9
    assert [r["variant"] for r in blob["rows"]] == ["recon", "text2image/vq", "text2image/prior"]
    for row in blob["rows"]:
        assert row["paper"] == "vqvae"
        assert row["stated_batch"] == full["batch_size"]
        assert row["effective_batch"] == row["stated_batch"] * row["accumulation"]
        assert row["params_million"] > 0
        assert row["fits_80gb"] == (row["extrapolated_bytes"] <= 80e9)
        assert len(row["measured"]) == 2
        for m in row["measured"]:
            comp = m["components"]
            assert set(comp) == {"weights", "buffers", "optimizer_state", "grads_before_step", "inputs", "live_peak"}
            assert m["peak_bytes"] == sum(comp.values())
            assert comp["weights"] > 0 and comp["live_peak"] > 0 and comp["inputs"] > 0
            assert comp["optimizer_state"] >= 2 * m["trainable_params"] * 4  # Adam: two fp32 moments


def test_extrapolation_is_the_line_through_the_two_points(blob):
    for row in blob["rows"]:
        for m in row["measured"]:
            assert m["peak_bytes"] == max(m["phases"].values())
        for phase, fit in row["phase_fits"].items():
            (b1, p1), (b2, p2) = [(m["batch"], m["phases"][phase]) for m in row["measured"]]
            assert b1 < b2 and p1 <= p2  # more examples, no less memory
            slope = (p2 - p1) / (b2 - b1)
            assert fit["slope_bytes_per_example"] == pytest.approx(slope, rel=1e-12, abs=1e-6)
            assert fit["intercept_bytes"] == pytest.approx(p1 - slope * b1, rel=1e-9)
            assert fit["extrapolated_bytes"] == pytest.approx(p1 + slope * (row["stated_batch"] - b1), rel=1e-12)
        fb = row["phase_fits"]["forward_backward"]
        assert fb["slope_bytes_per_example"] > 0  # activations grow with the batch
        binding = max(row["phase_fits"].values(), key=lambda f: f["extrapolated_bytes"])
        assert row["extrapolated_bytes"] == binding["extrapolated_bytes"]
        assert row["slope_bytes_per_example"] == binding["slope_bytes_per_example"]
