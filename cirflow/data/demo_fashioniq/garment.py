"""The garment model: a category and six attributes (colour, pattern, sleeves, length, neckline,
graphic), what each category allows, and the base garment of a family drawn at random.

An edit type is the name of the one attribute it changes (`EDIT_TYPES`); a category edits only
the attributes it lets vary (`edit_types`): dresses have no graphic, shirts and tops no length
(they are all hip length), shirts always have sleeves and tops never a collar.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cirflow.data.demo.scene import pick

CATEGORIES = ("dress", "shirt", "toptee")
SPLITS = ("train", "val", "test")

# Bold, well-separated colours (they must stay apart at the model's 64 px input).
COLORS: dict[str, tuple[int, int, int]] = {
    "black": (30, 30, 34),
    "grey": (135, 135, 140),
    "white": (238, 238, 234),
    "red": (200, 30, 40),
    "pink": (240, 130, 175),
    "orange": (240, 130, 30),
    "yellow": (240, 210, 50),
    "green": (40, 140, 70),
    "blue": (40, 80, 200),
    "purple": (120, 50, 160),
    "brown": (120, 75, 40),
}
# The second colour of a family (stripes, dots, flowers, the graphic): one per family, so an
# edit never changes it; the family's garment colours are those it stands out on.
ACCENTS = ("white", "black")
ACCENT_CONTRAST = 0.38  # |luma(garment colour) - luma(accent)| must be at least this

PATTERNS = ("solid", "stripes", "dots", "floral")
SLEEVES = ("none", "short", "long")  # shortest first: "longer sleeves" compares positions
LENGTHS = ("short", "knee", "long")  # shortest first
NECKLINES = ("round", "v", "collar")
GRAPHICS = ("none", "star", "circle")
HIP = "hip"  # the one length of shirts and tops (never edited, never worded)

ATTRIBUTES = ("color", "pattern", "sleeves", "length", "neckline", "graphic")
EDIT_TYPES = ATTRIBUTES  # an edit type is the attribute it changes

# The values each category allows, by attribute (colours: those of the family, see
# `family_colors`).
ALLOWED: dict[str, dict[str, tuple[str, ...]]] = {
    "dress": {
        "pattern": PATTERNS,
        "sleeves": SLEEVES,
        "length": LENGTHS,
        "neckline": NECKLINES,
        "graphic": ("none",),
    },
    "shirt": {
        "pattern": PATTERNS,
        "sleeves": ("short", "long"),
        "length": (HIP,),
        "neckline": NECKLINES,
        "graphic": GRAPHICS,
    },
    "toptee": {
        "pattern": PATTERNS,
        "sleeves": SLEEVES,
        "length": (HIP,),
        "neckline": ("round", "v"),
        "graphic": GRAPHICS,
    },
}
# Base garments: how often each value is drawn (the others uniformly).
PATTERN_WEIGHTS = {"solid": 0.4, "stripes": 0.2, "dots": 0.2, "floral": 0.2}
SHIRT_COLLAR = 0.5  # a shirt's base neckline is a collar this often
BASE_GRAPHIC = 0.45  # a shirt's or top's base garment has a graphic this often


class Garment(NamedTuple):
    category: str
    color: str
    pattern: str
    sleeves: str
    length: str
    neckline: str
    graphic: str

    def attributes(self) -> dict[str, str]:
        return {a: getattr(self, a) for a in ATTRIBUTES}


def luma(color: str) -> float:
    """Brightness of a palette colour in [0, 1] (Rec. 601 weights)."""
    r, g, b = COLORS[color]
    return (0.299 * r + 0.587 * g + 0.114 * b) / 255


def family_colors(accent: str) -> list[str]:
    """The garment colours that stand out against `accent`, in palette order."""
    return [c for c in COLORS if abs(luma(c) - luma(accent)) >= ACCENT_CONTRAST]


def edit_types(category: str) -> tuple[str, ...]:
    """The edit types of a category: colour and every attribute it lets vary."""
    return ("color",) + tuple(a for a, v in ALLOWED[category].items() if len(v) > 1)


def options(category: str, attribute: str, colors: list[str]) -> tuple[str, ...]:
    """The values `attribute` may take in `category` (colours: `colors`, the family's)."""
    if attribute == "color":
        return tuple(colors)
    return ALLOWED[category][attribute]


def valid(garment: Garment, colors: list[str]) -> bool:
    """Every attribute within what its category (and family) allows."""
    return all(getattr(garment, a) in options(garment.category, a, colors) for a in ATTRIBUTES)


def base_garment(rng: np.random.Generator, category: str, colors: list[str]) -> Garment:
    """A family's base garment, every attribute drawn from what `category` allows."""
    allowed = ALLOWED[category]
    color = pick(rng, colors)
    pattern = PATTERNS[int(rng.choice(len(PATTERNS), p=[PATTERN_WEIGHTS[p] for p in PATTERNS]))]
    sleeves = pick(rng, allowed["sleeves"])
    length = pick(rng, allowed["length"])
    if category == "shirt" and rng.random() < SHIRT_COLLAR:
        neckline = "collar"
    else:
        neckline = pick(rng, [n for n in allowed["neckline"] if n != "collar"])
    graphics = allowed["graphic"]
    if len(graphics) > 1 and rng.random() < BASE_GRAPHIC:
        graphic = pick(rng, graphics[1:])
    else:
        graphic = "none"
    return Garment(category, color, pattern, sleeves, length, neckline, graphic)
