"""The one training loop: determinism, per-epoch checkpoints, resume only for the same config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmrepro.papers.base import DataInfo, EpochBatches, Paper, TrainConfig, Variant, iter_minibatches
from mmrepro.train import lr_lambda, train_variant


class ToyConfig(TrainConfig):
    n: int = 64
    blow_up: bool = False


class ToyRegression(Paper):
    """y = 3x - 1 with noise: small enough to train in milliseconds."""

    name = "toy"
    title = "toy regression"
    Config = ToyConfig

    def prepare(self, cfg, data_dir, seed):
        return DataInfo("toy", {"train": cfg.n})

    def make_variants(self, cfg, data_dir):
        recipe = cfg.recipe_for("main")
        return [Variant(self.name, "main", recipe, lambda: torch.nn.Linear(1, 1),
                        lambda epoch, seed: EpochBatches(-(-cfg.n // recipe.batch_size), self.batches(recipe, epoch, seed)),
                        lambda model, batch: self.loss(model, batch), lambda model: self.validate(model))]

    def batches(self, cfg, epoch, seed):
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(cfg.n, 1, generator=gen)
        y = 3 * x - 1 + 0.1 * torch.randn(cfg.n, 1, generator=gen)
        order_gen = torch.Generator().manual_seed(seed * 31 + epoch)
        for idx in iter_minibatches(cfg.n, cfg.batch_size, order_gen):
            yield (x[idx], y[idx])

    def loss(self, model, batch):
        x, y = batch
        loss = torch.nn.functional.mse_loss(model(x), y)
        return loss * float("inf") if self.blow_up else loss

    blow_up = False

    def validate(self, model):
        return {"weight": float(model.weight)}

    def evaluate(self, models, cfg, data_dir, out_dir, seed):
        return []


def _train(tmp_path: Path, epochs: int, lr: float = 0.05, ckpt: str = "ckpt.pt"):
    cfg = ToyConfig(epochs=epochs, batch_size=16, lr=lr, warmup_steps=2)
    return train_variant(ToyRegression().build(cfg, tmp_path).variant("main"), 3, checkpoint_path=tmp_path / ckpt,
                         data_fingerprint="abc", device=torch.device("cpu"))


def test_learns_and_is_deterministic(tmp_path):
    model_a, hist_a = _train(tmp_path, epochs=40, lr=0.2, ckpt="a.pt")
    model_b, hist_b = _train(tmp_path, epochs=40, lr=0.2, ckpt="b.pt")
    assert model_a.weight.item() == pytest.approx(3.0, abs=0.05)
    assert model_a.bias.item() == pytest.approx(-1.0, abs=0.05)
    assert torch.equal(model_a.weight, model_b.weight)
    assert hist_a.losses == hist_b.losses and len(hist_a.losses) == 40 * 4
    assert [v["epoch"] for v in hist_a.validation] == list(range(1, 41))


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    straight, _ = _train(tmp_path / "x", epochs=6)
    ckpt = tmp_path / "y" / "ckpt.pt"
    # "crash" after epoch 4: the checkpoint of an epochs=6 run, cut short by replaying its first 4 epochs
    cfg6 = ToyConfig(epochs=6, batch_size=16, lr=0.05, warmup_steps=2)
    paper = ToyRegression()
    original = paper.validate
    calls = {"n": 0}

    def crash_after_four(model):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("simulated crash during epoch 5 validation")
        return original(model)

    paper.validate = crash_after_four
    with pytest.raises(KeyboardInterrupt):
        train_variant(paper.build(cfg6, tmp_path).variant("main"), 3, ckpt, "abc", device=torch.device("cpu"))
    state = torch.load(ckpt, weights_only=True)  # checkpoints load without unpickling code
    assert state["epoch"] == 4

    resumed, history = train_variant(ToyRegression().build(cfg6, tmp_path).variant("main"), 3, ckpt, "abc",
                                     device=torch.device("cpu"))
    assert history.resumed_from_epoch == 4
    assert torch.equal(resumed.weight, straight.weight) and torch.equal(resumed.bias, straight.bias)
    assert len(history.losses) == 6 * 4


def test_a_checkpoint_of_another_config_is_not_resumed(tmp_path):
    _train(tmp_path, epochs=3)
    _, history = _train(tmp_path, epochs=3, lr=0.01)  # different lr: different fingerprint
    assert history.resumed_from_epoch == 0
    _, history = _train(tmp_path, epochs=3, lr=0.01)  # same again: resumes at the end, trains nothing more
    assert history.resumed_from_epoch == 3 and len(history.losses) == 12


def test_non_finite_loss_stops_with_a_clear_error(tmp_path):
    paper = ToyRegression()
    paper.blow_up = True
    cfg = ToyConfig(epochs=1, batch_size=16, lr=0.1)
    with pytest.raises(FloatingPointError, match="toy/main: loss is inf at step 0"):
        train_variant(paper.build(cfg, tmp_path).variant("main"), 0, tmp_path / "c.pt", "abc", device=torch.device("cpu"))


def test_warmup_then_cosine_schedule():
    f = lr_lambda(warmup=4, total=12)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(8) == pytest.approx(0.5) and f(12) == pytest.approx(0.0)
    assert lr_lambda(0, None)(1000) == 1.0


def test_accumulation_reaches_the_effective_batch_with_the_same_updates(tmp_path):
    """4 micro-batches of 4 accumulated = one batch of 16: the same optimizer steps and weights (the toy's
    shuffle is one permutation per epoch, so the micro-batches partition each big batch exactly)."""
    paper = ToyRegression()
    common = dict(epochs=2, lr=0.05, optimizer="sgd", schedule="constant", grad_clip=None)
    big, h_big = train_variant(paper.build(ToyConfig(batch_size=16, **common), tmp_path).variant("main"), 3, tmp_path / "a.pt",
                               "abc", device=torch.device("cpu"))
    acc, h_acc = train_variant(paper.build(ToyConfig(batch_size=4, accumulation=4, **common), tmp_path).variant("main"), 3,
                               tmp_path / "b.pt", "abc", device=torch.device("cpu"))
    assert h_big.optimizer_steps == h_acc.optimizer_steps == 8
    assert torch.allclose(big.weight, acc.weight, atol=1e-6) and torch.allclose(big.bias, acc.bias, atol=1e-6)
    assert [s for s, _ in h_acc.losses] == list(range(8))


def test_a_step_cap_marks_training_incomplete(tmp_path):
    cfg = ToyConfig(epochs=3, batch_size=16, lr=0.05, max_steps=2)
    _, history = train_variant(ToyRegression().build(cfg, tmp_path).variant("main"), 3, tmp_path / "c.pt", "abc",
                               device=torch.device("cpu"))
    assert history.capped and not history.completed and history.optimizer_steps == 2
    _, full = _train(tmp_path, epochs=1, ckpt="d.pt")
    assert full.completed and full.optimizer_steps == 4
