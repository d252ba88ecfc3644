"""Boxes in the model input: read a box file (the original scripts' format), validate every box, and map
the boxes of a split's images into the model input (TargetPad → Resize → CenterCrop).

One home for every split: the training targets of the region loss (`aux`), the training targets
and references of the region tokens (`tokens`), and the gallery images of an evaluation with
region tokens (val, test1), each with its own box file of the same method (docs/design.md §6).
`load_image_boxes` does the work; `BoxFile.load_training` is its name for the training targets.

What happens to bad input (never a silent wrong loss):

* not JSON, not an object of name → list                  → CirflowError naming the file
* most boxes above 1.5 (pixel coordinates)                → CirflowError ("pixels, not normalised")
* none of the split's images in the file (another split?) → CirflowError
* the sidecar names another split than the table's         → CirflowError
* a box with NaN/inf, x1 ≥ x2 or y1 ≥ y2, not 4 numbers    → rejected, counted
* a box slightly outside [0, 1] (within [-0.5, 1.5])      → clipped to [0, 1], counted
* a box further outside [0, 1]                            → rejected, counted
* a box whose area mostly falls outside the centre crop   → dropped (< 25 % left), counted
* an image name that is not in the split                  → ignored, counted
* a split image missing from the file, or with []          → no region term for it, counted
* an image the feature stage could not read                → no boxes for it, counted
* the sidecar (<split>.meta.json) says another image size → that image's boxes rejected, counted
* an empty file (`{}`), or boxes for fewer than `min_targets_with_boxes` of the targets
  (`train.stage2.min_targets_with_boxes`, 10 %)          → CirflowError: the region loss would
                                                             be 0 for most batches, and the stage
                                                             comparison meaningless

`max_boxes` keeps the first (largest: box files are sorted by area) boxes of each image that
survive the checks, for the region tokens (`train.stage2.region.max_region_tokens`); the boxes
left out are counted.

The counts are logged and returned (they go into hparams.json). Their keys say "targets" for the
images asked for, whatever the split.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cirflow.data.box_format import PIXEL_LIMIT, check_box, read_box_file, sidecar_path
from cirflow.data.tables import ImageTable
from cirflow.data.transforms import MIN_BOX_FRACTION, geometry, map_boxes
from cirflow.errors import CirflowError, SettingError
from cirflow.io import read_json

log = logging.getLogger(__name__)

# Training clips coordinates up to this far outside [0, 1] (rounding noise of other tools).
CLIP_TOLERANCE = PIXEL_LIMIT - 1.0
# Training's box statistics count both kinds of malformed box as one.
COUNTED_AS = {"non_numeric": "malformed"}


@dataclass(frozen=True)
class BoxFile:
    """A split's box file and its sidecar (None: `<split>.meta.json` beside it, if there)."""

    path: str | Path
    meta: str | Path | None = None

    def load_training(
        self,
        table: ImageTable,
        image_size: int,
        target_names: set[str] | None = None,
        max_boxes: int | None = None,
        min_targets_with_boxes: float = 0.0,
    ) -> tuple[dict[int, torch.Tensor], dict]:
        """Boxes of the training targets (`target_names`; default every image of the table),
        in model-input pixels: {image index: (K, 4)} and counts (`load_image_boxes`).

        `min_targets_with_boxes`: refuse the file when fewer than this fraction of the targets
        get a box (a SettingError of `min_targets_with_boxes`).
        """
        out, counts = load_image_boxes(
            self.path, table, image_size, target_names, self.meta, max_boxes
        )
        _require_enough_targets(self.path, counts, min_targets_with_boxes)
        return out, counts

    def per_triplet(self) -> bool:
        """Whether the file is keyed by the triplets' pairids (each triplet its own boxes in
        its target: the demo's edited-object boxes) rather than by image names."""
        data = read_box_file(Path(self.path))
        return bool(data) and all(str(key).isdigit() for key in data)

    def load_triplets(
        self,
        triplets: list[dict],
        table: ImageTable,
        image_size: int,
        max_boxes: int | None = None,
        min_targets_with_boxes: float = 0.0,
    ) -> tuple[dict[int, torch.Tensor], dict]:
        """Each triplet's own boxes in its target, from a file keyed by pairid, in model-input
        pixels: {triplet index: (K, 4)} and counts (as `load_training`, per triplet)."""
        box_file = Path(self.path)
        data = _read_nonempty(box_file)
        _refuse_pixel_coordinates(box_file, data)
        counts = _new_counts(box_file, data)
        pairids = {str(t["pairid"]) for t in triplets}
        counts["unknown_images"] = sum(1 for key in data if key not in pairids)
        if counts["unknown_images"] == len(data):
            raise CirflowError(
                f"{box_file}: none of its {len(data)} pairids is a {table_split(table)} "
                f"triplet's (e.g. {next(iter(data))!r}): the boxes of another split?"
            )
        out: dict[int, torch.Tensor] = {}
        for i, t in enumerate(triplets):
            own = data.get(str(t["pairid"]))
            target = {t["target_hard"]: own} if own is not None else {}
            found = _ImageBoxes(target, table, {}, image_size, max_boxes, counts)(t["target_hard"])
            if found is not None:
                out[i] = found[1]
        _log_counts(box_file, counts)
        _require_enough_targets(box_file, counts, min_targets_with_boxes)
        return out, counts


