"""The post-filter every method's boxes go through: clip, min area, sort, cap."""

from __future__ import annotations

from dataclasses import dataclass, field

from cirflow.data.box_format import box_area, round_box


@dataclass
class Detections:
    """Boxes of one image, normalised to the image as displayed, with per-box score and label."""

    boxes: list[list[float]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    # Which method produced these boxes (matters for hybrid, which may fall back to saliency).
    source: str = ""


def postfilter(det: Detections, min_area: float, max_boxes: int) -> Detections:
    """Clip to [0, 1], drop boxes below `min_area`, sort by area descending, keep `max_boxes`."""
    kept = []
    for box, score, label in zip(det.boxes, det.scores, det.labels, strict=True):
        x1, y1, x2, y2 = (min(1.0, max(0.0, float(v))) for v in box)
        clipped = round_box([x1, y1, x2, y2])
        if clipped[0] >= clipped[2] or clipped[1] >= clipped[3]:
            continue
        area = box_area(clipped)
        if area < min_area:
            continue
        kept.append((area, float(score), clipped, label))
    # Area descending is the original scripts' order; score then coordinates make ties deterministic.
    kept.sort(key=lambda k: (-k[0], -k[1], k[2]))
    kept = kept[:max_boxes]
    return Detections(
        boxes=[k[2] for k in kept],
        scores=[round(k[1], 4) for k in kept],
        labels=[k[3] for k in kept],
        source=det.source,
    )
