"""Where a split's preprocessed images are kept: `train.image_cache` / `evaluate.image_cache`.

* ``memory`` — every image of the split is decoded up front into one uint8 tensor.
* ``none``   — images are decoded when a batch needs them, by DataLoader workers.
* ``auto``   — memory when the table fits in `MEMORY_BUDGET` bytes, else none.

Torch-free: the settings modules check the mode before anything is built.
"""

from __future__ import annotations

from cirflow.errors import SettingError

MEMORY_BUDGET = 4 * 1024**3  # bytes of uint8 images cached per table in "auto" mode
CACHE_MODES = ("auto", "memory", "none")


def check_cache_mode(cache: str) -> None:
    """A SettingError of `image_cache` unless `cache` is one of CACHE_MODES."""
    if cache not in CACHE_MODES:
        raise SettingError(
            "image_cache", f"{{key}} must be one of {', '.join(CACHE_MODES)} (got {cache!r})"
        )


def keep_in_memory(cache: str, n_images: int, size: int) -> bool:
    return cache == "memory" or (cache == "auto" and n_images * 3 * size * size <= MEMORY_BUDGET)
