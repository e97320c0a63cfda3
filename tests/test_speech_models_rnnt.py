"""RNN-T loss against brute-force enumeration of every alignment, and a published value."""

import itertools

import pytest
import torch

from mmrepro.losses.rnnt import rnnt_loss


def brute_force(logp: torch.Tensor, targets: list[int], t_len: int, blank: int) -> torch.Tensor:
    """-log sum over all alignments of (t_len, U+1, C) log-probabilities: every ordering of t_len blanks and U
    labels whose last symbol is blank."""
    u_len = len(targets)
    totals = []
    # an alignment = positions of the U label emissions among the first t_len - 1 + U steps, then a final blank
    n_steps = t_len - 1 + u_len
    for label_steps in itertools.combinations(range(n_steps), u_len):
        t = u = 0
        s = logp.new_zeros(())
        for step in range(n_steps):
            if step in label_steps:
                s = s + logp[t, u, targets[u]]
                u += 1
            else:
                s = s + logp[t, u, blank]
                t += 1
        s = s + logp[t, u, blank]  # final blank at (T-1, U)
        assert (t, u) == (t_len - 1, u_len)
        totals.append(s)
    return -torch.logsumexp(torch.stack(totals), dim=0)


@pytest.mark.parametrize("blank", [0, 3])
def test_rnnt_matches_brute_force_values_and_gradients(blank):
    g = torch.Generator().manual_seed(0)
    b, t, u, c = 3, 4, 3, 5
    logits = torch.randn(b, t, u + 1, c, generator=g, dtype=torch.float64, requires_grad=True)
    labels = [k for k in range(c) if k != blank]
    targets = torch.tensor([[labels[0], labels[1], labels[2]], [labels[3], labels[0], 0], [labels[1], 0, 0]])
    t_lens = torch.tensor([4, 3, 2])
    u_lens = torch.tensor([3, 2, 1])
    ours = rnnt_loss(logits, targets, t_lens, u_lens, blank=blank, reduction="none")
    ref = torch.stack([
        brute_force(logits[i, : t_lens[i], : u_lens[i] + 1].log_softmax(-1), targets[i, : u_lens[i]].tolist(),
                    int(t_lens[i]), blank)
        for i in range(b)
    ])
    assert torch.allclose(ours, ref, atol=1e-10, rtol=0)
    (g_ours,) = torch.autograd.grad(ours.sum(), logits)
    (g_ref,) = torch.autograd.grad(ref.sum(), logits)
    assert torch.allclose(g_ours, g_ref, atol=1e-10, rtol=0)
    # padding beyond each utterance's lengths gets exactly zero gradient
    assert g_ours[1, 3:].abs().max() == 0 and g_ours[2, :, 2:].abs().max() == 0


def test_rnnt_float32_agrees_within_1e_5():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 6, 4, 7, generator=g, dtype=torch.float64)
    targets = torch.tensor([[1, 2, 3], [4, 5, 0]])
    args = (targets, torch.tensor([6, 5]), torch.tensor([3, 2]))
    a = rnnt_loss(logits.float(), *args, reduction="none")
    ref = torch.stack([brute_force(logits[0].log_softmax(-1), [1, 2, 3], 6, 0),
                       brute_force(logits[1, :5, :3].log_softmax(-1), [4, 5], 5, 0)])
    assert torch.allclose(a.double(), ref, atol=1e-5, rtol=0)


def test_rnnt_known_value_warp_transducer_small():
    """B=1, T=2, U=2 (3 prediction steps), 5 classes, blank 0: the 'small' case of the warp-transducer
    and torchaudio test suites, whose expected cost is 4.495666."""
    acts = torch.tensor([0.1, 0.6, 0.1, 0.1, 0.1, 0.1, 0.1, 0.6, 0.1, 0.1, 0.1, 0.1, 0.2, 0.8, 0.1,
                         0.1, 0.6, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.1, 0.1, 0.7, 0.1, 0.2, 0.1, 0.1]).view(1, 2, 3, 5)
    loss = rnnt_loss(acts, torch.tensor([[1, 2]]), torch.tensor([2]), torch.tensor([2]), reduction="sum")
    assert loss.item() == pytest.approx(4.495666, abs=1e-5)


def test_rnnt_trivial_one_frame_no_label_is_minus_log_blank():
    logits = torch.tensor([[[[2.0, 0.0, 1.0]]]])  # (1, 1, 1, 3)
    loss = rnnt_loss(logits, torch.zeros(1, 0, dtype=torch.long), torch.tensor([1]), torch.tensor([0]))
    expected = -torch.log_softmax(logits[0, 0, 0], -1)[0]
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)


def test_rnnt_rejects_bad_shapes():
    with pytest.raises(ValueError):
        rnnt_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2, dtype=torch.long), torch.tensor([2]), torch.tensor([2]))
    with pytest.raises(ValueError):
        rnnt_loss(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, dtype=torch.long), torch.tensor([3]), torch.tensor([2]))
