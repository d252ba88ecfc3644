"""Sharded box generation: run a detector over a shard's images, merge shards.

Shard i of n takes sorted(image names)[:max_images][i::n] (`cirflow.data.sharding`, the rule
the image features and the image manifests share). Each image's boxes depend only on that image,
so the merged file is byte-identical whatever n is. Images are decoded in a
background thread pool (bounded prefetch) while the detector runs, so memory stays bounded by
the prefetch window whatever the split size.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from cirflow.boxes.detectors import make_detector
from cirflow.boxes.postfilter import Detections, postfilter
from cirflow.data.datasets import DatasetRoot, as_dataset_root
from cirflow.data.images import ImageRead, read_image
from cirflow.data.sharding import shard_names
from cirflow.errors import CirflowError, rebuilt_by
from cirflow.io import read_json, write_json_atomic

log = logging.getLogger(__name__)
SHARD_FORMAT = "cirflow-box-shard/1"
# Past this fraction of unreadable images a split's boxes are an error, not a file of [] lists
# (config boxes.max_unreadable_fraction).
MAX_UNREADABLE_FRACTION = 0.5
EXAMPLES = 5


def iter_decoded(paths: list[Path], workers: int = 2, prefetch: int = 32) -> Iterator[ImageRead]:
    """Decode images in background threads, yielding in order, at most `prefetch` ahead."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending = []
        it = iter(paths)
        for path in it:
            pending.append(pool.submit(read_image, path))
            if len(pending) >= prefetch:
                break
        for path in it:
            yield pending.pop(0).result()
            pending.append(pool.submit(read_image, path))
        for fut in pending:
            yield fut.result()


def _batches(reads: Iterator[ImageRead], size: int) -> Iterator[list[ImageRead]]:
    batch: list[ImageRead] = []
    for r in reads:
        batch.append(r)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass(frozen=True)
class ShardSpec:
    """Which images a shard takes: shard `shard` of `num_shards` of `split`, out of the first
    `max_images` (None: all) of its sorted names (`cirflow.data.sharding.shard_names`)."""

    split: str
    shard: int
    num_shards: int
    max_images: int | None = None


@dataclass(frozen=True)
class BoxMethod:
    """A box method (`detectors.METHODS`), the config subtrees it reads
    (`detectors.method_config`) and the post-filter's settings (`min_area`, `max_boxes`)."""

    name: str
    config: dict
    postfilter: dict


def run_shard(
    dataset_root: str | Path | DatasetRoot,
    spec: ShardSpec,
    method: BoxMethod,
    out_path: str | Path | None,
    decode_workers: int = 1,
    progress: bool = True,
) -> dict:
    """Detect boxes for one shard of a split; write the shard file atomically if out_path."""
    dataset = as_dataset_root(dataset_root).open(spec.split, with_captions=False)
    names = shard_names(dataset.images, spec.shard, spec.num_shards, spec.max_images)
    found = _ShardBoxes(make_detector(method.name, method.config), method.postfilter)
    paths = [dataset.image_path(n) for n in names]
    batch_size = max(1, int(getattr(found.detector, "batch_size", 1)))
    reads = iter_decoded(paths, workers=decode_workers, prefetch=max(32, 2 * batch_size))
    bar = tqdm(
        total=len(names),
        desc=f"{method.name} {spec.split} shard {spec.shard}/{spec.num_shards}",
        unit="img",
        disable=not progress,
        mininterval=2.0,
    )
    position = 0
    for batch in _batches(reads, batch_size):
        found.add(names[position : position + len(batch)], batch)
        position += len(batch)
        bar.update(len(batch))
    bar.close()
    result = {
        "format": SHARD_FORMAT,
        "split": spec.split,
        "method": method.name,
        "shard": spec.shard,
        "num_shards": spec.num_shards,
        # Where the images were looked for, for merge_boxes' messages.
        "root": str(dataset_root),
        "boxes": found.boxes,
        "meta": found.meta,
        "errors": found.errors,
    }
    if out_path is not None:
        write_json_atomic(out_path, result)
    log.info(
        "shard %d/%d of %s: %d images, %d unreadable -> %s",
        spec.shard,
        spec.num_shards,
        spec.split,
        len(names),
        len(found.errors),
        out_path,
    )
    return result


