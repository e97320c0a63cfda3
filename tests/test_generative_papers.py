"""The vqvae and sympow paper modules end to end on tiny configs (prepare -> train steps -> evaluate),
calling the contract's methods directly (the stages add MLflow and DVC around exactly these)."""

import math
from pathlib import Path

import pytest
import torch
import yaml

from mmrepro.config import ParamsError, validate_params
from mmrepro.data import byte_corpus
from mmrepro.papers import get_paper


def _train(variant, steps=2):
    torch.manual_seed(0)
    model = variant.build_model()
    opt = torch.optim.AdamW(model.parameters(), lr=variant.recipe.lr)
    for i, batch in enumerate(variant.batches(0, 0)):
        if i == steps:
            break
        loss = variant.loss(model, batch)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_vqvae_paper_smoke(tmp_path):
    paper = get_paper("vqvae")
    cfg = paper.Config(epochs=1, batch_size=8, lr=1e-3, recon_dataset="captioned-shapes", n_train=32, n_val=8,
                       n_test=12, hidden=8, res_hidden=4, codebook_size=16, code_dim=4, vq_steps=1,
                       prior_d_model=16, prior_layers=1, prior_heads=2, n_generate=6, n_grid=4)
    data = tmp_path / "data"
    data.mkdir()
    info = paper.prepare(cfg, data, seed=0)
    assert info.splits["shapes_train"] == 32 and len(info.details["heldout_pairs"]) == 6
    built = paper.build(cfg, data)
    # the judge is one instrument for every run: it trains with seed 0 whatever the run's seed; the models it judges
    # train with the run's seed
    assert {v.name: (v.training_seed(0), v.training_seed(2)) for v in built.variants} == {
        "recon": (0, 2), "text2image": (0, 2), "classifier": (0, 0)}
    models = {v.name: _train(v, steps=3) for v in built.variants}
    assert int(models["text2image"].steps_done) == 3  # 1 VQ-VAE step, then 2 prior steps
    out = tmp_path / "out"
    out.mkdir()
    with torch.no_grad():
        rows = built.evaluate(models, out, seed=0)
    got = {(r.variant, r.metric): r for r in rows}
    bpd = got[("recon", "bits_per_dim")]
    assert bpd.dataset == "captioned-shapes" and bpd.value > 0 and not bpd.higher_is_better
    assert 1.0 <= got[("recon", "codebook_perplexity")].value <= 16
    assert 0.0 <= got[("text2image", "gen_acc_shape")].value <= 1.0
    assert got[("text2image", "gen_acc_shape")].n_samples == 6
    for k in ("shape", "colour"):  # the judge on the VQ-VAE's reconstructions of all 12 real test images
        check = got[("classifier", f"classifier_acc_vqvae_recon_{k}")]
        assert check.n_samples == 12 and 0.0 <= check.value <= 1.0 and abs(check.value * 12 - round(check.value * 12)) < 1e-4
    for name in ("reconstructions_recon.png", "reconstructions_shapes.png", "generated_from_heldout_captions.png",
                 "generations.tsv"):
        assert (out / name).stat().st_size > 0
    assert len((out / "generations.tsv").read_text().splitlines()) == 7


def test_sympow_paper_smoke(tmp_path, monkeypatch):
    root = tmp_path / "lib"
    root.mkdir()
    for i in range(40):
        (root / f"m{i}.py").write_text(f"def f{i}(x):\n    return x + {i}\n" * 20)
    monkeypatch.setattr(byte_corpus, "stdlib_root", lambda: root)
    paper = get_paper("sympow")
    cfg = paper.Config(epochs=1, batch_size=4, lr=1e-3, context=16, batches_per_epoch=2, eval_windows=3,
                       val_windows=2, d_model=16, n_layer=1, n_head=2, sample_bytes=5,
                       variants=["softmax", "sympow_p2", "conformal_p4"])
    data = tmp_path / "data"
    data.mkdir()
    info = paper.prepare(cfg, data, seed=0)
    assert sum(info.splits.values()) == 40
    built = paper.build(cfg, data)
    models = {v.name: _train(v) for v in built.variants}
    out = tmp_path / "out"
    out.mkdir()
    with torch.no_grad():
        rows = built.evaluate(models, out, seed=0)
    got = {(r.variant, r.metric): r.value for r in rows}
    for v in cfg.variants:
        for m in (1, 2, 4):
            assert got[(v, f"bits_per_byte_ctx{m}x")] == pytest.approx(got[(v, f"loss_nats_ctx{m}x")] / math.log(2))
        assert 0 < got[(v, "loss_nats_ctx1x")] < 6.0
        assert got[(v, "recurrent_vs_parallel_max_abs_logit_diff")] < 1e-3
    csv_lines = (out / "loss_by_position.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 3 * (16 + 32 + 64)
    assert "Verdict" in (out / "claims.md").read_text()
    assert (out / "loss_by_position.png").stat().st_size > 0


def test_recipes_of_the_generative_papers_validate():
    from mmrepro.config import load_recipes

    raw, recipes = yaml.safe_load(Path("params.yaml").read_text()), load_recipes()
    params = validate_params(raw, recipes)
    for name in ("vqvae", "sympow"):
        assert set(params.recipes[name]) == {"smoke", "cpu", "full"}
    assert params.recipes["vqvae"]["full"]["recon_dataset"] == "cifar10"
    assert params.recipes["vqvae"]["full"]["codebook_size"] == 512
    recipes["sympow"]["cpu"]["variants"] = ["sympow_p3"]
    with pytest.raises(ParamsError, match="^cpu.variants") as info:
        validate_params(raw, recipes)
    assert info.value.source == "configs/sympow.yaml"
