"""The faster Conformer (strided rel shift, linear pointwise convs, chunked limited context; issue 15) computes what
the previous implementation computed: eval-mode outputs equal to 1e-5. The previous math is kept below as the
reference (`reference_encoder`), also used by benchmarks/limited_attention.py."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmrepro.models.conformer import ConformerConfig, ConformerEncoder, lengths_to_mask
from mmrepro.models.fast_conformer import FastConformerConfig, FastConformerEncoder


def _rel_shift(x):
    b, h, t, n = x.shape
    return F.pad(x, (1, 0)).view(b, h, n + 1, t)[:, :, 1:].reshape(b, h, t, n)[..., :t]


def _full(att, qu, qv, k, v, mask, d):
    t = qu.shape[2]
    p = att._pos(torch.arange(t - 1, -t, -1), d)
    scores = qu @ k.transpose(-1, -2) + _rel_shift(qv @ p.transpose(-1, -2)[None])
    scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    return torch.softmax(scores, dim=-1).nan_to_num(0.0) @ v


def _limited(att, qu, qv, k, v, mask, d):
    """Chunks of w queries against 3w keys and 4w - 1 distances, then a gather (the previous code)."""
    b, h, t, dk = qu.shape
    w = att.w
    n = -(-t // w)
    tp = n * w

    def padq(z):
        return F.pad(z, (0, 0, 0, tp - t))

    def pad_kv(z):
        return F.pad(z, (0, 0, w, tp - t + w))

    kc, vc = pad_kv(k).unfold(2, 3 * w, w), pad_kv(v).unfold(2, 3 * w, w)
    valid = F.pad(mask, (w, tp - t + w), value=False).unfold(1, 3 * w, w)
    ac = padq(qu).view(b, h, n, w, dk) @ kc
    bd_all = padq(qv).view(b, h, n, w, dk) @ att._pos(torch.arange(2 * w - 1, -2 * w, -1), d).transpose(-1, -2)[None, :, None]
    a, bk = torch.arange(w)[:, None], torch.arange(3 * w)[None, :]
    dist = a - (bk - w)
    bd = bd_all.gather(-1, (2 * w - 1 - dist).expand(b, h, n, w, 3 * w))
    keep = (dist.abs() <= w)[None, None, None] & valid[:, None, :, None, :]
    if att.g:
        keep = keep & ((torch.arange(n)[:, None] * w - w + bk) != 0)[None, None, :, None, :]
    scores = (ac + bd).masked_fill(~keep, float("-inf"))
    if att.g:
        pg = att._pos(torch.arange(tp), d)
        gcol = (padq(qu) * k[:, :, :1]).sum(-1) + (padq(qv) * pg[None]).sum(-1)
        scores = torch.cat([gcol.masked_fill(~mask[:, None, :1], float("-inf")).view(b, h, n, w, 1), scores], dim=-1)
    attn = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    if att.g:
        out = attn[..., :1] * v[:, :, None, :1] + attn[..., 1:] @ vc.transpose(-1, -2)
    else:
        out = attn @ vc.transpose(-1, -2)
    out = out.reshape(b, h, tp, dk)[:, :, :t]
    if att.g:
        s0 = qu[:, :, :1] @ k.transpose(-1, -2) + qv[:, :, :1] @ att._pos(-torch.arange(t), d).transpose(-1, -2)[None]
        a0 = torch.softmax(s0.masked_fill(~mask[:, None, None, :], float("-inf")), dim=-1).nan_to_num(0.0)
        out = torch.cat([a0 @ v, out[:, :, 1:]], dim=2)
    return out


def reference_attention(att, x, mask):
    b, t, d = x.shape
    q, k, v = att._heads(att.q(x)), att._heads(att.k(x)), att._heads(att.v(x))
    qu = (q + att.pos_bias_u[None, :, None]) / math.sqrt(att.dk)
    qv = (q + att.pos_bias_v[None, :, None]) / math.sqrt(att.dk)
    out = (_limited if att.limited else _full)(att, qu, qv, k, v, mask, d)
    return att.o(out.transpose(1, 2).reshape(b, t, d))


def reference_conv(conv, x, mask):
    x = F.glu(conv.pointwise1(conv.norm(x).transpose(1, 2)), dim=1).masked_fill(~mask[:, None, :], 0.0)
    x = F.silu(conv.batch_norm(conv.depthwise(F.pad(x, conv.pad))))
    return conv.dropout(conv.pointwise2(x).transpose(1, 2))


def reference_encoder(enc, x, lengths):
    x, lengths = enc.front_end(x, lengths)
    mask = lengths_to_mask(lengths, x.shape[1])
    for blk in enc.layers:
        x = x + 0.5 * blk.ff1(x)
        x = x + blk.att_dropout(reference_attention(blk.att, blk.att_norm(x), mask))
        x = x + reference_conv(blk.conv, x, mask)
        x = blk.norm(x + 0.5 * blk.ff2(x))
    return x.masked_fill(~mask[..., None], 0.0), lengths


def _randomise_norms(enc):  # BatchNorm running statistics away from (0, 1) so that eval mode is a real check
    for module in enc.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)


def test_conformer_eval_outputs_equal_the_previous_implementation():
    torch.manual_seed(0)
    enc = ConformerEncoder(ConformerConfig(d_model=48, num_layers=2, num_heads=4, conv_kernel=32)).eval()
    _randomise_norms(enc)
    x, lengths = torch.randn(3, 260, 80), torch.tensor([260, 181, 33])
    with torch.no_grad():
        (y, ylen), (ref, rlen) = enc(x, lengths), reference_encoder(enc, x, lengths)
    assert ylen.tolist() == rlen.tolist() == [64, 44, 7]
    assert (y - ref).abs().max().item() < 1e-5


@pytest.mark.parametrize("g", [1, 0])
def test_limited_context_eval_outputs_equal_the_previous_implementation(g):
    """Long enough (T' = 63 frames, w = 8, chunks of 2) that the chunked path runs, with padding."""
    torch.manual_seed(g)
    cfg = FastConformerConfig(d_model=32, num_layers=2, num_heads=4, subsampling_channels=8, attention="limited",
                              att_context=8, global_tokens=g)
    enc = FastConformerEncoder(cfg).eval()
    _randomise_norms(enc)
    x, lengths = torch.randn(2, 500, 80), torch.tensor([500, 301])
    with torch.no_grad():
        (y, ylen), (ref, _) = enc(x, lengths), reference_encoder(enc, x, lengths)
    assert ylen.tolist() == [63, 38]
    assert (y - ref).abs().max().item() < 1e-5


def test_dropout_keeps_the_expected_fraction_scaled_and_passes_gradients():
    from mmrepro.models.conformer import Dropout

    torch.manual_seed(0)
    drop = Dropout(0.1)
    x = torch.ones(200_000, requires_grad=True)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.005
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.9))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())
    assert torch.equal(drop.eval()(x), x)
