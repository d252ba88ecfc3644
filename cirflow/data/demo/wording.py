"""The words of the demo: caption templates and how objects, places and changes are phrased
(each edit's two captions), scene descriptions, how a background is named, and the two
vocabularies (`caption_vocabulary`, `description_vocabulary`) the tiny model's vocab file is
built from.

Captions are lowercase words separated by single spaces, without punctuation or digits; every
literal word of a template (and every fill word) is in the vocabulary.
"""

from __future__ import annotations

import colorsys
import re

import numpy as np

from cirflow.data.demo.scene import COLORS, SHAPES, SIZES, Obj, Scene, pick

PLURAL = {s: (s + "es" if s.endswith("s") else s + "s") for s in SHAPES}
SIZE_WORDS = {"small": ("small", "little"), "medium": ("medium",), "large": ("large", "big")}
NUMBERS = {1: "one", 2: "two", 3: "three"}

# Cells of the 3x3 grid, row-major: cell = row * 3 + col.
_CELL_PARTS = {
    0: ("top", "left"),
    1: ("top", None),
    2: ("top", "right"),
    3: (None, "left"),
    4: (None, None),
    5: (None, "right"),
    6: ("bottom", "left"),
    7: ("bottom", None),
    8: ("bottom", "right"),
}
_VERTICAL = {"top": ("top", "upper"), "bottom": ("bottom", "lower")}

# ---------------------------------------------------------------------------------------------
# Caption templates
# ---------------------------------------------------------------------------------------------
_AT_CORNER = ("in the {v} {h} corner", "at the {v} {h}", "in the {v} {h}")
_TO_CORNER = ("to the {v} {h}", "to the {v} {h} corner", "into the {v} {h} corner")
_AT_EDGE = {
    "top": ("at the top", "at the top center", "in the top middle"),
    "bottom": ("at the bottom", "at the bottom center", "in the bottom middle"),
    "left": ("on the left", "on the left side", "at the left"),
    "right": ("on the right", "on the right side", "at the right"),
    "center": ("in the center", "in the middle", "in the centre"),
}
_TO_EDGE = {
    "top": ("to the top", "up to the top", "to the top center"),
    "bottom": ("to the bottom", "down to the bottom", "to the bottom center"),
    "left": ("to the left", "to the left side", "over to the left"),
    "right": ("to the right", "to the right side", "over to the right"),
    "center": ("to the center", "to the middle", "into the middle"),
}
# How an object is named (must be unique in the reference scene).
_OBJ_CS = ("the {c} {s}",)
_OBJ_S = ("the {s}",)
_OBJ_C = ("the {c} shape", "the {c} object", "the {c} one")

_COLOR_T = (
    "make {o} {c2}",
    "change {o} to {c2}",
    "turn {o} {c2}",
    "paint {o} {c2}",
    "color {o} {c2}",
    "{o} should be {c2}",
    "change the color of {o} to {c2}",
    "make {o} {c2} instead of {c1}",
    "recolor {o} to {c2}",
    "{o} is {c2} now",
)
_SHAPE_T = (
    "replace {o} with {np}",
    "turn {o} into {np}",
    "change {o} into {np}",
    "make {o} {np}",
    "swap {o} for {np}",
    "show {np} instead of {o}",
    "{o} should be {np}",
    "change {o} to {np}",
)
_ADD_T = (
    "add {np} {at}",
    "put {np} {at}",
    "place {np} {at}",
    "draw {np} {at}",
    "include {np} {at}",
    "there should also be {np} {at}",
    "{at} add {np}",
    "also add {np} {at}",
)
_REMOVE_T = (
    "remove {o}",
    "take away {o}",
    "delete {o}",
    "get rid of {o}",
    "take out {o}",
    "erase {o}",
    "{o} should be gone",
    "remove {o} {at}",
    "the same but without {o}",
)
_MOVE_T = (
    "move {o} {to}",
    "put {o} {at}",
    "place {o} {at}",
    "{o} should be {at}",
    "shift {o} {to}",
    "drag {o} {to}",
    "relocate {o} {to}",
)
_BIGGER_T = (
    "make {o} bigger",
    "make {o} larger",
    "enlarge {o}",
    "{o} should be bigger",
    "{o} should be larger",
    "increase the size of {o}",
    "scale up {o}",
    "make {o} {z}",
)
_MUCH_BIGGER_T = ("make {o} much bigger", "make {o} a lot larger")
_SMALLER_T = (
    "make {o} smaller",
    "shrink {o}",
    "reduce the size of {o}",
    "{o} should be smaller",
    "scale down {o}",
    "decrease the size of {o}",
    "make {o} {z}",
)
_MUCH_SMALLER_T = ("make {o} much smaller", "make {o} a lot smaller")
_COUNT_UP_T = (
    "show {n} {cs_pl} instead of one",
    "make it {n} {cs_pl}",
    "there should be {n} {cs_pl}",
    "{n} {cs_pl} instead of one",
    "add {m} more {cs_m}",
    "have {n} {cs_pl} instead of a single one",
)
_COUNT_UP_2_T = ("duplicate the {cs}", "add another {cs}")
_COUNT_DOWN_T = (
    "show one {cs} instead of {n}",
    "keep only one {cs}",
    "remove all but one {cs}",
    "there should be just one {cs}",
    "leave only one {cs}",
    "only one {cs} instead of {n}",
    "a single {cs} instead of {n}",
)
_ARTICLES = ("a", "an")
# Scene descriptions: "<noun phrase with size> <position>" per object, joined by this word.
_DESCRIPTION_JOIN = ("and",)
# A background's texture (scene.BACKGROUND_KINDS) in a description.
BACKGROUND_WORDS = {
    "gradient": "shaded",
    "radial": "glowing",
    "noise": "cloudy",
    "stripes": "striped",
}
# Upper hue limit (0-1) -> the tint's name in a description.
_HUE_NAMES = (
    (0.05, "red"),
    (0.11, "orange"),
    (0.19, "yellow"),
    (0.45, "green"),
    (0.55, "cyan"),
    (0.72, "blue"),
    (0.92, "purple"),
    (1.01, "red"),
)

