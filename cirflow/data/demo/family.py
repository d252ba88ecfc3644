"""One family: a base scene B and five variants V_k = edit_k(B) (`cirflow.data.demo.edits`) that
share the image size and background, so they are each other's hard distractors: the six images
form the family's `img_set.members`, as in CIRR.

Determinism: every family draws from its own numpy Generator seeded with (seed, split index,
family index) (`family_rng`), and its descriptions from a second stream (`description_rng`), so
the images and captions never depend on how descriptions are phrased nor on other families.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from PIL import Image

from cirflow.data.cirr import SPLITS
from cirflow.data.demo.edits import VARIANTS_PER_FAMILY, Variant, variants
from cirflow.data.demo.render import canvas, textured_background, usable_colors
from cirflow.data.demo.scene import Scene, base_scene
from cirflow.data.demo.wording import background_words

IMAGES_PER_FAMILY = 1 + VARIANTS_PER_FAMILY  # base scene + 5 variants = img_set.members
# Triplets are drawn from the family's ten pairs (B -> V_k and V_k -> B); the last family of a
# split gives the remainder.
TRIPLETS_PER_FAMILY = 4
MIN_WIDTH, MAX_WIDTH = 160, 320
MIN_ASPECT, MAX_ASPECT = 0.6, 1.8  # width / height
MIN_COLORS = 6  # a background must leave at least this many palette colours usable


class Family(NamedTuple):
    width: int
    height: int
    background: Image.Image  # RGB, 2W x 2H: scenes are drawn at twice the size, then reduced
    base: Scene
    variants: list[Variant]
    background_words: str  # e.g. "dark blue striped" (descriptions only)


def family_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The family's own random stream: independent of worker count and of other families."""
    return np.random.default_rng([seed, SPLITS.index(split), index])


def description_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The family's stream for its scene descriptions (apart from `family_rng`, so that the
    images and captions never depend on how descriptions are phrased)."""
    return np.random.default_rng([seed, SPLITS.index(split), index, 1])


def make_family(rng: np.random.Generator) -> Family:
    """Size, background, base scene and variants of one family, all drawn from `rng`."""
    width = int(rng.integers(MIN_WIDTH, MAX_WIDTH + 1))
    aspect = math.exp(rng.uniform(math.log(MIN_ASPECT), math.log(MAX_ASPECT)))
    height = round(width / aspect)
    height = min(max(height, math.ceil(width / MAX_ASPECT)), math.floor(width / MIN_ASPECT))
    for _ in range(100):
        background, kind = textured_background(rng, width, height)
        colors = usable_colors(background)
        if len(colors) >= MIN_COLORS:
            break
    else:  # pragma: no cover - muted tints leave most colours usable
        raise RuntimeError("could not find a background that contrasts with the palette")
    base = base_scene(rng, colors)
    edited = variants(rng, base, colors)
    return Family(
        width,
        height,
        canvas(background, width, height),
        base,
        edited,
        background_words(background, kind),
    )
