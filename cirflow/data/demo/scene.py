"""The scene model: objects (shape × colour × size in one cell of a 3×3 grid, with a little
jitter inside the cell) and the random draws every other part of the generator shares."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

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
SIZES = ("small", "medium", "large")
MAX_OBJECTS = 4
BACKGROUND_KINDS = ("gradient", "radial", "noise", "stripes")


class Obj(NamedTuple):
    shape: str
    color: str
    size: int  # index into SIZES
    cell: int  # 0..8, row-major 3x3 grid
    jx: float  # jitter in [-1, 1] (fraction of the cell's slack)
    jy: float


Scene = tuple[Obj, ...]


def signature(scene: Scene) -> tuple:
    """What an image shows of `scene` (the jitter aside): equal signatures, equal-looking images."""
    return tuple(sorted((o.shape, o.color, o.size, o.cell) for o in scene))


def pick(rng: np.random.Generator, options: Sequence):
    return options[int(rng.integers(len(options)))]


def jitter(rng: np.random.Generator) -> tuple[float, float]:
    jx, jy = rng.uniform(-1.0, 1.0, size=2)
    return round(float(jx), 4), round(float(jy), 4)


def free_cells(scene: Scene) -> list[int]:
    used = {o.cell for o in scene}
    return [c for c in range(9) if c not in used]


def color_shape_pairs(scene: Scene) -> set[tuple[str, str]]:
    return {(o.color, o.shape) for o in scene}


def replace_object(scene: Scene, old: Obj, new: Obj | None) -> Scene:
    """`scene` with `old` replaced by `new` (removed when `new` is None)."""
    return tuple(o for o in (new if o == old else o for o in scene) if o is not None)


def base_scene(rng: np.random.Generator, colors: list[str]) -> Scene:
    """1-4 objects of distinct (colour, shape) in distinct cells, colours among `colors`."""
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
            *jitter(rng),
        )
        for k, cell in zip(chosen, cells, strict=True)
    )
