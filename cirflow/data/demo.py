"""The embedded demo dataset: synthetic shape scenes and edit captions in CIRR's on-disk layout.

    generate_demo(out_dir, seed=0, train_triplets=2000, val_triplets=500, test1_triplets=500)

writes, under `out_dir`, exactly what a real CIRR copy holds (the SPRC layout):

    cirr/captions/cap.rc2.{train,val,test1}.json     triplets (test1 without target fields)
    cirr/captions/edits.rc2.{train,val,test1}.json   sidecar {"<pairid>": edit type} (not CIRR's)
    cirr/image_splits/split.rc2.{split}.json          name -> "./train/<k>/train-<n>-<i>-img<j>.png",
                                                      "./dev/dev-<n>-<i>-img<j>.png", "./test1/..."
    train/<k>/*.png, dev/*.png, test1/*.png           the images
    boxes_gt.json                                     the tight box of every object (seed box format)
    descriptions.json                                 {image name: scene description}, every split
    demo_manifest.json                                seed, counts, generator version (written last)

How the data is built
---------------------
A *scene* is 1-4 objects (shape x colour x size) placed in distinct cells of a 3x3 grid (with a
little jitter inside the cell, so objects never overlap) over a textured background (gradient,
radial gradient, smooth noise or stripes in muted tints). Object colours are chosen, per family,
only among the palette colours that contrast with every part of that family's background.

A *family* is one base scene B plus five variants V_k = edit_k(B), each made by one edit (colour,
shape, add, remove, move, resize, count), with no two variants made by the same edit of the same
object. The six images of a family share size and background, so they are each other's hard
distractors: they form the family's `img_set.members` (six names, as in CIRR). Triplets are
drawn from the ten pairs (B -> V_k, caption of edit_k) and (V_k -> B, caption of the inverse
edit); the caption names the edited object unambiguously in the reference (colour + shape, or
a shape/colour that is unique in that scene) and states the change, so it singles out the target
among the family's members. Every family gives TRIPLETS_PER_FAMILY triplets (the last family of a
split gives the remainder).

Determinism: every family draws from its own numpy Generator seeded with (seed, split index,
family index), families are assembled in order, and PNGs are written without timestamps, so the
same seed gives byte-identical files whatever the number of worker processes.

Edit types: the sidecar records the edit that takes each triplet's reference to its target, as
its caption asks it: a (V_k -> B) triplet of an `add` variant is a `remove` (and vice versa); the
other edits are their own inverse. `demo_manifest.json` counts the same types.

Scene descriptions: every image gets one, the objects in row-major cell order, each as
"<article> <size> <colour> <shape> <position>" joined by "and" ("a small red star at the top
left and a large blue circle in the center"). Size and position words vary as in the captions,
drawn from a second stream of the family's seed (`description_rng`), so the images and captions
do not depend on them.

Captions are lowercase words separated by single spaces, without punctuation or digits;
`caption_vocabulary()` lists every word they can contain, `description_vocabulary()` every word
of a description (the tiny model's vocab file is built from both).
"""

from __future__ import annotations

import colorsys
import io
import math
import multiprocessing
import os
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from cirflow.data.cirr import EDIT_TYPES, IMAGE_DIR, SPLITS, captions_file, edits_file, split_file
from cirflow.data.descriptions import DESCRIPTIONS_FILE, descriptions_file
from cirflow.errors import CirflowError
from cirflow.io import write_bytes_atomic, write_json_atomic

GENERATOR_VERSION = "1.1"  # 1.1: descriptions.json, edit-type sidecars
TRIPLETS_PER_FAMILY = 4
IMAGES_PER_FAMILY = 6  # base scene + 5 variants = img_set.members
TRAIN_FOLDERS = 20  # train images are spread over train/0 .. train/19 (by family)
MIN_WIDTH, MAX_WIDTH = 160, 320
MIN_ASPECT, MAX_ASPECT = 0.6, 1.8  # width / height
MAX_OBJECTS = 4
BOXES_FILE = "boxes_gt.json"
MANIFEST_FILE = "demo_manifest.json"
PNG_COMPRESS_LEVEL = 1  # zlib level: 6 is 3x slower for ~15% smaller files

