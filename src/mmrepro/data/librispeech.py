"""LibriSpeech (Panayotov et al. 2015, OpenSLR SLR12) reader, opt-in downloader and identity check.

Layout read (exactly what the OpenSLR archives unpack to):
    <root>/LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    <root>/LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt
        each line: "<speaker>-<chapter>-<utt> UPPER CASE TRANSCRIPT"

Download (`download_subset`, opt-in: only called when the caller asks for it, never in tests):
https://www.openslr.org/resources/12/<subset>.tar.gz, verified against the MD5s OpenSLR publishes
in https://www.openslr.org/resources/12/md5sum.txt (pinned in `ARCHIVE_MD5`), then unpacked.

Identity check (`check_identity`, enforced by `load_subset` for the test sets): test-clean must have
2620 utterances / 52576 words and test-other 2939 / 52343, the sizes every LibriSpeech WER is
quoted over; anything else (a partial download, another version) raises `LibriSpeechIdentityError`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

BASE_URL = "https://www.openslr.org/resources/12"
SUBSETS = ("dev-clean", "dev-other", "test-clean", "test-other", "train-clean-100", "train-clean-360",
           "train-other-500")
ARCHIVE_MD5: dict[str, str] = {  # OpenSLR's md5sum.txt for resources/12
    "dev-clean": "42e2234ba48799c1f50f24a7926300a1",
    "dev-other": "c8d0bcc9cca99d4f8b62fcc847357931",
    "test-clean": "32fa31d27d2e1cad72775fee3f4849a9",
    "test-other": "fb5a50374b501bb3bac4815ee91d3135",
    "train-clean-100": "2a93770f6d5c6c964bc36631d331a522",
    "train-clean-360": "c0e676e450a7ff2f54aeade5171606fa",
    "train-other-500": "d1a0fd59409feb2c614ce4d30c387708",
}
# (utterances, words) of the evaluation sets, as every published LibriSpeech WER counts them.
EXPECTED_SIZES: dict[str, tuple[int, int]] = {
    "test-clean": (2620, 52576),
    "test-other": (2939, 52343),
}


class LibriSpeechIdentityError(RuntimeError):
    """The subset on disk is not the published one (wrong counts, missing files)."""


class ChecksumError(RuntimeError):
    """A downloaded archive does not have OpenSLR's MD5."""


@dataclass(frozen=True)
class Utterance:
    utt_id: str  # "<speaker>-<chapter>-<utt>"
    speaker: str
    chapter: str
    text: str  # as in trans.txt (upper case, apostrophes kept)
    audio_path: Path


def subset_dir(root: str | Path, subset: str) -> Path:
    """<root>/LibriSpeech/<subset>; accepts root pointing at LibriSpeech/ itself too."""
    root = Path(root)
    if root.name == "LibriSpeech":
        return root / subset
    return root / "LibriSpeech" / subset


def read_subset(root: str | Path, subset: str) -> list[Utterance]:
    """Every utterance of `subset`, sorted by id. Raises FileNotFoundError if the subset folder is
    absent and LibriSpeechIdentityError if a transcript names a missing FLAC or a line is malformed."""
    base = subset_dir(root, subset)
    if not base.is_dir():
        raise FileNotFoundError(f"{base}: LibriSpeech subset {subset!r} not found")
    utts: list[Utterance] = []
    for trans in sorted(base.glob("*/*/*.trans.txt")):
        speaker, chapter = trans.parent.parent.name, trans.parent.name
        if trans.name != f"{speaker}-{chapter}.trans.txt":
            raise LibriSpeechIdentityError(f"{trans}: expected name {speaker}-{chapter}.trans.txt")
        for n, line in enumerate(trans.read_text().splitlines(), 1):
            if not line.strip():
                continue
            utt_id, _, text = line.strip().partition(" ")
            if not utt_id.startswith(f"{speaker}-{chapter}-") or not text:
                raise LibriSpeechIdentityError(f"{trans}:{n}: malformed line {line!r}")
            audio = trans.parent / f"{utt_id}.flac"
            if not audio.is_file():
                raise LibriSpeechIdentityError(f"{trans}:{n}: {audio.name} is missing")
            utts.append(Utterance(utt_id, speaker, chapter, text, audio))
    return sorted(utts, key=lambda u: u.utt_id)


