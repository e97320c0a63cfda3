"""Comparison rows: `comparable` only for the paper's own dataset and split; delta only then."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mmrepro.report.comparison import COLUMNS, compare
from mmrepro.report.references import References, load_references
from mmrepro.report.render import write_reports

from .conftest import REPO

REFS = References.model_validate({
    "short": "Gulati et al. 2020",
    "citation": "Gulati et al., Conformer, Interspeech 2020",
    "entries": [
        {"metric": "wer", "value": 2.1, "scale": "x100", "dataset": "librispeech", "split": "test-clean",
         "source": "Table 2, L, no LM", "confidence": "confirmed", "variant": "transducer"},
        {"metric": "wer", "value": 4.3, "scale": "x100", "dataset": "librispeech", "split": "test-other",
         "source": "Table 2, L, no LM", "confidence": "confirmed", "variant": "transducer"},
    ],
})


def _result(metric, value, dataset, split, variant="transducer", scale="x100", std=None):
    return {"metric": metric, "value": value, "dataset": dataset, "split": split, "variant": variant,
            "scale": scale, "std": std, "n_seeds": 2 if std else 1, "details": {}}


def test_same_dataset_and_split_is_comparable_with_delta():
    metrics = {"results": [_result("wer", 2.5, "librispeech", "test-clean", std=0.1)]}
    rows = {(r.published_split, r.verdict): r for r in compare("conformer", metrics, REFS)}
    row = rows[("test-clean", "comparable")]
    assert row.delta == pytest.approx(0.4) and row.ours_std == 0.1 and row.n_seeds == 2
    assert row.published_source == "Gulati et al. 2020, Table 2, L, no LM"
    # the test-other entry was not measured: listed, not dropped, and without a number of ours
    other = rows[("test-other", "not measured by this pipeline")]
    assert other.ours is None and other.delta is None


def test_other_dataset_is_not_comparable_and_has_no_delta():
    metrics = {"results": [_result("wer", 9.0, "tts-speech", "test-unseen-voices")]}
    rows = compare("conformer", metrics, REFS)
    assert len(rows) == 2
    for row in rows:
        assert row.delta is None and row.ours == 9.0
        assert row.verdict.startswith("not comparable: ours is tts-speech/test-unseen-voices, the paper's is librispeech/")


def test_scale_mismatch_and_variant_filter():
    metrics = {"results": [_result("wer", 0.025, "librispeech", "test-clean", scale="raw"),
                           _result("wer", 3.0, "librispeech", "test-clean", variant="ctc")]}
    rows = compare("conformer", metrics, REFS)
    raw = [r for r in rows if r.ours == 0.025 and r.published_split == "test-clean"][0]
    assert raw.verdict == "not comparable: scales differ (raw vs x100)"
    ctc = [r for r in rows if r.variant == "ctc"]
    assert len(ctc) == 1 and ctc[0].verdict == "no published number" and ctc[0].published is None


def test_a_paper_without_published_numbers_says_so():
    refs = References.model_validate({"short": "nb", "citation": "a notebook", "note": "no table", "entries": []})
    rows = compare("starcapnet", {"results": [_result("cider_d", 120.0, "counting-dots", "test", "main")]}, refs)
    assert [r.verdict for r in rows] == ["no published number: no table"]


def test_unavailable_metric_is_a_row_with_its_reason():
    result = _result("spice", None, "counting-dots", "test", "main")
    result["details"] = {"unavailable": "CoreNLP jars missing"}
    refs = References.model_validate({"short": "x", "citation": "x", "entries": []})
    assert compare("p", {"results": [result]}, refs)[0].verdict == "not measured: CoreNLP jars missing"


def test_written_files_have_the_required_columns_and_environment(tmp_path: Path):
    rows = compare("conformer", {"results": [_result("wer", 2.5, "librispeech", "test-clean")]}, REFS)
    env = {"date": "2026-01-01", "git sha": "abc", "python": "3.11", "torch": "2", "cuda": "none",
           "device": "cpu", "profile": "cpu"}
    paths = write_reports(rows, env, ["a note"], tmp_path)
    lines = paths["csv"].read_text().splitlines()
    assert [line for line in lines if line.startswith("#")][-1] == "# profile: cpu"
    table = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    assert tuple(table[0]) == COLUMNS
    assert {"paper", "metric", "dataset", "split", "ours", "ours_std", "n_seeds", "published", "published_source",
            "delta", "verdict"} <= set(COLUMNS)
    assert float(table[0]["delta"]) == pytest.approx(0.4)
    md = paths["md"].read_text()
    assert "device    cpu" in md and "| conformer | transducer | wer | librispeech | test-clean | 2.5 |" in md
    assert "<th>git sha</th><td>abc</td>" in paths["html"].read_text()


def test_every_registered_paper_has_a_valid_references_file():
    from mmrepro.papers import REGISTRY

    for name in REGISTRY:
        refs = load_references(name, REPO / "references")
        assert refs.citation
