"""Count parsing, StarCapNet's data generator (determinism, disc counts, captions) and decoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.measure import label

from mmrepro.data.caption_vocab import CaptionVocab
from mmrepro.data.counting_dots import DotsSpec, generate_split, write_dataset
from mmrepro.metrics.counting import count_accuracy, parse_count
from mmrepro.models.starcapnet import StarCapNet, StarCapNetConfig


@pytest.mark.parametrize("caption,count", [
    ("there are seven stars", 7), ("there is one star", 1), ("a single star on black", 1),
    ("an empty black background", 0), ("there are no stars", 0), ("zero white dots", 0),
    ("nine bright spots on black", 9), ("3 dots", 3), ("a picture of white circles", None), ("", None),
])
def test_parse_count(caption, count):
    assert parse_count(caption) == count


def test_count_accuracy():
    assert count_accuracy(["two stars", "there are five stars", "nothing"], [2, 4, 0]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        count_accuracy(["two"], [2, 3])


def test_generation_is_deterministic_and_seed_dependent(tmp_path):
    spec = DotsSpec(image_size=48, noise_std=10.0)
    a, b, c = (generate_split(30, spec, seed) for seed in (5, 5, 6))
    assert np.array_equal(a[0], b[0]) and a[2] == b[2]
    assert not np.array_equal(a[0], c[0])
    write_dataset(tmp_path, {"train": 10, "test": 5}, spec, seed=1)
    first = (tmp_path / "train.npz").read_bytes()
    write_dataset(tmp_path, {"train": 10, "test": 5}, spec, seed=1)
    assert (tmp_path / "train.npz").read_bytes() == first


def test_images_hold_exactly_count_separate_discs():
    images, counts, records = generate_split(60, DotsSpec(), seed=0)
    assert images.shape == (60, 64, 64) and images.dtype == np.uint8
    assert sorted(set(counts.tolist())) == list(range(10))  # balanced over 0..9
    for image, count in zip(images, counts, strict=True):
        assert label(image > 127, connectivity=2).max() == count  # non-overlapping, non-touching
    for record in records:
        assert len(set(record["captions"])) >= 5
        assert all(parse_count(c) == record["count"] for c in record["captions"])


def test_beam_one_equals_greedy_and_shapes():
    torch.manual_seed(0)
    vocab = CaptionVocab.build(["there are seven stars", "one white dot"])
    model = StarCapNet(StarCapNetConfig(vocab_size=len(vocab), image_size=32, hidden_dim=32)).eval()
    images = torch.randint(0, 255, (4, 32, 32), dtype=torch.uint8)
    tokens = vocab.encode_batch(["there are seven stars"] * 4, max_len=8)
    assert model(images, tokens).shape == (4, tokens.shape[1] - 1, len(vocab))
    greedy = model.greedy(images, max_len=6)  # the shared decoding (mmrepro.models.beam_search)
    assert model.generate(images, beam_size=1, max_len=6) == greedy
    assert all(len(g) <= 6 for g in greedy) and len(greedy) == 4
    wider = model.generate(images, beam_size=4, max_len=6)
    assert len(wider) == 4 and all(len(w) <= 6 for w in wider)
