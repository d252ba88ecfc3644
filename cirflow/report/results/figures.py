"""The results page's figures (matplotlib Agg, PNG bytes): a stage's curves, the ablation's
error bars."""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg", force=True)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cirflow.data.result_files import ABLATION_PLOTTED, CURVE_METRICS, NO_BOXES  # noqa: E402
from cirflow.report.results.inputs import Stage  # noqa: E402

DPI = 100


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def curves_png(
    stage: Stage, labels: dict[str, str], metrics: tuple[str, ...] = CURVE_METRICS
) -> bytes:
    """Two panels: every loss per epoch, and the val recalls `metrics` per epoch (chance levels
    dotted; every column is in the table under the figure), the best.pt epoch marked on
    both."""
    title, train_rows, val_rows = stage.label, stage.train_rows, stage.val_rows
    best_epoch, chance = stage.best_epoch, stage.details.get("chance")
    fig, (losses, recalls) = plt.subplots(1, 2, figsize=(10.0, 3.3))
    colors = plt.get_cmap("tab10").colors
    for i, column in enumerate(stage.loss_columns):
        epochs = [r["epoch"] for r in train_rows if r.get(column) is not None]
        values = [r[column] for r in train_rows if r.get(column) is not None]
        style = {"linewidth": 2.2} if column == "loss_total" else {"linewidth": 1.2}
        losses.plot(epochs, values, marker="o", label=column, color=colors[i % 10], **style)
    losses.set_title(f"{title}: losses (train)", fontsize=10)
    losses.set_xlabel("epoch")
    for i, key in enumerate(metrics):
        epochs = [r["epoch"] for r in val_rows if r.get(key) is not None]
        values = [r[key] for r in val_rows if r.get(key) is not None]
        if not values:
            continue
        color = colors[i % 10]
        recalls.plot(epochs, values, marker="o", label=labels.get(key, key), color=color)
        if chance and key in chance:
            recalls.axhline(chance[key], color=color, linestyle=":", linewidth=1)
    recalls.set_title(f"{title}: val recall (%), chance dotted", fontsize=10)
    recalls.set_xlabel("epoch")
    epochs = sorted({r["epoch"] for r in train_rows} | {r["epoch"] for r in val_rows})
    for ax in (losses, recalls):
        if best_epoch is not None:
            ax.axvline(best_epoch, color="#b42318", linestyle="--", linewidth=1.2)
            ax.annotate(
                f"best.pt (epoch {best_epoch})",
                (best_epoch, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(3, -12),
                textcoords="offset points",
                color="#b42318",
                fontsize=8,
            )
        if epochs:
            if len(epochs) <= 12:  # integer epochs; longer runs keep matplotlib's ticks
                ax.set_xticks(epochs)
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    return _png(fig)


def ablation_png(
    rows: list[dict], labels: dict[str, str], plotted: tuple[str, ...] = ABLATION_PLOTTED
) -> bytes | None:
    """Two panels per run kind: mean ± sd over seeds, and the paired delta vs none ± sd, of
    the metrics `plotted`."""
    by = {(r["mode"], r["box_source"], r["metric"]): r for r in rows}
    kinds = list(dict.fromkeys((r["mode"], r["box_source"]) for r in rows))
    if not kinds:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 3.6))
    width = 0.8 / len(plotted)
    for panel, (ax, value, spread, title) in enumerate(
        (
            (axes[0], "mean", "sd", "val recall (%), mean ± sd over seeds"),
            (axes[1], "delta_vs_none", "delta_vs_none_sd", "paired delta vs none (points), ± sd"),
        )
    ):
        # The controls (no box source: none, none@6) have no delta of their own.
        shown = kinds if panel == 0 else [k for k in kinds if k[1] != NO_BOXES]
        x = np.arange(len(shown))
        for i, key in enumerate(plotted):
            cells = [by.get((m, s, key)) for m, s in shown]
            vals = [0.0 if c is None or math.isnan(c[value]) else c[value] for c in cells]
            errs = [0.0 if c is None or math.isnan(c[spread]) else c[spread] for c in cells]
            ax.bar(
                x + (i - (len(plotted) - 1) / 2) * width,
                vals,
                width,
                yerr=errs,
                capsize=3,
                label=labels.get(key, key),
            )
        ax.set_xticks(x, [m if s == NO_BOXES else f"{m}/{s}" for m, s in shown], rotation=20)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        if panel == 1:
            ax.axhline(0.0, color="black", linewidth=0.8)
    axes[0].legend(fontsize=7, ncol=2)
    return _png(fig)
