"""`generate_fashioniq_demo`: one job per family, run in worker processes, each rendering its
family's six images (written atomically) and returning their annotations; then the files beside
them (`cirflow.data.demo_fashioniq.write`). Families are assembled in job order and each draws
from its own random streams, so the same `FashionIQDemoSpec` gives byte-identical files whatever
the number of workers."""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, fields
from pathlib import Path
from typing import NamedTuple

from cirflow.data.demo.generate import default_workers, run_jobs
from cirflow.data.demo.render import png_bytes
from cirflow.data.demo.write import MANIFEST_FILE
from cirflow.data.demo_fashioniq.family import (
    IMAGES_PER_FAMILY,
    TRIPLETS_PER_FAMILY,
    Family,
    description_rng,
    family_rng,
    make_family,
)
from cirflow.data.demo_fashioniq.garment import CATEGORIES, SPLITS, Garment
from cirflow.data.demo_fashioniq.render import render, seed_boxes
from cirflow.data.demo_fashioniq.wording import describe
from cirflow.data.demo_fashioniq.write import (
    GENERATOR,
    FashionIQTables,
    image_file,
    manifest,
    write_tables,
)
from cirflow.data.fashioniq import images_dir
from cirflow.errors import CirflowError
from cirflow.io import read_json, write_bytes_atomic, write_json_atomic

MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 1024


@dataclass(frozen=True)
class FashionIQDemoSpec:
    """What the demo's bytes depend on (the seed, the triplets of each category per split and
    the image size), and the worker processes (which they do not depend on; None: one per
    CPU)."""

    seed: int = 0
    train_triplets: int = 1200  # per category
    val_triplets: int = 200
    test_triplets: int = 100
    image_size: int = 96  # square images, this many pixels a side
    workers: int | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "workers" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise CirflowError(
                    f"FashionIQ demo: {f.name} must be a non-negative integer (got {value!r})"
                )
        if self.workers is not None and self.workers < 1:
            raise CirflowError(f"FashionIQ demo: workers must be at least 1 (got {self.workers})")
        if not MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE:
            raise CirflowError(
                f"FashionIQ demo: image_size must be {MIN_IMAGE_SIZE}-{MAX_IMAGE_SIZE} pixels "
                f"(got {self.image_size})"
            )

    def triplets(self, split: str) -> int:
        """The triplets of `split` (one of SPLITS) in each category."""
        return getattr(self, f"{split}_triplets")


class Job(NamedTuple):
    seed: int
    category: str
    split: str
    index: int  # family index within the category's split
    triplets: int  # triplets this family contributes
    image_size: int
    out_dir: str


def family_jobs(spec: FashionIQDemoSpec, out: str | os.PathLike = ".") -> list[Job]:
    """One job per family, category by category, split by split; the last family of a split
    gives the remainder."""
    return [
        Job(
            spec.seed,
            category,
            split,
            index,
            min(TRIPLETS_PER_FAMILY, n - index * TRIPLETS_PER_FAMILY),
            spec.image_size,
            str(out),
        )
        for category in CATEGORIES
        for split in SPLITS
        for n in (spec.triplets(split),)
        for index in range(math.ceil(n / TRIPLETS_PER_FAMILY))
    ]


class FamilyPlan(NamedTuple):
    """A family as the generator records it, before anything is drawn."""

    family: Family
    names: list[str]  # image names, in image-slot order
    garments: list[Garment]  # garments[i] is what image names[i] shows
    # (candidate, target, captions, edits), in the order of the captions file
    triplets: list[tuple[str, str, list[str], tuple[str, ...]]]


def image_name(category: str, split: str, index: int, slot: int) -> str:
    return f"{category}-{split}-{index:05d}-{slot}"


def plan_family(job: Job) -> FamilyPlan:
    """The family of `job`: garments, image names and triplets (no pixels)."""
    rng = family_rng(job.seed, job.category, job.split, job.index)
    family = make_family(rng, job.category)
    garments = [family.base] + [v.garment for v in family.variants]
    slots = [int(k) for k in rng.permutation(IMAGES_PER_FAMILY)]  # garment -> image slot
    names = [image_name(job.category, job.split, job.index, slot) for slot in slots]
    pairs = []
    for k, variant in enumerate(family.variants, start=1):
        pairs.append((names[0], names[k], variant.forward, variant.edits))
        pairs.append((names[k], names[0], variant.backward, variant.edits))
    chosen = rng.choice(len(pairs), size=job.triplets, replace=False)
    order = sorted(range(IMAGES_PER_FAMILY), key=lambda k: slots[k])
    return FamilyPlan(
        family,
        [names[k] for k in order],
        [garments[k] for k in order],
        [pairs[int(k)] for k in chosen],
    )


def _build_family(job: Job) -> dict:
    """Render one family's six images (written atomically) and return its annotations."""
    plan = plan_family(job)
    family = plan.family
    text_rng = description_rng(job.seed, job.category, job.split, job.index)
    boxes: dict[str, list[list[float]]] = {}
    descriptions: dict[str, str] = {}
    for name, garment in zip(plan.names, plan.garments, strict=True):
        image, parts = render(
            garment, family.look, family.pattern, family.accent, family.background, job.image_size
        )
        write_bytes_atomic(image_file(job.out_dir, name), png_bytes(image))
        boxes[name] = seed_boxes(parts)
        descriptions[name] = describe(text_rng, garment, family.accent)
    return {
        "images": plan.names,
        "boxes": boxes,
        "descriptions": descriptions,
        "triplets": plan.triplets,
    }


def _remove_previous_demo_images(out: Path) -> None:
    """Clear the images of an earlier FashionIQ demo in `out`, so that a smaller rerun leaves
    no stale PNGs. Only done where our own manifest proves the folder is a generated FashionIQ
    demo: a real dataset folder passed by mistake is never touched."""
    path = out / MANIFEST_FILE
    if not path.is_file():
        return
    try:
        written = read_json(path, what="demo manifest")
    except CirflowError:
        return
    if isinstance(written, dict) and written.get("generator") == GENERATOR:
        if images_dir(out).is_dir():
            shutil.rmtree(images_dir(out))


def generate_fashioniq_demo(
    out_dir: str | os.PathLike, spec: FashionIQDemoSpec | None = None, progress: bool = True
) -> dict:
    """Write the FashionIQ-layout demo of `spec` (default: `FashionIQDemoSpec()`) under
    `out_dir` and return its manifest. Same `spec` -> byte-identical files, whatever its
    `workers`."""
    spec = FashionIQDemoSpec() if spec is None else spec
    out = Path(out_dir)
    _remove_previous_demo_images(out)
    jobs = family_jobs(spec, out)
    tables = FashionIQTables()
    workers = spec.workers or default_workers()
    results = run_jobs(_build_family, jobs, workers, progress, desc="FashionIQ demo")
    for job, family in zip(jobs, results, strict=True):
        tables.add(job.category, job.split, family)
    write_tables(out, tables)
    written = manifest(spec.seed, spec.image_size, tables)
    write_json_atomic(out / MANIFEST_FILE, written, indent=2)
    return written
