"""The sentence list the project ships for its synthetic speech corpora (`tts-speech`, and the
visual-speech papers that reuse it).

Three kinds of sentence, 2-10 words each, all lowercase ASCII words without punctuation:
    digits    "four two nine oh seven"                    (strings of 2-10 digit words)
    cards     "ten of clubs and the queen of hearts"       (one to three playing cards)
    commands  "turn on the kitchen light", "go forward ten meters", "set a timer for five minutes"

`generate_sentences(n, seed)` draws `n` sentences deterministically from (n, seed): the same
arguments always give the same list, on any machine (it uses `random.Random(seed)` only).
`VOCABULARY` is the closed set of words any generated sentence can contain (a few hundred).
"""

from __future__ import annotations

import random

DIGITS = ["zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEENS = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen"]
TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
RANKS = ["ace", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "jack",
         "queen", "king"]
SUITS = ["clubs", "diamonds", "hearts", "spades"]
DIRECTIONS = ["forward", "backward", "left", "right", "up", "down", "north", "south", "east", "west"]
UNITS = ["meters", "steps", "feet", "inches", "degrees", "seconds", "minutes", "hours"]
ROOMS = ["kitchen", "bedroom", "bathroom", "garage", "office", "hallway", "garden", "living room",
         "dining room", "basement", "attic", "porch"]
DEVICES = ["light", "lights", "lamp", "fan", "heater", "radio", "television", "oven", "kettle",
           "printer", "speaker", "computer", "camera", "alarm", "music", "washing machine"]
OPENABLES = ["door", "window", "garage door", "gate", "curtains", "blinds", "fridge", "drawer",
             "box", "cupboard", "front door", "back door"]
COLOURS = ["red", "green", "blue", "yellow", "white", "black", "orange", "purple", "pink", "brown",
           "grey", "gold", "silver"]
OBJECTS = ["ball", "block", "cube", "cup", "book", "pen", "key", "phone", "bottle", "box", "chair",
           "table", "bag", "hat", "shoe", "card", "plate", "spoon", "fork", "knife", "brush", "apple",
           "orange", "banana", "lemon"]
PLACES = ["on the table", "under the chair", "in the box", "next to the door", "behind the sofa",
          "on the shelf", "in the drawer", "by the window", "on the floor", "in the bag"]
PEOPLE = ["mom", "dad", "john", "mary", "peter", "susan", "david", "emma", "the doctor",
          "the office", "grandma", "grandpa", "the school", "the bank"]
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "today",
        "tomorrow", "tonight"]
MEDIA_VERBS = ["play", "pause", "stop", "resume", "skip", "repeat", "shuffle"]
MEDIA_OBJECTS = ["the music", "the song", "the video", "the playlist", "the radio", "the podcast",
                 "the next track", "the previous track", "the album", "the news"]
LEVEL_THINGS = ["volume", "brightness", "temperature", "speed", "fan speed", "heating"]
LEVEL_VERBS = ["turn up the", "turn down the", "increase the", "decrease the", "raise the",
               "lower the", "set the"]
ACTIONS = ["pick up", "put down", "move", "bring", "find", "show me", "give me", "take", "push",
           "pull", "drop", "hold"]
ADVERBS = ["now", "please", "quickly", "slowly", "again", "right now", "later"]

KINDS = ("digits", "cards", "commands")


def _number(rng: random.Random) -> str:
    """A number word phrase from one to ninety nine, or a round hundred."""
    r = rng.random()
    if r < 0.45:
        return rng.choice(DIGITS[2:])
    if r < 0.65:
        return rng.choice(TEENS)
    if r < 0.9:
        tens = rng.choice(TENS)
        return tens if rng.random() < 0.3 else f"{tens} {rng.choice(DIGITS[2:])}"
    return f"{rng.choice(DIGITS[2:])} hundred"


def _digits(rng: random.Random) -> str:
    n = rng.randint(2, 10)
    return " ".join(rng.choice(DIGITS) for _ in range(n))


def _card(rng: random.Random) -> str:
    return f"{rng.choice(RANKS)} of {rng.choice(SUITS)}"


def _cards(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.4:
        return _card(rng)
    if r < 0.6:
        return f"the {_card(rng)}"
    if r < 0.8:
        return f"{_card(rng)} and {_card(rng)}"
    if r < 0.9:
        return f"{_card(rng)} {_card(rng)} {_card(rng)}"
    return f"play the {_card(rng)}"


def _command(rng: random.Random) -> str:
    k = rng.randrange(12)
    if k == 0:
        return f"go {rng.choice(DIRECTIONS)} {_number(rng)} {rng.choice(UNITS)}"
    if k == 1:
        return f"turn {rng.choice(['on', 'off'])} the {rng.choice(ROOMS)} {rng.choice(DEVICES)}"
    if k == 2:
        return f"{rng.choice(['open', 'close', 'lock', 'unlock'])} the {rng.choice(OPENABLES)}"
    if k == 3:
        return f"{rng.choice(ACTIONS)} the {rng.choice(COLOURS)} {rng.choice(OBJECTS)}"
    if k == 4:
        return f"put the {rng.choice(COLOURS)} {rng.choice(OBJECTS)} {rng.choice(PLACES)}"
    if k == 5:
        return f"call {rng.choice(PEOPLE)} {rng.choice(DAYS)}"
    if k == 6:
        return f"{rng.choice(MEDIA_VERBS)} {rng.choice(MEDIA_OBJECTS)}"
    if k == 7:
        return f"{rng.choice(LEVEL_VERBS)} {rng.choice(LEVEL_THINGS)}"
    if k == 8:
        return f"set a timer for {_number(rng)} {rng.choice(['seconds', 'minutes', 'hours'])}"
    if k == 9:
        return f"turn {rng.choice(['left', 'right'])} {_number(rng)} degrees"
    if k == 10:
        return f"{rng.choice(['stop', 'start', 'pause', 'wait'])} {rng.choice(ADVERBS)}"
    return f"{rng.choice(['move', 'go', 'drive', 'walk'])} {rng.choice(DIRECTIONS)} {rng.choice(ADVERBS)}"


_MAKERS = {"digits": _digits, "cards": _cards, "commands": _command}


def generate_sentences(n: int, seed: int, kinds: tuple[str, ...] = KINDS) -> list[str]:
    """`n` sentences of 2-10 words, drawn round-robin-at-random over `kinds`; deterministic.

    Raises ValueError for n < 0 or an unknown kind.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    unknown = [k for k in kinds if k not in _MAKERS]
    if unknown or not kinds:
        raise ValueError(f"unknown sentence kinds {unknown or kinds!r}; known: {', '.join(KINDS)}")
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        sentence = _MAKERS[rng.choice(kinds)](rng)
        if 2 <= len(sentence.split()) <= 10:
            out.append(sentence)
    return out


def _vocabulary() -> frozenset[str]:
    lists = [DIGITS, TEENS, TENS, RANKS, SUITS, DIRECTIONS, UNITS, ROOMS, DEVICES, OPENABLES,
             COLOURS, OBJECTS, PLACES, PEOPLE, DAYS, MEDIA_VERBS, MEDIA_OBJECTS, LEVEL_THINGS,
             LEVEL_VERBS, ACTIONS, ADVERBS]
    words = {w for lst in lists for phrase in lst for w in phrase.split()}
    words |= set("hundred of and the play go turn on off open close lock unlock put call set a timer "
                 "for stop start pause wait move drive walk".split())
    return frozenset(words)


VOCABULARY: frozenset[str] = _vocabulary()
