"""Evaluation entry points used by the CLI and the workflow adapters.

`evaluate_stage` is the workflow's one evaluation job per stage: it builds the model once, scores
CIRR val (recalls) and test1 (the test-server files), or FashionIQ val (its per-category
protocol; no test server, so no submission files: `submission_out` None). `evaluate_checkpoint` and
`write_submission` are the two halves, for the `cirflow evaluate` / `cirflow submission`
commands. A model with region tokens (docs/design.md §6) scores each split's gallery with that
split's own boxes (`boxes`: a `BoxFile` per split).
The stage table (comparison.csv) is `cirflow.evaluate.comparison`'s.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cirflow.data.datasets import DatasetRoot
from cirflow.device import resolve_device
from cirflow.errors import CirflowError, naming_keys
from cirflow.evaluate.evaluator import PIXELS_ONLY, SplitEvaluator, SplitSources, format_metrics
from cirflow.evaluate.evaluators import split_evaluator
from cirflow.evaluate.per_edit import PER_EDIT_KEY, format_edit_types
from cirflow.evaluate.rankings import TOP_K, rankings_document, write_rankings
from cirflow.evaluate.settings import EvalSettings
from cirflow.io import write_json_atomic
from cirflow.model.factory import load_model

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A checkpoint's model in eval mode, on its device."""

    model: Any
    checkpoint: Path
    epoch: int | None
    device: torch.device


@dataclass(frozen=True)
class ScoreFiles:
    """What scoring a split writes: its recalls (JSON), and optionally the run's details and
    each query's ranking (`cirflow.evaluate.rankings`)."""

    metrics: str | Path
    details: str | Path | None = None
    rankings: str | Path | None = None


@dataclass(frozen=True)
class SubmissionFiles:
    """The CIRR test-server files (recall.json, top 50; recall_subset.json, top 3) and the
    details of how they were made (unreadable images, fallback-ranked queries)."""

    recall: str | Path
    subset: str | Path
    details: str | Path | None = None


def load_for_evaluation(
    checkpoint: str | Path, settings: EvalSettings, backbone: str | None = None
) -> LoadedModel:
    if settings.threads:
        torch.set_num_threads(int(settings.threads))
    with naming_keys(settings.key):
        dev = resolve_device(settings.device)
    model, obj = load_model(checkpoint, backbone, dev)
    model.use_amp = dev.type == "cuda"
    model.eval()
    return LoadedModel(model, Path(checkpoint), obj.get("epoch"), dev)


def score_split(
    loaded: LoadedModel,
    cirr_root: str | Path | DatasetRoot,
    settings: EvalSettings,
    out: ScoreFiles,
    split: str = "val",
    sources: SplitSources = PIXELS_ONLY,
) -> dict[str, float]:
    """The recalls of a loaded model on `split` → `out.metrics` (JSON, percent): CIRR's
    protocol (METRIC_KEYS), or FashionIQ's where `cirr_root` is a FashionIQ `DatasetRoot`
    (`fashioniq_recall.metric_keys`: per-category R@10/R@50, their means, average_recall).

    On CIRR, where the split has an edit-type sidecar, the file holds one more key,
    PER_EDIT_KEY: {edit type: {recall_at1, recall_at5, group_recall_at1, queries}}. The
    returned dict is the metrics only.
    """
    if split == "test1":
        raise CirflowError(
            "test1 has no targets: use `cirflow submission` for the test-server files"
        )
    t0 = time.perf_counter()
    ev = split_evaluator(cirr_root, split, loaded.model, settings, loaded.device, sources)
    metrics, per_edit, ranked = ev.metrics_and_edit_types(
        loaded.model, TOP_K if out.rankings else 0
    )
    written: dict[str, Any] = dict(metrics)
    if per_edit is not None:
        written[PER_EDIT_KEY] = per_edit
    write_json_atomic(out.metrics, written, indent=2)
    if out.rankings:
        document = rankings_document(
            ev.data.triplets, ev.gallery_names, ranked, ev.edit_types(), split
        )
        write_rankings(out.rankings, document)
    if out.details:
        details = split_details(loaded, ev, per_edit is not None)
        details["seconds"] = round(time.perf_counter() - t0, 2)
        write_json_atomic(out.details, details, indent=2)
    _log_scores(loaded, ev, metrics, per_edit)
    return metrics


