"""The demo's ground-truth boxes as per-split box files: a box source like any detector's.

`boxes_gt.json` (written by `cirflow.data.demo`) holds the tight box of every object of every
image of every split. `split_ground_truth` writes, for each split, what `merge_boxes` writes for a
detection method (docs/design.md §3):

    {out}/{split}.json        {"<image name>": [[x1, y1, x2, y2], ...]} — exactly the split's images,
                              normalised, sorted by area descending (as boxes_gt.json is)
    {out}/{split}.meta.json   {"method": "gt", "split", "images": {name: {"size": [w, h],
                              "scores", "labels", "source"}}, "errors": []}

so that stage 2 and its evaluation read ground-truth boxes through the same code, geometry and
checks as detected ones (the ablation's `gt` box source; the wrong split is an error there).
"""

from __future__ import annotations

import logging
from pathlib import Path

from PIL import Image, ImageOps

from cirflow.data.box_format import box_area, load_boxes
from cirflow.data.datasets import DatasetRoot, as_dataset_root
from cirflow.errors import CirflowError
from cirflow.io import write_json_atomic

log = logging.getLogger(__name__)

METHOD = "gt"


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) after EXIF orientation, from the header (as `tables.ImageTable`)."""
    try:
        with Image.open(path) as im:
            return ImageOps.exif_transpose(im).size
    except Exception as exc:
        raise CirflowError(f"cannot read image {path}: {exc}") from exc


def split_ground_truth(
    root: str | Path | DatasetRoot, gt_file: str | Path, out_dir: str | Path, splits=None
) -> dict[str, dict]:
    """Write {split}.json and {split}.meta.json under `out_dir` for each split (default: every
    split of the dataset; a plain `root` is a CIRR-layout one); returns
    {split: {"images", "with_boxes", "boxes"}}."""
    gt = load_boxes(gt_file)  # every box valid, or an error naming the file, image and box
    out_dir = Path(out_dir)
    summary = {}
    dataset_root = as_dataset_root(root)
    for split in splits or dataset_root.splits:
        dataset = dataset_root.open(split)
        missing = [n for n in dataset.images if n not in gt]
        if missing:
            raise CirflowError(
                f"{gt_file}: {len(missing)} {split} images have no entry (e.g. {missing[0]!r})"
            )
        boxes, images = {}, {}
        for name in sorted(dataset.images):
            own = sorted(gt[name], key=lambda b: -box_area(b))  # already so; kept explicit
            boxes[name] = own
            images[name] = {
                "size": list(image_size(dataset.image_path(name))),
                "scores": [1.0] * len(own),
                "labels": ["object"] * len(own),
                "source": METHOD,
            }
        write_json_atomic(out_dir / f"{split}.json", boxes)
        write_json_atomic(
            out_dir / f"{split}.meta.json",
            {"method": METHOD, "split": split, "images": images, "errors": []},
        )
        summary[split] = {
            "images": len(boxes),
            "with_boxes": sum(1 for b in boxes.values() if b),
            "boxes": sum(len(b) for b in boxes.values()),
        }
        log.info("%s: ground-truth boxes of %d images -> %s", split, len(boxes), out_dir)
    return summary
