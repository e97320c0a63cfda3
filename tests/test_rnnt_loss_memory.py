"""The function-merged RNN-T loss against the previous autograd implementation (kept here only, as
`_reference_rnnt_loss`) and brute force, and its peak live tensor memory beyond the logits."""

import pytest
import torch
import torch.nn.functional as F

from mmrepro.losses.rnnt import check_args, rnnt_loss
from mmrepro.metrics.efficiency import LiveTensorBytes

from .test_speech_models_rnnt import brute_force


def _reference_rnnt_loss(logits: torch.Tensor, targets: torch.Tensor, logit_lengths: torch.Tensor,
                         target_lengths: torch.Tensor, blank: int = 0, reduction: str = "mean",
                         log_probs: bool = False) -> torch.Tensor:
    """The previous `mmrepro.losses.rnnt.rnnt_loss` (commit 7dff9c4): log_softmax of the whole logits,
    gathers, one logcumsumexp per time step, gradients by autograd. Also used by benchmarks/rnnt_loss.py."""
    b, t_max, u1, c = check_args(logits, targets, logit_lengths, target_lengths, reduction)
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()  # half precision is not accurate enough for the forward variable
    logp = logits if log_probs else F.log_softmax(logits, dim=-1)
    blank_lp = logp[..., blank]  # (B, T, U+1)
    tgt = targets.long().clamp(0, c - 1)
    emit_lp = logp[:, :, :-1, :].gather(-1, tgt[:, None, :, None].expand(b, t_max, u1 - 1, 1)).squeeze(-1)
    emit_lp = F.pad(emit_lp, (0, 1), value=0.0)  # (B, T, U+1); last column unused
    # c(t, u) = sum_{k<u} emit(t, k): exclusive cumulative sum over u
    csum = F.pad(emit_lp[..., :-1].cumsum(-1), (1, 0), value=0.0)  # (B, T, U+1)
    alphas = []
    alpha = csum[:, 0]  # alpha(0, u) = sum of emissions at t = 0
    alphas.append(alpha)
    for t in range(1, t_max):
        prev = alpha + blank_lp[:, t - 1]
        alpha = csum[:, t] + torch.logcumsumexp(prev - csum[:, t], dim=-1)
        alphas.append(alpha)
    alpha_all = torch.stack(alphas, dim=1)  # (B, T, U+1)
    bi = torch.arange(b, device=logits.device)
    tl, ul = logit_lengths.long() - 1, target_lengths.long()
    nll = -(alpha_all[bi, tl, ul] + blank_lp[bi, tl, ul])
    if reduction == "mean":
        return nll.mean()
    if reduction == "sum":
        return nll.sum()
    return nll


