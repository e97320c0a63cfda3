"""Symmetric power attention: the linear forms equal the quadratic one; the model's recurrent
generation path equals its chunked training path."""

import math

import pytest
import torch
import torch.nn.functional as F

from mmrepro.models.sympow import (
    SymPowConfig,
    SymPowTransformer,
    sympow_attention_chunked,
    sympow_attention_quadratic,
    sympow_attention_recurrent,
    sympow_dim,
    sympow_embedding,
)


@pytest.mark.parametrize("d,p,expected", [(8, 2, 36), (8, 4, 330), (16, 4, 3876), (64, 2, 2080)])
def test_embedding_dimension_is_binomial(d, p, expected):
    assert sympow_dim(d, p) == expected == math.comb(d + p - 1, p)
    assert sympow_embedding(torch.randn(3, d), p).shape == (3, expected)


@pytest.mark.parametrize("p", [1, 2, 3, 4])
def test_embedding_inner_product_is_power_of_dot(p):
    g = torch.Generator().manual_seed(p)
    q, k = torch.randn(50, 6, generator=g, dtype=torch.float64), torch.randn(50, 6, generator=g, dtype=torch.float64)
    lhs = (sympow_embedding(q, p) * sympow_embedding(k, p)).sum(-1)
    torch.testing.assert_close(lhs, (q * k).sum(-1) ** p, rtol=1e-10, atol=1e-10)


def _qkv(t, d=6, dv=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, 3, t, n, generator=g, dtype=dtype) for n in (d, d, dv))
    log_gate = F.logsigmoid(torch.randn(2, 3, t, generator=g, dtype=dtype) + 2.0)
    return q, k, v, log_gate