class _ShardBoxes:
    """A shard's boxes, sidecar entries and unreadable images, batch by batch, in image order."""

    def __init__(self, detector, postfilter_config: dict):
        self.detector = detector
        self.min_area = float(postfilter_config.get("min_area", 0.0))
        self.max_boxes = int(postfilter_config.get("max_boxes", 100))
        self.boxes: dict[str, list] = {}
        self.meta: dict[str, dict] = {}
        self.errors: list[dict] = []

    def add(self, names: list[str], reads: list[ImageRead]) -> None:
        """An unreadable image gets [] and an error entry; the others, their filtered boxes."""
        readable = [(n, r) for n, r in zip(names, reads, strict=True) if r.ok]
        for n, r in zip(names, reads, strict=True):
            if not r.ok:
                log.warning("unreadable image %s (%s): %s", n, r.path, r.error)
                self.errors.append({"image": n, "error": r.error})
                self.boxes[n] = []
        detections: list[Detections] = (
            self.detector.detect([r.image for _, r in readable]) if readable else []
        )
        for (n, r), det in zip(readable, detections, strict=True):
            det = postfilter(det, min_area=self.min_area, max_boxes=self.max_boxes)
            self.boxes[n] = det.boxes
            self.meta[n] = {
                "size": list(r.size),
                "scores": det.scores,
                "labels": det.labels,
                "source": det.source,
            }


def merge_shards(
    shard_paths: list[str | Path],
    boxes_out: str | Path,
    meta_out: str | Path,
    max_unreadable_fraction: float = MAX_UNREADABLE_FRACTION,
) -> dict:
    """Merge shard files into the box file (the original scripts' format) and the sidecar."""
    if not shard_paths:
        raise CirflowError("no shard files to merge")
    shards = []
    for path in shard_paths:
        advice = rebuilt_by("detect_shard", path)
        shard = read_json(path, "box shard file", advice)
        if not isinstance(shard, dict) or shard.get("format") != SHARD_FORMAT:
            raise CirflowError(f"{path}: not a cirflow box shard file; {advice}")
        shards.append({**shard, "path": str(path)})  # for messages only: never written
    return merge_results(shards, boxes_out, meta_out, max_unreadable_fraction)


def check_unreadable(
    errors: list[dict],
    images: int,
    where: str,
    max_fraction: float = MAX_UNREADABLE_FRACTION,
    key: str = "boxes.max_unreadable_fraction",
    root: str | Path | None = None,
) -> None:
    """CirflowError naming the count, the dataset root the images were looked for in (when
    known) and a few examples when more than `max_fraction` of the `images` of a split could not
    be read (checked on merged results, so shards agree)."""
    if images and len(errors) > max_fraction * images:
        examples = "; ".join(f"{e['image']}: {e['error']}" for e in errors[:EXAMPLES])
        more = f" (and {len(errors) - EXAMPLES:,} more)" if len(errors) > EXAMPLES else ""
        where_root = (
            f"the dataset root {root} complete (its images beside {Path(root) / 'cirr'}/)"
            if root is not None
            else "the dataset root complete (images beside cirr/)"
        )
        raise CirflowError(
            f"{where}: {len(errors):,} of {images:,} images cannot be read, more than "
            f"{key} = {max_fraction:g}; is {where_root}? e.g. {examples}{more}"
        )


def merge_results(
    shards: list[dict],
    boxes_out: str | Path,
    meta_out: str | Path,
    max_unreadable_fraction: float = MAX_UNREADABLE_FRACTION,
) -> dict:
    """Write shard results as one box file and one sidecar, both sorted by image name.

    Fails (writing nothing) when more than `max_unreadable_fraction` of the images could not be
    read: a root holding only annotations gives an error, not an all-[] box file."""
    boxes: dict[str, list] = {}
    meta: dict[str, dict] = {}
    errors: list[dict] = []
    split, method = shards[0]["split"], shards[0]["method"]
    for shard in shards:
        name = shard.get("path") or f"shard {shard['shard']}"
        if (shard["split"], shard["method"]) != (split, method):
            raise CirflowError(
                f"{name} is a shard of {shard['method']}/{shard['split']}, the others of "
                f"{method}/{split}: refusing to mix them"
            )
        overlap = boxes.keys() & shard["boxes"].keys()
        if overlap:
            raise CirflowError(
                f"{name} repeats images of another shard, e.g. {sorted(overlap)[0]!r}: shards "
                "of different shard counts?"
            )
        boxes.update(shard["boxes"])
        meta.update(shard["meta"])
        errors.extend(shard["errors"])
    errors = sorted(errors, key=lambda e: e["image"])
    check_unreadable(
        errors,
        len(boxes),
        f"{method} boxes of {split}",
        max_unreadable_fraction,
        root=shards[0].get("root"),  # (shards written before it was recorded lack it)
    )
    sorted_boxes = {n: boxes[n] for n in sorted(boxes)}
    sidecar = {
        "method": method,
        "split": split,
        "images": {n: meta[n] for n in sorted(meta)},
        "errors": errors,
    }
    write_json_atomic(boxes_out, sorted_boxes)
    write_json_atomic(meta_out, sidecar)
    return {"boxes": sorted_boxes, "meta": sidecar}
