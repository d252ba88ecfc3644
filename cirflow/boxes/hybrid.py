"""Hybrid boxes: YOLO first; saliency regions for the images where YOLO finds nothing.

Config: the method's subtree {"yolo": {...}, "saliency": {...}, "hybrid": {...}} with
    hybrid.fallback_regions   saliency regions kept for a fallback image (overrides
                              saliency.max_regions for the fallback only)
    hybrid.min_yolo_area      YOLO "found something" only if one of its boxes covers at least this
                              fraction of the image; set it to boxes.postfilter.min_area so that an
                              image whose YOLO boxes the post-filter would all drop falls back too.
Each image's `Detections.source` says which method produced its boxes ("yolo" or "saliency"),
and the sidecar keeps it per image.
"""

from __future__ import annotations

from cirflow.boxes.postfilter import Detections
from cirflow.boxes.saliency import SaliencyDetector
from cirflow.boxes.yolo import YoloDetector
from cirflow.data.box_format import box_area
from cirflow.errors import CirflowError

HYBRID_DEFAULTS = {"fallback_regions": 3, "min_yolo_area": 0.002}


class HybridDetector:
    name = "hybrid"

    def __init__(self, config: dict, yolo: YoloDetector | None = None):
        settings = {**HYBRID_DEFAULTS, **(config.get("hybrid") or {})}
        unknown = sorted(set(settings) - set(HYBRID_DEFAULTS))
        if unknown:
            raise CirflowError(
                f"boxes.hybrid: unknown key(s) {', '.join(unknown)} "
                f"(known: {', '.join(HYBRID_DEFAULTS)})"
            )
        self.fallback_regions = int(settings["fallback_regions"])
        self.min_yolo_area = float(settings["min_yolo_area"])
        if self.fallback_regions < 1:
            raise CirflowError("boxes.hybrid.fallback_regions must be at least 1")
        if not 0.0 <= self.min_yolo_area < 1.0:
            raise CirflowError("boxes.hybrid.min_yolo_area must be in [0, 1)")
        self.yolo = yolo if yolo is not None else YoloDetector(**(config.get("yolo") or {}))
        saliency_cfg = {**(config.get("saliency") or {}), "max_regions": self.fallback_regions}
        self.saliency = SaliencyDetector(**saliency_cfg)
        self.batch_size = self.yolo.batch_size

    def yolo_found(self, det: Detections) -> bool:
        """Whether YOLO's boxes count as a find (one box at least min_yolo_area, clipped)."""
        for box in det.boxes:
            clipped = [min(1.0, max(0.0, float(v))) for v in box]
            if clipped[0] < clipped[2] and clipped[1] < clipped[3]:
                if box_area(clipped) >= self.min_yolo_area:
                    return True
        return False

    def detect(self, images: list) -> list[Detections]:
        out = []
        for image, det in zip(images, self.yolo.detect(images), strict=True):
            if self.yolo_found(det):
                det.source = "yolo"
                out.append(det)
            else:
                fallback = self.saliency.detect_one(image)
                fallback.source = "saliency"
                out.append(fallback)
        return out
