"""Box quality against ground-truth boxes: recall and precision at an IoU threshold, mean best IoU.

For every image of the prediction file that has ground truth (the demo's `boxes_gt.json` covers
all splits, a prediction file one split):
  * predictions and ground-truth boxes are matched one to one, greedily by IoU (highest first),
    only pairs with IoU >= threshold (0.5 by default);
  * recall    = matched / ground-truth boxes,  precision = matched / predicted boxes;
  * best IoU of a ground-truth box = its highest IoU with any prediction (0 without one);
    `mean_best_iou` averages it over all ground-truth boxes.
Coordinates are normalised; IoU does not change under the per-axis scaling to pixels.

    cirflow boxes quality PRED GT [--iou 0.5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from cirflow.data.box_format import box_problem, read_box_file
from cirflow.errors import CirflowError
from cirflow.io import write_json_atomic

DEFAULT_IOU = 0.5


def iou_matrix(a: list, b: list) -> np.ndarray:
    """IoU of every box of `a` (rows) with every box of `b` (columns)."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    a = np.asarray(a, dtype=np.float64)[:, None, :]
    b = np.asarray(b, dtype=np.float64)[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def match_image(gt: list, pred: list, iou_threshold: float) -> tuple[int, list[float]]:
    """(one-to-one matches at IoU >= threshold, best IoU of each ground-truth box)."""
    ious = iou_matrix(gt, pred)
    if ious.size == 0:
        return 0, [0.0] * len(gt)
    best = ious.max(axis=1).tolist()
    rows, cols = np.nonzero(ious >= iou_threshold)
    order = np.argsort(-ious[rows, cols], kind="stable")
    used_gt, used_pred = set(), set()
    for k in order:
        g, p = int(rows[k]), int(cols[k])
        if g not in used_gt and p not in used_pred:
            used_gt.add(g)
            used_pred.add(p)
    return len(used_gt), best


def box_quality(
    pred: dict,
    gt: dict,
    iou_threshold: float = DEFAULT_IOU,
    files: tuple[str | Path, str | Path] = ("the prediction file", "the ground truth"),
) -> dict:
    """Quality of predicted boxes `pred` against ground truth `gt` (both name -> boxes);
    `files`: where each came from, for the messages."""
    if not 0.0 < iou_threshold <= 1.0:
        raise CirflowError(f"IoU threshold must be in (0, 1] (got {iou_threshold})")
    names = sorted(n for n in pred if n in gt)
    if not names:
        raise CirflowError(no_overlap_message(pred, gt, files))
    n_gt = n_pred = matched = 0
    best_ious: list[float] = []
    no_pred = all_found = 0
    for name in names:
        p = [b for b in pred[name] if box_problem(b) is None]
        g = gt[name]
        m, best = match_image(g, p, iou_threshold)
        n_gt += len(g)
        n_pred += len(p)
        matched += m
        best_ious += best
        no_pred += not p
        all_found += m == len(g)
    recall = matched / n_gt if n_gt else 0.0
    precision = matched / n_pred if n_pred else 0.0
    f1 = 2 * recall * precision / (recall + precision) if recall + precision else 0.0
    return {
        "iou_threshold": iou_threshold,
        "images": len(names),
        "images_without_gt": len(pred) - len(names),
        "images_without_predictions": no_pred,
        "images_all_gt_found": all_found,
        "gt_boxes": n_gt,
        "pred_boxes": n_pred,
        "matched": matched,
        "recall": round(recall, 4),
        "precision": round(precision, 4),
        "f1": round(f1, 4),
        "mean_best_iou": round(float(np.mean(best_ious)), 4) if best_ious else 0.0,
    }


def no_overlap_message(pred: dict, gt: dict, files: tuple[str | Path, str | Path]) -> str:
    """Why no image can be scored: an empty prediction file, or one of other images."""
    pred_file, gt_file = files
    if not pred:
        return (
            f"{pred_file} is empty (no image at all, not even [] entries): nothing to compare "
            f"with the {len(gt):,} images of {gt_file}. Was detection run on this split (its "
            "shard files, the merge_boxes log)?"
        )
    return (
        f"none of the {len(pred):,} images of {pred_file} (e.g. {next(iter(pred))!r}) is in "
        f"{gt_file} ({len(gt):,} images): boxes of another dataset or split?"
    )


def load_gt(path: str | Path) -> dict:
    """Ground-truth boxes (the original scripts' format); every box must be valid."""
    data = read_box_file(path)
    for name, boxes in data.items():
        for i, box in enumerate(boxes):
            problem = box_problem(box)
            if problem:
                raise CirflowError(
                    f"{path}: ground-truth image {name!r}, box #{i} {box!r}: {problem}"
                )
    return data


def quality_for_files(
    pred_path: str | Path, gt_path: str | Path, iou_threshold: float = DEFAULT_IOU
) -> dict:
    return box_quality(
        read_box_file(pred_path), load_gt(gt_path), iou_threshold, (pred_path, gt_path)
    )


def format_quality(q: dict, title: str = "") -> str:
    lines = [f"== {title} ==" if title else None]
    lines += [
        f"Images with ground truth: {q['images']} ({q['images_without_gt']} without, skipped)",
        f"Ground-truth boxes: {q['gt_boxes']}  predicted boxes: {q['pred_boxes']}  "
        f"matched: {q['matched']}",
        f"Recall@{q['iou_threshold']:g}: {100 * q['recall']:.1f}%",
        f"Precision@{q['iou_threshold']:g}: {100 * q['precision']:.1f}%",
        f"Mean best IoU per ground-truth box: {q['mean_best_iou']:.3f}",
    ]
    return "\n".join(line for line in lines if line is not None)


def cmd_quality(args: argparse.Namespace) -> int:
    q = quality_for_files(args.pred, args.gt, args.iou)
    print(format_quality(q, title=f"{args.pred} vs {args.gt}"))
    if args.json:
        write_json_atomic(args.json, q, indent=2)
        print(f"quality written to {args.json}")
    elif args.print_json:
        json.dump(q, sys.stdout, indent=2)
        print()
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "quality",
        help="recall/precision at IoU 0.5 and mean best IoU of a box file against ground truth",
    )
    p.add_argument("pred", help="predicted box file (the original scripts' format)")
    p.add_argument(
        "gt",
        help="ground-truth box file (the original scripts' format, e.g. the demo's boxes_gt.json)",
    )
    p.add_argument("--iou", type=float, default=DEFAULT_IOU, help="match threshold (0.5)")
    p.add_argument("--json", default=None, help="write the figures here")
    p.add_argument("--print-json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=cmd_quality)
