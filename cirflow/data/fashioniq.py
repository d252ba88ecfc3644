"""The FashionIQ on-disk layout and validation of its annotation files (docs/fashioniq.md).

    {root}/captions/cap.{category}.{split}.json        triplets: [{"target", "candidate",
                                                       "captions": [two strings]}, ...]
                                                       (test entries have no "target")
    {root}/image_splits/split.{category}.{split}.json  image names (Amazon ids): [name, ...]
    {root}/images/{name}.png                           the images (some copies hold .jpg)

Every problem is a CirflowError naming the file, the entry and what to do, as for CIRR
(`cirflow.data.cirr`), so that a half-downloaded dataset is reported before training starts.

The normalised triplet (`load_triplets`) reads like CIRR's where the two datasets agree:

    {"pairid": int, "reference": candidate, "target_hard": target (absent on test),
     "category": "dress" | "shirt" | "toptee", "captions": [cap1, cap2]}

`pairid` = CATEGORIES.index(category) * PAIRID_STRIDE + position of the entry in its captions
file: stable across runs and unique within a split across the three categories. There is no
"caption": FashionIQ has two per triplet, combined differently at training (randomly) and at
evaluation (`cirflow.data.fashioniq_captions`), so a consumer has to choose one on purpose.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from cirflow.errors import CirflowError
from cirflow.io import read_json

log = logging.getLogger(__name__)

CATEGORIES = ("dress", "shirt", "toptee")
SPLITS = ("train", "val", "test")
# Tried in this order: SPRC reads .png only; some copies of the images hold .jpg.
IMAGE_SUFFIXES = (".png", ".jpg")
# pairid = category index * PAIRID_STRIDE + position; the largest real file has 6,027 entries.
PAIRID_STRIDE = 100_000
CAPTIONS_PER_TRIPLET = 2
LAYOUT = (
    "a FashionIQ root holds captions/cap.{category}.{split}.json and "
    "image_splits/split.{category}.{split}.json for every category in "
    f"{', '.join(CATEGORIES)} and split in {', '.join(SPLITS)} (docs/fashioniq.md)"
)


def captions_file(root: str | Path, category: str, split: str) -> Path:
    return Path(root) / "captions" / f"cap.{category}.{split}.json"


def split_file(root: str | Path, category: str, split: str) -> Path:
    return Path(root) / "image_splits" / f"split.{category}.{split}.json"


def images_dir(root: str | Path) -> Path:
    return Path(root) / "images"


def check_category_and_split(category: str, split: str) -> None:
    if category not in CATEGORIES:
        raise CirflowError(
            f"unknown FashionIQ category {category!r}: expected one of {', '.join(CATEGORIES)}"
        )
    if split not in SPLITS:
        raise CirflowError(
            f"unknown FashionIQ split {split!r}: expected one of {', '.join(SPLITS)}"
        )


def check_image_name(name: object, where: str) -> str:
    """`name` if it is a plain file name (the image is images/{name}.png); else a CirflowError
    saying `where` it was found. Refuses what could lead outside images/."""
    if not isinstance(name, str) or not name:
        raise CirflowError(f"{where}: image name must be a non-empty string (got {name!r})")
    if "/" in name or "\\" in name or "\0" in name or name in (".", ".."):
        raise CirflowError(
            f"{where}: image name {name!r} is not a plain file name (no path separators, "
            "no '.' or '..': FashionIQ names are Amazon ids such as 'B008BHCT58')"
        )
    return name


def load_image_split(path: str | Path) -> list[str]:
    """Read an image split file (a JSON list of image names) and check every name."""
    path = Path(path)
    data = read_json(path, what="FashionIQ image split file", advice=LAYOUT)
    if not isinstance(data, list):
        raise CirflowError(
            f"{path}: expected a JSON list of image names, got a {type(data).__name__}"
        )
    for i, name in enumerate(data):
        check_image_name(name, f"{path}: entry #{i}")
    return data


def _check_entry(path: Path, index: int, entry: object, split: str) -> None:
    where = f"{path}: entry #{index}"
    if not isinstance(entry, dict):
        raise CirflowError(f"{where} is not a JSON object (expected target, candidate, captions)")
    required = ("candidate", "captions") if split == "test" else ("target", "candidate", "captions")
    for key in required:
        if key not in entry:
            extra = "" if split == "test" else " (only test entries may lack a target)"
            extra += "; restore the file from the FashionIQ release"
            raise CirflowError(f"{where} has no field {key!r}{extra}")
    captions = entry["captions"]
    if (
        not isinstance(captions, list)
        or len(captions) != CAPTIONS_PER_TRIPLET
        or not all(isinstance(c, str) for c in captions)
    ):
        raise CirflowError(
            f"{where}: field 'captions' must be a list of exactly {CAPTIONS_PER_TRIPLET} strings "
            f"(got {captions!r}); fix the entry or restore the file from the FashionIQ release"
        )
    check_image_name(entry["candidate"], f"{where}, field 'candidate'")
    if "target" in entry:
        check_image_name(entry["target"], f"{where}, field 'target'")


def load_caption_entries(path: str | Path, split: str) -> list[dict]:
    """Read a captions file as it is on disk and validate every entry."""
    path = Path(path)
    data = read_json(path, what="FashionIQ captions file", advice=LAYOUT)
    if not isinstance(data, list):
        raise CirflowError(f"{path}: expected a JSON list of entries, got a {type(data).__name__}")
    for i, entry in enumerate(data):
        _check_entry(path, i, entry, split)
    return data


def normalise(entry: dict, category: str, position: int) -> dict:
    """One validated captions-file entry in the normalised form (module docstring)."""
    triplet = {
        "pairid": CATEGORIES.index(category) * PAIRID_STRIDE + position,
        "reference": entry["candidate"],
        "category": category,
        "captions": list(entry["captions"]),
    }
    if "target" in entry:
        triplet["target_hard"] = entry["target"]
    return triplet


def category_triplets(root: str | Path, category: str, split: str) -> list[dict]:
    """The normalised triplets of one category and split, in file order."""
    check_category_and_split(category, split)
    path = captions_file(root, category, split)
    entries = load_caption_entries(path, split)
    if len(entries) > PAIRID_STRIDE:
        raise CirflowError(
            f"{path}: {len(entries):,} entries, more than the {PAIRID_STRIDE:,} a category's "
            "pairids can number (PAIRID_STRIDE in cirflow/data/fashioniq.py)"
        )
    return [normalise(e, category, i) for i, e in enumerate(entries)]


def load_triplets(
    root: str | Path, split: str, categories: tuple[str, ...] = CATEGORIES
) -> list[dict]:
    """The normalised triplets of `categories` together (training uses all three), category by
    category in the order given, each in file order."""
    return [t for c in categories for t in category_triplets(root, c, split)]


def category_images(root: str | Path, category: str, split: str) -> list[str]:
    """The image names of a category's split file, in file order."""
    check_category_and_split(category, split)
    return load_image_split(split_file(root, category, split))