def _require_enough_targets(box_file, counts: dict, min_fraction: float) -> None:
    """A SettingError of `min_targets_with_boxes` when fewer targets than that got a box."""
    if counts["targets"] and counts["targets_with_boxes"] < min_fraction * counts["targets"]:
        raise SettingError(
            "min_targets_with_boxes",
            f"{box_file}: only {counts['targets_with_boxes']:,} of {counts['targets']:,} "
            f"training targets have a usable box ({counts['targets_missing_from_file']:,} "
            f"missing from the file, {counts['targets_without_boxes']:,} with none left), "
            f"fewer than {{key}} = {min_fraction:g}: the region loss would be 0 "
            "for most batches and stage 2 would only repeat stage 1. Check the box file "
            "(right split? all []?) or lower {key}",
        )


def load_image_boxes(
    box_file: str | Path,
    table: ImageTable,
    image_size: int,
    names: set[str] | None = None,
    meta_file: str | Path | None = None,
    max_boxes: int | None = None,
) -> tuple[dict[int, torch.Tensor], dict]:
    """Boxes of the split's images, in model-input pixels: {image index: (K, 4)} and counts.

    `table`: the split's `ImageTable` or `FeatureTable` (names, index, original sizes).
    `names`: the images that need boxes (the counts refer to them); default: every image.
    `meta_file`: the box file's sidecar (image sizes, split); default: next to the box file, if
    there. `max_boxes`: keep at most this many boxes per image, the first (largest) ones.
    Each box maps through the image's own `Geometry` (its original width and height).
    """
    box_file = Path(box_file)
    data = _read_nonempty(box_file)
    counts = _new_counts(box_file, data)
    counts["unknown_images"] = _count_unknown_images(box_file, data, table)
    _refuse_pixel_coordinates(box_file, data)
    sizes = _sidecar_sizes(box_file, meta_file, table)
    boxes_of = _ImageBoxes(data, table, sizes, image_size, max_boxes, counts)
    out: dict[int, torch.Tensor] = {}
    for name in sorted(names if names is not None else set(table.names)):
        found = boxes_of(name)
        if found is not None:
            idx, boxes = found
            out[idx] = boxes
    _log_counts(box_file, counts)
    return out, counts


def _read_nonempty(box_file: Path) -> dict:
    data = read_box_file(box_file)
    if not data:
        raise CirflowError(
            f"{box_file}: the box file is empty ({{}}): no image has a box, so the region "
            "term would be 0 throughout; regenerate the boxes"
        )
    return data


def _new_counts(box_file: Path, data: dict) -> dict:
    """Every count at zero (hparams.json holds them all, whether they happened or not)."""
    return {
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
        "beyond_max_boxes": 0,
        "unreadable_images": 0,
    }


def _count_unknown_images(box_file: Path, data: dict, table: ImageTable) -> int:
    """How many of the file's names the split lacks; all of them is another split's file."""
    known = [n for n in data if n in table.index]
    if data and not known:
        raise CirflowError(
            f"{box_file}: none of its {len(data)} image names is in the {table_split(table)} split "
            f"(e.g. {next(iter(data))!r}): is it the box file of another split?"
        )
    return len(data) - len(known)


def _refuse_pixel_coordinates(box_file: Path, data: dict) -> None:
    """Whole-file pixel check: if most boxes are in pixels, the file is wrong, not a few boxes."""
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


