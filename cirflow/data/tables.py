"""CIRR triplets and images, as tensors, for training and evaluation.

Images go through `transforms.preprocess` once per image and are kept as uint8 (3, S, S):

* ``memory`` — every image of the split is decoded up front (a DataLoader with `num_workers`)
  into one tensor; batches are then gathered by index, with no per-step decoding. For the tiny
  preset (64 px) the 3,750 demo train+val images take 46 MB.
* ``none``   — images are decoded when a batch needs them, by DataLoader workers (the real CIRR
  at 224 px on a GPU machine).
* ``auto``   — memory when the table fits in `image_cache.MEMORY_BUDGET` bytes, else none.

With a frozen ViT, `feature_store.FeatureTable` stands in for `ImageTable`: the same batches,
holding cached ViT tokens instead of pixels (`model_input` turns either into model input).

Both modes visit the triplets in the same order (one permutation per epoch from a generator
seeded with (seed, epoch)), so they give the same batches; that is also what makes a resumed run
identical to an uninterrupted one.

Captions: a CIRR triplet's one caption is tokenised once. A FashionIQ triplet has two
(`captions`), and SPRC combines them anew at every step (`fashioniq_captions.training_caption`):
its training batches tokenise the texts of one uniform draw per triplet, drawn in the epoch's
order from a generator seeded by (seed, epoch) (`caption_draws`), so a run is reproducible and
a resumed epoch draws what it drew the first time. Evaluation ranks with `caption`, the
evaluation caption, tokenised once like CIRR's.

Unreadable images are found when the table is built, in both modes (`memory`: while decoding;
`none`: one full decode of the split by `images.check_images`), and listed in
`ImageTable.unreadable`. Such an image reads as black (zeros) wherever it is asked for;
`TripletData` leaves out the triplets that need it (`skip_unreadable`), and the evaluation leaves
it out of the gallery. So one bad file never stops a job, and both modes agree.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cirflow.data.captions import blip_captions
from cirflow.data.datasets import SplitDataset
from cirflow.data.fashioniq_captions import caption_in_form, training_form
from cirflow.data.image_cache import check_cache_mode, keep_in_memory
from cirflow.data.images import check_images, check_unreadable_fraction, read_image
from cirflow.data.transforms import Geometry, normalize, preprocess
from cirflow.errors import CirflowError, SettingError

log = logging.getLogger(__name__)
# Tags FashionIQ's caption generator (with seed and epoch), apart from every other stream.
CAPTION_STREAM = 0xF1C


def _decode(path: Path, size: int) -> tuple[torch.Tensor, Geometry]:
    read = read_image(path)
    if read.image is None:
        raise CirflowError(f"cannot read image {path}: {read.error}")
    return preprocess(read.image, size)


class _DecodeDataset(Dataset):
    def __init__(self, paths: list[Path], size: int):
        self.paths, self.size = paths, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        read = read_image(self.paths[i])
        if read.image is None:
            return i, torch.zeros((3, self.size, self.size), dtype=torch.uint8), None, read.error
        img, geo = preprocess(read.image, self.size)
        return i, img, (geo.width, geo.height), None


def _collate_decoded(items):
    idx = torch.tensor([i for i, _, _, _ in items])
    imgs = torch.stack([im for _, im, _, _ in items])
    sizes = [s for _, _, s, _ in items]
    errors = [e for _, _, _, e in items]
    return idx, imgs, sizes, errors


class SplitTable:
    """What `ImageTable` and `feature_store.FeatureTable` share: the split's image names (in
    split-file order) and the unreadable ones among them (name → why)."""

    split: str
    root: Path  # the dataset root: where a missing image was looked for
    names: list[str]
    unreadable: dict[str, str]

    def __len__(self) -> int:
        return len(self.names)

    def is_readable(self, name: str) -> bool:
        return name not in self.unreadable

    def check_unreadable(self, max_fraction: float) -> None:
        """Fail at once, listing the images, when more than `max_fraction` cannot be read."""
        check_unreadable_fraction(
            self.unreadable,
            len(self.names),
            f"split {self.split} (dataset root {self.root})",
            max_fraction,
        )


class ImageTable(SplitTable):
    """The images of one split: name → index, uint8 (3, S, S) tensors and original sizes."""

    def __init__(
        self,
        dataset: SplitDataset,
        size: int,
        cache: str = "auto",
        num_workers: int = 0,
        progress: bool = True,
    ):
        check_cache_mode(cache)
        self.split, self.root = dataset.split, dataset.root
        self.names = list(dataset.images)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.paths = [dataset.image_path(n) for n in self.names]
        self.size = size
        self.num_workers = num_workers
        self.cached = keep_in_memory(cache, len(self.names), size)
        self.images: torch.Tensor | None = None
        self.sizes: list[tuple[int, int] | None] = [None] * len(self.names)
        # name -> why it cannot be read (split-file order); those images read as zeros.
        self.unreadable: dict[str, str] = {}
        if self.cached:
            self._load_all(progress)
        else:
            self._check_all(progress)
        if self.unreadable:
            log.warning(
                "%s: %d of %d images cannot be read and are left out: %s",
                self.split,
                len(self.unreadable),
                len(self.names),
                "; ".join(
                    f"{n} ({self.paths[self.index[n]]}): {e}" for n, e in self.unreadable.items()
                ),
            )

    def _check_all(self, progress: bool) -> None:
        """Mode none: decode every image once now, so that a bad one is known before any step."""
        check = check_images(
            dict(zip(self.names, self.paths, strict=True)),
            workers=max(1, self.num_workers),
            progress=progress,
        )
        for name, size in check.sizes.items():
            self.sizes[self.index[name]] = size
        self.unreadable = check.unreadable

    def _load_all(self, progress: bool) -> None:
        from tqdm import tqdm

        self.images = torch.zeros((len(self.names), 3, self.size, self.size), dtype=torch.uint8)
        errors: dict[int, str] = {}
        loader = DataLoader(
            _DecodeDataset(self.paths, self.size),
            batch_size=64,
            num_workers=self.num_workers,
            collate_fn=_collate_decoded,
        )
        with tqdm(
            total=len(self.names),
            desc="decode images",
            unit="img",
            disable=not progress,
            mininterval=5,
        ) as bar:
            for idx, imgs, sizes, errs in loader:
                self.images[idx] = imgs
                for i, s, e in zip(idx.tolist(), sizes, errs, strict=True):
                    if e is None:
                        self.sizes[i] = s
                    else:
                        errors[i] = e
                bar.update(len(idx))
        self.unreadable = {self.names[i]: errors[i] for i in sorted(errors)}

    def get(self, indices: list[int] | torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, S, S) for these image indices (decoded now when not cached; an
        unreadable image is all zeros, as in the cache)."""
        if self.images is not None:
            return self.images[torch.as_tensor(indices, dtype=torch.long)]
        return torch.stack([self._get_one(int(i)) for i in list(indices)])

    def _get_one(self, i: int) -> torch.Tensor:
        if self.names[i] in self.unreadable:
            return torch.zeros((3, self.size, self.size), dtype=torch.uint8)
        return _decode(self.paths[i], self.size)[0]

    def image_size(self, i: int) -> tuple[int, int]:
        """Original (width, height) of image i (decodes the header when not known yet)."""
        if self.sizes[i] is None:
            from PIL import Image

            try:
                with Image.open(self.paths[i]) as im:
                    from PIL import ImageOps

                    self.sizes[i] = ImageOps.exif_transpose(im).size
            except Exception as exc:
                raise CirflowError(f"cannot read image {self.paths[i]}: {exc}") from exc
        return self.sizes[i]


