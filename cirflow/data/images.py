"""Robust image decoding: every failure becomes a reason string, never an exception.

Images are returned as a viewer shows them: EXIF orientation applied, converted to 8-bit RGB
(grayscale, palette, RGBA, 16-bit and CMYK inputs included), so that box coordinates computed
on them are normalised to the image the user sees.

`check_images` decodes a whole split once and lists what cannot be read; training and
evaluation run it before their first step, leave those images out and fail past a fraction
(`check_unreadable_fraction`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from cirflow.errors import SettingError

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


# ------------------------------------------------------------------------ checking a whole split
@dataclass
class ImageCheck:
    """What a full decode of a split's images found."""

    unreadable: dict[str, str]  # name -> reason, in the order the names were given
    sizes: dict[str, tuple[int, int]]  # name -> (width, height) of every readable image

    @property
    def checked(self) -> int:
        return len(self.unreadable) + len(self.sizes)


def _probe(path: Path) -> tuple[str | None, tuple[int, int] | None]:
    """(error, size) of one image, decoded fully and then dropped (memory stays flat)."""
    read = read_image(path)
    return read.error, read.size


def check_images(
    paths: Mapping[str, str | Path], workers: int = 1, progress: bool = False
) -> ImageCheck:
    """Decode every image of `paths` (name -> file) once, in `workers` threads, and say which
    cannot be read and why. The one check of a split's images before training or evaluation
    (the planned image-features stage of docs/design.md §9 is to take it over)."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    names = list(paths)
    unreadable: dict[str, str] = {}
    sizes: dict[str, tuple[int, int]] = {}
    with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
        results = pool.map(_probe, [Path(paths[n]) for n in names], chunksize=16)
        for name, (error, size) in tqdm(
            zip(names, results, strict=True),
            total=len(names),
            desc="check images",
            unit="img",
            disable=not progress,
            mininterval=5,
        ):
            if error is not None or size is None:
                unreadable[name] = error or "no pixels"
            else:
                sizes[name] = size
    return ImageCheck(unreadable, sizes)


MAX_LISTED = 20


def unreadable_summary(unreadable: Mapping[str, str], limit: int = MAX_LISTED) -> str:
    """'name: reason; name: reason; … (and N more)' for messages."""
    items = [f"{n}: {e}" for n, e in unreadable.items()]
    more = f"; … and {len(items) - limit:,} more" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


def check_unreadable_fraction(
    unreadable: Mapping[str, str], total: int, where: str, max_fraction: float
) -> None:
    """A SettingError of `max_unreadable_fraction` listing the images when more than
    `max_fraction` of `total` cannot be read."""
    if total and len(unreadable) > max_fraction * total:
        raise SettingError(
            "max_unreadable_fraction",
            f"{where}: {len(unreadable):,} of {total:,} images cannot be read, more than "
            f"{{key}} = {max_fraction:g}. Fix or replace them (or raise {{key}}): "
            + unreadable_summary(unreadable),
        )
