"""The per-image checks (CHECKS) and what they find in one box file: the flagged images, the
count and first examples per check, every invalid box, the images detection could not read."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cirflow.boxes.quality import iou_matrix
from cirflow.data.box_format import box_area, box_problem
from cirflow.report.boxes.sources import BoxSource

# Per-image checks, most severe first (the "flagged" grid takes images in this order).
CHECKS = {
    "invalid": "invalid box (outside [0, 1], inverted, NaN, not 4 numbers)",
    "unsorted": "boxes not sorted by area, largest first (the original scripts' format requires it)",
    "duplicate": "near-duplicate boxes (IoU ≥ 0.9)",
    "whole_image": "a box covers ≥ 95% of the image",
    "tiny": "a box covers < 0.1% of the image",
    "no_meta": "boxes but no entry in the sidecar (.meta.json)",
}
DUPLICATE_IOU = 0.9
WHOLE_IMAGE_AREA = 0.95
TINY_AREA = 0.001
MAX_EXAMPLES = 10  # example images listed per check


def image_checks(boxes: list, has_meta_entry: bool | None) -> list[str]:
    """The CHECKS codes this image's boxes fail (`has_meta_entry` None: no sidecar at all)."""
    flags = []
    valid = []
    for box in boxes:
        if box_problem(box):
            if "invalid" not in flags:
                flags.append("invalid")
        else:
            valid.append(box)
    if "invalid" not in flags:
        areas = [box_area(b) for b in boxes]
        if any(a2 > a1 + 1e-9 for a1, a2 in zip(areas, areas[1:], strict=False)):
            flags.append("unsorted")
    if 1 < len(valid) <= 50 and (np.triu(iou_matrix(valid, valid), k=1) >= DUPLICATE_IOU).any():
        flags.append("duplicate")
    areas = [box_area(b) for b in valid]
    if any(a >= WHOLE_IMAGE_AREA for a in areas):
        flags.append("whole_image")
    if any(a < TINY_AREA for a in areas):
        flags.append("tiny")
    if has_meta_entry is False and boxes:
        flags.append("no_meta")
    return flags


@dataclass
class SourceChecks:
    """What the checks found in one source."""

    flags: dict[str, list[str]]  # image -> the CHECKS codes it fails (flagged images only)
    rows: list[dict]  # per check: code, text, count, the first MAX_EXAMPLES images
    invalid: list[dict]  # every invalid box: image, box number, coordinates, problem
    errors: list[dict]  # the sidecar's unreadable images
    unreadable: set[str]


def check_source(source: BoxSource) -> SourceChecks:
    names = list(source.boxes)
    images_meta = (source.meta or {}).get("images", {})
    has_meta = source.meta is not None
    flags = {
        n: f
        for n in names
        if (f := image_checks(source.boxes[n], (n in images_meta) if has_meta else None))
    }
    errors = list((source.meta or {}).get("errors", []))
    unreadable = {e.get("image") for e in errors}
    for n in unreadable:
        flags.pop(n, None)  # an unreadable image has [] and no sidecar entry by construction
    return SourceChecks(
        flags, _check_rows(flags, has_meta), _invalid_boxes(source), errors, unreadable
    )


def _check_rows(flags: dict[str, list[str]], has_meta: bool) -> list[dict]:
    rows = []
    for code, text in CHECKS.items():
        if code == "no_meta" and not has_meta:
            continue
        hit = sorted(n for n, f in flags.items() if code in f)
        rows.append({"code": code, "text": text, "count": len(hit), "examples": hit[:MAX_EXAMPLES]})
    return rows


def _invalid_boxes(source: BoxSource) -> list[dict]:
    invalid = []
    for n in source.boxes:
        for i, box in enumerate(source.boxes[n]):
            problem = box_problem(box)
            if problem:
                invalid.append({"image": n, "box": i + 1, "coords": repr(box), "problem": problem})
    return invalid
