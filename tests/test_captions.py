"""The shared caption evaluator against hand-computed BLEU and against direct pycocoevalcap calls
(real Java for the PTB tokenizer and METEOR)."""

from __future__ import annotations

import json
import math
import os

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from mmrepro.metrics.captions import (_quiet_tokenizer, evaluate_captions, load_coco_files, score_captions,
                                      spice_unavailable_reason, start_meteor, stop_meteor)

PRED = {"1": "the cat sat on the mat", "2": "a dog runs"}
REFS = {"1": ["the cat is on the mat"], "2": ["a dog runs"]}


def test_bleu_two_sentence_case_by_hand():
    # clipped n-gram matches / totals over both sentences:
    #   1-grams (5+3)/(6+3), 2-grams (3+2)/(5+2), 3-grams (1+1)/(4+1), 4-grams (0+0)/(3+0); brevity penalty 1
    scores = score_captions(PRED, REFS).corpus
    p1, p2, p3 = 8 / 9, 5 / 7, 2 / 5
    assert scores["bleu1"] == pytest.approx(100 * p1, abs=1e-6)
    assert scores["bleu2"] == pytest.approx(100 * math.sqrt(p1 * p2), abs=1e-6)
    assert scores["bleu3"] == pytest.approx(100 * (p1 * p2 * p3) ** (1 / 3), abs=1e-6)
    assert scores["bleu4"] < 0.01  # no 4-gram matches: only pycocoevalcap's 1e-15 smoothing is left


def test_the_tokenizer_status_line_is_silenced_and_other_stderr_kept(capfd):
    # the real Java tokenizer prints "PTBTokenizer tokenized N tokens at ... tokens per second." per call
    PTBTokenizer().tokenize({"1": [{"caption": "a dog runs"}]})
    assert "PTBTokenizer tokenized" in capfd.readouterr().err  # what the evaluator must hide
    with _quiet_tokenizer():  # what score_captions wraps its tokenizer call in
        tokens = PTBTokenizer().tokenize({"1": [{"caption": "a dog runs."}]})
    assert tokens == {"1": ["a dog runs"]} and capfd.readouterr().err == ""
    with pytest.raises(RuntimeError), _quiet_tokenizer():
        os.write(2, b"java.lang.OutOfMemoryError\n")
        raise RuntimeError("the tokenizer failed")
    assert capfd.readouterr().err == "java.lang.OutOfMemoryError\n"  # a real error still reaches stderr


def test_cider_is_positive_with_varied_references():
    refs = {
        "a": ["there are seven stars", "seven white dots on a black background", "an image with seven dots"],
        "b": ["there are two stars", "two white dots on a black background", "an image with two dots"],
        "c": ["there is one star", "one white dot on a black background", "an image with one dot"],
    }
    pred = {"a": "seven white dots on a black background", "b": "there are two stars", "c": "an image with two dots"}
    scores = score_captions(pred, refs)
    assert scores.corpus["cider_d"] > 50
    assert scores.per_image["a"]["cider_d"] > scores.per_image["c"]["cider_d"]  # c names the wrong count


def test_equals_direct_pycocoevalcap_calls(tmp_path):
    refs = {"1": ["A man rides a horse.", "a person riding a brown horse"], "2": ["Two dogs play in snow", "dogs in the snow"],
            "3": ["a red bus on a street", "the bus is red"]}
    pred = {"1": "a man riding a horse", "2": "a dog in the snow", "3": "a red car on the road"}
    ours = evaluate_captions(pred, refs, tmp_path)

    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": c} for c in r] for i, r in refs.items()})
    res = tok.tokenize({i: [{"caption": c}] for i, c in pred.items()})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    meteor_scorer = Meteor()
    meteor, _ = meteor_scorer.compute_score(gts, res)
    meteor_scorer.meteor_p.kill()
    direct = {"bleu1": bleu[0], "bleu2": bleu[1], "bleu3": bleu[2], "bleu4": bleu[3], "meteor": meteor,
              "rouge_l": Rouge().compute_score(gts, res)[0], "cider_d": Cider().compute_score(gts, res)[0]}
    for metric, value in direct.items():
        assert ours.corpus[metric] == pytest.approx(100 * value, rel=1e-9), metric
    assert ours.scale == "x100" and ours.n_images == 3

    # what was scored is on disk in COCO formats, with the per-image scores beside it
    results = json.loads((tmp_path / "captions_results.json").read_text())
    assert {r["image_id"] for r in results} == {"1", "2", "3"}
    assert load_coco_files(tmp_path / "captions_results.json", tmp_path / "captions_references.json") == (pred, refs)
    per_image = json.loads((tmp_path / "captions_per_image.json").read_text())
    assert per_image["scale"] == "x100" and set(per_image["scores"]["2"]) >= set(direct)


def test_one_meteor_process_serves_every_scored_set_and_a_dead_one_is_replaced(monkeypatch):
    """Reusing METEOR's JVM must not change a score: set B scored after set A equals B scored by a fresh JVM.
    This is the process's own JVM (no METEOR server: tests/test_meteor_server.py covers that one)."""
    monkeypatch.setenv("MMREPRO_METEOR_SERVER", "0")
    refs_b = {"x": ["a blue square above a green circle", "a square and a circle"], "y": ["three small stars"]}
    pred_b = {"x": "a green square above a blue circle", "y": "three stars"}
    stop_meteor()
    score_captions(PRED, REFS)
    jvm = start_meteor().meteor_p
    after_a = score_captions(pred_b, refs_b)
    assert start_meteor().meteor_p is jvm  # the same process scored both sets
    jvm.kill()
    jvm.wait()
    fresh = score_captions(pred_b, refs_b)
    assert start_meteor().meteor_p is not jvm and start_meteor().meteor_p.poll() is None
    assert 0 < fresh.corpus["meteor"] < 100
    assert after_a.corpus == fresh.corpus and after_a.per_image == fresh.per_image
    stop_meteor()
    assert start_meteor().meteor_p.poll() is None  # stopped, then started again on demand


def test_spice_is_reported_not_dropped():
    scores = score_captions(PRED, REFS)
    reason = spice_unavailable_reason()
    if reason is None:
        assert "spice" in scores.corpus
    else:
        assert scores.unavailable == {"spice": reason} and "stanford-corenlp-3.6.0.jar" in reason


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="different image ids"):
        score_captions({"1": "a"}, {"2": ["a"]})
    with pytest.raises(ValueError, match="at least one reference"):
        score_captions({"1": "a"}, {"1": []})
