"""The words: the two captions of a triplet, image descriptions, and the two vocabularies.

FashionIQ's captions are written by two annotators, each describing the target relative to the
candidate in a short lower-case phrase that starts with a verb ("is solid black with no
sleeves", "is darker and has shorter sleeves"). The demo writes the two in two styles:

  state   names the target's new value of every edited attribute:
          "is red with long sleeves", "has a floral print and is a maxi dress"
  change  says how each edited attribute changed from the candidate:
          "is darker and has longer sleeves", "has dots instead of stripes"

The state caption always names every edit, exactly: with the candidate, it singles out the
target among the family (members differ from the base only by their edits). The change caption
names, for a two-edit triplet, sometimes only one of them (`PARTIAL`), and sometimes states one
of the two instead of describing its change (`MIXED`), as real annotators do. The two are put in
random order. Every phrase starts with "is" or "has"; phrases are joined by "and", or "with"
before a "has" phrase, or "and" without the verb between two "is" phrases.

Captions and descriptions are lower-case words separated by single spaces, without
punctuation or digits; `caption_vocabulary()` and `description_vocabulary()` list every word
they can contain.
"""

from __future__ import annotations

import re

import numpy as np

from cirflow.data.demo.scene import pick
from cirflow.data.demo_fashioniq.garment import (
    ACCENTS,
    COLORS,
    GRAPHICS,
    LENGTHS,
    SLEEVES,
    Garment,
    luma,
)

PARTIAL = 0.35  # a two-edit triplet's change caption names one edit only this often
MIXED = 0.3  # ... or states one of the two (when it names both)
LUMA_STEP = 0.2  # "darker" / "lighter" only for a change of brightness at least this large
DARKER_WORDS = 0.6  # how often a colour change that is one says "darker" / "lighter"

NOUNS = {"dress": ("dress",), "shirt": ("shirt",), "toptee": ("top", "tee")}
SLEEVELESS_TOP = ("top", "tank top")
PATTERN_ADJ = {"solid": "plain", "stripes": "striped", "dots": "dotted", "floral": "floral"}
PATTERN_NOUN = {"stripes": "stripes", "dots": "dots", "floral": "flowers"}
LENGTH_WORDS = {"short": "short", "knee": "knee length", "long": "long"}

# ---------------------------------------------------------------------------------------------
# State phrases: the target's value. Fields: {c} colour, {a} accent, {n} noun, {ac} / {aa} the
# article before the colour / the accent.
# ---------------------------------------------------------------------------------------------
STATE: dict[str, dict[str, tuple[str, ...]]] = {
    "color": {"*": ("is {c}", "is {c} in color", "is {ac} {c} {n}", "is colored {c}")},
    "pattern": {
        "solid": ("is plain", "is solid", "is a plain {n}"),
        "stripes": ("is striped", "has stripes", "has {a} stripes"),
        "dots": ("has polka dots", "has dots", "is dotted", "has {a} dots", "has {a} polka dots"),
        "floral": ("is floral", "has a floral print", "has a flower pattern", "has {a} flowers"),
    },
    "sleeves": {
        "none": ("is sleeveless", "has no sleeves"),
        "short": ("has short sleeves", "is short sleeved"),
        "long": ("has long sleeves", "is long sleeved"),
    },
    "length": {
        "short": ("is short", "is a short dress", "is a mini dress", "is above the knee"),
        "knee": ("is knee length", "is a knee length dress", "is a midi dress"),
        "long": ("is long", "is a long dress", "is a maxi dress", "is floor length"),
    },
    "neckline": {
        "round": (
            "has a round neck",
            "has a crew neck",
            "has a round neckline",
            "has a scoop neck",
        ),
        "v": ("has a v neck", "has a v neckline", "is v necked"),
        "collar": ("has a collar", "is collared", "has a pointed collar"),
    },
    "graphic": {
        "none": ("has no logo", "has no graphic"),
        "star": (
            "has a star logo",
            "has a star graphic",
            "has a star on the front",
            "has {aa} {a} star on it",
        ),
        "circle": (
            "has a circle logo",
            "has a circle graphic",
            "has a circle on the front",
            "has {aa} {a} circle on it",
        ),
    },
}
SOLID_COLOR = ("is solid {c}",)  # a colour state, when the target is plain

