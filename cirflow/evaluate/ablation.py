"""The ablation's summary: region mode × box source × seed, each run's val recalls → one table.

Every run is stage 2 from the same stage-1 best.pt (docs/design.md §11); `none` (no region
term) does not depend on boxes, so one `none` run per seed is the paired reference of every box
source. A run of its own length (`token_loss_edited@6`) pairs with `none` of that length
(`none@6`), and its mode reads `token_loss@6` in the tables. For each (mode, box source) and
each metric of the dataset's (`result_files.MetricSet`: CIRR's METRIC_KEYS, or FashionIQ's
per-category R@10/R@50 and averages, led by average_recall), in percent:

    mean, sd           over seeds (sd: sample standard deviation, n − 1; empty for one seed)
    delta_vs_none      mean over seeds s of  metric(mode, source, s) − metric(none, s)
    delta_vs_none_sd   sd of those paired differences (the spread printed next to the delta)

Written as `summary.csv` (one row per run kind and metric), `summary.md` (the same numbers as
two markdown tables, to be read or pasted into a results page) and `summary.png` (matplotlib
Agg: means and paired deltas with ±sd error bars). Model selection (best epoch, by the metric
set's headline) and these numbers both use val, as SPRC does; the page says so.
"""

from __future__ import annotations

import io
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cirflow.data.result_files import (
    ABLATION_COLUMNS,
    CIRR_METRICS,
    METRIC_LABELS,
    NO_BOXES,
    MetricSet,
)
from cirflow.errors import CirflowError
from cirflow.io import csv_text, fixed_cell, read_json, write_bytes_atomic, write_text_atomic


@dataclass(frozen=True)
class Run:
    mode: str
    source: str | None  # None for mode none
    seed: int
    metrics: dict
    epochs: int | None = None  # None: the ablation's own length

    @property
    def shown_mode(self) -> str:
        """The mode as the tables show it: `token_loss@6` for a run of its own length."""
        return self.mode if self.epochs is None else f"{self.mode}@{self.epochs}"


@dataclass
class Kind:
    """One (mode, box source, epochs) over its seeds; `mode` as the tables show it."""

    mode: str
    source: str | None
    by_seed: dict[int, dict]
    epochs: int | None = None

    @property
    def label(self) -> str:
        return self.mode if self.source is None else f"{self.mode} / {self.source}"

    @property
    def is_control(self) -> bool:
        return self.source is None


def read_runs(entries: Sequence[dict], keys: Sequence[str] = CIRR_METRICS.keys) -> list[Run]:
    """`entries`: {"mode", "source" (None for none), "seed", "metrics": val_metrics.json path},
    each file holding every metric of `keys`."""
    runs = []
    for e in entries:
        metrics = read_json(e["metrics"], "ablation val metrics")
        missing = [k for k in keys if k not in metrics]
        if missing:
            raise CirflowError(f"{e['metrics']}: metrics {missing} missing")
        runs.append(Run(e["mode"], e.get("source"), int(e["seed"]), metrics, e.get("epochs")))
    return runs


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else math.nan


def kinds(runs: Sequence[Run]) -> list[Kind]:
    """The run kinds in order: none first (each length), then per box source its modes (as
    given)."""
    out: dict[tuple, Kind] = {}
    for run in sorted(runs, key=lambda r: r.mode != "none"):
        key = (run.mode, run.source, run.epochs)
        kind = out.setdefault(key, Kind(run.shown_mode, run.source, {}, run.epochs))
        if run.seed in kind.by_seed:
            raise CirflowError(f"ablation: two runs of {kind.label}, seed {run.seed}")
        kind.by_seed[run.seed] = run.metrics
    return list(out.values())


def summary_rows(runs: Sequence[Run], keys: Sequence[str] = CIRR_METRICS.keys) -> list[dict]:
    """One row per kind and metric of `keys` (ABLATION_COLUMNS); the deltas are paired by seed
    with the `none` of the same length."""
    all_kinds = kinds(runs)
    controls = {k.epochs: k for k in all_kinds if k.is_control}
    rows = []
    for kind in all_kinds:
        none = controls.get(kind.epochs)
        seeds = sorted(kind.by_seed)
        paired = None
        if none is not None and kind is not none:
            absent = [s for s in seeds if s not in none.by_seed]
            if absent:
                raise CirflowError(f"ablation: {kind.label} has seeds {absent} that none lacks")
            paired = seeds
        for key in keys:
            values = [float(kind.by_seed[s][key]) for s in seeds]
            row = {
                "mode": kind.mode,
                "box_source": kind.source or NO_BOXES,
                "metric": key,
                "seeds": len(seeds),
                "mean": statistics.fmean(values),
                "sd": _sd(values),
                "delta_vs_none": math.nan,
                "delta_vs_none_sd": math.nan,
            }
            if paired is not None:
                deltas = [float(kind.by_seed[s][key]) - float(none.by_seed[s][key]) for s in paired]
                row["delta_vs_none"] = statistics.fmean(deltas)
                row["delta_vs_none_sd"] = _sd(deltas)
            rows.append(row)
    return rows