def _sidecar_sizes(
    box_file: Path, meta_file: str | Path | None, table: ImageTable
) -> dict[str, tuple]:
    """{image name: (width, height)} from the sidecar ({} without one); a given sidecar that
    is missing, or one of another split, is an error."""
    side = Path(meta_file) if meta_file else sidecar_path(box_file)
    if meta_file and not side.is_file():
        raise CirflowError(f"box sidecar not found: {side}")
    if not side.is_file():
        return {}
    meta = read_json(side, what="box sidecar")
    meta_split = meta.get("split") if isinstance(meta, dict) else None
    split = getattr(table, "split", None)
    if meta_split and split and meta_split != split:
        raise CirflowError(
            f"{side}: the sidecar of a {meta_split} box file, but these are the {split} "
            f"images ({box_file}): give the {split} box file of the same method"
        )
    return {
        n: tuple(v["size"])
        for n, v in (meta.get("images") or {}).items()
        if isinstance(v, dict) and "size" in v
    }


class _ImageBoxes:
    """One image's boxes from the file, checked, mapped into input pixels and capped; every
    box and image it leaves out is counted in `counts`."""

    def __init__(
        self,
        data: dict,
        table: ImageTable,
        sizes: dict[str, tuple],
        image_size: int,
        max_boxes: int | None,
        counts: dict,
    ):
        self.data, self.table, self.sizes = data, table, sizes
        self.image_size, self.max_boxes, self.counts = image_size, max_boxes, counts
        self.unreadable = getattr(table, "unreadable", {})

    def __call__(self, name: str) -> tuple[int, torch.Tensor] | None:
        """(image index, (K, 4) input pixels), or None when the image gets no box."""
        counts = self.counts
        counts["targets"] += 1
        if name not in self.data:
            counts["targets_missing_from_file"] += 1
            return None
        if name in self.unreadable:
            counts["unreadable_images"] += 1
            return None
        idx = self.table.index[name]
        width, height = self.table.image_size(idx)
        boxes = self.data[name]
        if name in self.sizes and tuple(self.sizes[name]) != (width, height):
            counts["rejected"]["size_mismatch"] += len(boxes)
            counts["boxes_read"] += len(boxes)
            counts["targets_without_boxes"] += 1
            return None
        good = self._checked(boxes)
        mapped, dropped = map_boxes(
            good, geometry(width, height, self.image_size), MIN_BOX_FRACTION
        )
        counts["dropped_by_crop"] += dropped
        if self.max_boxes is not None and len(mapped) > self.max_boxes:
            counts["beyond_max_boxes"] += len(mapped) - self.max_boxes
            mapped = mapped[: self.max_boxes]
        if not len(mapped):
            counts["targets_without_boxes"] += 1
            return None
        counts["targets_with_boxes"] += 1
        counts["boxes_used"] += len(mapped)
        return idx, torch.from_numpy(np.ascontiguousarray(mapped))

    def _checked(self, boxes: list) -> list[list[float]]:
        """The valid boxes, clipped to [0, 1] within the tolerance; the others counted."""
        counts = self.counts
        good = []
        for box in boxes:
            counts["boxes_read"] += 1
            clipped, problem = check_box(box, tolerance=CLIP_TOLERANCE)
            if clipped is None:
                counts["rejected"][COUNTED_AS.get(problem, problem)] += 1
                continue
            if clipped != [float(v) for v in box]:
                counts["clipped_to_unit"] += 1
            good.append(clipped)
        return good


def _log_counts(box_file: Path, counts: dict) -> None:
    log.info(
        "boxes from %s: %d/%d targets have boxes (%d missing from the file, %d empty); %d boxes used of %d "
        "read; rejected %s; clipped to [0,1] %d; dropped by the crop %d; beyond the cap %d; "
        "%d unknown image names ignored",
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
        counts["beyond_max_boxes"],
        counts["unknown_images"],
    )
    if counts["targets"] and counts["targets_missing_from_file"] > 0.5 * counts["targets"]:
        log.warning(
            "%s: %d of %d images are missing from the box file: the region term will see "
            "few boxes (is this the file of the right split?)",
            box_file,
            counts["targets_missing_from_file"],
            counts["targets"],
        )


def table_split(table: ImageTable) -> str:
    return getattr(table, "split", "training")