def _case(seed: int, blank: int, dtype: torch.dtype, b: int = 4, t: int = 5, u: int = 3, c: int = 6):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, u + 1, c, generator=g, dtype=torch.float64) * 2
    t_lens = torch.randint(1, t + 1, (b,), generator=g)
    t_lens[0] = t
    u_lens = torch.randint(0, u + 1, (b,), generator=g)
    u_lens[1] = u
    labels = torch.tensor([k for k in range(c) if k != blank])
    targets = labels[torch.randint(0, c - 1, (b, u), generator=g)]
    for i in range(b):  # padding beyond the target length: anything, even the blank id
        targets[i, u_lens[i]:] = blank
    return logits.to(dtype), targets, t_lens, u_lens


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("blank", [0, 4])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("log_probs", [False, True])
def test_matches_reference_and_brute_force(dtype, tol, blank, reduction, log_probs):
    for seed in range(3):
        logits, targets, t_lens, u_lens = _case(seed, blank, dtype)
        if log_probs:
            logits = torch.log_softmax(logits, -1)
        x = logits.clone().requires_grad_(True)
        x_ref = logits.clone().requires_grad_(True)
        ours = rnnt_loss(x, targets, t_lens, u_lens, blank=blank, reduction=reduction, log_probs=log_probs)
        ref = _reference_rnnt_loss(x_ref, targets, t_lens, u_lens, blank=blank, reduction=reduction,
                                   log_probs=log_probs)
        assert ours.shape == ref.shape and ours.dtype == ref.dtype
        assert torch.allclose(ours, ref, atol=tol, rtol=0)
        w = torch.randn(ours.shape, dtype=dtype, generator=torch.Generator().manual_seed(seed + 10))
        (g_ours,) = torch.autograd.grad((ours * w).sum(), x)
        (g_ref,) = torch.autograd.grad((ref * w).sum(), x_ref)
        assert g_ours.dtype == dtype
        assert torch.allclose(g_ours, g_ref, atol=tol, rtol=0)
        # brute force in float64, values and gradients
        x64 = logits.double().requires_grad_(True)
        lp = x64 if log_probs else torch.log_softmax(x64, -1)
        per = torch.stack([
            brute_force(lp[i, : t_lens[i], : u_lens[i] + 1], targets[i, : u_lens[i]].tolist(), int(t_lens[i]),
                         blank)
            for i in range(len(t_lens))
        ])
        brute = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
        assert torch.allclose(ours.double(), brute, atol=tol, rtol=0)
        (g_brute,) = torch.autograd.grad((brute * w.double()).sum(), x64)
        assert torch.allclose(g_ours.double(), g_brute, atol=tol, rtol=0)
        # exactly zero gradient beyond each utterance's lattice
        for i in range(len(t_lens)):
            assert g_ours[i, t_lens[i]:].count_nonzero() == 0
            assert g_ours[i, :, u_lens[i] + 1:].count_nonzero() == 0


def test_unnormalised_log_probs_are_used_as_given():
    """log_probs=True does not renormalise: values and gradients equal the reference's on arbitrary input."""
    logits, targets, t_lens, u_lens = _case(7, 0, torch.float64)
    x, x_ref = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    ours = rnnt_loss(x, targets, t_lens, u_lens, reduction="sum", log_probs=True)
    ref = _reference_rnnt_loss(x_ref, targets, t_lens, u_lens, reduction="sum", log_probs=True)
    assert torch.allclose(ours, ref, atol=1e-10, rtol=0)
    (g,), (g_ref,) = torch.autograd.grad(ours, x), torch.autograd.grad(ref, x_ref)
    assert torch.allclose(g, g_ref, atol=1e-10, rtol=0)


def test_longer_lattice_and_chunked_backward_match_reference():
    """A lattice large enough for several gradient chunks per utterance (T rows split over chunks)."""
    g = torch.Generator().manual_seed(3)
    b, t, u, c = 3, 40, 12, 33
    logits = torch.randn(b, t, u + 1, c, generator=g, dtype=torch.float64)
    targets = torch.randint(1, c, (b, u), generator=g)
    t_lens, u_lens = torch.tensor([40, 31, 7]), torch.tensor([12, 5, 0])
    x, x_ref = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    ours = rnnt_loss(x, targets, t_lens, u_lens, blank=2)
    ref = _reference_rnnt_loss(x_ref, targets, t_lens, u_lens, blank=2)
    assert torch.allclose(ours, ref, atol=1e-10, rtol=0)
    ours.backward()
    ref.backward()
    assert torch.allclose(x.grad, x_ref.grad, atol=1e-10, rtol=0)
    # non-contiguous logits (a transposed view) give the same values and gradients
    xt = logits.transpose(1, 2).contiguous().requires_grad_(True)
    ours_t = rnnt_loss(xt.transpose(1, 2), targets, t_lens, u_lens, blank=2)
    assert torch.allclose(ours_t, ref, atol=1e-10, rtol=0)
    ours_t.backward()
    assert torch.allclose(xt.grad.transpose(1, 2), x_ref.grad, atol=1e-10, rtol=0)