# summary.csv's number cells: 2 decimals, deltas signed, NaN (one seed, or none itself) empty.
_NUMBER = fixed_cell(2, blank_nan=True)
_SIGNED = fixed_cell(2, signed=True, blank_nan=True)
SUMMARY_FORMATS = {
    "mean": _NUMBER,
    "sd": _NUMBER,
    "delta_vs_none": _SIGNED,
    "delta_vs_none_sd": _NUMBER,
}


def _num(value: float, signed: bool = False) -> str:
    return (_SIGNED if signed else _NUMBER)(value)


def summary_csv(rows: Sequence[dict]) -> str:
    """summary.csv's text (ABLATION_COLUMNS)."""
    return csv_text(rows, ABLATION_COLUMNS, SUMMARY_FORMATS)


def _pm(mean: float, sd: float, signed: bool = False) -> str:
    text = _num(mean, signed)
    return f"{text} ± {_num(sd)}" if not math.isnan(sd) else text


def markdown(
    rows: Sequence[dict], context: dict | None = None, metrics: MetricSet = CIRR_METRICS
) -> str:
    """The summary as markdown: recalls (mean ± sd) and paired deltas vs none (mean ± sd), in
    the columns `metrics.shown`."""
    context = context or {}
    shown = metrics.shown
    by = {(r["mode"], r["box_source"], r["metric"]): r for r in rows}
    order = list(dict.fromkeys((r["mode"], r["box_source"]) for r in rows))
    head = "| run | seeds | " + " | ".join(METRIC_LABELS[k] for k in shown) + " |"
    rule = "| --- | --- |" + " --- |" * len(shown)
    lines = ["## Does region supervision help? (ablation)", ""]
    lines.append(
        "Stage 2 for each region mode and box source, every run from the same stage-1 "
        "`best.pt`; `none` (no region term) is the paired control of every box source. "
        f"{metrics.dataset} val, percent, mean ± sd over seeds; the best epoch is also chosen "
        f"on val, by {METRIC_LABELS[metrics.headline]}, as SPRC does (docs/design.md §11)."
    )
    for key, value in context.items():
        lines.append(f"- {key}: {value}")
    lines += ["", "### Recalls", "", head, rule]
    for mode, source in order:
        label = mode if source == NO_BOXES else f"{mode} / {source}"
        n = by[(mode, source, shown[0])]["seeds"]
        cells = [_pm(by[(mode, source, k)]["mean"], by[(mode, source, k)]["sd"]) for k in shown]
        lines.append(f"| {label} | {n} | " + " | ".join(cells) + " |")
    lines += ["", "### Paired delta vs none (same seed), mean ± sd over seeds", "", head, rule]
    for mode, source in order:
        if source == NO_BOXES:  # the controls: none, none@<epochs>
            continue
        label = f"{mode} / {source}"
        n = by[(mode, source, shown[0])]["seeds"]
        cells = [
            _pm(
                by[(mode, source, k)]["delta_vs_none"],
                by[(mode, source, k)]["delta_vs_none_sd"],
                True,
            )
            for k in shown
        ]
        lines.append(f"| {label} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_png(rows: Sequence[dict], metrics: MetricSet = CIRR_METRICS) -> bytes:
    """Two panels: the mean of the `metrics.plotted` metrics per run kind, and the paired delta
    vs none, each with ±sd error bars (matplotlib Agg)."""
    plotted = metrics.plotted
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    by = {(r["mode"], r["box_source"], r["metric"]): r for r in rows}
    order = list(dict.fromkeys((r["mode"], r["box_source"]) for r in rows))
    labels = [m if s == NO_BOXES else f"{m}/{s}" for m, s in order]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    width = 0.8 / len(plotted)
    x = np.arange(len(order))
    for panel, (ax, field, title) in enumerate(
        zip(
            axes,
            ("mean", "delta_vs_none"),
            ("val recall (%), mean ± sd over seeds", "paired delta vs none (points), ± sd"),
            strict=True,
        )
    ):
        for i, key in enumerate(plotted):
            vals = [by[(m, s, key)][field] for m, s in order]
            sds = [by[(m, s, key)]["sd" if panel == 0 else "delta_vs_none_sd"] for m, s in order]
            vals = [0.0 if math.isnan(v) else v for v in vals]
            sds = [0.0 if math.isnan(v) else v for v in sds]
            ax.bar(
                x + (i - (len(plotted) - 1) / 2) * width,
                vals,
                width,
                yerr=sds,
                capsize=3,
                label=METRIC_LABELS[key],
            )
        ax.set_xticks(x, labels, rotation=20, ha="right")
        ax.set_title(title, fontsize=10)
        if panel == 1:
            ax.axhline(0.0, color="black", linewidth=0.8)
    axes[0].legend(fontsize=8, ncol=2)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def write_summary(
    entries: Sequence[dict],
    csv_out: str | Path,
    md_out: str | Path,
    png_out: str | Path,
    context: dict | None = None,
    metrics: MetricSet = CIRR_METRICS,
) -> list[dict]:
    """Read every run's val_metrics.json and write the three summary files (module docstring),
    with the dataset's `metrics` (`result_files.metric_set`)."""
    rows = summary_rows(read_runs(entries, metrics.keys), metrics.keys)
    write_text_atomic(csv_out, summary_csv(rows))
    write_text_atomic(md_out, markdown(rows, context, metrics))
    write_bytes_atomic(png_out, plot_png(rows, metrics))
    return rows
