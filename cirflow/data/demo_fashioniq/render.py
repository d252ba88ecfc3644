"""Drawing a garment: its silhouette filled with its colour (and its pattern in the family's
accent colour), a darker outline, the collar's flaps, the graphic; on a plain light background,
drawn at twice the size and reduced (anti-aliased edges). Also the tight box of each part
(`geometry.PARTS`) from the same masks, so the boxes are the pixels drawn.

Patterns are anchored to the image (a family's `Pattern` fixes their phase and the flowers'
places), so two members of a family that share a pattern show it in the same place: an edit of
the sleeves changes the sleeves' pixels only.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from cirflow.data.box_format import round_box
from cirflow.data.demo_fashioniq.garment import COLORS, Garment, luma
from cirflow.data.demo_fashioniq.geometry import Look, Polygon, garment_parts

STRIPE_PERIOD, STRIPE_WIDTH = 0.09, 0.042  # image units
DOT_SPACING, DOT_RADIUS = 0.10, 0.026
FLOWER_SPACING, PETAL_RADIUS, PETAL_DISTANCE = 0.15, 0.021, 0.026
OUTLINE_DARKEN = 0.55  # the outline: the garment colour times this
OUTLINE_PX = 2  # at twice the size: one pixel in the image


class Pattern(NamedTuple):
    """Where a family's patterns lie (image units), shared by all its members."""

    stripe_phase: float
    dot_phase: tuple[float, float]
    flowers: tuple[tuple[float, float], ...]


def pattern_from(rng: np.random.Generator) -> Pattern:
    stripe_phase = round(float(rng.uniform(0, STRIPE_PERIOD)), 4)
    dot_phase = (
        round(float(rng.uniform(0, DOT_SPACING)), 4),
        round(float(rng.uniform(0, DOT_SPACING)), 4),
    )
    n = int(round(1 / FLOWER_SPACING)) + 1
    jitter = rng.uniform(-0.3, 0.3, size=(n, n, 2)) * FLOWER_SPACING
    flowers = tuple(
        (
            round((i + 0.5 * (j % 2)) * FLOWER_SPACING + float(jitter[j, i, 0]), 4),
            round(j * FLOWER_SPACING + float(jitter[j, i, 1]), 4),
        )
        for j in range(n)
        for i in range(n)
    )
    return Pattern(stripe_phase, dot_phase, flowers)


def _scaled(points: Polygon, size: int) -> list[tuple[float, float]]:
    return [(x * size, y * size) for x, y in points]


def _ellipse(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, fill) -> None:
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)


def _draw_pattern(image: Image.Image, kind: str, layout: Pattern, fill) -> None:
    """`kind` over the whole of `image` (the garment's mask keeps what lies on the garment)."""
    size = image.width
    draw = ImageDraw.Draw(image)
    if kind == "stripes":
        period, width = STRIPE_PERIOD * size, STRIPE_WIDTH * size
        y = layout.stripe_phase * size - period
        while y < size:
            draw.rectangle([0, y, size, y + width], fill=fill)
            y += period
    elif kind == "dots":
        step, r = DOT_SPACING * size, DOT_RADIUS * size
        ox, oy = (p * size for p in layout.dot_phase)
        rows = int(size / step) + 2
        for j in range(-1, rows):
            shift = 0.5 * step * (j % 2)
            for i in range(-1, rows):
                _ellipse(draw, ox + i * step + shift, oy + j * step, r, fill)
    elif kind == "floral":
        r, d = PETAL_RADIUS * size, PETAL_DISTANCE * size
        for fx, fy in layout.flowers:
            cx, cy = fx * size, fy * size
            for k in range(5):
                angle = 2 * np.pi * k / 5
                _ellipse(draw, cx + d * np.cos(angle), cy + d * np.sin(angle), r, fill)
            _ellipse(draw, cx, cy, 0.6 * r, fill)


def _mask(size: int, polygons: list[Polygon]) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    for polygon in polygons:
        draw.polygon(_scaled(polygon, size), fill=255)
    return mask


def _union(a: tuple | None, b: tuple | None) -> tuple | None:
    if a is None or b is None:
        return a or b
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _within(mask: Image.Image, polygons: list[Polygon]) -> tuple | None:
    """The pixel box of what `polygons` cover of `mask`."""
    return ImageChops.darker(mask, _mask(mask.width, polygons)).getbbox()


