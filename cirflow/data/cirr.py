"""The CIRR on-disk layout (as SPRC expects it) and validation of its annotation files.

    {root}/cirr/captions/cap.rc2.{split}.json       triplets
    {root}/cirr/image_splits/split.rc2.{split}.json  image name -> "./train/34/train-….png"
    {root}/<relative path>                           the images
    {root}/cirr/captions/edits.rc2.{split}.json      optional sidecar: pairid -> edit type (the
                                                     demo writes it; CIRR itself has none)
    {root}/cirr/captions/boxes_edited.rc2.{split}.json  the demo's: pairid -> the boxes of the
                                                     objects its edit concerns, in its target

Every problem is reported as a CirflowError naming the file and the field, so that a user with
a half-downloaded dataset learns what is missing instead of meeting a KeyError mid-training.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from cirflow.errors import CirflowError
from cirflow.io import read_json

SPLITS = ("train", "val", "test1")
# The folder (and name prefix) CIRR uses for each split's images: val lives in dev/.
IMAGE_DIR = {"train": "train", "val": "dev", "test1": "test1"}
TARGET_FIELDS = ("target_hard", "target_soft")
# The edit types of the demo's sidecar (edits_file), in display order. Defined here, not in the
# generator, so that evaluation reads the sidecar without importing the generator.
EDIT_TYPES = ("color", "shape", "add", "remove", "move", "resize", "count")


def split_file(root: str | Path, split: str) -> Path:
    return Path(root) / "cirr" / "image_splits" / f"split.rc2.{split}.json"


def captions_file(root: str | Path, split: str) -> Path:
    return Path(root) / "cirr" / "captions" / f"cap.rc2.{split}.json"


def edits_file(root: str | Path, split: str) -> Path:
    """The edit-type sidecar of a split, beside its captions file (docs/design.md §3)."""
    return Path(root) / "cirr" / "captions" / f"edits.rc2.{split}.json"


# The demo's splits with edited-object boxes (test1's targets stay hidden, as in CIRR).
EDITED_SPLITS = ("train", "val")


def edited_boxes_file(root: str | Path, split: str) -> Path:
    """The demo's edited-object boxes of a split's triplets, beside its captions: a box file
    keyed by pairid (docs/design.md §3)."""
    return Path(root) / "cirr" / "captions" / f"boxes_edited.rc2.{split}.json"


def check_split_name(split: str) -> None:
    if split not in SPLITS:
        raise CirflowError(f"unknown CIRR split {split!r}: expected one of {', '.join(SPLITS)}")


def load_split_file(path: str | Path, split: str | None = None) -> dict[str, str]:
    """Read a split file (name -> relative image path) and check every entry."""
    path = Path(path)
    data = read_json(path, what="CIRR split file")
    if not isinstance(data, dict):
        raise CirflowError(f"{path}: expected a JSON object of image name -> relative path")
    prefix = f"./{IMAGE_DIR[split]}/" if split else None
    for name, rel in data.items():
        if not isinstance(rel, str) or not rel:
            raise CirflowError(f"{path}: image {name!r} has no relative path (got {rel!r})")
        normalised = posixpath.normpath(rel)
        if rel.startswith("/") or normalised.startswith("..") or "\\" in rel:
            raise CirflowError(
                f"{path}: image {name!r} has a bad relative path {rel!r} "
                "(must stay inside the dataset root, e.g. './dev/dev-1-0-img0.png')"
            )
        if prefix and not rel.startswith(prefix):
            raise CirflowError(
                f"{path}: image {name!r} has path {rel!r}, expected it under {prefix!r} for split {split!r}"
            )
    return data


def _check_triplet(path: Path, index: int, t: object, split: str, images: dict | None) -> None:
    where = f"{path}: triplet #{index}"
    if not isinstance(t, dict):
        raise CirflowError(f"{where} is not a JSON object")
    if "pairid" in t:
        where = f"{path}: triplet #{index} (pairid {t['pairid']})"
    required = ["pairid", "reference", "caption", "img_set"]
    if split != "test1":
        required += list(TARGET_FIELDS)
    for key in required:
        if key not in t:
            raise CirflowError(f"{where} has no field {key!r}")
    if not isinstance(t["caption"], str):
        raise CirflowError(f"{where}: field 'caption' must be a string")
    img_set = t["img_set"]
    if not isinstance(img_set, dict) or not isinstance(img_set.get("members"), list):
        raise CirflowError(f"{where}: field 'img_set.members' must be a list of image names")
    if images is None:
        return
    named = [("reference", t["reference"])]
    if "target_hard" in t:
        named.append(("target_hard", t["target_hard"]))
    named += [("img_set.members", m) for m in img_set["members"]]
    for field_name, name in named:
        if name not in images:
            raise CirflowError(
                f"{where}: field {field_name!r} names image {name!r}, which is not in the split file"
            )


def load_captions(path: str | Path, split: str, images: dict[str, str] | None = None) -> list[dict]:
    """Read a captions file and validate every triplet (against the split's images if given)."""
    path = Path(path)
    data = read_json(path, what="CIRR captions file")
    if not isinstance(data, list):
        raise CirflowError(f"{path}: expected a JSON list of triplets")
    for i, t in enumerate(data):
        _check_triplet(path, i, t, split, images)
    return data


def _pairid_list(pairids: list) -> str:
    shown = ", ".join(str(p) for p in sorted(pairids)[:5])
    return shown + (f" and {len(pairids) - 5} more" if len(pairids) > 5 else "")


def load_edit_types(
    root: str | Path, split: str, triplets: list[dict] | None = None
) -> dict[int, str] | None:
    """The split's edit-type sidecar as {pairid: edit type}, or None when the file is absent.

    The sidecar must name exactly the pairids of the split's captions (`triplets`, read from the
    captions file when not given); anything else is a CirflowError naming the file.
    """
    path = edits_file(root, split)
    if not path.exists():
        return None
    data = read_json(path, what="edit-type sidecar")
    if not isinstance(data, dict):
        raise CirflowError(f"{path}: expected a JSON object of pairid -> edit type")
    out: dict[int, str] = {}
    for key, edit in data.items():
        if not (isinstance(key, str) and key.isdigit()):
            raise CirflowError(f"{path}: key {key!r} is not a pairid (a non-negative integer)")
        if not isinstance(edit, str) or not edit:
            raise CirflowError(f"{path}: pairid {key} has no edit type (got {edit!r})")
        out[int(key)] = edit
    if triplets is None:
        triplets = load_captions(captions_file(root, split), split)
    expected = {t["pairid"] for t in triplets}
    missing = sorted(expected - set(out))
    extra = sorted(set(out) - expected)
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"no edit type for pairid {_pairid_list(missing)}")
        if extra:
            problems.append(f"pairid {_pairid_list(extra)} not in {captions_file(root, split)}")
        raise CirflowError(
            f"{path} does not match the captions: {'; '.join(problems)} "
            "(regenerate the demo dataset, or delete the sidecar)"
        )
    return out


