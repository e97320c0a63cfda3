"""The vsr_conformer paper module on a tiny synthetic-lips corpus: prepare -> train steps -> evaluate rows."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from mmrepro.config import load_params, paper_config
from mmrepro.papers import get_paper


def test_paper_smoke_end_to_end(tmp_path):
    paper = get_paper("vsr_conformer")
    cfg = paper_config(load_params("params.yaml"), "vsr_conformer", "smoke")
    info = paper.prepare(cfg, tmp_path / "data", seed=0)
    assert info.dataset == "synthetic-lips" and info.splits == {"train": 16, "dev": 3, "test": 6}
    built = paper.build(cfg, tmp_path / "data")
    assert [v.name for v in built.variants] == ["lp", "conv"]
    models = {}
    for variant in built.variants:
        torch.manual_seed(0)
        model = variant.build_model()
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
        batch = next(iter(variant.batches(0, 0)))
        assert batch["frames"].dtype == torch.uint8 and batch["frames"].shape[-1] == 64 * 64
        losses = []
        for _ in range(3):
            loss = variant.loss(model, batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < losses[0]
        models[variant.name] = model.eval()
        with torch.no_grad():
            val = variant.validate(model)
        assert set(val) == {"wer", "cer", "process_cpu_s"} and 0 <= val["cer"] and val["process_cpu_s"] > 0
    out = tmp_path / "out"
    out.mkdir()
    with torch.no_grad():
        results = built.evaluate(models, out, seed=0)
    rows = {(r.variant, r.metric): r for r in results}
    assert set(rows) == {("lp", "wer"), ("lp", "cer"), ("conv", "wer"), ("conv", "cer"), ("lp-vs-conv", "wer_lp_minus_conv")}
    claim = rows[("lp-vs-conv", "wer_lp_minus_conv")]
    assert claim.value == rows[("lp", "wer")].value - rows[("conv", "wer")].value
    lo, hi = claim.details["ci95"]
    assert lo <= claim.value <= hi and claim.details["agrees_with_claim"] == (lo <= 0)
    assert all(r.n_samples == 6 and r.split == "test" for r in results)
    assert "normalisation" in rows[("lp", "wer")].details
    hyps = [json.loads(line) for line in (out / "hyp_lp_synthetic-lips_test.jsonl").read_text().splitlines()]
    assert len(hyps) == 6 and {"ref", "hyp"} <= set(hyps[0])
    gif = Image.open(out / "sample_lp_0.gif")
    assert gif.n_frames > 10 and gif.size[1] == 64 * 3 + 48


def test_lrs3_prepare_and_batches(tmp_path, monkeypatch):
    """The full profile's LRS3 path on a fixture in LRS3's layout (mp4 written with PyAV + txt)."""
    import numpy as np

    from mmrepro.data.lrs3 import write_mp4
    from mmrepro.datasets import DatasetSettings
    from mmrepro.papers.vsr_conformer import Config

    from .dataset_fixtures import patch_identities

    root = tmp_path / "LRS3"
    rng = np.random.default_rng(0)
    for split, spk, clip, text in [("trainval", "a1", "00001", "HELLO WORLD"), ("trainval", "a2", "00002", "GOOD DAY"),
                                   ("trainval", "a3", "00003", "SEE YOU"), ("test", "t1", "00004", "IT'S TIME")]:
        d = root / split / spk
        d.mkdir(parents=True)
        write_mp4(d / f"{clip}.mp4", rng.integers(0, 255, (20, 96, 96), dtype=np.uint8))
        (d / f"{clip}.txt").write_text(f"Text:  {text}\nConf:  4\n")
    patch_identities(monkeypatch, "lrs3", {"trainval": 3, "test": 1})
    cfg = Config(epochs=1, batch_size=2, lr=1e-3, dataset="lrs3", lrs3_dev_speakers=1,
                 d_model=16, num_layers=1, num_heads=2, conv_kernel=3, resnet_width=4)
    paper = get_paper("vsr_conformer", DatasetSettings(tmp_path))
    info = paper.prepare(cfg, tmp_path / "data", seed=0)
    assert info.dataset == "lrs3" and info.splits == {"train": 2, "dev": 1, "test": 1}
    batch = next(iter(paper.build(cfg, tmp_path / "data").variant("lp").batches(0, 0)))
    assert batch["frames"].shape == (2, 20, 64 * 64) and batch["lengths"].tolist() == [20, 20]
    test = [json.loads(x) for x in (tmp_path / "data" / "test.jsonl").read_text().splitlines()]
    assert test[0]["text"] == "IT'S TIME" and paper.tokenizer.decode(paper.tokenizer.encode(test[0]["text"])) == "it's time"


# the smoke profile's corpus and model sizes, written out so the test does not depend on params.yaml
_SMOKE = {"epochs": 1, "batch_size": 8, "lr": 0.002, "pixel_norm": "clip", "train_speakers": 4, "dev_speakers": 1,
          "test_speakers": 2, "clips_per_speaker": 4, "eval_clips_per_speaker": 3,
          "sentences": {"train": 40, "dev": 10, "test": 10}, "d_model": 32, "num_layers": 1, "num_heads": 2,
          "conv_kernel": 7, "resnet_width": 4, "val_clips": 3, "sample_videos": 0}


def test_beam_size_config():
    paper = get_paper("vsr_conformer")
    assert paper.Config(**_SMOKE).decoding() == "greedy ctc"
    assert paper.Config(**_SMOKE, head="transducer", beam_size=8).decoding() == "beam 8 transducer"
    assert paper.Config(**_SMOKE, head="transducer").decoding() == "greedy transducer"
    with pytest.raises(ValueError, match="beam_size 8 needs head: transducer"):
        paper.Config(**_SMOKE, beam_size=8)


def test_evaluate_with_beam_search_reports_it(tmp_path):
    paper = get_paper("vsr_conformer")
    cfg = paper.Config(**_SMOKE, variants=["lp"], head="transducer", pred_dim=16, beam_size=3)
    paper.prepare(cfg, tmp_path / "data", seed=0)
    torch.manual_seed(0)
    lp = paper.build(cfg, tmp_path / "data").variant("lp")
    model = lp.build_model().eval()
    calls = []
    beam_search = model.head.beam_search
    model.head.beam_search = lambda *a, **k: calls.append(a[2]) or beam_search(*a, **k)
    with torch.no_grad():
        lp.validate(model)
        assert calls == []  # per-epoch validation stays greedy
        out = tmp_path / "out"
        out.mkdir()
        results = paper.evaluate({"lp": model}, cfg, tmp_path / "data", out, seed=0)
    assert calls and set(calls) == {3}
    assert {r.details["decoding"] for r in results} == {"beam 3 transducer"}
    assert "decoding: beam 3 transducer" in (out / "RESULTS.md").read_text()
