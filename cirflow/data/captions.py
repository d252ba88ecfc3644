"""Caption preprocessing as SPRC applies it (docs/design.md §5, "captions").

SPRC passes every caption, at training and at evaluation, through LAVIS's ``blip_caption``
text processor (the one its BLIP-2 model configs name, default settings) before tokenising:

    1. lower-case
    2. each of  . ! " ( ) * # : ; ~  becomes a space
    3. every run of two or more whitespace characters becomes one space
    4. trailing newlines, then leading and trailing spaces, are removed
    5. split on single spaces; more than `max_words` (50) pieces → keep the first 50

Written here from those steps (no LAVIS import in the data layer); tests/test_captions.py
compares it with LAVIS's processor on awkward strings. Every path that tokenises a caption
(`cirflow.data.tables.TripletData`, `cirflow.model.sprc.SPRC.tokenize`) calls `blip_caption`.
"""

from __future__ import annotations

import re

MAX_WORDS = 50
PUNCTUATION = '.!"()*#:;~'
_TO_SPACE = str.maketrans(dict.fromkeys(PUNCTUATION, " "))
_WHITESPACE_RUN = re.compile(r"\s{2,}")


def blip_caption(caption: str, max_words: int = MAX_WORDS) -> str:
    """`caption` as LAVIS's blip_caption processor (empty prompt) returns it."""
    text = caption.lower().translate(_TO_SPACE)
    text = _WHITESPACE_RUN.sub(" ", text)
    text = text.rstrip("\n").strip(" ")
    pieces = text.split(" ")
    if len(pieces) > max_words:
        return " ".join(pieces[:max_words])
    return text


def blip_captions(captions: list[str], max_words: int = MAX_WORDS) -> list[str]:
    return [blip_caption(c, max_words) for c in captions]
