"""Gallery features (once per image of the split) and composed-query features.

With region tokens (docs/design.md §6), each gallery image also gets its region tokens R from
its own boxes (the split's box file, mapped into the input as in training by
`cirflow.data.regions`), from the same ViT / `ln_vision` pass as its global tokens K.

Each function takes the evaluation's `EvalSettings` for its batch size, DataLoader workers and
progress bar.
"""

from __future__ import annotations

import logging

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from cirflow.data.tables import ImageTable, TripletData, model_input, pad_boxes
from cirflow.evaluate.settings import EvalSettings

log = logging.getLogger(__name__)


class _TableChunks(Dataset):
    def __init__(self, table: ImageTable, chunks: list[list[int]]):
        self.table, self.chunks = table, chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.table.get(self.chunks[i])


def _image_batches(
    table: ImageTable, batch_size: int, num_workers: int, indices: list[int] | None = None
):
    order = list(range(len(table))) if indices is None else list(indices)
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if table.cached:
        for c in chunks:
            yield table.get(c)
        return
    yield from DataLoader(
        _TableChunks(table, chunks),
        batch_size=None,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
    )


def _encode(model, batches, total: int, desc: str, progress: bool, encode) -> torch.Tensor:
    """`encode(batch)` for every batch, in eval mode, concatenated (the model's mode restored)."""
    was_training = model.training
    model.eval()
    feats = [
        encode(b)
        for b in tqdm(batches, total=total, desc=desc, disable=not progress, mininterval=10)
    ]
    model.train(was_training)
    return torch.cat(feats)


@torch.no_grad()
def gallery_features(
    model,
    table: ImageTable,
    device: torch.device,
    settings: EvalSettings,
    indices: list[int] | None = None,
) -> torch.Tensor:
    """K_t of the table's images `indices` (default: all), in that order: (N, nq, embed_dim) on
    `device`."""
    n = len(table) if indices is None else len(indices)
    return _encode(
        model,
        _image_batches(table, settings.batch_size, settings.num_workers, indices),
        -(-n // settings.batch_size),
        "gallery",
        settings.progress,
        lambda images: model.gallery_features(model_input(images, device)),
    )


@torch.no_grad()
def gallery_region_features(
    model,
    table: ImageTable,
    boxes: dict[int, torch.Tensor],
    device: torch.device,
    settings: EvalSettings,
    indices: list[int] | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """(K (N, nq, D), (R (N, M, D), valid (N, M))) of the table's images `indices` (default:
    all), in that order, on `device`: `boxes` {image index: (K, 4) input pixels}; M = the most
    boxes of any image; an image without boxes has no valid slot (it keeps its global tokens
    only)."""
    order = list(range(len(table))) if indices is None else list(indices)
    width = max((len(b) for b in boxes.values()), default=0)
    empty = torch.zeros((0, 4))
    was_training = model.training
    model.eval()
    globals_, regions, valid = [], [], []
    start = 0
    batch_size = settings.batch_size
    batches = _image_batches(table, batch_size, settings.num_workers, order)
    total = -(-len(order) // batch_size)
    bar = tqdm(batches, total=total, desc="gallery", disable=not settings.progress, mininterval=10)
    for images in bar:
        idx = order[start : start + len(images)]
        start += len(images)
        b, v = pad_boxes([boxes.get(i, empty) for i in idx], width)
        k, r = model.gallery_tokens(model_input(images, device), b.to(device), v.to(device))
        globals_.append(k)
        regions.append(r)
        valid.append(v.to(device))
    model.train(was_training)
    return torch.cat(globals_), (torch.cat(regions), torch.cat(valid))


@torch.no_grad()
def query_features(
    model, data: TripletData, device: torch.device, settings: EvalSettings
) -> torch.Tensor:
    """Composed query q of every triplet, in triplet order: (Q, embed_dim) on `device`."""
    return _encode(
        model,
        data.query_batches(settings.batch_size, settings.num_workers),
        data.num_batches(settings.batch_size, drop_last=False),
        "queries",
        settings.progress,
        lambda batch: model.query_features(
            model_input(batch.ref, device),
            batch.input_ids.to(device),
            batch.attention_mask.to(device),
        ),
    )
