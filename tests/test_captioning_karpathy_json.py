"""Karpathy split JSONs (Flickr8k/30k, COCO) under the datasets root: the released schema, captions from the
released tokens, every split checked before any image is decoded, one-line errors."""

import json

import numpy as np
import pytest
from PIL import Image

from mmrepro.data import karpathy_json as kj
from mmrepro.data.shapes_scenes import read_split
from mmrepro.datasets import DatasetError, DatasetSettings, split_identity
from mmrepro.papers import get_paper

from .dataset_fixtures import make_karpathy, patch_identities


def _paper(root, identity="strict", name="attention_captioner", dataset="flickr8k"):
    paper = get_paper(name, DatasetSettings(root, identity))
    cfg = paper.Config(epochs=1, batch_size=4, lr=1e-3, dataset=dataset, image_size=8, encoder="small",
                       openclipart_n=0)
    return paper, cfg


def _out(tmp_path, name="data"):
    (tmp_path / name).mkdir()
    return tmp_path / name


def test_reads_the_released_schema_and_tokens(tmp_path):
    make_karpathy(tmp_path, "flickr8k")
    folder = tmp_path / "flickr8k"
    test = kj.read_karpathy_json(kj.json_path(folder, "flickr8k"), kj.image_root(folder, "flickr8k"), "test",
                                 enforce_sizes=False)
    data = json.loads((folder / "dataset_flickr8k.json").read_text())
    first = data["images"][8]
    assert len(test) == 3 and test.images[0].image_id == 8
    assert test.images[0].path == folder / "Flicker8k_Dataset" / first["filename"]
    assert test.captions()[0] == [" ".join(s["tokens"]) for s in first["sentences"]]
    assert test.images[0].sentences[0] == first["sentences"][0]["raw"]
    pixels = kj.load_images(test, size=16)
    assert pixels.shape == (3, 16, 16, 3) and pixels.dtype == np.uint8
    with pytest.raises(DatasetError, match="test split has 3 images; the papers use 1000"):
        kj.read_karpathy_json(kj.json_path(folder, "flickr8k"), folder, "test")


def test_coco_filepath_and_restval(tmp_path):
    make_karpathy(tmp_path, "coco", {"train": 3, "restval": 2, "val": 1, "test": 2})
    dataset, release = kj.read_release(tmp_path / "coco/dataset_coco.json", tmp_path / "coco")
    assert dataset == "coco" and {k: len(v) for k, v in release.items()} == {"train": 3, "restval": 2, "val": 1, "test": 2}
    assert release["test"][0].path == tmp_path / "coco/val2014/COCO_val2014_000000000006.jpg"
    assert release["train"][0].path.is_file() and release["test"][0].image_id == 100006


def test_split_identity_is_order_independent_and_changes_with_any_text():
    base = [("a.jpg", ["a dog runs", "a dog"]), ("b.jpg", ["two cats"])]
    one = split_identity(base)
    assert one == split_identity([("b.jpg", ["two cats"]), ("a.jpg", ["a dog", "a dog runs"])])
    assert one["n"] == 2 and len(one["sha256"]) == 64
    assert split_identity([("a.jpg", ["a dog runs", "a dog"]), ("b.jpg", ["two cats ."])]) != one
    assert split_identity([("c.jpg", ["a dog runs", "a dog"]), ("b.jpg", ["two cats"])]) != one


def test_missing_folder_names_dataset_key_and_source(tmp_path):
    paper, cfg = _paper(tmp_path)
    with pytest.raises(DatasetError) as err:
        paper.prepare(cfg, _out(tmp_path), seed=0)
    msg = str(err.value)
    assert msg == (f"flickr8k: {tmp_path}/flickr8k/dataset_flickr8k.json not found (params "
                   f"configs/attention_captioner.yaml:full.dataset; root {tmp_path}, $MMREPRO_DATASETS overrides it); "
                   "get it from https://cs.stanford.edu/people/karpathy/deepimagesent/ (caption_datasets.zip; "
                   "images from the Flickr8k release, UIUC)")


