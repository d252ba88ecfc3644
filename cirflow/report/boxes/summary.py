"""The page's tables and notices for the sources: the original scripts' four numbers plus
invalid boxes and unreadable images, box quality against ground truth, the methods compared
side by side, and the problems worth reading first."""

from __future__ import annotations

from cirflow.report.boxes.dataset import DatasetView
from cirflow.report.boxes.sources import BoxSource
from cirflow.report.html import int_text, value_text


def summary_rows(stats: dict) -> list[dict]:
    """The original scripts' four numbers plus invalid boxes and unreadable images, as shown in the page."""
    return [
        {"key": "images", "name": "Total images", "text": int_text(stats["images"])},
        {
            "key": "images_with_boxes",
            "name": "Images with boxes",
            "text": int_text(stats["images_with_boxes"]),
        },
        {
            "key": "pct_with_boxes",
            "name": "% images with boxes",
            "text": f"{stats['pct_with_boxes']:.2f}%",
        },
        {"key": "total_boxes", "name": "Total boxes", "text": int_text(stats["total_boxes"])},
        {
            "key": "boxes_per_image",
            "name": "Avg boxes per image",
            "text": f"{stats['boxes_per_image']:.2f}",
        },
        {
            "key": "invalid_boxes",
            "name": "Invalid boxes",
            "text": int_text(stats.get("invalid_boxes", 0)),
        },
        {"key": "errors", "name": "Unreadable images", "text": int_text(stats.get("errors", 0))},
    ]


QUALITY_ORDER = ("recall", "precision", "f1", "mean_best_iou")


def quality_rows(quality: dict | None) -> list[dict]:
    """Flatten the stats' `quality` dict (one level of nesting) into name/value rows."""
    if not quality or not isinstance(quality, dict):
        return []
    rows = []
    keys = [k for k in QUALITY_ORDER if k in quality] + [
        k for k in quality if k not in QUALITY_ORDER
    ]
    for key in keys:
        value = quality[key]
        if isinstance(value, dict):
            for sub, v in value.items():
                if isinstance(v, (int, float, str, bool)) or v is None:
                    rows.append({"key": f"{key}.{sub}", "text": value_text(v), "value": v})
        elif isinstance(value, (int, float, str, bool)) or value is None:
            rows.append({"key": key, "text": value_text(value), "value": value})
    return rows


def comparison_rows(sources: list[BoxSource], extra: list[dict]) -> list[dict]:
    rows, seen = [], set()
    entries = [{"method": s.label, "split": s.split or "?", "stats": s.stats} for s in sources]
    for entry in entries + extra:
        key = (entry["method"], entry["split"])
        if key in seen:
            continue
        seen.add(key)
        stats = entry["stats"]
        quality = stats.get("quality") or {}
        rows.append(
            {
                "method": entry["method"],
                "split": entry["split"],
                "images": stats["images"],
                "images_with_boxes": stats["images_with_boxes"],
                "pct_with_boxes": stats["pct_with_boxes"],
                "total_boxes": stats["total_boxes"],
                "boxes_per_image": stats["boxes_per_image"],
                "invalid_boxes": stats.get("invalid_boxes", 0),
                "errors": stats.get("errors", 0),
                "quality": {
                    k: quality[k] for k in QUALITY_ORDER if isinstance(quality.get(k), (int, float))
                },
            }
        )
    split_order = {"train": 0, "val": 1, "test1": 2}
    method_order = {m: i for i, m in enumerate(dict.fromkeys(r["method"] for r in rows))}
    rows.sort(key=lambda r: (method_order[r["method"]], split_order.get(r["split"], 9)))
    return rows


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count:,} {one if count == 1 else (many or one + 's')}"


def notices(source: BoxSource, view: DatasetView) -> list[dict]:
    """The problems worth reading first, one line each."""
    notices = []
    if view.message:
        level = "warn" if view.status in ("missing", "empty") else "info"
        notices.append({"level": level, "text": view.message})
    if view.not_in_box_file:
        notices.append(
            {
                "level": "warn",
                "text": f"{_plural(len(view.not_in_box_file), 'image')} of {view.split_file} "
                f"{'has' if len(view.not_in_box_file) == 1 else 'have'} no entry in the box "
                f"file (e.g. {', '.join(view.not_in_box_file[:3])}).",
            }
        )
    if view.not_in_split_file:
        notices.append(
            {
                "level": "warn",
                "text": f"{_plural(len(view.not_in_split_file), 'image')} of the box file "
                f"{'is' if len(view.not_in_split_file) == 1 else 'are'} not in "
                f"{view.split_file} (e.g. {', '.join(view.not_in_split_file[:3])}).",
            }
        )
    if source.stats.get("invalid_boxes"):
        notices.append(
            {
                "level": "warn",
                "text": _plural(source.stats["invalid_boxes"], "invalid box", "invalid boxes")
                + ".",
            }
        )
    if source.stats.get("errors"):
        notices.append(
            {"level": "warn", "text": _plural(source.stats["errors"], "unreadable image") + "."}
        )
    return notices
