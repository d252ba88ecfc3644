"""Where an image-feature shard's index lives, and reading it (torch-free: the training settings
fingerprint the indexes, and `rules/common.smk` must not import torch).

    shard-{i}-of-{n}.npy  ->  shard-{i}-of-{n}.index.json
    {"names": [...], "sizes": {name: [w, h]}, "unreadable": [{"image", "error"}],
     "tokens": T, "dim": D, "fingerprint": "<model + transform>"}
"""

from __future__ import annotations

from pathlib import Path

from cirflow.errors import CirflowError, rebuilt_by
from cirflow.io import read_json

INDEX_KEYS = ("names", "sizes", "unreadable", "tokens", "dim", "fingerprint")


def index_path(array_path: str | Path) -> Path:
    """`shard-0-of-2.npy` -> `shard-0-of-2.index.json`."""
    return Path(str(array_path).removesuffix(".npy") + ".index.json")


def rebuild_advice(array_path: str | Path) -> str:
    """What rebuilds a damaged shard: both of its files come from one job of rule image_features."""
    return rebuilt_by("image_features", array_path, index_path(array_path))


def read_index(array_path: str | Path) -> dict:
    path = index_path(array_path)
    index = read_json(path, "image-feature index", rebuild_advice(array_path))
    missing = [k for k in INDEX_KEYS if not isinstance(index, dict) or k not in index]
    if missing:
        raise CirflowError(
            f"{path}: not an image-feature index (missing {', '.join(missing)}); "
            + rebuild_advice(array_path)
        )
    return index
