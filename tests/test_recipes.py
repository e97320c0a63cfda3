"""The papers' training recipes: what configs/<paper>.yaml ships for `full` is what references/<paper>.yaml records as
the paper's recipe, the loop builds exactly the optimizer and schedule a recipe names, and accumulation
reaches the effective batch."""

from __future__ import annotations

import math

import pytest
import torch

from mmrepro.config import PROFILES, validate_params
from mmrepro.papers import get_paper
from mmrepro.papers.base import TrainConfig
from mmrepro.report.references import load_references
from mmrepro.report.stage import paper_recipe
from mmrepro.train import build_optimizer, lr_lambda

from .conftest import REPO, committed_params, committed_recipes

RECIPES = committed_recipes()


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_the_shipped_full_profile_is_the_recorded_paper_recipe(name):
    refs = load_references(name, REPO / "references")
    assert refs.recipe == RECIPES[name]["full"]
    resolved = paper_recipe(name, refs)
    assert resolved == get_paper(name).Config.model_validate(RECIPES[name]["full"]).model_dump(mode="json")


def test_every_profile_of_every_paper_validates():
    params = validate_params(committed_params(), RECIPES)
    assert set(params.recipes) == set(params.run) and all(set(p) == set(PROFILES) for p in params.recipes.values())


def test_conformer_full_is_gulati_et_al_section_3_2():
    full = RECIPES["conformer"]["full"]
    assert (full["optimizer"], full["betas"], full["eps"], full["schedule"], full["warmup_steps"]) == (
        "adam", [0.9, 0.98], 1e-9, "noam", 10000)
    assert full["lr"] == pytest.approx(0.05 / math.sqrt(512), rel=1e-4)  # peak 0.05 / sqrt(d), d = 512 for L


def test_sympow_full_tests_the_headline_power_and_reaches_its_effective_batch():
    full = RECIPES["sympow"]["full"]
    assert {"softmax", "sympow_p4", "conformal_p4"} <= set(full["variants"])
    assert full["batch_size"] * full["accumulation"] == 64
    for variant, recipe in full["variant_recipes"].items():  # micro-batches that fit 80 GB, same 64 sequences
        assert recipe["batch_size"] * recipe["accumulation"] == 64, variant


def test_vqvae_full_trains_the_papers_250k_steps():
    full = RECIPES["vqvae"]["full"]
    assert full["epochs"] * full["recon_batches_per_epoch"] == 250_000 and full["batch_size"] == 128


def test_noam_schedule_peaks_at_warmup_then_decays_as_inverse_square_root():
    f = lr_lambda(warmup=100, total=None, schedule="noam")
    assert f(0) == pytest.approx(0.01) and f(99) == pytest.approx(1.0)
    assert f(399) == pytest.approx(0.5) and f(9999) == pytest.approx(0.1)


def test_step_and_cosine_floor_schedules():
    f = lr_lambda(0, None, "step", steps_per_epoch=10, decay_every=2, decay_rate=0.5)
    assert [f(s) for s in (0, 19, 20, 39, 40)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    g = lr_lambda(0, 10, "cosine", min_ratio=0.1)
    assert g(0) == pytest.approx(1.0) and g(10) == pytest.approx(0.1) and g(5) == pytest.approx(0.55)


def test_the_optimizer_is_the_one_the_recipe_names():
    model = torch.nn.Linear(3, 2)
    cfg = TrainConfig(epochs=1, batch_size=4, lr=0.002, optimizer="adam", betas=(0.9, 0.98), eps=1e-9, weight_decay=1e-6)
    opt = build_optimizer(model, cfg)
    group = opt.param_groups[0]
    assert type(opt) is torch.optim.Adam and group["betas"] == (0.9, 0.98) and group["eps"] == 1e-9
    assert group["weight_decay"] == 1e-6
    sgd = build_optimizer(model, cfg.model_copy(update={"optimizer": "sgd", "momentum": 0.9}))
    assert type(sgd) is torch.optim.SGD and sgd.param_groups[0]["momentum"] == 0.9


def test_variant_recipes_override_only_their_variant():
    cfg = TrainConfig(epochs=2, batch_size=4, lr=0.1, variant_recipes={"generate": {"optimizer": "rmsprop", "lr": 0.01}})
    assert cfg.recipe_for("generate").optimizer == "rmsprop" and cfg.recipe_for("generate").lr == 0.01
    assert cfg.recipe_for("align") is cfg
    with pytest.raises(ValueError, match="variant_recipes.generate.lr: Input should be greater than 0"):
        TrainConfig(epochs=2, batch_size=4, lr=0.1, variant_recipes={"generate": {"lr": -1}})
    with pytest.raises(ValueError, match="generate: not recipe keys: hidden_dim"):
        TrainConfig(epochs=2, batch_size=4, lr=0.1, variant_recipes={"generate": {"hidden_dim": 3}})
