"""Fast Conformer: 8x depthwise-separable subsampling, limited-context attention equal to a masked full
reference, linear FLOP growth, and the Conformer-L / Fast-Conformer-L GMACs ratio of Rekesh et al. 2023."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from mmrepro.models.conformer import (
    ConformerConfig,
    ConformerEncoder,
    RelPosMultiHeadAttention,
    lengths_to_mask,
)
from mmrepro.models.fast_conformer import FastConformerConfig, FastConformerEncoder

from .conftest import n_params


def _rel_shift(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, 2T-1) scores against distances T-1..-(T-1) -> (B, H, T, T) with [i, j] at distance i - j
    (Transformer-XL's pad-and-reshape, kept here as a reference independent of the model's strided view)."""
    b, h, t, n = x.shape
    x = F.pad(x, (1, 0)).view(b, h, n + 1, t)[:, :, 1:].reshape(b, h, t, n)
    return x[..., :t]


def _masked_full_reference(att: RelPosMultiHeadAttention, x, mask, w, global_token):
    """Full T x T relative-position attention with the limited-context pattern as a mask."""
    b, t, d = x.shape
    q, k, v = att._heads(att.q(x)), att._heads(att.k(x)), att._heads(att.v(x))
    qu = (q + att.pos_bias_u[None, :, None]) / math.sqrt(att.dk)
    qv = (q + att.pos_bias_v[None, :, None]) / math.sqrt(att.dk)
    p = att._pos(torch.arange(t - 1, -t, -1), d)
    scores = qu @ k.transpose(-1, -2) + _rel_shift(qv @ p.transpose(-1, -2)[None])
    i = torch.arange(t)
    allow = (i[:, None] - i[None, :]).abs() <= w
    if global_token:
        allow = allow | (i[:, None] == 0) | (i[None, :] == 0)
    scores = scores.masked_fill(~(mask[:, None, None, :] & allow[None, None]), float("-inf"))
    return att.o((torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(b, t, d))


@pytest.mark.parametrize("t,w,g", [(13, 3, 1), (12, 4, 1), (5, 8, 1), (17, 2, 0), (1, 3, 1), (40, 8, 1), (37, 12, 0),
                                   (29, 12, 1), (17, 8, 1), (17, 8, 0), (9, 8, 1),
                                   (60, 12, 0), (70, 12, 1)])
def test_limited_context_equals_masked_full_attention(t, w, g):
    torch.manual_seed(t * 10 + w)
    att = RelPosMultiHeadAttention(16, 2, limited=True, context=w, global_tokens=g).eval()
    x = torch.randn(3, t, 16)
    lens = torch.tensor([t, max(1, t - 4), max(1, t // 2)])
    mask = lengths_to_mask(lens, t)
    out = att(x, mask)
    ref = _masked_full_reference(att, x, mask, w, g)
    assert torch.allclose(out[mask], ref[mask], atol=1e-5)


def test_limited_with_window_covering_everything_equals_full_encoder():
    torch.manual_seed(0)
    cfg = FastConformerConfig(d_model=32, num_layers=2, num_heads=4, subsampling_channels=8, att_context=64)
    full = FastConformerEncoder(cfg).eval()
    lim = FastConformerEncoder(FastConformerConfig(**{**cfg.__dict__, "attention": "limited"})).eval()
    lim.load_state_dict(full.state_dict())
    x, lens = torch.randn(2, 200, 80), torch.tensor([200, 130])
    (a, la), (b, lb) = full(x, lens), lim(x, lens)
    assert la.tolist() == lb.tolist() == [25, 17]  # 200 -> 100 -> 50 -> 25 ; 130 -> 65 -> 33 -> 17
    assert torch.allclose(a, b, atol=1e-5)


def test_fast_conformer_padding_invariance_and_8x_subsampling():
    torch.manual_seed(1)
    cfg = FastConformerConfig(d_model=32, num_layers=2, num_heads=4, subsampling_channels=8, attention="limited",
                              att_context=3)
    enc = FastConformerEncoder(cfg).eval()
    x = torch.randn(2, 161, 80)
    lens = torch.tensor([161, 77])
    y, ylen = enc(x, lens)
    assert y.shape == (2, 21, 32) and ylen.tolist() == [21, 10]
    alone, _ = enc(x[1:, :77], lens[1:])
    assert torch.allclose(y[1, :10], alone[0], atol=1e-5)


def test_fast_conformer_l_structure_and_parameters():
    with torch.device("meta"):
        enc = FastConformerEncoder(FastConformerConfig.preset("L"))
    convs = [m for m in enc.front_end.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.groups, c.stride) for c in convs] == [
        (1, 256, 1, (2, 2)), (256, 256, 256, (2, 2)), (256, 256, 1, (1, 1)), (256, 256, 256, (2, 2)),
        (256, 256, 1, (1, 1)),
    ]
    assert enc.layers[0].conv.depthwise.kernel_size == (9,)
    assert len(enc.layers) == 17 and enc.output_dim == 512
    # front end: 2,560 + 2 x (2,560 + 65,792) + 256 * 10 * 512 + 512 = 1,450,496; blocks: 17 x 6,312,448
    assert n_params(enc.front_end) == 1_450_496
    assert n_params(enc) == 108_762_112


def _gmacs(model, t):
    with torch.device("meta"):
        x, lens = torch.randn(1, t, 80), torch.tensor([t])
        counter = FlopCounterMode(display=False)
        with counter:
            model.eval()(x, lens)
    return counter.get_total_flops() / 2e9


def test_gmacs_conformer_l_vs_fast_conformer_l_ratio():
    """Rekesh et al. 2023: 143.2 vs 48.7 GMACs (2.94x) for a 30 s utterance (3001 frames of 10 ms), against
    NeMo's Conformer-L (subsampling convs padded by 1); the valid-conv front end is within 10% too."""
    with torch.device("meta"):
        conf = ConformerEncoder(ConformerConfig.preset("L", subsampling_padding=1))
        conf_valid = ConformerEncoder(ConformerConfig.preset("L"))
        fast = FastConformerEncoder(FastConformerConfig.preset("L"))
    g_conf, g_valid, g_fast = _gmacs(conf, 3001), _gmacs(conf_valid, 3001), _gmacs(fast, 3001)
    assert g_fast == pytest.approx(48.7, rel=0.01)
    assert g_conf == pytest.approx(143.2, rel=0.01)
    assert abs(g_conf / g_fast - 2.94) / 2.94 < 0.10
    assert abs(g_valid / g_fast - 2.94) / 2.94 < 0.10


def test_attention_flops_grow_linearly_for_limited_and_quadratically_for_full():
    def flops(limited, t):
        with torch.device("meta"):
            att = RelPosMultiHeadAttention(64, 4, limited=limited, context=16).eval()
            x, mask = torch.randn(1, t, 64), torch.ones(1, t, dtype=torch.bool)
            counter = FlopCounterMode(display=False)
            with counter:
                att(x, mask)
        return counter.get_total_flops()

    def exponent(limited):  # attention-only flops: subtract the O(T) projections by differencing
        f1, f2, f4 = flops(limited, 1024), flops(limited, 2048), flops(limited, 4096)
        return math.log2((f4 - f2) / (f2 - f1))

    assert exponent(True) == pytest.approx(1.0, abs=0.05)
    assert exponent(False) == pytest.approx(2.0, abs=0.05)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_limited_attention_and_rnnt_match_cpu():
    from mmrepro.losses.rnnt import rnnt_loss

    torch.manual_seed(0)
    att = RelPosMultiHeadAttention(32, 4, limited=True, context=5).eval()
    x = torch.randn(2, 40, 32)
    mask = lengths_to_mask(torch.tensor([40, 23]), 40)
    cpu = att(x, mask)
    gpu = att.cuda()(x.cuda(), mask.cuda()).cpu()
    assert torch.allclose(cpu[mask], gpu[mask], atol=1e-4)
    logits = torch.randn(2, 7, 4, 6)
    args = (torch.tensor([[1, 2, 3], [4, 5, 0]]), torch.tensor([7, 5]), torch.tensor([3, 2]))
    a = rnnt_loss(logits, *args, reduction="none")
    b = rnnt_loss(logits.cuda(), *(t.cuda() for t in args), reduction="none").cpu()
    assert torch.allclose(a, b, atol=1e-4)