# ---------------------------------------------------------------------------------------------
# Change phrases: from the candidate's value {u} to the target's {v} (by the key (u, v), "*" any)
# ---------------------------------------------------------------------------------------------
DARKER = ("is darker", "is a darker color", "is darker in color")
LIGHTER = ("is lighter", "is brighter", "is a lighter color", "is lighter in color")
COLOR_NAMED = ("is {v} instead of {u}", "is {v} not {u}", "is more {v}")
TO_SOLID = ("has no pattern", "is plain instead of {pu}", "is not {pu}")
FROM_SOLID = ("is {pv} instead of plain", "has {nv} added")
PATTERN_SWAP = ("has {nv} instead of {nu}", "is {pv} instead of {pu}", "is {pv} not {pu}")
SLEEVES_ADDED = ("has sleeves", "has {v} sleeves added", "has longer sleeves")
SLEEVES_LONGER = ("has longer sleeves", "has long sleeves instead of short sleeves")
SLEEVES_REMOVED = (
    "has no sleeves at all",
    "is sleeveless instead of {u} sleeved",
    "has the sleeves removed",
)
SLEEVES_SHORTER = ("has shorter sleeves", "has short sleeves instead of long sleeves")
LONGER = ("is longer", "is a longer dress", "has a longer skirt")
SHORTER = ("is shorter", "is a shorter dress", "has a shorter skirt")
MUCH_LONGER = ("is much longer",)
MUCH_SHORTER = ("is much shorter",)
NECKLINE_CHANGE: dict[tuple[str, str], tuple[str, ...]] = {
    ("round", "v"): (
        "has a lower neckline",
        "has a deeper neckline",
        "has a v neck instead of a round neck",
    ),
    ("v", "round"): ("has a higher neckline", "has a round neck instead of a v neck"),
    ("round", "collar"): ("has a collar added", "has a collar instead of a round neck"),
    ("v", "collar"): ("has a collar added", "has a collar instead of a v neck"),
    ("collar", "v"): ("has a v neck instead of a collar", "has no collar and a v neck"),
    ("collar", "round"): ("has no collar", "has a round neck instead of a collar"),
}
GRAPHIC_ADDED = ("has a {v} added", "has a {v} logo added", "has a {v} print on the front")
GRAPHIC_REMOVED = ("has no {u} logo", "has the logo removed", "has no {u} on the front")
GRAPHIC_SWAP = ("has a {v} instead of a {u}", "has a {v} logo not a {u} logo")
_JOINS = ("and", "with")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def noun(rng: np.random.Generator, garment: Garment) -> str:
    if garment.category == "toptee" and garment.sleeves == "none":
        return pick(rng, SLEEVELESS_TOP)
    return pick(rng, NOUNS[garment.category])


def state_phrase(rng: np.random.Generator, attribute: str, target: Garment, accent: str) -> str:
    """A phrase naming `target`'s value of `attribute`."""
    value = getattr(target, attribute)
    if attribute == "color":
        templates = STATE["color"]["*"] + (SOLID_COLOR if target.pattern == "solid" else ())
    else:
        templates = STATE[attribute][value]
    return pick(rng, templates).format(
        c=target.color,
        ac=_article(target.color),
        a=accent,
        aa=_article(accent),
        n=noun(rng, target),
    )


def change_phrase(
    rng: np.random.Generator, attribute: str, candidate: Garment, target: Garment
) -> str:
    """A phrase saying how `attribute` changed from `candidate` to `target`."""
    u, v = getattr(candidate, attribute), getattr(target, attribute)
    if attribute == "color":
        step = luma(v) - luma(u)
        if abs(step) >= LUMA_STEP and rng.random() < DARKER_WORDS:
            templates = DARKER if step < 0 else LIGHTER
        else:
            templates = COLOR_NAMED
    elif attribute == "pattern":
        templates = TO_SOLID if v == "solid" else FROM_SOLID if u == "solid" else PATTERN_SWAP
    elif attribute == "sleeves":
        if SLEEVES.index(v) > SLEEVES.index(u):
            templates = SLEEVES_ADDED if u == "none" else SLEEVES_LONGER
        else:
            templates = SLEEVES_REMOVED if v == "none" else SLEEVES_SHORTER
    elif attribute == "length":
        step = LENGTHS.index(v) - LENGTHS.index(u)
        if step > 0:
            templates = LONGER + (MUCH_LONGER if step == 2 else ())
        else:
            templates = SHORTER + (MUCH_SHORTER if step == -2 else ())
    elif attribute == "neckline":
        templates = NECKLINE_CHANGE[(u, v)]
    elif attribute == "graphic":
        if u == "none":
            templates = GRAPHIC_ADDED
        else:
            templates = GRAPHIC_REMOVED if v == "none" else GRAPHIC_SWAP
    else:  # pragma: no cover - every attribute is handled above
        raise ValueError(f"unknown attribute {attribute!r}")
    return pick(rng, templates).format(
        u=u,
        v=v,
        pu=PATTERN_ADJ.get(u, u),
        pv=PATTERN_ADJ.get(v, v),
        nu=PATTERN_NOUN.get(u, u),
        nv=PATTERN_NOUN.get(v, v),
    )


def join(rng: np.random.Generator, phrases: list[str]) -> str:
    """The phrases in random order, as one caption ("is red with long sleeves")."""
    order = [int(k) for k in rng.permutation(len(phrases))]
    text = phrases[order[0]]
    previous = text.split(" ", 1)[0]
    for k in order[1:]:
        phrase = phrases[k]
        verb, rest = phrase.split(" ", 1)
        if verb == "has" and rng.random() < 0.5:
            text += f" with {rest}"
        elif verb == "is" and previous == "is" and rng.random() < 0.5:
            text += f" and {rest}"
        else:
            text += f" and {phrase}"
        previous = verb
    return text


