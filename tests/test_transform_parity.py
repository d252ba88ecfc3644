"""Pixel parity of `cirflow.data.transforms.preprocess` with SPRC's image pipeline built from
torchvision: TargetPad(1.25) → Resize(S, bicubic) → CenterCrop(S) (docs/design.md §5)."""

import numpy as np
import pytest
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from cirflow.data.transforms import TARGET_RATIO, preprocess


class TargetPad:
    """SPRC's TargetPad, written from its definition: when max(w, h) / min(w, h) ≥ ratio, pad
    with black, symmetrically, by int((max(w, h) / ratio − side) / 2) on each side of each axis
    (so only the short side grows); else leave the image alone."""

    def __init__(self, ratio: float):
        self.ratio = ratio

    def __call__(self, image: Image.Image) -> Image.Image:
        w, h = image.size
        if max(w, h) / min(w, h) < self.ratio:
            return image
        scaled = max(w, h) / self.ratio
        hp = max(int((scaled - w) / 2), 0)
        vp = max(int((scaled - h) / 2), 0)
        return TF.pad(image, [hp, vp, hp, vp], 0, "constant")


def reference(image: Image.Image, size: int) -> np.ndarray:
    pipeline = T.Compose(
        [
            TargetPad(TARGET_RATIO),
            T.Resize(size, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(size),
        ]
    )
    return np.asarray(pipeline(image), dtype=np.uint8)


SIZES = [
    (250, 200),  # aspect exactly 1.25: TargetPad applies, with zero padding
    (200, 250),
    (151, 120),  # aspect just above 1.25
    (151, 179),  # Resize's long side 265.54 (truncated, not rounded); crop offset 20.5
    (152, 179),  # crop offset 19.5 (round half to even: 20)
    (169, 211),
    (179, 151),  # the same, landscape: the half offsets on the x axis
    (179, 152),
    (211, 169),
    (301, 211),  # padded top and bottom by an odd-sized margin
    (211, 301),  # padded left and right
    (224, 224),  # already the input size
    (224, 179),
    (640, 480),
    (333, 500),
    (1000, 100),  # very wide: mostly padding
    (7, 5),  # smaller than the input
]


def _image(w: int, h: int) -> Image.Image:
    rng = np.random.default_rng(w * 1000 + h)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("size", [224, 64])
@pytest.mark.parametrize(("w", "h"), SIZES)
def test_preprocess_equals_torchvision_pixel_for_pixel(w, h, size):
    image = _image(w, h)
    ours, geo = preprocess(image, size)
    theirs = reference(image, size)
    assert theirs.shape == (size, size, 3)
    assert (geo.width, geo.height) == (w, h)
    np.testing.assert_array_equal(ours.permute(1, 2, 0).numpy(), theirs)


def test_the_sizes_exercise_truncation_and_half_offsets():
    """Guard: the list above holds cases where rounding instead of truncating the resized long
    side, or flooring instead of rounding the crop offset, changes the pixels."""
    fractions, offsets = [], []
    for size in (224, 64):
        for w, h in SIZES:
            pw, ph = TargetPad(TARGET_RATIO)(_image(w, h)).size
            long_side = size * max(pw, ph) / min(pw, ph)
            fractions.append(long_side - int(long_side))
            offsets.append(("x" if pw > ph else "y", (int(long_side) - size) / 2))
    assert any(f >= 0.5 for f in fractions)
    for axis in "xy":
        halves = [o for a, o in offsets if a == axis and o % 1 == 0.5]
        assert any(int(o) % 2 == 0 for o in halves) and any(int(o) % 2 == 1 for o in halves)
