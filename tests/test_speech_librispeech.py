"""LibriSpeech reader and identity check on a fixture in the exact OpenSLR layout (FLAC)."""

import numpy as np
import pytest
import soundfile as sf

from mmrepro.data.librispeech import (
    ARCHIVE_MD5,
    EXPECTED_SIZES,
    LibriSpeechIdentityError,
    check_identity,
    load_subset,
    read_subset,
    to_manifest_rows,
)

TRANSCRIPTS = {  # speaker -> chapter -> utterances
    ("1089", "134686"): ["HE HOPED THERE WOULD BE STEW FOR DINNER", "STUFF IT INTO YOU HIS BELLY COUNSELLED HIM"],
    ("1089", "134691"): ["HE COULD WAIT NO LONGER"],
    ("121", "121726"): ["ALSO A POPULAR CONTRIVANCE", "HE'S ALIVE SAID THE MAN", "YES"],
}


def _make_fixture(root, subset="test-clean"):
    rng = np.random.default_rng(0)
    for (spk, chap), lines in TRANSCRIPTS.items():
        d = root / "LibriSpeech" / subset / spk / chap
        d.mkdir(parents=True)
        with open(d / f"{spk}-{chap}.trans.txt", "w") as fh:
            for k, text in enumerate(lines):
                uid = f"{spk}-{chap}-{k:04d}"
                fh.write(f"{uid} {text}\n")
                sf.write(d / f"{uid}.flac", (rng.standard_normal(1600 * (k + 1)) * 0.1).astype(np.float32),
                         16000, format="FLAC", subtype="PCM_16")
    return root


def test_reads_the_openslr_layout(tmp_path):
    root = _make_fixture(tmp_path)
    utts = read_subset(root, "test-clean")
    assert [u.utt_id for u in utts] == ["1089-134686-0000", "1089-134686-0001", "1089-134691-0000",
                                        "121-121726-0000", "121-121726-0001", "121-121726-0002"]
    assert utts[4].text == "HE'S ALIVE SAID THE MAN" and utts[4].speaker == "121"
    rows = to_manifest_rows(utts)
    assert rows[1]["duration"] == pytest.approx(0.2) and rows[4]["text"] == "he's alive said the man"
    # root may also point at LibriSpeech/ itself
    assert len(read_subset(root / "LibriSpeech", "test-clean")) == 6


def test_identity_check_is_enforced_with_injected_expectations(tmp_path):
    root = _make_fixture(tmp_path)
    words = sum(len(t.split()) for lines in TRANSCRIPTS.values() for t in lines)
    assert words == 8 + 8 + 5 + 4 + 5 + 1 == 31
    ok = load_subset(root, "test-clean", expected={"test-clean": (6, 31)})
    assert len(ok) == 6
    with pytest.raises(LibriSpeechIdentityError, match="found 6 utterances / 31 words, expected 6 / 32"):
        load_subset(root, "test-clean", expected={"test-clean": (6, 32)})
    # with the real (pinned) numbers, the 6-utterance fixture is rejected
    with pytest.raises(LibriSpeechIdentityError, match="expected 2620 / 52576"):
        load_subset(root, "test-clean")


def test_real_numbers_and_checksums_are_pinned():
    assert EXPECTED_SIZES == {"test-clean": (2620, 52576), "test-other": (2939, 52343)}
    assert ARCHIVE_MD5["test-clean"] == "32fa31d27d2e1cad72775fee3f4849a9"
    assert ARCHIVE_MD5["test-other"] == "fb5a50374b501bb3bac4815ee91d3135"
    assert len(ARCHIVE_MD5) == 7 and all(len(v) == 32 for v in ARCHIVE_MD5.values())
    assert check_identity("train-clean-100", []) == (0, 0)  # no expectation for training sets


def test_missing_audio_and_missing_subset(tmp_path):
    root = _make_fixture(tmp_path)
    (root / "LibriSpeech/test-clean/121/121726/121-121726-0002.flac").unlink()
    with pytest.raises(LibriSpeechIdentityError, match="121-121726-0002.flac is missing"):
        read_subset(root, "test-clean")
    with pytest.raises(FileNotFoundError, match="download"):
        load_subset(root, "test-other")  # absent and download not enabled: no network touched
    with pytest.raises(ValueError):
        load_subset(root, "test-dirty")


def test_paper_prepare_enforces_the_identity_check(tmp_path, monkeypatch):
    """The full profile's prepare reads the OpenSLR layout and refuses a test set of the wrong size."""
    from mmrepro.papers import get_paper

    for subset in ("train-clean-100", "dev-other", "test-clean", "test-other"):
        _make_fixture(tmp_path / "raw", subset) if subset == "train-clean-100" else None
    root = tmp_path / "raw"
    for subset in ("dev-other", "test-clean", "test-other"):
        (root / "LibriSpeech" / subset).parent.mkdir(parents=True, exist_ok=True)
        _make_fixture(tmp_path / subset, subset)
        (tmp_path / subset / "LibriSpeech" / subset).rename(root / "LibriSpeech" / subset)
    paper = get_paper("conformer")
    cfg = paper.Config(epochs=1, batch_size=2, lr=1e-3, dataset="librispeech", tokens="sentencepiece", sp_vocab=64,
                       librispeech_root=str(root), train_subsets=["train-clean-100"])
    out = tmp_path / "data"
    out.mkdir()
    with pytest.raises(LibriSpeechIdentityError, match="test-clean: found 6 utterances / 31 words, expected 2620 / 52576"):
        paper.prepare(cfg, out, seed=0)

    # with the expectations injected for the fixture, prepare succeeds and training reads FLACs on the fly
    import torch

    monkeypatch.setitem(EXPECTED_SIZES, "test-clean", (6, 31))
    monkeypatch.setitem(EXPECTED_SIZES, "test-other", (6, 31))
    out2 = tmp_path / "data2"
    out2.mkdir()
    info = paper.prepare(cfg, out2, seed=0)
    assert info.dataset == "librispeech" and info.splits == {"train": 6, "dev": 6, "test-clean": 6, "test-other": 6}
    assert info.details["tokenizer"]["kind"] == "sentencepiece"
    batch = next(iter(paper.train_batches(cfg, out2, "ctc", epoch=0, seed=0)))
    assert batch["feats"].shape[0] == 2 and batch["feats"].shape[2] == 80 and batch["target_lens"].min() > 0
    assert [s for _, _, s in paper.test_sets(cfg, out2)] == ["test-clean", "test-other"]
    assert torch.isfinite(batch["feats"]).all()