def val_gallery(root: str | Path, category: str) -> list[str]:
    """The gallery a category's val queries are ranked against: every image of its val image
    split (protocol 1 in docs/fashioniq.md), not only the images its val captions name."""
    return category_images(root, category, "val")


def resolve_image(root: str | Path, name: str) -> Path:
    """images/{name}.png, or images/{name}.jpg where only that exists; a CirflowError naming
    both paths when neither does."""
    check_image_name(name, f"FashionIQ image under {images_dir(root)}")
    tried = [images_dir(root) / f"{name}{suffix}" for suffix in IMAGE_SUFFIXES]
    for path in tried:
        if path.is_file():
            return path
    raise CirflowError(
        f"FashionIQ image {name!r} not found: tried {' and '.join(map(str, tried))} "
        "(download the missing images, or leave the triplets that need them out)"
    )


@dataclass
class ResolvedImages:
    """Where each image of a list was found: `paths` (name -> file, for those found), `jpg`
    (names found only as .jpg) and `missing` (names found as neither)."""

    paths: dict[str, Path] = field(default_factory=dict)
    jpg: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def resolve_images(root: str | Path, names: list[str], label: str) -> ResolvedImages:
    """Find every image of `names` (`resolve_image`'s rule) and log once, under `label` (e.g.
    'dress val'), how many were .jpg and how many are missing; the caller decides what a
    missing image means."""
    out = ResolvedImages()
    for name in names:
        try:
            path = resolve_image(root, name)
        except CirflowError:
            out.missing.append(name)
            continue
        out.paths[name] = path
        if path.suffix == ".jpg":
            out.jpg.append(name)
    if out.jpg:
        log.info(
            "%s: %d of %d images found as .jpg (no .png beside them), e.g. %s",
            label,
            len(out.jpg),
            len(names),
            out.jpg[0],
        )
    if out.missing:
        shown = ", ".join(out.missing[:5]) + (" …" if len(out.missing) > 5 else "")
        log.warning(
            "%s: %d of %d images missing under %s (neither .png nor .jpg): %s",
            label,
            len(out.missing),
            len(names),
            images_dir(root),
            shown,
        )
    return out
