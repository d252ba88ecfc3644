"""`generate_demo`: one job per family, run in worker processes, each rendering its family's six
images (written atomically) and returning their annotations; then the files beside them
(`cirflow.data.demo.write`). Families are assembled in job order and each draws from its own
random streams, so the same `DemoSpec` gives byte-identical files whatever the number of
workers."""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import NamedTuple, TypeVar

from tqdm import tqdm

from cirflow.data.cirr import IMAGE_DIR, SPLITS
from cirflow.data.demo.edits import INVERSE_EDIT
from cirflow.data.demo.family import (
    IMAGES_PER_FAMILY,
    TRIPLETS_PER_FAMILY,
    description_rng,
    family_rng,
    make_family,
)
from cirflow.data.demo.geometry import object_box, scene_boxes, sorted_boxes
from cirflow.data.demo.render import png_bytes, render
from cirflow.data.demo.wording import describe
from cirflow.data.demo.write import MANIFEST_FILE, DemoTables, manifest, write_tables
from cirflow.errors import CirflowError
from cirflow.io import write_bytes_atomic, write_json_atomic

J = TypeVar("J")
R = TypeVar("R")
TRAIN_FOLDERS = 20  # train images are spread over train/0 .. train/19 (by family)


@dataclass(frozen=True)
class DemoSpec:
    """What the demo's bytes depend on: the seed and the number of triplets per split."""

    seed: int = 0
    train_triplets: int = 2000
    val_triplets: int = 500
    test1_triplets: int = 500

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise CirflowError(f"demo: {f.name} must be a non-negative integer (got {value!r})")

    def triplets(self, split: str) -> int:
        """The triplets of `split` (one of SPLITS)."""
        return getattr(self, f"{split}_triplets")


class _Job(NamedTuple):
    seed: int
    split: str
    index: int  # family index within the split
    triplets: int  # triplets this family contributes
    out_dir: str


def family_jobs(spec: DemoSpec, out: Path) -> list[_Job]:
    """One job per family, split by split; the last family of a split gives the remainder."""
    return [
        _Job(
            spec.seed,
            split,
            index,
            min(TRIPLETS_PER_FAMILY, n - index * TRIPLETS_PER_FAMILY),
            str(out),
        )
        for split in SPLITS
        for n in (spec.triplets(split),)
        for index in range(math.ceil(n / TRIPLETS_PER_FAMILY))
    ]


def image_relpath(split: str, name: str, family: int) -> str:
    folder = IMAGE_DIR[split]
    if split == "train":
        return f"./{folder}/{family % TRAIN_FOLDERS}/{name}.png"
    return f"./{folder}/{name}.png"


def _build_family(job: _Job) -> dict:
    """Render one family's six images (written atomically) and return its annotations."""
    rng = family_rng(job.seed, job.split, job.index)
    fam = make_family(rng)
    scenes = [fam.base] + [v.scene for v in fam.variants]
    slots = [int(k) for k in rng.permutation(IMAGES_PER_FAMILY)]  # scene -> image slot
    prefix = IMAGE_DIR[job.split]
    names = [f"{prefix}-{job.index}-{slot // 2}-img{slot % 2}" for slot in slots]
    out_dir = Path(job.out_dir)
    images: list[tuple[str, str]] = []
    boxes: dict[str, list[list[float]]] = {}
    descriptions: dict[str, str] = {}
    text_rng = description_rng(job.seed, job.split, job.index)
    for slot in range(IMAGES_PER_FAMILY):  # write (and list) images in name order
        k = slots.index(slot)
        name = names[k]
        rel = image_relpath(job.split, name, job.index)
        write_bytes_atomic(
            out_dir / rel, png_bytes(render(scenes[k], fam.background, fam.width, fam.height))
        )
        images.append((name, rel))
        boxes[name] = scene_boxes(scenes[k], fam.width, fam.height)
        descriptions[name] = describe(text_rng, scenes[k], fam.background_words)
    candidates, edited = [], []
    for k, variant in enumerate(fam.variants, start=1):
        backward = INVERSE_EDIT.get(variant.edit, variant.edit)
        candidates.append((names[0], names[k], variant.forward, variant.edit))
        candidates.append((names[k], names[0], variant.backward, backward))
        edited.append(edited_boxes(variant.after or variant.before, fam.width, fam.height))
        edited.append(edited_boxes(variant.before or variant.after, fam.width, fam.height))
    chosen = rng.choice(len(candidates), size=job.triplets, replace=False)
    members = [names[int(k)] for k in rng.permutation(IMAGES_PER_FAMILY)]
    return {
        "images": images,
        "boxes": boxes,
        "descriptions": descriptions,
        "members": members,
        "triplets": [candidates[int(k)] for k in chosen],
        "edited": [edited[int(k)] for k in chosen],  # each triplet's, in the same order
        "size": [fam.width, fam.height],
    }


def edited_boxes(objects, width: int, height: int) -> list[list[float]]:
    """The boxes of the objects an edit concerns, where the target shows them (or, for an
    object the edit removes, where it was: the family's images share one frame)."""
    return sorted_boxes([object_box(o, width, height) for o in objects])


def default_workers() -> int:
    """The CPUs this process may run on (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def run_jobs(
    build: Callable[[J], R], jobs: list[J], workers: int, progress: bool, desc: str = "demo dataset"
) -> Iterator[R]:
    """`build(job)` for every job, yielded in job order, in `workers` processes (in this one
    for 1 worker or few jobs), with a progress bar on stderr. `build` must be a module-level
    function (the pool pickles it by name)."""
    bar = tqdm(
        total=len(jobs),
        desc=desc,
        unit="family",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    try:
        if workers <= 1 or len(jobs) < 2 * workers:
            for job in jobs:
                yield build(job)
                bar.update()
            return
        methods = multiprocessing.get_all_start_methods()
        # fork: no re-import of __main__ (a Snakemake script adapter has no main guard).
        context = multiprocessing.get_context("fork" if "fork" in methods else None)
        chunk = max(1, min(8, len(jobs) // (4 * workers)))
        with context.Pool(workers) as pool:
            for result in pool.imap(build, jobs, chunksize=chunk):
                yield result
                bar.update()
    finally:
        bar.close()


def _remove_previous_demo_images(out: Path) -> None:
    """Clear the image folders of an earlier demo in `out`, so that a smaller rerun leaves no
    stale PNGs. Only done where our own manifest proves the folder is a generated demo: a real
    dataset folder passed by mistake is never touched."""
    if not (out / MANIFEST_FILE).is_file():
        return
    for folder in ("train", "dev", "test1"):
        if (out / folder).is_dir():
            shutil.rmtree(out / folder)


def generate_demo(
    out_dir: str | os.PathLike,
    spec: DemoSpec | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Write the demo dataset of `spec` (default: `DemoSpec()`) under `out_dir` (CIRR layout)
    and return its manifest. Same `spec` -> byte-identical files, whatever `workers` is."""
    spec = DemoSpec() if spec is None else spec
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise CirflowError(f"demo: workers must be a positive integer (got {workers!r})")
    out = Path(out_dir)
    _remove_previous_demo_images(out)
    jobs = family_jobs(spec, out)
    tables = DemoTables()
    results = run_jobs(_build_family, jobs, workers or default_workers(), progress)
    for job, family in zip(jobs, results, strict=True):
        tables.add(job.split, job.index, family)
    write_tables(out, tables)
    written = manifest(spec.seed, tables)
    write_json_atomic(out / MANIFEST_FILE, written, indent=2)
    return written
