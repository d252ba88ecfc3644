"""Evaluation entry points used by the CLI and the workflow adapters."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from cirflow.errors import CirflowError
from cirflow.evaluate.recall import METRIC_KEYS
from cirflow.io import read_json, write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

# The seed's "expected effect" table: which metrics, in which order.
COMPARISON_COLUMNS = ("metric", "stage1", "stage2", "delta")


def _load(checkpoint, backbone, device, threads):
    from cirflow.model.checkpoints import build_model_from_checkpoint
    from cirflow.train.loop import resolve_device

    if threads:
        torch.set_num_threads(int(threads))
    dev = resolve_device(device)
    model, obj = build_model_from_checkpoint(checkpoint, backbone, dev)
    model.use_amp = dev.type == "cuda"
    model.eval()
    return model, obj, dev


def _evaluator(model, cirr_root, split, dev, batch_size, num_workers, image_cache):
    from cirflow.evaluate.evaluator import SplitEvaluator

    return SplitEvaluator(
        cirr_root,
        split,
        model.tokenizer,
        model.preset.max_txt_len,
        model.preset.image_size,
        dev,
        batch_size,
        num_workers,
        image_cache,
        progress=True,
    )


def evaluate_checkpoint(
    checkpoint: str | Path,
    cirr_root: str | Path,
    out: str | Path,
    details_out: str | Path | None = None,
    split: str = "val",
    backbone: str | None = None,
    device: str = "auto",
    batch_size: int = 128,
    num_workers: int = 0,
    image_cache: str = "auto",
    threads: int | None = None,
) -> dict[str, float]:
    """Recall@K and Rs@K of `checkpoint` on `split` (CIRR protocol) → `out` (JSON, percent)."""
    from cirflow.evaluate.evaluator import format_metrics

    if split == "test1":
        raise CirflowError(
            "test1 has no targets: use `cirflow submission` for the test-server files"
        )
    t0 = time.perf_counter()
    model, obj, dev = _load(checkpoint, backbone, device, threads)
    ev = _evaluator(model, cirr_root, split, dev, batch_size, num_workers, image_cache)
    metrics = ev.metrics(model)
    chance = ev.chance()
    write_json_atomic(out, metrics, indent=2)
    if details_out:
        write_json_atomic(
            details_out,
            {
                "checkpoint": str(checkpoint),
                "epoch": obj.get("epoch"),
                "preset": model.preset.name,
                "split": split,
                "queries": len(ev.data),
                "gallery": len(ev.table),
                "chance": chance,
                "seconds": round(time.perf_counter() - t0, 2),
            },
            indent=2,
        )
    log.info(
        "%s on %s (%d queries, gallery %d), chance in brackets:\n%s",
        checkpoint,
        split,
        len(ev.data),
        len(ev.table),
        format_metrics(metrics, chance),
    )
    return metrics


def write_submission(
    checkpoint: str | Path,
    cirr_root: str | Path,
    recall_out: str | Path,
    subset_out: str | Path,
    backbone: str | None = None,
    device: str = "auto",
    batch_size: int = 128,
    num_workers: int = 0,
    image_cache: str = "auto",
    threads: int | None = None,
) -> None:
    """CIRR test-server files for test1: recall.json (top-50) and recall_subset.json (top-3)."""
    model, _, dev = _load(checkpoint, backbone, device, threads)
    ev = _evaluator(model, cirr_root, "test1", dev, batch_size, num_workers, image_cache)
    recall, subset = ev.submission(model)
    write_json_atomic(recall_out, recall)
    write_json_atomic(subset_out, subset)
    log.info("wrote %s and %s (%d queries)", recall_out, subset_out, len(ev.data))


def comparison_rows(stage1: dict, stage2: dict) -> list[dict]:
    rows = []
    for key in METRIC_KEYS:
        if key not in stage1 or key not in stage2:
            raise CirflowError(f"metric {key!r} missing from a val_metrics.json")
        rows.append(
            {
                "metric": key,
                "stage1": stage1[key],
                "stage2": stage2[key],
                "delta": stage2[key] - stage1[key],
            }
        )
    return rows


def compare_stages(
    stage1_json: str | Path, stage2_json: str | Path, out_csv: str | Path
) -> list[dict]:
    """metric | stage1 | stage2 | delta (percentage points) — the seed's expected-effect table."""
    rows = comparison_rows(
        read_json(stage1_json, "stage-1 metrics"), read_json(stage2_json, "stage-2 metrics")
    )
    lines = [",".join(COMPARISON_COLUMNS)]
    for r in rows:
        lines.append(f"{r['metric']},{r['stage1']:.2f},{r['stage2']:.2f},{r['delta']:+.2f}")
    write_text_atomic(out_csv, "\n".join(lines) + "\n")
    log.info("stage 1 vs stage 2:\n%s", "\n".join(lines))
    return rows