# ---------------------------------------------------------------------------------------------
# Vocabulary of the scenes
# ---------------------------------------------------------------------------------------------
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 30, 35),
    "orange": (245, 135, 20),
    "yellow": (245, 220, 30),
    "green": (30, 160, 60),
    "blue": (35, 75, 215),
    "purple": (135, 45, 175),
    "white": (248, 248, 248),
    "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle", "star", "diamond", "cross")
PLURAL = {s: (s + "es" if s.endswith("s") else s + "s") for s in SHAPES}
SIZES = ("small", "medium", "large")
# Object diameter as a fraction of the (shorter side of the) grid cell.
SIZE_SCALE = (0.52, 0.74, 0.94)
SIZE_WORDS = {"small": ("small", "little"), "medium": ("medium",), "large": ("large", "big")}
NUMBERS = {1: "one", 2: "two", 3: "three"}
# EDIT_TYPES (cirflow/data/cirr.py): color, shape, add, remove, move, resize, count.
# The edit a (variant -> base) triplet asks for, by the edit that made the variant.
INVERSE_EDIT = {"add": "remove", "remove": "add"}

MARGIN = 0.04  # fraction of the image kept free on each side
JITTER = 0.8  # objects move at most this fraction of their cell's slack
MIN_CONTRAST = 100.0  # RGB distance between an object colour and the background (1st percentile)
MIN_COLORS = 6  # a background must leave at least this many palette colours usable
MOTTLE_MAX = 8.0  # largest amplitude (grey levels) of the fine background mottling

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
# Caption templates. Every literal word in them (and every fill word above) is in the vocabulary.
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
BACKGROUND_KINDS = ("gradient", "radial", "noise", "stripes")
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
# Scenes
# ---------------------------------------------------------------------------------------------
class Obj(NamedTuple):
    shape: str
    color: str
    size: int  # index into SIZES
    cell: int  # 0..8, row-major 3x3 grid
    jx: float  # jitter in [-1, 1] (fraction of the cell's slack)
    jy: float


Scene = tuple[Obj, ...]


class Variant(NamedTuple):
    scene: Scene
    edit: str
    forward: str  # caption base -> variant
    backward: str  # caption variant -> base
    key: tuple


class Family(NamedTuple):
    width: int
    height: int
    background: Image.Image  # RGB, 2W x 2H: scenes are drawn at twice the size, then reduced
    base: Scene
    variants: list[Variant]
    background_words: str  # e.g. "dark blue striped" (descriptions only)


def _signature(scene: Scene) -> tuple:
    return tuple(sorted((o.shape, o.color, o.size, o.cell) for o in scene))


def _pick(rng: np.random.Generator, options: Sequence):
    return options[int(rng.integers(len(options)))]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _jitter(rng: np.random.Generator) -> tuple[float, float]:
    jx, jy = rng.uniform(-1.0, 1.0, size=2)
    return round(float(jx), 4), round(float(jy), 4)


def _free_cells(scene: Scene) -> list[int]:
    used = {o.cell for o in scene}
    return [c for c in range(9) if c not in used]


def _at(rng: np.random.Generator, cell: int) -> str:
    v, h = _CELL_PARTS[cell]
    if v and h:
        return _pick(rng, _AT_CORNER).format(v=_pick(rng, _VERTICAL[v]), h=h)
    return _pick(rng, _AT_EDGE[v or h or "center"])


def _to(rng: np.random.Generator, cell: int) -> str:
    v, h = _CELL_PARTS[cell]
    if v and h:
        return _pick(rng, _TO_CORNER).format(v=_pick(rng, _VERTICAL[v]), h=h)
    return _pick(rng, _TO_EDGE[v or h or "center"])


