"""LibriSpeech (Panayotov et al. 2015, OpenSLR SLR12) reader, opt-in downloader and split identity.

Layout read (exactly what the OpenSLR archives unpack to), under <datasets root>:
    LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt
        each line: "<speaker>-<chapter>-<utt> UPPER CASE TRANSCRIPT"

Download (`download_subset`, opt-in: only when the paper's `download: true`, never in tests):
https://www.openslr.org/resources/12/<subset>.tar.gz, verified against the MD5s OpenSLR publishes
in https://www.openslr.org/resources/12/md5sum.txt (pinned in `ARCHIVE_MD5`), then unpacked. An
archive already at <root>/<subset>.tar.gz is verified and unpacked without downloading; an archive
with another MD5 is a one-line error and is left where it is.

Identity (`split_identity_of`): the count and the content fingerprint (utterance id + transcript) that
the paper checks against references/datasets.yaml *before* any FLAC is opened (`read_subset` reads
only the transcripts and stats the FLACs).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mmrepro.datasets import DatasetError, split_identity, unreadable

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
class LibriSpeechIdentityError(DatasetError):
    """The subset on disk is not the published one (malformed transcript, missing files)."""


class ChecksumError(DatasetError):
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
        try:
            lines = trans.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise unreadable(trans, "transcript (UTF-8 text)", exc) from None
        for n, line in enumerate(lines, 1):
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


def split_identity_of(utts: list[Utterance]) -> dict:
    """{"n", "sha256", "words"} of a subset: mmrepro.datasets.split_identity over (utterance id,
    transcript as in trans.txt), and the word count (checked where references/datasets.yaml has it)."""
    return {**split_identity((u.utt_id, u.text) for u in utts), "words": sum(len(u.text.split()) for u in utts)}


def md5sum(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def download_subset(root: str | Path, subset: str, base_url: str = BASE_URL) -> Path:
    """Unpack `<root>/<subset>.tar.gz` (downloaded from OpenSLR first when absent) after checking its
    MD5; the archive holds `LibriSpeech/<subset>/...`. Returns the subset folder. A wrong MD5 is a
    ChecksumError and the archive is left in place (never deleted).

    Written for real use on a machine with network access; the tests never download."""
    if subset not in ARCHIVE_MD5:
        raise ValueError(f"unknown LibriSpeech subset {subset!r}; known: {', '.join(SUBSETS)}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    url = f"{base_url}/{subset}.tar.gz"
    archive = root / f"{subset}.tar.gz"
    if not archive.is_file():
        _fetch(url, archive, subset)
    got = md5sum(archive)
    if got != ARCHIVE_MD5[subset]:
        raise ChecksumError(f"{archive}: md5 {got} != OpenSLR's {ARCHIVE_MD5[subset]} (file left in place; "
                            f"remove it and download {url} again)")
    staging = Path(tempfile.mkdtemp(prefix=f".{subset}-", dir=root))
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(staging, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:  # verified MD5, then a disk or unpack failure
            raise unreadable(archive, "tar.gz archive", exc) from None
        src = staging / "LibriSpeech" / subset
        if not src.is_dir():
            raise LibriSpeechIdentityError(f"{archive}: archive does not contain LibriSpeech/{subset}")
        dest = subset_dir(root, subset)
        dest.parent.mkdir(parents=True, exist_ok=True)
        for extra in ("BOOKS.TXT", "CHAPTERS.TXT", "LICENSE.TXT", "README.TXT", "SPEAKERS.TXT"):
            if (staging / "LibriSpeech" / extra).is_file() and not (dest.parent / extra).exists():
                shutil.move(str(staging / "LibriSpeech" / extra), dest.parent / extra)
        os.replace(src, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def _fetch(url: str, archive: Path, subset: str) -> None:
    """Download url to archive (via a temporary name, renamed when complete)."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{subset}-", suffix=".part", dir=archive.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        resp_cm = urllib.request.urlopen(url, timeout=60)
    except OSError as exc:  # URLError, DNS, timeout: one line
        tmp.unlink(missing_ok=True)
        raise DatasetError(f"LibriSpeech {subset}: download of {url} failed ({exc})") from None
    try:
        with resp_cm as resp, open(tmp, "wb") as out:
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
        os.replace(tmp, archive)
    finally:
        tmp.unlink(missing_ok=True)  # only our own partial download


def to_manifest_rows(utts: list[Utterance]) -> list[dict]:
    """NeMo manifest rows (absolute FLAC paths; duration read from the FLAC header)."""
    import soundfile as sf

    rows = []
    for u in utts:
        try:
            info = sf.info(str(u.audio_path))
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise unreadable(u.audio_path, "FLAC", exc) from None
        rows.append({"audio_filepath": str(u.audio_path.resolve()), "duration": round(info.duration, 4),
                     "text": u.text.lower(), "utt_id": u.utt_id, "speaker": u.speaker})
    return rows
