"""VQ-VAE, code prior and classifier: shapes, straight-through gradients, EMA codebook, loss terms."""

import pytest
import torch

from mmrepro.models.attribute_classifier import AttributeClassifier
from mmrepro.models.code_prior import CodePrior, CodePriorConfig
from mmrepro.models.vqvae import VQVAE, VQVAEConfig


def _small(**kw):
    return VQVAEConfig(hidden=16, res_hidden=8, codebook_size=8, code_dim=4, **kw)


def test_shapes_and_loss_terms():
    torch.manual_seed(0)
    model = VQVAE(_small())
    x = torch.rand(3, 3, 16, 16)
    out = model(x)
    assert out["recon"].shape == x.shape and out["indices"].shape == (3, 4, 4)
    expected = out["recon_loss"] + out["codebook_loss"] + 0.25 * out["commit_loss"]
    torch.testing.assert_close(out["loss"], expected)
    # codebook and commitment terms are the same number (different gradients): ||z_e - e||^2
    torch.testing.assert_close(out["codebook_loss"], out["commit_loss"])
    torch.testing.assert_close(model.decode(model.encode(x)), out["recon"])
    with pytest.raises(ValueError):
        model(torch.rand(1, 3, 15, 16))


def test_straight_through_gradient_reaches_encoder_and_codebook():
    torch.manual_seed(0)
    model = VQVAE(_small())
    model(torch.rand(2, 3, 8, 8))["recon_loss"].backward()
    assert model.encoder[0].weight.grad.abs().sum() > 0  # through the quantiser
    assert model.quantizer.codebook.grad is None or model.quantizer.codebook.grad.abs().sum() == 0
    model.zero_grad()
    model(torch.rand(2, 3, 8, 8))["loss"].backward()
    assert model.quantizer.codebook.grad.abs().sum() > 0  # via the codebook term


def test_ema_codebook_moves_to_assigned_means():
    torch.manual_seed(0)
    model = VQVAE(_small(ema=True, ema_decay=0.5, data_init=False))
    assert not model.quantizer.codebook.requires_grad
    z = torch.randn(1, 4, 2, 2)
    before = model.quantizer.codebook.detach().clone()
    model.train()
    _, idx, cb_loss, _ = model.quantizer(z)
    assert cb_loss.item() == 0.0
    used = idx.flatten().unique()
    assert not torch.allclose(model.quantizer.codebook[used], before[used])
    unused = torch.tensor([k for k in range(8) if k not in used.tolist()])
    torch.testing.assert_close(model.quantizer.codebook[unused], before[unused], rtol=1e-3, atol=1e-6)


def test_data_init_and_dead_code_restart():
    torch.manual_seed(0)
    model = VQVAE(_small(ema=True, restart_below=0.5))
    z = torch.randn(2, 4, 3, 3) * 5
    model.train()
    model.quantizer(z)
    rows = z.permute(0, 2, 3, 1).reshape(-1, 4)
    # after the first training batch every code is one of the batch's encoder outputs (or their EMA mix)
    first = model.quantizer.codebook.detach().clone()
    assert (torch.cdist(first, rows).min(1).values < 5).all()
    # a code whose EMA size decays below the threshold is re-seeded from the batch
    model.quantizer.ema_size[0] = 0.0
    model.quantizer.codebook.data[0] = 1e6
    model.quantizer(z)
    assert model.quantizer.codebook[0].abs().max() < 100
    model.eval()
    before = model.quantizer.codebook.detach().clone()
    model.quantizer(z * 3)
    torch.testing.assert_close(model.quantizer.codebook, before)  # no updates in eval mode


def test_paper_cifar10_config_latents():
    cfg = VQVAEConfig.paper_cifar10()
    assert (cfg.hidden, cfg.codebook_size, cfg.beta) == (256, 512, 0.25)
    assert VQVAE(cfg).latent_shape(32, 32) == (8, 8)  # 32x32 -> 8x8 as in section 4.1
    with pytest.raises(ValueError):
        VQVAEConfig(beta=-1)


