"""The box file format (the original scripts' format), its sidecar, and the one box validator.

Box file (must stay loadable by the original scripts):
    {"<image name>": [[x1, y1, x2, y2], ...], ...}
floats normalised to the original image, 0 <= x1 < x2 <= 1, 0 <= y1 < y2 <= 1, sorted by area
descending; an image without boxes maps to [].

Sidecar `<split>.meta.json`:
    {"method": ..., "split": ..., "images": {"<name>": {"size": [w, h], "scores": [...],
     "labels": [...], "source": ...}}, "errors": [{"image": ..., "error": ...}]}
"""

from __future__ import annotations

import math
from pathlib import Path

from cirflow.errors import CirflowError
from cirflow.io import read_json

# Decimal places kept in box files: 1e-6 of an 8000-px image is well under a pixel.
COORD_DECIMALS = 6


# Why a box is rejected: short code (counted in training's box statistics) -> message.
BOX_PROBLEMS = {
    "malformed": "not a list of 4 numbers",
    "non_numeric": "non-numeric coordinate",
    "nan_or_inf": "NaN or infinite coordinate",
    "pixel_coordinates": "coordinates above 1 (pixel coordinates instead of normalised?)",
    "out_of_range": "coordinate outside [0, 1]",
    "empty_or_inverted": "empty or inverted box (needs x1 < x2 and y1 < y2)",
}
# A coordinate above this is a pixel coordinate, not a normalised one.
PIXEL_LIMIT = 1.5


def check_box(box: object, tolerance: float = 0.0) -> tuple[list[float] | None, str | None]:
    """(box clipped to [0, 1], None) or (None, problem code of `BOX_PROBLEMS`).

    `tolerance`: coordinates up to this far outside [0, 1] are clipped instead of rejected
    (0: strict, for files this project writes; training accepts 0.5). The clip may make the box
    empty, which is then its problem.
    """
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        return None, "malformed"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
        return None, "non_numeric"
    if not all(math.isfinite(v) for v in box):
        return None, "nan_or_inf"
    if max(box) > PIXEL_LIMIT:
        return None, "pixel_coordinates"
    if min(box) < -tolerance or max(box) > 1.0 + tolerance:
        return None, "out_of_range"
    clipped = [min(max(float(v), 0.0), 1.0) for v in box]
    x1, y1, x2, y2 = clipped
    if not (x1 < x2 and y1 < y2):
        return None, "empty_or_inverted"
    return clipped, None


def box_problem(box: object) -> str | None:
    """Why `box` is not a valid normalised box (a message), or None when it is."""
    _, code = check_box(box)
    return BOX_PROBLEMS[code] if code else None


def sidecar_path(box_path: str | Path) -> Path:
    """The sidecar of a box file: `train.json` -> `train.meta.json`."""
    return Path(str(box_path).removesuffix(".json") + ".meta.json")


def box_area(box: list[float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def round_box(box) -> list[float]:
    return [round(float(v), COORD_DECIMALS) for v in box]


def read_box_file(path: str | Path) -> dict[str, list]:
    """Read a box file, checking its structure (not the boxes: see box_problem / load_boxes)."""
    path = Path(path)
    data = read_json(path, what="box file")
    if not isinstance(data, dict):
        raise CirflowError(
            f"{path}: a box file must be a JSON object of image name -> list of boxes"
        )
    for name, boxes in data.items():
        if not isinstance(boxes, list):
            raise CirflowError(
                f"{path}: image {name!r} maps to {type(boxes).__name__}, expected a list of boxes"
            )
    return data


def load_boxes(path: str | Path) -> dict[str, list[list[float]]]:
    """Read a box file and insist every box is valid; the error names the file, image and box."""
    path = Path(path)
    data = read_box_file(path)
    for name, boxes in data.items():
        for i, box in enumerate(boxes):
            problem = box_problem(box)
            if problem:
                raise CirflowError(f"{path}: image {name!r}, box #{i} {box!r}: {problem}")
    return data
