"""Word vocabulary for caption decoders: lowercase whitespace tokens plus four specials."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import torch

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")


def tokenize(caption: str) -> list[str]:
    return caption.lower().replace(",", " ").replace(".", " ").split()


class CaptionVocab:
    def __init__(self, words: list[str]):
        if list(words[: len(SPECIALS)]) != list(SPECIALS):
            raise ValueError(f"vocabulary must start with {SPECIALS}")
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1) -> CaptionVocab:
        counts = Counter(tok for c in captions for tok in tokenize(c))
        kept = sorted(w for w, n in counts.items() if n >= min_count)
        return cls([*SPECIALS, *kept])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, caption: str, max_len: int) -> list[int]:
        """<bos> w1 .. wn <eos>, truncated to max_len tokens in total (an over-long caption loses its tail)."""
        ids = [BOS, *(self.index.get(t, UNK) for t in tokenize(caption))][: max_len - 1]
        return [*ids, EOS]

    def encode_batch(self, captions: list[str], max_len: int) -> torch.Tensor:
        """(B, L) int64, padded with PAD to the longest caption."""
        seqs = [self.encode(c, max_len) for c in captions]
        out = torch.full((len(seqs), max(len(s) for s in seqs)), PAD, dtype=torch.long)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = torch.tensor(s)
        return out

    def decode(self, ids: Iterable[int]) -> str:
        words = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i not in (PAD, BOS):
                words.append(self.words[i])
        return " ".join(words)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.words))

    @classmethod
    def load(cls, path: Path) -> CaptionVocab:
        return cls(json.loads(path.read_text()))
