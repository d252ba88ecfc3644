"""The report's figures, drawn with matplotlib's Agg backend from stats JSON dictionaries.

Every function takes `series`: a list of `(label, stats)` pairs (one per method/split shown) and
returns the figure as PNG bytes, or None when there is nothing to draw. Bars are shown as a
percentage of the series' images or boxes, so that splits of different sizes compare directly.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg", force=True)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# Boxes-per-image counts at or above this are pooled into one "N+" bar.
MAX_COUNT_BAR = 15
# At most this many classes in the class plot (the most frequent over all series).
MAX_CLASSES = 20
DPI = 100
COLORS = plt.get_cmap("tab10").colors


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def _percent(counts: list[float]) -> np.ndarray:
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    return 100.0 * counts / total if total > 0 else counts


def _grouped_bars(ax, categories: list[str], series: list[tuple[str, list[float]]]) -> None:
    """One group of bars per category, one bar per series (values already in %)."""
    n = max(1, len(series))
    width = 0.8 / n
    x = np.arange(len(categories))
    for i, (label, values) in enumerate(series):
        ax.bar(
            x + (i - (n - 1) / 2) * width,
            values,
            width=width,
            label=label,
            color=COLORS[i % len(COLORS)],
        )
    ax.set_xticks(x)
    ax.set_xticklabels(categories, rotation=45 if len(categories) > 8 else 0, ha="right")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if len(series) > 1:
        ax.legend(fontsize=8)


def _figure(width: float = 7.0, height: float = 3.2):
    fig, ax = plt.subplots(figsize=(width, height))
    return fig, ax


def boxes_per_image_plot(series: list[tuple[str, dict]]) -> bytes | None:
    """Distribution of the number of boxes per image (% of images)."""
    if not series or not any(s.get("images") for _, s in series):
        return None
    highest = max((int(k) for _, s in series for k in s.get("boxes_per_image_hist", {})), default=0)
    top = min(highest, MAX_COUNT_BAR)
    categories = [str(k) for k in range(top)] + [f"{top}+" if highest > MAX_COUNT_BAR else str(top)]
    bars = []
    for label, stats in series:
        counts = [0.0] * (top + 1)
        for k, v in stats.get("boxes_per_image_hist", {}).items():
            counts[min(int(k), top)] += v
        bars.append((label, _percent(counts)))
    fig, ax = _figure()
    _grouped_bars(ax, categories, bars)
    ax.set_xlabel("boxes per image")
    ax.set_ylabel("% of images")
    ax.set_title("Boxes per image")
    return _png(fig)


def _bin_labels(bins: list, fmt) -> list[str]:
    labels = []
    for lo, hi in zip(bins[:-1], bins[1:], strict=True):
        labels.append(f"{fmt(lo)}–{fmt(hi)}" if hi != "inf" else f"≥{fmt(lo)}")
    return labels


def _hist_plot(
    series: list[tuple[str, dict]], key: str, title: str, xlabel: str, fmt
) -> bytes | None:
    usable = [(label, s[key]) for label, s in series if s.get(key) and sum(s[key]["counts"])]
    if not usable:
        return None
    categories = _bin_labels(usable[0][1]["bins"], fmt)
    bars = [(label, _percent(h["counts"])) for label, h in usable]
    fig, ax = _figure()
    _grouped_bars(ax, categories, bars)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("% of boxes")
    ax.set_title(title)
    return _png(fig)


def area_plot(series: list[tuple[str, dict]]) -> bytes | None:
    """Box area as a fraction of the image (% of valid boxes per bin)."""
    return _hist_plot(
        series, "area_hist", "Box area", "box area (fraction of the image)", lambda v: f"{v:g}"
    )


def aspect_plot(series: list[tuple[str, dict]]) -> bytes | None:
    """Box aspect ratio, width / height (% of valid boxes per bin)."""
    return _hist_plot(
        series, "aspect_hist", "Box aspect ratio", "width / height", lambda v: f"{float(v):g}"
    )


def classes_plot(series: list[tuple[str, dict]]) -> bytes | None:
    """The most frequent detector classes (% of each series' labelled boxes)."""
    # One class for every box (saliency's "salient") is not worth a plot.
    usable = [(label, s["labels"]) for label, s in series if len(s.get("labels") or {}) > 1]
    if not usable:
        return None
    totals: dict[str, int] = {}
    for _, labels in usable:
        for name, count in labels.items():
            totals[name] = totals.get(name, 0) + count
    classes = sorted(totals, key=lambda c: (-totals[c], c))[:MAX_CLASSES]
    fig, ax = _figure(7.0, max(2.5, 0.28 * len(classes) * max(1, len(usable) / 2) + 1.0))
    n = len(usable)
    height = 0.8 / n
    y = np.arange(len(classes))
    for i, (label, labels) in enumerate(usable):
        total = sum(labels.values())
        values = [100.0 * labels.get(c, 0) / total for c in classes]
        ax.barh(
            y + (i - (n - 1) / 2) * height,
            values,
            height=height,
            label=label,
            color=COLORS[i % len(COLORS)],
        )
    ax.set_yticks(y)
    ax.set_yticklabels(classes)
    ax.invert_yaxis()
    ax.set_xlabel("% of labelled boxes")
    ax.set_title(f"Classes (top {len(classes)})")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    if n > 1:
        ax.legend(fontsize=8)
    return _png(fig)


def methods_plot(rows: list[dict]) -> bytes | None:
    """Side-by-side comparison: % of images with boxes and boxes per image, per method and split.

    `rows`: dicts with `method`, `split`, `pct_with_boxes`, `boxes_per_image`.
    """
    if not rows:
        return None
    methods = list(dict.fromkeys(r["method"] for r in rows))
    splits = list(dict.fromkeys(r["split"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.2))
    for ax, key, title in (
        (axes[0], "pct_with_boxes", "% of images with boxes"),
        (axes[1], "boxes_per_image", "boxes per image"),
    ):
        bars = []
        for method in methods:
            values = []
            for split in splits:
                match = [r[key] for r in rows if r["method"] == method and r["split"] == split]
                values.append(float(match[0]) if match else 0.0)
            bars.append((method, values))
        _grouped_bars(ax, splits, bars)
        ax.set_title(title)
    return _png(fig)