@dataclass
class Batch:
    """One training or evaluation batch: images as a table gives them (uint8 pixels or cached
    ViT tokens) until `to` makes them model input on a device (what `SPRC.forward` takes)."""

    indices: torch.Tensor | None  # triplet indices
    # Image indices of each target / reference (to mask false negatives in the loss).
    target_ids: torch.Tensor | None
    reference_ids: torch.Tensor | None
    ref: torch.Tensor  # uint8 (B, 3, S, S), or cached tokens (B, T, D)
    target: torch.Tensor | None
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    boxes: torch.Tensor | None = None  # (B, M, 4) input pixels, of the targets
    box_valid: torch.Tensor | None = None  # (B, M) bool
    # The references' boxes (region tokens with batch_images negatives), same layout.
    ref_boxes: torch.Tensor | None = None
    ref_box_valid: torch.Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        """The batch as model input on `device` (images through `model_input`)."""

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return Batch(
            self.indices,
            move(self.target_ids),
            move(self.reference_ids),
            model_input(self.ref, device),
            None if self.target is None else model_input(self.target, device),
            move(self.input_ids),
            move(self.attention_mask),
            move(self.boxes),
            move(self.box_valid),
            move(self.ref_boxes),
            move(self.ref_box_valid),
        )

    def without_image_ids(self) -> Batch:
        """The same batch without image ids: the losses then mask no false negatives (SPRC)."""
        return dataclasses.replace(self, target_ids=None, reference_ids=None)

    @classmethod
    def of_tensors(cls, ref_images, target_images, input_ids, attention_mask, **optional) -> Batch:
        """A batch of model-ready tensors given by name (`SPRC.forward`'s keywords): the four
        above, and any of target_ids, reference_ids, boxes, box_valid, ref_boxes,
        ref_box_valid."""
        optional.setdefault("target_ids", None)
        optional.setdefault("reference_ids", None)
        return cls(
            None,
            ref=ref_images,
            target=target_images,
            input_ids=input_ids,
            attention_mask=attention_mask,
            **optional,
        )


