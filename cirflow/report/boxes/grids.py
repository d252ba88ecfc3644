"""The page's image grids: which images each grid shows (`select_groups`: a deterministic
sample, the most boxes, no boxes, flagged) and each drawn once as a thumbnail with its boxes
numbered. Only these images are decoded, so a page costs the same whatever the split size."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from cirflow.data.box_format import box_problem
from cirflow.data.images import read_image
from cirflow.report.boxes.checks import CHECKS
from cirflow.report.boxes.dataset import DatasetView
from cirflow.report.boxes.sources import BoxSource
from cirflow.report.html import data_uri

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


@dataclass(frozen=True)
class Sampling:
    """How many images the grids of one source show, and the seed of the random sample."""

    samples: int  # the random sample
    extra: int  # each of: most boxes, no boxes, flagged
    seed: int


def select_groups(
    names: list[str],
    boxes: dict[str, list],
    flags: dict[str, list[str]],
    unreadable: set[str],
    sampling: Sampling,
    split: str | None,
) -> list[dict]:
    """The grids of one source: a deterministic sample, most boxes, no boxes, flagged.

    Depends only on the names, boxes, flags and the seed (and the split), never on the order of
    the file or on the images being available.
    """
    samples, extra, seed = sampling.samples, sampling.extra, sampling.seed
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


def draw_groups(
    source: BoxSource,
    groups: list[dict],
    flags: dict[str, list[str]],
    view: DatasetView,
    thumb_size: int,
) -> list[dict]:
    """Set each group's `items` (each image drawn once, however many grids show it); returns the
    images that failed to draw though the dataset is there."""
    drawn: dict[str, dict] = {}
    late_errors = []
    for group in groups:
        items = []
        for name in group["names"]:
            if name not in drawn:
                drawn[name] = _draw_item(source, name, flags.get(name, []), view, thumb_size)
                if drawn[name]["error"] and view.status != "missing":
                    late_errors.append({"image": name, "error": drawn[name]["error"]})
            items.append(drawn[name])
        group["items"] = items
    return late_errors


def _draw_item(
    source: BoxSource, name: str, flags: list[str], view: DatasetView, thumb_size: int
) -> dict:
    boxes = source.boxes[name]
    info = ((source.meta or {}).get("images") or {}).get(name, {})
    # A method with one label for every box (saliency: "salient") gains nothing from printing it.
    show_labels = len(source.stats.get("labels") or {}) > 1
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
    jpeg = draw_thumbnail(read.image, boxes, labels, scores, thumb_size)
    item["uri"] = data_uri(jpeg, "image/jpeg")
    item["size"] = list(read.size)
    return item
