"""The one-edit variants of a base scene: each edit (EDIT_TYPES: colour, shape, add, remove,
move, resize, count) of one object, with its two captions (base -> variant and back), and the
five distinct variants of a family.

Edit types: the sidecar records the edit that takes each triplet's reference to its target, as
its caption asks it: a (variant -> base) triplet of an `add` variant is a `remove` (and vice
versa, INVERSE_EDIT); the other edits are their own inverse.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cirflow.data.cirr import EDIT_TYPES
from cirflow.data.demo.scene import (
    MAX_OBJECTS,
    SHAPES,
    SIZES,
    Obj,
    Scene,
    color_shape_pairs,
    free_cells,
    jitter,
    pick,
    replace_object,
    signature,
)
from cirflow.data.demo.wording import (
    add_caption,
    color_caption,
    count_captions,
    move_caption,
    remove_caption,
    resize_caption,
    shape_caption,
)

VARIANTS_PER_FAMILY = 5
# The edit a (variant -> base) triplet asks for, by the edit that made the variant.
INVERSE_EDIT = {"add": "remove", "remove": "add"}


class Variant(NamedTuple):
    scene: Scene
    edit: str
    forward: str  # caption base -> variant
    backward: str  # caption variant -> base
    key: tuple
    # The objects the edit concerns, as they are in the base and in the variant (a removed
    # object is only in the first, an added one only in the second).
    before: tuple[Obj, ...] = ()
    after: tuple[Obj, ...] = ()


# Each edit returns a Variant, or None when it cannot apply to `obj` in `scene`.


def _changed(rng, scene: Scene, obj: Obj, new: Obj, edit: str, caption) -> Variant:
    """`scene` with `obj` changed into `new` by `edit`; its captions are
    `caption(rng, reference scene, object there, object it becomes)` both ways."""
    after = replace_object(scene, obj, new)
    forward, backward = caption(rng, scene, obj, new), caption(rng, after, new, obj)
    return Variant(after, edit, forward, backward, (edit, obj), (obj,), (new,))


def _edit_color(rng, scene: Scene, obj: Obj, colors: list[str]) -> Variant | None:
    choices = [
        c for c in colors if c != obj.color and (c, obj.shape) not in color_shape_pairs(scene)
    ]
    if not choices:
        return None
    new = obj._replace(color=pick(rng, choices))
    return _changed(rng, scene, obj, new, "color", color_caption)


def _edit_shape(rng, scene: Scene, obj: Obj, colors: list[str]) -> Variant | None:
    choices = [
        s for s in SHAPES if s != obj.shape and (obj.color, s) not in color_shape_pairs(scene)
    ]
    if not choices:
        return None
    new = obj._replace(shape=pick(rng, choices))
    return _changed(rng, scene, obj, new, "shape", shape_caption)


def _edit_add(rng, scene: Scene, obj: Obj | None, colors: list[str]) -> Variant | None:
    free = free_cells(scene)
    if len(scene) >= MAX_OBJECTS or not free:
        return None
    pairs = [(c, s) for c in colors for s in SHAPES if (c, s) not in color_shape_pairs(scene)]
    color, shape = pick(rng, pairs)
    new = Obj(shape, color, int(rng.integers(len(SIZES))), pick(rng, free), *jitter(rng))
    after = (*scene, new)
    forward, backward = add_caption(rng, new), remove_caption(rng, after, new)
    return Variant(after, "add", forward, backward, ("add", color, shape), (), (new,))


def _edit_remove(rng, scene: Scene, obj: Obj, colors: list[str]) -> Variant | None:
    if len(scene) < 2:
        return None
    after = replace_object(scene, obj, None)
    forward, backward = remove_caption(rng, scene, obj), add_caption(rng, obj)
    return Variant(after, "remove", forward, backward, ("remove", obj), (obj,), ())


def _edit_move(rng, scene: Scene, obj: Obj, colors: list[str]) -> Variant | None:
    free = free_cells(scene)
    if not free:
        return None
    new = obj._replace(cell=pick(rng, free), jx=jitter(rng)[0], jy=jitter(rng)[1])
    return _changed(rng, scene, obj, new, "move", move_caption)


def _edit_resize(rng, scene: Scene, obj: Obj, colors: list[str]) -> Variant | None:
    new = obj._replace(size=pick(rng, [z for z in range(len(SIZES)) if z != obj.size]))
    return _changed(rng, scene, obj, new, "resize", resize_caption)


def _edit_count(rng, scene: Scene, obj: Obj, colors: list[str]) -> Variant | None:
    free = free_cells(scene)
    room = min(MAX_OBJECTS - len(scene), len(free))
    if room < 1:
        return None
    n = 2 if room == 1 else int(pick(rng, (2, 3)))
    cells = rng.choice(free, size=n - 1, replace=False)
    copies = tuple(obj._replace(cell=int(c), jx=jitter(rng)[0], jy=jitter(rng)[1]) for c in cells)
    forward, backward = count_captions(rng, obj, n)
    return Variant(
        (*scene, *copies), "count", forward, backward, ("count", obj), (obj,), (obj, *copies)
    )


_EDITS = {
    "color": _edit_color,
    "shape": _edit_shape,
    "add": _edit_add,
    "remove": _edit_remove,
    "move": _edit_move,
    "resize": _edit_resize,
    "count": _edit_count,
}


def variants(rng: np.random.Generator, base: Scene, colors: list[str]) -> list[Variant]:
    """VARIANTS_PER_FAMILY variants of `base`, each by a different (edit, object), all distinct
    images."""
    found: list[Variant] = []
    keys: set[tuple] = set()
    signatures = {signature(base)}
    order = list(rng.permutation(EDIT_TYPES))
    attempts = 0
    while len(found) < VARIANTS_PER_FAMILY:
        attempts += 1
        if attempts > 200:  # pragma: no cover - every base scene admits many edits
            raise RuntimeError("could not find enough distinct edits for a demo scene")
        edit = order[(attempts - 1) % len(order)]
        if attempts > len(order):  # after one pass, pick edit types at random
            edit = pick(rng, EDIT_TYPES)
        obj = pick(rng, base)
        variant = _EDITS[edit](rng, base, obj, colors)
        if variant is None or variant.key in keys:
            continue
        variant_signature = signature(variant.scene)
        if variant_signature in signatures:
            continue
        keys.add(variant.key)
        signatures.add(variant_signature)
        found.append(variant)
    return found
