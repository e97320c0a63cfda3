"""Step checkpoints in one process: every N steps or M minutes, a crash mid-epoch, an exact resume (the RNG
state included: the step below draws noise from torch's global generator, as dropout does)."""

from __future__ import annotations

import pytest
import torch

from mmrepro.train import CheckpointEvery, train_variant

from .test_train_loop import ToyConfig, ToyRegression

CFG = ToyConfig(n=112, epochs=3, batch_size=16, accumulation=2, lr=0.1, warmup_steps=2)  # 7 micro-batches / epoch


class _Crash(Exception):
    pass


class NoisyToy(ToyRegression):
    """Input noise from the global RNG; raises at its `crash_at`-th step (None = never)."""

    crash_at: int | None = None
    calls = 0

    def loss(self, model, batch):
        self.calls += 1
        if self.calls == self.crash_at:
            raise _Crash
        x, y = batch
        return super().loss(model, (x + 0.1 * torch.randn_like(x), y))


def _train(tmp_path, every: CheckpointEvery, crash_at: int | None = None, name: str = "ckpt.pt"):
    paper = NoisyToy()
    paper.crash_at = crash_at
    return train_variant(paper.build(CFG, tmp_path).variant("main"), 5, tmp_path / name, "abc", device=torch.device("cpu"),
                         checkpoint_every=every)


@pytest.mark.parametrize("every", [CheckpointEvery(steps=3), CheckpointEvery(minutes=1e-9)], ids=["steps", "minutes"])
def test_crash_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path, every):
    straight, s_hist = _train(tmp_path, CheckpointEvery(), name="straight.pt")
    # 4 steps per epoch (3 pairs + 1 single); the 12th micro-batch is the 5th of epoch 2
    with pytest.raises(_Crash):
        _train(tmp_path, every, crash_at=12)
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    # every 3 steps: step 6 ends micro-batch 4 of epoch 2; every ~0 minutes: each step, the last after batch 4
    assert (state["epoch"], state["batch"], state["step"]) == (1, 4, 6)
    resumed, r_hist = _train(tmp_path, every)
    assert r_hist.resumed_from_epoch == 1 and r_hist.optimizer_steps == 12
    assert r_hist.losses == s_hist.losses  # exact: same batches, same noise
    assert torch.equal(resumed.weight, straight.weight) and torch.equal(resumed.bias, straight.bias)


def test_without_the_rng_state_the_noise_would_differ(tmp_path):
    """The RNG restore matters: the same resume with the checkpoint's RNG state replaced diverges."""
    straight, _ = _train(tmp_path, CheckpointEvery(), name="straight.pt")
    with pytest.raises(_Crash):
        _train(tmp_path, CheckpointEvery(steps=1), crash_at=12)
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    state["rng_cpu"] = torch.stack([torch.Generator().manual_seed(99).get_state()])
    torch.save(state, tmp_path / "ckpt.pt")
    resumed, _ = _train(tmp_path, CheckpointEvery(steps=1))
    assert not torch.equal(resumed.weight, straight.weight)
