"""Cached ViT tokens of a split (rule image_features), read in place by training and evaluation.

One shard = two files, written by `cirflow.model.features`:

    shard-{i}-of-{n}.npy         float16 array (N, T, D): the frozen ViT's tokens of the shard's N
                                 images (before `ln_vision`, which trains), in the index's order;
                                 the rows of unreadable images are zeros
    shard-{i}-of-{n}.index.json  the images' names, sizes, the unreadable ones, the
                                 fingerprint of the model (`feature_index`)

The arrays are opened with `numpy.load(mmap_mode="r")`: a batch reads only its own rows, so a
split never has to fit in RAM (ViT-g: 257 × 1408 × 2 B ≈ 0.72 MB per image, ≈ 12 GB for CIRR
train). `FeatureTable` has the interface of `tables.ImageTable` (names, index, get, image_size,
unreadable), so `TripletData` batches cached tokens exactly as it batches pixels and leaves out
the triplets that need an unreadable image, with a count.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cirflow.data.datasets import SplitDataset
from cirflow.data.feature_index import read_index, rebuild_advice
from cirflow.data.tables import SplitTable
from cirflow.errors import CirflowError


class FeatureStore:
    """All shards of a split: name -> (shard, row), arrays memory-mapped."""

    def __init__(self, array_paths: list[str | Path]):
        if not array_paths:
            raise CirflowError("no image-feature shards given")
        self.paths = [Path(p) for p in array_paths]
        self.arrays: list[np.ndarray] = []
        self.where: dict[str, tuple[int, int]] = {}
        self.sizes: dict[str, tuple[int, int]] = {}
        self.unreadable: dict[str, str] = {}  # name -> why it could not be read
        self.fingerprints: set[str] = set()
        self.shape = None
        for k, path in enumerate(self.paths):
            index = read_index(path)
            self.arrays.append(self._open(path, index))
            self.unreadable.update({e["image"]: e["error"] for e in index["unreadable"]})
            self.fingerprints.add(index["fingerprint"])
            for row, name in enumerate(index["names"]):
                self.where[name] = (k, row)  # an unreadable image's row is zeros
                if name in index["sizes"]:
                    self.sizes[name] = tuple(index["sizes"][name])
        if len(self.fingerprints) > 1:
            raise CirflowError(
                "image-feature shards made with different models or transforms: "
                f"{', '.join(map(str, self.paths))}; rerun `snakemake --forcerun image_features` "
                "(rule image_features rebuilds every shard of the current model)"
            )

    def _open(self, path: Path, index: dict) -> np.ndarray:
        """The shard's array, memory-mapped, checked against its index and the other shards."""
        try:
            array = np.load(path, mmap_mode="r")
        except (OSError, ValueError, EOFError) as exc:
            raise CirflowError(
                f"cannot read image features {path} (truncated or damaged: {exc}); "
                + rebuild_advice(path)
            ) from exc
        names = index["names"]
        if array.shape[0] != len(names) or array.dtype != np.float16:
            raise CirflowError(
                f"{path}: {array.shape} {array.dtype} does not match its index "
                f"({len(names)} images, float16); " + rebuild_advice(path)
            )
        if self.shape is not None and array.shape[1:] != self.shape:
            raise CirflowError(
                f"{path}: tokens {array.shape[1:]} differ from {self.shape} (the other shards); "
                + rebuild_advice(path)
            )
        self.shape = array.shape[1:]
        return array

    def rows(self, names: list[str]) -> np.ndarray:
        """float16 (len(names), T, D), read from the memory maps."""
        out = np.empty((len(names), *self.shape), dtype=np.float16)
        for i, name in enumerate(names):
            k, row = self.where[name]
            out[i] = self.arrays[k][row]
        return out


class FeatureTable(SplitTable):
    """A split's images as cached ViT tokens: the `ImageTable` interface (names in split-file
    order, `index`, `get`, `image_size`, `unreadable`, `is_readable`)."""

    cached = True  # batches are gathered in the main process (reads are page-cache hits)

    def __init__(self, dataset: SplitDataset, store: FeatureStore):
        self.split, self.root = dataset.split, dataset.root
        self.dataset = dataset
        shards = ", ".join(map(str, store.paths))
        unknown = [n for n in store.where if n not in dataset.images]
        if unknown:
            raise CirflowError(
                f"image features {shards} hold {len(unknown)} images that are not in the "
                f"{dataset.split} split file {dataset.images_source()} (e.g. "
                f"{unknown[0]!r}): features of another split or dataset?"
            )
        absent = [n for n in dataset.images if n not in store.where]
        if absent:
            raise CirflowError(
                f"{len(absent)} images of {dataset.images_source()} have no "
                f"cached features in {shards} (e.g. {absent[0]!r}): the shards do not cover "
                "the split (made from another split file?); rerun "
                "`snakemake --forcerun image_features`"
            )
        self.store = store
        self.names = list(dataset.images)
        self.index = {n: i for i, n in enumerate(self.names)}
        # name -> why it cannot be read (found once, by the image-features stage).
        self.unreadable = {n: e for n, e in store.unreadable.items() if n in self.index}

    def get(self, indices: list[int] | torch.Tensor) -> torch.Tensor:
        """float16 (B, T, D) cached tokens of these image indices (zeros if unreadable)."""
        names = [self.names[i] for i in torch.as_tensor(indices).tolist()]
        return torch.from_numpy(self.store.rows(names))

    def image_size(self, i: int) -> tuple[int, int]:
        name = self.names[i]
        if name in self.unreadable:
            raise CirflowError(
                f"image {name} ({self.dataset.image_path(name)}) could not be read: "
                f"{self.unreadable[name]}"
            )
        return self.store.sizes[name]
