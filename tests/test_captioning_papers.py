"""The captioning paper modules: real-dataset preparation from a Karpathy JSON fixture, batches,
and the alignment paper's retrieval rows."""

import json

import numpy as np
import torch
from PIL import Image

from mmrepro.data.caption_vocab import BOS, EOS, PAD
from mmrepro.data.shapes_scenes import read_split
from mmrepro.papers.common import captioning as cap
from mmrepro.papers.geocapnet import Config as GeoConfig
from mmrepro.papers.karpathy_alignment import Config as KarpathyConfig
from mmrepro.papers.karpathy_alignment import KarpathyAlignment, _fragment_tokens



def test_prepare_flickr8k_from_karpathy_json(tmp_path, monkeypatch):
    from mmrepro.datasets import DatasetSettings

    from .dataset_fixtures import make_karpathy, patch_identities

    splits = make_karpathy(tmp_path / "datasets", "flickr8k", {"train": 6, "val": 2, "test": 4})
    patch_identities(monkeypatch, "flickr8k", splits)
    cfg = GeoConfig(epochs=1, batch_size=4, lr=0.001, dataset="flickr8k", image_size=8)
    out = tmp_path / "data"
    out.mkdir()
    info = cap.prepare_captions(cfg, out, seed=0, settings=DatasetSettings(tmp_path / "datasets"))
    assert info.splits == splits and info.dataset == "flickr8k" and list(info.identity) == ["flickr8k/test"]
    test = read_split(out, "test")
    released = json.loads((tmp_path / "datasets/flickr8k/dataset_flickr8k.json").read_text())["images"]
    assert test.images.shape == (4, 8, 8, 3)
    assert test.captions[1][4] == " ".join(released[9]["sentences"][4]["tokens"])
    assert cap.dataset_label(cfg) == "flickr8k"
    # the LR schedule's epoch length on a real dataset: the prepared split's (it was None once: a constant LR)
    from mmrepro.papers.attention_captioner import AttentionCaptioner

    acfg = AttentionCaptioner.Config(dataset="flickr8k", epochs=1, batch_size=4, lr=1e-3, image_size=8)
    assert len(AttentionCaptioner().build(acfg, out).variant("main").batches(0, 0)) == 2  # ceil(6 / 4)
    kcfg = KarpathyConfig(dataset="flickr8k", epochs=1, batch_size=2, lr=1e-3, image_size=8, generate_fraction=0.5)
    assert len(KarpathyAlignment().build(kcfg, out).variant("generate").batches(0, 0)) == 2  # ceil(6 * 0.5 / 2)


def test_batches_cover_the_fraction_and_tokens_strip_specials(tmp_path):
    cfg = KarpathyConfig(epochs=1, batch_size=16, lr=0.001, n_train=40, n_val=5, n_test=5, generate_fraction=0.5)
    cap.prepare_captions(cfg, tmp_path, seed=0)
    built = KarpathyAlignment().build(cfg, tmp_path)
    full = list(built.variant("align").batches(0, 0))
    half = list(built.variant("generate").batches(0, 0))
    assert [len(b["images"]) for b in full] == [16, 16, 8] and sum(len(b["images"]) for b in half) == 20
    assert len(built.variant("generate").batches(0, 0)) == 2 and len(built.variant("align").batches(0, 0)) == 3
    assert (full[0]["tokens"][:, 0] == BOS).all()
    tokens = torch.tensor([[BOS, 7, 8, EOS, PAD], [BOS, 9, EOS, PAD, PAD]])
    assert _fragment_tokens(tokens).tolist() == [[7, 8, PAD, PAD], [9, PAD, PAD, PAD]]


def test_alignment_rows(tmp_path):
    paper = KarpathyAlignment()
    cfg = KarpathyConfig(epochs=1, batch_size=8, lr=0.001, n_train=8, n_val=4, n_test=6, encoder_width=4,
                         encoder_dim=8, embed_dim=8, word_dim=8, variants=["align"])
    data = tmp_path / "data"
    paper.prepare(cfg, data, seed=0)
    torch.manual_seed(0)
    model = paper.build(cfg, data).variant("align").build_model().eval()
    out = tmp_path / "out"
    out.mkdir()
    rows = {r.metric: r for r in paper.evaluate({"align": model}, cfg, data, out, seed=0)}
    assert set(rows) == {"i2t_r1", "i2t_r5", "i2t_r10", "i2t_medr", "t2i_r1", "t2i_r5", "t2i_r10", "t2i_medr"}
    assert rows["t2i_r10"].value == 100.0  # only 6 images to rank
    assert rows["i2t_medr"].scale == "raw" and not rows["i2t_medr"].higher_is_better
    assert rows["i2t_r1"].scale == "x100" and rows["i2t_r1"].variant == "align" and rows["i2t_r1"].n_samples == 6
    assert 1 <= rows["i2t_medr"].value <= 26  # 30 sentences, 5 of them the image's own
    sim = np.load(out / "similarity.npy")
    assert sim.shape == (6, 30)
    assert json.loads((out / "retrieval.json").read_text())["metrics"]["t2i_r10"] == 100.0


def test_attention_maps_are_saved_as_images(tmp_path):
    from mmrepro.data.caption_vocab import CaptionVocab
    from mmrepro.models.attention_captioner import AttentionCaptioner, AttentionCaptionerConfig
    from mmrepro.models.image_encoder import ImageEncoderConfig
    from mmrepro.papers.attention_captioner import save_attention_maps

    vocab = CaptionVocab.build(["a red circle left of a blue square"])
    torch.manual_seed(0)
    model = AttentionCaptioner(AttentionCaptionerConfig(vocab_size=len(vocab), encoder=ImageEncoderConfig(
        dim=8, grid=6, width=4), embed_dim=8, hidden_dim=8, attn_dim=4)).eval()
    images = torch.randint(0, 256, (2, 3, 48, 48), dtype=torch.uint8)
    tokens = [vocab.encode("a red circle left of a blue square", 20)[1:-1], vocab.encode("a red", 20)[1:-1]]
    paths = save_attention_maps(model, images, tokens, vocab, tmp_path / "attention")
    assert [p.name for p in paths] == ["test_000.png", "test_001.png"]
    long, short = (Image.open(p) for p in paths)
    assert long.height > short.height  # 10 panels wrap onto a second row, 4 panels do not