def test_code_prior_is_causal_over_codes_and_samples_valid_codes():
    torch.manual_seed(0)
    prior = CodePrior(CodePriorConfig(text_vocab=10, text_len=3, codebook_size=7, n_codes=5, d_model=16,
                                      n_layer=1, n_head=2)).eval()
    text = torch.randint(1, 10, (2, 3))
    codes = torch.randint(0, 7, (2, 5))
    logits = prior(text, codes)
    assert logits.shape == (2, 5, 7)
    changed = codes.clone()
    changed[:, 3] = (changed[:, 3] + 1) % 7
    other = prior(text, changed)
    torch.testing.assert_close(other[:, :4], logits[:, :4])  # position i sees codes < i only
    assert not torch.allclose(other[:, 4], logits[:, 4])
    text2 = text.clone()
    text2[:, 0] = (text2[:, 0] % 9) + 1
    assert not torch.allclose(prior(text2, codes)[:, 0], logits[:, 0])  # conditioned on the caption
    s = prior.sample(text, generator=torch.Generator().manual_seed(0))
    assert s.shape == (2, 5) and int(s.min()) >= 0 and int(s.max()) < 7



def test_tied_prior_reads_and_predicts_codes_through_the_standardised_codebook():
    torch.manual_seed(0)
    cfg = dict(text_vocab=10, text_len=3, codebook_size=7, n_codes=5, d_model=16, n_layer=1, n_head=2)
    tied = CodePrior(CodePriorConfig(**cfg, tie_codebook=True, code_dim=4)).eval()
    # parameters: Linear(4 -> 16) in, BOS row, Linear(16 -> 4) out, a bias per code; in place of an embedding of
    # 7 codes + BOS and a Linear(16 -> 7)
    untied = CodePrior(CodePriorConfig(**cfg))
    n = sum(p.numel() for p in tied.parameters())
    assert sum(p.numel() for p in untied.parameters()) - n == (8 * 16 + 16 * 7 + 7) - (4 * 16 + 16 + 16 + 16 * 4 + 4 + 7)
    codebook = torch.randn(7, 4) * 3 + 1
    tied.set_codebook(codebook)
    torch.testing.assert_close(tied.code_vectors, (codebook - codebook.mean(0)) / codebook.std(0))
    text, codes = torch.randint(1, 10, (2, 3)), torch.randint(0, 7, (2, 5))
    logits = tied(text, codes)
    assert logits.shape == (2, 5, 7)
    changed = codes.clone()
    changed[:, 3] = (changed[:, 3] + 1) % 7
    torch.testing.assert_close(tied(text, changed)[:, :4], logits[:, :4])  # still causal
    # by hand: code k's logit is the projected hidden state dotted with code k's vector, plus its bias
    with torch.no_grad():
        hidden = tied._hidden(text, torch.cat([torch.full((2, 1), tied.bos), codes[:, :-1]], 1))[:, 3:]
        torch.testing.assert_close(logits, tied.code_out(hidden) @ tied.code_vectors.T + tied.code_bias)
        tied.set_codebook(codebook.flip(0))  # another codebook, other logits
    assert not torch.allclose(tied(text, codes), logits)
    s = tied.sample(text, generator=torch.Generator().manual_seed(0))
    assert s.shape == (2, 5) and int(s.min()) >= 0 and int(s.max()) < 7
    with pytest.raises(ValueError, match="tie_codebook"):
        untied.set_codebook(codebook)
    with pytest.raises(ValueError, match="code_dim"):
        CodePriorConfig(**cfg, tie_codebook=True)


def test_text_to_image_gives_the_tied_prior_the_vqvae_codebook_at_its_first_step():
    from mmrepro.papers.vqvae import TextToImage

    torch.manual_seed(0)
    vq = VQVAE(_small())
    prior = CodePrior(CodePriorConfig(text_vocab=10, text_len=3, codebook_size=8, n_codes=16, d_model=16, n_layer=1,
                                      n_head=2, tie_codebook=True, code_dim=4))
    model = TextToImage(vq, prior, vq_steps=2)
    images, text = torch.rand(4, 3, 16, 16), torch.randint(1, 10, (4, 3))
    for _ in range(2):  # the VQ-VAE's steps: the prior's vectors are not set yet
        model.training_loss(images, text)
        assert not prior.code_vectors.any()
    learnt = vq.quantizer.codebook.detach().clone()
    model.training_loss(images, text)
    torch.testing.assert_close(prior.code_vectors, (learnt - learnt.mean(0)) / learnt.std(0))
    with torch.no_grad():
        vq.quantizer.codebook.add_(1.0)  # later steps do not take it again
    model.training_loss(images, text)
    torch.testing.assert_close(prior.code_vectors, (learnt - learnt.mean(0)) / learnt.std(0))


