"""Numerosity read back from a caption: the first number word (or a phrase that implies 0 or 1)."""

from __future__ import annotations

from mmrepro.data.caption_vocab import tokenize

_WORDS = {"zero": 0, "no": 0, "empty": 0, "nothing": 0, "one": 1, "single": 1, "two": 2,
          "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}


def parse_count(caption: str) -> int | None:
    """'there are seven stars' -> 7; 'an empty black background' -> 0; no number word -> None."""
    for token in tokenize(caption):
        if token in _WORDS:
            return _WORDS[token]
        if token.isdigit():
            return int(token)
    return None


def count_accuracy(predictions: list[str], counts: list[int]) -> float:
    if len(predictions) != len(counts) or not counts:
        raise ValueError("need one prediction per count, and at least one")
    return sum(parse_count(p) == c for p, c in zip(predictions, counts, strict=True)) / len(counts)
