"""Comparison rows: `comparable` only for the paper's own verified test set and unchanged recipe, trained to
completion; delta only then. Every other case names the condition that failed."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mmrepro.datasets import split_identity
from mmrepro.report.comparison import COLUMNS, compare
from mmrepro.report.references import References, load_references
from mmrepro.pipeline import dvc_metrics, results_table
from mmrepro.report.curves import write_curves
from mmrepro.report.render import _code, write_reports
from mmrepro.report.results_json import results_document
from mmrepro.report.sections import Page, count_outcomes, headline_row, outcome, reason, section, total_compute
from mmrepro.report.stage import concepts

from .conftest import REPO

REFS = References.model_validate({
    "short": "Gulati et al. 2020",
    "citation": "Gulati et al., Conformer, Interspeech 2020 (arXiv 2005.08100)",
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


def _page(rows, tmp_path: Path, experiment_id=None, tracking_uri="sqlite:///x.db"):
    provenance = {"paper": "conformer", "title": "Gulati et al. 2020, Conformer", "dataset": "librispeech",
                  "splits": {"train": 10, "test-clean": 2}, "config": {**RECIPE, "batch_size": 8},
                  "departures": ["greedy decoding"], "mlflow_runs": {"0": "abc123"}, "tracking_uri": tracking_uri}
    sec = section("conformer", rows, REFS, provenance, RECIPE, "differs (batch_size)", tmp_path, experiment_id, COSTS)
    env = {"date": "2026-01-01", "git sha": "abc", "python": "3.11", "torch": "2", "cuda": "none",
           "device": "cpu", "profile": "cpu"}
    return Page(environment=env, counts=count_outcomes(rows), sections=[sec], concepts=concepts(["conformer"]),
                compute=total_compute([COSTS, []]))


COSTS = [{"stage": "prepare", "wall_s": 70.0, "cpu_s": 130.0, "device": "cpu", "threads": 2},
         {"stage": "train", "wall_s": 558.0, "cpu_s": 1100.0, "device": "cpu", "threads": 2, "resumed": False},
         {"stage": "evaluate", "wall_s": 48.4, "cpu_s": 90.0, "device": "cpu", "threads": 2}]


def test_written_files_plain_csv_json_and_the_same_page_in_md_and_html(tmp_path: Path):
    rows = _compare(_metrics(_result("wer", 2.5, "librispeech", "test-clean"),
                             _result("wer", 9.0, "librispeech", "test-clean", variant="ctc")))
    (tmp_path / "plots/conformer").mkdir(parents=True)
    (tmp_path / "plots/conformer/curves_seed0.png").write_bytes(b"png")
    paths = write_reports(rows, _page(rows, tmp_path), tmp_path)
    frame = pd.read_csv(paths["csv"])  # plain CSV: pandas' defaults read it
    assert tuple(frame.columns) == COLUMNS and len(frame) == 3
    assert frame.loc[0, "delta"] == pytest.approx(0.4) and frame.loc[0, "n_samples"] == 2
    saved = json.loads(paths["json"].read_text())
    assert saved["environment"]["profile"] == "cpu" and len(saved["rows"]) == 3
    assert saved["counts"] == {"comparable": 1, "not comparable": 0, "not measured": 1, "no published number": 1}
    md, page = paths["md"].read_text(), paths["html"].read_text()
    summary = "| [conformer](#conformer) | wer (transducer) | 2.5 (n=1) | 2.1 | comparable |  |"
    assert summary in md and "device    cpu" in md
    assert '<td><a href="#conformer">conformer</a></td>' in page and "<th>git sha</th><td>abc</td>" in page
    for text in (md, page):
        # the paper and its source tables are links; the curve is shown; the run id is printed
        assert "https://arxiv.org/abs/2005.08100" in text and "https://arxiv.org/pdf/2005.08100" in text
        assert "../references/conformer.yaml" in text and "plots/conformer/curves_seed0.png" in text
        assert "abc123" in text and "batch_size" in text and "greedy decoding" in text
        # the stages' cost (mmrepro.compute): per paper, and the run's total over the papers with a record
        assert "Compute: prepare 1.2 min, train 9.3 min, evaluate 48 s: 11.3 min wall, 22.0 min CPU (cpu, 2 threads)" in text
        assert ("Compute of the stages that made these results: 11.3 min wall, 22.0 min CPU over 1 paper(s) "
                "(1 without a record)") in text
    assert '<img src="plots/conformer/curves_seed0.png"' in page
    # shown: the measured test-clean comparison and the unmeasured test-other entry; folded: ctc (no number)
    shown, folded = page.split("<details><summary>1 more row(s)")
    assert shown.count('<tr class="comparable">') == 1 and shown.count('<tr class="not-measured">') == 1
    assert folded.split("</details>")[0].count('<tr class="no-published-number">') == 1
    assert str(_code("run `dvc repro` <now>")) == "run <code>dvc repro</code> &lt;now&gt;"  # notes' backticks


def test_mlflow_links_only_for_a_tracking_server(tmp_path: Path):
    rows = _compare(_metrics(_result("wer", 2.5, "librispeech", "test-clean")))
    local = _page(rows, tmp_path, experiment_id="7").sections[0]
    assert local.runs == [("0", "abc123", None)]
    served = _page(rows, tmp_path, experiment_id="7", tracking_uri="http://127.0.0.1:5000/").sections[0]
    assert served.runs == [("0", "abc123", "http://127.0.0.1:5000/#/experiments/7/runs/abc123")]


def test_headline_prefers_a_measured_row_with_a_published_number():
    rows = _compare(_metrics(_result("cer", 1.0, "librispeech", "test-clean"),
                             _result("wer", 9.0, "librispeech", "test-clean", variant="ctc"),
                             _result("wer", 2.5, "librispeech", "test-other")))
    head = headline_row(rows, ["wer"])
    assert (head.metric, head.variant, head.published_split, head.ours) == ("wer", "transducer", "test-other", 2.5)
    assert headline_row(rows, ["cer"]).ours == 1.0  # the first compared metric, even without a published number


def test_verdict_reason_is_one_line():
    assert reason("not comparable: a; b; c") == "a (+2 more)" and reason("comparable") == ""
    assert reason("no published number: a; b") == "a; b" and reason("not measured: " + "x" * 200) == "x" * 119 + "…"
    assert outcome("not measured by this pipeline") == "not measured"


def test_concepts_name_registered_papers_and_cover_every_paper():
    from mmrepro.papers import REGISTRY

    listed = concepts(list(REGISTRY))
    assert {c["concept"] for c in listed} == {"Representation", "Translation", "Alignment", "Fusion", "Co-learning"}
    named = {p["paper"] for c in listed for p in c["papers"]}
    assert named == set(REGISTRY) and all(p["in_report"] for c in listed for p in c["papers"])


def test_lm_eval_shaped_results_file():
    provenance = {"paper": "conformer", "git_sha": "abc", "config": RECIPE, "seeds": [0, 1], "data_fingerprint": "f" * 64,
                  "identity": {"librispeech/test-clean": OFFICIAL_ID}, "packages": {"torch": "2.14.1"},
                  "results": [{"variant": "transducer", "metric": "wer", "dataset": "librispeech", "split": "test-clean",
                               "value": 2.5, "std": 0.2, "n_seeds": 2, "per_seed": {"0": 2.36, "1": 2.64},
                               "n_samples": 2, "scale": "x100", "higher_is_better": False, "details": {}}]}
    doc = results_document(provenance)
    task = "conformer/transducer/librispeech/test-clean"
    assert doc["results"][task]["wer,none"] == 2.5
    assert doc["results"][task]["wer_stderr,none"] == pytest.approx(0.2 / 2 ** 0.5)
    assert doc["versions"][task] == OFFICIAL_ID["sha256"][:12] and doc["n-samples"][task]["effective"] == 2
    assert doc["config"]["model_args"] == RECIPE and doc["git_hash"] == "abc"
    assert doc["package_versions"] == {"torch": "2.14.1"}


def test_dvc_metrics_hold_numbers_only_with_short_keys():
    rows = [_result("wer", 2.5, "librispeech", "test-clean"), _result("wer", 4.5, "librispeech", "test-other"),
            _result("cer", 1.0, "librispeech", "test-clean"), _result("wer", 9.0, "tts", "test", variant="main"),
            _result("spice", None, "tts", "test")]
    assert dvc_metrics(rows, ["wer"]) == {"transducer.librispeech.test-clean.wer": 2.5,
                                          "transducer.librispeech.test-other.wer": 4.5, "tts.wer": 9.0}
    assert dvc_metrics(rows, ["bleu4"]) == {"transducer.wer": 2.5}  # none measured: the first result
    assert dvc_metrics(rows[:2], ["wer"]) == {"transducer.test-clean.wer": 2.5, "transducer.test-other.wer": 4.5}


def test_evaluate_prints_a_short_results_table():
    rows = [_result("wer", 2.5, "librispeech", "test-clean", std=0.25), _result("spice", None, "tts", "test", "main")]
    rows[0]["n_seeds"] = 3
    assert results_table("conformer", rows).splitlines() == [
        "[conformer] results (mean ± std over seeds, n = seeds):",
        "  transducer   wer                librispeech/test-clean               2.5 ± 0.25 (n=3)",
        "  main         spice              tts/test                             not measured (n=1)"]


def test_curves_combine_variants_and_seeds(tmp_path: Path):
    plots = tmp_path / "plots"
    (plots / "p").mkdir(parents=True)
    for seed in (0, 1):
        (plots / "p" / f"train_loss_ctc_seed{seed}.csv").write_text("step,loss\n0,2.0\n1,1.0\n")
        (plots / "p" / f"val_ctc_seed{seed}.csv").write_text("epoch,step,wer,cer\n1,2,50.0,20.0\n")
    paths = write_curves(["p"], plots, tmp_path / "curves")
    loss, val = pd.read_csv(paths["train_loss"]), pd.read_csv(paths["validation"])
    assert list(loss.columns) == ["panel", "series", "step", "loss"] and len(loss) == 4
    assert set(loss.series) == {"ctc seed0", "ctc seed1"}
    assert set(val.panel) == {"p: wer", "p: cer"} and val[val.panel == "p: wer"].value.tolist() == [50.0, 50.0]


def test_every_registered_paper_has_a_valid_references_file():
    from mmrepro.papers import REGISTRY

    for name in REGISTRY:
        refs = load_references(name, REPO / "references")
        assert refs.citation
