"""Gallery features (once per image of the split) and composed-query features."""

from __future__ import annotations

import logging

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from cirflow.train.data import ImageTable, TripletData
from cirflow.train.transforms import normalize

log = logging.getLogger(__name__)


class _TableChunks(Dataset):
    def __init__(self, table: ImageTable, chunks: list[list[int]]):
        self.table, self.chunks = table, chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.table.get(self.chunks[i])


def _image_batches(table: ImageTable, batch_size: int, num_workers: int):
    chunks = [
        list(range(i, min(i + batch_size, len(table)))) for i in range(0, len(table), batch_size)
    ]
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


@torch.no_grad()
def gallery_features(
    model,
    table: ImageTable,
    device: torch.device,
    batch_size: int = 128,
    num_workers: int = 0,
    progress: bool = False,
) -> torch.Tensor:
    """K_t of every image of the table, in table order: (N, nq, embed_dim) on `device`."""
    was_training = model.training
    model.eval()
    feats = []
    n_batches = -(-len(table) // batch_size)
    for images in tqdm(
        _image_batches(table, batch_size, num_workers),
        total=n_batches,
        desc="gallery",
        disable=not progress,
        mininterval=10,
    ):
        feats.append(model.gallery_features(normalize(images.to(device, non_blocking=True))))
    model.train(was_training)
    return torch.cat(feats)


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
    was_training = model.training
    model.eval()
    feats = []
    for batch in tqdm(
        data.batches(
            batch_size, shuffle=False, drop_last=False, num_workers=num_workers, targets=False
        ),
        total=data.num_batches(batch_size, drop_last=False),
        desc="queries",
        disable=not progress,
        mininterval=10,
    ):
        ref = normalize(batch.ref.to(device, non_blocking=True))
        feats.append(
            model.query_features(ref, batch.input_ids.to(device), batch.attention_mask.to(device))
        )
    model.train(was_training)
    return torch.cat(feats)