@dataclass
class CirrDataset:
    """One split of a CIRR-layout dataset: its images and (if `with_captions`) its triplets."""

    # The layout (`cirflow.data.datasets`): code that serves both datasets asks this.
    kind: ClassVar[str] = "cirr"
    root: Path
    split: str
    with_captions: bool = True
    images: dict[str, str] = field(init=False)
    triplets: list[dict] = field(init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        check_split_name(self.split)
        if not self.root.is_dir():
            raise CirflowError(
                f"CIRR dataset root not found: {self.root} "
                "(expected a folder holding cirr/captions, cirr/image_splits and the image folders)"
            )
        self.images = load_split_file(split_file(self.root, self.split), self.split)
        self.triplets = (
            load_captions(captions_file(self.root, self.split), self.split, self.images)
            if self.with_captions
            else []
        )

    def images_source(self) -> str:
        """The file the split's images are listed in (for messages)."""
        return str(split_file(self.root, self.split))

    def captions_source(self) -> str:
        return str(captions_file(self.root, self.split))

    def image_path(self, name: str) -> Path:
        try:
            rel = self.images[name]
        except KeyError:
            raise CirflowError(
                f"image {name!r} is not in {split_file(self.root, self.split)}"
            ) from None
        return self.root / rel

    def image_names(self) -> list[str]:
        """All image names, sorted (the order shards are cut from)."""
        return sorted(self.images)

    def missing_images(self) -> list[str]:
        """Names whose image file does not exist on disk."""
        return [n for n in self.image_names() if not (self.root / self.images[n]).is_file()]
