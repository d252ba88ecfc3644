"""Where a garment's parts are: polygons in image units (0-1, the image is square) for the body,
the skirt (dresses), each sleeve, the neckline's cut-out, the collar's flaps and the graphic.

A garment is drawn flat and centred, as in a product photo. A family's `Look` (scale, offset,
width, skirt flare) moves and stretches every member the same way, so the members of a family
differ only where an edit changed them. The body never depends on an edit: sleeves are drawn
beside it (none: the body alone, sleeveless), the skirt below it, the neckline cut out of its
top, the graphic on its chest. That keeps each edit's pixels inside its own parts (`PARTS`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from cirflow.data.demo.geometry import unit_polygon
from cirflow.data.demo_fashioniq.garment import Garment

Point = tuple[float, float]
Polygon = list[Point]

# The parts that get a box in boxes_gt.json (when the garment has them), and the parts each
# edit type changes the pixels of: colour and pattern the whole garment, sleeves the sleeves,
# length the skirt, neckline the neckline (its cut-out and collar), graphic the graphic.
PARTS = ("garment", "sleeve_left", "sleeve_right", "skirt", "neckline", "graphic")
EDITED_PARTS = {
    "color": ("garment",),
    "pattern": ("garment",),
    "sleeves": ("sleeve_left", "sleeve_right"),
    "length": ("skirt",),
    "neckline": ("neckline",),
    "graphic": ("graphic",),
}


class Frame(NamedTuple):
    """A category's body in unit coordinates, centred on x = 0.5 (half-widths from the centre)."""

    neck_y: float
    neck_hw: float
    shoulder_y: float
    shoulder_hw: float
    chest_y: float  # the armpit
    chest_hw: float
    waist_y: float
    waist_hw: float
    hem_y: float  # the body's lower edge (dresses: the waist, the skirt hangs below)
    hem_hw: float
    long_sleeve: float  # length of a long sleeve
    graphic_y: float  # centre of the chest graphic


FRAMES = {
    "dress": Frame(0.08, 0.065, 0.12, 0.13, 0.24, 0.13, 0.42, 0.10, 0.42, 0.10, 0.44, 0.32),
    "shirt": Frame(0.08, 0.075, 0.12, 0.20, 0.28, 0.19, 0.60, 0.18, 0.90, 0.19, 0.58, 0.47),
    "toptee": Frame(0.09, 0.07, 0.13, 0.16, 0.27, 0.16, 0.55, 0.145, 0.82, 0.17, 0.50, 0.47),
}
HEM_Y = {"short": 0.64, "knee": 0.77, "long": 0.93}  # a dress's skirt, by length
SHORT_SLEEVE = (0.16, 50.0, 0.11)  # length, angle from the vertical (degrees), cuff width
LONG_SLEEVE = (18.0, 0.085)  # angle, cuff width (length: the frame's)
ROUND_DEPTH = 0.055
COLLAR_DEPTH = 0.04  # the round cut under a collar
V_DEPTH = 0.21
GRAPHIC_RADIUS = 0.085
PLATE_RADIUS = 0.105  # the plain disc under a graphic on a patterned garment
ELLIPSE_POINTS = 32


class Look(NamedTuple):
    """How a family's garments are placed: shared by all its members."""

    scale: float  # about the image centre
    dx: float
    dy: float
    width: float  # multiplies every half-width
    flare: float  # a skirt's half-width grows by this per unit of length


def look_from(rng) -> Look:
    return Look(
        round(float(rng.uniform(0.88, 1.0)), 4),
        round(float(rng.uniform(-0.02, 0.02)), 4),
        round(float(rng.uniform(-0.015, 0.015)), 4),
        round(float(rng.uniform(0.92, 1.08)), 4),
        round(float(rng.uniform(0.42, 0.6)), 4),
    )


def _place(look: Look, points: Polygon) -> Polygon:
    """Unit garment coordinates -> image units, by the family's look."""
    return [
        (
            0.5 + look.dx + look.scale * look.width * (x - 0.5),
            0.5 + look.dy + look.scale * (y - 0.5),
        )
        for x, y in points
    ]


def _mirror(points: Polygon) -> Polygon:
    return [(1.0 - x, y) for x, y in reversed(points)]


def _ellipse(cx: float, cy: float, rx: float, ry: float, start: float, stop: float) -> Polygon:
    steps = ELLIPSE_POINTS
    return [
        (cx + rx * math.cos(a), cy + ry * math.sin(a))
        for a in (start + (stop - start) * k / steps for k in range(steps + 1))
    ]


