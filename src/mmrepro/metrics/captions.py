"""The one caption evaluator every captioner uses: pycocoevalcap with its PTB tokenizer.

Inputs are written in the COCO formats first (results: `[{"image_id", "caption"}]`; references: an
annotation file with `images` and `annotations`), so that what we scored can be rescored by any COCO
tool. Scores are reported x100, as the papers print them (CIDEr-D 1.0 -> 100.0); the returned object
and the metric files say so. pycocoevalcap's `Cider` is the coco-caption CIDEr-D (Gaussian length
penalty sigma=6, clipped n-gram counts), with document frequencies from the evaluated references.

Java start-ups are the slow part on small test sets: METEOR's JVM loads its 60 MB paraphrase table when
it starts (~5 s on 2 cores), so one METEOR JVM serves every scored set of every process of a run (a server:
mmrepro.metrics.meteor_server; a JVM of the process's own when there is none), and references and
predictions go through one PTB tokenizer run per scored set.

SPICE needs Stanford CoreNLP 3.6.0 jars next to pycocoevalcap's spice jar. They cannot be downloaded
at run time here, so SPICE is scored when the jars are present and otherwise reported as unavailable
with the reason (never silently dropped). Its own constructor would try to download them, so it is
only constructed once the jars are found.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.spice import spice as spice_module
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from mmrepro.metrics.meteor_server import ServerUnavailable, meteor_score

METRICS = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider_d", "spice")
SCALE = "x100"
SPICE_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")


@dataclass
class CaptionScores:
    """Corpus scores (x100) and per-image scores (x100) for every metric that could run."""

    corpus: dict[str, float]
    per_image: dict[str, dict[str, float]]  # image_id -> metric -> score
    unavailable: dict[str, str] = field(default_factory=dict)  # metric -> why
    n_images: int = 0
    scale: str = SCALE


def java_or_raise() -> str:
    java = shutil.which("java")
    if java is None:
        raise RuntimeError(
            "java not found: pycocoevalcap's PTB tokenizer and METEOR need a JRE "
            "(Debian/Ubuntu: sudo apt-get install -y default-jre-headless)"
        )
    return java


def spice_unavailable_reason() -> str | None:
    """None when SPICE can run, else a one-line reason."""
    lib = Path(spice_module.__file__).parent / "lib"
    missing = [jar for jar in SPICE_JARS if not (lib / jar).is_file()]
    if missing:
        return f"Stanford CoreNLP jars not found in {lib} ({', '.join(missing)}); see README 'SPICE'"
    return None


def write_coco_files(
    predictions: dict[str, str], references: dict[str, list[str]], out_dir: Path
) -> tuple[Path, Path]:
    """COCO results file and COCO annotation file for the given captions."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = [{"image_id": i, "caption": predictions[i]} for i in sorted(predictions)]
    annotations = {
        "info": {"description": "mmrepro references"},
        "images": [{"id": i} for i in sorted(references)],
        "annotations": [
            {"image_id": i, "id": f"{i}#{k}", "caption": c}
            for i in sorted(references)
            for k, c in enumerate(references[i])
        ],
    }
    res_path, ann_path = out_dir / "captions_results.json", out_dir / "captions_references.json"
    res_path.write_text(json.dumps(results, indent=1))
    ann_path.write_text(json.dumps(annotations, indent=1))
    return res_path, ann_path


