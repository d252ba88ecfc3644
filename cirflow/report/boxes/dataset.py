"""Where a box file's images are: the dataset's split file and image files for one source
(`open_dataset`), or a plain statement of what is missing. Never raises: a page without its
images still shows the statistics and plots."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cirflow.data.datasets import DatasetRoot, SplitDataset, as_dataset_root, image_split_files
from cirflow.errors import CirflowError


@dataclass
class DatasetView:
    """What of the dataset is available for one source: split file, image files."""

    status: str  # "ok" | "partial" | "missing" | "empty" (the box file lists no image)
    message: str
    dataset: SplitDataset | None = None
    found: int = 0
    not_in_split_file: list[str] = field(default_factory=list)
    not_in_box_file: list[str] = field(default_factory=list)
    split_file: str | None = None

    def path(self, name: str) -> Path | None:
        if self.dataset is None or name not in self.dataset.images:
            return None
        return self.dataset.image_path(name)


def open_dataset(
    cirr_root: str | Path | DatasetRoot | None, split: str | None, names: list[str]
) -> DatasetView:
    """Find the images of `names` under `cirr_root` (a plain path: CIRR's layout; never
    raises: says what is missing)."""
    if cirr_root is None:
        return DatasetView(
            "missing",
            "The images are missing: no dataset root was given (--cirr-root), so no image is "
            "drawn. The statistics and plots are complete.",
        )
    if split is None:
        return DatasetView(
            "missing",
            "The images are missing: the split of this box file is unknown (no sidecar and the "
            f"image names are not CIRR's), so its images cannot be located under {cirr_root}.",
        )
    root = as_dataset_root(cirr_root)
    listed_in = ", ".join(map(str, image_split_files(root.kind, root.path, split)))
    try:
        dataset = root.open(split, with_captions=False)
    except CirflowError as exc:
        return DatasetView(
            "missing",
            f"The images are missing: {exc}. The statistics and plots are complete; no image "
            "is drawn.",
            split_file=listed_in,
        )
    in_split = dataset.images
    not_in_split = sorted(n for n in names if n not in in_split)
    name_set = set(names)
    not_in_boxes = sorted(n for n in in_split if n not in name_set)
    found = sum(1 for n in names if n in in_split and (dataset.root / in_split[n]).is_file())
    view = DatasetView(
        "ok",
        "",
        dataset=dataset,
        found=found,
        not_in_split_file=not_in_split,
        not_in_box_file=not_in_boxes,
        split_file=listed_in,
    )
    listed = len(names) - len(not_in_split)
    if found == 0:
        view.status = "missing"
        view.message = (
            f"The images are missing: none of the {listed:,} images of this box file that "
            f"{view.split_file} lists was found under {dataset.root}. The statistics and plots "
            "are complete; no image is drawn."
        )
    elif found < listed:
        view.status = "partial"
        view.message = (
            f"{listed - found:,} of {listed:,} images are missing under {dataset.root}; they are "
            "left out of the grids."
        )
    return view


def empty_file_view(box_path: Path) -> DatasetView:
    """The view of a box file that lists no image: nothing to locate."""
    return DatasetView(
        "empty",
        f"The box file is empty: {box_path} holds {{}} (no image at all, not even "
        "[] entries), so there is nothing to check or draw. Was detection run, and on the "
        "right split?",
    )
