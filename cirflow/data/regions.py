"""Boxes for the region loss: read a box file (the original scripts' format), validate every box, and map
the boxes of each training target into the model input (TargetPad → Resize → CenterCrop).

What happens to bad input (never a silent wrong loss):

* not JSON, not an object of name → list                  → CirflowError naming the file
* most boxes above 1.5 (pixel coordinates)                → CirflowError ("pixels, not normalised")
* none of the split's images in the file (another split?) → CirflowError
* a box with NaN/inf, x1 ≥ x2 or y1 ≥ y2, not 4 numbers    → rejected, counted
* a box slightly outside [0, 1] (within [-0.5, 1.5])      → clipped to [0, 1], counted
* a box further outside [0, 1]                            → rejected, counted
* a box whose area mostly falls outside the centre crop   → dropped (< 25 % left), counted
* an image name that is not in the split                  → ignored, counted
* a split image missing from the file, or with []          → no region term for it, counted
* the sidecar (<split>.meta.json) says another image size → that image's boxes rejected, counted
* an empty file (`{}`), or boxes for fewer than `min_targets_with_boxes` of the targets
  (`train.stage2.min_targets_with_boxes`, 10 %)          → CirflowError: the region loss would
                                                             be 0 for most batches, and the stage
                                                             comparison meaningless

The counts are logged and returned (they go into hparams.json).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch

from cirflow.data.box_format import PIXEL_LIMIT, check_box, read_box_file, sidecar_path
from cirflow.data.tables import ImageTable
from cirflow.data.transforms import MIN_BOX_FRACTION, geometry, map_boxes
from cirflow.errors import CirflowError
from cirflow.io import read_json

log = logging.getLogger(__name__)

# Training clips coordinates up to this far outside [0, 1] (rounding noise of other tools).
CLIP_TOLERANCE = PIXEL_LIMIT - 1.0
# Training's box statistics count both kinds of malformed box as one.
COUNTED_AS = {"non_numeric": "malformed"}


def load_training_boxes(
    box_file: str | Path,
    table: ImageTable,
    image_size: int,
    target_names: set[str] | None = None,
    meta_file: str | Path | None = None,
    min_targets_with_boxes: float = 0.0,
    min_key: str = "train.stage2.min_targets_with_boxes",
) -> tuple[dict[int, torch.Tensor], dict]:
    """Boxes of the split's images, in model-input pixels: {image index: (K, 4)} and counts.

    `target_names`: the images used as targets (only those need boxes; the counts refer to them).
    `meta_file`: the box file's sidecar (image sizes); default: next to the box file, if there.
    `min_targets_with_boxes`: refuse the file when fewer than this fraction of the targets get
    a box (`min_key` is the config key named in the error).
    """
    box_file = Path(box_file)
    data = read_box_file(box_file)
    if not data:
        raise CirflowError(
            f"{box_file}: the box file is empty ({{}}): no training target has a box, so the "
            "region loss would be 0 throughout; regenerate the train boxes"
        )
    counts = {
        "file": str(box_file),
        "images_in_file": len(data),
        "unknown_images": 0,
        "targets": 0,
        "targets_missing_from_file": 0,
        "targets_without_boxes": 0,
        "targets_with_boxes": 0,
        "boxes_read": 0,
        "boxes_used": 0,
        "rejected": {
            "malformed": 0,
            "nan_or_inf": 0,
            "pixel_coordinates": 0,
            "out_of_range": 0,
            "empty_or_inverted": 0,
            "size_mismatch": 0,
        },
        "clipped_to_unit": 0,
        "dropped_by_crop": 0,
    }
    known = [n for n in data if n in table.index]
    counts["unknown_images"] = len(data) - len(known)
    if data and not known:
        raise CirflowError(
            f"{box_file}: none of its {len(data)} image names is in the {table_split(table)} split "
            f"(e.g. {next(iter(data))!r}): is it the box file of another split?"
        )
    # Whole-file pixel check: if most boxes are in pixels, the file is wrong, not a few boxes.
    flat = [
        b for boxes in data.values() for b in boxes if isinstance(b, (list, tuple)) and len(b) == 4
    ]
    numeric = [b for b in flat if all(isinstance(v, (int, float)) for v in b)]
    pixel = sum(1 for b in numeric if all(math.isfinite(v) for v in b) and max(b) > PIXEL_LIMIT)
    if numeric and pixel > 0.5 * len(numeric):
        raise CirflowError(
            f"{box_file}: {pixel} of {len(numeric)} boxes have coordinates above {PIXEL_LIMIT}: the file "
            "holds pixel coordinates, but the box format is normalised to [0, 1] (x1/w, y1/h, x2/w, y2/h)"
        )
    sizes = {}
    side = Path(meta_file) if meta_file else sidecar_path(box_file)
    if meta_file and not side.is_file():
        raise CirflowError(f"box sidecar not found: {side}")
    if side.is_file():
        meta = read_json(side, what="box sidecar")
        sizes = {
            n: tuple(v["size"])
            for n, v in (meta.get("images") or {}).items()
            if isinstance(v, dict) and "size" in v
        }

    names = target_names if target_names is not None else set(table.names)
    out: dict[int, torch.Tensor] = {}
    for name in sorted(names):
        counts["targets"] += 1
        if name not in data:
            counts["targets_missing_from_file"] += 1
            continue
        idx = table.index[name]
        width, height = table.image_size(idx)
        if name in sizes and tuple(sizes[name]) != (width, height):
            counts["rejected"]["size_mismatch"] += len(data[name])
            counts["boxes_read"] += len(data[name])
            counts["targets_without_boxes"] += 1
            continue
        good = []
        for box in data[name]:
            counts["boxes_read"] += 1
            clipped, problem = check_box(box, tolerance=CLIP_TOLERANCE)
            if clipped is None:
                counts["rejected"][COUNTED_AS.get(problem, problem)] += 1
                continue
            if clipped != [float(v) for v in box]:
                counts["clipped_to_unit"] += 1
            good.append(clipped)
        mapped, dropped = map_boxes(good, geometry(width, height, image_size), MIN_BOX_FRACTION)
        counts["dropped_by_crop"] += dropped
        if len(mapped):
            out[idx] = torch.from_numpy(np.ascontiguousarray(mapped))
            counts["targets_with_boxes"] += 1
            counts["boxes_used"] += len(mapped)
        else:
            counts["targets_without_boxes"] += 1
    log.info(
        "boxes from %s: %d/%d targets have boxes (%d missing from the file, %d empty); %d boxes used of %d "
        "read; rejected %s; clipped to [0,1] %d; dropped by the crop %d; %d unknown image names ignored",
        box_file,
        counts["targets_with_boxes"],
        counts["targets"],
        counts["targets_missing_from_file"],
        counts["targets_without_boxes"],
        counts["boxes_used"],
        counts["boxes_read"],
        {k: v for k, v in counts["rejected"].items() if v} or "none",
        counts["clipped_to_unit"],
        counts["dropped_by_crop"],
        counts["unknown_images"],
    )
    if (
        counts["targets"]
        and counts["targets_with_boxes"] < min_targets_with_boxes * counts["targets"]
    ):
        raise CirflowError(
            f"{box_file}: only {counts['targets_with_boxes']:,} of {counts['targets']:,} training "
            f"targets have a usable box ({counts['targets_missing_from_file']:,} missing from the "
            f"file, {counts['targets_without_boxes']:,} with none left), fewer than {min_key} = "
            f"{min_targets_with_boxes:g}: the region loss would be 0 for most batches and stage 2 "
            "would only repeat stage 1. Check the box file (right split? all []?) or lower "
            f"{min_key}"
        )
    if counts["targets"] and counts["targets_missing_from_file"] > 0.5 * counts["targets"]:
        log.warning(
            "%s: %d of %d training targets are missing from the box file: the region loss will see "
            "few boxes (is this the file of the right split?)",
            box_file,
            counts["targets_missing_from_file"],
            counts["targets"],
        )
    return out, counts


def table_split(table: ImageTable) -> str:
    return getattr(table, "split", "training")