def test_bfloat16_logits_get_a_bfloat16_gradient_close_to_float32():
    logits, targets, t_lens, u_lens = _case(5, 0, torch.float32, b=3, t=8, u=4, c=9)
    x16 = logits.bfloat16().requires_grad_(True)
    x32 = logits.bfloat16().float().requires_grad_(True)
    l16 = rnnt_loss(x16, targets, t_lens, u_lens)
    l32 = rnnt_loss(x32, targets, t_lens, u_lens)
    assert l16.dtype == torch.float32 and torch.allclose(l16, l32, atol=1e-5, rtol=0)
    (g16,), (g32,) = torch.autograd.grad(l16, x16), torch.autograd.grad(l32, x32)
    assert g16.dtype == torch.bfloat16
    assert torch.allclose(g16.float(), g32, atol=1e-2, rtol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as the trainer's bf16 autocast (on CUDA there)
        la = rnnt_loss(x16, targets, t_lens, u_lens)
    assert la.dtype == torch.float32 and torch.allclose(la, l32, atol=1e-5, rtol=0)
    (ga,) = torch.autograd.grad(la, x16)
    assert ga.dtype == torch.bfloat16 and torch.equal(ga, g16)


def test_validation_errors():
    x = torch.zeros(1, 2, 3, 4)
    tgt = torch.ones(1, 2, dtype=torch.long)
    with pytest.raises(ValueError):
        rnnt_loss(x, tgt, torch.tensor([2]), torch.tensor([2]), reduction="max")
    with pytest.raises(ValueError):
        rnnt_loss(x, tgt, torch.tensor([0]), torch.tensor([2]))
    with pytest.raises(ValueError):
        rnnt_loss(x, tgt, torch.tensor([2]), torch.tensor([3]))
    with pytest.raises(ValueError):
        rnnt_loss(x, torch.ones(1, 3, dtype=torch.long), torch.tensor([2]), torch.tensor([2]))


def _loss_peak_bytes(fn, b=2, t=100, u=30, c=257) -> tuple[int, int]:
    """Peak live tensor bytes created by forward + backward of `fn` (logits excluded), and the logits' bytes."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(b, t, u + 1, c, generator=g).requires_grad_(True)
    targets = torch.randint(1, c, (b, u), generator=g)
    t_lens, u_lens = torch.tensor([t, t - 7]), torch.tensor([u, u - 3])
    tracker = LiveTensorBytes(exclude=[logits])  # slices of the logits are not new memory
    with tracker:
        loss = fn(logits, targets, t_lens, u_lens)
        (grad,) = torch.autograd.grad(loss, logits)
    assert grad.shape == logits.shape
    return tracker.peak, logits.numel() * logits.element_size()


def test_peak_memory_beyond_logits_is_at_most_twice_the_logits():
    """Deterministic (LiveTensorBytes counts every storage aten ops return, forward and backward). The
    returned gradient itself is one logits-sized tensor; the old implementation needs about 4x."""
    peak, logits_bytes = _loss_peak_bytes(rnnt_loss)
    ref_peak, _ = _loss_peak_bytes(_reference_rnnt_loss)
    assert peak >= logits_bytes  # the gradient is counted, so the tracker saw the backward
    assert peak <= 2.0 * logits_bytes
    assert ref_peak > 2.0 * logits_bytes


def test_benchmark_quick_writes_json_with_both_tables(tmp_path, capsys):
    """benchmarks/rnnt_loss.py --quick runs end to end (no timing assertions: only the deterministic memory)."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "rnnt_loss.py"
    spec = importlib.util.spec_from_file_location("rnnt_loss_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "rnnt_loss.json"
    res = bench.main(["--quick", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(res))
    assert [r["t"] for r in saved["scaling"]["rows"]] == [20, 40, 80]
    assert saved["scaling"]["new_time_exponent"] is not None
    full = saved["memory"]["conformer_l_full_extrapolated"]
    assert full["logits_bytes"] == 32 * 613 * 201 * 1025 * 4
    assert full["new_x_logits"] <= 2.0 < full["old_x_logits"]
    assert "| T | cells" in capsys.readouterr().out
    assert not list(tmp_path.glob("*.tmp"))
