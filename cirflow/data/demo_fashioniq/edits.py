"""The variants of a base garment: each changes one or two of its attributes (`TWO_EDITS`),
with the two captions of each direction (base -> variant and back).

A family's variants are distinct garments, none equal to the base, so that a triplet's state
caption (which names the target's value of every edited attribute, `wording`) singles out the
target among the family: the other members differ from the candidate elsewhere. The first
`len(edit_types)` variants each start from a different edit type, so every family shows every
edit its category allows (the second edit of a variant is any other).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cirflow.data.demo.scene import pick
from cirflow.data.demo_fashioniq.garment import EDIT_TYPES, Garment, edit_types, options, valid
from cirflow.data.demo_fashioniq.wording import triplet_captions

VARIANTS_PER_FAMILY = 5
TWO_EDITS = 0.4  # a variant changes two attributes this often


class Variant(NamedTuple):
    garment: Garment
    edits: tuple[str, ...]  # the attributes it changes, in EDIT_TYPES order
    forward: list[str]  # the two captions base -> variant
    backward: list[str]  # the two captions variant -> base


def _edited(
    rng: np.random.Generator, base: Garment, chosen: list[str], colors: list[str]
) -> Garment | None:
    changes = {}
    for attribute in chosen:
        current = getattr(base, attribute)
        choices = [v for v in options(base.category, attribute, colors) if v != current]
        if not choices:
            return None
        changes[attribute] = pick(rng, choices)
    return base._replace(**changes)


def variants(
    rng: np.random.Generator, base: Garment, colors: list[str], accent: str
) -> list[Variant]:
    """VARIANTS_PER_FAMILY distinct variants of `base` (each valid for its category and the
    family's `colors`), with their captions."""
    types = edit_types(base.category)
    order = [str(t) for t in rng.permutation(types)]
    found: list[Variant] = []
    seen = {base}
    attempts = 0
    while len(found) < VARIANTS_PER_FAMILY:
        attempts += 1
        if attempts > 200:  # pragma: no cover - every base garment admits many edits
            raise RuntimeError(f"could not find enough distinct variants of {base}")
        first = order[attempts - 1] if attempts <= len(order) else pick(rng, types)
        chosen = [first]
        if rng.random() < TWO_EDITS:
            chosen.append(pick(rng, [t for t in types if t != first]))
        garment = _edited(rng, base, chosen, colors)
        if garment is None or garment in seen or not valid(garment, colors):
            continue
        seen.add(garment)
        edits = tuple(a for a in EDIT_TYPES if a in chosen)
        found.append(
            Variant(
                garment,
                edits,
                triplet_captions(rng, base, garment, edits, accent),
                triplet_captions(rng, garment, base, edits, accent),
            )
        )
    return found
