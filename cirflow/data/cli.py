"""`cirflow demo-data`: write the embedded demo dataset (CIRR layout) into a folder."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo-data",
        help="generate the embedded demo dataset (CIRR layout + boxes_gt.json)",
        description=(
            "Generate the synthetic shape-edit dataset in CIRR's on-disk layout: "
            "cirr/captions, cirr/image_splits, train/<k>/, dev/, test1/, plus boxes_gt.json "
            "(ground-truth object boxes), descriptions.json (a scene description per image), "
            "cirr/captions/edits.rc2.<split>.json (each triplet's edit type) and "
            "demo_manifest.json. Same seed -> same bytes."
        ),
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--train-triplets", type=int, default=2000, metavar="N")
    parser.add_argument("--val-triplets", type=int, default=500, metavar="N")
    parser.add_argument("--test1-triplets", type=int, default=500, metavar="N")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes (default: the CPUs this process may use); output does not depend on it",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cirflow.data.demo import DemoSpec, generate_demo

    spec = DemoSpec(
        seed=args.seed,
        train_triplets=args.train_triplets,
        val_triplets=args.val_triplets,
        test1_triplets=args.test1_triplets,
    )
    manifest = generate_demo(args.out, spec, workers=args.workers, progress=not args.no_progress)
    log.info(
        "demo dataset in %s: triplets %s, images %s",
        args.out,
        manifest["triplets"],
        manifest["images"],
    )
    return 0
