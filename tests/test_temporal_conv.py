"""`temporal_conv3d`: torch's Conv3d forward with its weight gradient taken as a 2D convolution over stacked
frames (the lip-reading stem's speed-up, `benchmarks/vsr_stem.py`). Same values as F.conv3d: forward exactly,
gradients to float tolerance against a float64 reference, and gradcheck for the input and weight gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmrepro.models.temporal_conv import temporal_conv3d
from mmrepro.models.vsr_frontends import Conv3dResNetFrontEnd


def _grads(conv, x: torch.Tensor, weight: torch.Tensor, grad: torch.Tensor, stride, padding):
    weight = weight.detach().requires_grad_()
    return torch.autograd.grad(conv(x, weight, stride, padding), weight, grad)[0]


def _conv3d(x, weight, stride, padding):
    return F.conv3d(x, weight, None, (1, *stride), padding)


@pytest.mark.parametrize("cin, kernel, stride, padding", [
    (1, (5, 7, 7), (2, 2), (2, 3, 3)),  # the stem of the conv front end
    (3, (3, 3, 5), (1, 2), (0, 1, 2)),  # several input channels (channel c * kt + k), no temporal padding
])
def test_forward_equal_and_weight_gradient_as_conv3d(cin, kernel, stride, padding):
    torch.manual_seed(0)
    x = torch.randn(2, cin, 11, 20, 24)
    weight = torch.randn(4, cin, *kernel)
    out = temporal_conv3d(x, weight, stride, padding)
    assert torch.equal(out, _conv3d(x, weight, stride, padding))  # the forward is F.conv3d itself
    grad = torch.randn_like(out)
    exact = _grads(_conv3d, x.double(), weight.double(), grad.double(), stride, padding)
    ours = _grads(temporal_conv3d, x, weight, grad, stride, padding)
    torch_f32 = _grads(_conv3d, x, weight, grad, stride, padding)
    scale = exact.abs().max()
    assert (ours.double() - exact).abs().max() / scale < 1e-5
    assert (torch_f32.double() - exact).abs().max() / scale < 1e-5  # torch's own float32 error is of that order
    assert ours.shape == weight.shape


def test_gradcheck_input_and_weight():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 6, 9, 9, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 2, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, w: temporal_conv3d(a, w, (2, 2), (1, 1, 1)), (x, weight))


def test_front_end_stem_gradient_matches_plain_conv3d_module():
    """The conv front end trains its stem weight through temporal_conv3d: the weight's gradient equals that of
    the same model with the stem run as the plain nn.Conv3d (float64, so summation order does not matter)."""
    torch.manual_seed(0)
    fe = Conv3dResNetFrontEnd(32, 16, width=4).double()
    x = torch.rand(2, 7, 32 * 32, dtype=torch.float64)  # pixels in [0, 1]
    lengths = torch.tensor([7, 5])
    fe(x, lengths)[0].square().sum().backward()
    ours = fe.stem[0].weight.grad.clone()
    fe.zero_grad()
    # the same computation with the stem as one nn.Sequential (Conv3d, BN, ReLU, MaxPool)
    valid = (torch.arange(7)[None, :] < lengths[:, None])[..., None]
    from mmrepro.models.vsr_frontends import _normalise

    v = _normalise(x, fe.mean, fe.std, lengths, fe.norm).masked_fill(~valid, 0.0)
    v = fe.stem(v.view(2, 1, 7, 32, 32))
    v = v.transpose(1, 2).reshape(14, v.shape[1], v.shape[3], v.shape[4])
    fe.proj(fe.trunk(v).mean(dim=(2, 3)).view(2, 7, -1)).square().sum().backward()
    torch.testing.assert_close(fe.stem[0].weight.grad, ours, rtol=1e-10, atol=1e-10)


def test_shape_errors():
    with pytest.raises(ValueError, match="expected x"):
        temporal_conv3d(torch.zeros(1, 2, 5, 8, 8), torch.zeros(3, 1, 3, 3, 3), (1, 1), (1, 1, 1))


def test_under_bf16_autocast_gradients_in_the_inputs_dtypes():
    """The full profile trains in bf16 autocast (on GPUs; CPU autocast runs the same casts): the forward is
    autocast's conv3d, the backward computes in bf16 and returns float32 gradients as accurate as torch's own."""
    torch.manual_seed(0)
    x = torch.randn(2, 1, 7, 16, 16, requires_grad=True)
    weight = torch.randn(4, 1, 5, 7, 7, requires_grad=True)
    exact = torch.autograd.grad(_conv3d(x, weight, (2, 2), (2, 3, 3)).square().sum(), (x, weight))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours_out = temporal_conv3d(x, weight, (2, 2), (2, 3, 3))
        torch_out = _conv3d(x, weight, (2, 2), (2, 3, 3))
    assert ours_out.dtype == torch.bfloat16 and torch.equal(ours_out, torch_out)
    ours = torch.autograd.grad(ours_out.float().square().sum(), (x, weight))
    theirs = torch.autograd.grad(torch_out.float().square().sum(), (x, weight))
    for o, t, e in zip(ours, theirs, exact, strict=True):
        assert o.dtype == torch.float32
        err, torch_err = ((o - e).abs().max() / e.abs().max()).item(), ((t - e).abs().max() / e.abs().max()).item()
        assert err < 0.03 and err < 3 * torch_err + 1e-3, (err, torch_err)