def _edge(mask: Image.Image, width: int) -> Image.Image:
    """The pixels of `mask` within `width` pixels of its outside (a square neighbourhood, as
    PIL's MinFilter(2 * width + 1) erodes, in a tenth of its time)."""
    inside = np.asarray(mask) > 0
    eroded = np.pad(inside, width, constant_values=False)
    for axis in (0, 1):
        n = eroded.shape[axis] - 2 * width
        eroded = np.logical_and.reduce(
            [eroded.take(range(k, k + n), axis=axis) for k in range(2 * width + 1)]
        )
    return Image.fromarray(((inside & ~eroded) * 255).astype(np.uint8))


def shade(color: str, towards: float) -> tuple[int, int, int]:
    """`color` mixed with white (towards > 0) or black (towards < 0) by |towards|."""
    rgb = np.array(COLORS[color], dtype=float)
    target = 255.0 if towards > 0 else 0.0
    return tuple(int(round(v + (target - v) * abs(towards))) for v in rgb)


def render(
    garment: Garment,
    look: Look,
    layout: Pattern,
    accent: str,
    background: tuple[int, int, int],
    size: int,
) -> tuple[Image.Image, dict[str, list[float]]]:
    """The garment's image (size x size, RGB) and the tight box of each part it has
    (normalised, `geometry.PARTS` order)."""
    big = 2 * size
    parts = garment_parts(garment, look)
    silhouette = [parts.body] + [
        p for p in (parts.skirt, parts.sleeve_left, parts.sleeve_right) if p is not None
    ]
    whole = _mask(big, silhouette)  # before the neckline is cut out
    cut = _mask(big, [parts.cut])
    mask = ImageChops.subtract(whole, cut)

    fill = Image.new("RGB", (big, big), COLORS[garment.color])
    if garment.pattern != "solid":
        _draw_pattern(fill, garment.pattern, layout, COLORS[accent])
    image = Image.new("RGB", (big, big), background)
    image.paste(fill, mask=mask)
    outline = shade(garment.color, -(1 - OUTLINE_DARKEN))
    image.paste(outline, mask=_edge(mask, OUTLINE_PX))

    draw = ImageDraw.Draw(image)
    flap_fill = shade(garment.color, -0.35 if luma(garment.color) > 0.5 else 0.35)
    flap_box = None
    for flap in parts.flaps:
        points = _scaled(flap, big)
        draw.polygon(points, fill=flap_fill, outline=outline, width=OUTLINE_PX)
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        flap_box = _union(flap_box, (min(xs), min(ys), max(xs) + 1, max(ys) + 1))
    graphic_box = None
    if parts.plate is not None:
        draw.polygon(_scaled(parts.plate, big), fill=COLORS[garment.color])
        graphic_box = _mask(big, [parts.plate]).getbbox()
    if parts.graphic is not None:
        draw.polygon(_scaled(parts.graphic, big), fill=COLORS[accent])
        graphic_box = _union(graphic_box, _mask(big, [parts.graphic]).getbbox())

    boxes = {
        "garment": _union(mask.getbbox(), flap_box),
        "sleeve_left": _within(mask, [parts.sleeve_left]) if parts.sleeve_left else None,
        "sleeve_right": _within(mask, [parts.sleeve_right]) if parts.sleeve_right else None,
        "skirt": _within(mask, [parts.skirt]) if parts.skirt else None,
        "neckline": _union(ImageChops.darker(whole, cut).getbbox(), flap_box),
        "graphic": graphic_box,
    }
    normalised = {
        part: round_box([min(max(v / big, 0.0), 1.0) for v in box])
        for part, box in boxes.items()
        if box is not None
    }
    return image.reduce(2), normalised


def seed_boxes(parts: dict[str, list[float]]) -> list[list[float]]:
    """The part boxes in the seed box format's order: by area, largest first (ties: by
    coordinates)."""
    boxes = list(parts.values())
    boxes.sort(key=lambda b: (-(b[2] - b[0]) * (b[3] - b[1]), b))
    return boxes
