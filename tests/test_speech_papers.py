"""The conformer / fast_conformer paper modules end to end on a tiny tts-speech corpus:
prepare -> one training step per variant -> evaluate rows, and the GMACs-ratio row."""

import json
import shutil

import pytest
import torch

from mmrepro.config import load_params, paper_config
from mmrepro.papers import get_paper
from mmrepro.models.ctc import CTCHead
from mmrepro.models.transducer import TransducerHead
from mmrepro.papers.common.speech import SpeechConfig, SpeechRecognizer, length_buckets, pad_targets

needs_tts = pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("flite") is None,
                               reason="espeak-ng/flite not installed")


def test_profiles_validate_and_sizes_follow_the_papers():
    params = load_params("params.yaml")
    for name in ("conformer", "fast_conformer"):
        full = paper_config(params, name, "full")
        assert (full.dataset, full.tokens, full.sp_vocab, full.size) == ("librispeech", "sentencepiece", 1024, "L")
        cpu = paper_config(params, name, "cpu")
        # cpu: the transducer only, on chars (the budget; char CTC cannot align to 8x frames)
        assert cpu.dataset == "tts-speech" and cpu.variants == ["transducer"] and cpu.tokens == "char"
        assert set(paper_config(params, name, "smoke").variants) == {"ctc", "transducer"}
    enc = get_paper("conformer").build_encoder(paper_config(params, "conformer", "cpu"))
    assert enc.layers[0].conv.depthwise.kernel_size == (32,)  # the paper's kernel even at tiny size
    fenc = get_paper("fast_conformer").build_encoder(paper_config(params, "fast_conformer", "cpu"))
    x, lengths = torch.randn(1, 801, 80), torch.tensor([801])
    assert fenc.eval()(x, lengths)[0].shape[1] == 101  # 8x subsampling: 801 -> 401 -> 201 -> 101
    # the subsampling ablation (README, departures): the Fast Conformer at the Conformer's 4x
    ablation = paper_config(params, "fast_conformer", "cpu").model_copy(update={"subsampling_factor": 4})
    assert get_paper("fast_conformer").build_encoder(ablation).eval()(x, lengths)[0].shape[1] == 201
    with pytest.raises(ValueError, match="subsamples 4x"):
        get_paper("conformer").build_encoder(paper_config(params, "conformer", "cpu").model_copy(
            update={"subsampling_factor": 8}))


def test_beam_size_is_for_the_transducer():
    cfg = SpeechConfig(epochs=1, batch_size=4, lr=1e-3, beam_size=8)
    assert (cfg.decoding("ctc"), cfg.decoding("transducer")) == ("greedy ctc", "beam 8 transducer")
    assert SpeechConfig(epochs=1, batch_size=4, lr=1e-3).decoding("transducer") == "greedy transducer"
    with pytest.raises(ValueError, match="applies to the transducer variant"):
        SpeechConfig(epochs=1, batch_size=4, lr=1e-3, beam_size=8, variants=["ctc"])
    # the recogniser: beam 1 is greedy; beam search over the transducer head, an error over CTC
    class Encoder(torch.nn.Linear):  # frame-wise projection: enc (B, T, 16), lengths unchanged
        def forward(self, x, n):
            return super().forward(x), n

    torch.manual_seed(0)
    enc = Encoder(80, 16)
    rnnt = SpeechRecognizer(enc, TransducerHead(16, 5, pred_dim=8, blank=5), max_symbols=3).eval()
    feats, lengths = torch.randn(2, 7, 80), torch.tensor([7, 4])
    with torch.no_grad():
        assert rnnt.decode(feats, lengths, beam=1) == rnnt.head.greedy_decode(enc(feats, lengths)[0], lengths, 3)
        assert rnnt.decode(feats, lengths, beam=3) == rnnt.head.beam_search(enc(feats, lengths)[0], lengths, 3, 3)
    ctc = SpeechRecognizer(enc, CTCHead(16, 5, blank=5)).eval()
    with pytest.raises(ValueError, match="transducer head only"):
        ctc.decode(feats, lengths, beam=3)


