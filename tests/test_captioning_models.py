"""Captioning models: beam search vs greedy, Karpathy's score and loss by hand, encoder options."""

import math

import pytest
import torch

from mmrepro.data.caption_vocab import BOS, EOS, PAD
from mmrepro.models.attention_captioner import AttentionCaptioner, AttentionCaptionerConfig
from mmrepro.models.beam_search import beam_search, greedy_search
from mmrepro.models.geocapnet import GeoCapNet, GeoCapNetConfig
from mmrepro.models.image_encoder import ImageEncoder, ImageEncoderConfig
from mmrepro.models.karpathy_alignment import KarpathyAlignment, KarpathyAlignmentConfig
from mmrepro.models.multimodal_rnn import MultimodalRNN, MultimodalRNNConfig



X, Y = 3, 4  # the two words of the toy language model below (V = 5)


def _toy_step(tokens, state):
    """bos -> x 0.6 | y 0.4;  x -> eos .34 | x .33 | y .33;  y -> eos .9 | x .05 | y .05."""
    table = torch.full((5, 5), 1e-9)
    table[BOS, X], table[BOS, Y] = 0.6, 0.4
    table[X, EOS], table[X, X], table[X, Y] = 0.34, 0.33, 0.33
    table[Y, EOS], table[Y, X], table[Y, Y] = 0.9, 0.05, 0.05
    table[EOS, EOS] = 1.0
    return table[tokens].log(), state


def test_beam_search_on_a_toy_language_model():
    state = (torch.zeros(2, 1),)
    # greedy takes x (0.6) then eos (0.34): p = 0.204; beam 2 finds y eos: p = 0.36
    assert greedy_search(_toy_step, state, bos=BOS, eos=EOS, max_len=5) == [[X], [X]]
    assert beam_search(_toy_step, state, bos=BOS, eos=EOS, beam_size=1, max_len=5) == [[X], [X]]
    assert beam_search(_toy_step, state, bos=BOS, eos=EOS, beam_size=2, max_len=5) == [[Y], [Y]]
    assert beam_search(_toy_step, state, bos=BOS, eos=EOS, beam_size=2, max_len=1) == [[X], [X]]
    with pytest.raises(ValueError):
        beam_search(_toy_step, state, bos=BOS, eos=EOS, beam_size=0, max_len=5)


def _small_encoder(grid):
    return ImageEncoderConfig(dim=16, grid=grid, width=8)


@pytest.mark.parametrize(
    "build",
    [
        lambda: AttentionCaptioner(AttentionCaptionerConfig(vocab_size=12, encoder=_small_encoder(4), embed_dim=16,
                                                            hidden_dim=24, attn_dim=8)),
        lambda: GeoCapNet(GeoCapNetConfig(vocab_size=12, encoder=_small_encoder(2), embed_dim=16, hidden_dim=24)),
        lambda: MultimodalRNN(MultimodalRNNConfig(vocab_size=12, encoder=_small_encoder(2), embed_dim=16,
                                                  hidden_dim=24, cell="lstm")),
        lambda: MultimodalRNN(MultimodalRNNConfig(vocab_size=12, encoder=_small_encoder(2), embed_dim=16,
                                                  hidden_dim=24, cell="relu")),
    ],
    ids=["attention", "geocapnet", "mrnn-lstm", "mrnn-relu"],
)
def test_beam_one_is_greedy_and_training_lowers_the_loss(build):
    torch.manual_seed(0)
    model = build()
    images = torch.randint(0, 256, (6, 3, 24, 24), dtype=torch.uint8)
    captions = torch.tensor([[BOS, 5, 6, 7, EOS, PAD]] * 3 + [[BOS, 8, 9, 10, 11, EOS]] * 3)
    # train a few steps so the decoders emit <eos> (short, non-trivial captions)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = model.loss(images, captions)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    model.eval()
    greedy = model.greedy(images, max_len=8)
    assert model.generate(images, beam_size=1, max_len=8) == greedy
    assert any(len(g) < 8 for g in greedy)
    assert len(model.generate(images, beam_size=3, max_len=8)) == 6