def _name(rng: np.random.Generator, scene: Scene, obj: Obj) -> str:
    """A phrase that names `obj` unambiguously in `scene` ('the red circle', 'the circle', ...)."""
    options = [(_pick(rng, _OBJ_CS), 6)]
    if sum(o.shape == obj.shape for o in scene) == 1:
        options.append((_pick(rng, _OBJ_S), 3))
    if sum(o.color == obj.color for o in scene) == 1:
        options.append((_pick(rng, _OBJ_C), 1))
    weights = np.array([w for _, w in options], dtype=float)
    template = options[int(rng.choice(len(options), p=weights / weights.sum()))][0]
    return template.format(c=obj.color, s=obj.shape)


def _noun_phrase(rng: np.random.Generator, obj: Obj, with_size: bool) -> str:
    words = [obj.color, obj.shape]
    if with_size:
        words.insert(0, _pick(rng, SIZE_WORDS[SIZES[obj.size]]))
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


def _replace(scene: Scene, old: Obj, new: Obj | None) -> Scene:
    return tuple(o for o in (new if o == old else o for o in scene) if o is not None)


# --- edits: each returns a Variant (or None when it cannot apply) ----------------------------


def _edit_color(rng, scene: Scene, obj: Obj, colors: list[str]) -> Variant | None:
    choices = [c for c in colors if c != obj.color and (c, obj.shape) not in _pairs(scene)]
    if not choices:
        return None
    new = obj._replace(color=_pick(rng, choices))
    after = _replace(scene, obj, new)

    def caption(ref_scene, o, c2, c1):
        return _pick(rng, _COLOR_T).format(o=_name(rng, ref_scene, o), c2=c2, c1=c1)

    return Variant(
        after,
        "color",
        caption(scene, obj, new.color, obj.color),
        caption(after, new, obj.color, new.color),
        ("color", obj),
    )


def _edit_shape(rng, scene: Scene, obj: Obj, colors: list[str]) -> Variant | None:
    choices = [s for s in SHAPES if s != obj.shape and (obj.color, s) not in _pairs(scene)]
    if not choices:
        return None
    new = obj._replace(shape=_pick(rng, choices))
    after = _replace(scene, obj, new)

    def caption(ref_scene, o, to):
        np_words = [to.color, to.shape] if rng.random() < 0.5 else [to.shape]
        noun = " ".join([_article(np_words[0]), *np_words])
        return _pick(rng, _SHAPE_T).format(o=_name(rng, ref_scene, o), np=noun)

    return Variant(
        after, "shape", caption(scene, obj, new), caption(after, new, obj), ("shape", obj)
    )


def _add_caption(rng, obj: Obj) -> str:
    noun = _noun_phrase(rng, obj, with_size=rng.random() < 0.5)
    return _pick(rng, _ADD_T).format(np=noun, at=_at(rng, obj.cell))


def _remove_caption(rng, scene: Scene, obj: Obj) -> str:
    return _pick(rng, _REMOVE_T).format(o=_name(rng, scene, obj), at=_at(rng, obj.cell))


def _edit_add(rng, scene: Scene, obj: Obj | None, colors: list[str]) -> Variant | None:
    free = _free_cells(scene)
    if len(scene) >= MAX_OBJECTS or not free:
        return None
    pairs = [(c, s) for c in colors for s in SHAPES if (c, s) not in _pairs(scene)]
    color, shape = _pick(rng, pairs)
    new = Obj(shape, color, int(rng.integers(len(SIZES))), _pick(rng, free), *_jitter(rng))
    after = (*scene, new)
    return Variant(
        after,
        "add",
        _add_caption(rng, new),
        _remove_caption(rng, after, new),
        ("add", color, shape),
    )


def _edit_remove(rng, scene: Scene, obj: Obj, colors: list[str]) -> Variant | None:
    if len(scene) < 2:
        return None
    after = _replace(scene, obj, None)
    return Variant(
        after, "remove", _remove_caption(rng, scene, obj), _add_caption(rng, obj), ("remove", obj)
    )


def _edit_move(rng, scene: Scene, obj: Obj, colors: list[str]) -> Variant | None:
    free = _free_cells(scene)
    if not free:
        return None
    new = obj._replace(cell=_pick(rng, free), jx=_jitter(rng)[0], jy=_jitter(rng)[1])
    after = _replace(scene, obj, new)

    def caption(ref_scene, o, cell):
        template = _pick(rng, _MOVE_T)
        return template.format(o=_name(rng, ref_scene, o), at=_at(rng, cell), to=_to(rng, cell))

    return Variant(
        after, "move", caption(scene, obj, new.cell), caption(after, new, obj.cell), ("move", obj)
    )


