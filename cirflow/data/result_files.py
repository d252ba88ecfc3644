"""The columns and metric names of evaluation's result tables: `comparison.csv` (rule
compare_stages) and the ablation's `summary.csv`. `cirflow.evaluate` writes them and the results
page (`cirflow.report.results`) reads them; the page may not import the model side, so their one
home is here, beside the other formats both sides read.
"""

from __future__ import annotations

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
