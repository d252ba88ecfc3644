"""Box statistics: the original scripts' four numbers plus histograms and problem counts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from cirflow.data.box_format import box_area, box_problem, read_box_file, sidecar_path
from cirflow.io import read_json

# Box area as a fraction of the image, and aspect ratio (width / height in pixels when the
# sidecar gives image sizes, else in normalised units).
AREA_BINS = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0]
ASPECT_BINS = [0.0, 0.25, 0.5, 0.75, 1.0, 1.333, 2.0, 4.0, float("inf")]


def _histogram(values: list[float], edges: list[float]) -> dict:
    counts, _ = np.histogram(np.asarray(values, dtype=float), bins=np.asarray(edges))
    return {"bins": [e if np.isfinite(e) else "inf" for e in edges], "counts": counts.tolist()}


def compute_stats(boxes: dict[str, list], meta: dict | None = None) -> dict:
    """Statistics of a (possibly invalid) box mapping; `meta` is the optional sidecar."""
    images_meta = (meta or {}).get("images", {})
    n_images = len(boxes)
    per_image = Counter()
    areas, aspects = [], []
    invalid = []
    with_boxes = total = 0
    for name, image_boxes in boxes.items():
        valid = []
        for i, box in enumerate(image_boxes):
            problem = box_problem(box)
            if problem:
                invalid.append({"image": name, "box": i, "problem": problem})
            else:
                valid.append(box)
        per_image[len(image_boxes)] += 1
        total += len(image_boxes)
        with_boxes += bool(image_boxes)
        size = images_meta.get(name, {}).get("size")
        for box in valid:
            areas.append(box_area(box))
            w, h = box[2] - box[0], box[3] - box[1]
            if size:
                w, h = w * size[0], h * size[1]
            aspects.append(w / h)
    labels = Counter(label for m in images_meta.values() for label in m.get("labels", []))
    sources = Counter(m["source"] for m in images_meta.values() if m.get("source"))
    errors = (meta or {}).get("errors", [])
    return {
        "images": n_images,
        "images_with_boxes": with_boxes,
        "pct_with_boxes": round(100.0 * with_boxes / n_images, 2) if n_images else 0.0,
        "total_boxes": total,
        "boxes_per_image": round(total / n_images, 4) if n_images else 0.0,
        "boxes_per_image_hist": {str(k): per_image[k] for k in sorted(per_image)},
        "area_hist": _histogram(areas, AREA_BINS),
        "aspect_hist": _histogram(aspects, ASPECT_BINS),
        "labels": dict(labels.most_common()),
        "sources": dict(sorted(sources.items())),
        "invalid_boxes": len(invalid),
        "invalid_examples": invalid[:20],
        "errors": len(errors),
        "error_examples": errors[:20],
    }


def stats_for_file(
    box_path: str | Path,
    meta_path: str | Path | None = None,
    gt_path: str | Path | None = None,
) -> dict:
    """Stats of a box file on disk, with its sidecar if there is one; with ground-truth boxes
    (the demo's boxes_gt.json) also their `quality` (cirflow.boxes.quality.box_quality)."""
    boxes = read_box_file(box_path)
    meta = None
    if meta_path is None:
        candidate = sidecar_path(box_path)
        meta_path = candidate if candidate.exists() else None
    if meta_path is not None:
        meta = read_json(meta_path, what="box sidecar file")
    stats = compute_stats(boxes, meta)
    if gt_path is not None:
        from cirflow.boxes.quality import box_quality, load_gt

        stats["quality"] = box_quality(boxes, load_gt(gt_path), files=(box_path, gt_path))
    return stats


def format_seed_summary(stats: dict, title: str = "") -> str:
    """The original scripts' four numbers, in the original scripts' words."""
    lines = [
        f"== {title} ==" if title else None,
        f"Total images: {stats['images']}",
        f"Images with boxes: {stats['images_with_boxes']} ({stats['pct_with_boxes']:.1f}%)",
        f"Total boxes: {stats['total_boxes']}",
        f"Avg boxes per image: {stats['boxes_per_image']:.2f}",
    ]
    if stats.get("invalid_boxes"):
        lines.append(f"Invalid boxes: {stats['invalid_boxes']}")
    if stats.get("errors"):
        lines.append(f"Unreadable images: {stats['errors']}")
    return "\n".join(line for line in lines if line is not None)
