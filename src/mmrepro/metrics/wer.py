"""Word and character error rates, computed with jiwer after one stated text normalisation.

NORMALISATION (applied to references and hypotheses alike, before scoring; recorded in every
metric file as `NORMALISATION`):
    1. Unicode NFKC, then lowercase;
    2. every punctuation character (Unicode category P*) becomes a space, except an apostrophe
       between two letters ("don't" stays "don't", "'quoted'" becomes "quoted");
    3. whitespace runs collapse to one space; leading/trailing space is removed.
No number or spelling normalisation (no "10" -> "ten"): the corpora here are already spelled out.

WER = (S + D + I) / N over the words of a whole set (not the mean of per-utterance rates); CER the
same over characters of the normalised strings, spaces included. Counts follow ESPnet's
`sclite`-style summary: Snt (sentences), Wrd (reference words), Corr/Sub/Del/Ins/Err as percentages
of Wrd, S.Err the percentage of sentences with at least one error.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jiwer
import numpy as np

NORMALISATION = (
    "NFKC; lowercase; punctuation (Unicode P*) -> space except an apostrophe between letters; "
    "whitespace collapsed; no number normalisation"
)

_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Apply NORMALISATION to one string."""
    text = unicodedata.normalize("NFKC", text).lower()
    chars = list(text)
    for i, ch in enumerate(chars):
        if unicodedata.category(ch).startswith("P"):
            inner_apostrophe = (ch in "'\u2019" and 0 < i < len(chars) - 1
                                and chars[i - 1].isalpha() and chars[i + 1].isalpha())
            chars[i] = "'" if inner_apostrophe else " "
    return _SPACES.sub(" ", "".join(chars)).strip()


@dataclass(frozen=True)
class ErrorCounts:
    """Alignment counts over a set, for one unit (words or characters)."""

    snt: int  # sentences
    ref: int  # reference units (words or characters) = corr + sub + dele
    corr: int
    sub: int
    dele: int
    ins: int
    snt_err: int  # sentences with at least one error

    @property
    def rate(self) -> float:
        """(S + D + I) / N as a fraction (0.123 = 12.3 %)."""
        return (self.sub + self.dele + self.ins) / self.ref if self.ref else 0.0

    def row(self, name: str) -> str:
        """One ESPnet-style markdown table row, percentages with one decimal."""
        pct = (lambda x: 100.0 * x / self.ref) if self.ref else (lambda x: 0.0)
        err = self.sub + self.dele + self.ins
        s_err = 100.0 * self.snt_err / self.snt if self.snt else 0.0
        return (f"| {name} | {self.snt} | {self.ref} | {pct(self.corr):.1f} | {pct(self.sub):.1f} | "
                f"{pct(self.dele):.1f} | {pct(self.ins):.1f} | {pct(err):.1f} | {s_err:.1f} |")


@dataclass
class WerResult:
    """Scores of one set: word and character counts and every utterance's hypothesis."""

    words: ErrorCounts
    chars: ErrorCounts
    utterances: list[dict[str, Any]] = field(default_factory=list)
    normalisation: str = NORMALISATION

    @property
    def wer(self) -> float:
        return self.words.rate

    @property
    def cer(self) -> float:
        return self.chars.rate

    def summary(self) -> dict[str, Any]:
        return {"wer": self.wer, "cer": self.cer, "words": asdict(self.words), "chars": asdict(self.chars),
                "normalisation": self.normalisation}


def _counts(refs: list[str], hyps: list[str], unit: str) -> tuple[ErrorCounts, list[tuple[int, int, int, int]]]:
    per_utt = []
    for ref, hyp in zip(refs, hyps, strict=True):
        if unit == "word":
            out = jiwer.process_words(ref, hyp) if hyp else None
            n_ref = len(ref.split())
        else:
            out = jiwer.process_characters(ref, hyp) if hyp else None
            n_ref = len(ref)
        if out is None:  # empty hypothesis: everything deleted
            per_utt.append((0, 0, n_ref, 0))
        else:
            per_utt.append((out.hits, out.substitutions, out.deletions, out.insertions))
    c, s, d, i = (sum(x[k] for x in per_utt) for k in range(4))
    snt_err = sum(1 for x in per_utt if x[1] + x[2] + x[3] > 0)
    return ErrorCounts(snt=len(refs), ref=c + s + d, corr=c, sub=s, dele=d, ins=i, snt_err=snt_err), per_utt


