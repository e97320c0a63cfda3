"""WER/CER metric against hand-computed counts."""

import json

import pytest

from mmrepro.metrics.wer import espnet_table, normalize_text, paired_bootstrap, save_hypotheses, score, score_by


def test_normalisation_rules():
    assert normalize_text("  Hello,  WORLD!\tDon't  ") == "hello world don't"
    assert normalize_text("'quoted' well-known.") == "quoted well known"


def test_hand_counted_word_errors():
    # utt a: "the cat sat on the mat" vs "the cat sit on mat": 1 sub (sat->sit), 1 del (the)
    # utt b: "ten of clubs" vs "ten of clubs now": 1 ins
    # utt c: "go" vs "go": correct
    refs = ["The cat sat on the mat.", "ten of clubs", "go"]
    hyps = ["the cat sit on mat", "ten of clubs now", "GO"]
    r = score(refs, hyps, ids=["a", "b", "c"])
    w = r.words
    assert (w.snt, w.ref, w.corr, w.sub, w.dele, w.ins, w.snt_err) == (3, 10, 8, 1, 1, 1, 2)
    assert r.wer == pytest.approx(3 / 10)
    # characters (spaces count): a: "the cat sat on the mat" (22) -> "the cat sit on mat" (18):
    # 1 sub (a->i) + 4 del ("the "); b: 12 chars + 4 inserted (" now"); c: 2 chars
    c = r.chars
    assert (c.ref, c.sub, c.dele, c.ins) == (36, 1, 4, 4)
    assert r.cer == pytest.approx(9 / 36)


def test_score_by_group_recounts_each_group():
    # the hand-counted utterances above, grouped: x = a + c (7 words, 1 sub + 1 del), y = b (3 words, 1 ins)
    r = score(["The cat sat on the mat.", "ten of clubs", "go"], ["the cat sit on mat", "ten of clubs now", "GO"],
              ids=["a", "b", "c"])
    groups = score_by(r, ["x", "y", "x"])
    assert list(groups) == ["x", "y"]
    assert (groups["x"].words.ref, groups["x"].words.sub, groups["x"].words.dele) == (7, 1, 1)
    assert groups["x"].wer == pytest.approx(2 / 7) and groups["y"].wer == pytest.approx(1 / 3)
    assert [u["id"] for u in groups["x"].utterances] == ["a", "c"]
    with pytest.raises(ValueError):
        score_by(r, ["x", "y"])


def test_empty_hypothesis_is_all_deletions():
    r = score(["one two three"], [""])
    assert (r.words.dele, r.words.ref, r.wer) == (3, 3, 1.0)


def test_espnet_table_and_artifact(tmp_path):
    r = score(["a b c d", "e f"], ["a x c d", "e f"])
    table = espnet_table({"test": r})
    assert "| dataset | Snt | Wrd | Corr | Sub | Del | Ins | Err | S.Err |" in table
    assert "| test | 2 | 6 | 83.3 | 16.7 | 0.0 | 0.0 | 16.7 | 50.0 |" in table
    path = tmp_path / "hyp.jsonl"
    save_hypotheses(path, r)
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert [row["hyp"] for row in rows] == ["a x c d", "e f"]
    assert rows[0]["sub"] == 1 and rows[1]["sub"] == 0


def test_bad_inputs():
    with pytest.raises(ValueError):
        score(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        score(["..."], ["a"])
    with pytest.raises(ValueError):
        espnet_table({}, unit="phone")


def test_paired_bootstrap_interval():
    refs = ["one two three four"] * 20
    same = score(refs, refs)
    assert paired_bootstrap(same, same)["ci95"] == [0.0, 0.0]
    # a misses one word in every utterance, b in none: 25 points worse in every resample
    worse = score(refs, ["one two three"] * 20)
    r = paired_bootstrap(worse, same)
    assert r["difference"] == pytest.approx(25.0) and r["ci95"] == [25.0, 25.0] and r["p_b_better"] == 1.0
    # one error each, in different utterances: a tie whose interval straddles 0
    a = score(refs, ["one two three"] + refs[1:])
    b = score(refs, refs[:10] + ["one two three"] + refs[11:])
    t = paired_bootstrap(a, b)
    assert t["difference"] == 0.0 and t["ci95"][0] < 0 < t["ci95"][1]
    with pytest.raises(ValueError, match="same"):
        paired_bootstrap(same, score(refs[:5], refs[:5]))
