"""Comparison rows: `comparable` only for the paper's own verified test set and unchanged recipe, trained to
completion; delta only then. Every other case names the condition that failed."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mmrepro.datasets import split_identity
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


# An official test-clean as references/datasets.yaml would record it once verified (the committed file has
# no fingerprint yet: nobody has verified a copy, so nothing can be comparable until someone does).
OFFICIAL_ID = split_identity([("1089-134686-0000", "HE HOPED THERE WOULD BE STEW"), ("1089-134686-0001", "STUFF IT")])
IDENTITIES = {"librispeech": {"splits": {"test-clean": OFFICIAL_ID, "test-other": {"n": 2939, "sha256": None}}}}
RECIPE = {"epochs": 100, "batch_size": 32, "lr": 0.0022}
TRAINED = {"seed0/transducer": {"completed": True, "epochs": 100, "optimizer_steps": 880000}}


def _result(metric, value, dataset, split, variant="transducer", scale="x100", std=None, n_samples=2):
    return {"metric": metric, "value": value, "dataset": dataset, "split": split, "variant": variant,
            "scale": scale, "std": std, "n_seeds": 2 if std else 1, "details": {}, "n_samples": n_samples}


def _metrics(*results, identity=None, config=None, training=None, departures=()):
    return {"results": list(results), "identity": {"librispeech/test-clean": OFFICIAL_ID} if identity is None else identity,
            "config": dict(RECIPE) if config is None else config, "training": TRAINED if training is None else training,
            "departures": list(departures)}


def _compare(metrics):
    return compare("conformer", metrics, REFS, RECIPE, IDENTITIES)


def test_verified_test_set_and_unchanged_recipe_is_comparable_with_delta():
    metrics = _metrics(_result("wer", 2.5, "librispeech", "test-clean", std=0.1))
    rows = {(r.published_split, r.verdict): r for r in _compare(metrics)}
    row = rows[("test-clean", "comparable")]
    assert row.delta == pytest.approx(0.4) and row.ours_std == 0.1 and row.n_seeds == 2
    assert row.published_source == "Gulati et al. 2020, Table 2, L, no LM"
    # the test-other entry was not measured: listed, not dropped, and without a number of ours
    other = rows[("test-other", "not measured by this pipeline")]
    assert other.ours is None and other.delta is None
    assert row.recipe == "paper's" and row.n_samples == 2


def _only_verdict(metrics) -> str:
    (row,) = [r for r in _compare(metrics) if r.published_split == "test-clean"]
    assert row.delta is None or row.verdict == "comparable"
    return row.verdict


def test_a_partial_test_set_is_not_comparable():
    partial = split_identity([("1089-134686-0000", "HE HOPED THERE WOULD BE STEW")])
    verdict = _only_verdict(_metrics(_result("wer", 2.5, "librispeech", "test-clean", n_samples=1),
                                     identity={"librispeech/test-clean": partial}))
    assert verdict.startswith("not comparable: test set: 1 examples, the official split has 2")
    assert "evaluated 1 of the official 2 examples" in verdict


def test_a_different_copy_of_the_same_size_is_not_comparable():
    other = split_identity([("1089-134686-0000", "HE HOPED THERE WOULD BE STEW"), ("1089-134686-0001", "STUFF")])
    verdict = _only_verdict(_metrics(_result("wer", 2.5, "librispeech", "test-clean"),
                                     identity={"librispeech/test-clean": other}))
    assert verdict == (f"not comparable: test set: content fingerprint {other['sha256'][:12]} != official "
                       f"{OFFICIAL_ID['sha256'][:12]}")


def test_an_unverified_official_fingerprint_is_not_comparable():
    found = {"n": 2939, "sha256": "ab" * 32}
    metrics = _metrics(_result("wer", 4.5, "librispeech", "test-other", n_samples=2939),
                       identity={"librispeech/test-other": found})
    (row,) = [r for r in _compare(metrics) if r.published_split == "test-other"]
    assert row.verdict == "not comparable: test set: official content fingerprint not recorded in references/datasets.yaml"


def test_a_recipe_override_is_not_comparable_and_names_the_keys():
    verdict = _only_verdict(_metrics(_result("wer", 2.5, "librispeech", "test-clean"),
                                     config={**RECIPE, "batch_size": 8, "max_steps": 1}))
    assert verdict == "not comparable: recipe differs (batch_size, max_steps)"


def test_unfinished_training_and_departures_are_not_comparable():
    verdict = _only_verdict(_metrics(
        _result("wer", 2.5, "librispeech", "test-clean"), departures=["greedy decoding (the paper: beam search)"],
        training={"seed0/transducer": {"completed": False, "epochs": 100, "optimizer_steps": 1}}))
    assert verdict == ("not comparable: training did not complete (seed0/transducer); "
                       "departs from the paper: greedy decoding (the paper: beam search)")
    rows = _compare(_metrics(_result("wer", 2.5, "librispeech", "test-clean"), training={}))
    assert rows[0].verdict == "not comparable: training did not complete"


def test_data_free_rows_stay_comparable_whatever_the_recipe():
    refs = References.model_validate({"short": "R", "citation": "R", "entries": [
        {"metric": "encoder_gmacs", "value": 143.2, "scale": "raw", "dataset": "synthetic input: 30 s", "split": "-",
         "source": "blog", "confidence": "secondary", "variant": "conformer_l"}]})
    ours = _result("encoder_gmacs", 143.0, "synthetic input: 30 s", "-", variant="conformer_l", scale="raw")
    rows = compare("fast_conformer", _metrics(ours, config={"epochs": 1}, training={}), refs, RECIPE, IDENTITIES)
    assert rows[0].verdict == "comparable" and rows[0].delta == pytest.approx(-0.2)
    assert rows[0].recipe == "n/a (dataset-free)"


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
    rows = _compare(_metrics(_result("wer", 2.5, "librispeech", "test-clean")))
    env = {"date": "2026-01-01", "git sha": "abc", "python": "3.11", "torch": "2", "cuda": "none",
           "device": "cpu", "profile": "cpu"}
    paths = write_reports(rows, env, ["a note"], tmp_path)
    lines = paths["csv"].read_text().splitlines()
    assert [line for line in lines if line.startswith("#")][-1] == "# profile: cpu"
    table = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    assert tuple(table[0]) == COLUMNS
    assert {"paper", "metric", "dataset", "split", "ours", "ours_std", "n_seeds", "n_samples", "published",
            "published_source", "delta", "recipe", "verdict"} <= set(COLUMNS)
    assert float(table[0]["delta"]) == pytest.approx(0.4) and table[0]["n_samples"] == "2"
    md = paths["md"].read_text()
    assert "device    cpu" in md and "| conformer | transducer | wer | librispeech | test-clean | 2.5 |  | 1 | 2 |" in md
    assert "<th>git sha</th><td>abc</td>" in paths["html"].read_text()


def test_every_registered_paper_has_a_valid_references_file():
    from mmrepro.papers import REGISTRY

    for name in REGISTRY:
        refs = load_references(name, REPO / "references")
        assert refs.citation
