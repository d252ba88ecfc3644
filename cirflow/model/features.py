"""The image-features stage: the frozen ViT runs once per image of a shard, and its tokens (before
`ln_vision`) are stored as float16 for training, evaluation and the test-server files to read
instead of decoding pixels and running the ViT again (format: `cirflow.data.feature_store`).

This stage is also where unreadable images are found: each is listed once in the shard's index
(its row stays zero), and the triplets that need it are left out downstream, with a count.

A shard takes `sorted(image names)[i::n]` (`cirflow.data.sharding`), as detection does. The fingerprint written into every
index (preset, the ViT weights' digest, image size, the transform) tells shards of different
models apart; the same inputs give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from cirflow.data.datasets import DatasetRoot, SplitDataset, as_dataset_root
from cirflow.data.feature_index import index_path
from cirflow.data.images import check_unreadable_fraction, read_image
from cirflow.data.sharding import shard_names
from cirflow.data.transforms import TARGET_RATIO, normalize, preprocess
from cirflow.device import resolve_device
from cirflow.errors import CirflowError, naming_keys
from cirflow.io import NO_ROOM, atomic_path, write_json_atomic
from cirflow.model.factory import pretrained_vision_encoder
from cirflow.model.presets import ModelPreset

log = logging.getLogger(__name__)

TRANSFORM = f"targetpad-{TARGET_RATIO}-resize-bicubic-centercrop"


def features_fingerprint(preset: ModelPreset) -> str:
    """What the stored tokens depend on: the ViT (architecture and weights) and the transform."""
    digest = None
    if preset.vit_weights:
        h = hashlib.sha256()
        with open(preset.vit_weights, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digest = h.hexdigest()
    spec = {
        "preset": preset.name,
        "vit_model": preset.vit_model,
        "image_size": preset.image_size,
        "vit_precision": preset.vit_precision,
        "vit_weights": digest,
        "transform": TRANSFORM,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


class _Decoded(Dataset):
    def __init__(self, dataset: SplitDataset, names: list[str], size: int):
        self.dataset, self.names, self.size = dataset, names, size

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int):
        read = read_image(self.dataset.image_path(self.names[i]))
        if read.image is None:
            return i, None, None, read.error
        pixels, geo = preprocess(read.image, self.size)
        return i, pixels, (geo.width, geo.height), None


def _collate(items):
    return items


@dataclass(frozen=True)
class FeatureShard:
    """Shard `shard` of `num_shards` of `split`: the images `sorted(names)[shard::num_shards]`."""

    split: str
    shard: int
    num_shards: int

    def names(self, dataset: SplitDataset) -> list[str]:
        return shard_names(dataset.images, self.shard, self.num_shards)

    def __str__(self) -> str:
        return f"{self.split} shard {self.shard}/{self.num_shards}"


@dataclass(frozen=True)
class FeatureSettings:
    """How the stage runs (config `features:`, read at run time: a change reruns no shard)."""

    batch_size: int = 64
    device: str = "auto"
    num_workers: int = 0
    max_unreadable_fraction: float = 0.5
    progress: bool = True


def extract_shard(
    preset: ModelPreset,
    cirr_root: str | Path | DatasetRoot,
    shard: FeatureShard,
    out: str | Path,
    settings: FeatureSettings = FeatureSettings(),
) -> dict:
    """ViT tokens of the images of `shard` → `out` (.npy) + its index."""
    _require_frozen_vit(preset)
    with naming_keys(lambda name: f"features.{name}"):
        dev = resolve_device(settings.device)
    dataset = as_dataset_root(cirr_root).open(shard.split)
    names = shard.names(dataset)
    where = f"{shard} (dataset root {dataset.root})"
    vit = build_vit(preset, dev)
    fingerprint = features_fingerprint(preset)
    t0 = time.perf_counter()
    out = Path(out)
    with atomic_path(out) as tmp:
        rows = _ShardRows(tmp, names)
        for items in _decoded_batches(dataset, names, preset.image_size, shard, settings):
            rows.add(items, lambda pixels: _vit_tokens(vit, pixels, dev))
        rows.close(where)
    _check_unreadable(out, where, len(names), rows.unreadable, settings.max_unreadable_fraction)
    shape = np.load(out, mmap_mode="r").shape
    index = _index(shard, names, rows, shape, fingerprint)
    write_json_atomic(index_path(out), index)
    log.info(
        "%s: %d images -> %s (%d x %d tokens, %d unreadable) in %.1f s",
        shard,
        len(names),
        out,
        shape[1],
        shape[2],
        len(rows.unreadable),
        time.perf_counter() - t0,
    )
    return index


def _require_frozen_vit(preset: ModelPreset) -> None:
    if not preset.freeze_vit:
        raise CirflowError(
            f"model preset {preset.name!r} trains its ViT: cached image features need a frozen "
            "ViT (model.freeze_vit: true), or set features.enabled: false"
        )


def build_vit(preset: ModelPreset, dev: torch.device) -> torch.nn.Module:
    """The preset's ViT, in eval mode on `dev`: the one model this stage builds."""
    vit, _ = pretrained_vision_encoder(preset)
    vit = vit.to(dev).eval()
    if dev.type != "cuda":
        vit.float()  # fp16 ViT weights only run on CUDA
    return vit


