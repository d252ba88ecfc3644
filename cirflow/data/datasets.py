"""The dataset seam: which on-disk layout a configured dataset has, and one split of it opened
behind one interface whatever the layout.

    dataset.name     layout (kind)   root
    cirr             cirr            dataset.cirr_root
    demo             cirr            results/demo/dataset (rule demo_dataset)
    fashioniq        fashioniq       dataset.fashioniq_root
    demo_fashioniq   fashioniq       results/demo_fashioniq/dataset (rule demo_fashioniq_dataset)

`open_split(kind, root, split)` gives a `cirr.CirrDataset` or a
`fashioniq_split.FashionIQSplit`. Both have `kind`, `root`, `split`, `images` (name -> path
relative to root), `triplets` (each with `pairid`, `reference`, `target_hard` where the split
has targets, and `caption`: the text evaluation ranks with), `image_path`, `image_names`,
`missing_images` and `images_source`. Code that needs more than that asks `kind`.

`DatasetRoot` (a layout and a root) is what a library function takes where it used to take a
CIRR root; a plain path still means CIRR (`as_dataset_root`), so the CIRR callers and the
command line are unchanged.

Torch-free and stdlib-only: `rules/common.smk` and the image manifests use it at every parse.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cirflow.data import cirr, fashioniq, fashioniq_split
from cirflow.errors import CirflowError

CIRR, FASHIONIQ = "cirr", "fashioniq"
# dataset.name -> the layout of its files.
LAYOUTS = {"cirr": CIRR, "demo": CIRR, "fashioniq": FASHIONIQ, "demo_fashioniq": FASHIONIQ}
SPLITS = {CIRR: cirr.SPLITS, FASHIONIQ: fashioniq.SPLITS}
# What `open_split` gives (annotations).
SplitDataset = cirr.CirrDataset | fashioniq_split.FashionIQSplit
# The split with a public test server (its submission files); FashionIQ has none.
SERVER_SPLIT = {CIRR: "test1", FASHIONIQ: None}


def layout_of(name: str) -> str:
    """The layout (kind) of a configured dataset name."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise CirflowError(
            f"dataset.name: unknown dataset {name!r} (expected one of {', '.join(LAYOUTS)})"
        ) from None


def check_kind(kind: str) -> str:
    if kind not in SPLITS:
        raise CirflowError(f"unknown dataset layout {kind!r} (expected one of {', '.join(SPLITS)})")
    return kind


def open_split(kind: str, root: str | Path, split: str, with_captions: bool = True):
    """One split of the dataset of layout `kind` at `root` (module docstring)."""
    if check_kind(kind) == CIRR:
        return cirr.CirrDataset(root, split, with_captions)
    return fashioniq_split.FashionIQSplit(root, split, with_captions)


def split_images(kind: str, root: str | Path, split: str) -> dict[str, str]:
    """name -> path relative to `root` of every image of `split`, from the annotation files
    only (no captions read): what the image manifests stat."""
    if check_kind(kind) == CIRR:
        return cirr.load_split_file(cirr.split_file(root, split), split)
    return fashioniq_split.image_paths(root, split)


def image_split_files(kind: str, root: str | Path, split: str) -> list[Path]:
    """The files listing `split`'s images (CIRR: one; FashionIQ: one per category)."""
    if check_kind(kind) == CIRR:
        return [cirr.split_file(root, split)]
    return fashioniq_split.image_split_files(root, split)


def captions_files(kind: str, root: str | Path, split: str) -> list[Path]:
    """The files holding `split`'s triplets (CIRR: one; FashionIQ: one per category)."""
    if check_kind(kind) == CIRR:
        return [cirr.captions_file(root, split)]
    return fashioniq_split.captions_files(root, split)


def annotation_files(kind: str, root: str | Path, split: str) -> list[Path]:
    """Every annotation file of `split`: its image split files, then its captions files (the
    rules' inputs, in the order CIRR's rules always listed them)."""
    return [*image_split_files(kind, root, split), *captions_files(kind, root, split)]


def root_of(kind: str, annotation_file: str | Path) -> Path:
    """The dataset root above one of its annotation files (`annotation_files`)."""
    depth = {CIRR: 2, FASHIONIQ: 1}[check_kind(kind)]
    return Path(annotation_file).parents[depth]


@dataclass(frozen=True)
class DatasetRoot:
    """A dataset on disk: its layout and its root folder."""

    kind: str
    path: Path

    def __post_init__(self) -> None:
        check_kind(self.kind)
        object.__setattr__(self, "path", Path(self.path))

    def open(self, split: str, with_captions: bool = True):
        return open_split(self.kind, self.path, split, with_captions)

    @property
    def splits(self) -> tuple[str, ...]:
        return SPLITS[self.kind]

    def __str__(self) -> str:
        return str(self.path)


def as_dataset_root(root: str | Path | DatasetRoot) -> DatasetRoot:
    """`root` as a DatasetRoot: a plain path is a CIRR-layout root (the command line's and
    every caller's from before FashionIQ)."""
    return root if isinstance(root, DatasetRoot) else DatasetRoot(CIRR, Path(root))


def root_of_annotation_file(path: str | Path) -> DatasetRoot:
    """The dataset above one of its image split files, its layout told by where the file is:
    <root>/cirr/image_splits/split.rc2.<split>.json (CIRR) or
    <root>/image_splits/split.<category>.<split>.json (FashionIQ)."""
    path = Path(path)
    if path.parent.name == "image_splits" and path.parent.parent.name == "cirr":
        return DatasetRoot(CIRR, path.parents[2])
    category = path.name.split(".")[1] if path.name.count(".") == 3 else None
    if path.parent.name == "image_splits" and category in fashioniq.CATEGORIES:
        return DatasetRoot(FASHIONIQ, path.parents[1])
    raise CirflowError(
        f"{path}: expected an image split file at <root>/cirr/image_splits/split.rc2.<split>.json "
        "(CIRR) or <root>/image_splits/split.<category>.<split>.json (FashionIQ)"
    )


def configured_root(dataset_name: str, root: str | Path) -> DatasetRoot:
    """The DatasetRoot of a workflow job: `dataset.name`'s layout at the root its rule gave."""
    return DatasetRoot(layout_of(dataset_name), Path(root))
