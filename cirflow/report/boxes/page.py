"""The box validation page: every source analysed (checks, dataset, grids drawn), the plots,
the methods compared, rendered into one self-contained HTML file (`build_boxes_report`); the
workflow's per-method page from rule box_report's files (`build_method_report`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cirflow.data.datasets import DatasetRoot
from cirflow.errors import CirflowError
from cirflow.io import write_bytes_atomic, write_text_atomic
from cirflow.report.boxes import plots
from cirflow.report.boxes.checks import CHECKS, check_source
from cirflow.report.boxes.dataset import empty_file_view, open_dataset
from cirflow.report.boxes.grids import Sampling, draw_groups, select_groups
from cirflow.report.boxes.sources import (
    BoxSource,
    assign_labels,
    dataset_root_of_split_file,
    load_source,
    stats_entry_from_path,
)
from cirflow.report.boxes.summary import (
    QUALITY_ORDER,
    comparison_rows,
    notices,
    quality_rows,
    summary_rows,
)
from cirflow.report.html import data_uri, render, version, yaml_text

log = logging.getLogger(__name__)

DEFAULTS = {
    "samples_per_split": 12,
    "extra_per_group": 6,
    "thumb_size": 256,
    "seed": 0,
}
PLOT_FILES = {
    "boxes_per_image": "boxes_per_image.png",
    "area": "box_area.png",
    "aspect": "box_aspect_ratio.png",
    "classes": "classes.png",
    "methods": "methods_comparison.png",
}
# Lists in the page are cut at this length (the page says how many were left out).
MAX_LISTED = 200


@dataclass(frozen=True)
class PageOptions:
    """What the page shows besides its sources, and how."""

    # The dataset root, to draw the images (a plain path: CIRR's layout; a DatasetRoot: any).
    cirr_root: str | Path | DatasetRoot | None = None
    settings: Mapping | None = None  # any of DEFAULTS' keys; the others keep their default
    compare_stats: Sequence[dict] = ()  # other methods' {method, split, stats}, to compare
    title: str | None = None
    config: dict | None = None  # shown as YAML at the end of the page


@dataclass(frozen=True)
class MethodFiles:
    """Rule box_report's inputs: per split of one method a box file, its sidecar and its stats
    file; the dataset's split files (where the images are); other methods' stats files."""

    boxes: Sequence[str | Path]
    metas: Sequence[str | Path]
    stats: Sequence[str | Path]
    split_files: Sequence[str | Path]
    compare_stats: Sequence[str | Path] = ()


def _analyse_source(source: BoxSource, cirr_root, settings: dict) -> dict:
    """Everything the page shows for one source, with the sample images drawn."""
    names = list(source.boxes)
    checks = check_source(source)
    if not names:
        view = empty_file_view(source.box_path)
    else:
        view = open_dataset(cirr_root, source.split, names)
    sampling = Sampling(
        settings["samples_per_split"], settings["extra_per_group"], settings["seed"]
    )
    groups = select_groups(
        names, source.boxes, checks.flags, checks.unreadable, sampling, source.split
    )
    late_errors = draw_groups(source, groups, checks.flags, view, settings["thumb_size"])
    return {
        "source": source,
        "summary": summary_rows(source.stats),
        "quality": quality_rows(source.stats.get("quality")),
        "checks": checks.rows,
        "flagged_images": len(checks.flags),
        "invalid": checks.invalid[:MAX_LISTED],
        "invalid_total": len(checks.invalid),
        "errors": checks.errors[:MAX_LISTED],
        "errors_total": len(checks.errors),
        "late_errors": late_errors,
        "dataset": view,
        "groups": groups,
        "sources_count": dict(source.stats.get("sources") or {}),
    }


def _drawn_count(analysed_source: dict) -> int:
    """Distinct images drawn for one source (an image can sit in several grids)."""
    return len({i["name"] for g in analysed_source["groups"] for i in g["items"] if i["uri"]})


def _analyse_logged(source: BoxSource, cirr_root, settings: dict) -> dict:
    t0 = time.perf_counter()
    analysed = _analyse_source(source, cirr_root, settings)
    log.info(
        "%s: %d images analysed, %d drawn in %.2f s",
        source.id,
        len(source.boxes),
        _drawn_count(analysed),
        time.perf_counter() - t0,
    )
    return analysed


def _shows_comparison(comparison: list[dict]) -> bool:
    return len({r["method"] for r in comparison}) > 1


def _figures(sources: list[BoxSource], comparison: list[dict]) -> list[dict]:
    """The key plots (those with something to draw), PNG bytes."""
    series = [(s.id, s.stats) for s in sources]
    figures = []
    t0 = time.perf_counter()
    for key, title_text, data in (
        ("boxes_per_image", "Boxes per image", plots.boxes_per_image_plot(series)),
        ("area", "Box area", plots.area_plot(series)),
        ("aspect", "Box aspect ratio", plots.aspect_plot(series)),
        ("classes", "Classes", plots.classes_plot(series)),
        (
            "methods",
            "Methods side by side",
            plots.methods_plot(comparison) if _shows_comparison(comparison) else None,
        ),
    ):
        if data is not None:
            figures.append({"key": key, "title": title_text, "png": data, "file": PLOT_FILES[key]})
    log.info("%d plots in %.2f s", len(figures), time.perf_counter() - t0)
    return figures


def _page_html(
    analysed: list[dict],
    comparison: list[dict],
    figures: list[dict],
    options: PageOptions,
    settings: dict,
) -> str:
    sources = [a["source"] for a in analysed]
    page_notices = [
        {"source": a["source"].id, **n}
        for a in analysed
        for n in notices(a["source"], a["dataset"])
    ]
    title = options.title or "Box validation: " + ", ".join(dict.fromkeys(s.label for s in sources))
    return render(
        "boxes_report.html",
        title=title,
        analysed=analysed,
        sources=sources,
        figures=[{**f, "uri": data_uri(f["png"], "image/png")} for f in figures],
        comparison=comparison if _shows_comparison(comparison) else [],
        comparison_quality=[k for k in QUALITY_ORDER if any(k in r["quality"] for r in comparison)],
        notices=page_notices,
        checks=CHECKS,
        settings=settings,
        config=yaml_text(options.config) if options.config else None,
        cirr_root=str(options.cirr_root) if options.cirr_root is not None else None,
        version=version(),
    )


def _write_plots(figures: list[dict], plots_dir: str | Path | None) -> list[str]:
    if plots_dir is None:
        return []
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    for f in figures:
        write_bytes_atomic(plots_dir / f["file"], f["png"])
    return [str(plots_dir / f["file"]) for f in figures]


def build_boxes_report(
    sources: list[BoxSource],
    out_html: str | Path,
    options: PageOptions | None = None,
    plots_dir: str | Path | None = None,
) -> dict:
    """Write the report page (and, if `plots_dir`, the key plots as PNG files).

    sources: the box files shown in full. Returns a small summary (paths, timings). The stage
    comparison is on the results page (`cirflow.report.results`): the box report never waits
    for training.
    """
    if not sources:
        raise CirflowError("no box file to report on")
    start = time.perf_counter()
    options = options or PageOptions()
    settings = {**DEFAULTS, **(options.settings or {})}
    assign_labels(sources)
    analysed = [_analyse_logged(s, options.cirr_root, settings) for s in sources]
    comparison = comparison_rows(sources, list(options.compare_stats))
    figures = _figures(sources, comparison)
    html = _page_html(analysed, comparison, figures, options, settings)
    write_text_atomic(out_html, html)
    written = _write_plots(figures, plots_dir)
    seconds = time.perf_counter() - start
    log.info("report written to %s (%.1f KB) in %.2f s", out_html, len(html) / 1024, seconds)
    return {
        "html": str(out_html),
        "plots": written,
        "sources": [s.id for s in sources],
        "images_drawn": sum(_drawn_count(a) for a in analysed),
        "images_missing": [a["source"].id for a in analysed if a["dataset"].status == "missing"],
        "empty_files": [a["source"].id for a in analysed if a["dataset"].status == "empty"],
        "seconds": round(seconds, 3),
    }


def build_method_report(
    files: MethodFiles,
    out_html: str | Path,
    plots_dir: str | Path | None = None,
    settings: dict | None = None,
    method: str | None = None,
) -> dict:
    """The workflow's per-method page: one box file + sidecar + stats per split, the dataset
    located from its split files, other methods' stats files for the comparison."""
    if not (len(files.boxes) == len(files.metas) == len(files.stats)):
        raise CirflowError(
            f"need one sidecar and one stats file per box file, got {len(files.boxes)} box "
            f"files, {len(files.metas)} sidecars and {len(files.stats)} stats files"
        )
    roots = {dataset_root_of_split_file(p) for p in files.split_files}
    if len(roots) > 1:
        raise CirflowError(f"split files from several dataset roots: {sorted(map(str, roots))}")
    sources = [
        load_source(b, meta_path=m, stats_path=s, method=method)
        for b, m, s in zip(files.boxes, files.metas, files.stats, strict=True)
    ]
    options = PageOptions(
        cirr_root=roots.pop() if roots else None,
        settings=settings,
        compare_stats=[stats_entry_from_path(p) for p in files.compare_stats],
        title=f"Box validation: {method}" if method else None,
        config=settings,
    )
    return build_boxes_report(sources, out_html, options, plots_dir)
