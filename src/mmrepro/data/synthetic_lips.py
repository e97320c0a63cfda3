"""`synthetic-lips`: mouth-region videos rendered from a parametric mouth, driven by visemes.

The offline stand-in for LRS3 in the visual-speech paper (Chang et al. 2023, "Conformers are All
You Need for Visual Speech Recognition"). It keeps what makes lip reading hard:

* the input is the *visible* articulation only: each sentence is turned into phonemes by Debian
  `espeak-ng -q -x` and each phoneme into a viseme, so sounds that look alike render alike
  (p/b/m share one viseme, t/d/n/s/z share one, k/g/ng/h share one, f/v, th/dh, sh/zh/ch/jh);
* coarticulation: the mouth moves smoothly between viseme targets placed at phone centres;
* speakers differ (mouth size and shape, lip thickness, lip/skin/teeth colours, speaking rate,
  articulation strength, head position/rotation drift, per-frame jitter, camera noise and
  brightness), and the splits are by speaker so test speakers are unseen.

Output of `render_clip`: uint8 frames `(T, 64, 64)` at 25 fps (grayscale, like LRS3 VSR inputs).
`write_corpus` stores one `<split>.npy` (all frames of the split concatenated, memory-mappable)
and `<split>.jsonl` (one clip per line: `id`, `sentence_id`, `speaker`, `text`, `offset`,
`n_frames`). `sentence_id` is the id of the sentence in the shared sentence list, so a clip can be
paired with the audio of the same sentence in the speech corpus.

Everything is deterministic in the seed (numpy `default_rng`, no global state).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

FPS = 25
SIZE = 64

# ---------------------------------------------------------------------------------------------
# Visemes: target mouth parameters. Columns: opening (0 closed .. 1 wide), width (relative),
# rounding (0 spread .. 1 protruded/round), teeth visibility, tongue visibility.
VISEMES: dict[str, tuple[float, float, float, float, float]] = {
    "sil": (0.04, 0.50, 0.00, 0.0, 0.0),  # rest
    "PBM": (0.00, 0.48, 0.10, 0.0, 0.0),  # p b m: lips pressed together
    "FV": (0.14, 0.55, 0.00, 1.0, 0.0),  # f v: upper teeth on lower lip
    "TH": (0.24, 0.56, 0.00, 0.6, 1.0),  # th dh: tongue between the teeth
    "TD": (0.22, 0.60, 0.00, 0.9, 0.1),  # t d n s z: narrow opening, teeth
    "L": (0.36, 0.56, 0.00, 0.6, 0.7),  # l: tongue tip up
    "SH": (0.24, 0.36, 0.75, 0.8, 0.0),  # sh zh ch jh: protruded, teeth
    "KG": (0.44, 0.56, 0.00, 0.3, 0.25),  # k g ng h: open, tongue back
    "R": (0.24, 0.40, 0.55, 0.2, 0.1),  # r
    "W": (0.12, 0.26, 1.00, 0.0, 0.0),  # w (and the end of u:)
    "AA": (0.92, 0.60, 0.00, 0.5, 0.3),  # a A: aI.. (open)
    "EH": (0.56, 0.66, 0.00, 0.5, 0.2),  # E e (mid front)
    "EE": (0.28, 0.82, 0.00, 0.9, 0.1),  # i: I j (spread)
    "UH": (0.46, 0.56, 0.10, 0.3, 0.2),  # @ 3 V (neutral)
    "OH": (0.62, 0.40, 0.70, 0.2, 0.2),  # O 0 o (mid round)
    "OO": (0.28, 0.30, 0.92, 0.0, 0.0),  # u: U (close round)
}
VISEME_NAMES = tuple(VISEMES)

# espeak-ng `-x` (ASCII) phoneme -> viseme(s); diphthongs become two targets.
_CONSONANTS = {
    **dict.fromkeys(["p", "b", "m"], "PBM"),
    **dict.fromkeys(["f", "v"], "FV"),
    **dict.fromkeys(["T", "D"], "TH"),
    **dict.fromkeys(["t", "d", "n", "s", "z", "t2", "d2", "n-", "?"], "TD"),
    **dict.fromkeys(["l", "l/", "L", "@L"], "L"),
    **dict.fromkeys(["S", "Z", "tS", "dZ"], "SH"),
    **dict.fromkeys(["k", "g", "N", "h", "x"], "KG"),
    **dict.fromkeys(["r", "r-", "*"], "R"),
    "w": "W",
    "j": "EE",
}
_VOWELS = {
    **dict.fromkeys(["a", "A", "A:", "a#", "aa"], ("AA",)),
    **dict.fromkeys(["E", "e", "E2"], ("EH",)),
    **dict.fromkeys(["i", "i:", "I", "I2", "I#", "y"], ("EE",)),
    **dict.fromkeys(["@", "@2", "@5", "3", "3:", "V", "a2"], ("UH",)),
    **dict.fromkeys(["0", "O", "O:", "o"], ("OH",)),
    **dict.fromkeys(["u", "u:", "U", "U:"], ("OO",)),
    "aI": ("AA", "EE"),
    "aU": ("AA", "OO"),
    "eI": ("EH", "EE"),
    "oU": ("OH", "OO"),
    "OI": ("OH", "EE"),
    "e@": ("EH", "UH"),
    "i@": ("EE", "UH"),
    "i@3": ("EE", "UH"),
    "U@": ("OO", "UH"),
    "A@": ("AA", "UH"),
    "O@": ("OH", "UH"),
    "o@": ("OH", "UH"),
    "aI@": ("AA", "EE", "UH"),
    "aU@": ("AA", "OO", "UH"),
}


def phoneme_to_visemes(phoneme: str) -> tuple[tuple[str, ...], bool]:
    """Map one espeak-ng `-x` phoneme (stress marks allowed) to viseme names and a vowel flag.

    Unknown symbols fall back on their first character, then on the neutral vowel viseme.
    """
    p = phoneme.lstrip("',%=")
    if p in _CONSONANTS:
        return (_CONSONANTS[p],), False
    if p in _VOWELS:
        return _VOWELS[p], True
    base = p.rstrip(":;#2345")
    if base in _CONSONANTS:
        return (_CONSONANTS[base],), False
    if base in _VOWELS:
        return _VOWELS[base], True
    if base[:1] in _CONSONANTS:
        return (_CONSONANTS[base[:1]],), False
    return ("UH",), True


@lru_cache(maxsize=8192)
def phonemize(text: str) -> tuple[tuple[str, ...], ...]:
    """Phonemes of `text` per word, from `espeak-ng -q -x --sep=_` (en-us voice).

    Returns one tuple of phonemes per word, e.g. "ten of clubs" ->
    (("t", "'E", "n"), ("0", "v"), ("k", "l", "'V", "b", "z")). Stress marks stay on the vowel.
    """
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("synthetic-lips needs Debian espeak-ng on PATH (apt-get install espeak-ng)")
    out = subprocess.run(
        [exe, "-q", "-x", "--sep=_", "-v", "en-us", text],
        check=True, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C.UTF-8"},
    ).stdout
    words = []
    for word in out.split():
        phones = tuple(p for p in word.split("_") if p.strip("',%="))
        if phones:
            words.append(phones)
    return tuple(words)


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Speaker:
    """Per-speaker appearance and motion; drawn by `sample_speaker`."""

    id: str
    mouth_width: float  # half-width of the closed mouth in image units ([-1, 1] image)
    mouth_height: float  # vertical scale of the opening
    lip_thickness: float  # lip thickness (image units)
    upper_lower_ratio: float  # upper/lower lip thickness
    articulation: float  # how far the mouth goes towards each viseme target (hypo/hyper-articulation)
    rate: float  # speaking-rate factor (phone durations are divided by it)
    skin: float  # skin gray level 0..1
    lip: float  # lip gray level
    cavity: float  # mouth cavity gray level
    teeth: float  # teeth gray level
    tongue: float  # tongue gray level
    centre_x: float  # mouth centre in image units
    centre_y: float
    head_motion: float  # amplitude of slow head drift (image units)
    tilt: float  # mean in-plane rotation (radians)
    jitter: float  # per-frame parameter jitter (std)
    noise: float  # camera noise std (gray levels / 255)
    shading: float  # strength of the vertical lighting gradient


def sample_speaker(speaker_id: str, rng: np.random.Generator) -> Speaker:
    """A random speaker; all draws come from `rng` in a fixed order (deterministic in its seed)."""
    u = rng.uniform
    skin = u(0.35, 0.8)
    return Speaker(
        id=speaker_id,
        mouth_width=u(0.55, 0.75),
        mouth_height=u(0.6, 0.9),
        lip_thickness=u(0.1, 0.18),
        upper_lower_ratio=u(0.7, 1.2),
        articulation=u(0.75, 1.1),
        rate=u(0.85, 1.2),
        skin=skin,
        lip=float(np.clip(skin - u(0.1, 0.3), 0.1, 0.9)),
        cavity=u(0.02, 0.15),
        teeth=u(0.8, 0.98),
        tongue=float(np.clip(skin - u(0.05, 0.2), 0.2, 0.8)),
        centre_x=u(-0.08, 0.08),
        centre_y=u(-0.08, 0.08),
        head_motion=u(0.01, 0.06),
        tilt=u(-0.15, 0.15),
        jitter=u(0.01, 0.04),
        noise=u(0.01, 0.04),
        shading=u(0.0, 0.2),
    )


# ---------------------------------------------------------------------------------------------
_BASE_DURATION = {"vowel": 3.2, "stop": 2.0, "cons": 2.4}  # frames at 25 fps for rate 1.0
_STOPS = {"p", "b", "m", "t", "d", "k", "g"}  # m too: p/b/m must look (and last) alike


def viseme_track(
    text: str, speaker: Speaker, rng: np.random.Generator, min_frames_per_char: float = 1.25
) -> tuple[np.ndarray, list[tuple[str, float]]]:
    """Mouth parameters per frame for `text`: array `(T, 5)` (VISEMES columns) and the targets.

    Phones get a base duration (stressed vowels longer), scaled by the speaker's rate and a
    per-phone jitter; a silence leads and trails. The clip is stretched when needed so that it has
    at least `min_frames_per_char` frames per character (so a character CTC at 25 fps stays
    feasible, as it is for real speech at ~15 characters per second).
    """
    targets: list[tuple[str, float]] = [("sil", u) for u in [rng.uniform(3.0, 6.0)]]
    for word in phonemize(text):
        for ph in word:
            visemes, is_vowel = phoneme_to_visemes(ph)
            core = ph.lstrip("',%=")
            if is_vowel:
                dur = _BASE_DURATION["vowel"] * (1.3 if ph.startswith("'") else 1.0)
                dur *= 1.25 if ":" in core or len(visemes) > 1 else 1.0
            else:
                dur = _BASE_DURATION["stop" if core in _STOPS else "cons"]
            dur = dur * rng.uniform(0.8, 1.25) / speaker.rate
            for v in visemes:
                targets.append((v, dur / len(visemes)))
    targets.append(("sil", rng.uniform(3.0, 6.0)))
    durs = np.array([d for _, d in targets])
    need = min_frames_per_char * len(text) + 6.0
    if durs.sum() < need:
        durs *= need / durs.sum()
    targets = [(v, float(d)) for (v, _), d in zip(targets, durs, strict=True)]

    ends = np.cumsum(durs)
    centres = ends - durs / 2
    n_frames = int(np.ceil(ends[-1]))
    key = np.array([VISEMES[v] for v, _ in targets], dtype=np.float64)  # (K, 5)
    rest = np.array(VISEMES["sil"])
    key = rest + speaker.articulation * (key - rest)
    t = np.arange(n_frames) + 0.5
    track = np.stack([np.interp(t, centres, key[:, j]) for j in range(key.shape[1])], axis=1)
    # coarticulation: a short exponential-ish smoothing (kernel over +-2 frames)
    kernel = np.array([0.1, 0.2, 0.4, 0.2, 0.1])
    padded = np.pad(track, ((2, 2), (0, 0)), mode="edge")
    track = sum(kernel[i] * padded[i : i + n_frames] for i in range(5))
    track = track + rng.normal(0.0, speaker.jitter, size=track.shape)
    track[:, 0] = np.clip(track[:, 0], 0.0, 1.1)
    track[:, 1:] = np.clip(track[:, 1:], 0.0, 1.2)
    return track, targets


def render_frames(track: np.ndarray, speaker: Speaker, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """Render mouth parameters `(T, 5)` into uint8 frames `(T, size, size)`; vectorised over T."""
    if track.ndim != 2 or track.shape[1] != 5:
        raise ValueError(f"track must be (T, 5), got {track.shape}")
    n = track.shape[0]
    opening, width, rounding, teeth, tongue = (track[:, j, None, None] for j in range(5))
    # head motion: slow random drift (sum of two sinusoids) + in-plane rotation
    phase = rng.uniform(0, 2 * np.pi, size=4)
    freq = rng.uniform(0.02, 0.08, size=4) * 2 * np.pi
    ts = np.arange(n)
    hm = speaker.head_motion
    cx = speaker.centre_x + hm * np.sin(freq[0] * ts + phase[0])
    cy = speaker.centre_y + hm * np.sin(freq[1] * ts + phase[1])
    ang = speaker.tilt + 0.05 * np.sin(freq[2] * ts + phase[2])
    scale = 1.0 + 0.04 * np.sin(freq[3] * ts + phase[3])
    cx, cy, ang, scale = (a[:, None, None] for a in (cx, cy, ang, scale))

    coords = (np.arange(size) + 0.5) / size * 2 - 1
    y, x = np.meshgrid(coords, coords, indexing="ij")
    dx, dy = x[None] - cx, y[None] - cy
    u = (dx * np.cos(ang) + dy * np.sin(ang)) / scale
    v = (-dx * np.sin(ang) + dy * np.cos(ang)) / scale

    # mouth geometry
    half_w = speaker.mouth_width * (0.65 + 0.5 * width) * (1 - 0.35 * rounding)  # (T,1,1)
    half_open = speaker.mouth_height * opening * (1 + 0.3 * rounding) * 0.5
    thick_up = speaker.lip_thickness * speaker.upper_lower_ratio * (1 + 0.4 * rounding)
    thick_lo = speaker.lip_thickness * (1 + 0.4 * rounding)
    inner_w = half_w * (0.78 - 0.2 * rounding)
    upper = v < 0
    b_out = np.where(upper, half_open + thick_up, half_open + thick_lo)
    b_in = np.maximum(half_open, 1e-3)

    def soft(r: np.ndarray, edge: float = 0.12) -> np.ndarray:  # 1 inside, 0 outside, soft border
        return np.clip((1 - r) / edge + 0.5, 0.0, 1.0)

    outer = soft(np.sqrt((u / half_w) ** 2 + (v / b_out) ** 2))
    inner = soft(np.sqrt((u / inner_w) ** 2 + (v / b_in) ** 2)) * np.clip(opening / 0.05, 0, 1)
    # teeth: bands under the upper lip (and above the lower lip), visible where the mouth is open
    band = 0.35 * b_in + 0.02
    teeth_up = (v < -b_in + band) & (np.abs(u) < inner_w * 0.8)
    teeth_lo = (v > b_in - 0.6 * band) & (np.abs(u) < inner_w * 0.6)
    teeth_mask = (teeth_up | teeth_lo).astype(np.float64) * np.clip(teeth, 0, 1)
    tongue_r = np.sqrt((u / (inner_w * 0.7)) ** 2 + ((v - b_in * (1 - 0.8 * tongue)) / (b_in * 0.6 + 1e-3)) ** 2)
    tongue_mask = soft(tongue_r) * np.clip(tongue, 0, 1)

    img = np.full((n, size, size), speaker.skin)
    img = img * (1 - speaker.shading * (y[None] + 1) / 2)  # lighting gradient
    img = img + (speaker.lip - img) * outer
    cav = speaker.cavity + (speaker.teeth - speaker.cavity) * teeth_mask
    cav = cav + (speaker.tongue - cav) * tongue_mask * (1 - teeth_mask)
    img = img + (cav - img) * inner
    # philtrum / lip line shadow when closed
    img = img - 0.15 * outer * np.exp(-((v / 0.02) ** 2)) * np.clip(1 - opening / 0.1, 0, 1)
    img = img * rng.uniform(0.9, 1.1) + rng.normal(0.0, speaker.noise, size=img.shape)
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def render_clip(text: str, speaker: Speaker, seed: int, size: int = SIZE) -> np.ndarray:
    """Frames `(T, size, size)` uint8 of `speaker` saying `text`; deterministic in `seed`."""
    rng = np.random.default_rng(seed)
    track, _ = viseme_track(text, speaker, rng)
    return render_frames(track, speaker, rng, size)


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LipsSpec:
    """How big the corpus is; the paper module fills it from the profile config."""

    speakers: dict[str, int]  # split -> number of speakers (disjoint sets)
    clips_per_speaker: dict[str, int]  # split -> sentences each speaker says
    size: int = SIZE


SPLITS = ("train", "dev", "test")  # same order as `mmrepro.data.tts_speech.SPLITS` (the pairing needs it)


def paired_sentences(n_per_split: dict[str, int], seed: int) -> dict[str, list[tuple[str, str]]]:
    """The shared sentence list per split, as (sentence_id, text).

    Drawn exactly as the `tts-speech` corpus draws its texts (`generate_sentences(n, seed * 1000 +
    split index)`), so with the same `seed`, sentence `<split>-<i:06d>` here is the text of the
    tts-speech utterance with that `utt_id` (when i < that corpus's size of the split): an
    audio-visual model can pair a clip with its audio through `sentence_id`.
    """
    from mmrepro.data.sentences import generate_sentences

    out = {}
    for s_idx, split in enumerate(SPLITS):
        if split in n_per_split:
            texts = generate_sentences(n_per_split[split], seed=seed * 1000 + s_idx)
            out[split] = [(f"{split}-{i:06d}", t) for i, t in enumerate(texts)]
    return out


def write_corpus(
    out_dir: Path, sentences: dict[str, Sequence[tuple[str, str]]], spec: LipsSpec, seed: int
) -> dict[str, int]:
    """Render the corpus into `out_dir`: `<split>.npy` frames, `<split>.jsonl`, `speakers.json`.

    `sentences[split]` is that split's sentence list as (sentence_id, text) (see
    `paired_sentences`). Each speaker says `clips_per_speaker[split]` sentences drawn from it
    without replacement (with replacement if the list is shorter). Speakers of different splits
    are different draws (disjoint ids). Returns split -> number of clips.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    all_speakers = {}
    for s_idx, split in enumerate(spec.speakers):
        pool = sentences.get(split) or []
        if not pool:
            raise ValueError(f"no sentences for split {split!r}")
        rng = np.random.default_rng([seed, s_idx])  # per split: a split does not depend on the others' sizes
        n_spk, per = spec.speakers[split], spec.clips_per_speaker[split]
        records, offset, chunks = [], 0, []
        for k in range(n_spk):
            spk = sample_speaker(f"{split}-spk{k:03d}", rng)
            all_speakers[spk.id] = asdict(spk)
            choice = rng.choice(len(pool), size=per, replace=per > len(pool))
            for j, idx in enumerate(choice):
                sid, text = pool[int(idx)]
                frames = render_clip(text, spk, seed=int(rng.integers(2**31)), size=spec.size)
                chunks.append(frames)
                records.append({
                    "id": f"{spk.id}-{j:04d}", "sentence_id": sid, "speaker": spk.id, "text": text,
                    "offset": offset, "n_frames": int(frames.shape[0]),
                })
                offset += frames.shape[0]
        arr = np.concatenate(chunks) if chunks else np.zeros((0, spec.size, spec.size), np.uint8)
        np.save(out_dir / f"{split}.npy", arr)
        with open(out_dir / f"{split}.jsonl", "w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in records)
        counts[split] = len(records)
    (out_dir / "speakers.json").write_text(json.dumps(all_speakers, indent=1))
    return counts


def load_split(data_dir: Path, split: str, mmap: bool = True) -> tuple[np.ndarray, list[dict]]:
    """Frames array `(N_frames, H, W)` uint8 (memory-mapped) and the clip records of `split`."""
    frames = np.load(data_dir / f"{split}.npy", mmap_mode="r" if mmap else None)
    with open(data_dir / f"{split}.jsonl") as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    return frames, records