def triplet_captions(
    rng: np.random.Generator,
    candidate: Garment,
    target: Garment,
    edits: tuple[str, ...],
    accent: str,
) -> list[str]:
    """The two captions of candidate -> target (`edits`: the attributes that differ)."""
    state = join(rng, [state_phrase(rng, a, target, accent) for a in edits])
    named = list(edits)
    if len(edits) == 2 and rng.random() < PARTIAL:
        named = [edits[int(rng.integers(2))]]
    stated = int(rng.integers(len(named))) if len(named) == 2 and rng.random() < MIXED else -1
    for _ in range(20):
        change = join(
            rng,
            [
                state_phrase(rng, a, target, accent)
                if i == stated
                else change_phrase(rng, a, candidate, target)
                for i, a in enumerate(named)
            ],
        )
        if change != state:
            break
    else:  # pragma: no cover - change phrases are never state phrases
        raise RuntimeError(f"no second caption for {candidate} -> {target}")
    return [state, change] if rng.random() < 0.5 else [change, state]


# ---------------------------------------------------------------------------------------------
# Descriptions (descriptions.json): every attribute, e.g. "a long striped blue dress with long
# sleeves and a v neck"; pattern, sleeves, neckline and graphic in this order.
# ---------------------------------------------------------------------------------------------
_DESCRIBED_PATTERN = {
    "stripes": ("{a} stripes",),
    "dots": ("{a} dots", "{a} polka dots"),
    "floral": ("{a} flowers", "a {a} floral print"),
}
_DESCRIBED_SLEEVES = {
    "none": ("no sleeves",),
    "short": ("short sleeves",),
    "long": ("long sleeves",),
}
_DESCRIBED_NECKLINE = {
    "round": ("a round neck", "a crew neck"),
    "v": ("a v neck", "a v neckline"),
    "collar": ("a collar",),
}
_DESCRIBED_GRAPHIC = {
    "star": ("a {a} star logo", "a {a} star graphic"),
    "circle": ("a {a} circle logo", "a {a} circle graphic"),
}


def describe(rng: np.random.Generator, garment: Garment, accent: str) -> str:
    """Every attribute of `garment` in words ("a short plain red dress with no sleeves and a
    round neck"); `rng` (the family's description stream) picks among synonyms."""
    head = [noun(rng, garment)]
    head.insert(0, garment.color)
    if garment.pattern == "solid":
        head.insert(0, "plain")
    if garment.category == "dress":
        head.insert(0, LENGTH_WORDS[garment.length])
    details = []
    if garment.pattern != "solid":
        details.append(pick(rng, _DESCRIBED_PATTERN[garment.pattern]).format(a=accent))
    details.append(pick(rng, _DESCRIBED_SLEEVES[garment.sleeves]))
    details.append(pick(rng, _DESCRIBED_NECKLINE[garment.neckline]))
    if garment.graphic != "none":
        details.append(pick(rng, _DESCRIBED_GRAPHIC[garment.graphic]).format(a=accent))
    first = " ".join(head)
    return f"{_article(first)} {first} with {' and '.join(details)}"


# ---------------------------------------------------------------------------------------------
# Vocabularies
# ---------------------------------------------------------------------------------------------
_PLACEHOLDER = re.compile(r"\{[a-z]+\}")


def _words(templates) -> set[str]:
    words: set[str] = set()
    for template in templates:
        words.update(_PLACEHOLDER.sub(" ", template).split())
    return words


def _fill_words() -> set[str]:
    words = set(COLORS) | set(ACCENTS) | {"a", "an"} | set(GRAPHICS) | set(SLEEVES)
    for nouns in (*NOUNS.values(), SLEEVELESS_TOP):
        for n in nouns:
            words.update(n.split())
    words.update(PATTERN_ADJ.values())
    words.update(PATTERN_NOUN.values())
    words.discard("none")
    return words


def caption_vocabulary() -> list[str]:
    """Every lowercase word a generated caption can contain (sorted, unique)."""
    templates = [t for by_value in STATE.values() for group in by_value.values() for t in group]
    templates += [
        *SOLID_COLOR, *DARKER, *LIGHTER, *COLOR_NAMED, *TO_SOLID, *FROM_SOLID, *PATTERN_SWAP,
        *SLEEVES_ADDED, *SLEEVES_LONGER, *SLEEVES_REMOVED, *SLEEVES_SHORTER, *LONGER, *SHORTER,
        *MUCH_LONGER, *MUCH_SHORTER, *GRAPHIC_ADDED, *GRAPHIC_REMOVED, *GRAPHIC_SWAP, *_JOINS,
    ]  # fmt: skip
    templates += [t for group in NECKLINE_CHANGE.values() for t in group]
    return sorted(_words(templates) | _fill_words())


def description_vocabulary() -> list[str]:
    """Every lowercase word a description can contain (sorted, unique)."""
    tables = (_DESCRIBED_PATTERN, _DESCRIBED_SLEEVES, _DESCRIBED_NECKLINE, _DESCRIBED_GRAPHIC)
    templates = [t for table in tables for group in table.values() for t in group]
    words = _words(templates) | _fill_words() | {"with", "and"}
    words.update(w for phrase in LENGTH_WORDS.values() for w in phrase.split())
    return sorted(words)
