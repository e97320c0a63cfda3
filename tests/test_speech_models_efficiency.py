"""The efficiency benchmark's GMACs part (deterministic FLOP counts on meta tensors; a few seconds)."""

import importlib.util
import json
from pathlib import Path

import pytest

from mmrepro.metrics.efficiency import loglog_slope, median_ratio

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("efficiency", ROOT / "benchmarks" / "efficiency.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_gmacs_part_writes_report_with_ratio_near_published(tmp_path, capsys):
    bench = _bench()
    out = tmp_path / "reports" / "efficiency.json"
    res = bench.main(["--quick", "--skip", "throughput", "scaling", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["gmacs"] == res["gmacs"]
    g = saved["gmacs"]
    assert g["input_seconds"] == 30.0 and g["input_frames"] == 3001
    assert abs(g["ratio"] - 2.94) / 2.94 < 0.10
    assert g["fast_conformer_l"] == pytest.approx(48.7, rel=0.02)
    by_len = {r["seconds"]: r for r in g["by_length"]}
    # MACs of the Conformer-L grow faster than linearly (attention), those of the Fast Conformer nearly linearly
    assert by_len[30.0]["conformer_l"] / by_len[10.0]["conformer_l"] > 3.0
    assert "| 30.0 | 3001 |" in capsys.readouterr().out
    assert not list(out.parent.glob("*.tmp"))


def test_slope_fit():
    bench = _bench()
    assert loglog_slope([1, 2, 4], [3, 12, 48]) == pytest.approx(2.0)
    assert loglog_slope([1, 2, 4], [5, 10, 20]) == pytest.approx(1.0)
    assert median_ratio([2.0, 9.0, 3.0], [1.0, 3.0, 2.0]) == 2.0  # ratios 2, 3, 1.5: the median of pairs
    assert bench.frames(20) == 2001


def test_live_tensor_memory_grows_linearly_for_limited_and_quadratically_for_full():
    """Deterministic peak activation bytes (the benchmark's `LiveTensorBytes`) of one attention layer."""
    import math

    import torch

    from mmrepro.models.conformer import RelPosMultiHeadAttention

    bench = _bench()

    def peak(limited, t):
        torch.manual_seed(0)
        att = RelPosMultiHeadAttention(32, 4, limited=limited, context=16).eval()
        x, mask = torch.randn(1, t, 32), torch.ones(1, t, dtype=torch.bool)
        tracker = bench.LiveTensorBytes()
        with torch.no_grad(), tracker:
            att(x, mask)
        assert tracker.live < tracker.peak  # temporaries were freed again
        return tracker.peak

    def exponent(limited):
        return math.log2(peak(limited, 1024) / peak(limited, 512))

    assert exponent(True) == pytest.approx(1.0, abs=0.1)
    assert exponent(False) == pytest.approx(2.0, abs=0.1)
