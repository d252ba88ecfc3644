"""The box validation report: one self-contained HTML page for one or more box files.

The page holds, per box file (one method on one split): the original scripts' four numbers plus invalid
boxes and unreadable images, histograms, per-image checks, a grid of images with their boxes
drawn (a deterministic sample plus the images with the most boxes, with none and with flagged
problems), the unreadable images with their reasons, box quality against ground truth when the
stats carry it, and a side-by-side comparison when several methods are shown.

Only the sampled images are decoded, so the page costs the same whatever the split size; all the
numbers come from the stats JSON (computed here with `compute_stats` when not given).
When the images are not on disk (e.g. a real CIRR box file without the dataset) the page still
renders the statistics and plots and says plainly that the images are missing; an empty box file
(`{}`) is named as empty.
"""

from __future__ import annotations

import base64
import io
import logging
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import jinja2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cirflow.boxes.detectors import METHODS
from cirflow.boxes.quality import iou_matrix
from cirflow.boxes.stats import compute_stats
from cirflow.data.box_format import box_area, box_problem, read_box_file, sidecar_path
from cirflow.data.cirr import CirrDataset, split_file
from cirflow.data.images import read_image
from cirflow.errors import CirflowError
from cirflow.io import read_json, write_bytes_atomic, write_text_atomic
from cirflow.report import plots

log = logging.getLogger(__name__)

# The image-name prefix CIRR uses for each split (val images are called dev-…).
NAME_PREFIX_SPLIT = {"train": "train", "dev": "val", "test1": "test1"}

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
# Lists in the page are cut at these lengths (the page says how many were left out).
MAX_LISTED = 200
MAX_EXAMPLES = 10

DEFAULTS = {
    "samples_per_split": 12,
    "extra_per_group": 6,
    "thumb_size": 256,
    "seed": 0,
}
PLOT_FILES = {
    "boxes_per_image": "boxes_per_image.png",
    "area": "box_area.png",
    "aspect": "box_aspect_ratio.png",
    "classes": "classes.png",
    "methods": "methods_comparison.png",
}
BOX_COLORS = [
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
]


# ----------------------------------------------------------------------------- inputs


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
        try:
            source.stats["quality"] = box_quality(source.boxes, gt)
        except CirflowError as exc:
            raise CirflowError(f"{source.box_path} against {gt_path}: {exc}") from None


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


def dataset_root_of_split_file(path: str | Path) -> Path:
    """`<root>/cirr/image_splits/split.rc2.<split>.json` -> `<root>`."""
    path = Path(path)
    if path.parent.name != "image_splits" or path.parent.parent.name != "cirr":
        raise CirflowError(
            f"{path}: expected a split file at <root>/cirr/image_splits/split.rc2.<split>.json"
        )
    return path.parents[2]


# ----------------------------------------------------------------------------- checks


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
class DatasetView:
    """What of the dataset is available for one source: split file, image files."""

    status: str  # "ok" | "partial" | "missing" | "empty" (the box file lists no image)
    message: str
    dataset: CirrDataset | None = None
    found: int = 0
    not_in_split_file: list[str] = field(default_factory=list)
    not_in_box_file: list[str] = field(default_factory=list)
    split_file: str | None = None

    def path(self, name: str) -> Path | None:
        if self.dataset is None or name not in self.dataset.images:
            return None
        return self.dataset.image_path(name)


def open_dataset(cirr_root: str | Path | None, split: str | None, names: list[str]) -> DatasetView:
    """Find the images of `names` under `cirr_root` (never raises: says what is missing)."""
    if cirr_root is None:
        return DatasetView(
            "missing",
            "The images are missing: no dataset root was given (--cirr-root), so no image is "
            "drawn. The statistics and plots are complete.",
        )
    if split is None:
        return DatasetView(
            "missing",
            "The images are missing: the split of this box file is unknown (no sidecar and the "
            "image names are not CIRR's), so its images cannot be located.",
        )
    try:
        dataset = CirrDataset(cirr_root, split, with_captions=False)
    except CirflowError as exc:
        return DatasetView(
            "missing",
            f"The images are missing: {exc}. The statistics and plots are complete; no image "
            "is drawn.",
            split_file=str(split_file(cirr_root, split)),
        )
    in_split = dataset.images
    not_in_split = sorted(n for n in names if n not in in_split)
    name_set = set(names)
    not_in_boxes = sorted(n for n in in_split if n not in name_set)
    found = sum(1 for n in names if n in in_split and (dataset.root / in_split[n]).is_file())
    view = DatasetView(
        "ok",
        "",
        dataset=dataset,
        found=found,
        not_in_split_file=not_in_split,
        not_in_box_file=not_in_boxes,
        split_file=str(split_file(cirr_root, split)),
    )
    listed = len(names) - len(not_in_split)
    if found == 0:
        view.status = "missing"
        view.message = (
            f"The images are missing: none of the {listed:,} images of this box file that "
            f"{view.split_file} lists was found under {dataset.root}. The statistics and plots "
            "are complete; no image is drawn."
        )
    elif found < listed:
        view.status = "partial"
        view.message = (
            f"{listed - found:,} of {listed:,} images are missing under {dataset.root}; they are "
            "left out of the grids."
        )
    return view