def test_partial_test_split_strict_error_warn_success(tmp_path, monkeypatch, capsys):
    make_karpathy(tmp_path, "flickr8k")
    patch_identities(monkeypatch, "flickr8k", {"train": 6, "val": 2, "test": 1000})
    paper, cfg = _paper(tmp_path)
    with pytest.raises(DatasetError, match=r"^flickr8k/test: 3 examples, the official split has 1000 \(params "
                                           r"configs/attention_captioner.yaml:full.dataset;"):
        paper.prepare(cfg, _out(tmp_path), seed=0)
    paper, cfg = _paper(tmp_path, "warn")
    out = _out(tmp_path, "warned")
    info = paper.prepare(cfg, out, seed=0)
    assert "warning: flickr8k/test: 3 examples, the official split has 1000" in capsys.readouterr().out
    assert info.splits == {"train": 6, "val": 2, "test": 3}
    folder = tmp_path / "flickr8k"
    released = json.loads((folder / "dataset_flickr8k.json").read_text())["images"]
    want = split_identity((im["filename"], [" ".join(s["tokens"]) for s in im["sentences"]])
                          for im in released if im["split"] == "test")
    assert info.identity == {"flickr8k/test": want}
    test = read_split(out, "test")
    assert test.captions[0][2] == " ".join(released[8]["sentences"][2]["tokens"])  # released tokens, not raw


def test_identity_is_checked_before_any_image_is_decoded(tmp_path, monkeypatch):
    make_karpathy(tmp_path, "flickr8k")
    monkeypatch.setattr(Image, "open", lambda *a, **k: (_ for _ in ()).throw(AssertionError("decoded")))
    paper, cfg = _paper(tmp_path)  # real identities: train has 6000 images
    with pytest.raises(DatasetError, match="^flickr8k/train: 6 examples, the official split has 6000"):
        paper.prepare(cfg, _out(tmp_path), seed=0)


def test_missing_image_bad_image_bad_json_are_one_line(tmp_path, monkeypatch):
    make_karpathy(tmp_path, "flickr8k")
    patch_identities(monkeypatch, "flickr8k", {"train": 6, "val": 2, "test": 3})
    folder = tmp_path / "flickr8k"
    released = json.loads((folder / "dataset_flickr8k.json").read_text())["images"]
    victim = folder / "Flicker8k_Dataset" / released[9]["filename"]
    victim.write_bytes(b"\xff\xd8 not a jpeg")
    paper, cfg = _paper(tmp_path)
    with pytest.raises(DatasetError, match=f"^{victim}: not a readable image"):
        paper.prepare(cfg, _out(tmp_path), seed=0)
    victim.unlink()
    with pytest.raises(DatasetError, match=f"^flickr8k: 1 of 3 test images missing, e.g. {victim} "):
        paper.prepare(cfg, _out(tmp_path, "b"), seed=0)
    (folder / "dataset_flickr8k.json").write_text('{"images": [')
    with pytest.raises(DatasetError, match=f"^{folder}/dataset_flickr8k.json: not readable JSON"):
        paper.prepare(cfg, _out(tmp_path, "c"), seed=0)
    (folder / "dataset_flickr8k.json").write_text(json.dumps({"images": [{"split": "val", "filename": "a.jpg"}],
                                                              "dataset": "flickr8k"}))
    with pytest.raises(DatasetError, match="images\\[0\\] lacks"):
        paper.prepare(cfg, _out(tmp_path, "d"), seed=0)


def test_external_paths(tmp_path):
    paper, cfg = _paper(tmp_path, name="karpathy_alignment", dataset="coco")
    assert paper.external_paths(cfg) == [tmp_path / "coco/dataset_coco.json", tmp_path / "coco/train2014",
                                         tmp_path / "coco/val2014"]
    paper, cfg = _paper(tmp_path, dataset="flickr30k")
    assert paper.external_paths(cfg) == [tmp_path / "flickr30k/dataset_flickr30k.json",
                                         tmp_path / "flickr30k/flickr30k-images"]
