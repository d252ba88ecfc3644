"""The files beside the images, gathered family by family in job order (`FashionIQTables`):
FashionIQ's captions and image splits, the edit-type sidecars, boxes_gt.json,
descriptions.json, and the manifest (written last: its presence says a demo is complete)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cirflow.data.demo.write import BOXES_FILE
from cirflow.data.demo_fashioniq.family import IMAGES_PER_FAMILY, TRIPLETS_PER_FAMILY
from cirflow.data.demo_fashioniq.garment import CATEGORIES, SPLITS, edit_types
from cirflow.data.descriptions import DESCRIPTIONS_FILE, descriptions_file
from cirflow.data.fashioniq import captions_file, images_dir, split_file
from cirflow.io import write_json_atomic

GENERATOR = "cirflow.data.demo_fashioniq"
GENERATOR_VERSION = "1.0"


def edits_file(root: str | Path, category: str, split: str) -> Path:
    """The edit-type sidecar of a captions file: {"<entry index>": [edit type, ...]}."""
    return Path(root) / "captions" / f"edits.{category}.{split}.json"


def image_file(root: str | Path, name: str) -> Path:
    return images_dir(root) / f"{name}.png"


def _per_file(make) -> dict:
    return {(c, s): make() for c in CATEGORIES for s in SPLITS}


@dataclass
class FashionIQTables:
    """Every annotation of the families added so far."""

    boxes: dict[str, list[list[float]]] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    images: dict[tuple[str, str], list[str]] = field(default_factory=lambda: _per_file(list))
    captions: dict[tuple[str, str], list[dict]] = field(default_factory=lambda: _per_file(list))
    edit_types: dict[tuple[str, str], dict[str, list[str]]] = field(
        default_factory=lambda: _per_file(dict)
    )
    families: dict[tuple[str, str], int] = field(default_factory=lambda: _per_file(int))

    def add(self, category: str, split: str, family: dict) -> None:
        """One family of `category` and `split`, as `cirflow.data.demo_fashioniq.generate`
        built it."""
        key = (category, split)
        self.families[key] += 1
        self.images[key].extend(family["images"])
        self.boxes.update(family["boxes"])
        self.descriptions.update(family["descriptions"])
        for candidate, target, captions, edits in family["triplets"]:
            self.edit_types[key][str(len(self.captions[key]))] = list(edits)
            self.captions[key].append(_entry(split, candidate, target, captions))


def _entry(split: str, candidate: str, target: str, captions: list[str]) -> dict:
    """One entry of a FashionIQ captions file, its keys in FashionIQ's order (test entries have
    no target, as in FashionIQ)."""
    entry: dict = {} if split == "test" else {"target": target}
    entry["candidate"] = candidate
    entry["captions"] = list(captions)
    return entry


def write_tables(out: Path, tables: FashionIQTables) -> None:
    """Every file but the images and the manifest."""
    write_json_atomic(out / BOXES_FILE, tables.boxes)
    write_json_atomic(descriptions_file(out), dict(sorted(tables.descriptions.items())))
    for category in CATEGORIES:
        for split in SPLITS:
            key = (category, split)
            write_json_atomic(split_file(out, category, split), tables.images[key])
            write_json_atomic(captions_file(out, category, split), tables.captions[key])
            write_json_atomic(edits_file(out, category, split), tables.edit_types[key])


def _nested(table: dict[tuple[str, str], object], count=len) -> dict:
    return {c: {s: count(table[(c, s)]) for s in SPLITS} for c in CATEGORIES}


def manifest(seed: int, image_size: int, tables: FashionIQTables) -> dict:
    """demo_manifest.json: seed, counts, generator version, the files beside FashionIQ's.

    `edits`: per category, the triplets whose edits include each edit type (a two-edit triplet
    counts under both); `two_edit_triplets`: per category, those with two edits."""
    edits = {}
    two = {}
    for category in CATEGORIES:
        listed = [e for s in SPLITS for e in tables.edit_types[(category, s)].values()]
        edits[category] = {t: sum(t in e for e in listed) for t in edit_types(category)}
        two[category] = sum(len(e) == 2 for e in listed)
    return {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "seed": seed,
        "image_size": image_size,
        "categories": list(CATEGORIES),
        "triplets": _nested(tables.captions),
        "images": _nested(tables.images),
        "families": _nested(tables.families, count=lambda n: n),
        "boxes": sum(len(b) for b in tables.boxes.values()),
        "edits": edits,
        "two_edit_triplets": two,
        "files": {
            "boxes": BOXES_FILE,
            "descriptions": DESCRIPTIONS_FILE,
            "edit_types": {
                c: {s: edits_file(".", c, s).as_posix() for s in SPLITS} for c in CATEGORIES
            },
        },
        "triplets_per_family": TRIPLETS_PER_FAMILY,
        "images_per_family": IMAGES_PER_FAMILY,
    }