# ----------------------------------------------------------------------------- drawing


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def draw_thumbnail(
    image: Image.Image,
    boxes: list,
    labels: list | None = None,
    scores: list | None = None,
    size: int = 256,
) -> bytes:
    """The image scaled to fit `size` px with its valid boxes drawn and numbered (JPEG bytes)."""
    thumb = image.copy()
    thumb.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    w, h = thumb.size
    draw = ImageDraw.Draw(thumb)
    font = _font(11)
    for i, box in enumerate(boxes):
        if box_problem(box):
            continue
        color = BOX_COLORS[i % len(BOX_COLORS)]
        x1, y1, x2, y2 = box[0] * w, box[1] * h, box[2] * w, box[3] * h
        draw.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=color, width=2)
        text = f"{i + 1}"
        if labels and i < len(labels) and labels[i] not in (None, ""):
            text += f" {labels[i]}"
        if scores and i < len(scores) and isinstance(scores[i], (int, float)):
            text += f" {scores[i]:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left + 4, bottom - top + 3
        tx = min(max(0.0, x1), max(0.0, w - tw))
        ty = y1 - th if y1 - th >= 0 else y1
        draw.rectangle([tx, ty, tx + tw, ty + th], fill=color)
        draw.text((tx + 2 - left, ty + 1 - top), text, fill=(255, 255, 255), font=font)
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


# ----------------------------------------------------------------------------- sampling


def select_groups(
    names: list[str],
    boxes: dict[str, list],
    flags: dict[str, list[str]],
    unreadable: set[str],
    samples: int,
    extra: int,
    seed: int,
    split: str | None,
) -> list[dict]:
    """The grids of one source: a deterministic sample, most boxes, no boxes, flagged.

    Depends only on the names, boxes, flags and `seed` (and the split), never on the order of
    the file or on the images being available.
    """
    candidates = sorted(n for n in names if n not in unreadable)
    rng = random.Random(f"cirflow-report/{seed}/{split}")
    shuffled = candidates[:]
    rng.shuffle(shuffled)
    sample = sorted(shuffled[:samples])
    most = sorted((n for n in candidates if boxes[n]), key=lambda n: (-len(boxes[n]), n))[:extra]
    none = sorted(n for n in shuffled if not boxes[n])[:extra] if extra else []
    severity = {code: i for i, code in enumerate(CHECKS)}
    flagged = sorted(
        (n for n in candidates if flags.get(n)),
        key=lambda n: (min(severity[c] for c in flags[n]), n),
    )[:extra]
    return [
        {
            "key": "sample",
            "title": f"Random sample ({len(sample)} of {len(candidates):,}, seed {seed})",
            "names": sample,
        },
        {"key": "most", "title": "Most boxes", "names": most},
        {"key": "none", "title": "No boxes", "names": none},
        {"key": "flagged", "title": "Flagged by the checks", "names": flagged},
    ]


# ----------------------------------------------------------------------------- the page


