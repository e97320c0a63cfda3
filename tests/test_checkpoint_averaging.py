"""Checkpoint averaging (`average_last`): the trained model is the mean of its last N epoch-end weights, the
same after a crash and resume, logged; integer buffers keep the last epoch's value."""

from __future__ import annotations

import pytest
import torch

from mmrepro.averaging import EpochAverage
from mmrepro.tracking import MetricBuffer
from mmrepro.train import train_variant

from .test_train_step_checkpoints import NoisyToy, _Crash
from .test_train_loop import ToyConfig

EPOCHS = 3  # 4 micro-batches an epoch (n 64, batch 16)


def _train(tmp_path, average_last: int, name: str, crash_at: int | None = None, metrics=None):
    paper = NoisyToy()
    paper.crash_at = crash_at
    cfg = ToyConfig(n=64, epochs=EPOCHS, batch_size=16, lr=0.1, warmup_steps=2, average_last=average_last)
    return train_variant(paper.build(cfg, tmp_path).variant("main"), 5, tmp_path / name, "abc",
                         device=torch.device("cpu"), metrics=metrics)


def _flat(state: dict) -> torch.Tensor:
    return torch.cat([state["weight"].detach().flatten(), state["bias"].detach()])


def _params(model) -> torch.Tensor:
    return _flat(model.state_dict())


def test_the_model_is_the_mean_of_the_last_epochs(tmp_path):
    # the weights at the end of epochs 2 and 3 of the same run: a crash at the first batch of epoch 3 leaves the
    # epoch-2 checkpoint (the 9th micro-batch), the uninterrupted run ends at epoch 3
    with pytest.raises(_Crash):
        _train(tmp_path, 2, "cut.pt", crash_at=2 * 4 + 1)
    w2 = _flat(torch.load(tmp_path / "cut.pt", weights_only=True)["model"])
    averaged, history = _train(tmp_path, 2, "straight.pt")
    w3 = _flat(torch.load(tmp_path / "straight.pt", weights_only=True)["model"])  # the trained weights, not averaged
    assert not torch.allclose(w2, w3, atol=1e-3)  # the two epochs differ, so the mean is a third point
    assert torch.allclose(_params(averaged), (w2 + w3) / 2, atol=1e-7, rtol=0)
    assert history.averaged_epochs == 2
    last, last_history = _train(tmp_path, 1, "last.pt")
    assert torch.equal(_params(last), w3) and last_history.averaged_epochs == 1  # average_last 1: unchanged
    assert torch.load(tmp_path / "last.pt", weights_only=True)["average"]["total"] == {}  # and no copy kept


def test_a_crash_and_resume_returns_the_same_average(tmp_path):
    straight, _ = _train(tmp_path, 3, "straight.pt")
    with pytest.raises(_Crash):  # mid epoch 3, after epochs 1 and 2 entered the running sum
        _train(tmp_path, 3, "crashed.pt", crash_at=2 * 4 + 2)
    resumed, history = _train(tmp_path, 3, "crashed.pt")
    assert history.resumed_from_epoch == 2 and history.averaged_epochs == 3
    assert torch.equal(_params(resumed), _params(straight))
    again, history = _train(tmp_path, 3, "crashed.pt")  # a completed checkpoint: nothing trains, same average
    assert history.resumed_from_epoch == EPOCHS and torch.equal(_params(again), _params(straight))


def test_the_averaged_weights_are_validated_and_logged(tmp_path):
    logged = []

    class Recorder(MetricBuffer):
        def __init__(self):  # no MLflow run: keep what would be logged
            pass

        def log(self, key, value, step):
            logged.append((key, value, step))

        def flush(self):
            pass

    model, _ = _train(tmp_path, 2, "ckpt.pt", metrics=Recorder())
    averaged = [(k, v, s) for k, v, s in logged if "val_averaged" in k]  # a single variant: no key prefix
    assert averaged == [("val_averaged/weight", pytest.approx(float(model.weight)), EPOCHS)]


def test_integer_buffers_keep_the_last_value_and_one_epoch_changes_nothing():
    bn = torch.nn.BatchNorm1d(2)
    average = EpochAverage(last=2, epochs=3)
    for epoch, (mean, batches) in enumerate([(9.0, 1), (1.0, 5), (3.0, 7)], start=1):
        bn.running_mean.fill_(mean)
        bn.num_batches_tracked.fill_(batches)
        average.add(bn, epoch)  # epoch 1 is outside the last two
    assert average.apply(bn) == 2
    assert bn.running_mean.tolist() == [2.0, 2.0] and int(bn.num_batches_tracked) == 7
    single = EpochAverage(last=1, epochs=3)
    single.add(bn, 3)
    bn.running_mean.fill_(5.0)
    assert single.apply(bn) == 1 and bn.running_mean.tolist() == [5.0, 5.0]  # one snapshot: left as it is
    with pytest.raises(ValueError, match="last must be >= 1"):
        EpochAverage(last=0, epochs=3)
