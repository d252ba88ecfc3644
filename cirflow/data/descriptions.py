"""Scene descriptions of the demo's images: `{root}/descriptions.json` = {image name: text}.

The demo generator (`cirflow/data/demo/`) writes one description for every image of every
split, listing each object's size, colour, shape and position in the 3x3 grid, row-major by
cell ("a small red star at the top left and a large blue circle in the center"). They pair the
images with text for the demo's backbone pretraining (docs/design.md §9): its training reads
only the train split's images, its figure only val.

Torch-free, like the rest of `cirflow.data`'s file formats.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from cirflow.errors import CirflowError
from cirflow.io import read_json

DESCRIPTIONS_FILE = "descriptions.json"


def descriptions_file(root: str | Path) -> Path:
    return Path(root) / DESCRIPTIONS_FILE


def load_descriptions(root: str | Path, names: Iterable[str] | None = None) -> dict[str, str]:
    """{image name: description} from the dataset root; with `names` (e.g. one split's image
    names), only those, each of which must have a description."""
    path = descriptions_file(root)
    data = read_json(path, what="scene descriptions file")
    if not isinstance(data, dict):
        raise CirflowError(f"{path}: expected a JSON object of image name -> description")
    for name, text in data.items():
        if not isinstance(text, str) or not text.strip():
            raise CirflowError(f"{path}: image {name!r} has no description (got {text!r})")
    if names is None:
        return data
    wanted = list(names)
    missing = [n for n in wanted if n not in data]
    if missing:
        shown = ", ".join(repr(n) for n in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise CirflowError(f"{path}: no description for image {shown}{more}")
    return {n: data[n] for n in wanted}
