"""Spectral-residual saliency boxes (OpenCV contrib's StaticSaliencySpectralResidual).

Map → blur → threshold at mean + k·std → fragments grouped by dilation → one box per group,
ranked by the total saliency they hold. Works on a copy resized to `work_size` (the spectral
residual itself runs at 64 px, so larger inputs only cost decode time).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from cirflow.boxes.postfilter import Detections
from cirflow.errors import CirflowError


@dataclass
class SaliencyDetector:
    work_size: int = 128
    blur: int = 1
    threshold_k: float = 1.5
    close_kernel: int = 11
    max_regions: int = 5
    peak_fraction: float = 0.5
    name: str = "saliency"
    batch_size: int = 1

    def __post_init__(self) -> None:
        if not hasattr(cv2, "saliency"):
            raise CirflowError(
                "OpenCV has no cv2.saliency: install opencv-contrib-python-headless LAST "
                "(`make install` does this; another opencv package overwrote it)"
            )
        self._saliency = cv2.saliency.StaticSaliencySpectralResidual_create()

    def detect(self, images: list[Image.Image]) -> list[Detections]:
        return [self.detect_one(img) for img in images]

    def saliency_map(self, image: Image.Image) -> np.ndarray:
        """Saliency in [0, 1] at the working resolution (longer side = work_size)."""
        w, h = image.size
        scale = self.work_size / max(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = image.resize(size, Image.Resampling.BILINEAR) if scale < 1 else image
        bgr = np.ascontiguousarray(np.asarray(small)[:, :, ::-1])
        ok, smap = self._saliency.computeSaliency(bgr)
        if not ok:
            return np.zeros(bgr.shape[:2], dtype=np.float32)
        smap = smap.astype(np.float32)
        if self.blur > 0:
            k = 2 * self.blur + 1
            smap = cv2.GaussianBlur(smap, (k, k), 0)
        return smap

    def detect_one(self, image: Image.Image) -> Detections:
        smap = self.saliency_map(image)
        mh, mw = smap.shape
        # A flat map (uniform image) has nothing salient; thresholding it would box noise.
        if mh < 2 or mw < 2 or float(smap.max() - smap.min()) < 0.05 * float(smap.max()):
            return Detections(source=self.name)
        threshold = float(smap.mean() + self.threshold_k * smap.std())
        mask = (smap > threshold).astype(np.uint8)
        # Spectral residual lights up an object's outline, often in fragments. Group fragments
        # with a dilated copy of the mask, but measure each box on the undilated mask so the
        # grouping does not inflate it.
        groups = mask
        if self.close_kernel > 1:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (self.close_kernel,) * 2)
            groups = cv2.dilate(mask, kernel)
        n_groups, group_of = cv2.connectedComponents(groups, connectivity=8)
        regions = []
        for g in range(1, n_groups):
            in_group = (group_of == g) & (mask > 0)
            # The map is blurred, so the outline's halo spreads outwards; the pixels above
            # `peak_fraction` of the group's peak sit on the object's real edges.
            peak = float(smap[in_group].max())
            ys, xs = np.nonzero(in_group & (smap >= self.peak_fraction * peak))
            x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
            mass = float(smap[in_group].sum())
            regions.append((mass, (float(x0 / mw), float(y0 / mh), float(x1 / mw), float(y1 / mh))))
        regions.sort(key=lambda r: (-r[0], r[1]))
        regions = regions[: self.max_regions]
        total = sum(r[0] for r in regions) or 1.0
        return Detections(
            boxes=[list(r[1]) for r in regions],
            scores=[r[0] / total for r in regions],
            labels=["salient"] * len(regions),
            source=self.name,
        )
