"""Where an object is in pixels: the 3×3 grid inside a margin, each object's centre and radius
(jittered inside its cell), its outline, and its tight box (boxes_gt.json)."""

from __future__ import annotations

import math

from cirflow.data.demo.scene import SHAPES, Obj, Scene

MARGIN = 0.04  # fraction of the image kept free on each side
JITTER = 0.8  # objects move at most this fraction of their cell's slack
# Object diameter as a fraction of the (shorter side of the) grid cell, by size.
SIZE_SCALE = (0.52, 0.74, 0.94)


def _grid(width: int, height: int) -> tuple[float, float, float, float, float]:
    mx, my = MARGIN * width, MARGIN * height
    cw, ch = (width - 2 * mx) / 3, (height - 2 * my) / 3
    return mx, my, cw, ch, min(cw, ch)


def centre_and_radius(obj: Obj, width: int, height: int) -> tuple[float, float, float]:
    """Centre and radius (half the diameter) of `obj` in pixels."""
    mx, my, cw, ch, base = _grid(width, height)
    r = 0.5 * base * SIZE_SCALE[obj.size]
    r_max = 0.5 * base * SIZE_SCALE[-1]
    col, row = obj.cell % 3, obj.cell // 3
    # The jitter is scaled by the slack of the largest size: resizing keeps the centre in place.
    cx = mx + (col + 0.5) * cw + JITTER * obj.jx * max(0.0, cw / 2 - r_max)
    cy = my + (row + 0.5) * ch + JITTER * obj.jy * max(0.0, ch / 2 - r_max)
    return cx, cy, r


def unit_polygon(shape: str) -> list[tuple[float, float]]:
    """The outline of a (non-circle) shape of radius 1 centred on the origin."""
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


_UNIT_POLYGONS = {s: unit_polygon(s) for s in SHAPES if s != "circle"}


def outline(obj: Obj, width: int, height: int) -> list[tuple[float, float]] | None:
    cx, cy, r = centre_and_radius(obj, width, height)
    if obj.shape == "circle":
        return None
    return [(cx + r * x, cy + r * y) for x, y in _UNIT_POLYGONS[obj.shape]]


def object_box(obj: Obj, width: int, height: int) -> list[float]:
    """Tight box of `obj`, normalised to the image."""
    points = outline(obj, width, height)
    if points is None:
        cx, cy, r = centre_and_radius(obj, width, height)
        x1, y1, x2, y2 = cx - r, cy - r, cx + r, cy + r
    else:
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
    box = [x1 / width, y1 / height, x2 / width, y2 / height]
    return [round(min(max(v, 0.0), 1.0), 6) for v in box]


def scene_boxes(scene: Scene, width: int, height: int) -> list[list[float]]:
    """Tight boxes of every object, sorted by area descending (ties: by coordinates)."""
    return sorted_boxes([object_box(o, width, height) for o in scene])


def sorted_boxes(boxes: list[list[float]]) -> list[list[float]]:
    """By area descending (ties: by coordinates), the box files' order."""
    return sorted(boxes, key=lambda b: (-(b[2] - b[0]) * (b[3] - b[1]), b))
