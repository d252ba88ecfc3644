"""`cirflow evaluate`, `cirflow submission`, `cirflow compare`."""

from __future__ import annotations

import argparse
from pathlib import Path

from cirflow.evaluate.settings import CLI, EvalSettings
from cirflow.settings import add_flags, from_flags


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint", required=True, help="best.pt (cirflow) or a published SPRC checkpoint"
    )
    p.add_argument(
        "--cirr-root", required=True, help="dataset root (cirr/captions, cirr/image_splits, images)"
    )
    p.add_argument(
        "--backbone",
        default=None,
        choices=["pretrain", "pretrain_vitL", "tiny", "tiny_scratch"],
        help="preset of an SPRC checkpoint (cirflow checkpoints say it themselves)",
    )
    add_flags(p, EvalSettings)
    p.add_argument(
        "--box-file",
        default=None,
        help="a model with region tokens: this split's box file of its box method",
    )
    p.add_argument(
        "--box-meta-file",
        default=None,
        help="its sidecar (default: <box file>.meta.json, if there)",
    )


def register(subparsers) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = subparsers.add_parser(
        "evaluate", help="CIRR Recall@K / Rs@K of a checkpoint on val", formatter_class=fmt
    )
    _common(p)
    p.add_argument("--split", default="val", choices=["val", "train"])
    p.add_argument("--out", required=True, help="val_metrics.json to write")
    p.add_argument("--details", default=None, help="also write chance levels, sizes, timing here")
    p.set_defaults(func=run_evaluate)

    p = subparsers.add_parser(
        "submission", help="CIRR test-server files (test1) of a checkpoint", formatter_class=fmt
    )
    _common(p)
    p.add_argument("--out-dir", required=True, help="folder for recall.json and recall_subset.json")
    p.add_argument(
        "--details",
        default=None,
        help="also write the unreadable images and fallback-ranked queries here (JSON)",
    )
    p.set_defaults(func=run_submission)

    p = subparsers.add_parser(
        "compare",
        help="the stage table (metric, stage1, stage2_control, stage2, deltas)",
        formatter_class=fmt,
    )
    p.add_argument("--stage1", required=True, help="stage-1 val_metrics.json")
    p.add_argument("--stage2", required=True, help="stage-2 val_metrics.json")
    p.add_argument("--control", default=None, help="the control's val_metrics.json")
    p.add_argument("--out", required=True, help="comparison.csv to write")
    p.set_defaults(func=run_compare)


def settings_from_args(args) -> EvalSettings:
    return EvalSettings(**from_flags(args, EvalSettings), section=CLI)


def sources_from_args(args):
    """The split's box file (a model with region tokens); images are decoded from pixels."""
    from cirflow.data.regions import BoxFile
    from cirflow.evaluate.run import SplitSources

    return SplitSources(boxes=BoxFile(args.box_file, args.box_meta_file) if args.box_file else None)


def run_evaluate(args) -> int:
    from cirflow.evaluate.run import ScoreFiles, load_for_evaluation, score_split

    settings = settings_from_args(args)
    loaded = load_for_evaluation(args.checkpoint, settings, args.backbone)
    out = ScoreFiles(args.out, details=args.details)
    score_split(loaded, args.cirr_root, settings, out, args.split, sources_from_args(args))
    return 0


def run_submission(args) -> int:
    from cirflow.evaluate.run import (
        SubmissionFiles,
        load_for_evaluation,
        submission_for_model,
    )

    settings = settings_from_args(args)
    loaded = load_for_evaluation(args.checkpoint, settings, args.backbone)
    out_dir = Path(args.out_dir)
    out = SubmissionFiles(out_dir / "recall.json", out_dir / "recall_subset.json", args.details)
    submission_for_model(loaded, args.cirr_root, settings, out, sources_from_args(args))
    return 0


def run_compare(args) -> int:
    from cirflow.evaluate.comparison import compare_stages

    rows = compare_stages(args.stage1, args.stage2, args.out, control_json=args.control)
    for r in rows:
        control = "" if r["stage2_control"] is None else f" control {r['stage2_control']:7.2f}"
        vs = "" if r["delta_vs_control"] is None else f" (vs control {r['delta_vs_control']:+.2f})"
        print(
            f"{r['metric']:<18} stage1 {r['stage1']:7.2f}{control} stage2 {r['stage2']:7.2f} "
            f"{r['delta_vs_stage1']:+7.2f}{vs}"
        )
    return 0
