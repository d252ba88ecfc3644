"""The box files a page shows: each read with its sidecar and statistics (`BoxSource`), its
method and split inferred where not given, labelled apart from the others; the workflow's
stats files for the methods comparison."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from cirflow.boxes.detectors import METHODS
from cirflow.boxes.stats import compute_stats
from cirflow.data.box_format import read_box_file, sidecar_path
from cirflow.data.datasets import DatasetRoot, root_of_annotation_file
from cirflow.errors import CirflowError
from cirflow.io import read_json

# The image-name prefix CIRR uses for each split (val images are called dev-…).
NAME_PREFIX_SPLIT = {"train": "train", "dev": "val", "test1": "test1"}


@dataclass
class BoxSource:
    """One box file (one method on one split) with its sidecar and statistics."""

    box_path: Path
    method: str
    split: str | None
    boxes: dict[str, list]
    meta: dict | None
    stats: dict
    meta_path: Path | None = None
    stats_path: Path | None = None
    label: str = ""

    @property
    def id(self) -> str:
        return f"{self.label}/{self.split or 'unknown'}"


def infer_split(names) -> str | None:
    """The CIRR split most image names belong to (train-…, dev-… = val, test1-…), or None."""
    counts = Counter(NAME_PREFIX_SPLIT.get(n.split("-", 1)[0]) for n in names)
    counts.pop(None, None)
    return counts.most_common(1)[0][0] if counts else None


def infer_method(path: Path, meta: dict | None) -> str:
    """The box method: the sidecar's, else a known method named in the path, else the file stem."""
    if meta and isinstance(meta.get("method"), str):
        return meta["method"]
    tokens = re.split(r"[^a-z0-9]+", str(path).lower())
    for token in reversed(tokens):
        if token in METHODS:
            return token
    return path.stem


def load_source(
    box_path: str | Path,
    meta_path: str | Path | None = None,
    stats_path: str | Path | None = None,
    method: str | None = None,
    split: str | None = None,
) -> BoxSource:
    """Read a box file, its sidecar (given, or `<file>.meta.json` beside it) and its stats
    (given, or computed here)."""
    box_path = Path(box_path)
    boxes = read_box_file(box_path)
    if meta_path is None:
        candidate = sidecar_path(box_path)
        meta_path = candidate if candidate.is_file() else None
    meta = read_json(meta_path, what="box sidecar file") if meta_path is not None else None
    if meta is not None and not isinstance(meta, dict):
        raise CirflowError(f"{meta_path}: a box sidecar must be a JSON object")
    if stats_path is not None:
        stats = read_json(stats_path, what="box stats file")
        if not isinstance(stats, dict) or "images" not in stats:
            raise CirflowError(f"{stats_path}: not a box stats file (no 'images' key)")
    else:
        stats = compute_stats(boxes, meta)
    method = method or infer_method(box_path, meta)
    if split is None:
        split = (meta or {}).get("split") or infer_split(boxes)
    return BoxSource(
        box_path=box_path,
        method=method,
        split=split,
        boxes=boxes,
        meta=meta,
        stats=stats,
        meta_path=Path(meta_path) if meta_path is not None else None,
        stats_path=Path(stats_path) if stats_path is not None else None,
    )


def add_quality(sources: list[BoxSource], gt_path: str | Path) -> None:
    """Set each source's `stats["quality"]` against ground-truth boxes (the demo's
    boxes_gt.json), as rule box_stats does when the dataset has them."""
    from cirflow.boxes.quality import box_quality, load_gt

    gt = load_gt(gt_path)
    for source in sources:
        source.stats["quality"] = box_quality(source.boxes, gt, files=(source.box_path, gt_path))


def assign_labels(sources: list[BoxSource]) -> None:
    """Label each source by its method; where two share a method and split, by file name."""
    seen = Counter((s.method, s.split) for s in sources)
    for s in sources:
        s.label = s.method if seen[(s.method, s.split)] == 1 else s.box_path.stem


def stats_entry_from_path(path: str | Path) -> dict:
    """A comparison entry from a workflow stats file `.../boxes/{method}/{split}.stats.json`."""
    path = Path(path)
    if not path.name.endswith(".stats.json"):
        raise CirflowError(f"{path}: expected a '<split>.stats.json' file from the workflow")
    stats = read_json(path, what="box stats file")
    return {
        "method": path.parent.name,
        "split": path.name.removesuffix(".stats.json"),
        "stats": stats,
        "path": str(path),
    }


def dataset_root_of_split_file(path: str | Path) -> DatasetRoot:
    """`<root>/cirr/image_splits/split.rc2.<split>.json` (CIRR) or
    `<root>/image_splits/split.<category>.<split>.json` (FashionIQ) -> the dataset at `<root>`."""
    return root_of_annotation_file(path)
