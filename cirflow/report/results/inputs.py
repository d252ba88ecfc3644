"""The results page's input files, read and checked against each other.

Per stage (STAGES: stage 1, the control, stage 2): `train_metrics.csv` and
`validation_metrics.csv` (one row per epoch, `cirflow.train.history`), `hparams.json`, the
evaluation's `val_metrics.json` / `val_details.json`, the training and evaluation jobs'
Snakemake benchmark files (wall time); `val_rankings.json` of stage 1 and stage 2
(`cirflow.evaluate.rankings`); `comparison.csv` (rule compare_stages, COMPARISON_COLUMNS) and, once the
ablation has run, its `summary.csv` (ABLATION_COLUMNS); both tables' columns and metric names
come from `cirflow.data.result_files`, the one home the model side writes them from.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from cirflow.data.result_files import ABLATION_COLUMNS, COMPARISON_COLUMNS
from cirflow.errors import CirflowError
from cirflow.io import read_json

STAGES = ("stage1", "stage2_control", "stage2")
STAGE_LABELS = {"stage1": "stage 1", "stage2_control": "control", "stage2": "stage 2"}
# comparison.csv rounds to 2 decimals: a metrics file further than this from it is stale.
ROUNDING = 0.005 + 1e-9


def _read_csv(path: str | Path, what: str) -> list[list[str]]:
    path = Path(path)
    if not path.is_file():
        raise CirflowError(f"{what} not found: {path}")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if not rows:
        raise CirflowError(f"{what} is empty: {path}")
    return rows


def _number(text: str, path: Path, line: int) -> float | None:
    if text == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise CirflowError(f"{path}, line {line}: {text!r} is not a number") from None


def read_comparison(path: str | Path) -> list[dict]:
    """The rows of comparison.csv as {column: float, or None for an empty cell}."""
    path = Path(path)
    rows = _read_csv(path, "stage comparison")
    if tuple(rows[0]) != COMPARISON_COLUMNS:
        raise CirflowError(
            f"{path}: expected the columns {', '.join(COMPARISON_COLUMNS)}, got {rows[0]}"
        )
    out = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(COMPARISON_COLUMNS):
            raise CirflowError(
                f"{path}, line {line}: expected {len(COMPARISON_COLUMNS)} cells, got {row}"
            )
        out.append(
            {
                "metric": row[0],
                **{
                    c: _number(v, path, line)
                    for c, v in zip(COMPARISON_COLUMNS[1:], row[1:], strict=True)
                },
            }
        )
    return out


def check_comparison(
    rows: list[dict],
    metrics: dict[str, dict],
    path: str | Path,
    metrics_files: dict[str, str | Path] | None = None,
) -> None:
    """Every cell of comparison.csv equals its stage's val_metrics.json (`metrics_files`, named
    in the messages) to its rounding."""
    for stage, values in metrics.items():
        source = (metrics_files or {}).get(stage, f"the {stage} val_metrics.json")
        for r in rows:
            if r["metric"] not in values:
                raise CirflowError(f"metric {r['metric']!r} missing from {source}")
            if r[stage] is None or abs(float(values[r["metric"]]) - r[stage]) > ROUNDING:
                raise CirflowError(
                    f"{path} says {stage} {r['metric']} = {r[stage]} but its val_metrics.json "
                    f"says {values[r['metric']]!r}: stale comparison"
                )


def read_epochs(path: str | Path, what: str) -> tuple[list[str], list[dict]]:
    """A per-epoch CSV (`cirflow.train.history`): its value columns and rows {column: number},
    `epoch` an int."""
    path = Path(path)
    rows = _read_csv(path, what)
    header = rows[0]
    if not header or header[0] != "epoch":
        raise CirflowError(f"{path}: expected an 'epoch' first column, got {header}")
    out = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise CirflowError(f"{path}, line {line}: expected {len(header)} cells, got {row}")
        values = {c: _number(v, path, line) for c, v in zip(header, row, strict=True)}
        values["epoch"] = int(values["epoch"])
        out.append(values)
    return header[1:], out


def read_benchmark(path: str | Path) -> dict:
    """A Snakemake benchmark file's first run: seconds, max RSS (MB), CPU time."""
    path = Path(path)
    rows = [r for r in _read_tsv(path) if r]
    if len(rows) < 2:
        raise CirflowError(f"benchmark file without a run: {path}")
    row = dict(zip(rows[0], rows[1], strict=False))

    def value(key: str) -> float | None:
        try:
            return float(row[key])
        except (KeyError, ValueError):
            return None

    return {"seconds": value("s"), "max_rss_mb": value("max_rss"), "cpu_time": value("cpu_time")}