def test_length_buckets_cover_everything_once():
    import random

    lengths = [5, 1, 9, 3, 7, 2, 8]
    batches = length_buckets(lengths, 3, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(7))
    assert sorted(len(b) for b in batches) == [1, 3, 3]
    for b in batches:  # sorted-by-length chunks: consecutive lengths
        assert max(lengths[i] for i in b) - min(lengths[i] for i in b) <= 3
    t, n = pad_targets([[1, 2], [3]])
    assert t.tolist() == [[1, 2], [3, 0]] and n.tolist() == [2, 1]


@needs_tts
@pytest.mark.parametrize("name", ["conformer", "fast_conformer"])
def test_paper_prepare_train_step_evaluate(tmp_path, name):
    paper = get_paper(name)
    cfg = paper.Config(epochs=1, batch_size=4, lr=1e-3, n_train=6, n_dev=2, n_test=3, d_model=32, num_layers=1,
                       num_heads=2, subsampling_channels=8, pred_dim=16, val_utterances=2, beam_size=2)
    data = tmp_path / "data"
    data.mkdir()
    info = paper.prepare(cfg, data, seed=0)
    assert info.dataset == "tts-speech"
    assert info.splits == {"train": 6, "dev": 2, "test": 3, "pocketsphinx-real": 11}
    assert info.details["tokenizer"] == {"kind": "char", "vocab_size": 28}
    models = {}
    built = paper.build(cfg, data)
    assert [v.name for v in built.variants] == list(cfg.variants)
    for variant in built.variants:
        torch.manual_seed(0)
        model = variant.build_model()
        batch = next(iter(variant.batches(0, 0)))
        assert batch["feats"].shape[0] == 4 and batch["feats"].shape[2] == 80
        loss = variant.loss(model, batch)
        assert torch.isfinite(loss) and loss.item() > 0
        loss.backward()
        models[variant.name] = model.eval()
        val = variant.validate(model)
        assert set(val) == {"wer", "cer"}
    out = tmp_path / "eval"
    out.mkdir()
    with torch.no_grad():
        results = built.evaluate(models, out, seed=0)
    rows = {(r.variant, r.metric, r.dataset, r.split): r for r in results}
    for variant in ("ctc", "transducer"):
        r = rows[(variant, "wer", "tts-speech", "test-unseen-voices")]
        assert r.n_samples == 3 and r.scale == "x100" and not r.higher_is_better and r.value >= 0
        assert r.details["snt"] == 3 and "lowercase" in r.details["normalisation"]
        assert r.details["decoding"] == {"ctc": "greedy ctc", "transducer": "beam 2 transducer"}[variant]
        # per unseen voice: the test speakers of the manifest, 3 utterances in all
        per_speaker = r.details["per_speaker_wer"]
        test_speakers = {json.loads(x)["speaker"] for x in (data / "test.jsonl").read_text().splitlines()}
        assert set(per_speaker) == test_speakers and all(0 <= v for v in per_speaker.values())
        assert rows[(variant, "wer", "pocketsphinx-real", "test")].details["wrd"] == 96
        hyp = [json.loads(x) for x in (out / f"hyp_{variant}_tts-speech_test-unseen-voices.jsonl").read_text().splitlines()]
        assert len(hyp) == 3 and {"ref", "hyp", "sub", "del", "ins"} <= set(hyp[0])
    results_md = (out / "RESULTS.md").read_text()
    assert "| dataset | Snt | Wrd | Corr | Sub | Del | Ins | Err | S.Err |" in results_md
    assert "decoding: greedy ctc, beam 2 transducer;" in results_md
    assert all(f"| transducer / tts-speech test-unseen-voices / {spk} |" in results_md for spk in test_speakers)
    if name == "fast_conformer":
        g = {r.variant: r for r in results if r.metric in ("gmacs_ratio", "encoder_gmacs")}
        assert abs(g["conformer_l/fast_conformer_l"].value / 2.94 - 1) < 0.10
        assert abs(g["conformer_l"].value / 143.2 - 1) < 0.10 and abs(g["fast_conformer_l"].value / 48.7 - 1) < 0.10
        # the rows pair with the published entries as comparable (same metric, variant, dataset, split)
        from mmrepro.report.references import load_references

        refs = {(e.metric, e.variant): e for e in load_references("fast_conformer").entries}
        for r in g.values():
            e = refs[(r.metric, r.variant)]
            assert (e.dataset, e.split, e.scale) == (r.dataset, r.split, r.scale)
