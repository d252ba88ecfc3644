"""Image manifests: a shard's images as they are on disk (size and mtime), so that the jobs that
decode pixels take the images as inputs without reading them.

    results/{ds}/manifests/{split}/shard-{i}-of-{n}.json
    {"format": "cirflow-image-manifest/1", "split": "train", "shard": 0, "num_shards": 2, "images": {
    "train-10-0-img0": [52841, 1717000000123456789],
    "train-10-0-img1": null
    }}

Shard i of n lists the images `cirflow.data.sharding.shard_names` gives it (a whole split is shard
0 of 1), in sorted order, one per line: name -> [size in bytes, mtime in ns], null where the file
is missing. Every parse of the workflow (rules/common.smk) calls `refresh_manifests`: it stats
each split's images once and writes the configured shards' manifests, atomically, only where one
is missing or its text changed (rule image_manifest makes those whose split file does not exist
yet at parse time: the demo's). A manifest's mtime thus moves exactly when one of its images
changed, appeared or vanished, and Snakemake's mtime trigger reruns exactly the jobs that read
those images. (A rule cannot do this: a job that runs every time marks everything downstream as
updated, whatever it writes; and Snakemake does not remake a missing input of an up-to-date job,
so the parse also makes the missing ones.)

An image replaced by one of the same size and mtime goes unnoticed (`cp -p` of a same-sized
file): the price of not reading the pixels.

Torch-free and stdlib-only: every Snakemake process pays for it.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cirflow.data.datasets import DatasetRoot, as_dataset_root, split_images
from cirflow.data.sharding import shard_names
from cirflow.errors import CirflowError
from cirflow.io import write_text_atomic

log = logging.getLogger(__name__)
FORMAT = "cirflow-image-manifest/1"
_FILE_NAME = re.compile(r"shard-(\d+)-of-(\d+)\.json")
EXAMPLES = 3

Stat = list[int] | None  # [size in bytes, mtime in ns], None for a missing file


def manifest_path(folder: str | Path, split: str, shard: int = 0, num_shards: int = 1) -> Path:
    """`{folder}/{split}/shard-{shard}-of-{num_shards}.json` (a whole split: shard 0 of 1)."""
    return Path(folder) / split / f"shard-{shard}-of-{num_shards}.json"


def image_stats(root: str | Path, images: Mapping[str, str]) -> dict[str, Stat]:
    """name -> [size, mtime_ns] of each image (`images`: name -> path relative to `root`), None
    where there is no file (or a broken link, or a folder that cannot be entered)."""
    base = os.fspath(root)
    stats: dict[str, Stat] = {}
    for name, rel in images.items():
        try:
            st = os.stat(os.path.join(base, rel))
        except OSError:
            stats[name] = None
        else:
            stats[name] = [st.st_size, st.st_mtime_ns]
    return stats


def manifest_text(split: str, shard: int, num_shards: int, stats: Mapping[str, Stat]) -> str:
    """The manifest of shard `shard` of `num_shards` of `split` (`stats`: the whole split's)."""
    return _text(split, shard, num_shards, _entry_lines(stats))


def _entry_lines(stats: Mapping[str, Stat]) -> dict[str, str]:
    """Each image's line of a manifest, made once per split (a split has many shards)."""
    return {
        name: f"{json.dumps(name)}: {'null' if st is None else f'[{st[0]}, {st[1]}]'}"
        for name, st in stats.items()
    }


def _text(split: str, shard: int, num_shards: int, lines: Mapping[str, str]) -> str:
    head = json.dumps({"format": FORMAT, "split": split, "shard": shard, "num_shards": num_shards})
    body = ",\n".join(lines[name] for name in shard_names(lines, shard, num_shards))
    return f'{head[:-1]}, "images": {{\n{body}\n}}}}\n'


def write_manifest(
    path: str | Path,
    root: str | Path | DatasetRoot,
    split: str,
    shard: int = 0,
    num_shards: int = 1,
) -> bool:
    """Write the manifest of shard `shard` of `num_shards` of `split` of the dataset at `root`
    (a plain path: CIRR's layout) to `path`, unless `path` already holds exactly that; True when
    written. A missing or invalid split file is a CirflowError naming it; missing images are not
    (null entries: the jobs that read them report them)."""
    dataset = as_dataset_root(root)
    images = split_images(dataset.kind, dataset.path, split)
    stats = image_stats(dataset.path, images)
    text = manifest_text(split, shard, num_shards, stats)
    names = shard_names(stats, shard, num_shards)
    missing = sum(stats[n] is None for n in names)
    log.info(
        "%s shard %d/%d: %d images, %d without a file",
        split,
        shard,
        num_shards,
        len(names),
        missing,
    )
    try:
        if Path(path).read_bytes() == text.encode():
            return False
    except FileNotFoundError:
        pass
    write_text_atomic(path, text)
    return True


@dataclass(frozen=True)
class ManifestChange:
    """A manifest the refresh wrote: made (it did not exist), or rewritten with the images whose
    entry changed (all of them when the old file was no manifest)."""

    path: Path
    created: bool
    images: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.created:
            return f"{self.path}: made"
        shown = ", ".join(self.images[:EXAMPLES])
        more = f" and {len(self.images) - EXAMPLES:,} more" if len(self.images) > EXAMPLES else ""
        count = f"{len(self.images):,} image{'s' if len(self.images) != 1 else ''}"
        return f"{self.path}: {count} changed, appeared or vanished ({shown}{more})"


def existing_shards(folder: str | Path, split: str) -> set[tuple[int, int]]:
    """(shard, num_shards) of each manifest of `split` under `folder`."""
    try:
        entries = os.listdir(Path(folder) / split)
    except OSError:
        return set()
    found = set()
    for entry in entries:
        match = _FILE_NAME.fullmatch(entry)
        if match and 0 <= int(match[1]) < int(match[2]):
            found.add((int(match[1]), int(match[2])))
    return found


def refresh_manifests(
    folder: str | Path,
    root: str | Path | DatasetRoot,
    shard_counts: Mapping[str, Iterable[int]],
) -> list[ManifestChange]:
    """Bring the manifests under `folder` up to date with the images under `root`: for each split
    of `shard_counts`, every shard of each of its counts, and any other manifest of the split
    already there. A manifest is written (atomically) only when it is missing or its text
    changed; returns those written. Never raises for the data: a split whose split file is
    missing or invalid, and a manifest that cannot be read or written, are left as they are
    (the jobs that need them report the problem)."""
    changes = []
    dataset = as_dataset_root(root)
    for split, counts in shard_counts.items():
        wanted = {(i, n) for n in counts for i in range(n)} | existing_shards(folder, split)
        try:
            images = split_images(dataset.kind, dataset.path, split)
        except (CirflowError, OSError, ValueError):
            continue
        # Sorted once: the shards' sorts then find their input in order.
        lines = _entry_lines(image_stats(dataset.path, {n: images[n] for n in sorted(images)}))
        for shard, num_shards in sorted(wanted):
            path = manifest_path(folder, split, shard, num_shards)
            text = _text(split, shard, num_shards, lines)
            try:
                old = path.read_bytes()
            except FileNotFoundError:
                old = None
            except OSError:
                continue
            if old == text.encode():
                continue
            try:
                write_text_atomic(path, text)
            except OSError:
                continue
            created = old is None
            changes.append(
                ManifestChange(path, created, () if created else _changed_images(old, text))
            )
    return changes


def _changed_images(old: bytes, new: str) -> tuple[str, ...]:
    """The names whose entries differ between two manifest texts (every name of the new one when
    the old one is not a manifest)."""
    after = json.loads(new)["images"]
    try:
        before = json.loads(old)["images"]
    except (ValueError, TypeError, KeyError):
        before = None
    if not isinstance(before, dict):
        return tuple(sorted(after))
    names = before.keys() | after.keys()
    return tuple(
        sorted(n for n in names if n not in before or n not in after or before[n] != after[n])
    )