_ALL_TEMPLATES: tuple[tuple[str, ...], ...] = (
    _AT_CORNER,
    _TO_CORNER,
    *_AT_EDGE.values(),
    *_TO_EDGE.values(),
    _OBJ_CS,
    _OBJ_S,
    _OBJ_C,
    _COLOR_T,
    _SHAPE_T,
    _ADD_T,
    _REMOVE_T,
    _MOVE_T,
    _BIGGER_T,
    _MUCH_BIGGER_T,
    _SMALLER_T,
    _MUCH_SMALLER_T,
    _COUNT_UP_T,
    _COUNT_UP_2_T,
    _COUNT_DOWN_T,
    _ARTICLES,
)
_PLACEHOLDER = re.compile(r"\{[a-z0-9_]+\}")


def caption_vocabulary() -> list[str]:
    """Every lowercase word a generated caption can contain (sorted, unique)."""
    words: set[str] = set()
    for group in _ALL_TEMPLATES:
        for template in group:
            words.update(_PLACEHOLDER.sub(" ", template).split())
    words.update(COLORS)
    words.update(SHAPES)
    words.update(PLURAL.values())
    for group in SIZE_WORDS.values():
        words.update(group)
    for group in _VERTICAL.values():
        words.update(group)
    words.update(("left", "right"))
    words.update(NUMBERS.values())
    return sorted(words)


def description_vocabulary() -> list[str]:
    """Every lowercase word a scene description can contain (sorted, unique)."""
    words: set[str] = set()
    for group in (_AT_CORNER, *_AT_EDGE.values(), _DESCRIPTION_JOIN):
        for template in group:
            words.update(_PLACEHOLDER.sub(" ", template).split())
    words.update(COLORS)
    words.update(SHAPES)
    words.update(("on", "a", "background", "grey", "cyan", "dark", "light", "pale"))
    words.update(BACKGROUND_WORDS.values())
    for group in SIZE_WORDS.values():
        words.update(group)
        words.update(_article(w) for w in group)  # the size word comes first
    for group in _VERTICAL.values():
        words.update(group)
    words.update(("left", "right"))
    return sorted(words)


# ---------------------------------------------------------------------------------------------
# Phrases: each draws its wording from `rng`, in a fixed order (the captions depend on it)
# ---------------------------------------------------------------------------------------------
def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _at(rng: np.random.Generator, cell: int) -> str:
    v, h = _CELL_PARTS[cell]
    if v and h:
        return pick(rng, _AT_CORNER).format(v=pick(rng, _VERTICAL[v]), h=h)
    return pick(rng, _AT_EDGE[v or h or "center"])


def _to(rng: np.random.Generator, cell: int) -> str:
    v, h = _CELL_PARTS[cell]
    if v and h:
        return pick(rng, _TO_CORNER).format(v=pick(rng, _VERTICAL[v]), h=h)
    return pick(rng, _TO_EDGE[v or h or "center"])