def model_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """What a table gives → what the model takes: uint8 pixels are CLIP-normalised floats,
    cached ViT tokens (float16, from `feature_store.FeatureTable`) become float32."""
    images = images.to(device, non_blocking=True)
    if images.dtype == torch.uint8:
        return normalize(images)
    return images.float()


def pad_tokens(token_lists: list[list[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(t) for t in token_lists)
    ids = torch.full((len(token_lists), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_lists), length), dtype=torch.long)
    for i, t in enumerate(token_lists):
        ids[i, : len(t)] = torch.tensor(t, dtype=torch.long)
        mask[i, : len(t)] = 1
    return ids, mask


def pad_boxes(
    per_item: list[torch.Tensor], width: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(boxes (B, M, 4), valid (B, M)): each item's boxes, zero-padded to M = `width` (default:
    the most boxes of any item)."""
    m = max((len(b) for b in per_item), default=0) if width is None else int(width)
    boxes = torch.zeros((len(per_item), m, 4), dtype=torch.float32)
    valid = torch.zeros((len(per_item), m), dtype=torch.bool)
    for i, b in enumerate(per_item):
        boxes[i, : len(b)] = b
        valid[i, : len(b)] = True
    return boxes, valid


def pairid_summary(pairids: list[int], limit: int = 10) -> str:
    """'3, 17, 42 … and N more' for messages."""
    more = f" … and {len(pairids) - limit:,} more" if len(pairids) > limit else ""
    return ", ".join(map(str, pairids[:limit])) + more


class TripletData:
    """The triplets of a split, tokenised once, with the images of the split's table.

    Captions go through LAVIS's ``blip_caption`` preprocessing first, as SPRC does at training
    and evaluation (`cirflow.data.captions`).
    """

    def __init__(
        self,
        dataset: SplitDataset,
        table: ImageTable,
        tokenizer,
        max_txt_len: int,
        with_targets: bool = True,
        skip_unreadable: bool = True,
    ):
        """`skip_unreadable`: leave out the triplets whose reference (or target) cannot be read
        (listed in `left_out`); else keep them, the unreadable reference reading as black."""
        self.dataset = dataset
        self.table = table
        if not dataset.triplets:
            raise CirflowError(f"no triplets in {dataset.captions_source()}")
        self._keep_readable(with_targets, skip_unreadable)
        self.ref_idx = torch.tensor([table.index[t["reference"]] for t in self.triplets])
        self.target_idx = (
            torch.tensor([table.index[t["target_hard"]] for t in self.triplets])
            if with_targets
            else None
        )
        captions = blip_captions([t["caption"] for t in self.triplets])
        self.empty_captions = self._empty_captions(captions)
        enc = tokenizer(captions, truncation=True, max_length=max_txt_len)
        self.tokens: list[list[int]] = enc["input_ids"]
        self.pad_id = tokenizer.pad_token_id or 0
        # FashionIQ: training tokenises each batch's freshly drawn captions (module docstring).
        self.tokenizer, self.max_txt_len = tokenizer, max_txt_len
        self.draws_captions = all("captions" in t for t in self.triplets)
        # Per image index: its boxes in input pixels (stage 2, `regions.BoxFile.load_training`):
        # the targets', and the references' too where `reference_boxes` is set (region tokens
        # of the reference images, which are candidates with batch_images negatives).
        self.target_boxes: dict[int, torch.Tensor] | None = None
        self.reference_boxes = False
        # Or each triplet's own boxes in its target (a box file keyed by pairid).
        self.triplet_boxes: dict[int, torch.Tensor] | None = None

    def _keep_readable(self, with_targets: bool, skip_unreadable: bool) -> None:
        """`triplets`: those whose images can be read (all with `skip_unreadable` False);
        `left_out`: the others, each with the images it needed that cannot be read."""
        dataset, table = self.dataset, self.table
        self.left_out: list[dict] = []
        self.triplets = []
        for t in dataset.triplets:
            needed = [t["reference"]] + ([t["target_hard"]] if with_targets else [])
            bad = sorted({n for n in needed if not table.is_readable(n)})
            if bad and skip_unreadable:
                self.left_out.append({"pairid": t["pairid"], "images": bad})
            else:
                self.triplets.append(t)
        if self.left_out:
            log.warning(
                "%s: %d of %d triplets left out (reference or target cannot be read)",
                dataset.split,
                len(self.left_out),
                len(dataset.triplets),
            )
        if not self.triplets:
            raise CirflowError(
                f"{dataset.split}: every triplet needs an image that cannot be read "
                f"({len(table.unreadable):,} unreadable images under the dataset root "
                f"{dataset.root}, e.g. {next(iter(table.unreadable))})"
            )

    def _empty_captions(self, captions: list[str]) -> list[int]:
        """The pairids of the triplets whose cleaned caption is empty (blank, whitespace or
        punctuation only), logged. They are kept, as SPRC keeps them: such a query has no
        words, only its reference image."""
        empty = [t["pairid"] for t, c in zip(self.triplets, captions, strict=True) if not c]
        if empty:
            log.warning(
                "%s: %d of %d captions are empty (blank, whitespace or punctuation only); "
                "their queries are kept, with no words: only the reference image; pairids %s",
                self.dataset.split,
                len(empty),
                len(self.triplets),
                pairid_summary(empty),
            )
        return empty

    def __len__(self) -> int:
        return len(self.triplets)

    def make_batch(
        self,
        idx: torch.Tensor,
        ref: torch.Tensor,
        target: torch.Tensor | None,
        draws: torch.Tensor | None = None,
    ) -> Batch:
        """The batch of triplets `idx`; `draws` (one per triplet index, FashionIQ training):
        each triplet's caption is the form its draw picks, tokenised now."""
        if draws is None:
            ids, mask = pad_tokens([self.tokens[i] for i in idx.tolist()], self.pad_id)
        else:
            ids, mask = pad_tokens(self.drawn_tokens(idx, draws), self.pad_id)
        target_ids = self.target_idx[idx] if self.target_idx is not None else None
        batch = Batch(idx, target_ids, self.ref_idx[idx], ref, target, ids, mask)
        if self.target_boxes is not None and self.target_idx is not None:
            empty = torch.zeros((0, 4))
            per = [self.target_boxes.get(int(self.target_idx[i]), empty) for i in idx.tolist()]
            batch.boxes, batch.box_valid = pad_boxes(per)
            if self.reference_boxes:
                per = [self.target_boxes.get(int(self.ref_idx[i]), empty) for i in idx.tolist()]
                batch.ref_boxes, batch.ref_box_valid = pad_boxes(per)
        elif self.triplet_boxes is not None:
            empty = torch.zeros((0, 4))
            per = [self.triplet_boxes.get(int(i), empty) for i in idx.tolist()]
            batch.boxes, batch.box_valid = pad_boxes(per)
        return batch

    def training_texts(self, idx: torch.Tensor, draws: torch.Tensor) -> list[str]:
        """The captions of triplets `idx` at one step (FashionIQ): the forms their draws pick,
        then LAVIS's blip_caption, as at evaluation."""
        texts = [
            caption_in_form(self.triplets[i]["captions"], training_form(float(draws[i])))
            for i in idx.tolist()
        ]
        return blip_captions(texts)

    def drawn_tokens(self, idx: torch.Tensor, draws: torch.Tensor) -> list[list[int]]:
        texts = self.training_texts(idx, draws)
        return self.tokenizer(texts, truncation=True, max_length=self.max_txt_len)["input_ids"]

    def caption_draws(self, order: torch.Tensor, seed: int, epoch: int) -> torch.Tensor | None:
        """FashionIQ: one uniform draw per triplet, made in the epoch's `order` (as SPRC draws
        one per triplet in batch order) from a generator of its own seeded by (seed, epoch),
        returned by triplet index; None for CIRR (one fixed caption)."""
        if not self.draws_captions:
            return None
        rng = np.random.default_rng([CAPTION_STREAM, int(seed), int(epoch)])
        draws = torch.empty(len(self), dtype=torch.float64)
        draws[order] = torch.from_numpy(rng.random(len(order)))
        return draws

    def permutation(
        self, seed: int, epoch: int, shuffle: bool, batching: str = "random"
    ) -> torch.Tensor:
        """The triplet order of one epoch.

        ``random`` (SPRC): a uniform shuffle. ``img_set``: the img_sets are shuffled and the
        triplets of one set stay next to each other (shuffled among themselves), so most land in
        the same batch and the set's other images become in-batch hard negatives — the images
        the subset recall Rs@K must tell apart.
        """
        if not shuffle:
            return torch.arange(len(self))
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
        if batching == "random":
            return torch.randperm(len(self), generator=g)
        if batching != "img_set":
            raise CirflowError(f"train: batching must be 'random' or 'img_set' (got {batching!r})")
        if any("img_set" not in t for t in self.triplets):
            raise SettingError(
                "batching",
                f"{{key}} img_set groups the triplets of one CIRR img_set, and the triplets of "
                f"{self.dataset.captions_source()} have none (FashionIQ): use random",
            )
        groups: dict = {}
        for i, t in enumerate(self.triplets):
            groups.setdefault(t["img_set"].get("id", i), []).append(i)
        keys = list(groups)
        order = []
        for k in torch.randperm(len(keys), generator=g).tolist():
            members = groups[keys[k]]
            order += [members[j] for j in torch.randperm(len(members), generator=g).tolist()]
        return torch.tensor(order, dtype=torch.long)

    def batches(
        self,
        batch_size: int,
        seed: int = 0,
        epoch: int = 0,
        num_workers: int = 0,
        batching: str = "random",
    ) -> Iterator[Batch]:
        """The batches of one training epoch: in the epoch's order (`permutation`), the last
        partial batch dropped, with the targets (same order whether images are cached or not)."""
        order = self.permutation(seed, epoch, True, batching)
        with_targets = self.target_idx is not None
        draws = self.caption_draws(order, seed, epoch)
        yield from self._batches_in(order, batch_size, True, with_targets, num_workers, draws)

    def query_batches(self, batch_size: int, num_workers: int = 0) -> Iterator[Batch]:
        """Every triplet once, in triplet order, without the target images (evaluation)."""
        order = self.permutation(0, 0, shuffle=False)
        yield from self._batches_in(order, batch_size, False, False, num_workers)

    def _batches_in(
        self,
        order: torch.Tensor,
        batch_size: int,
        drop_last: bool,
        load_targets: bool,
        num_workers: int,
        draws: torch.Tensor | None = None,
    ) -> Iterator[Batch]:
        """`order` cut into batches of `batch_size` (the last partial one dropped with
        `drop_last`), gathered here when the table is cached, else decoded by workers;
        `draws`: FashionIQ's caption draws (`caption_draws`)."""
        n_full = len(order) // batch_size
        n = n_full if drop_last else -(-len(order) // batch_size)
        chunks = [order[i * batch_size : (i + 1) * batch_size] for i in range(n)]
        chunks = [c for c in chunks if len(c)]
        if self.table.cached:
            for idx in chunks:
                ref = self.table.get(self.ref_idx[idx])
                tgt = self.table.get(self.target_idx[idx]) if load_targets else None
                yield self.make_batch(idx, ref, tgt, draws)
            return
        loader = DataLoader(
            _ChunkDataset(self, chunks, load_targets, draws),
            batch_size=None,
            num_workers=num_workers,
            collate_fn=None,
        )
        yield from loader

    def num_batches(self, batch_size: int, drop_last: bool = True) -> int:
        return len(self) // batch_size if drop_last else -(-len(self) // batch_size)


class _ChunkDataset(Dataset):
    """One item = one whole batch (decoded in a worker)."""

    def __init__(
        self,
        data: TripletData,
        chunks: list[torch.Tensor],
        load_targets: bool,
        draws: torch.Tensor | None = None,
    ):
        self.data, self.chunks, self.load_targets = data, chunks, load_targets
        self.draws = draws

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> Batch:
        idx = self.chunks[i]
        ref = self.data.table.get(self.data.ref_idx[idx].tolist())
        tgt = self.data.table.get(self.data.target_idx[idx].tolist()) if self.load_targets else None
        return self.data.make_batch(idx, ref, tgt, self.draws)
