"""One split of a FashionIQ root behind `CirrDataset`'s interface (`cirflow.data.datasets`).

A split's images are the union of the three categories' image splits (a name listed by two
categories is one image: shirt and toptee share some), each at `images/{name}.png`, or `.jpg`
where only that exists (`fashioniq.resolve_image`'s rule, decided here with one listing of
`images/` instead of two stats per image). Its triplets are `fashioniq.load_triplets`'
normalised ones plus `caption`, the evaluation caption (`fashioniq_captions.evaluation_caption`):
what evaluation ranks with and what messages show. Training draws a fresh caption from
`captions` at every step instead (`cirflow.data.tables`).

Torch-free and stdlib-only: the image manifests (`cirflow.data.manifest`) read a split's images
through `image_paths` at every parse of the workflow.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from cirflow.data import fashioniq
from cirflow.data.fashioniq_captions import evaluation_caption
from cirflow.errors import CirflowError

KIND = "fashioniq"


def image_paths(root: str | Path, split: str) -> dict[str, str]:
    """name -> path relative to `root` of every image of `split` (all three categories, in
    category then file order, each name once): images/{name}.png, or .jpg where only that is
    on disk. A missing image keeps its .png path (whoever reads it reports it)."""
    names: dict[str, None] = {}
    for category in fashioniq.CATEGORIES:
        names.update(dict.fromkeys(fashioniq.category_images(root, category, split)))
    try:
        present = set(os.listdir(fashioniq.images_dir(root)))
    except OSError:
        present = set()
    png, jpg = fashioniq.IMAGE_SUFFIXES
    out = {}
    for name in names:
        suffix = jpg if name + png not in present and name + jpg in present else png
        out[name] = f"images/{name}{suffix}"
    return out


def image_split_files(root: str | Path, split: str) -> list[Path]:
    return [fashioniq.split_file(root, c, split) for c in fashioniq.CATEGORIES]


def captions_files(root: str | Path, split: str) -> list[Path]:
    return [fashioniq.captions_file(root, c, split) for c in fashioniq.CATEGORIES]


class FashionIQSplit:
    """One split of a FashionIQ root: `images` (name -> relative path), `triplets` (if
    `with_captions`), `category_names`, and CirrDataset's methods."""

    kind: ClassVar[str] = KIND

    def __init__(self, root: str | Path, split: str, with_captions: bool = True):
        self.root, self.split, self.with_captions = Path(root), split, with_captions
        if split not in fashioniq.SPLITS:
            raise CirflowError(
                f"unknown FashionIQ split {split!r}: expected one of {', '.join(fashioniq.SPLITS)}"
            )
        if not self.root.is_dir():
            raise CirflowError(
                f"FashionIQ dataset root not found: {self.root} ({fashioniq.LAYOUT})"
            )
        self.images = image_paths(self.root, split)
        self.triplets = self._load_triplets() if with_captions else []

    def _load_triplets(self) -> list[dict]:
        triplets = fashioniq.load_triplets(self.root, self.split)
        for t in triplets:
            self._check_images(t)
            t["caption"] = evaluation_caption(t["captions"])
        return triplets

    def _check_images(self, t: dict) -> None:
        """Every image a triplet names is in the split's image splits (as CIRR's captions are
        checked against their split file)."""
        for field_name in ("reference", "target_hard"):
            name = t.get(field_name)
            if name is not None and name not in self.images:
                path = fashioniq.captions_file(self.root, t["category"], self.split)
                position = t["pairid"] % fashioniq.PAIRID_STRIDE
                raise CirflowError(
                    f"{path}: entry #{position} names image {name!r} "
                    f"({'candidate' if field_name == 'reference' else 'target'}), which is in "
                    f"none of {', '.join(map(str, image_split_files(self.root, self.split)))}"
                )

    def category_names(self, category: str) -> list[str]:
        """The images of one category's image split, in file order (a val gallery)."""
        return fashioniq.category_images(self.root, category, self.split)

    def images_source(self) -> str:
        """The files the split's images are listed in (for messages)."""
        return ", ".join(map(str, image_split_files(self.root, self.split)))

    def captions_source(self) -> str:
        return ", ".join(map(str, captions_files(self.root, self.split)))

    def image_path(self, name: str) -> Path:
        try:
            return self.root / self.images[name]
        except KeyError:
            raise CirflowError(f"image {name!r} is not in {self.images_source()}") from None

    def image_names(self) -> list[str]:
        """All image names, sorted (the order shards are cut from)."""
        return sorted(self.images)

    def missing_images(self) -> list[str]:
        """Names whose image file does not exist on disk."""
        return [n for n in self.image_names() if not (self.root / self.images[n]).is_file()]
