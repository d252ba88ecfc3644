"""The columns and metric names of evaluation's result tables: `comparison.csv` (rule
compare_stages) and the ablation's `summary.csv`. `cirflow.evaluate` writes them and the results
page (`cirflow.report.results`) reads them; the page may not import the model side, so their one
home is here, beside the other formats both sides read. Which metrics a dataset has, and which
one leads (`MetricSet`, `metric_set`), comes from its layout: CIRR's or FashionIQ's.
"""

from __future__ import annotations

from dataclasses import dataclass

from cirflow.errors import CirflowError

# comparison.csv: stage 1, the control, stage 2, stage 2 − control, stage 2 − stage 1.
COMPARISON_COLUMNS = (
    "metric",
    "stage1",
    "stage2_control",
    "stage2",
    "delta_vs_control",
    "delta_vs_stage1",
)
# summary.csv: one row per run kind (mode, box source) and metric; the controls (none, and
# none@<epochs> for runs of their own length) have this box source.
NO_BOXES = "-"
# summary.csv: one row per run kind (mode, box source) and metric.
ABLATION_COLUMNS = (
    "mode",
    "box_source",
    "metric",
    "seeds",
    "mean",
    "sd",
    "delta_vs_none",
    "delta_vs_none_sd",
)
METRIC_LABELS = {
    "group_recall_at1": "Rs@1",
    "group_recall_at2": "Rs@2",
    "group_recall_at3": "Rs@3",
    "recall_at1": "R@1",
    "recall_at5": "R@5",
    "recall_at10": "R@10",
    "recall_at50": "R@50",
    "mean(R@5+R_s@1)": "(R@5+Rs@1)/2",
    "arithmetic_mean": "mean",
    "harmonic_mean": "harm. mean",
    "geometric_mean": "geom. mean",
}
# The ablation's recalls shown in its tables (every metric is in the CSV), and those plotted.
ABLATION_SHOWN = (
    "recall_at1",
    "recall_at5",
    "recall_at10",
    "recall_at50",
    "group_recall_at1",
    "group_recall_at2",
    "group_recall_at3",
    "arithmetic_mean",
)
ABLATION_PLOTTED = ("recall_at1", "recall_at5", "group_recall_at1", "arithmetic_mean")
# The results page's training curves (validation_metrics.csv columns) on CIRR.
CURVE_METRICS = ("recall_at1", "recall_at5", "recall_at10", "group_recall_at1", "arithmetic_mean")

# FashionIQ's metrics (`cirflow.evaluate.fashioniq_recall.metric_keys`, SPRC's names): per
# category R@10 and R@50, their means over the categories, and average_recall.
FASHIONIQ_CATEGORIES = ("dress", "shirt", "toptee")
FASHIONIQ_KEYS = (
    *(f"{c}_recall_at{k}" for c in FASHIONIQ_CATEGORIES for k in (10, 50)),
    "average_recall_at10",
    "average_recall_at50",
    "average_recall",
)
METRIC_LABELS.update(
    {f"{c}_recall_at{k}": f"{c} R@{k}" for c in FASHIONIQ_CATEGORIES for k in (10, 50)}
    | {"average_recall_at10": "avg R@10", "average_recall_at50": "avg R@50"}
    | {"average_recall": "avg recall"}
)
# CIRR's val metrics (`cirflow.evaluate.recall.METRIC_KEYS`; tests hold both copies equal).
CIRR_KEYS = (
    *(f"group_recall_at{k}" for k in (1, 2, 3)),
    *(f"recall_at{k}" for k in (1, 5, 10, 50)),
    "mean(R@5+R_s@1)",
    "arithmetic_mean",
    "harmonic_mean",
    "geometric_mean",
)


@dataclass(frozen=True)
class MetricSet:
    """A dataset's val metrics as the result files hold them: `keys` (val_metrics.json,
    validation_metrics.csv, comparison.csv rows, the ablation's summary), `headline` (the best
    epoch's criterion and the number the ablation and the page lead with), the ablation's
    table columns (`shown`) and plot (`plotted`), and the page's training curves."""

    dataset: str  # as the tables name it
    keys: tuple[str, ...]
    headline: str
    shown: tuple[str, ...]
    plotted: tuple[str, ...]
    curves: tuple[str, ...]


CIRR_METRICS = MetricSet(
    "CIRR", CIRR_KEYS, "arithmetic_mean", ABLATION_SHOWN, ABLATION_PLOTTED, CURVE_METRICS
)
_AVERAGES = ("average_recall_at10", "average_recall_at50", "average_recall")
FASHIONIQ_METRICS = MetricSet(
    "FashionIQ",
    FASHIONIQ_KEYS,
    "average_recall",
    FASHIONIQ_KEYS,
    _AVERAGES,
    (*(f"{c}_recall_at10" for c in FASHIONIQ_CATEGORIES), *_AVERAGES),
)
METRIC_SETS = {"cirr": CIRR_METRICS, "fashioniq": FASHIONIQ_METRICS}


def metric_set(kind: str) -> MetricSet:
    """The metrics of a dataset layout (`cirflow.data.datasets`: cirr | fashioniq)."""
    try:
        return METRIC_SETS[kind]
    except KeyError:
        raise CirflowError(
            f"no metrics for dataset layout {kind!r} (expected one of {', '.join(METRIC_SETS)})"
        ) from None
