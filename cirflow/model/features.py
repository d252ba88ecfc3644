"""The image-features stage: the frozen ViT runs once per image of a shard, and its tokens (before
`ln_vision`) are stored as float16 for training, evaluation and the test-server files to read
instead of decoding pixels and running the ViT again (format: `cirflow.data.feature_store`).

This stage is also where unreadable images are found: each is listed once in the shard's index
(its row stays zero), and the triplets that need it are left out downstream, with a count.

A shard takes `sorted(image names)[i::n]`, as detection does. The fingerprint written into every
index (preset, the ViT weights' digest, image size, the transform) tells shards of different
models apart; the same inputs give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from cirflow.data.cirr import CirrDataset
from cirflow.data.feature_index import index_path
from cirflow.data.images import read_image
from cirflow.data.transforms import TARGET_RATIO, normalize, preprocess
from cirflow.device import resolve_device
from cirflow.errors import CirflowError
from cirflow.io import atomic_path, write_json_atomic
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
    def __init__(self, dataset: CirrDataset, names: list[str], size: int):
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


def extract_shard(
    preset: ModelPreset,
    cirr_root: str | Path,
    split: str,
    shard: int,
    num_shards: int,
    out: str | Path,
    batch_size: int = 64,
    device: str = "auto",
    num_workers: int = 0,
    max_unreadable_fraction: float = 0.5,
    progress: bool = True,
) -> dict:
    """ViT tokens of shard `shard` of `num_shards` of `split` → `out` (.npy) + its index."""
    if not preset.freeze_vit:
        raise CirflowError(
            f"model preset {preset.name!r} trains its ViT: cached image features need a frozen "
            "ViT (model.freeze_vit: true), or set features.enabled: false"
        )
    dev = resolve_device(device, "features.device")
    dataset = CirrDataset(cirr_root, split)
    names = sorted(dataset.images)[shard::num_shards]
    vit, _ = pretrained_vision_encoder(preset)
    vit = vit.to(dev).eval()
    if dev.type != "cuda":
        vit.float()  # fp16 ViT weights only run on CUDA
    fingerprint = features_fingerprint(preset)
    t0 = time.perf_counter()
    loader = DataLoader(
        _Decoded(dataset, names, preset.image_size),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate,
    )
    array = None
    sizes: dict[str, list[int]] = {}
    unreadable: list[dict] = []
    out = Path(out)
    with atomic_path(out) as tmp:
        for items in tqdm(
            loader,
            total=-(-len(names) // batch_size),
            desc=f"{split} features {shard}/{num_shards}",
            disable=not progress,
            mininterval=10,
        ):
            good = [(i, px, size) for i, px, size, err in items if err is None]
            for i, _, _, err in items:
                if err is not None:
                    unreadable.append({"image": names[i], "error": err})
            if not good:
                continue
            pixels = normalize(torch.stack([px for _, px, _ in good]).to(dev))
            with torch.no_grad():
                autocast = (
                    torch.autocast("cuda", dtype=torch.float16)
                    if dev.type == "cuda"
                    else torch.autocast("cpu", enabled=False)
                )
                with autocast:
                    tokens = vit(pixels).float().cpu().numpy().astype(np.float16)
            if array is None:
                array = np.lib.format.open_memmap(
                    tmp, mode="w+", dtype=np.float16, shape=(len(names), *tokens.shape[1:])
                )
            for (i, _, size), row in zip(good, tokens, strict=True):
                array[i] = row
                sizes[names[i]] = list(size)
        if array is None:
            raise CirflowError(
                f"{split} shard {shard}/{num_shards}: none of its {len(names)} images could be "
                f"read (e.g. {unreadable[0]['image'] if unreadable else '-'}: "
                f"{unreadable[0]['error'] if unreadable else 'no images'})"
            )
        array.flush()
        del array
    if names and len(unreadable) > max_unreadable_fraction * len(names):
        out.unlink()
        raise CirflowError(
            f"{split} shard {shard}/{num_shards}: {len(unreadable)} of {len(names)} images cannot "
            f"be read (more than features.max_unreadable_fraction = {max_unreadable_fraction}), "
            "e.g. " + "; ".join(f"{e['image']}: {e['error']}" for e in unreadable[:3])
        )
    shape = np.load(out, mmap_mode="r").shape
    index = {
        "split": split,
        "shard": shard,
        "num_shards": num_shards,
        "names": names,
        "sizes": {n: sizes[n] for n in names if n in sizes},
        "unreadable": unreadable,
        "tokens": int(shape[1]),
        "dim": int(shape[2]),
        "fingerprint": fingerprint,
    }
    write_json_atomic(index_path(out), index)
    log.info(
        "%s shard %d/%d: %d images -> %s (%d x %d tokens, %d unreadable) in %.1f s",
        split,
        shard,
        num_shards,
        len(names),
        out,
        shape[1],
        shape[2],
        len(unreadable),
        time.perf_counter() - t0,
    )
    return index