def check_identity(subset: str, utts: list[Utterance],
                   expected: Mapping[str, tuple[int, int]] = EXPECTED_SIZES) -> tuple[int, int]:
    """Raise LibriSpeechIdentityError unless `utts` has the expected (utterances, words) of
    `subset`; subsets without an expectation pass. Returns the measured (utterances, words)."""
    got = (len(utts), sum(len(u.text.split()) for u in utts))
    if subset in expected and got != tuple(expected[subset]):
        want = expected[subset]
        raise LibriSpeechIdentityError(
            f"LibriSpeech {subset}: found {got[0]} utterances / {got[1]} words, expected "
            f"{want[0]} / {want[1]}; the published WERs are over the complete set -- re-download "
            f"(md5 {ARCHIVE_MD5.get(subset, '?')}) instead of scoring a partial or different copy")
    return got


def load_subset(root: str | Path, subset: str, download: bool = False,
                expected: Mapping[str, tuple[int, int]] = EXPECTED_SIZES) -> list[Utterance]:
    """Read `subset`, downloading it first if absent and `download` is True; the identity check
    is always enforced for the test sets."""
    if subset not in SUBSETS:
        raise ValueError(f"unknown LibriSpeech subset {subset!r}; known: {', '.join(SUBSETS)}")
    if not subset_dir(root, subset).is_dir():
        if not download:
            raise FileNotFoundError(
                f"{subset_dir(root, subset)}: LibriSpeech {subset} not found; put the OpenSLR archive's "
                f"contents there or enable the download (papers.<name>.full.download: true)")
        download_subset(root, subset)
    utts = read_subset(root, subset)
    check_identity(subset, utts, expected)
    return utts


def md5sum(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def download_subset(root: str | Path, subset: str, base_url: str = BASE_URL) -> Path:
    """Download `<subset>.tar.gz` from OpenSLR into `<root>`, verify its MD5, unpack it (the archive
    holds `LibriSpeech/<subset>/...`), delete the archive. Returns the subset folder.

    Written for real use on a machine with network access; the tests never call it."""
    if subset not in ARCHIVE_MD5:
        raise ValueError(f"unknown LibriSpeech subset {subset!r}; known: {', '.join(SUBSETS)}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    url = f"{base_url}/{subset}.tar.gz"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{subset}-", suffix=".tar.gz", dir=root)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0)
            try:
                from tqdm import tqdm

                bar = tqdm(total=total or None, unit="B", unit_scale=True, desc=f"{subset}.tar.gz")
            except ImportError:  # pragma: no cover
                bar = None
            while block := resp.read(1 << 20):
                out.write(block)
                if bar is not None:
                    bar.update(len(block))
            if bar is not None:
                bar.close()
        got = md5sum(tmp)
        if got != ARCHIVE_MD5[subset]:
            raise ChecksumError(f"{url}: md5 {got} != published {ARCHIVE_MD5[subset]}")
        staging = Path(tempfile.mkdtemp(prefix=f".{subset}-", dir=root))
        try:
            with tarfile.open(tmp, "r:gz") as tar:
                tar.extractall(staging, filter="data")
            src = staging / "LibriSpeech" / subset
            if not src.is_dir():
                raise LibriSpeechIdentityError(f"{url}: archive does not contain LibriSpeech/{subset}")
            dest = subset_dir(root, subset)
            dest.parent.mkdir(parents=True, exist_ok=True)
            for extra in ("BOOKS.TXT", "CHAPTERS.TXT", "LICENSE.TXT", "README.TXT", "SPEAKERS.TXT"):
                if (staging / "LibriSpeech" / extra).is_file() and not (dest.parent / extra).exists():
                    shutil.move(str(staging / "LibriSpeech" / extra), dest.parent / extra)
            os.replace(src, dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        tmp.unlink(missing_ok=True)
    return subset_dir(root, subset)


def to_manifest_rows(utts: list[Utterance]) -> list[dict]:
    """NeMo manifest rows (absolute FLAC paths; duration read from the FLAC header)."""
    import soundfile as sf

    rows = []
    for u in utts:
        info = sf.info(str(u.audio_path))
        rows.append({"audio_filepath": str(u.audio_path.resolve()), "duration": round(info.duration, 4),
                     "text": u.text.lower(), "utt_id": u.utt_id, "speaker": u.speaker})
    return rows