def score(refs: Sequence[str], hyps: Sequence[str], ids: Sequence[str] | None = None) -> WerResult:
    """Score hypotheses against references (both normalised here first).

    Raises ValueError if the lists differ in length, are empty, or a reference normalises to "".
    """
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if not refs:
        raise ValueError("nothing to score: no references")
    ids = list(ids) if ids is not None else [str(i) for i in range(len(refs))]
    if len(ids) != len(refs):
        raise ValueError(f"{len(ids)} ids for {len(refs)} references")
    n_refs = [normalize_text(r) for r in refs]
    n_hyps = [normalize_text(h) for h in hyps]
    empty = [ids[k] for k, r in enumerate(n_refs) if not r]
    if empty:
        raise ValueError(f"reference(s) empty after normalisation: {empty[:5]}")
    words, w_utt = _counts(n_refs, n_hyps, "word")
    chars, c_utt = _counts(n_refs, n_hyps, "char")
    utterances = []
    for k in range(len(refs)):
        _, ws, wd, wi = w_utt[k]
        _, cs, cd, ci = c_utt[k]
        utterances.append({
            "id": ids[k], "ref": n_refs[k], "hyp": n_hyps[k], "raw_ref": refs[k], "raw_hyp": hyps[k],
            "words": len(n_refs[k].split()), "sub": ws, "del": wd, "ins": wi,
            "chars": len(n_refs[k]), "char_errors": cs + cd + ci,
        })
    return WerResult(words=words, chars=chars, utterances=utterances)


TABLE_HEADER = ("| dataset | Snt | Wrd | Corr | Sub | Del | Ins | Err | S.Err |\n"
                "|---|---|---|---|---|---|---|---|---|")


def score_by(result: WerResult, groups: Sequence[str]) -> dict[str, WerResult]:
    """`result`'s utterances re-scored per group (e.g. each utterance's speaker), groups in first-seen
    order. Raises ValueError unless there is one group label per utterance."""
    if len(groups) != len(result.utterances):
        raise ValueError(f"{len(groups)} group labels for {len(result.utterances)} utterances")
    members: dict[str, list[dict[str, Any]]] = {}
    for group, utt in zip(groups, result.utterances, strict=True):
        members.setdefault(group, []).append(utt)
    return {g: score([u["raw_ref"] for u in us], [u["raw_hyp"] for u in us], ids=[u["id"] for u in us])
            for g, us in members.items()}


def espnet_table(results: dict[str, WerResult], unit: str = "word") -> str:
    """ESPnet RESULTS.md-style table, one row per set; `unit` "word" (WER) or "char" (CER; the
    Wrd column then counts characters)."""
    if unit not in ("word", "char"):
        raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")
    title = "WER" if unit == "word" else "CER"
    rows = [(r.words if unit == "word" else r.chars).row(name) for name, r in results.items()]
    return f"### {title}\n\n" + TABLE_HEADER + "\n" + "\n".join(rows) + "\n"


def paired_bootstrap(a: WerResult, b: WerResult, resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """WER(a) - WER(b) in points, with a 95% interval from the paired bootstrap over utterances (Bisani &
    Ney 2004, "Bootstrap estimates for confidence intervals in ASR performance evaluation"): both systems
    scored on the same utterances, which are resampled with replacement `resamples` times.
    `p_b_better` is the share of resamples in which b's WER is below a's."""
    if [u["ref"] for u in a.utterances] != [u["ref"] for u in b.utterances] or not a.utterances:
        raise ValueError("paired bootstrap needs both systems scored on the same, non-empty references")
    err = lambda r: np.array([u["sub"] + u["del"] + u["ins"] for u in r.utterances], float)  # noqa: E731
    words = np.array([u["words"] for u in a.utterances], float)
    idx = np.random.default_rng(seed).integers(0, len(words), size=(resamples, len(words)))
    diffs = 100 * (err(a)[idx].sum(1) - err(b)[idx].sum(1)) / words[idx].sum(1)
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {"difference": 100 * a.wer - 100 * b.wer, "ci95": [round(float(lo), 3), round(float(hi), 3)],
            "p_b_better": float((diffs > 0).mean()), "resamples": resamples, "utterances": len(words)}


def save_hypotheses(path: str | Path, result: WerResult) -> None:
    """Every utterance's reference, hypothesis and error counts as JSONL (atomic write)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as fh:
        fh.writelines(json.dumps(utt) + "\n" for utt in result.utterances)
    os.replace(tmp, path)
