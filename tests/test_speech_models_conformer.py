"""Conformer encoder, CTC and transducer heads: parameter counts vs the paper, shapes, padding invariance,
relative-position scores, greedy decoding."""

import math

import pytest
import torch

from mmrepro.models.conformer import ConformerConfig, ConformerEncoder, RelPosMultiHeadAttention
from mmrepro.models.ctc import CTCHead, ctc_greedy
from mmrepro.models.transducer import TransducerHead

from .conftest import n_params


@pytest.mark.parametrize(
    "size,published,exact",
    [("S", 10.3e6, 10_304_937), ("M", 30.7e6, 31_265_449), ("L", 118.8e6, 119_021_225)],
)
def test_full_transducer_parameter_counts_match_table_1(size, published, exact):
    """Gulati et al. 2020 Table 1, 1k vocabulary: within 2% of 10.3M / 30.7M / 118.8M."""
    with torch.device("meta"):
        enc = ConformerEncoder(ConformerConfig.preset(size))
        head = TransducerHead.preset(size, enc.output_dim, vocab_size=1000)
    total = n_params(enc) + n_params(head)
    assert total == exact
    assert abs(total - published) / published < 0.02


def test_encoder_shapes_and_subsampled_lengths():
    enc = ConformerEncoder(ConformerConfig.preset("S", num_layers=1)).eval()
    y, lens = enc(torch.randn(3, 101, 80), torch.tensor([101, 57, 9]))
    assert y.shape == (3, 24, 144)  # ((101 - 1) // 2 - 1) // 2 = 24
    assert lens.tolist() == [24, 13, 1]
    assert y[1, 13:].abs().max() == 0 and y[2, 1:].abs().max() == 0
    enc = ConformerEncoder(ConformerConfig.preset("S", num_layers=1, subsampling_padding=1)).eval()
    y, lens = enc(torch.randn(3, 101, 80), torch.tensor([101, 57, 9]))
    assert y.shape == (3, 26, 144) and lens.tolist() == [26, 15, 3]  # (T - 1) // 2 + 1, twice


@pytest.mark.parametrize("subsampling_padding", [0, 1])
def test_padding_invariance(subsampling_padding):
    torch.manual_seed(0)
    cfg = ConformerConfig.preset("S", num_layers=2, conv_kernel=7, subsampling_padding=subsampling_padding)
    enc = ConformerEncoder(cfg).eval()
    x = torch.randn(2, 120, 80)
    lens = torch.tensor([120, 70])
    y, ylen = enc(x, lens)
    x2 = x.clone()
    x2[1, 70:] = 1e3  # garbage in the padding must not change valid outputs
    y2, _ = enc(x2, lens)
    alone, alen = enc(x[1:, :70], lens[1:])
    assert ylen[1] == alen[0]
    assert torch.allclose(y[1, : ylen[1]], alone[0], atol=1e-5)
    assert torch.allclose(y2[1, : ylen[1]], alone[0], atol=1e-5)


@pytest.mark.parametrize("attention", ["rel_pos", "limited"])
def test_bf16_autocast_with_padding_runs_and_matches_fp32(attention):
    """The full profile trains under bf16 autocast (CUDA); CPU autocast casts the same ops. The attention scores
    are bf16 there while the queries stay fp32, so the padding (and the limited window's out-of-reach
    distances) must be filled with bf16's own minimum: fp32's overflows bf16, an error before this test."""
    torch.manual_seed(0)
    cfg = ConformerConfig(input_dim=32, d_model=32, num_layers=2, num_heads=4, conv_kernel=5, input_layer="none",
                          attention=attention, att_context=12)
    enc = ConformerEncoder(cfg).eval()
    x, lens = torch.randn(2, 40, 32), torch.tensor([40, 23])  # 40 frames <= 4w: the windowed full path (padded distances)
    ref, _ = enc(x, lens)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, ylen = enc(x, lens)
    assert ylen.tolist() == [40, 23] and bool(torch.isfinite(y).all())
    err = (y.float() - ref).abs().max() / ref.abs().max()
    assert 0 < err < 0.05  # bf16 rounding (8 mantissa bits), not a different function