@pytest.mark.parametrize("p", [2, 4])
@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("chunk", [1, 8, 16, 64])
def test_chunked_equals_quadratic(p, gated, chunk):
    q, k, v, lg = _qkv(37)
    lg = lg if gated else None
    ref = sympow_attention_quadratic(q, k, v, p, lg)
    torch.testing.assert_close(sympow_attention_chunked(q, k, v, p, chunk, lg), ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("p", [2, 4])
@pytest.mark.parametrize("gated", [False, True])
def test_recurrent_equals_quadratic_and_resumes_from_state(p, gated):
    q, k, v, lg = _qkv(23, seed=1)
    lg = lg if gated else None
    ref = sympow_attention_quadratic(q, k, v, p, lg)
    y, _ = sympow_attention_recurrent(q, k, v, p, lg)
    torch.testing.assert_close(y, ref, rtol=1e-9, atol=1e-9)
    y1, state = sympow_attention_recurrent(q[:, :, :10], k[:, :, :10], v[:, :, :10], p, None if lg is None else lg[..., :10])
    y2, _ = sympow_attention_recurrent(q[:, :, 10:], k[:, :, 10:], v[:, :, 10:], p, None if lg is None else lg[..., 10:], state)
    torch.testing.assert_close(torch.cat([y1, y2], 2), ref, rtol=1e-9, atol=1e-9)


def test_quadratic_form_is_normalised_power_attention():
    q, k, v, _ = _qkv(5, seed=2)
    a = torch.einsum("bhid,bhjd->bhij", q, k) ** 2
    a = a * torch.ones(5, 5, dtype=torch.float64).tril()
    torch.testing.assert_close(sympow_attention_quadratic(q, k, v, 2), (a @ v) / (a.sum(-1, keepdim=True) + 1e-6))


def test_float32_chunked_close_to_float64_reference():
    q, k, v, lg = _qkv(256, d=8, dv=8, seed=3, dtype=torch.float32)
    q, k = F.layer_norm(q, (8,)) / 8**0.5, F.layer_norm(k, (8,))
    ref = sympow_attention_quadratic(q.double(), k.double(), v.double(), 4, lg.double())
    got = sympow_attention_chunked(q, k, v, 4, 64, lg)
    assert (got.double() - ref).abs().max().item() < 1e-4


@pytest.mark.parametrize("attention", ["softmax", "sympow", "conformal"])
def test_model_step_equals_forward(attention):
    torch.manual_seed(0)
    cfg = SymPowConfig(attention=attention, d_model=32, n_head=4, n_layer=2, power=4, chunk_size=16)
    model = SymPowTransformer(cfg).double().eval()
    idx = torch.randint(0, 256, (2, 45))
    with torch.no_grad():
        full = model(idx)
        caches = model.new_caches()
        parts = [model.step(idx[:, :20], caches), model.step(idx[:, 20:21], caches), model.step(idx[:, 21:], caches)]
    torch.testing.assert_close(torch.cat(parts, 1), full, rtol=1e-8, atol=1e-8)


def test_equal_size_and_conformal_extras():
    sizes = {a: sum(p.numel() for p in SymPowTransformer(SymPowConfig(attention=a, d_model=64, n_head=8)).parameters())
             for a in ("softmax", "sympow", "conformal")}
    assert sizes["softmax"] == sizes["sympow"]
    # conformal adds per layer a gate (64*8 + 8) and a rotary-rate projection (64*32 + 32)
    assert sizes["conformal"] - sizes["sympow"] == 2 * (64 * 8 + 8 + 64 * 32 + 32)


def test_conformal_init_is_standard_rope_with_gates():
    torch.manual_seed(0)
    conf = SymPowTransformer(SymPowConfig(attention="conformal", d_model=32, n_head=4, gate_horizons=(1e9,)))
    plain = SymPowTransformer(SymPowConfig(attention="sympow", d_model=32, n_head=4))
    state = {k: v for k, v in conf.state_dict().items() if k in plain.state_dict()}
    plain.load_state_dict(state)
    idx = torch.randint(0, 256, (1, 30))
    with torch.no_grad():  # gates ~1 and rotary rates == RoPE at init: the two models agree
        torch.testing.assert_close(conf(idx), plain(idx), rtol=1e-4, atol=1e-4)


def test_bad_config_raises():
    with pytest.raises(ValueError):
        SymPowConfig(power=3)
    with pytest.raises(ValueError):
        SymPowConfig(attention="linear")
    with pytest.raises(ValueError):
        SymPowConfig(d_model=30, n_head=4)


# ------------------------------------------------------------------------------ data: LongCrawl64, windows
def _sympow(root, identity="strict", **kw):
    from mmrepro.datasets import DatasetSettings
    from mmrepro.papers import get_paper

    paper = get_paper("sympow", DatasetSettings(root, identity))
    cfg = paper.Config(epochs=1, batch_size=2, lr=1e-3, dataset="longcrawl64", context=16, eval_windows=3,
                       val_windows=2, **kw)
    return paper, cfg


def test_longcrawl64_validation_and_test_documents_are_disjoint(tmp_path):
    import numpy as np

    from .dataset_fixtures import make_longcrawl64

    make_longcrawl64(tmp_path, n_train=2, n_heldout=6)
    paper, cfg = _sympow(tmp_path)
    (tmp_path / "data").mkdir()
    info = paper.prepare(cfg, tmp_path / "data", seed=0)
    assert info.splits == {"train": 2, "heldout": 6} and info.details["heldout_documents"] == {"test": [0, 3],
                                                                                             "val": [3, 5]}
    test = paper.eval_documents(cfg, tmp_path / "data", "test")
    val = paper.eval_documents(cfg, tmp_path / "data", "val")
    assert test == ["heldout:0", "heldout:1", "heldout:2"] and val == ["heldout:3", "heldout:4"]
    from mmrepro.data.longcrawl64 import LongCrawl64
    from mmrepro.papers.sympow import _Corpus

    held = LongCrawl64(tmp_path / "longcrawl64").split("heldout")
    np.testing.assert_array_equal(_Corpus(cfg, tmp_path / "data").windows("val", 17, 2), held[3:5, :17])
    np.testing.assert_array_equal(_Corpus(cfg, tmp_path / "data").windows("test", 65, 3), held[0:3, :65])
    assert list(info.identity) == ["longcrawl64/heldout"] and info.identity["longcrawl64/heldout"]["n"] == 3


def test_byte_corpus_validation_and_test_documents_are_disjoint(tmp_path):
    paper = __import__("mmrepro.papers", fromlist=["get_paper"]).get_paper("sympow")
    cfg = paper.Config(epochs=1, batch_size=4, lr=3e-3, context=32, eval_windows=4, val_windows=2,
                       max_train_bytes=300000, max_eval_bytes=100000)
    info = paper.prepare(cfg, tmp_path, seed=0)
    assert info.dataset == "python-stdlib-bytes"
    test = paper.eval_documents(cfg, tmp_path, "test")
    val = paper.eval_documents(cfg, tmp_path, "val")
    assert test and val and not set(test) & set(val)


def test_longcrawl64_missing_partial_and_short_documents(tmp_path, capsys):
    from mmrepro.datasets import DatasetError

    from .dataset_fixtures import make_longcrawl64

    paper, cfg = _sympow(tmp_path)
    with pytest.raises(DatasetError) as err:
        paper.prepare(cfg, tmp_path, seed=0)
    assert str(err.value).startswith(f"longcrawl64: {tmp_path}/longcrawl64/train.zarr not found (params "
                                     "configs/sympow.yaml:full.dataset; root")
    assert "https://manifestai.com/articles/longcrawl64/" in str(err.value)
    make_longcrawl64(tmp_path, n_train=2, n_heldout=4, doc_length=256)
    with pytest.raises(DatasetError, match="^longcrawl64/train: 256 tokens per document, the release has 65536"):
        paper.prepare(cfg, tmp_path, seed=0)
    paper, cfg = _sympow(tmp_path, "warn")
    with pytest.raises(DatasetError, match="^longcrawl64/heldout: 4 documents, the evaluation needs 5"):
        paper.prepare(cfg, tmp_path, seed=0)
    assert "warning: longcrawl64/heldout: 256 tokens per document" in capsys.readouterr().out
    make_longcrawl64(tmp_path, n_train=2, n_heldout=5, doc_length=256)
    (tmp_path / "data").mkdir()
    assert paper.prepare(cfg, tmp_path / "data", seed=0).splits == {"train": 2, "heldout": 5}


def test_the_recurrent_check_is_skipped_where_its_state_cannot_fit():
    """p = 4 at the full profile's d_head 64: D(d+1) = C(67, 4) * 65 floats per head, x 12 layers x 12 heads x 2
    sequences x 4 bytes = 57.4 GB; p = 2 needs 0.16 GB. The evaluation skips the check above 4 GB, with the reason."""
    from mmrepro.papers.sympow import RECURRENT_CHECK_MAX_GB, Config, _model_config, _recurrent_state_bytes

    cfg = Config(epochs=1, batch_size=1, lr=1e-3, d_model=768, n_layer=12, n_head=12,
                 variants=["softmax", "sympow_p2", "sympow_p4"])
    sizes = {v: _recurrent_state_bytes(_model_config(cfg, v, 50304), batch=2) for v in cfg.variants}
    assert sizes == {"softmax": 0, "sympow_p2": 4 * 2 * 144 * 2080 * 65, "sympow_p4": 4 * 2 * 144 * 766480 * 65}
    assert sizes["sympow_p2"] / 1e9 < RECURRENT_CHECK_MAX_GB < sizes["sympow_p4"] / 1e9