def _name(rng: np.random.Generator, scene: Scene, obj: Obj) -> str:
    """A phrase that names `obj` unambiguously in `scene` ('the red circle', 'the circle', ...)."""
    options = [(pick(rng, _OBJ_CS), 6)]
    if sum(o.shape == obj.shape for o in scene) == 1:
        options.append((pick(rng, _OBJ_S), 3))
    if sum(o.color == obj.color for o in scene) == 1:
        options.append((pick(rng, _OBJ_C), 1))
    weights = np.array([w for _, w in options], dtype=float)
    template = options[int(rng.choice(len(options), p=weights / weights.sum()))][0]
    return template.format(c=obj.color, s=obj.shape)


def _noun_phrase(rng: np.random.Generator, obj: Obj, with_size: bool) -> str:
    words = [obj.color, obj.shape]
    if with_size:
        words.insert(0, pick(rng, SIZE_WORDS[SIZES[obj.size]]))
    return " ".join([_article(words[0]), *words])


def describe(rng: np.random.Generator, scene: Scene, background: str = "") -> str:
    """Every object of `scene` with its size, colour, shape and position, row-major by cell,
    then the background (`background_words`), e.g. "... on a dark blue striped background"."""
    phrases = [
        f"{_noun_phrase(rng, o, with_size=True)} {_at(rng, o.cell)}"
        for o in sorted(scene, key=lambda o: o.cell)
    ]
    text = f" {_DESCRIPTION_JOIN[0]} ".join(phrases)
    if background:
        text += f" on a {background} background"
    return text


def background_words(background: np.ndarray, kind: str) -> str:
    """How a description names a background: its mean tint and texture, e.g. "dark blue
    striped" (the family's images share it, so it is what tells families apart)."""
    r, g, b = (float(v) / 255 for v in background.reshape(-1, 3).mean(axis=0))
    hue, sat, val = colorsys.rgb_to_hsv(r, g, b)
    if sat < 0.12:
        tint = "grey"
    else:
        tint = next(name for limit, name in _HUE_NAMES if hue < limit)
    # Always a shade first: the article before it is then always "a".
    shade = "dark" if val < 0.45 else "light" if val > 0.65 else "pale"
    return f"{shade} {tint} {BACKGROUND_WORDS[kind]}"


# ---------------------------------------------------------------------------------------------
# The captions of the edits (cirflow.data.demo.edits): `scene` is the reference the caption is
# read against, `obj` the edited object as it is there, `to` the object it becomes
# ---------------------------------------------------------------------------------------------
def color_caption(rng, scene: Scene, obj: Obj, to: Obj) -> str:
    return pick(rng, _COLOR_T).format(o=_name(rng, scene, obj), c2=to.color, c1=obj.color)


def shape_caption(rng, scene: Scene, obj: Obj, to: Obj) -> str:
    np_words = [to.color, to.shape] if rng.random() < 0.5 else [to.shape]
    noun = " ".join([_article(np_words[0]), *np_words])
    return pick(rng, _SHAPE_T).format(o=_name(rng, scene, obj), np=noun)


def add_caption(rng, obj: Obj) -> str:
    noun = _noun_phrase(rng, obj, with_size=rng.random() < 0.5)
    return pick(rng, _ADD_T).format(np=noun, at=_at(rng, obj.cell))


def remove_caption(rng, scene: Scene, obj: Obj) -> str:
    return pick(rng, _REMOVE_T).format(o=_name(rng, scene, obj), at=_at(rng, obj.cell))


def move_caption(rng, scene: Scene, obj: Obj, to: Obj) -> str:
    template = pick(rng, _MOVE_T)
    return template.format(o=_name(rng, scene, obj), at=_at(rng, to.cell), to=_to(rng, to.cell))


def resize_caption(rng, scene: Scene, obj: Obj, to: Obj) -> str:
    new_size = to.size
    step = new_size - obj.size
    if abs(step) == 2 and rng.random() < 0.4:
        templates = _MUCH_BIGGER_T if step > 0 else _MUCH_SMALLER_T
    else:
        templates = _BIGGER_T if step > 0 else _SMALLER_T
    z = pick(rng, SIZE_WORDS[SIZES[new_size]])
    return pick(rng, templates).format(o=_name(rng, scene, obj), z=z)


def count_captions(rng, obj: Obj, n: int) -> tuple[str, str]:
    """(one `obj` -> `n` of them, `n` -> one)."""
    cs = f"{obj.color} {obj.shape}"
    cs_pl = f"{obj.color} {PLURAL[obj.shape]}"
    m = n - 1
    if n == 2 and rng.random() < 0.3:
        forward = pick(rng, _COUNT_UP_2_T).format(cs=cs)
    else:
        forward = pick(rng, _COUNT_UP_T).format(
            n=NUMBERS[n], cs_pl=cs_pl, m=NUMBERS[m], cs_m=cs_pl if m > 1 else cs
        )
    backward = pick(rng, _COUNT_DOWN_T).format(cs=cs, n=NUMBERS[n])
    return forward, backward