def test_attention_is_a_distribution_and_regulariser_adds_up():
    torch.manual_seed(0)
    cfg = AttentionCaptionerConfig(vocab_size=9, encoder=_small_encoder(3), embed_dim=8, hidden_dim=8, attn_dim=4,
                                   dropout=0.0, alpha_reg=0.0)
    model = AttentionCaptioner(cfg).eval()
    images = torch.rand(2, 3, 24, 24)
    captions = torch.tensor([[BOS, 4, 5, EOS], [BOS, 6, EOS, PAD]])
    logits, alphas = model(images, captions)
    assert logits.shape == (2, 3, 9) and alphas.shape == (2, 3, 9)
    assert torch.allclose(alphas.sum(-1), torch.ones(2, 3))
    plain = model.loss(images, captions)
    model.cfg = AttentionCaptionerConfig(**{**cfg.__dict__, "alpha_reg": 2.0})
    mask = torch.tensor([[1.0, 1, 1], [1, 1, 0]])[:, :, None]
    penalty = ((1 - (alphas * mask).sum(1)) ** 2).sum(1).mean() / 9
    assert model.loss(images, captions).item() == pytest.approx(plain.item() + 2.0 * penalty.item(), rel=1e-5)
    assert model.attention_maps(images[:1], [4, 5]).shape == (3, 3, 3)


def test_karpathy_score_and_ranking_loss_by_hand():
    model = KarpathyAlignment(KarpathyAlignmentConfig(vocab_size=10, encoder=_small_encoder(2), embed_dim=2))
    v = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # one image, two regions
    s = torch.tensor([[[2.0, 1.0], [0.0, 3.0], [9.0, 9.0]], [[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    # sentence 0: max(2, 1) + max(0, 3) = 5 (third word is padding); sentence 1: max(1, 1) = 1
    assert model.scores(v, s, mask).tolist() == [[5.0, 1.0]]
    scores = torch.tensor([[5.0, 4.0], [3.0, 1.0]])
    # sentences for image 1: max(0, 3 - 1 + 1) = 3; images for sentence 1: max(0, 4 - 1 + 1) = 4
    assert model.ranking_loss(scores).item() == pytest.approx((3 + 4) / 2)


def test_karpathy_fragments_ignore_padding():
    torch.manual_seed(0)
    model = KarpathyAlignment(KarpathyAlignmentConfig(vocab_size=10, encoder=_small_encoder(2), embed_dim=8,
                                                      word_dim=8, cell="gru"))
    short, mask = model.embed_sentences(torch.tensor([[5, 6, 7]]))
    padded, pmask = model.embed_sentences(torch.tensor([[5, 6, 7, PAD, PAD], [4, PAD, PAD, PAD, PAD]]))
    assert torch.allclose(padded[0, :3], short[0], atol=1e-6)
    assert (padded[0, 3:] == 0).all() and pmask.sum().item() == 4
    images = torch.rand(2, 3, 24, 24)
    assert model.embed_images(images).shape == (2, 5, 8)  # 2x2 cells + the whole image
    loss = model(images, torch.tensor([[5, 6, 7], [4, PAD, PAD]]))
    assert math.isfinite(loss.item()) and loss.item() >= 0


def test_resnet_encoder_parameter_count_and_local_weights(tmp_path):
    cfg = ImageEncoderConfig(arch="resnet18", dim=64, grid=2)
    enc = ImageEncoder(cfg)
    # torchvision ResNet-18: 11,689,512 parameters, minus the 1000-way fc (513,000), plus our projection
    assert sum(p.numel() for p in enc.parameters()) == 11_689_512 - 513_000 + 512 * 64 + 64
    assert enc(torch.rand(2, 3, 64, 64)).shape == (2, 4, 64)
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "r18.pt")
    loaded = ImageEncoder(ImageEncoderConfig(arch="resnet18", dim=64, grid=2, pretrained_path=str(tmp_path / "r18.pt")))
    assert torch.equal(loaded.backbone[0].weight, reference.conv1.weight)
    with pytest.raises(ValueError, match="never downloaded"):
        ImageEncoder(ImageEncoderConfig(arch="resnet18", pretrained_path=str(tmp_path / "missing.pt")))
    with pytest.raises(ValueError):
        ImageEncoderConfig(arch="vgg16")
