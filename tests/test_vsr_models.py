"""Visual front ends (LP, 3D conv + ResNet-18) and the visual Conformer: shapes, padding, parameter counts."""

from __future__ import annotations

import pytest
import torch

from mmrepro.models.vsr_frontends import Conv3dResNetFrontEnd, LinearProjectionFrontEnd, VisualConformer, VSRConfig

from .conftest import n_params


def conformer_block_params(d: int, kernel: int, ff_mult: int = 4) -> int:
    """Per block: 2 FFN (LN 2d, d->md, md->d) + LN + rel-pos MHSA (q,k,v,o with bias, pos without, u, v)
    + conv module (LN, pointwise d->2d, depthwise K, BN, pointwise d->d) + final LN."""
    ffn = 2 * d + (d * ff_mult * d + ff_mult * d) + (ff_mult * d * d + d)
    att = 2 * d + 4 * (d * d + d) + d * d + 2 * d
    conv = 2 * d + (2 * d * d + 2 * d) + (d * kernel + d) + 2 * d + (d * d + d)
    return 2 * ffn + att + conv + 2 * d  # = (4m + 8) d^2 + (2m + 24) d + K d


def resnet18_trunk_params(w: int) -> int:
    """Four stages of two BasicBlocks (widths w, 2w, 4w, 8w), BN affine, 1x1 projection shortcuts."""
    def block(cin: int, cout: int, proj: bool) -> int:
        return 9 * cin * cout + 2 * cout + 9 * cout * cout + 2 * cout + ((cin * cout + 2 * cout) if proj else 0)

    total, cin = 0, w
    for c in (w, 2 * w, 4 * w, 8 * w):
        total += block(cin, c, cin != c) + block(c, c, False)
        cin = c
    return total


def test_lp_front_end_shape_and_params():
    fe = LinearProjectionFrontEnd(64, 96)
    x = torch.randint(0, 256, (2, 7, 64 * 64), dtype=torch.uint8)
    y, lengths = fe(x, torch.tensor([7, 5]))
    assert y.shape == (2, 7, 96) and lengths.tolist() == [7, 5]
    assert n_params(fe) == 64 * 64 * 96 + 96
    with pytest.raises(ValueError):
        fe(torch.zeros(2, 7, 100), torch.tensor([7, 7]))


def test_conv_front_end_shape_params_and_padding():
    torch.manual_seed(0)
    fe = Conv3dResNetFrontEnd(64, 48, width=4).eval()
    x = torch.randint(0, 256, (2, 9, 64 * 64), dtype=torch.uint8)
    y, _ = fe(x, torch.tensor([9, 6]))
    assert y.shape == (2, 9, 48)
    # valid frames do not see the padding: clip 2 alone (6 frames) gives the same features
    alone, _ = fe(x[1:, :6], torch.tensor([6]))
    torch.testing.assert_close(y[1, :6], alone[0], atol=1e-5, rtol=1e-4)
    # ResNet-18 trunk at w = 64 is torchvision's resnet18 without conv1/bn1/fc: 11,689,512 - 9,408 - 128 - 513,000
    assert resnet18_trunk_params(64) == 11_166_976
    stem = 1 * 4 * 5 * 7 * 7 + 2 * 4
    assert n_params(fe) == stem + resnet18_trunk_params(4) + (8 * 4 * 48 + 48)
    with pytest.raises(ValueError):
        Conv3dResNetFrontEnd(8, 48)


def test_config_validation():
    with pytest.raises(ValueError):
        VSRConfig(frontend="vit")
    with pytest.raises(ValueError):
        VSRConfig(head="attention")
    with pytest.raises(ValueError):
        VSRConfig(d_model=0)


