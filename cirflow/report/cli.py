"""`cirflow boxes report`: the validation report for any box files (the original scripts' included)."""

from __future__ import annotations

import argparse

from cirflow.data.cirr import SPLITS
from cirflow.errors import CirflowError


def _paired(option: str, values: list[str] | None, count: int) -> list[str | None]:
    if values is None:
        return [None] * count
    if len(values) != count:
        raise CirflowError(f"{option} takes one file per --boxes file ({count}), got {len(values)}")
    return list(values)


def cmd_report(args: argparse.Namespace) -> int:
    from cirflow.report.boxes import (
        PageOptions,
        add_quality,
        build_boxes_report,
        load_source,
        stats_entry_from_path,
    )

    metas = _paired("--meta", args.meta, len(args.boxes))
    stats = _paired("--stats", args.stats, len(args.boxes))
    sources = [
        load_source(path, meta_path=meta, stats_path=st, method=args.method, split=args.split)
        for path, meta, st in zip(args.boxes, metas, stats, strict=True)
    ]
    if args.gt:
        add_quality(sources, args.gt)
    settings = {
        "samples_per_split": args.samples,
        "extra_per_group": args.extra,
        "seed": args.seed,
        "thumb_size": args.thumb_size,
    }
    options = PageOptions(
        cirr_root=args.cirr_root,
        settings=settings,
        compare_stats=[stats_entry_from_path(p) for p in args.compare_stats or []],
        title=args.title,
    )
    result = build_boxes_report(sources, args.out, options, plots_dir=args.plots_dir)
    for source_id in result["empty_files"]:
        print(f"{source_id}: the box file is empty ({{}}): it lists no image")
    for source_id in result["images_missing"]:
        print(f"{source_id}: the images are missing; the report shows statistics and plots only")
    print(
        f"report written to {result['html']} ({len(result['sources'])} box file(s), "
        f"{result['images_drawn']} images drawn, {result['seconds']:.1f} s)"
    )
    return 0


def register(subparsers) -> None:
    rep = subparsers.add_parser(
        "report",
        help="self-contained HTML validation report of box files (stats, plots, drawn samples)",
        description=(
            "Write one self-contained HTML page for the given box files: the original scripts' four "
            "numbers, invalid boxes, unreadable images, histograms, checks and a grid of images "
            "with their boxes drawn. Without the images (no --cirr-root, or the images are not "
            "there) the page still holds the statistics and plots and says the images are missing."
        ),
    )
    rep.add_argument(
        "--boxes",
        nargs="+",
        required=True,
        metavar="FILE",
        help="box files in the original scripts' format",
    )
    rep.add_argument(
        "--cirr-root",
        default=None,
        help="dataset root holding cirr/image_splits and the images (to draw the samples)",
    )
    rep.add_argument("--out", required=True, help="HTML file to write")
    rep.add_argument(
        "--meta",
        nargs="+",
        default=None,
        metavar="FILE",
        help="sidecars, one per --boxes file (default: <file>.meta.json beside each, if present)",
    )
    rep.add_argument(
        "--stats",
        nargs="+",
        default=None,
        metavar="FILE",
        help="stats JSON files, one per --boxes file (default: computed from the box files)",
    )
    rep.add_argument(
        "--method", default=None, help="method name for every file (default: sidecar or file name)"
    )
    rep.add_argument(
        "--split",
        default=None,
        choices=SPLITS,
        help="split of every file (default: sidecar or image names)",
    )
    rep.add_argument(
        "--gt",
        default=None,
        metavar="FILE",
        help="ground-truth boxes (the original scripts' format, e.g. the demo's boxes_gt.json): add box quality",
    )
    rep.add_argument(
        "--compare-stats",
        nargs="+",
        default=None,
        metavar="FILE",
        help="other methods' results/{ds}/boxes/{method}/{split}.stats.json for the comparison",
    )
    rep.add_argument("--plots-dir", default=None, help="also write the plots as PNG files here")
    rep.add_argument("--samples", type=int, default=12, help="random sample size per file")
    rep.add_argument(
        "--extra", type=int, default=6, help="images in each of: most boxes, none, flagged"
    )
    rep.add_argument("--seed", type=int, default=0, help="seed of the random sample")
    rep.add_argument("--thumb-size", type=int, default=256, help="thumbnail size in pixels")
    rep.add_argument("--title", default=None, help="page title")
    rep.set_defaults(func=cmd_report)
