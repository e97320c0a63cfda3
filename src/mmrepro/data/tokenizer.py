"""Text tokenizers for the speech papers: characters (smoke/cpu profiles) and SentencePiece
unigram word pieces (full profile; the Conformer paper uses a 1k word-piece model, Sec. 3.1).

Both map normalised text (`mmrepro.metrics.wer.normalize_text`) to ids in [0, vocab_size) and
back; neither reserves a blank. The CTC/transducer heads put their blank at id `vocab_size`
(one past the last token), so `num_classes = tokenizer.vocab_size + 1`.
Both save to / load from a small file so that train and evaluate share the exact same mapping.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from mmrepro.metrics.wer import normalize_text

CHARS = " abcdefghijklmnopqrstuvwxyz'"


class CharTokenizer:
    """Character tokenizer over `CHARS` (space, a-z, apostrophe): 28 tokens by default.

    Characters outside the alphabet are dropped by `encode` (after normalisation).
    """

    kind = "char"

    def __init__(self, alphabet: str = CHARS):
        if len(set(alphabet)) != len(alphabet) or not alphabet:
            raise ValueError(f"alphabet must be non-empty with distinct characters, got {alphabet!r}")
        self.alphabet = alphabet
        self._index = {c: i for i, c in enumerate(alphabet)}

    @property
    def vocab_size(self) -> int:
        return len(self.alphabet)

    def encode(self, text: str) -> list[int]:
        return [self._index[c] for c in normalize_text(text) if c in self._index]

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join("".join(self.alphabet[i] for i in ids if 0 <= i < len(self.alphabet)).split())

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"kind": self.kind, "alphabet": self.alphabet}))


class SentencePieceTokenizer:
    """SentencePiece unigram model (the `sentencepiece` package), trained from transcripts."""

    kind = "sentencepiece"

    def __init__(self, model_path: str | Path):
        import sentencepiece as spm

        self.model_path = Path(model_path)
        self._sp = spm.SentencePieceProcessor(model_file=str(self.model_path))

    @classmethod
    def train(cls, texts: Iterable[str], model_prefix: str | Path, vocab_size: int = 1024,
              model_type: str = "unigram") -> SentencePieceTokenizer:
        """Train on normalised `texts`; writes `<model_prefix>.model` and `.vocab`.

        The requested size is a ceiling when the text is too small to support it
        (`hard_vocab_limit=False`): a smaller result is printed as a warning, and callers record
        `vocab_size` (the real size) beside the requested one. No BOS/EOS/UNK-as-separate-from-pieces surprises: unk id 0.
        """
        import sentencepiece as spm

        if vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
        lines = [normalize_text(t) for t in texts]
        lines = [t for t in lines if t]
        if not lines:
            raise ValueError("no non-empty transcripts to train SentencePiece on")
        prefix = Path(model_prefix)
        prefix.parent.mkdir(parents=True, exist_ok=True)
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_prefix=str(prefix), vocab_size=vocab_size,
            model_type=model_type, character_coverage=1.0, hard_vocab_limit=False,
            bos_id=-1, eos_id=-1, unk_id=0, pad_id=-1, num_threads=1, minloglevel=2,
            normalization_rule_name="identity")
        tok = cls(f"{prefix}.model")
        if tok.vocab_size < vocab_size:  # hard_vocab_limit=False: the text could not support the size
            print(f"warning: SentencePiece reached {tok.vocab_size} pieces, not the requested {vocab_size} "
                  "(too little training text); the real size is recorded in data/<paper>/info.json")
        return tok

    @property
    def vocab_size(self) -> int:
        return int(self._sp.get_piece_size())

    def encode(self, text: str) -> list[int]:
        return list(self._sp.encode(normalize_text(text)))

    def decode(self, ids: Iterable[int]) -> str:
        return self._sp.decode([int(i) for i in ids if 0 <= int(i) < self.vocab_size])

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"kind": self.kind, "model": self.model_path.name}))


def load_tokenizer(path: str | Path) -> CharTokenizer | SentencePieceTokenizer:
    """Load what `save` wrote (a SentencePiece model file is looked up next to `path`)."""
    path = Path(path)
    spec = json.loads(path.read_text())
    if spec.get("kind") == "char":
        return CharTokenizer(spec["alphabet"])
    if spec.get("kind") == "sentencepiece":
        return SentencePieceTokenizer(path.parent / spec["model"])
    raise ValueError(f"{path}: unknown tokenizer kind {spec.get('kind')!r}")