def _tiny_prior(cond_dropout: float = 0.0) -> CodePrior:
    torch.manual_seed(0)
    return CodePrior(CodePriorConfig(text_vocab=10, text_len=3, codebook_size=7, n_codes=4, d_model=16,
                                     n_layer=1, n_head=2, cond_dropout=cond_dropout))


def test_training_nulls_a_share_of_the_captions_and_evaluation_none():
    prior = _tiny_prior(cond_dropout=0.25)
    seen = []
    prior.text_embed.register_forward_hook(lambda mod, args, out: seen.append(args[0].clone()))
    text, codes = torch.randint(1, 10, (4000, 3)), torch.randint(0, 7, (4000, 4))
    torch.manual_seed(1)
    prior.train().loss(text, codes)
    nulled = (seen[-1] == CodePrior.NULL_TOKEN).all(1)
    assert abs(float(nulled.float().mean()) - 0.25) < 0.03  # 1000 of 4000 expected, binomial sd ~27
    torch.testing.assert_close(seen[-1][~nulled], text[~nulled])  # the others are untouched
    prior.eval().loss(text, codes)
    torch.testing.assert_close(seen[-1], text)
    with pytest.raises(ValueError, match="cond_dropout"):
        CodePriorConfig(text_vocab=10, text_len=3, codebook_size=7, n_codes=4, cond_dropout=1.0)


def test_guided_sampling_draws_from_null_plus_scale_times_caption_minus_null():
    prior = _tiny_prior(cond_dropout=0.1).eval()
    text = torch.randint(1, 10, (3, 3))
    # guidance 1 is the plain sampler, draw for draw
    torch.testing.assert_close(prior.sample(text, generator=torch.Generator().manual_seed(5), guidance=1.0),
                               prior.sample(text, generator=torch.Generator().manual_seed(5)))
    # guidance g: replay the sampler by hand with the documented logits
    g, temperature = 2.5, 0.7
    got = prior.sample(text, temperature, generator=torch.Generator().manual_seed(5), guidance=g)
    gen, codes = torch.Generator().manual_seed(5), torch.full((3, 1), prior.bos)
    null = torch.full_like(text, CodePrior.NULL_TOKEN)
    with torch.no_grad():
        for _ in range(4):
            cond_logits = prior.head(prior._hidden(text, codes)[:, -1])
            null_logits = prior.head(prior._hidden(null, codes)[:, -1])
            probs = torch.softmax((null_logits + g * (cond_logits - null_logits)) / temperature, -1)
            codes = torch.cat([codes, torch.multinomial(probs, 1, generator=gen)], 1)
    torch.testing.assert_close(got, codes[:, 1:])
    assert got.shape == (3, 4) and not torch.equal(got, prior.sample(text, temperature,
                                                                      generator=torch.Generator().manual_seed(5)))


def test_guidance_without_null_captions_in_training_is_refused():
    from mmrepro.papers.vqvae import Config

    recipe = {"epochs": 1, "batch_size": 8, "lr": 0.001}
    with pytest.raises(ValueError, match="guidance 1.5 needs cond_dropout > 0"):
        Config(**recipe, guidance=1.5)
    assert Config(**recipe, guidance=1.5, cond_dropout=0.1).guidance == 1.5

def test_attribute_classifier_heads():
    clf = AttributeClassifier({"shape": 4, "colour": 6})
    out = clf(torch.rand(2, 3, 32, 32))
    assert out["shape"].shape == (2, 4) and out["colour"].shape == (2, 6)
    with pytest.raises(ValueError):
        AttributeClassifier({"shape": 1})
