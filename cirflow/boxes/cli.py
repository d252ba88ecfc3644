"""`cirflow boxes ...`: the original scripts' box commands (generate, stats) and their successors."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cirflow.boxes import quality
from cirflow.boxes.detectors import METHODS, method_config
from cirflow.boxes.shards import BoxMethod, ShardSpec, merge_results, run_shard
from cirflow.boxes.stats import format_seed_summary, stats_for_file
from cirflow.data.box_format import sidecar_path
from cirflow.data.cirr import SPLITS
from cirflow.errors import CirflowError
from cirflow.io import write_json_atomic


def _boxes_config(path: str | None) -> dict:
    """The `boxes:` section of a cirflow config file, or the built-in defaults."""
    if path is None:
        return {"postfilter": {"min_area": 0.002, "max_boxes": 10}}
    import yaml

    try:
        config = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise CirflowError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise CirflowError(f"config file is not valid YAML: {path}: {exc}") from None
    if not isinstance(config, dict) or not isinstance(config.get("boxes"), dict):
        raise CirflowError(f"{path}: has no 'boxes:' section")
    return config["boxes"]


def cmd_generate(args: argparse.Namespace) -> int:
    if not args.all_splits and not args.split:
        raise CirflowError("give --split SPLIT or --all-splits")
    splits = list(SPLITS) if args.all_splits else [args.split]
    boxes_cfg = _boxes_config(args.config)
    cfg = method_config(boxes_cfg, args.method)
    if args.method in ("yolo", "hybrid"):
        overrides = {"weights": args.weights, "conf": args.conf, "device": args.device}
        cfg["yolo"] = {
            **cfg.get("yolo", {}),
            **{k: v for k, v in overrides.items() if v is not None},
        }
    for split in splits:
        output = Path(args.output)
        if len(splits) > 1:
            output = (
                Path(str(output).format(split=split))
                if "{split}" in str(output)
                else output / f"{split}.json"
            )
        result = run_shard(
            args.cirr_root,
            ShardSpec(split, shard=0, num_shards=1, max_images=args.max_images),
            BoxMethod(args.method, cfg, boxes_cfg.get("postfilter", {})),
            out_path=None,
            decode_workers=args.workers,
        )
        merge_results([result], output, sidecar_path(output), args.max_unreadable_fraction)
        print(format_seed_summary(stats_for_file(output), title=f"{args.method} {split}: {output}"))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    stats = stats_for_file(args.file, args.meta)
    print(format_seed_summary(stats, title=str(args.file)))
    if args.json:
        write_json_atomic(args.json, stats, indent=2)
        print(f"stats written to {args.json}")
    elif args.print_json:
        json.dump(stats, sys.stdout, indent=2)
        print()
    return 0


def register(subparsers) -> argparse._SubParsersAction:
    boxes = subparsers.add_parser("boxes", help="generate, check and report object boxes")
    sub = boxes.add_subparsers(dest="boxes_command", metavar="SUBCOMMAND", required=True)

    gen = sub.add_parser(
        "generate",
        help="generate boxes for CIRR images (the original scripts' generate_cirr_boxes.py)",
    )
    gen.add_argument(
        "--cirr-root", required=True, help="dataset root holding cirr/ and the image folders"
    )
    gen.add_argument("--method", choices=METHODS, default="saliency")
    gen.add_argument("--split", choices=SPLITS)
    gen.add_argument(
        "--all-splits",
        action="store_true",
        help="every split; --output is then a folder or a path with {split}",
    )
    gen.add_argument(
        "--max-images", type=int, default=None, help="only the first N images (sorted by name)"
    )
    gen.add_argument(
        "--output", required=True, help="box file to write (the sidecar goes beside it)"
    )
    gen.add_argument(
        "--config", default=None, help="take method settings from this cirflow config.yaml"
    )
    gen.add_argument(
        "--weights", default=None, help="yolo weights (default from config: yolov8n.pt)"
    )
    gen.add_argument("--conf", type=float, default=None, help="yolo confidence threshold")
    gen.add_argument("--device", default=None, help="yolo device: auto, cpu, cuda, cuda:0")
    gen.add_argument("--workers", type=int, default=1, help="image decoding threads")
    gen.add_argument(
        "--max-unreadable-fraction",
        type=float,
        default=0.5,
        help="fail (writing nothing) when more than this fraction of a split's images cannot be read",
    )
    gen.set_defaults(func=cmd_generate)

    st = sub.add_parser(
        "stats", help="the original scripts' four numbers and the stats JSON of a box file"
    )
    st.add_argument("file", help="box file in the original scripts' format")
    st.add_argument("--meta", default=None, help="sidecar (default: <file>.meta.json if present)")
    st.add_argument("--json", default=None, help="write the stats JSON here")
    st.add_argument("--print-json", action="store_true", help="print the stats JSON")
    st.set_defaults(func=cmd_stats)

    # `boxes quality` lives beside its library code; `boxes report` joins in cirflow/cli.py
    # (cirflow.boxes never imports cirflow.report).
    quality.register(sub)
    return sub
