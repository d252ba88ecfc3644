"""The files beside the images, gathered family by family in job order (`DemoTables`): CIRR's
captions and split files, the edit-type sidecars, boxes_gt.json, descriptions.json, and the
manifest (written last: its presence says a demo is complete)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cirflow.data.cirr import (
    EDIT_TYPES,
    EDITED_SPLITS,
    SPLITS,
    captions_file,
    edited_boxes_file,
    edits_file,
    split_file,
)
from cirflow.data.demo.family import IMAGES_PER_FAMILY, TRIPLETS_PER_FAMILY
from cirflow.data.descriptions import DESCRIPTIONS_FILE, descriptions_file
from cirflow.io import write_json_atomic

# 1.1: descriptions.json, edit-type sidecars; 1.2: the edited-object box sidecars
GENERATOR_VERSION = "1.2"
BOXES_FILE = "boxes_gt.json"

MANIFEST_FILE = "demo_manifest.json"


def _per_split() -> dict:
    return {s: {} for s in SPLITS}


@dataclass
class DemoTables:
    """Every annotation of the families added so far; pairids count on over the splits."""

    boxes: dict[str, list[list[float]]] = field(default_factory=dict)
    # Per split, each triplet's edited-object boxes in its target (the box source `edited`).
    edited_boxes: dict[str, dict[str, list[list[float]]]] = field(default_factory=_per_split)
    descriptions: dict[str, str] = field(default_factory=dict)
    splits: dict[str, dict[str, str]] = field(default_factory=_per_split)
    captions: dict[str, list[dict]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    edit_types: dict[str, dict[str, str]] = field(default_factory=_per_split)
    edits: dict[str, int] = field(default_factory=lambda: {e: 0 for e in EDIT_TYPES})
    families: dict[str, int] = field(default_factory=lambda: {s: 0 for s in SPLITS})
    next_pairid: int = 0

    def add(self, split: str, index: int, family: dict) -> None:
        """Family `index` of `split`, as `cirflow.data.demo.generate` built it."""
        self.families[split] += 1
        self.splits[split].update(family["images"])
        self.boxes.update(family["boxes"])
        self.descriptions.update(family["descriptions"])
        members = family["members"]
        for (reference, target, caption, edit), edited in zip(
            family["triplets"], family["edited"], strict=True
        ):
            self.edits[edit] += 1
            self.edit_types[split][str(self.next_pairid)] = edit
            self.edited_boxes[split][str(self.next_pairid)] = edited
            self.captions[split].append(
                _triplet(self.next_pairid, split, (reference, target, caption), index, members)
            )
            self.next_pairid += 1


def _triplet(pairid: int, split: str, triplet: tuple, family: int, members: list[str]) -> dict:
    """One entry of a CIRR caption file (test1's without the target fields, as in CIRR)."""
    reference, target, caption = triplet
    entry: dict = {"pairid": pairid, "reference": reference}
    if split != "test1":
        entry["target_hard"] = target
        entry["target_soft"] = {target: 1.0}
    entry["caption"] = caption
    img_set: dict = {
        "id": family,
        "members": members,
        "reference_rank": members.index(reference),
    }
    if split != "test1":
        img_set["target_rank"] = members.index(target)
    entry["img_set"] = img_set
    return entry


def write_tables(out: Path, tables: DemoTables) -> None:
    """Every file but the images and the manifest."""
    write_json_atomic(out / BOXES_FILE, tables.boxes)
    write_json_atomic(descriptions_file(out), dict(sorted(tables.descriptions.items())))
    for split in SPLITS:
        write_json_atomic(split_file(out, split), tables.splits[split])
        write_json_atomic(captions_file(out, split), tables.captions[split])
        write_json_atomic(edits_file(out, split), tables.edit_types[split])
        if split in EDITED_SPLITS:
            write_json_atomic(edited_boxes_file(out, split), tables.edited_boxes[split])


def manifest(seed: int, tables: DemoTables) -> dict:
    """demo_manifest.json: seed, counts, generator version, the files beside CIRR's."""
    return {
        "generator": "cirflow.data.demo",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "triplets": {s: len(tables.captions[s]) for s in SPLITS},
        "images": {s: len(tables.splits[s]) for s in SPLITS},
        "families": dict(tables.families),
        "boxes": sum(len(b) for b in tables.boxes.values()),
        "edits": tables.edits,
        "files": {
            "boxes": BOXES_FILE,
            "edited_boxes": {s: edited_boxes_file(".", s).as_posix() for s in EDITED_SPLITS},
            "descriptions": DESCRIPTIONS_FILE,
            "edit_types": {s: edits_file(".", s).as_posix() for s in SPLITS},
        },
        "triplets_per_family": TRIPLETS_PER_FAMILY,
        "images_per_family": IMAGES_PER_FAMILY,
    }
