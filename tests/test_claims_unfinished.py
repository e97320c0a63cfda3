"""A claim is never judged from unfinished training: the sympow claims file says "not judged" when a step cap
cut training short, and the same numbers give a verdict when training completed."""

from mmrepro.papers.base import Result
from mmrepro.papers.sympow import Config, _claims_markdown


def _results():
    out = []
    for variant, loss in (("softmax", 2.0), ("sympow_p2", 2.5), ("sympow_p4", 1.9), ("conformal_p4", 1.95)):
        for m in (1, 2, 4):
            out.append(Result(f"loss_nats_ctx{m}x", loss + 0.01 * m, "bytes", "test", 4, variant=variant))
        out.append(Result("loss_nats_ctx4x_beyond_train", loss + 0.05, "bytes", "test", 4, variant=variant))
    return out


def test_claims_from_capped_training_are_not_judged():
    cfg = Config(epochs=1, batch_size=2, lr=0.01, variants=["softmax", "sympow_p2", "sympow_p4", "conformal_p4"])
    judged = _claims_markdown(_results(), cfg, training_completed=True)
    assert "Verdict at our scale: **supported**" in judged
    unjudged = _claims_markdown(_results(), cfg, training_completed=False)
    assert unjudged.count("**not judged: training did not complete**") == 2
    assert "supported" not in unjudged and "contradicted" not in unjudged
