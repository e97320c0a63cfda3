"""Karpathy split JSON reader on generated files in the released schema."""

import json

import numpy as np
import pytest
from PIL import Image

from mmrepro.data.karpathy_json import load_images, read_karpathy_json


def _write(tmp_path, dataset, splits, filepath=None):
    images, sentid = [], 0
    for split, n in splits.items():
        for _ in range(n):
            k = len(images)
            sents = []
            for j in range(5):
                raw = f"A dog number {k} runs, variant {j}."
                sents.append({"tokens": raw.lower().replace(",", "").replace(".", "").split(), "raw": raw,
                              "imgid": k, "sentid": sentid})
                sentid += 1
            im = {"filename": f"{k:05d}.jpg", "imgid": k, "split": split, "sentences": sents,
                  "sentids": [s["sentid"] for s in sents]}
            if filepath:
                im["filepath"] = filepath
                im["cocoid"] = 100000 + k
            images.append(im)
    path = tmp_path / f"dataset_{dataset}.json"
    path.write_text(json.dumps({"images": images, "dataset": dataset}))
    return path


def test_flickr8k_test_split_and_images(tmp_path):
    path = _write(tmp_path, "flickr8k", {"train": 30, "val": 10, "test": 1000})
    root = tmp_path / "Flicker8k_Dataset"
    root.mkdir()
    for k in (40, 41):  # the first two test images exist on disk
        Image.fromarray(np.full((30, 40, 3), k * 3, dtype=np.uint8)).save(root / f"{k:05d}.jpg")
    test = read_karpathy_json(path, root, "test")
    assert len(test) == 1000 and test.dataset == "flickr8k"
    first = test.images[0]
    assert first.image_id == 40 and first.path == root / "00040.jpg"
    assert first.sentences[0] == "A dog number 40 runs, variant 0." and len(first.sentences) == 5
    assert first.tokens[0] == ("a", "dog", "number", "40", "runs", "variant", "0")
    assert test.references()[41][4] == "A dog number 41 runs, variant 4."
    pixels = load_images(test.head(2), size=16)
    assert pixels.shape == (2, 16, 16, 3) and pixels[0].mean() == pytest.approx(120, abs=2)
    assert len(read_karpathy_json(path, root, "train")) == 30
    with pytest.raises(FileNotFoundError, match="00042.jpg"):
        load_images(test.head(3), size=16)


def test_coco_filepath_restval_and_split_sizes(tmp_path):
    path = _write(tmp_path, "coco", {"train": 7, "restval": 5, "val": 3, "test": 5000}, filepath="val2014")
    test = read_karpathy_json(path, "/coco", "test")
    assert len(test) == 5000 and len(test.head(1000)) == 1000
    assert str(test.images[0].path) == "/coco/val2014/00015.jpg" and test.images[0].image_id == 100015
    assert len(read_karpathy_json(path, "/coco", "train")) == 12
    assert len(read_karpathy_json(path, "/coco", "train", restval_in_train=False)) == 7


def test_wrong_test_size_is_refused(tmp_path):
    path = _write(tmp_path, "flickr30k", {"train": 5, "test": 999})
    with pytest.raises(ValueError, match="999 images; the papers use 1000"):
        read_karpathy_json(path, tmp_path, "test")
    assert len(read_karpathy_json(path, tmp_path, "test", enforce_sizes=False)) == 999


def test_malformed_files(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"images": [], "dataset": "imagenet"}))
    with pytest.raises(ValueError, match="dataset must be one of"):
        read_karpathy_json(bad, tmp_path, "test")
    bad.write_text(json.dumps({"images": [{"split": "val", "filename": "a.jpg"}], "dataset": "flickr8k"}))
    with pytest.raises(ValueError, match="images\\[0\\] lacks"):
        read_karpathy_json(bad, tmp_path, "val")
    with pytest.raises(ValueError, match="split must be"):
        read_karpathy_json(bad, tmp_path, "dev")
