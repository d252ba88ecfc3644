"""One family: a base garment and five variants (`cirflow.data.demo_fashioniq.edits`) that share
the family's look (placement, width, skirt flare), pattern layout, accent colour and background,
so they are each other's hard distractors; they also share the category.

Determinism: every family draws from its own numpy Generator seeded with (seed, category index,
split index, family index) (`family_rng`), and its descriptions from a second stream
(`description_rng`), so the images and captions never depend on how descriptions are phrased,
nor on other families.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cirflow.data.demo.scene import pick
from cirflow.data.demo_fashioniq.edits import VARIANTS_PER_FAMILY, Variant, variants
from cirflow.data.demo_fashioniq.garment import (
    ACCENTS,
    CATEGORIES,
    SPLITS,
    Garment,
    base_garment,
    family_colors,
)
from cirflow.data.demo_fashioniq.geometry import Look, look_from
from cirflow.data.demo_fashioniq.render import Pattern, pattern_from

IMAGES_PER_FAMILY = 1 + VARIANTS_PER_FAMILY
# Triplets are drawn from the family's ten pairs (B -> V_k and V_k -> B); three per family give
# two images per triplet, as in FashionIQ. The last family of a split gives the remainder.
TRIPLETS_PER_FAMILY = 3
BACKGROUND_GREY = (238, 255)  # a plain light background, as product photos have
BACKGROUND_TINT = 3


class Family(NamedTuple):
    accent: str
    look: Look
    pattern: Pattern
    background: tuple[int, int, int]
    base: Garment
    variants: list[Variant]


def family_rng(seed: int, category: str, split: str, index: int) -> np.random.Generator:
    """The family's own random stream: independent of worker count and of other families."""
    return np.random.default_rng([seed, CATEGORIES.index(category), SPLITS.index(split), index])


def description_rng(seed: int, category: str, split: str, index: int) -> np.random.Generator:
    """The family's stream for its descriptions (apart from `family_rng`)."""
    return np.random.default_rng([seed, CATEGORIES.index(category), SPLITS.index(split), index, 1])


def make_family(rng: np.random.Generator, category: str) -> Family:
    """Accent, look, pattern layout, background, base garment and variants, all from `rng`."""
    accent = pick(rng, ACCENTS)
    colors = family_colors(accent)
    look = look_from(rng)
    layout = pattern_from(rng)
    grey = int(rng.integers(BACKGROUND_GREY[0], BACKGROUND_GREY[1] + 1))
    tint = rng.integers(-BACKGROUND_TINT, BACKGROUND_TINT + 1, size=3)
    background = tuple(int(min(255, max(0, grey + int(t)))) for t in tint)
    base = base_garment(rng, category, colors)
    return Family(accent, look, layout, background, base, variants(rng, base, colors, accent))
