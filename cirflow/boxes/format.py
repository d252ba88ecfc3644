"""The seed's box format and our sidecar.

Box file (must stay loadable by the seed's own code):
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


def box_problem(box: object) -> str | None:
    """Why `box` is not a valid normalised box, or None when it is."""
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        return "not a list of 4 numbers"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
        return "non-numeric coordinate"
    if not all(math.isfinite(v) for v in box):
        return "NaN or infinite coordinate"
    x1, y1, x2, y2 = box
    if max(box) > 1.0 or min(box) < 0.0:
        if max(box) > 1.5:
            return "coordinates above 1 (pixel coordinates instead of normalised?)"
        return "coordinate outside [0, 1]"
    if not (x1 < x2 and y1 < y2):
        return "empty or inverted box (needs x1 < x2 and y1 < y2)"
    return None


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