def _read_tsv(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise CirflowError(f"benchmark file not found: {path}")
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle, delimiter="\t"))


def read_rankings(path: str | Path) -> dict:
    """A val_rankings.json (`cirflow.evaluate.rankings`), its queries checked."""
    doc = read_json(path, "val rankings")
    if not isinstance(doc, dict) or not isinstance(doc.get("queries"), list):
        raise CirflowError(f"{path}: not a rankings file (no 'queries' list)")
    for i, q in enumerate(doc["queries"]):
        missing = [
            k
            for k in ("pairid", "reference", "caption", "target", "rank", "subset_rank", "top")
            if k not in q
        ]
        if missing:
            raise CirflowError(f"{path}: query {i} lacks {missing}")
    return doc


def read_ablation(path: str | Path) -> list[dict]:
    """summary.csv's rows: numbers as floats (NaN for an empty cell), seeds an int."""
    path = Path(path)
    rows = _read_csv(path, "ablation summary")
    if tuple(rows[0]) != ABLATION_COLUMNS:
        raise CirflowError(
            f"{path}: expected the columns {', '.join(ABLATION_COLUMNS)}, got {rows[0]}"
        )
    out = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(ABLATION_COLUMNS):
            raise CirflowError(f"{path}, line {line}: expected {len(ABLATION_COLUMNS)} cells")
        entry = dict(zip(ABLATION_COLUMNS, row, strict=True))
        for key in ABLATION_COLUMNS[4:]:
            number = _number(entry[key], path, line)
            entry[key] = math.nan if number is None else number
        entry["seeds"] = int(entry["seeds"])
        out.append(entry)
    return out


@dataclass
class Stage:
    """One stage's files, read."""

    name: str
    loss_columns: list[str]
    train_rows: list[dict]
    val_columns: list[str]
    val_rows: list[dict]
    hparams: dict
    metrics: dict
    details: dict
    train_time: dict
    eval_time: dict
    rankings: dict | None = None
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return STAGE_LABELS.get(self.name, self.name)

    @property
    def best_epoch(self) -> int | None:
        """The epoch of the evaluated best.pt (val_details.json)."""
        return self.details.get("epoch")


@dataclass(frozen=True)
class StageFiles:
    """One stage's files (rule results_report's per-stage inputs)."""

    train_csv: str | Path
    val_csv: str | Path
    hparams: str | Path
    metrics: str | Path  # val_metrics.json
    details: str | Path  # val_details.json
    train_time: str | Path  # the training job's benchmark file
    eval_time: str | Path  # the evaluation job's benchmark file
    rankings: str | Path | None = None  # val_rankings.json (stage 1 and stage 2)

    def named(self) -> dict[str, str]:
        """The files as the page's list of inputs names them."""
        names = {
            "train_metrics.csv": self.train_csv,
            "validation_metrics.csv": self.val_csv,
            "hparams.json": self.hparams,
            "val_metrics.json": self.metrics,
            "val_details.json": self.details,
            "training benchmark": self.train_time,
            "evaluation benchmark": self.eval_time,
        }
        if self.rankings is not None:
            names["val_rankings.json"] = self.rankings
        return {k: str(v) for k, v in names.items()}


def read_stage(name: str, files: StageFiles) -> Stage:
    loss_columns, train_rows = read_epochs(files.train_csv, f"{name} train_metrics.csv")
    val_columns, val_rows = read_epochs(files.val_csv, f"{name} validation_metrics.csv")
    metrics_doc = read_json(files.metrics, f"{name} val metrics")
    details_doc = read_json(files.details, f"{name} val details")
    hparams_doc = read_json(files.hparams, f"{name} hparams")
    for doc, path in (
        (metrics_doc, files.metrics),
        (details_doc, files.details),
        (hparams_doc, files.hparams),
    ):
        if not isinstance(doc, dict):
            raise CirflowError(f"{path}: expected a JSON object")
    return Stage(
        name=name,
        loss_columns=list(loss_columns),
        train_rows=train_rows,
        val_columns=val_columns,
        val_rows=val_rows,
        hparams=hparams_doc,
        metrics=metrics_doc,
        details=details_doc,
        train_time=read_benchmark(files.train_time),
        eval_time=read_benchmark(files.eval_time),
        rankings=read_rankings(files.rankings) if files.rankings is not None else None,
        sources=files.named(),
    )
