"""`tts-speech`: a synthetic speech-recognition corpus made at prepare time with Debian's
`espeak-ng` and `flite`, from the project's sentence list (`mmrepro.data.sentences`).

Splits are by voice, so the test voices are unseen in training:
    - espeak-ng: every utterance takes a random English accent (all splits share the accents, as
      dialects) and a voice *variant* (the speaker's timbre: `+m3`, `+f2`, `+klatt4`, `+Andy`, ...);
      the variants are partitioned between train, dev and test.
    - flite: its built-in voices are partitioned the same way (train kal/kal16/awb/rms, test slt),
      so no test speaker -- espeak variant or flite voice -- is heard in training. The dev split is
      espeak-only: rms trains because it and slt are the two US-English clustergen voices (awb,
      the third, is Scottish; all three are built from CMU ARCTIC recordings); with rms held out
      of training, slt, the one female flite voice, had 42% WER against 33% with rms in
      training (Conformer cpu profile, same test utterances).
Each utterance also draws a speaking rate and pitch, a gain, and optional additive noise
(white or brown, at a random SNR), all from a per-utterance RNG seeded by (seed, split, index):
the same seed gives byte-identical WAVs.

On disk (`out_dir`):
    <split>/<utt_id>.wav       16 kHz mono PCM-16 (espeak's 22.05 kHz and flite kal's 8 kHz are
                               resampled with `audio_features.resample`)
    <split>.jsonl              NeMo manifest: {"audio_filepath", "duration", "text"} + provenance
                               fields ("voice", "engine", "rate", "pitch", "snr_db"); paths are
                               relative to the manifest's directory, as NeMo resolves them.
Synthesis runs in at most 2 worker processes.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from mmrepro.data.audio_features import SAMPLE_RATE, resample
from mmrepro.data.sentences import generate_sentences

DATASET = "tts-speech"
SPLITS = ("train", "dev", "test")
MAX_WORKERS = 2

ESPEAK_ACCENTS = ["en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd", "en-029", "en-us-nyc"]
ESPEAK_VARIANTS: dict[str, list[str]] = {
    "train": ["m1", "m2", "m3", "m5", "m6", "m7", "f1", "f2", "f3", "klatt", "klatt2", "klatt4",
              "adam", "Andy", "Annie", "aunty", "boris", "david", "edward", "grandma", "john",
              "linda", "max", "paul", "rob", "steph", "travis", "victor", "Alicia", "benjamin"],
    "dev": ["m8", "f5", "klatt5", "ed"],
    "test": ["m4", "f4", "klatt3", "Michael", "belinda", "quincy"],
}
FLITE_VOICES: dict[str, list[str]] = {"train": ["kal", "kal16", "awb", "rms"], "dev": [], "test": ["slt"]}


@dataclass(frozen=True)
class TTSConfig:
    n_train: int = 2000  # utterances per split
    n_dev: int = 200
    n_test: int = 300
    flite_fraction: float = 0.25  # share of utterances voiced by flite (rest: espeak-ng)
    rate_range: tuple[float, float] = (0.8, 1.25)  # speaking-rate factor (1 = the engine's default)
    pitch_range: tuple[int, int] = (30, 70)  # espeak pitch 0-99; flite maps it to an F0 mean
    noise_fraction: float = 0.0  # share of utterances with additive noise (0 = clean corpus)
    snr_db_range: tuple[float, float] = (10.0, 30.0)  # SNR of the additive noise
    gain_range: tuple[float, float] = (0.3, 0.9)  # peak amplitude after normalisation
    sentence_kinds: tuple[str, ...] = ("digits", "cards", "commands")
    workers: int = 2  # synthesis processes (<= 2 on the shared machine)

    def __post_init__(self) -> None:
        for name in ("n_train", "n_dev", "n_test"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("flite_fraction", "noise_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("rate_range", "pitch_range", "snr_db_range", "gain_range"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name} must be (low, high) with low <= high, got {(lo, hi)}")
        if self.rate_range[0] <= 0 or not 0 < self.gain_range[1] <= 1.0:
            raise ValueError("rate_range must be positive and gain_range within (0, 1]")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"workers must be 1..{MAX_WORKERS}, got {self.workers}")

    def size(self, split: str) -> int:
        return {"train": self.n_train, "dev": self.n_dev, "test": self.n_test}[split]


@dataclass(frozen=True)
class Utterance:
    """Everything needed to synthesise one utterance (a picklable job)."""

    utt_id: str
    split: str
    text: str
    engine: str  # "espeak-ng" | "flite"
    voice: str  # espeak "<accent>+<variant>" or the flite voice name
    speaker: str  # the split-defining identity: espeak variant or flite voice, e.g. "espeak:m3"
    rate: float
    pitch: int
    gain: float
    noise: str | None  # None | "white" | "brown"
    snr_db: float | None
    noise_seed: int
    meta: dict[str, Any] = field(default_factory=dict)


def speakers(split: str) -> list[str]:
    """The speaker identities of a split (disjoint across splits)."""
    return [f"espeak:{v}" for v in ESPEAK_VARIANTS[split]] + [f"flite:{v}" for v in FLITE_VOICES[split]]


def plan(cfg: TTSConfig, seed: int) -> dict[str, list[Utterance]]:
    """The deterministic list of utterances per split (no synthesis)."""
    out: dict[str, list[Utterance]] = {}
    for s_idx, split in enumerate(SPLITS):
        n = cfg.size(split)
        texts = generate_sentences(n, seed=seed * 1000 + s_idx, kinds=cfg.sentence_kinds)
        utts = []
        for i, text in enumerate(texts):
            rng = random.Random(f"{seed}-{split}-{i}")
            # the draw comes first in every split, so a split without flite voices (dev) leaves
            # the other splits' utterances unchanged
            if rng.random() < cfg.flite_fraction and FLITE_VOICES[split]:
                engine, name = "flite", rng.choice(FLITE_VOICES[split])
                voice, speaker = name, f"flite:{name}"
            else:
                variant = rng.choice(ESPEAK_VARIANTS[split])
                engine, voice, speaker = "espeak-ng", f"{rng.choice(ESPEAK_ACCENTS)}+{variant}", f"espeak:{variant}"
            rate = round(rng.uniform(*cfg.rate_range), 3)
            pitch = rng.randint(*cfg.pitch_range)
            gain = round(rng.uniform(*cfg.gain_range), 3)
            noisy = rng.random() < cfg.noise_fraction
            utts.append(Utterance(
                utt_id=f"{split}-{i:06d}", split=split, text=text, engine=engine, voice=voice,
                speaker=speaker, rate=rate, pitch=pitch, gain=gain,
                noise=rng.choice(["white", "brown"]) if noisy else None,
                snr_db=round(rng.uniform(*cfg.snr_db_range), 2) if noisy else None,
                noise_seed=rng.randrange(2**31)))
        out[split] = utts
    return out


def _run_engine(utt: Utterance, wav_path: str) -> None:
    if utt.engine == "espeak-ng":
        # espeak-ng: -s words per minute (default 175), -p pitch 0-99 (default 50)
        cmd = ["espeak-ng", "-v", utt.voice, "-s", str(round(175 * utt.rate)), "-p", str(utt.pitch),
               "-w", wav_path, utt.text]
    elif utt.engine == "flite":
        # flite: duration_stretch > 1 is slower; F0 mean 80-180 Hz from the 0-99 pitch knob
        f0 = 80 + utt.pitch if utt.voice != "slt" else 140 + utt.pitch
        cmd = ["flite", "-voice", utt.voice, "--setf", f"duration_stretch={1.0 / utt.rate:.3f}",
               "--setf", f"int_f0_target_mean={f0}", "-t", utt.text, "-o", wav_path]
    else:
        raise ValueError(f"unknown engine {utt.engine!r}")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0 or not os.path.exists(wav_path):
        raise RuntimeError(f"{utt.engine} failed for {utt.utt_id} ({' '.join(cmd)}): {proc.stderr.strip()}")


def _noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n)
    if kind == "white":
        return white
    brown = np.cumsum(white)
    brown -= np.linspace(brown[0], brown[-1], n)  # remove the random-walk drift
    return brown


def synthesize(utt: Utterance) -> np.ndarray:
    """Synthesise one utterance: float32 (N,) at 16 kHz, peak = utt.gain, noise added if asked."""
    tool = "espeak-ng" if utt.engine == "espeak-ng" else "flite"
    if shutil.which(tool) is None:
        raise RuntimeError(f"{tool} is not installed (Debian package {tool}); tts-speech needs it")
    with tempfile.TemporaryDirectory(prefix="tts-") as tmp:
        wav_path = os.path.join(tmp, "out.wav")
        _run_engine(utt, wav_path)
        data, sr = sf.read(wav_path, dtype="float32", always_2d=True)
    wave = data.mean(axis=1)
    if sr != SAMPLE_RATE:
        wave = resample(wave, sr, SAMPLE_RATE).numpy()
    peak = float(np.abs(wave).max())
    if peak == 0.0:
        raise RuntimeError(f"{utt.engine} produced silence for {utt.utt_id}: {utt.text!r}")
    wave = wave / peak
    if utt.noise is not None and utt.snr_db is not None:
        rng = np.random.default_rng(utt.noise_seed)
        noise = _noise(utt.noise, len(wave), rng)
        p_sig = float(np.mean(wave**2))
        p_noise = float(np.mean(noise**2)) + 1e-12
        wave = wave + noise * np.sqrt(p_sig / (p_noise * 10 ** (utt.snr_db / 10)))
        wave = wave / float(np.abs(wave).max())
    return (wave * utt.gain).astype(np.float32)


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # one resampling conv per utterance: extra threads only add sync cost


def _synthesize_to(args: tuple[Utterance, str]) -> dict[str, Any]:
    utt, out_dir = args
    wave = synthesize(utt)
    rel = f"{utt.split}/{utt.utt_id}.wav"
    sf.write(os.path.join(out_dir, rel), wave, SAMPLE_RATE, subtype="PCM_16")
    return {"audio_filepath": rel, "duration": round(len(wave) / SAMPLE_RATE, 4), "text": utt.text,
            "utt_id": utt.utt_id, "speaker": utt.speaker, "engine": utt.engine, "voice": utt.voice,
            "rate": utt.rate, "pitch": utt.pitch, "noise": utt.noise, "snr_db": utt.snr_db}


def prepare_tts_speech(out_dir: str | Path, cfg: TTSConfig = TTSConfig(), seed: int = 0,
                       progress: bool = True) -> dict[str, Any]:
    """Synthesise the corpus into `out_dir` (created) and write `<split>.jsonl` manifests.

    Returns a summary: utterances, hours and speakers per split, and the config used.
    """
    out_dir = Path(out_dir)
    for split in SPLITS:
        (out_dir / split).mkdir(parents=True, exist_ok=True)
    jobs = plan(cfg, seed)
    summary: dict[str, Any] = {"dataset": DATASET, "seed": seed, "config": asdict(cfg), "splits": {}}
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    with ProcessPoolExecutor(max_workers=cfg.workers, initializer=_worker_init) as pool:
        for split in SPLITS:
            args = [(u, str(out_dir)) for u in jobs[split]]
            it = pool.map(_synthesize_to, args, chunksize=16)
            if progress and tqdm is not None:
                it = tqdm(it, total=len(args), desc=f"tts-speech {split}", leave=False)
            rows = list(it)
            write_manifest(out_dir / f"{split}.jsonl", rows)
            summary["splits"][split] = {
                "utterances": len(rows),
                "hours": round(sum(r["duration"] for r in rows) / 3600, 4),
                "words": sum(len(r["text"].split()) for r in rows),
                "speakers": sorted({r["speaker"] for r in rows}),
            }
    train_texts = {u.text for u in jobs["train"]}
    summary["test_sentences_seen_in_train"] = sum(u.text in train_texts for u in jobs["test"])
    return summary


def write_manifest(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Write a NeMo JSONL manifest atomically (temp file, then rename)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as fh:
        fh.writelines(json.dumps(row) + "\n" for row in rows)
    os.replace(tmp, path)


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """Read a NeMo JSONL manifest; `audio_filepath` is returned absolute (relative paths are
    resolved against the manifest's directory). Raises ValueError on a row missing a NeMo key."""
    path = Path(path)
    rows = []
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = {"audio_filepath", "duration", "text"} - set(row)
            if missing:
                raise ValueError(f"{path}:{n}: manifest row lacks {sorted(missing)}")
            audio = Path(row["audio_filepath"])
            row["audio_filepath"] = str(audio if audio.is_absolute() else (path.parent / audio).resolve())
            rows.append(row)
    return rows
