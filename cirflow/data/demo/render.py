"""Drawing: a family's muted textured background, the palette colours that contrast with it,
a scene drawn at twice the size and reduced (anti-aliased edges), and the PNG bytes.

Object colours are chosen, per family, only among the palette colours that contrast with every
part of that family's background (`usable_colors`). PNGs are written without timestamps.
"""

from __future__ import annotations

import colorsys
import io
import math

import numpy as np
from PIL import Image, ImageDraw

from cirflow.data.demo.geometry import centre_and_radius, outline
from cirflow.data.demo.scene import BACKGROUND_KINDS, COLORS, Scene, pick

MIN_CONTRAST = 100.0  # RGB distance between an object colour and the background (1st percentile)
MOTTLE_MAX = 8.0  # largest amplitude (grey levels) of the fine background mottling
PNG_COMPRESS_LEVEL = 1  # zlib level: 6 is 3x slower for ~15% smaller files


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


def textured_background(
    rng: np.random.Generator, width: int, height: int
) -> tuple[np.ndarray, str]:
    """A muted textured background (float32, height x width x 3) and its kind."""
    kind = pick(rng, BACKGROUND_KINDS)
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


def usable_colors(background: np.ndarray) -> list[str]:
    pixels = background[::2, ::2].reshape(-1, 3)
    usable = []
    for name, rgb in COLORS.items():
        dist = np.sqrt(((pixels - np.array(rgb, dtype=np.float32)) ** 2).sum(axis=1))
        if float(np.percentile(dist, 1)) >= MIN_CONTRAST:
            usable.append(name)
    return usable


def render(scene: Scene, background: Image.Image, width: int, height: int) -> Image.Image:
    """Draw `scene` on the (2x) background and reduce to width x height (anti-aliased edges)."""
    image = background.copy()
    draw = ImageDraw.Draw(image)
    for obj in scene:
        fill = COLORS[obj.color]
        points = outline(obj, width, height)
        if points is None:
            cx, cy, r = centre_and_radius(obj, width, height)
            draw.ellipse([2 * (cx - r), 2 * (cy - r), 2 * (cx + r), 2 * (cy + r)], fill=fill)
        else:
            draw.polygon([(2 * x, 2 * y) for x, y in points], fill=fill)
    return image.reduce(2)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def canvas(background: np.ndarray, width: int, height: int) -> Image.Image:
    """The background as an RGB image at twice the size: scenes are drawn on it and reduced."""
    return Image.fromarray(np.round(background).astype(np.uint8)).resize(
        (2 * width, 2 * height), Image.Resampling.BILINEAR
    )
