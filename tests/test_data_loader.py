"""Batches decoded on the fly (LibriSpeech-layout FLACs -> log-mel, VTLP, SpecAugment; LRS3 clips) in DataLoader workers:
the same tensors with 0, 1 and 2 workers, per rank shard and after a mid-epoch skip, and the same training;
synthetic-lips' clips (one memory-mapped array) made in-process, the same batches."""

from __future__ import annotations

import torch

from mmrepro.data.loader import LoaderSettings, PlannedBatches
from mmrepro.datasets import DatasetSettings
from mmrepro.papers import get_paper
from mmrepro.train import train_variant

from .dataset_fixtures import LIBRISPEECH_SUBSETS, make_librispeech, make_lrs3, patch_identities

SUBSETS = {**LIBRISPEECH_SUBSETS, "train-clean-100": 10}  # 14 training utterances (with 360 and other-500): 7 batches of 2


def _prepared(tmp_path, monkeypatch):
    make_librispeech(tmp_path, SUBSETS)
    patch_identities(monkeypatch, "librispeech", SUBSETS)
    paper = get_paper("conformer", DatasetSettings(tmp_path, "strict"))
    cfg = paper.Config(epochs=1, batch_size=2, lr=1e-3, dataset="librispeech", tokens="char", vtlp=0.1,
                       variants=["ctc"], d_model=16, num_layers=1, num_heads=2, subsampling_channels=4, val_utterances=2)
    data = tmp_path / "data"
    data.mkdir()
    paper.prepare(cfg, data, seed=0)
    return paper, cfg, data


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_batches_are_the_same_whatever_the_workers_rank_or_resume(tmp_path, monkeypatch):
    paper, cfg, data = _prepared(tmp_path, monkeypatch)
    variant = paper.build(cfg, data).variant("ctc")
    planned = variant.batches(1, 3)
    assert isinstance(planned, PlannedBatches) and len(planned) == 7
    runs = {w: list(planned.stream(lambda i: True, LoaderSettings(workers=w))) for w in (0, 1, 2)}
    base = [batch for _, batch in runs[0]]
    assert [i for i, _ in runs[0]] == list(range(7)) and base[0]["feats"].shape[-1] == 80
    for w in (1, 2):
        assert all(_same(a, b) for a, (_, b) in zip(base, runs[w], strict=True)), f"{w} workers differ"
    # two ranks of a resumed epoch: rank r makes batches i >= 3 with i % 2 == r, and only those
    for rank in (0, 1):
        shard = list(planned.stream(lambda i, r=rank: i >= 3 and i % 2 == r, LoaderSettings(workers=2)))
        made = [i for i, batch in shard if batch is not None]
        assert made == [i for i in range(3, 7) if i % 2 == rank]
        assert all(_same(base[i], batch) for i, batch in shard if batch is not None)
    assert planned.plans != variant.batches(2, 3).plans  # reshuffled per epoch


def test_training_is_the_same_with_and_without_workers(tmp_path, monkeypatch):
    paper, cfg, data = _prepared(tmp_path, monkeypatch)
    results = {}
    for workers in (0, 2):
        model, history = train_variant(paper.build(cfg, data).variant("ctc"), 3, tmp_path / f"ckpt{workers}.pt", "abc",
                                       device=torch.device("cpu"), loader=LoaderSettings(workers=workers))
        results[workers] = (history.losses, [p.detach().clone() for p in model.parameters()])
    assert len(results[0][0]) == 7 and results[0][0] == results[2][0]
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[2][1], strict=True))


def test_lrs3_clip_batches_are_the_same_whatever_the_workers(tmp_path, monkeypatch):
    counts = make_lrs3(tmp_path, {"trainval": 12, "test": 2}, speakers=4)
    patch_identities(monkeypatch, "lrs3", counts)
    paper = get_paper("vsr_conformer", DatasetSettings(tmp_path))
    cfg = paper.Config(epochs=1, batch_size=2, lr=1e-3, dataset="lrs3", lrs3_splits=["trainval"], lrs3_dev_speakers=1,
                       d_model=16, num_layers=1, num_heads=2, conv_kernel=3, resnet_width=4)
    paper.prepare(cfg, tmp_path / "data", seed=0)
    planned = paper.build(cfg, tmp_path / "data").variant("lp").batches(0, 1)
    assert isinstance(planned, PlannedBatches) and len(planned) == 5  # 9 training clips (3 held out for dev)
    runs = {w: [b for _, b in planned.stream(lambda i: True, LoaderSettings(workers=w))] for w in (0, 2)}
    assert all(_same(a, b) for a, b in zip(runs[0], runs[2], strict=True))
    assert runs[0][0]["frames"].shape[-1] == 64 * 64


def test_synthetic_lips_batches_are_made_in_process_and_are_the_planned_ones(tmp_path):
    """synthetic-lips is one memory-mapped array (README, Data loading): its batches come without DataLoader
    workers, and they are exactly what the planned batches (the code before, with workers) made."""
    from mmrepro.papers.common.speech import planned_buckets
    from mmrepro.papers.vsr_conformer import _ClipBatch, _Split

    paper = get_paper("vsr_conformer")
    cfg = paper.Config(epochs=1, batch_size=4, lr=1e-3, pixel_norm="clip", train_speakers=3, dev_speakers=1,
                       test_speakers=1, clips_per_speaker=3, eval_clips_per_speaker=2,
                       sentences={"train": 20, "dev": 5, "test": 5}, d_model=16, num_layers=1, num_heads=2,
                       conv_kernel=3, resnet_width=4, val_clips=2, sample_videos=0)
    data = tmp_path / "data"
    paper.prepare(cfg, data, seed=0)
    batches = paper.build(cfg, data).variant("lp").batches(1, 3)
    assert not isinstance(batches, PlannedBatches) and len(batches) == 3  # 9 clips in batches of 4
    planned = planned_buckets(_Split(data, "train").lengths.tolist(), 4, 1, 3, _ClipBatch(cfg, data, paper.tokenizer))
    expected = [b for _, b in planned.stream(lambda i: True, LoaderSettings(workers=2))]
    made = list(batches)
    assert len(made) == 3 and all(_same(a, b) for a, b in zip(made, expected, strict=True))
    assert made[0]["frames"].dtype == torch.uint8 and made[0]["frames"].shape[-1] == 64 * 64