def split_details(loaded: LoadedModel, ev: SplitEvaluator, with_edit_types: bool) -> dict:
    """val_details.json: what was scored, against which chance levels, what was left out."""
    return {
        "checkpoint": str(loaded.checkpoint),
        "epoch": loaded.epoch,
        "preset": loaded.model.preset.name,
        "split": ev.split,
        "queries": len(ev.data),
        "gallery": len(ev.gallery_names),
        "chance": ev.chance(),
        **ev.unreadable_report(),
        "edit_types": str(ev.edits_source()) if with_edit_types else None,
        "region_mode": loaded.model.region_mode,
        "box_counts": ev.box_counts,
        **ev.protocol_details(),
    }


def _log_scores(loaded: LoadedModel, ev: SplitEvaluator, metrics: dict, per_edit) -> None:
    chance = ev.chance()
    log.info(
        "%s on %s (%d queries, gallery %d), chance in brackets:\n%s",
        loaded.checkpoint,
        ev.split,
        len(ev.data),
        len(ev.gallery_names),
        format_metrics(metrics, chance),
    )
    if per_edit is not None:
        log.info(
            "%s per edit type (%s):\n%s",
            ev.split,
            ev.edits_source(),
            format_edit_types(per_edit, chance, overall=metrics),
        )


def submission_for_model(
    loaded: LoadedModel,
    cirr_root: str | Path | DatasetRoot,
    settings: EvalSettings,
    out: SubmissionFiles,
    sources: SplitSources = PIXELS_ONLY,
) -> dict:
    """CIRR test-server files for test1: recall.json (top-50) and recall_subset.json (top-3).

    Every pairid is in both files; `out.details` (JSON) lists the unreadable images left out of
    the gallery and the queries ranked with the fallback (black reference). Returns that dict.
    """
    ev = split_evaluator(cirr_root, "test1", loaded.model, settings, loaded.device, sources)
    recall, subset = ev.submission(loaded.model)
    write_json_atomic(out.recall, recall)
    write_json_atomic(out.subset, subset)
    details = {
        "checkpoint": str(loaded.checkpoint),
        "epoch": loaded.epoch,
        "split": "test1",
        "queries": len(ev.data),
        "gallery": len(ev.gallery_names),
        "fallback": "a query whose reference cannot be read is ranked from its caption with a "
        "black reference image; members missing from the gallery follow the ranked ones",
        **ev.unreadable_report(),
    }
    if out.details:
        write_json_atomic(out.details, details, indent=2)
    log.info("wrote %s and %s (%d queries)", out.recall, out.subset, len(ev.data))
    return details


def evaluate_stage(
    checkpoint: str | Path,
    cirr_root: str | Path | DatasetRoot,
    settings: EvalSettings,
    val_out: ScoreFiles,
    submission_out: SubmissionFiles | None = None,
    sources: dict[str, SplitSources] | None = None,
) -> dict[str, float]:
    """Rule evaluate: val recalls and test1 server files of one stage, the model built once.
    `sources`: each split's cached features and own boxes; `submission_out` None: val only (the
    ablation's runs)."""
    sources = sources or {}
    loaded = load_for_evaluation(checkpoint, settings)
    metrics = score_split(
        loaded, cirr_root, settings, val_out, "val", sources.get("val", PIXELS_ONLY)
    )
    if submission_out is not None:
        submission_for_model(
            loaded, cirr_root, settings, submission_out, sources.get("test1", PIXELS_ONLY)
        )
    return metrics