def _fmt_int(value) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def summary_rows(stats: dict) -> list[dict]:
    """The original scripts' four numbers plus invalid boxes and unreadable images, as shown in the page."""
    return [
        {"key": "images", "name": "Total images", "text": _fmt_int(stats["images"])},
        {
            "key": "images_with_boxes",
            "name": "Images with boxes",
            "text": _fmt_int(stats["images_with_boxes"]),
        },
        {
            "key": "pct_with_boxes",
            "name": "% images with boxes",
            "text": f"{stats['pct_with_boxes']:.2f}%",
        },
        {"key": "total_boxes", "name": "Total boxes", "text": _fmt_int(stats["total_boxes"])},
        {
            "key": "boxes_per_image",
            "name": "Avg boxes per image",
            "text": f"{stats['boxes_per_image']:.2f}",
        },
        {
            "key": "invalid_boxes",
            "name": "Invalid boxes",
            "text": _fmt_int(stats.get("invalid_boxes", 0)),
        },
        {"key": "errors", "name": "Unreadable images", "text": _fmt_int(stats.get("errors", 0))},
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
                    rows.append({"key": f"{key}.{sub}", "text": _fmt_value(v), "value": v})
        elif isinstance(value, (int, float, str, bool)) or value is None:
            rows.append({"key": key, "text": _fmt_value(value), "value": value})
    return rows


def _fmt_value(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.2f}"
    return str(value)


def _comparison_rows(sources: list[BoxSource], extra: list[dict]) -> list[dict]:
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


def _template_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cirflow.report", "templates"),
        autoescape=jinja2.select_autoescape(["html"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["int"] = _fmt_int
    env.filters["value"] = _fmt_value
    return env


def _yaml_text(config: dict) -> str:
    import yaml

    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def _version() -> str:
    try:
        return metadata.version("cirflow")
    except metadata.PackageNotFoundError:
        return "unknown"


def _analyse_source(source: BoxSource, cirr_root, settings: dict) -> dict:
    """Everything the page shows for one source, with the sample images drawn."""
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
    check_rows = []
    for code, text in CHECKS.items():
        if code == "no_meta" and not has_meta:
            continue
        hit = sorted(n for n, f in flags.items() if code in f)
        check_rows.append(
            {"code": code, "text": text, "count": len(hit), "examples": hit[:MAX_EXAMPLES]}
        )
    invalid = []
    for n in names:
        for i, box in enumerate(source.boxes[n]):
            problem = box_problem(box)
            if problem:
                invalid.append({"image": n, "box": i + 1, "coords": repr(box), "problem": problem})

    # A method with one label for every box (saliency: "salient") gains nothing from printing it.
    show_labels = len(source.stats.get("labels") or {}) > 1
    if not names:
        view = DatasetView(
            "empty",
            f"The box file is empty: {source.box_path} holds {{}} (no image at all, not even "
            "[] entries), so there is nothing to check or draw. Was detection run, and on the "
            "right split?",
        )
    else:
        view = open_dataset(cirr_root, source.split, names)
    groups = select_groups(
        names,
        source.boxes,
        flags,
        unreadable,
        settings["samples_per_split"],
        settings["extra_per_group"],
        settings["seed"],
        source.split,
    )
    drawn: dict[str, dict] = {}
    late_errors = []
    for group in groups:
        items = []
        for name in group["names"]:
            if name not in drawn:
                drawn[name] = _draw_item(
                    source, name, flags.get(name, []), view, settings, show_labels
                )
                if drawn[name]["error"] and view.status != "missing":
                    late_errors.append({"image": name, "error": drawn[name]["error"]})
            items.append(drawn[name])
        group["items"] = items
    return {
        "source": source,
        "summary": summary_rows(source.stats),
        "quality": quality_rows(source.stats.get("quality")),
        "checks": check_rows,
        "flagged_images": len(flags),
        "invalid": invalid[:MAX_LISTED],
        "invalid_total": len(invalid),
        "errors": errors[:MAX_LISTED],
        "errors_total": len(errors),
        "late_errors": late_errors,
        "dataset": view,
        "groups": groups,
        "sources_count": dict(source.stats.get("sources") or {}),
    }


def _draw_item(
    source: BoxSource,
    name: str,
    flags: list[str],
    view: DatasetView,
    settings: dict,
    show_labels: bool = True,
) -> dict:
    boxes = source.boxes[name]
    info = ((source.meta or {}).get("images") or {}).get(name, {})
    labels = info.get("labels") if show_labels else None
    scores = info.get("scores")
    item = {
        "name": name,
        "n_boxes": len(boxes),
        "flags": [CHECKS[f] for f in flags],
        "source": info.get("source"),
        "uri": None,
        "error": None,
        "size": info.get("size"),
    }
    if view.status == "missing":
        return item
    path = view.path(name)
    if path is None:
        item["error"] = "not in the split file"
        return item
    read = read_image(path)
    if not read.ok:
        item["error"] = read.error
        return item
    jpeg = draw_thumbnail(read.image, boxes, labels, scores, settings["thumb_size"])
    item["uri"] = data_uri(jpeg, "image/jpeg")
    item["size"] = list(read.size)
    return item


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count:,} {one if count == 1 else (many or one + 's')}"


def _notices(source: BoxSource, view: DatasetView) -> list[dict]:
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


def _drawn_count(analysed_source: dict) -> int:
    """Distinct images drawn for one source (an image can sit in several grids)."""
    return len({i["name"] for g in analysed_source["groups"] for i in g["items"] if i["uri"]})


def build_boxes_report(
    sources: list[BoxSource],
    out_html: str | Path,
    *,
    cirr_root: str | Path | None = None,
    settings: dict | None = None,
    compare_stats: list[dict] | None = None,
    plots_dir: str | Path | None = None,
    title: str | None = None,
    config: dict | None = None,
) -> dict:
    """Write the report page (and, if `plots_dir`, the key plots as PNG files).

    sources: the box files shown in full. compare_stats: extra `{method, split, stats}` entries
    (other methods' stats) for the side-by-side comparison. Returns a small summary (paths,
    timings). The stage comparison is on the results page (`cirflow.report.results`): the box
    report never waits for training.
    """
    if not sources:
        raise CirflowError("no box file to report on")
    start = time.perf_counter()
    settings = {**DEFAULTS, **(settings or {})}
    assign_labels(sources)
    analysed = []
    for source in sources:
        t0 = time.perf_counter()
        analysed.append(_analyse_source(source, cirr_root, settings))
        log.info(
            "%s: %d images analysed, %d drawn in %.2f s",
            source.id,
            len(source.boxes),
            _drawn_count(analysed[-1]),
            time.perf_counter() - t0,
        )

    series = [(s.id, s.stats) for s in sources]
    comparison = _comparison_rows(sources, list(compare_stats or []))
    show_comparison = len({r["method"] for r in comparison}) > 1
    figures = []
    t0 = time.perf_counter()
    for key, title_text, data in (
        ("boxes_per_image", "Boxes per image", plots.boxes_per_image_plot(series)),
        ("area", "Box area", plots.area_plot(series)),
        ("aspect", "Box aspect ratio", plots.aspect_plot(series)),
        ("classes", "Classes", plots.classes_plot(series)),
        (
            "methods",
            "Methods side by side",
            plots.methods_plot(comparison) if show_comparison else None,
        ),
    ):
        if data is not None:
            figures.append({"key": key, "title": title_text, "png": data, "file": PLOT_FILES[key]})
    log.info("%d plots in %.2f s", len(figures), time.perf_counter() - t0)

    notices = []
    for a in analysed:
        s, view = a["source"], a["dataset"]
        notices.extend({"source": s.id, **n} for n in _notices(s, view))

    page_title = title or "Box validation: " + ", ".join(dict.fromkeys(s.label for s in sources))
    html = (
        _template_env()
        .get_template("boxes_report.html")
        .render(
            title=page_title,
            analysed=analysed,
            sources=sources,
            figures=[{**f, "uri": data_uri(f["png"], "image/png")} for f in figures],
            comparison=comparison if show_comparison else [],
            comparison_quality=[
                k for k in QUALITY_ORDER if any(k in r["quality"] for r in comparison)
            ],
            notices=notices,
            checks=CHECKS,
            settings=settings,
            config=_yaml_text(config) if config else None,
            cirr_root=str(cirr_root) if cirr_root is not None else None,
            version=_version(),
        )
    )
    write_text_atomic(out_html, html)
    written = []
    if plots_dir is not None:
        plots_dir = Path(plots_dir)
        plots_dir.mkdir(parents=True, exist_ok=True)
        for f in figures:
            write_bytes_atomic(plots_dir / f["file"], f["png"])
            written.append(str(plots_dir / f["file"]))
    seconds = time.perf_counter() - start
    log.info("report written to %s (%.1f KB) in %.2f s", out_html, len(html) / 1024, seconds)
    return {
        "html": str(out_html),
        "plots": written,
        "sources": [s.id for s in sources],
        "images_drawn": sum(_drawn_count(a) for a in analysed),
        "images_missing": [a["source"].id for a in analysed if a["dataset"].status == "missing"],
        "empty_files": [a["source"].id for a in analysed if a["dataset"].status == "empty"],
        "seconds": round(seconds, 3),
    }


def build_method_report(
    *,
    boxes: list[str],
    metas: list[str],
    stats: list[str],
    split_files: list[str],
    out_html: str | Path,
    plots_dir: str | Path | None = None,
    compare_stats: list[str] = (),
    settings: dict | None = None,
    method: str | None = None,
) -> dict:
    """The workflow's per-method page: one box file + sidecar + stats per split, the dataset
    located from its split files, other methods' stats files for the comparison."""
    if not (len(boxes) == len(metas) == len(stats)):
        raise CirflowError(
            f"need one sidecar and one stats file per box file, got {len(boxes)} box files, "
            f"{len(metas)} sidecars and {len(stats)} stats files"
        )
    roots = {dataset_root_of_split_file(p) for p in split_files}
    if len(roots) > 1:
        raise CirflowError(f"split files from several dataset roots: {sorted(map(str, roots))}")
    sources = [
        load_source(b, meta_path=m, stats_path=s, method=method)
        for b, m, s in zip(boxes, metas, stats, strict=True)
    ]
    return build_boxes_report(
        sources,
        out_html,
        cirr_root=roots.pop() if roots else None,
        settings=settings,
        compare_stats=[stats_entry_from_path(p) for p in compare_stats],
        plots_dir=plots_dir,
        title=f"Box validation: {method}" if method else None,
        config=settings,
    )
