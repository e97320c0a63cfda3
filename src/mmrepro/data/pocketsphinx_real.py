"""`pocketsphinx-real`: the real recordings shipped in Debian's `pocketsphinx-testdata` package,
used as an out-of-domain, real-speech test set (never for training).

Sets (all 16 kHz, 16-bit, mono) under /usr/share/pocketsphinx/test/data:
    cards     5 WAVs, read playing-card sequences ("eight of spades four of clubs ...");
              transcripts in cards/cards.transcription
    librivox  5 WAVs from LibriVox "Sense and Sensibility" (read book speech, open vocabulary);
              transcripts in librivox/transcription
    goforward goforward.raw, headerless PCM; transcript "go forward ten meters" (the utterance that
              pocketsphinx's own tests decode; goforward.gram is its grammar)
Transcript lines are Sphinx style: `<s> words </s> (utt_id)`.

`prepare_pocketsphinx_real(out_dir)` copies the audio as WAV into `out_dir/pocketsphinx-real/`
and writes the NeMo manifest `out_dir/pocketsphinx-real.jsonl` (paths relative to it).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from mmrepro.data.audio_features import SAMPLE_RATE
from mmrepro.data.tts_speech import write_manifest

DATASET = "pocketsphinx-real"
DEFAULT_ROOT = Path("/usr/share/pocketsphinx/test/data")
GOFORWARD_TEXT = "go forward ten meters"
_SPHINX_LINE = re.compile(r"^\s*(?:<s>)?\s*(?P<text>.*?)\s*(?:</s>)?\s*\((?P<id>[^()]+)\)\s*$")


def parse_sphinx_transcription(path: str | Path) -> dict[str, str]:
    """`<s> ten of clubs </s> (001)` lines -> {"001": "ten of clubs"}. Raises ValueError on a
    line that does not have that shape."""
    out: dict[str, str] = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        m = _SPHINX_LINE.match(line)
        if m is None:
            raise ValueError(f"{path}:{n}: not a Sphinx transcription line: {line!r}")
        out[m["id"].strip()] = " ".join(m["text"].split())
    return out


def list_utterances(root: str | Path = DEFAULT_ROOT) -> list[dict[str, Any]]:
    """Every utterance with a known transcript: {"utt_id", "set", "source", "text"}.

    Raises FileNotFoundError naming the Debian package when the data is absent.
    """
    root = Path(root)
    if not (root / "cards" / "cards.transcription").is_file():
        raise FileNotFoundError(f"{root}: pocketsphinx test data not found "
                                "(install the Debian package pocketsphinx-testdata)")
    utts = []
    cards = parse_sphinx_transcription(root / "cards" / "cards.transcription")
    for uid, text in sorted(cards.items()):
        utts.append({"utt_id": f"cards-{uid}", "set": "cards", "source": root / "cards" / f"{uid}.wav", "text": text})
    libri = parse_sphinx_transcription(root / "librivox" / "transcription")
    for uid, text in sorted(libri.items()):
        utts.append({"utt_id": f"librivox-{uid}", "set": "librivox",
                     "source": root / "librivox" / f"{uid}.wav", "text": text})
    if (root / "goforward.raw").is_file():
        utts.append({"utt_id": "goforward", "set": "goforward", "source": root / "goforward.raw",
                     "text": GOFORWARD_TEXT})
    return utts


def read_source(path: str | Path) -> np.ndarray:
    """A WAV, or a headerless 16 kHz 16-bit little-endian `.raw`, as float32 (N,)."""
    path = Path(path)
    if path.suffix == ".raw":
        return np.fromfile(path, dtype="<i2").astype(np.float32) / 32768.0
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    if sr != SAMPLE_RATE:
        raise ValueError(f"{path}: expected {SAMPLE_RATE} Hz, got {sr}")
    return data.mean(axis=1)


def prepare_pocketsphinx_real(out_dir: str | Path, root: str | Path = DEFAULT_ROOT) -> dict[str, Any]:
    """Write WAVs + the manifest; returns {"utterances", "words", "hours", "sets": {set: n}}."""
    out_dir = Path(out_dir)
    audio_dir = out_dir / DATASET
    audio_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for utt in list_utterances(root):
        wave = read_source(utt["source"])
        rel = f"{DATASET}/{utt['utt_id']}.wav"
        sf.write(str(out_dir / rel), wave, SAMPLE_RATE, subtype="PCM_16")
        rows.append({"audio_filepath": rel, "duration": round(len(wave) / SAMPLE_RATE, 4), "text": utt["text"],
                     "utt_id": utt["utt_id"], "set": utt["set"], "source": str(utt["source"])})
    write_manifest(out_dir / f"{DATASET}.jsonl", rows)
    sets: dict[str, int] = {}
    for r in rows:
        sets[r["set"]] = sets.get(r["set"], 0) + 1
    return {"utterances": len(rows), "words": sum(len(r["text"].split()) for r in rows),
            "hours": round(sum(r["duration"] for r in rows) / 3600, 5), "sets": sets}
