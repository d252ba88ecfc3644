"""The evaluator of a dataset's split: CIRR's protocol (`evaluator.SplitEvaluator`) or
FashionIQ's (`fashioniq_evaluator.FashionIQEvaluator`), by the root's layout."""

from __future__ import annotations

from pathlib import Path

import torch

from cirflow.data.datasets import FASHIONIQ, DatasetRoot, as_dataset_root
from cirflow.evaluate.evaluator import PIXELS_ONLY, SplitEvaluator, SplitSources
from cirflow.evaluate.fashioniq_evaluator import FashionIQEvaluator
from cirflow.evaluate.settings import EvalSettings


def split_evaluator(
    root: str | Path | DatasetRoot,
    split: str,
    model,
    settings: EvalSettings,
    device: torch.device | None = None,
    sources: SplitSources = PIXELS_ONLY,
) -> SplitEvaluator:
    """`split` of the dataset at `root` (a plain path: CIRR) ready to be scored."""
    root = as_dataset_root(root)
    kind = FashionIQEvaluator if root.kind == FASHIONIQ else SplitEvaluator
    return kind(root, split, model, settings, device, sources)
