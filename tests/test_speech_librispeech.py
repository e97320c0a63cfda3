"""LibriSpeech in the full profile: the OpenSLR layout under the datasets root, identity checks before any
FLAC is opened, one-line errors, downloads only when asked (never in tests) and never deleting a file."""

import hashlib

import pytest
import soundfile as sf

import mmrepro.datasets as ds
from mmrepro.data import librispeech as ls
from mmrepro.datasets import DatasetError, DatasetSettings
from mmrepro.papers import get_paper

from .dataset_fixtures import LIBRISPEECH_SUBSETS, make_librispeech, patch_identities


def _paper(root, identity="strict"):
    paper = get_paper("conformer", DatasetSettings(root, identity))
    cfg = paper.Config(epochs=1, batch_size=2, lr=1e-3, dataset="librispeech", tokens="char")
    return paper, cfg


def _out(tmp_path, name="data"):
    out = tmp_path / name
    out.mkdir()
    return out


def test_reads_the_openslr_layout(tmp_path):
    make_librispeech(tmp_path, {"test-clean": 3})
    utts = ls.read_subset(tmp_path, "test-clean")
    assert [u.utt_id for u in utts] == ["100-5000-0000", "100-5000-0001", "101-5001-0000"]
    assert utts[2].speaker == "101" and utts[2].text.isupper()
    rows = ls.to_manifest_rows(utts)
    assert [r["duration"] for r in rows] == [0.1, 0.2, 0.1] and rows[0]["text"] == utts[0].text.lower()
    assert len(ls.read_subset(tmp_path / "LibriSpeech", "test-clean")) == 3  # root may be LibriSpeech/ itself
    found = ls.split_identity_of(utts)
    assert found["n"] == 3 and found["words"] == sum(len(u.text.split()) for u in utts)
    assert found["sha256"] == ds.split_identity([(u.utt_id, u.text) for u in reversed(utts)])["sha256"]


def test_missing_folder_names_dataset_key_and_source(tmp_path):
    paper, cfg = _paper(tmp_path / "nowhere")
    with pytest.raises(DatasetError) as err:
        paper.prepare(cfg, _out(tmp_path), seed=0)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("librispeech: ")
    assert f"{tmp_path}/nowhere/LibriSpeech/train-clean-100 not found" in msg
    assert "params configs/conformer.yaml:full.dataset" in msg and "https://www.openslr.org/12" in msg
    assert "configs/conformer.yaml:full.download: true" in msg


def test_partial_test_split_strict_error_warn_success(tmp_path, monkeypatch, capsys):
    make_librispeech(tmp_path)
    counts = {**LIBRISPEECH_SUBSETS, "test-clean": 2620}  # everything matches but test-clean
    patch_identities(monkeypatch, "librispeech", counts)
    paper, cfg = _paper(tmp_path)
    with pytest.raises(DatasetError, match=r"^librispeech/test-clean: 3 examples, the official split has 2620 "
                                           r"\(params configs/conformer.yaml:full.dataset;"):
        paper.prepare(cfg, _out(tmp_path), seed=0)
    paper, cfg = _paper(tmp_path, "warn")
    info = paper.prepare(cfg, _out(tmp_path, "warned"), seed=0)
    printed = capsys.readouterr().out
    assert "warning: librispeech/test-clean: 3 examples, the official split has 2620" in printed
    assert info.splits == {"train": 8, "dev": 2, "test-clean": 3, "test-other": 3}
    want = ds.split_identity((u.utt_id, u.text) for u in ls.read_subset(tmp_path, "test-other"))
    assert info.identity == {"librispeech/test-clean": ds.split_identity(
        (u.utt_id, u.text) for u in ls.read_subset(tmp_path, "test-clean")), "librispeech/test-other": want}


def test_identity_is_checked_before_any_flac_is_read(tmp_path, monkeypatch):
    make_librispeech(tmp_path)
    opened = []
    monkeypatch.setattr(sf, "info", lambda path: opened.append(path) or (_ for _ in ()).throw(RuntimeError("x")))
    paper, cfg = _paper(tmp_path)  # real identities: train-clean-100 has 28539 utterances
    with pytest.raises(DatasetError, match="librispeech/train-clean-100: 4 examples, the official split has 28539"):
        paper.prepare(cfg, _out(tmp_path), seed=0)
    assert opened == []