def _resize_caption(rng, scene: Scene, obj: Obj, new_size: int) -> str:
    step = new_size - obj.size
    if abs(step) == 2 and rng.random() < 0.4:
        templates = _MUCH_BIGGER_T if step > 0 else _MUCH_SMALLER_T
    else:
        templates = _BIGGER_T if step > 0 else _SMALLER_T
    z = _pick(rng, SIZE_WORDS[SIZES[new_size]])
    return _pick(rng, templates).format(o=_name(rng, scene, obj), z=z)


def _edit_resize(rng, scene: Scene, obj: Obj, colors: list[str]) -> Variant | None:
    new = obj._replace(size=_pick(rng, [z for z in range(len(SIZES)) if z != obj.size]))
    after = _replace(scene, obj, new)
    return Variant(
        after,
        "resize",
        _resize_caption(rng, scene, obj, new.size),
        _resize_caption(rng, after, new, obj.size),
        ("resize", obj),
    )


def _edit_count(rng, scene: Scene, obj: Obj, colors: list[str]) -> Variant | None:
    free = _free_cells(scene)
    room = min(MAX_OBJECTS - len(scene), len(free))
    if room < 1:
        return None
    n = 2 if room == 1 else int(_pick(rng, (2, 3)))
    cells = rng.choice(free, size=n - 1, replace=False)
    copies = tuple(obj._replace(cell=int(c), jx=_jitter(rng)[0], jy=_jitter(rng)[1]) for c in cells)
    after = (*scene, *copies)
    cs = f"{obj.color} {obj.shape}"
    cs_pl = f"{obj.color} {PLURAL[obj.shape]}"
    m = n - 1
    if n == 2 and rng.random() < 0.3:
        forward = _pick(rng, _COUNT_UP_2_T).format(cs=cs)
    else:
        forward = _pick(rng, _COUNT_UP_T).format(
            n=NUMBERS[n], cs_pl=cs_pl, m=NUMBERS[m], cs_m=cs_pl if m > 1 else cs
        )
    backward = _pick(rng, _COUNT_DOWN_T).format(cs=cs, n=NUMBERS[n])
    return Variant(after, "count", forward, backward, ("count", obj))


def _pairs(scene: Scene) -> set[tuple[str, str]]:
    return {(o.color, o.shape) for o in scene}


_EDITS = {
    "color": _edit_color,
    "shape": _edit_shape,
    "add": _edit_add,
    "remove": _edit_remove,
    "move": _edit_move,
    "resize": _edit_resize,
    "count": _edit_count,
}


def _base_scene(rng: np.random.Generator, colors: list[str]) -> Scene:
    n = int(rng.choice([1, 2, 3, 4], p=[0.1, 0.35, 0.35, 0.2]))
    cells = rng.choice(9, size=n, replace=False)
    pairs = [(c, s) for c in colors for s in SHAPES]
    chosen = rng.choice(len(pairs), size=n, replace=False)
    return tuple(
        Obj(
            pairs[int(k)][1],
            pairs[int(k)][0],
            int(rng.integers(len(SIZES))),
            int(cell),
            *_jitter(rng),
        )
        for k, cell in zip(chosen, cells, strict=True)
    )


def _variants(rng: np.random.Generator, base: Scene, colors: list[str]) -> list[Variant]:
    """Five variants of `base`, each by a different (edit, object), all distinct images."""
    variants: list[Variant] = []
    keys: set[tuple] = set()
    signatures = {_signature(base)}
    order = list(rng.permutation(EDIT_TYPES))
    attempts = 0
    while len(variants) < IMAGES_PER_FAMILY - 1:
        attempts += 1
        if attempts > 200:  # pragma: no cover - every base scene admits many edits
            raise RuntimeError("could not find enough distinct edits for a demo scene")
        edit = order[(attempts - 1) % len(order)]
        if attempts > len(order):  # after one pass, pick edit types at random
            edit = _pick(rng, EDIT_TYPES)
        obj = _pick(rng, base)
        variant = _EDITS[edit](rng, base, obj, colors)
        if variant is None or variant.key in keys:
            continue
        signature = _signature(variant.scene)
        if signature in signatures:
            continue
        keys.add(variant.key)
        signatures.add(signature)
        variants.append(variant)
    return variants