@pytest.mark.parametrize("head", ["ctc", "transducer"])
def test_visual_conformer_shapes_loss_decode(head):
    torch.manual_seed(0)
    cfg = VSRConfig(frontend="lp", d_model=32, num_layers=1, num_heads=2, conv_kernel=5, head=head, pred_dim=16)
    model = VisualConformer(cfg)
    frames = torch.randint(0, 256, (2, 12, 64, 64), dtype=torch.uint8)
    lengths = torch.tensor([12, 10])
    enc, enc_len = model(frames, lengths)
    assert enc.shape == (2, 12, 32) and enc_len.tolist() == [12, 10]  # one encoder frame per video frame
    targets = torch.tensor([[1, 2, 3], [4, 5, 0]])
    loss = model.loss(frames, lengths, targets, torch.tensor([3, 2]))
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert model.head.blank == cfg.vocab_size  # tokenizer ids 0..V-1 are real characters
    out = model.eval().decode(frames, lengths)
    assert len(out) == 2 and all(all(0 <= i < cfg.vocab_size for i in ids) for ids in out)
    if head == "transducer":
        assert model.decode(frames, lengths, beam=1) == model.head.greedy_decode(*model(frames, lengths))
        beam = model.decode(frames, lengths, beam=3)
        assert len(beam) == 2 and all(all(0 <= i < cfg.vocab_size for i in ids) for ids in beam)
    else:
        with pytest.raises(ValueError, match="transducer head only"):
            model.decode(frames, lengths, beam=3)


def test_equal_encoder_for_both_front_ends():
    lp = VisualConformer(VSRConfig(frontend="lp", d_model=32, num_layers=2, num_heads=2, resnet_width=4))
    conv = VisualConformer(VSRConfig(frontend="conv", d_model=32, num_layers=2, num_heads=2, resnet_width=4))
    assert n_params(lp.encoder) - n_params(lp.front_end) == n_params(conv.encoder) - n_params(conv.front_end)
    assert n_params(lp.encoder) - n_params(lp.front_end) == 2 * conformer_block_params(32, 15)
    assert n_params(lp.head) == n_params(conv.head)


def test_full_config_parameter_count():
    """Paper size: 16 layers, d = 1024, kernel 32, 8 heads, LP on 64x64, RNN-T (P = J = 640, E = 320), 28 chars.

    Expected, analytically: encoder 16 x 25,231,360 = 403,701,760; LP 4096 x 1024 + 1024 = 4,195,328;
    transducer: embedding 29 x 320 = 9,280, LSTM 4 x 640 x (320 + 640) + 8 x 640 = 2,462,720,
    enc proj 1024 x 640 + 640 = 656,000, pred proj 640 x 640 + 640 = 410,240, output 640 x 29 + 29 = 18,589.
    Total 411,453,917 (~411.5M).
    """
    cfg = VSRConfig.full()
    assert (cfg.num_layers, cfg.d_model, cfg.image_size) == (16, 1024, 64)
    with torch.device("meta"):  # count without allocating 1.6 GB
        model = VisualConformer(cfg)
        conv_model = VisualConformer(VSRConfig.full(frontend="conv"))
    assert conformer_block_params(1024, 32) == 25_231_360
    assert n_params(model.encoder) - n_params(model.front_end) == 403_701_760
    assert n_params(model.front_end) == 4_195_328
    assert n_params(model.head) == 9_280 + 2_462_720 + 656_000 + 410_240 + 18_589
    assert n_params(model) == 411_453_917
    # the conv baseline at the same encoder: stem 64*245 + 128, ResNet-18 trunk, 512 -> 1024 projection
    assert n_params(conv_model.front_end) == 15_808 + 11_166_976 + 525_312
    assert n_params(conv_model) - n_params(model) == 11_708_096 - 4_195_328


def test_clip_normalisation_removes_static_appearance_and_ignores_padding():
    torch.manual_seed(0)
    fe = LinearProjectionFrontEnd(16, 8, pixel_norm="clip")
    x = torch.rand(2, 6, 256)
    static = torch.rand(1, 1, 256)  # a speaker's face: the same image added to every frame
    lengths = torch.tensor([6, 4])
    y, _ = fe(x, lengths)
    y2, _ = fe(x + 0.3 * static, lengths)
    torch.testing.assert_close(y, y2, atol=1e-4, rtol=1e-4)
    padded = x.clone()
    padded[1, 4:] = 9.0  # garbage in the padding of clip 2
    y3, _ = fe(padded, lengths)
    torch.testing.assert_close(y3[1, :4], y[1, :4])
    fixed, _ = LinearProjectionFrontEnd(16, 8)(x, lengths)
    assert fixed.shape == y.shape
    with pytest.raises(ValueError):
        VSRConfig(pixel_norm="frame")
