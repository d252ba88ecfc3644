"""The box validation report: one self-contained HTML page for one or more box files.

The page holds, per box file (one method on one split): the original scripts' four numbers plus
invalid boxes and unreadable images, histograms, per-image checks, a grid of images with their
boxes drawn (a deterministic sample plus the images with the most boxes, with none and with
flagged problems), the unreadable images with their reasons, box quality against ground truth
when the stats carry it, and a side-by-side comparison when several methods are shown.

Only the sampled images are decoded, so the page costs the same whatever the split size; all the
numbers come from the stats JSON (computed here with `compute_stats` when not given).
When the images are not on disk (e.g. a real CIRR box file without the dataset) the page still
renders the statistics and plots and says plainly that the images are missing; an empty box file
(`{}`) is named as empty.

The modules, each depending only on those below it:

    page      build_boxes_report, build_method_report: the analysis of each source, the page
    summary   the page's tables and notices
    grids     which images each grid shows, drawn as thumbnails with their boxes
    checks    the per-image checks and what they find in one box file
    dataset   where a box file's images are (or what is missing)
    sources   the box files, read with their sidecars and statistics
    plots     the key plots (matplotlib Agg)
"""

from cirflow.report.boxes.page import (
    MethodFiles,
    PageOptions,
    build_boxes_report,
    build_method_report,
)
from cirflow.report.boxes.sources import (
    BoxSource,
    add_quality,
    load_source,
    stats_entry_from_path,
)

__all__ = [
    "BoxSource",
    "MethodFiles",
    "PageOptions",
    "add_quality",
    "build_boxes_report",
    "build_method_report",
    "load_source",
    "stats_entry_from_path",
]