def load_coco_files(res_path: Path, ann_path: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    results = json.loads(Path(res_path).read_text())
    annotations = json.loads(Path(ann_path).read_text())
    predictions = {str(r["image_id"]): r["caption"] for r in results}
    references: dict[str, list[str]] = {str(im["id"]): [] for im in annotations["images"]}
    for ann in annotations["annotations"]:
        references[str(ann["image_id"])].append(ann["caption"])
    return predictions, references


_TOKENIZER_STATUS = re.compile(rb"^PTBTokenizer tokenized \d+ tokens at [\d.]+ tokens per second\.$")


@contextmanager
def _quiet_tokenizer() -> Iterator[None]:
    """Drop the status line the PTB tokenizer's Java process prints to stderr on every call (it interleaves
    with progress bars); everything else it prints, e.g. a Java error, is passed on to stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().splitlines(keepends=True)
                    if not _TOKENIZER_STATUS.match(line.strip())]
            if kept:
                os.write(2, b"".join(kept))


_meteor: Meteor | None = None
_meteor_lock = threading.Lock()


def start_meteor() -> Meteor:
    """The process's METEOR scorer, started now if it is not running (or its JVM died). Stopped at exit."""
    global _meteor
    java_or_raise()
    with _meteor_lock:
        if _meteor is None or _meteor.meteor_p.poll() is not None:  # never started, or its JVM died
            _meteor = Meteor()
        return _meteor


@atexit.register
def stop_meteor() -> None:
    global _meteor
    with _meteor_lock:
        if _meteor is not None:
            _meteor.meteor_p.kill()
            _meteor.meteor_p.wait()
            _meteor = None


def _meteor_scores(gts: dict[str, list[str]], res: dict[str, list[str]]) -> tuple[float, list[float]]:
    """METEOR from this user's METEOR server (mmrepro.metrics.meteor_server), or from this process's own JVM
    when `MMREPRO_METEOR_SERVER=0` or the server cannot answer (said on stderr)."""
    if os.environ.get("MMREPRO_METEOR_SERVER", "1") != "0":
        try:
            return meteor_score(gts, res)
        except ServerUnavailable as exc:
            print(f"METEOR server unavailable ({exc}); scoring with a JVM of this process", file=sys.stderr)
    try:
        return start_meteor().compute_score(gts, res)
    except BaseException:  # a half-read reply would desynchronise the next scored set: start afresh then
        stop_meteor()
        raise


def _ptb_tokenize(references: dict[str, list[str]], predictions: dict[str, str]):
    """References and predictions PTB-tokenized in one Java run (`-preserveLines`: a line's tokens do not
    depend on the other lines). An empty hypothesis would crash METEOR's protocol; it is scored as a single
    unknown token."""
    both = {("ref", i): [{"caption": c} for c in refs] for i, refs in references.items()}
    both |= {("hyp", i): [{"caption": c if c.strip() else "<empty>"}] for i, c in predictions.items()}
    with _quiet_tokenizer():
        tokens = PTBTokenizer().tokenize(both)
    return ({i: tokens[("ref", i)] for i in references}, {i: tokens[("hyp", i)] for i in predictions})


def score_captions(predictions: dict[str, str], references: dict[str, list[str]]) -> CaptionScores:
    """Score `predictions[image_id]` against `references[image_id]` (>= 1 caption each)."""
    if not predictions:
        raise ValueError("no predictions to score")
    if set(predictions) != set(references):
        missing = sorted(set(references) ^ set(predictions))[:5]
        raise ValueError(f"predictions and references cover different image ids, e.g. {missing}")
    if any(not refs for refs in references.values()):
        raise ValueError("every image needs at least one reference caption")
    java_or_raise()

    gts, res = _ptb_tokenize(references, predictions)
    ids = sorted(gts)
    gts = {i: gts[i] for i in ids}
    res = {i: res[i] for i in ids}

    corpus: dict[str, float] = {}
    per_image: dict[str, dict[str, float]] = {i: {} for i in ids}

    def record(name: str, score: float, scores) -> None:
        corpus[name] = 100.0 * float(score)
        for i, s in zip(ids, scores, strict=True):
            per_image[i][name] = 100.0 * float(s)

    bleu, bleu_per = Bleu(4).compute_score(gts, res, verbose=0)
    for n in range(4):
        record(f"bleu{n + 1}", bleu[n], bleu_per[n])
    record("meteor", *_meteor_scores(gts, res))
    record("rouge_l", *Rouge().compute_score(gts, res))
    record("cider_d", *Cider().compute_score(gts, res))

    unavailable = {}
    reason = spice_unavailable_reason()
    if reason is None:
        score, scores = spice_module.Spice().compute_score(gts, res)
        record("spice", score, [s["All"]["f"] for s in scores])
    else:
        unavailable["spice"] = reason
    return CaptionScores(corpus=corpus, per_image=per_image, unavailable=unavailable, n_images=len(ids))


def evaluate_caption_files(res_path: Path, ann_path: Path, out_dir: Path) -> CaptionScores:
    """Score COCO-format files and save per-image scores beside them (`captions_per_image.json`)."""
    scores = score_captions(*load_coco_files(res_path, ann_path))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "captions_per_image.json").write_text(
        json.dumps({"scale": scores.scale, "scores": scores.per_image}, indent=1)
    )
    return scores


def evaluate_captions(
    predictions: dict[str, str], references: dict[str, list[str]], out_dir: Path
) -> CaptionScores:
    """Write both COCO files into `out_dir`, score them, save per-image scores there."""
    res_path, ann_path = write_coco_files(predictions, references, out_dir)
    return evaluate_caption_files(res_path, ann_path, out_dir)