# ---------------------------------------------------------------------------------------------
# Backgrounds and rendering
# ---------------------------------------------------------------------------------------------
def _tint(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    hue = rng.random()
    sat = rng.uniform(0.05, 0.35)
    val = rng.uniform(0.35, 0.75)
    hue2 = (hue + rng.uniform(-0.08, 0.08)) % 1.0
    sat2 = float(np.clip(sat + rng.uniform(-0.1, 0.1), 0.0, 0.4))
    val2 = float(np.clip(val + rng.choice([-1, 1]) * rng.uniform(0.08, 0.22), 0.28, 0.82))
    a = np.array(colorsys.hsv_to_rgb(hue, sat, val), dtype=np.float32) * 255
    b = np.array(colorsys.hsv_to_rgb(hue2, sat2, val2), dtype=np.float32) * 255
    return a, b


def _background(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, str]:
    """A muted textured background (float32, height x width x 3) and its kind."""
    kind = _pick(rng, BACKGROUND_KINDS)
    scale = float(max(width, height))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) / scale
    if kind == "gradient":
        angle = rng.uniform(0, 2 * math.pi)
        t = math.cos(angle) * xx + math.sin(angle) * yy
    elif kind == "radial":
        cx, cy = rng.uniform(0, width / scale), rng.uniform(0, height / scale)
        t = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    elif kind == "noise":
        gw, gh = (int(v) for v in rng.integers(3, 9, size=2))
        grid = rng.random((gh, gw)).astype(np.float32)
        t = np.asarray(Image.fromarray(grid).resize((width, height), Image.Resampling.BICUBIC))
    else:
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(0.04, 0.12)
        proj = math.cos(angle) * xx + math.sin(angle) * yy
        t = np.sin(2 * math.pi * proj / period)
    t = t - t.min()
    t = t / max(float(t.max()), 1e-6)
    if kind == "stripes":  # softer: stripes at up to full tint contrast would dominate saliency
        t = 0.5 + (t - 0.5) * rng.uniform(0.4, 0.9)
    a, b = _tint(rng)
    image = a[None, None, :] * (1 - t[..., None]) + b[None, None, :] * t[..., None]
    # On a third of the backgrounds, a fine low-amplitude mottling (smooth noise at ~8 px).
    # (Not on all: it doubles the PNG size.)
    if rng.random() < 1 / 3:
        amplitude = rng.uniform(2.0, MOTTLE_MAX)
        gw, gh = max(2, width // 8), max(2, height // 8)
        fine = rng.standard_normal((gh, gw)).astype(np.float32)
        fine = np.asarray(Image.fromarray(fine).resize((width, height), Image.Resampling.BILINEAR))
        image = image + amplitude * fine[..., None]
    return np.clip(image, 0, 255), kind


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


def _usable_colors(background: np.ndarray) -> list[str]:
    pixels = background[::2, ::2].reshape(-1, 3)
    usable = []
    for name, rgb in COLORS.items():
        dist = np.sqrt(((pixels - np.array(rgb, dtype=np.float32)) ** 2).sum(axis=1))
        if float(np.percentile(dist, 1)) >= MIN_CONTRAST:
            usable.append(name)
    return usable


def _grid(width: int, height: int) -> tuple[float, float, float, float, float]:
    mx, my = MARGIN * width, MARGIN * height
    cw, ch = (width - 2 * mx) / 3, (height - 2 * my) / 3
    return mx, my, cw, ch, min(cw, ch)


def _geometry(obj: Obj, width: int, height: int) -> tuple[float, float, float]:
    """Centre and radius (half the diameter) of `obj` in pixels."""
    mx, my, cw, ch, base = _grid(width, height)
    r = 0.5 * base * SIZE_SCALE[obj.size]
    r_max = 0.5 * base * SIZE_SCALE[-1]
    col, row = obj.cell % 3, obj.cell // 3
    # The jitter is scaled by the slack of the largest size: resizing keeps the centre in place.
    cx = mx + (col + 0.5) * cw + JITTER * obj.jx * max(0.0, cw / 2 - r_max)
    cy = my + (row + 0.5) * ch + JITTER * obj.jy * max(0.0, ch / 2 - r_max)
    return cx, cy, r


def _unit_polygon(shape: str) -> list[tuple[float, float]]:
    if shape == "square":
        return [(-0.82, -0.82), (0.82, -0.82), (0.82, 0.82), (-0.82, 0.82)]
    if shape == "triangle":
        return [(0.0, -0.95), (0.97, 0.75), (-0.97, 0.75)]
    if shape == "diamond":
        return [(0.0, -1.0), (0.8, 0.0), (0.0, 1.0), (-0.8, 0.0)]
    if shape == "star":
        return [
            (
                (1.0 if i % 2 == 0 else 0.45) * math.cos(math.radians(-90 + 36 * i)),
                (1.0 if i % 2 == 0 else 0.45) * math.sin(math.radians(-90 + 36 * i)) + 0.06,
            )
            for i in range(10)
        ]
    if shape == "cross":
        a, w = 0.92, 0.32
        return [
            (-w, -a), (w, -a), (w, -w), (a, -w), (a, w), (w, w),
            (w, a), (-w, a), (-w, w), (-a, w), (-a, -w), (-w, -w),
        ]  # fmt: skip
    raise ValueError(f"unknown shape {shape!r}")


_UNIT_POLYGONS = {s: _unit_polygon(s) for s in SHAPES if s != "circle"}


def _outline(obj: Obj, width: int, height: int) -> list[tuple[float, float]] | None:
    cx, cy, r = _geometry(obj, width, height)
    if obj.shape == "circle":
        return None
    return [(cx + r * x, cy + r * y) for x, y in _UNIT_POLYGONS[obj.shape]]


def _box(obj: Obj, width: int, height: int) -> list[float]:
    """Tight box of `obj`, normalised to the image."""
    points = _outline(obj, width, height)
    if points is None:
        cx, cy, r = _geometry(obj, width, height)
        x1, y1, x2, y2 = cx - r, cy - r, cx + r, cy + r
    else:
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
    box = [x1 / width, y1 / height, x2 / width, y2 / height]
    return [round(min(max(v, 0.0), 1.0), 6) for v in box]


def scene_boxes(scene: Scene, width: int, height: int) -> list[list[float]]:
    """Tight boxes of every object, sorted by area descending (ties: by coordinates)."""
    boxes = [_box(o, width, height) for o in scene]
    boxes.sort(key=lambda b: (-(b[2] - b[0]) * (b[3] - b[1]), b))
    return boxes


def render(scene: Scene, background: Image.Image, width: int, height: int) -> Image.Image:
    """Draw `scene` on the (2x) background and reduce to width x height (anti-aliased edges)."""
    image = background.copy()
    draw = ImageDraw.Draw(image)
    for obj in scene:
        fill = COLORS[obj.color]
        points = _outline(obj, width, height)
        if points is None:
            cx, cy, r = _geometry(obj, width, height)
            draw.ellipse([2 * (cx - r), 2 * (cy - r), 2 * (cx + r), 2 * (cy + r)], fill=fill)
        else:
            draw.polygon([(2 * x, 2 * y) for x, y in points], fill=fill)
    return image.reduce(2)


def _family(rng: np.random.Generator) -> Family:
    width = int(rng.integers(MIN_WIDTH, MAX_WIDTH + 1))
    aspect = math.exp(rng.uniform(math.log(MIN_ASPECT), math.log(MAX_ASPECT)))
    height = round(width / aspect)
    height = min(max(height, math.ceil(width / MAX_ASPECT)), math.floor(width / MIN_ASPECT))
    for _ in range(100):
        background, kind = _background(rng, width, height)
        colors = _usable_colors(background)
        if len(colors) >= MIN_COLORS:
            break
    else:  # pragma: no cover - muted tints leave most colours usable
        raise RuntimeError("could not find a background that contrasts with the palette")
    base = _base_scene(rng, colors)
    variants = _variants(rng, base, colors)
    # Scenes are drawn at twice the size and reduced: anti-aliased object edges.
    background_2x = Image.fromarray(np.round(background).astype(np.uint8)).resize(
        (2 * width, 2 * height), Image.Resampling.BILINEAR
    )
    return Family(width, height, background_2x, base, variants, background_words(background, kind))


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------
class _Job(NamedTuple):
    seed: int
    split: str
    index: int  # family index within the split
    triplets: int  # triplets this family contributes
    out_dir: str


def family_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The family's own random stream: independent of worker count and of other families."""
    return np.random.default_rng([seed, SPLITS.index(split), index])


def description_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The family's stream for its scene descriptions (apart from `family_rng`, so that the
    images and captions never depend on how descriptions are phrased)."""
    return np.random.default_rng([seed, SPLITS.index(split), index, 1])


def image_relpath(split: str, name: str, family: int) -> str:
    folder = IMAGE_DIR[split]
    if split == "train":
        return f"./{folder}/{family % TRAIN_FOLDERS}/{name}.png"
    return f"./{folder}/{name}.png"


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def _build_family(job: _Job) -> dict:
    """Render one family's six images (written atomically) and return its annotations."""
    rng = family_rng(job.seed, job.split, job.index)
    fam = _family(rng)
    scenes = [fam.base] + [v.scene for v in fam.variants]
    slots = [int(k) for k in rng.permutation(IMAGES_PER_FAMILY)]  # scene -> image slot
    prefix = IMAGE_DIR[job.split]
    names = [f"{prefix}-{job.index}-{slot // 2}-img{slot % 2}" for slot in slots]
    out_dir = Path(job.out_dir)
    images: list[tuple[str, str]] = []
    boxes: dict[str, list[list[float]]] = {}
    descriptions: dict[str, str] = {}
    text_rng = description_rng(job.seed, job.split, job.index)
    for slot in range(IMAGES_PER_FAMILY):  # write (and list) images in name order
        k = slots.index(slot)
        name = names[k]
        rel = image_relpath(job.split, name, job.index)
        write_bytes_atomic(
            out_dir / rel, _png_bytes(render(scenes[k], fam.background, fam.width, fam.height))
        )
        images.append((name, rel))
        boxes[name] = scene_boxes(scenes[k], fam.width, fam.height)
        descriptions[name] = describe(text_rng, scenes[k], fam.background_words)
    candidates = []
    for k, variant in enumerate(fam.variants, start=1):
        backward = INVERSE_EDIT.get(variant.edit, variant.edit)
        candidates.append((names[0], names[k], variant.forward, variant.edit))
        candidates.append((names[k], names[0], variant.backward, backward))
    chosen = rng.choice(len(candidates), size=job.triplets, replace=False)
    members = [names[int(k)] for k in rng.permutation(IMAGES_PER_FAMILY)]
    return {
        "images": images,
        "boxes": boxes,
        "descriptions": descriptions,
        "members": members,
        "triplets": [candidates[int(k)] for k in chosen],
        "size": [fam.width, fam.height],
    }


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CirflowError(f"demo: {name} must be a non-negative integer (got {value!r})")
    return value


