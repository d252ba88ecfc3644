"""The stage table (rule compare_stages, comparison.csv): stage 1, the control (stage 2's run
with region mode none, same init, schedule, seed and batch order), stage 2, and the two
differences, in percentage points, from their val_metrics.json files. The control isolates the
region effect; stage 2 − stage 1 mixes it with the extra epochs and the restarted schedule
(docs/design.md §11).

Torch-free: the job reads three small JSON files, and importing the model side would cost it
seconds at the end of every run.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cirflow.data.result_files import CIRR_KEYS, COMPARISON_COLUMNS
from cirflow.errors import CirflowError, rebuilt_by
from cirflow.io import csv_text, fixed_cell, read_json, write_text_atomic

log = logging.getLogger(__name__)


def comparison_rows(
    stage1: dict,
    stage2: dict,
    control: dict | None = None,
    keys: tuple[str, ...] = CIRR_KEYS,
) -> list[dict]:
    """Per metric of `keys` (the dataset's: `result_files.metric_set`): stage1,
    stage2_control, stage2, delta_vs_control (stage 2 − control) and delta_vs_stage1 (stage 2
    − stage 1); the control's two columns are None without it."""
    rows = []
    for key in keys:
        if key not in stage1 or key not in stage2 or (control is not None and key not in control):
            raise CirflowError(f"metric {key!r} missing from a val_metrics.json")
        rows.append(
            {
                "metric": key,
                "stage1": stage1[key],
                "stage2_control": control[key] if control is not None else None,
                "stage2": stage2[key],
                "delta_vs_control": stage2[key] - control[key] if control is not None else None,
                "delta_vs_stage1": stage2[key] - stage1[key],
            }
        )
    return rows


def read_metrics(path: str | Path, what: str, keys: tuple[str, ...] = CIRR_KEYS) -> dict:
    """A val_metrics.json (rule evaluate) with every number of `keys`, or an error naming it."""
    doc = read_json(path, what, rebuilt_by("evaluate", path))
    missing = [k for k in keys if not isinstance(doc, dict) or k not in doc]
    if missing:
        raise CirflowError(
            f"{path}: {what} without {', '.join(missing)}; " + rebuilt_by("evaluate", path)
        )
    return doc


def compare_stages(
    stage1_json: str | Path,
    stage2_json: str | Path,
    out_csv: str | Path,
    control_json: str | Path | None = None,
    keys: tuple[str, ...] = CIRR_KEYS,
) -> list[dict]:
    """comparison.csv: COMPARISON_COLUMNS, percentage points (module docstring), one row per
    metric of `keys` (CIRR's by default). Without `control_json` the control's two columns are
    empty."""
    control = read_metrics(control_json, "control metrics", keys) if control_json else None
    rows = comparison_rows(
        read_metrics(stage1_json, "stage-1 metrics", keys),
        read_metrics(stage2_json, "stage-2 metrics", keys),
        control,
        keys,
    )
    recall, delta = fixed_cell(2), fixed_cell(2, signed=True)
    formats = {"stage1": recall, "stage2_control": recall, "stage2": recall}
    formats.update(delta_vs_control=delta, delta_vs_stage1=delta)
    text = csv_text(rows, COMPARISON_COLUMNS, formats)
    write_text_atomic(out_csv, text)
    log.info("stage 1, control, stage 2 (val):\n%s", text.rstrip("\n"))
    return rows