def test_relative_position_scores_are_q_plus_v_dot_p_of_i_minus_j():
    """The rel-shift trick puts (q_i + v) . W_p p(i - j) at [i, j]: check against an explicit loop."""
    torch.manual_seed(0)
    d, h, t = 8, 2, 5
    att = RelPosMultiHeadAttention(d, h).eval()
    x = torch.randn(1, t, d)
    mask = torch.ones(1, t, dtype=torch.bool)
    q, k, v = att._heads(att.q(x)), att._heads(att.k(x)), att._heads(att.v(x))
    scores = torch.empty(1, h, t, t)
    for i in range(t):
        for j in range(t):
            p = att._pos(torch.tensor([i - j]), d)[:, 0]  # (H, dk)
            scores[0, :, i, j] = ((q[0, :, i] + att.pos_bias_u) * k[0, :, j]).sum(-1) + (
                (q[0, :, i] + att.pos_bias_v) * p
            ).sum(-1)
    ref = att.o((torch.softmax(scores / math.sqrt(d // h), -1) @ v).transpose(1, 2).reshape(1, t, d))
    assert torch.allclose(att(x, mask), ref, atol=1e-6)


def test_front_ends_linear_none_and_custom():
    cfg = ConformerConfig(input_dim=32, d_model=32, num_layers=1, num_heads=4, conv_kernel=5, input_layer="none")
    enc = ConformerEncoder(cfg).eval()
    y, lens = enc(torch.randn(2, 9, 32), torch.tensor([9, 4]))
    assert y.shape == (2, 9, 32) and lens.tolist() == [9, 4]
    enc = ConformerEncoder(ConformerConfig(input_dim=12, d_model=32, num_layers=1, conv_kernel=5, input_layer="linear"))
    assert enc(torch.randn(1, 7, 12), torch.tensor([7]))[0].shape == (1, 7, 32)

    class Halve(torch.nn.Module):
        def forward(self, x, lengths):
            return x[:, ::2], (lengths + 1) // 2

    enc = ConformerEncoder(cfg, front_end=Halve())
    y, lens = enc(torch.randn(1, 9, 32), torch.tensor([9]))
    assert y.shape == (1, 5, 32) and lens.tolist() == [5]


def test_config_errors():
    with pytest.raises(ValueError):
        ConformerConfig(d_model=100, num_heads=8)
    with pytest.raises(ValueError):
        ConformerConfig(input_layer="conv1d")
    with pytest.raises(ValueError):
        ConformerConfig.preset("XL")
    with pytest.raises(ValueError):
        ConformerEncoder(ConformerConfig.preset("S", num_layers=1))(torch.randn(10, 80), torch.tensor([10]))
    with pytest.raises(ValueError):
        TransducerHead(16, 10, blank=11)


def test_ctc_greedy_collapses_repeats_and_drops_blanks():
    best = torch.tensor([[0, 1, 1, 0, 1, 2, 2, 0, 3], [2, 2, 2, 0, 0, 0, 0, 0, 0]])
    assert ctc_greedy(best, torch.tensor([9, 3])) == [[1, 1, 2, 3], [2]]
    assert ctc_greedy(best, torch.tensor([6, 9]), blank=2) == [[0, 1, 0, 1], [0]]
    head = CTCHead(4, 3)
    assert head(torch.randn(2, 5, 4)).shape == (2, 5, 4)


def _naive_rnnt_greedy(head, enc, n, max_symbols):
    """One utterance, unbatched: the textbook greedy search."""
    hyp = []
    g, state = head.predict(torch.tensor([[head.blank]]))
    for t in range(n):
        for _ in range(max_symbols):
            k = int(head.joint(enc[None, t : t + 1], g)[0, 0, 0].argmax())
            if k == head.blank:
                break
            hyp.append(k)
            g, state = head.predict(torch.tensor([[k]]), state)
    return hyp


def test_transducer_greedy_batched_equals_naive():
    torch.manual_seed(3)
    head = TransducerHead(8, 5, pred_dim=6, dropout=0.0).eval()
    with torch.no_grad():
        head.out.bias[0] -= 1.0  # fewer blanks: exercise several symbols per frame
        enc = torch.randn(3, 7, 8)
        lens = torch.tensor([7, 4, 1])
        hyps = head.greedy_decode(enc, lens, max_symbols=3)
        naive = [_naive_rnnt_greedy(head, enc[i], int(lens[i]), 3) for i in range(3)]
    assert hyps == naive
    assert sum(len(h) for h in hyps) > 3


def test_transducer_learns_a_toy_mapping_and_decodes_it():
    """Loss + greedy decoding end to end: a linear 'encoder' over random frames learns two targets."""
    torch.manual_seed(0)
    enc_net = torch.nn.Linear(10, 16)
    head = TransducerHead(16, 4, pred_dim=16, dropout=0.0)
    x = torch.randn(2, 8, 10)
    lens = torch.tensor([8, 6])
    targets = torch.tensor([[1, 2, 3], [4, 4, 0]])
    tlens = torch.tensor([3, 2])
    opt = torch.optim.Adam([*enc_net.parameters(), *head.parameters()], lr=0.02)
    first = None
    for _ in range(150):
        loss = head.loss(enc_net(x), lens, targets, tlens)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first
    assert head.eval().greedy_decode(enc_net(x), lens) == [[1, 2, 3], [4, 4]]
