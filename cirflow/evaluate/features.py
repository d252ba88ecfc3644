"""Gallery features (once per image of the split) and composed-query features."""

from __future__ import annotations

import logging

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from cirflow.data.tables import ImageTable, TripletData, model_input

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
    batch_size: int = 128,
    num_workers: int = 0,
    progress: bool = False,
    indices: list[int] | None = None,
) -> torch.Tensor:
    """K_t of the table's images `indices` (default: all), in that order: (N, nq, embed_dim) on
    `device`."""
    n = len(table) if indices is None else len(indices)
    return _encode(
        model,
        _image_batches(table, batch_size, num_workers, indices),
        -(-n // batch_size),
        "gallery",
        progress,
        lambda images: model.gallery_features(model_input(images, device)),
    )


@torch.no_grad()
def query_features(
    model,
    data: TripletData,
    device: torch.device,
    batch_size: int = 128,
    num_workers: int = 0,
    progress: bool = False,
) -> torch.Tensor:
    """Composed query q of every triplet, in triplet order: (Q, embed_dim) on `device`."""
    batches = data.batches(
        batch_size, shuffle=False, drop_last=False, num_workers=num_workers, targets=False
    )
    return _encode(
        model,
        batches,
        data.num_batches(batch_size, drop_last=False),
        "queries",
        progress,
        lambda batch: model.query_features(
            model_input(batch.ref, device),
            batch.input_ids.to(device),
            batch.attention_mask.to(device),
        ),
    )
