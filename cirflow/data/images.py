"""Robust image decoding: every failure becomes a reason string, never an exception.

Images are returned as a viewer shows them: EXIF orientation applied, converted to 8-bit RGB
(grayscale, palette, RGBA, 16-bit and CMYK inputs included), so that box coordinates computed
on them are normalised to the image the user sees.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

# 8000×8000 is a legitimate (if large) photo; PIL's default bomb limit (~89 Mpx) would reject
# slightly larger ones with a warning-as-error. Keep a generous but finite cap.
Image.MAX_IMAGE_PIXELS = 200_000_000


@dataclass
class ImageRead:
    path: Path
    image: Image.Image | None  # RGB, EXIF-transposed; None when unreadable
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.image is not None

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) as displayed, or None."""
        return self.image.size if self.image is not None else None


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: scale to 8 bits instead of clipping everything to white.
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() if arr.size else 0.0
        arr = (arr / hi * 255.0) if hi > 255 else arr
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L")
    elif img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        # Composite on white: transparent pixels are undefined colour otherwise.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def read_image(path: str | Path) -> ImageRead:
    """Decode an image fully; return the reason instead of raising when it cannot be read."""
    path = Path(path)
    if not path.exists():
        return ImageRead(path, None, "file not found")
    if path.is_dir():
        return ImageRead(path, None, "is a directory")
    if path.stat().st_size == 0:
        return ImageRead(path, None, "empty file (0 bytes)")
    # LAVIS sets this PIL-wide flag to True on import, which would silently pad a truncated
    # file with grey instead of reporting it. We always want truncation reported.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()  # force full decode: truncated files fail here, not later
                img = ImageOps.exif_transpose(img)
                rgb = _to_rgb(img)
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        return ImageRead(path, None, f"cannot decode image: {type(exc).__name__}: {exc}")
    if rgb.width < 1 or rgb.height < 1:
        return ImageRead(path, None, f"image has no pixels ({rgb.width}x{rgb.height})")
    return ImageRead(path, rgb, None)