def _run_jobs(jobs: list[_Job], workers: int, progress: bool):
    bar = tqdm(
        total=len(jobs),
        desc="demo dataset",
        unit="family",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    try:
        if workers <= 1 or len(jobs) < 2 * workers:
            for job in jobs:
                yield _build_family(job)
                bar.update()
            return
        methods = multiprocessing.get_all_start_methods()
        # fork: no re-import of __main__ (a Snakemake script adapter has no main guard).
        context = multiprocessing.get_context("fork" if "fork" in methods else None)
        chunk = max(1, min(8, len(jobs) // (4 * workers)))
        with context.Pool(workers) as pool:
            for result in pool.imap(_build_family, jobs, chunksize=chunk):
                yield result
                bar.update()
    finally:
        bar.close()


def _remove_previous_demo_images(out: Path) -> None:
    """Clear the image folders of an earlier demo in `out`, so that a smaller rerun leaves no
    stale PNGs. Only done where our own manifest proves the folder is a generated demo: a real
    dataset folder passed by mistake is never touched."""
    if not (out / MANIFEST_FILE).is_file():
        return
    for folder in ("train", "dev", "test1"):
        if (out / folder).is_dir():
            shutil.rmtree(out / folder)


def generate_demo(
    out_dir: str | os.PathLike,
    seed: int = 0,
    train_triplets: int = 2000,
    val_triplets: int = 500,
    test1_triplets: int = 500,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Write the demo dataset under `out_dir` (CIRR layout) and return its manifest.

    Same `seed` and counts -> byte-identical files, whatever `workers` is.
    """
    seed = _check_count("seed", seed)
    counts = {
        "train": _check_count("train_triplets", train_triplets),
        "val": _check_count("val_triplets", val_triplets),
        "test1": _check_count("test1_triplets", test1_triplets),
    }
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise CirflowError(f"demo: workers must be a positive integer (got {workers!r})")
    out = Path(out_dir)
    _remove_previous_demo_images(out)
    jobs = [
        _Job(
            seed, split, index, min(TRIPLETS_PER_FAMILY, n - index * TRIPLETS_PER_FAMILY), str(out)
        )
        for split in SPLITS
        for n in (counts[split],)
        for index in range(math.ceil(n / TRIPLETS_PER_FAMILY))
    ]
    results = iter(_run_jobs(jobs, workers or _default_workers(), progress))

    boxes: dict[str, list[list[float]]] = {}
    descriptions: dict[str, str] = {}
    splits: dict[str, dict[str, str]] = {s: {} for s in SPLITS}
    captions: dict[str, list[dict]] = {s: [] for s in SPLITS}
    edit_types: dict[str, dict[str, str]] = {s: {} for s in SPLITS}
    edits: dict[str, int] = {e: 0 for e in EDIT_TYPES}
    pairid = 0
    for job in jobs:
        family = next(results)
        split = job.split
        splits[split].update(family["images"])
        boxes.update(family["boxes"])
        descriptions.update(family["descriptions"])
        members = family["members"]
        for reference, target, caption, edit in family["triplets"]:
            edits[edit] += 1
            edit_types[split][str(pairid)] = edit
            triplet: dict = {"pairid": pairid, "reference": reference}
            if split != "test1":
                triplet["target_hard"] = target
                triplet["target_soft"] = {target: 1.0}
            triplet["caption"] = caption
            img_set: dict = {
                "id": job.index,
                "members": members,
                "reference_rank": members.index(reference),
            }
            if split != "test1":
                img_set["target_rank"] = members.index(target)
            triplet["img_set"] = img_set
            captions[split].append(triplet)
            pairid += 1

    write_json_atomic(out / BOXES_FILE, boxes)
    write_json_atomic(descriptions_file(out), dict(sorted(descriptions.items())))
    for split in SPLITS:
        write_json_atomic(split_file(out, split), splits[split])
        write_json_atomic(captions_file(out, split), captions[split])
        write_json_atomic(edits_file(out, split), edit_types[split])
    manifest = {
        "generator": "cirflow.data.demo",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "triplets": {s: len(captions[s]) for s in SPLITS},
        "images": {s: len(splits[s]) for s in SPLITS},
        "families": {s: sum(j.split == s for j in jobs) for s in SPLITS},
        "boxes": sum(len(b) for b in boxes.values()),
        "edits": edits,
        "files": {
            "boxes": BOXES_FILE,
            "descriptions": DESCRIPTIONS_FILE,
            "edit_types": {s: edits_file(".", s).as_posix() for s in SPLITS},
        },
        "triplets_per_family": TRIPLETS_PER_FAMILY,
        "images_per_family": IMAGES_PER_FAMILY,
    }
    write_json_atomic(out / MANIFEST_FILE, manifest, indent=2)
    return manifest