def _decoded_batches(
    dataset: SplitDataset,
    names: list[str],
    image_size: int,
    shard: FeatureShard,
    settings: FeatureSettings,
):
    """Lists of (row, pixels, (width, height), error) of `batch_size` images, decoded by
    `num_workers` DataLoader workers, with a progress bar."""
    loader = DataLoader(
        _Decoded(dataset, names, image_size),
        batch_size=settings.batch_size,
        num_workers=settings.num_workers,
        collate_fn=_collate,
    )
    return tqdm(
        loader,
        total=-(-len(names) // settings.batch_size),
        desc=f"{shard.split} features {shard.shard}/{shard.num_shards}",
        disable=not settings.progress,
        mininterval=10,
    )


def _vit_tokens(vit: torch.nn.Module, pixels: torch.Tensor, dev: torch.device) -> np.ndarray:
    """float16 (B, T, D) tokens of uint8 pixels (B, 3, S, S); fp16 autocast on CUDA only."""
    pixels = normalize(pixels.to(dev))
    with torch.no_grad():
        autocast = (
            torch.autocast("cuda", dtype=torch.float16)
            if dev.type == "cuda"
            else torch.autocast("cpu", enabled=False)
        )
        with autocast:
            return vit(pixels).float().cpu().numpy().astype(np.float16)


class _ShardRows:
    """The shard's array at `path`, one row per name, filled batch by batch; the rows of
    unreadable images stay zero. The array is made at the first readable batch, whose tokens
    give its shape."""

    def __init__(self, path: Path, names: list[str]):
        self.path, self.names = path, names
        self.array: np.ndarray | None = None
        self.sizes: dict[str, list[int]] = {}
        self.unreadable: list[dict] = []

    def add(self, items: list, tokens_of) -> None:
        """One batch of `_Decoded` items; `tokens_of(pixels)` runs the ViT."""
        good = [(i, px, size) for i, px, size, err in items if err is None]
        for i, _, _, err in items:
            if err is not None:
                self.unreadable.append({"image": self.names[i], "error": err})
        if not good:
            return
        tokens = tokens_of(torch.stack([px for _, px, _ in good]))
        if self.array is None:
            self.array = np.lib.format.open_memmap(
                self.path, mode="w+", dtype=np.float16, shape=(len(self.names), *tokens.shape[1:])
            )
            reserve_disk_space(self.path)
        for (i, _, size), row in zip(good, tokens, strict=True):
            self.array[i] = row
            self.sizes[self.names[i]] = list(size)

    def close(self, where: str) -> None:
        """Flush and release the array (before the atomic rename); none at all is an error
        (`where`: the shard and its dataset root)."""
        if self.array is None:
            first = self.unreadable[0] if self.unreadable else None
            raise CirflowError(
                f"{where}: none of its {len(self.names)} images could be "
                f"read (e.g. {first['image'] if first else '-'}: "
                f"{first['error'] if first else 'no images'}); is the dataset root complete "
                "(the image folders beside cirr/)?"
            )
        self.array.flush()
        self.array = None


def reserve_disk_space(path: Path) -> None:
    """Allocate every block of the (sparse) file at `path` now. A memory map's writes reach the
    disk later, and a full disk then kills the process (SIGBUS) without a word; reserved, the
    lack of room is an OSError here, which `atomic_path` reports with the shard's name."""
    if not hasattr(os, "posix_fallocate"):  # not on macOS: the risk stays there
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        if exc.errno in NO_ROOM:
            raise
        log.debug("%s: blocks not reserved (%s)", path, exc)  # a file system that cannot
    finally:
        os.close(fd)


def _check_unreadable(
    out: Path, where: str, images: int, unreadable: list[dict], max_fraction: float
) -> None:
    """Past `max_fraction` unreadable images the shard is an error, and its array is removed."""
    try:
        with naming_keys(lambda name: f"features.{name}"):
            errors = {e["image"]: e["error"] for e in unreadable}
            check_unreadable_fraction(errors, images, where, max_fraction)
    except CirflowError:
        out.unlink()
        raise


def _index(
    shard: FeatureShard, names: list[str], rows: _ShardRows, shape: tuple, fingerprint: str
) -> dict:
    """The shard's index (`cirflow.data.feature_index`)."""
    return {
        "split": shard.split,
        "shard": shard.shard,
        "num_shards": shard.num_shards,
        "names": names,
        "sizes": {n: rows.sizes[n] for n in names if n in rows.sizes},
        "unreadable": rows.unreadable,
        "tokens": int(shape[1]),
        "dim": int(shape[2]),
        "fingerprint": fingerprint,
    }