def test_a_bad_flac_is_one_line_naming_the_file(tmp_path, monkeypatch):
    make_librispeech(tmp_path)
    patch_identities(monkeypatch, "librispeech", LIBRISPEECH_SUBSETS)
    bad = tmp_path / "LibriSpeech/test-other/151/5051/151-5051-0000.flac"
    bad.write_bytes(b"not a flac")
    paper, cfg = _paper(tmp_path)
    with pytest.raises(DatasetError, match=f"^{bad}: not a readable FLAC") as err:
        paper.prepare(cfg, _out(tmp_path), seed=0)
    assert "\n" not in str(err.value)


def test_missing_audio_is_named(tmp_path):
    make_librispeech(tmp_path, {"test-clean": 3})
    (tmp_path / "LibriSpeech/test-clean/101/5001/101-5001-0000.flac").unlink()
    with pytest.raises(ls.LibriSpeechIdentityError, match="101-5001-0000.flac is missing"):
        ls.read_subset(tmp_path, "test-clean")


def test_bad_archive_is_an_error_and_is_kept_and_nothing_is_downloaded(tmp_path, monkeypatch):
    import urllib.request

    def no_network(*args, **kwargs):
        raise AssertionError("urlopen called")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    archive = tmp_path / "train-clean-100.tar.gz"
    archive.write_bytes(b"truncated download")
    paper = get_paper("conformer", DatasetSettings(tmp_path))
    cfg = paper.Config(epochs=1, batch_size=2, lr=1e-3, dataset="librispeech", tokens="char", download=True)
    md5 = hashlib.md5(b"truncated download").hexdigest()
    with pytest.raises(ls.ChecksumError, match=f"train-clean-100.tar.gz: md5 {md5} != OpenSLR's "
                                               f"{ls.ARCHIVE_MD5['train-clean-100']} \\(file left in place"):
        paper.prepare(cfg, _out(tmp_path), seed=0)
    assert archive.read_bytes() == b"truncated download"


def test_real_checksums_are_pinned():
    assert ls.ARCHIVE_MD5["test-clean"] == "32fa31d27d2e1cad72775fee3f4849a9"
    assert ls.ARCHIVE_MD5["test-other"] == "fb5a50374b501bb3bac4815ee91d3135"
    assert len(ls.ARCHIVE_MD5) == 7 and all(len(v) == 32 for v in ls.ARCHIVE_MD5.values())
    real = ds.load_identities()["librispeech"]["splits"]
    assert (real["test-clean"]["n"], real["test-clean"]["words"]) == (2620, 52576)
    assert (real["test-other"]["n"], real["test-other"]["words"]) == (2939, 52343)


def test_full_profile_prepare_trains_on_the_fixture(tmp_path, monkeypatch):
    import torch

    make_librispeech(tmp_path)
    patch_identities(monkeypatch, "librispeech", LIBRISPEECH_SUBSETS)
    paper = get_paper("conformer", DatasetSettings(tmp_path))
    cfg = paper.Config(epochs=1, batch_size=2, lr=1e-3, dataset="librispeech", tokens="sentencepiece", sp_vocab=40)
    out = _out(tmp_path)
    info = paper.prepare(cfg, out, seed=0)
    assert info.details["tokenizer"]["kind"] == "sentencepiece"
    batch = next(iter(paper.build(cfg, out).variant("ctc").batches(0, 0)))
    assert batch["feats"].shape[0] == 2 and batch["feats"].shape[2] == 80 and torch.isfinite(batch["feats"]).all()
    assert [s for _, _, s in paper.test_sets(cfg, out)] == ["test-clean", "test-other"]
    assert paper.external_paths(cfg) == [tmp_path / "LibriSpeech" / s for s in
                                         ("train-clean-100", "train-clean-360", "train-other-500", "dev-other",
                                          "test-clean", "test-other")]
