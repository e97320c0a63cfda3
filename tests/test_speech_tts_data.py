"""tts-speech synthesis, pocketsphinx-real manifest, sentence list and tokenizers."""

import hashlib
import json
import shutil

import pytest
import soundfile as sf

from mmrepro.data.pocketsphinx_real import DEFAULT_ROOT, parse_sphinx_transcription, prepare_pocketsphinx_real
from mmrepro.data.sentences import VOCABULARY, generate_sentences
from mmrepro.data.tokenizer import CharTokenizer, SentencePieceTokenizer, load_tokenizer
from mmrepro.data.tts_speech import (
    ESPEAK_VARIANTS,
    FLITE_VOICES,
    SPLITS,
    TTSConfig,
    plan,
    prepare_tts_speech,
    read_manifest,
    speakers,
)

needs_tts = pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("flite") is None,
                               reason="espeak-ng/flite not installed")


def test_sentences_deterministic_in_range_and_in_vocabulary():
    a, b = generate_sentences(500, seed=3), generate_sentences(500, seed=3)
    assert a == b and a != generate_sentences(500, seed=4)
    lengths = [len(s.split()) for s in a]
    assert min(lengths) >= 2 and max(lengths) <= 10
    assert {w for s in a for w in s.split()} <= VOCABULARY
    assert 200 <= len(VOCABULARY) <= 500
    with pytest.raises(ValueError):
        generate_sentences(3, 0, kinds=("poems",))


def test_voice_split_is_disjoint():
    sets = [set(speakers(s)) for s in SPLITS]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert FLITE_VOICES["test"] == ["slt"] and len(ESPEAK_VARIANTS["test"]) == 6
    jobs = plan(TTSConfig(n_train=200, n_dev=20, n_test=50), seed=1)
    assert {u.speaker for u in jobs["test"]} <= sets[2]
    assert {u.speaker for u in jobs["train"]} <= sets[0]
    # flite's two US-English clustergen voices: rms trains, slt tests; dev is espeak-only
    assert "flite:rms" in sets[0] and FLITE_VOICES["dev"] == []
    assert {u.engine for u in jobs["dev"]} == {"espeak-ng"}
    assert {u.engine for u in jobs["test"]} == {"espeak-ng", "flite"}


@needs_tts
def test_synthesis_writes_16k_wavs_and_nemo_manifests(tmp_path):
    cfg = TTSConfig(n_train=6, n_dev=2, n_test=3, flite_fraction=0.5, noise_fraction=0.5, workers=2)
    summary = prepare_tts_speech(tmp_path / "a", cfg, seed=7, progress=False)
    assert {s: summary["splits"][s]["utterances"] for s in SPLITS} == {"train": 6, "dev": 2, "test": 3}
    rows = read_manifest(tmp_path / "a" / "train.jsonl")
    raw = [json.loads(x) for x in (tmp_path / "a" / "train.jsonl").read_text().splitlines()]
    assert all({"audio_filepath", "duration", "text"} <= set(r) for r in raw)
    assert all(not r["audio_filepath"].startswith("/") for r in raw)  # relative, NeMo-resolvable
    engines = set()
    for r in rows:
        info = sf.info(r["audio_filepath"])
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert abs(info.duration - r["duration"]) < 1e-3 and 0.3 < r["duration"] < 10
        engines.add(r["engine"])
    assert engines == {"espeak-ng", "flite"}
    # same seed -> byte-identical audio
    prepare_tts_speech(tmp_path / "b", cfg, seed=7, progress=False)
    def digest(p):
        return hashlib.sha256(p.read_bytes()).hexdigest()

    for split in SPLITS:
        for wav in sorted((tmp_path / "a" / split).glob("*.wav")):
            assert digest(wav) == digest(tmp_path / "b" / split / wav.name)


def test_tts_config_validation():
    with pytest.raises(ValueError):
        TTSConfig(workers=3)
    with pytest.raises(ValueError):
        TTSConfig(noise_fraction=1.5)


def test_sphinx_transcription_parser(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("<s> ten of clubs  </s> (001)\n<s> five five </s> (004)\n")
    assert parse_sphinx_transcription(p) == {"001": "ten of clubs", "004": "five five"}
    p.write_text("no id here\n")
    with pytest.raises(ValueError):
        parse_sphinx_transcription(p)


@pytest.mark.skipif(not DEFAULT_ROOT.is_dir(), reason="pocketsphinx-testdata not installed")
def test_pocketsphinx_real_manifest(tmp_path):
    info = prepare_pocketsphinx_real(tmp_path)
    assert info["utterances"] == 11 and info["sets"] == {"cards": 5, "librivox": 5, "goforward": 1}
    rows = {r["utt_id"]: r for r in read_manifest(tmp_path / "pocketsphinx-real.jsonl")}
    assert rows["cards-005"]["text"] == "eight of spades four of clubs seven of hearts"
    assert rows["librivox-sense_and_sensibility_01_austen_64kb-0880"]["text"] == "he was not an ill disposed young man"
    assert rows["goforward"]["text"] == "go forward ten meters"
    assert abs(rows["goforward"]["duration"] - 89160 / 2 / 16000) < 1e-3  # headerless 16-bit raw
    assert abs(rows["cards-001"]["duration"] - 1.095) < 1e-3


def test_char_tokenizer_round_trip(tmp_path):
    tok = CharTokenizer()
    assert tok.vocab_size == 28
    ids = tok.encode("Ten of Clubs!")
    assert ids == [20, 5, 14, 0, 15, 6, 0, 3, 12, 21, 2, 19]
    assert tok.decode(ids) == "ten of clubs"
    tok.save(tmp_path / "tok.json")
    assert load_tokenizer(tmp_path / "tok.json").encode("ace") == [1, 3, 5]


def test_sentencepiece_unigram_trains_and_round_trips(tmp_path):
    texts = generate_sentences(400, seed=0)
    tok = SentencePieceTokenizer.train(texts, tmp_path / "sp", vocab_size=1024)
    assert 30 < tok.vocab_size <= 1024  # a ceiling on a small corpus
    for t in texts[:20]:
        assert tok.decode(tok.encode(t)) == t
    tok.save(tmp_path / "tok.json")
    again = load_tokenizer(tmp_path / "tok.json")
    assert again.encode(texts[0]) == tok.encode(texts[0])