def body(frame: Frame) -> Polygon:
    left = [
        (0.5 - frame.neck_hw, frame.neck_y),
        (0.5 - frame.shoulder_hw, frame.shoulder_y),
        (0.5 - frame.chest_hw, frame.chest_y),
        (0.5 - frame.waist_hw, frame.waist_y),
        (0.5 - frame.hem_hw, frame.hem_y),
    ]
    return left + _mirror(left)


def skirt(frame: Frame, length: str, flare: float) -> Polygon:
    """A flared skirt from the waist to the hem of `length` (the hem a shallow arc)."""
    top = frame.waist_y - 0.01  # overlaps the body: no seam
    hem = HEM_Y[length]
    hw = frame.waist_hw + flare * (hem - frame.waist_y)
    arc = [(0.5 + hw * t, hem + 0.025 * (1 - t * t)) for t in (1.0, 0.5, 0.0, -0.5, -1.0)]
    return [(0.5 - frame.waist_hw, top), (0.5 + frame.waist_hw, top), *arc]


def sleeve(frame: Frame, sleeves: str) -> Polygon | None:
    """The image-left sleeve (None when sleeveless): from the shoulder and armpit, down and out."""
    if sleeves == "none":
        return None
    if sleeves == "short":
        length, angle, cuff = SHORT_SLEEVE
    else:
        length = frame.long_sleeve
        angle, cuff = LONG_SLEEVE
    shoulder = (0.5 - frame.shoulder_hw, frame.shoulder_y)
    armpit = (0.5 - frame.chest_hw, frame.chest_y)
    dx, dy = -math.sin(math.radians(angle)), math.cos(math.radians(angle))
    outer = (shoulder[0] + length * dx, shoulder[1] + length * dy)
    inner = (outer[0] + cuff * dy, outer[1] - cuff * dx)
    return [shoulder, outer, inner, armpit]


def neck_cut(frame: Frame, neckline: str) -> Polygon:
    """What the neckline cuts out of the body's top (a collar sits over a shallow round cut)."""
    cx, y, hw = 0.5, frame.neck_y, frame.neck_hw
    if neckline == "v":
        return [(cx - hw, y - 0.02), (cx + hw, y - 0.02), (cx, y + V_DEPTH)]
    depth = COLLAR_DEPTH if neckline == "collar" else ROUND_DEPTH
    return _ellipse(cx, y, hw, depth, 0.0, 2 * math.pi)


def collar_flaps(frame: Frame) -> list[Polygon]:
    """The collar's two pointed flaps, from the sides of the neck down to the front."""
    y, hw = frame.neck_y, frame.neck_hw
    left = [(0.5 - hw - 0.02, y - 0.012), (0.5 - 0.004, y + 0.055), (0.5 - 0.06, y + 0.16)]
    return [left, _mirror(left)]


def graphic_shape(frame: Frame, graphic: str) -> Polygon | None:
    """The chest graphic's outline (None: no graphic)."""
    if graphic == "none":
        return None
    cx, cy, r = 0.5, frame.graphic_y, GRAPHIC_RADIUS
    if graphic == "circle":
        return _ellipse(cx, cy, r, r, 0.0, 2 * math.pi)
    return [(cx + r * x, cy + r * y) for x, y in unit_polygon(graphic)]


def plate(frame: Frame) -> Polygon:
    return _ellipse(0.5, frame.graphic_y, PLATE_RADIUS, PLATE_RADIUS, 0.0, 2 * math.pi)


class Parts(NamedTuple):
    """A garment's polygons in image units (None / empty: the garment has not that part)."""

    body: Polygon
    skirt: Polygon | None
    sleeve_left: Polygon | None
    sleeve_right: Polygon | None
    cut: Polygon
    flaps: list[Polygon]
    plate: Polygon | None  # under the graphic, on a patterned garment only
    graphic: Polygon | None


def garment_parts(garment: Garment, look: Look) -> Parts:
    frame = FRAMES[garment.category]
    left = sleeve(frame, garment.sleeves)
    graphic = graphic_shape(frame, garment.graphic)
    return Parts(
        body=_place(look, body(frame)),
        skirt=(
            _place(look, skirt(frame, garment.length, look.flare))
            if garment.category == "dress"
            else None
        ),
        sleeve_left=None if left is None else _place(look, left),
        sleeve_right=None if left is None else _place(look, _mirror(left)),
        cut=_place(look, neck_cut(frame, garment.neckline)),
        flaps=[_place(look, f) for f in collar_flaps(frame) if garment.neckline == "collar"],
        plate=(
            _place(look, plate(frame))
            if graphic is not None and garment.pattern != "solid"
            else None
        ),
        graphic=None if graphic is None else _place(look, graphic),
    )
