"""SPRC's image pipeline — TargetPad(1.25) → Resize(S, bicubic) → CenterCrop(S) → CLIP mean/std —
and the same geometry applied to boxes.

Both go through one `Geometry`, so an image and its boxes can never disagree:

    TargetPad(r): when max(w, h) / min(w, h) ≥ r, pad the short side with black, symmetrically,
                  by p = int((max(w, h) / r − short) / 2) on each side (else leave the image alone)
    Resize(S):    the short side becomes S, the long side int(S · long / short) (torchvision's rule)
    CenterCrop(S): offset round((side − S) / 2) on each axis (torchvision's rule)

Images are kept as uint8 after the crop (exactly what ToTensor would see); `normalize` turns a
batch into CLIP-normalised floats on the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TARGET_RATIO = 1.25
MIN_BOX_FRACTION = 0.25  # a mapped box keeps at least this fraction of its area after the crop


@dataclass(frozen=True)
class Geometry:
    """Where the original image's pixels land in the S×S model input."""

    width: int  # original size
    height: int
    pad_x: int  # TargetPad, each side
    pad_y: int
    resized_w: int  # after Resize
    resized_h: int
    crop_x: int  # CenterCrop offsets in the resized image
    crop_y: int
    size: int

    @property
    def padded_w(self) -> int:
        return self.width + 2 * self.pad_x

    @property
    def padded_h(self) -> int:
        return self.height + 2 * self.pad_y

    def to_input(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Original-image pixel coordinates → model-input pixel coordinates."""
        sx = self.resized_w / self.padded_w
        sy = self.resized_h / self.padded_h
        return (x + self.pad_x) * sx - self.crop_x, (y + self.pad_y) * sy - self.crop_y


def geometry(width: int, height: int, size: int, target_ratio: float = TARGET_RATIO) -> Geometry:
    long_side, short_side = max(width, height), min(width, height)
    pad_x = pad_y = 0
    if long_side / short_side >= target_ratio:
        scaled = long_side / target_ratio
        pad_x = max(int((scaled - width) / 2), 0)
        pad_y = max(int((scaled - height) / 2), 0)
    pw, ph = width + 2 * pad_x, height + 2 * pad_y
    if pw <= ph:
        rw, rh = size, int(size * ph / pw)
    else:
        rw, rh = int(size * pw / ph), size
    crop_x = int(round((rw - size) / 2.0))
    crop_y = int(round((rh - size) / 2.0))
    return Geometry(width, height, pad_x, pad_y, rw, rh, crop_x, crop_y, size)


def preprocess(
    image: Image.Image, size: int, target_ratio: float = TARGET_RATIO
) -> tuple[torch.Tensor, Geometry]:
    """PIL RGB image → (uint8 tensor (3, S, S), its Geometry)."""
    geo = geometry(image.width, image.height, size, target_ratio)
    if geo.pad_x or geo.pad_y:
        canvas = Image.new("RGB", (geo.padded_w, geo.padded_h), (0, 0, 0))
        canvas.paste(image, (geo.pad_x, geo.pad_y))
        image = canvas
    image = image.resize((geo.resized_w, geo.resized_h), Image.BICUBIC)
    image = image.crop((geo.crop_x, geo.crop_y, geo.crop_x + size, geo.crop_y + size))
    arr = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous(), geo


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, S, S) → CLIP-normalised float32, on the images' device."""
    mean = torch.tensor(CLIP_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def map_boxes(
    boxes: list[list[float]] | np.ndarray, geo: Geometry, min_fraction: float = MIN_BOX_FRACTION
) -> tuple[np.ndarray, int]:
    """Normalised original-image boxes → input-pixel boxes (K, 4), clipped to [0, S].

    A box whose clipped area is below `min_fraction` of its mapped area (the crop cut most of it
    away) is dropped; returns (kept boxes, number dropped).
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(b) == 0:
        return np.zeros((0, 4), dtype=np.float32), 0
    x1, y1 = geo.to_input(b[:, 0] * geo.width, b[:, 1] * geo.height)
    x2, y2 = geo.to_input(b[:, 2] * geo.width, b[:, 3] * geo.height)
    full = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    s = float(geo.size)
    cx1, cy1, cx2, cy2 = (np.clip(v, 0.0, s) for v in (x1, y1, x2, y2))
    clipped = np.clip(cx2 - cx1, 0, None) * np.clip(cy2 - cy1, 0, None)
    keep = (full > 0) & (clipped > 0) & (clipped >= min_fraction * full)
    out = np.stack([cx1, cy1, cx2, cy2], axis=1)[keep].astype(np.float32)
    return out, int((~keep).sum())
