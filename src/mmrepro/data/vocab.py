"""Word vocabulary for caption models: lower-cased alphanumeric tokens plus 4 specials.

Training-side tokenisation only; scoring always goes through the shared caption evaluator
(`mmrepro.metrics.captions`, pycocoevalcap's PTB tokenizer).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import torch

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """"A large, red circle." -> ["a", "large", "red", "circle"] (punctuation dropped)."""
    return _TOKEN.findall(text.lower())


class Vocab:
    """Index <-> word mapping; ids 0..3 are <pad>, <bos>, <eos>, <unk>."""

    def __init__(self, words: Iterable[str]):
        self.itos = list(SPECIALS) + [w for w in words if w not in SPECIALS]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("duplicate words in vocabulary")

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1) -> Vocab:
        """Words seen at least `min_count` times, most frequent first (ties alphabetical)."""
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counts = Counter(t for c in captions for t in tokenize(c))
        return cls(w for w, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_count)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, max_len: int | None = None) -> list[int]:
        """Token ids with <bos> ... <eos>; words beyond `max_len` (excluding specials) are cut."""
        ids = [self.stoi.get(t, UNK) for t in tokenize(text)]
        if max_len is not None:
            ids = ids[:max_len]
        return [BOS, *ids, EOS]

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text, stopping at <eos> and skipping <bos>/<pad>."""
        words = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i in (BOS, PAD):
                continue
            words.append(self.itos[i])
        return " ".join(words)

    def pad_batch(self, texts: list[str], max_len: int | None = None) -> torch.Tensor:
        """(B, L) long tensor of encoded texts, right-padded with <pad>."""
        seqs = [self.encode(t, max_len) for t in texts]
        out = torch.full((len(seqs), max(len(s) for s in seqs)), PAD, dtype=torch.long)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = torch.tensor(s)
        return out

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.itos[len(SPECIALS) :]))

    @classmethod
    def load(cls, path: Path) -> Vocab:
        return cls(json.loads(path.read_text()))
