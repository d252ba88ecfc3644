"""The retrievals to look at: which val queries the page shows, and their thumbnails.

From the two stages' val_rankings.json (stage 1 and stage 2, `cirflow.evaluate.rankings`):

* a sample of `queries` queries, drawn with `seed` (the same queries whatever the files' order,
  as long as the val queries are the same);
* the `changed` queries whose target rank improved most from stage 1 to stage 2, and the
  `changed` whose rank fell most (a rank beyond the files' rank_limit counts as rank_limit + 1;
  ties by pairid).

Each shown image is a JPEG thumbnail read from the dataset (`cirflow.data.images.read_image`),
embedded as a data: URI; the target is framed wherever it appears, and drawn with its boxes in
the `tokens` region mode (the boxes stage 2 scored it with).
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

from cirflow.data.box_format import box_problem, read_box_file
from cirflow.data.datasets import DatasetRoot, SplitDataset, as_dataset_root
from cirflow.data.images import read_image
from cirflow.errors import CirflowError
from cirflow.report.html import data_uri

TARGET_FRAME = (18, 183, 106)
BOX_COLORS = [(230, 25, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240)]


def rank_order(rank: int | None, limit: int) -> int:
    """A rank to compare by: ranks beyond the file's limit (null) count as limit + 1."""
    return limit + 1 if rank is None else int(rank)


def rank_text(rank: int | None, limit: int) -> str:
    return f">{limit}" if rank is None else str(rank)


def paired_queries(first: dict, second: dict) -> list[tuple[dict, dict]]:
    """(stage-1 entry, stage-2 entry) of every pairid both files rank, by pairid."""
    by_pairid = {q["pairid"]: q for q in second["queries"]}
    pairs = [(q, by_pairid[q["pairid"]]) for q in first["queries"] if q["pairid"] in by_pairid]
    return sorted(pairs, key=lambda p: p[0]["pairid"])


def pick(first: dict, second: dict, queries: int, changed: int, seed: int) -> list[dict]:
    """The groups of queries shown (module docstring): [{key, title, pairs}]."""
    pairs = paired_queries(first, second)
    limit = int(first.get("rank_limit", 50))
    shuffled = pairs[:]
    random.Random(f"cirflow-results/{seed}").shuffle(shuffled)
    sample = sorted(shuffled[:queries], key=lambda p: p[0]["pairid"])

    def change(p):  # > 0: stage 2 ranks the target better
        return rank_order(p[0]["rank"], limit) - rank_order(p[1]["rank"], limit)

    better = sorted((p for p in pairs if change(p) > 0), key=lambda p: (-change(p), p[0]["pairid"]))
    worse = sorted((p for p in pairs if change(p) < 0), key=lambda p: (change(p), p[0]["pairid"]))
    return [
        {
            "key": "sample",
            "title": f"Random sample ({len(sample)} of {len(pairs)} val queries, seed {seed})",
            "pairs": sample,
        },
        {
            "key": "better",
            "title": "Target ranked better by stage 2 (largest gains)",
            "pairs": better[:changed],
        },
        {
            "key": "worse",
            "title": "Target ranked worse by stage 2 (largest losses)",
            "pairs": worse[:changed],
        },
    ]


@dataclass
class Thumbnails:
    """JPEG thumbnails of one split's images as data: URIs, each drawn once."""

    root: DatasetRoot | Path | None  # a plain path: CIRR's layout
    split: str
    size: int
    boxes: dict[str, list] | None = None
    max_boxes: int | None = None
    dataset: SplitDataset | None = field(init=False, default=None)
    problem: str | None = field(init=False, default=None)
    drawn: int = field(init=False, default=0)
    _cache: dict = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.root is None:
            self.problem = "no dataset root"
            return
        try:
            self.dataset = as_dataset_root(self.root).open(self.split, with_captions=False)
        except CirflowError as exc:
            self.problem = str(exc)

    def uri(self, name: str, target: bool = False) -> tuple[str | None, str | None]:
        """(data URI, None) or (None, why it cannot be shown)."""
        key = (name, target)
        if key not in self._cache:
            self._cache[key] = self._draw(name, target)
        return self._cache[key]

    def _draw(self, name: str, target: bool) -> tuple[str | None, str | None]:
        if self.dataset is None:
            return None, f"images missing: {self.problem}"
        if name not in self.dataset.images:
            return None, f"not in the {self.split} split file"
        read = read_image(self.dataset.image_path(name))
        if not read.ok:
            return None, read.error
        thumb = read.image.copy()
        thumb.thumbnail((self.size, self.size), Image.Resampling.BILINEAR, reducing_gap=2.0)
        draw = ImageDraw.Draw(thumb)
        w, h = thumb.size
        if target and self.boxes is not None:
            valid = [b for b in self.boxes.get(name, []) if not box_problem(b)]
            for i, box in enumerate(valid[: self.max_boxes]):
                x1, y1, x2, y2 = box[0] * w, box[1] * h, box[2] * w, box[3] * h
                color = BOX_COLORS[i % len(BOX_COLORS)]
                draw.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=color, width=2)
        if target:
            draw.rectangle([0, 0, w - 1, h - 1], outline=TARGET_FRAME, width=max(3, w // 30))
        buffer = io.BytesIO()
        thumb.save(buffer, format="JPEG", quality=85)
        self.drawn += 1
        return data_uri(buffer.getvalue(), "image/jpeg"), None


def load_target_boxes(path: str | Path | None) -> dict[str, list] | None:
    """The val box file stage 2 scored with (tokens mode), or None."""
    return read_box_file(path) if path else None
